//! Turns criterion's results into the tables and plots of BENCHMARKS.md.
//!
//! Reads `<criterion dir>/<group>/<function>[/<threads>]/new/{benchmark,estimates}.json`
//! (default dir `target/criterion`), prints one Markdown table per group
//! (criterion's median; for the thread groups: total throughput in Mops/s
//! and its ratio to `mutex-ida` at the same thread count) and writes an SVG
//! plot of throughput against threads for each thread group into the plot
//! dir (default `benches/plots`).
//!
//! Usage: `report [CRITERION_DIR [PLOT_DIR]]`.

use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};

/// One measured benchmark.
#[derive(Debug, Clone)]
struct Point {
    group: String,
    function: String,
    threads: Option<usize>,
    /// Criterion's median time per iteration, in nanoseconds.
    median_ns: f64,
}

/// Groups whose iterations run on every thread at once (throughput groups).
const THREAD_GROUPS: [&str; 5] = [
    "find",
    "find_with_writer",
    "alloc_free",
    "alloc_free_small_range",
    "mixed",
];

/// Single-thread groups, in print order, with the row each is compared to.
const SINGLE_GROUPS: [(&str, &str); 4] = [
    ("find_hot", "mutex-ida"),
    ("fill", "mutex-ida"),
    ("enospc", "mutex-ida"),
    ("for_each_small_set", "mutex-ida-set-index"),
];

/// The baseline every thread group is compared to.
const BASELINE: &str = "mutex-ida";

/// A note on contenders whose semantics differ, shown beside their name.
fn note(function: &str) -> &'static str {
    match function {
        "array" => " (reference, not an allocator)",
        "idr-ebr" | "sharded-slab" => " (no ranges, no order; key table)",
        "papaya" => " (hash map, find only)",
        "mutex-btreemap" => " (cyclic order)",
        "c-abi" => " (ioasid's C functions, pin per call)",
        _ => "",
    }
}

fn read_json(path: &Path) -> Option<Value> {
    serde_json::from_str(&fs::read_to_string(path).ok()?).ok()
}

fn collect(dir: &Path, out: &mut Vec<Point>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if !path.is_dir() {
            continue;
        }
        if path.file_name().is_some_and(|n| n == "new") {
            let (Some(bench), Some(est)) = (
                read_json(&path.join("benchmark.json")),
                read_json(&path.join("estimates.json")),
            ) else {
                continue;
            };
            let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
            out.push(Point {
                group: text(&bench["group_id"]),
                function: text(&bench["function_id"]),
                threads: bench["value_str"].as_str().and_then(|s| s.parse().ok()),
                median_ns: est["median"]["point_estimate"].as_f64().unwrap_or(f64::NAN),
            });
        } else {
            collect(&path, out);
        }
    }
}

/// Nanoseconds in a readable unit.
fn time(ns: f64) -> String {
    if ns >= 1e6 {
        format!("{:.2} ms", ns / 1e6)
    } else if ns >= 1e3 {
        format!("{:.2} µs", ns / 1e3)
    } else {
        format!("{ns:.1} ns")
    }
}

/// Rows of a group in first-seen order (the order the benches registered).
fn functions(points: &[&Point]) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for p in points {
        if !names.contains(&p.function) {
            names.push(p.function.clone());
        }
    }
    names
}

/// Total throughput (Mops/s) of `threads` threads taking `median_ns` per iteration.
fn mops(threads: usize, median_ns: f64) -> f64 {
    threads as f64 * 1e3 / median_ns
}

fn thread_table(group: &str, points: &[&Point]) -> String {
    let mut threads: Vec<usize> = points.iter().filter_map(|p| p.threads).collect();
    threads.sort_unstable();
    threads.dedup();
    let cell = |function: &str, t: usize| {
        points
            .iter()
            .find(|p| p.function == function && p.threads == Some(t))
            .map(|p| p.median_ns)
    };
    let mut out = String::new();
    let _ = writeln!(out, "#### `{group}`\n");
    let _ = write!(out, "| contender | ns/op, 1 thread |");
    for t in &threads {
        let _ = write!(out, " {t} thr: Mops/s (× {BASELINE}) |");
    }
    let _ = writeln!(out);
    let _ = writeln!(out, "|---|---|{}", "---|".repeat(threads.len()));
    for function in functions(points) {
        let one = cell(&function, 1).map_or("-".to_string(), time);
        let _ = write!(out, "| {function}{} | {one} |", note(&function));
        for &t in &threads {
            match (cell(&function, t), cell(BASELINE, t)) {
                (Some(ns), Some(base)) => {
                    let _ = write!(out, " {:.1} ({:.2}×) |", mops(t, ns), base / ns);
                }
                (Some(ns), None) => {
                    let _ = write!(out, " {:.1} |", mops(t, ns));
                }
                _ => {
                    let _ = write!(out, " - |");
                }
            }
        }
        let _ = writeln!(out);
    }
    out
}

