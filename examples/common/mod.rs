//! What the demo and the soak share: numbers with thousands separators and
//! summaries whose labels, values and notes line up in columns. Each
//! example uses part of it, hence the `dead_code` allowance.
#![allow(dead_code)]

/// `n` with a comma between each group of three digits: `1,234,567`.
pub fn grouped(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

/// A rate or other non-negative float, rounded, with separators.
pub fn grouped_f64(x: f64) -> String {
    grouped(x.max(0.0).round() as u64)
}

/// A summary table: a title, then one row per figure, the labels in one
/// column, the values right-aligned in the next, an optional note after.
pub struct Summary {
    title: String,
    rows: Vec<(String, String, String)>,
}

impl Summary {
    pub fn new(title: &str) -> Self {
        Summary {
            title: title.to_string(),
            rows: Vec::new(),
        }
    }

    /// A row whose value is a count, printed with separators.
    pub fn count(&mut self, label: &str, value: u64, note: &str) -> &mut Self {
        self.text(label, &grouped(value), note)
    }

    /// A row with a value already formatted.
    pub fn text(&mut self, label: &str, value: &str, note: &str) -> &mut Self {
        self.rows
            .push((label.to_string(), value.to_string(), note.to_string()));
        self
    }

    /// The table's lines, without trailing spaces.
    pub fn lines(&self) -> Vec<String> {
        let label_width = self.rows.iter().map(|r| r.0.len()).max().unwrap_or(0);
        let value_width = self.rows.iter().map(|r| r.1.len()).max().unwrap_or(0);
        let mut lines = vec![self.title.clone()];
        for (label, value, note) in &self.rows {
            let line = format!("  {label:<label_width$}  {value:>value_width$}  {note}");
            lines.push(line.trim_end().to_string());
        }
        lines
    }

    pub fn print(&self) {
        for line in self.lines() {
            println!("{line}");
        }
    }
}