fn single_table(group: &str, baseline: &str, points: &[&Point]) -> String {
    let base = points
        .iter()
        .find(|p| p.function == baseline)
        .map(|p| p.median_ns);
    let mut out = String::new();
    let _ = writeln!(out, "#### `{group}`\n");
    let _ = writeln!(out, "| contender | median | ratio to {baseline} (time) |");
    let _ = writeln!(out, "|---|---|---|");
    for function in functions(points) {
        let p = points.iter().find(|p| p.function == function).unwrap();
        let ratio = base.map_or("-".to_string(), |b| format!("{:.2}×", p.median_ns / b));
        let _ = writeln!(
            out,
            "| {function}{} | {} | {ratio} |",
            note(&function),
            time(p.median_ns)
        );
    }
    out
}

const COLORS: [&str; 12] = [
    "#d62728", "#ff7f0e", "#e377c2", "#1f77b4", "#17becf", "#8c564b", "#2ca02c", "#9467bd",
    "#7f7f7f", "#bcbd22", "#000000", "#aec7e8",
];

/// A line plot of total throughput against thread count, one line a contender.
fn svg(group: &str, points: &[&Point]) -> String {
    let (w, h) = (760.0, 440.0);
    let (left, right, top, bottom) = (70.0, 230.0, 40.0, 50.0);
    let mut threads: Vec<usize> = points.iter().filter_map(|p| p.threads).collect();
    threads.sort_unstable();
    threads.dedup();
    let ymax = points
        .iter()
        .filter_map(|p| p.threads.map(|t| mops(t, p.median_ns)))
        .fold(0.0f64, f64::max)
        * 1.1;
    let x = |i: usize| left + (w - left - right) * i as f64 / (threads.len().max(2) - 1) as f64;
    let y = |v: f64| h - bottom - (h - top - bottom) * v / ymax;
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="{w}" height="{h}" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{}" y="22" font-size="15" text-anchor="middle">{group}: total throughput vs threads (2-core machine)</text>"#,
        (w - right + left) / 2.0
    );
    // Axes, ticks and grid.
    let _ = writeln!(
        s,
        r#"<line x1="{left}" y1="{}" x2="{}" y2="{}" stroke="black"/>"#,
        h - bottom,
        w - right,
        h - bottom
    );
    let _ = writeln!(
        s,
        r#"<line x1="{left}" y1="{top}" x2="{left}" y2="{}" stroke="black"/>"#,
        h - bottom
    );
    for (i, t) in threads.iter().enumerate() {
        let _ = writeln!(
            s,
            r#"<text x="{}" y="{}" text-anchor="middle">{t}</text>"#,
            x(i),
            h - bottom + 18.0
        );
    }
    let _ = writeln!(
        s,
        r#"<text x="{}" y="{}" text-anchor="middle">threads</text>"#,
        (w - right + left) / 2.0,
        h - 10.0
    );
    let step = nice_step(ymax / 1.1 / 5.0);
    let mut v = 0.0;
    while v <= ymax {
        let _ = writeln!(
            s,
            r##"<line x1="{left}" y1="{0:.1}" x2="{1}" y2="{0:.1}" stroke="#ddd"/><text x="{2}" y="{3:.1}" text-anchor="end">{v}</text>"##,
            y(v),
            w - right,
            left - 6.0,
            y(v) + 4.0
        );
        v += step;
    }
    let _ = writeln!(
        s,
        r#"<text x="18" y="{}" transform="rotate(-90 18 {})" text-anchor="middle">Mops/s (all threads)</text>"#,
        h / 2.0,
        h / 2.0
    );
    for (n, function) in functions(points).iter().enumerate() {
        let color = COLORS[n % COLORS.len()];
        let coords: Vec<String> = threads
            .iter()
            .enumerate()
            .filter_map(|(i, &t)| {
                points
                    .iter()
                    .find(|p| &p.function == function && p.threads == Some(t))
                    .map(|p| format!("{:.1},{:.1}", x(i), y(mops(t, p.median_ns))))
            })
            .collect();
        let dash = if function.starts_with("ioasid") {
            ""
        } else {
            r#" stroke-dasharray="5,3""#
        };
        let _ = writeln!(
            s,
            r#"<polyline points="{}" fill="none" stroke="{color}" stroke-width="2"{dash}/>"#,
            coords.join(" ")
        );
        let ly = top + 10.0 + 18.0 * n as f64;
        let _ = writeln!(
            s,
            r#"<line x1="{0}" y1="{ly}" x2="{1}" y2="{ly}" stroke="{color}" stroke-width="2"{dash}/><text x="{2}" y="{3}">{function}</text>"#,
            w - right + 15.0,
            w - right + 40.0,
            w - right + 46.0,
            ly + 4.0
        );
    }
    let _ = writeln!(s, "</svg>");
    s
}

/// A tick step of 1, 2 or 5 times a power of ten, at least `raw`.
fn nice_step(raw: f64) -> f64 {
    if raw <= 0.0 || !raw.is_finite() {
        return 1.0;
    }
    let power = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * power)
        .find(|&step| step >= raw)
        .unwrap_or(10.0 * power)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let dir = PathBuf::from(args.get(1).map_or("target/criterion", String::as_str));
    let plots = PathBuf::from(args.get(2).map_or("benches/plots", String::as_str));
    let mut points = Vec::new();
    collect(&dir, &mut points);
    if points.is_empty() {
        eprintln!("no criterion results under {}", dir.display());
        std::process::exit(1);
    }
    // Keep the registration order: sort by group only (stable).
    let mut by_group: BTreeMap<String, Vec<&Point>> = BTreeMap::new();
    let mut order: Vec<&Point> = points.iter().collect();
    order.sort_by_key(|p| (p.function.clone(), p.threads));
    for p in order {
        by_group.entry(p.group.clone()).or_default().push(p);
    }
    fs::create_dir_all(&plots).expect("plot dir");
    for group in THREAD_GROUPS {
        if let Some(points) = by_group.get_mut(group) {
            points.sort_by_key(|p| rank(&p.function));
            println!("{}", thread_table(group, points));
            let path = plots.join(format!("{group}.svg"));
            fs::write(&path, svg(group, points)).expect("write plot");
        }
    }
    for (group, baseline) in SINGLE_GROUPS {
        if let Some(points) = by_group.get_mut(group) {
            points.sort_by_key(|p| rank(&p.function));
            println!("{}", single_table(group, baseline, points));
        }
    }
}

/// Print order: the reference, ioasid rows, then the baselines.
fn rank(function: &str) -> usize {
    const ORDER: &[&str] = &[
        "array",
        "ioasid-guard",
        "ioasid-pin",
        "c-abi",
        "ioasid",
        "ioasid-lowest",
        "ioasid-cyclic",
        "ioasid-any",
        "mutex-ida",
        "mutex-ida-set-index",
        "rwlock-ida",
        "mutex-ida-scan",
        "mutex-btreemap",
        "mutex-btreemap-scan",
        "kernel-model",
        "kernel-model-scan",
        "idr-ebr",
        "sharded-slab",
        "papaya",
    ];
    ORDER
        .iter()
        .position(|&o| o == function)
        .unwrap_or(ORDER.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(function: &str, threads: usize, median_ns: f64) -> Point {
        Point {
            group: "g".into(),
            function: function.into(),
            threads: Some(threads),
            median_ns,
        }
    }

    #[test]
    fn thread_table_reports_throughput_and_ratio() {
        let points = [
            point("mutex-ida", 1, 100.0),
            point("mutex-ida", 2, 400.0),
            point("ioasid-any", 1, 50.0),
            point("ioasid-any", 2, 100.0),
        ];
        let refs: Vec<&Point> = points.iter().collect();
        let table = thread_table("g", &refs);
        // ioasid-any: 2 threads in 100 ns = 20 Mops/s, 4x mutex-ida's 5.
        assert!(
            table.contains("| ioasid-any | 50.0 ns | 20.0 (2.00×) | 20.0 (4.00×) |"),
            "{table}"
        );
        assert!(
            table.contains("| mutex-ida | 100.0 ns | 10.0 (1.00×) | 5.0 (1.00×) |"),
            "{table}"
        );
        let plot = svg("g", &refs);
        assert_eq!(plot.matches("<polyline").count(), 2);
    }

    #[test]
    fn tick_steps_are_round() {
        assert_eq!(nice_step(7.3), 10.0);
        assert_eq!(nice_step(1.6), 2.0);
        assert_eq!(nice_step(0.3), 0.5);
        assert_eq!(nice_step(0.0), 1.0);
    }

    #[test]
    fn units() {
        assert_eq!(time(12.34), "12.3 ns");
        assert_eq!(time(1500.0), "1.50 µs");
        assert_eq!(time(2.5e7), "25.00 ms");
    }
}
