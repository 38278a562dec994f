//! Turns criterion's results into the tables and plots of BENCHMARKS.md.
//!
//! Reads `<criterion dir>/<group>/<function>[/<threads>]/new/{benchmark,estimates}.json`
//! (default dir `target/criterion`), prints one Markdown table per group
//! (criterion's median; for the thread groups: total throughput in Mops/s
//! and its ratio to `mutex-ida` at the same thread count) and writes an SVG
//! plot of throughput against threads for each thread group into the plot
//! dir (default `benches/plots`), drawn with plotters: a log throughput axis,
//! error bars from criterion's 95% confidence interval of the median.
//!
//! With `--cbench FILE` it reads the output of `benches/c/run.sh` instead
//! (cbench's Markdown tables of the C ABI) and writes one plot per table,
//! `c_<title>.svg`, with each cell's `[min-max]` over the repetitions as
//! the error bar around its median.
//!
//! Usage: `report [--criterion-dir DIR | --cbench FILE] [--plot-dir DIR]` (`--help`).

use plotters::prelude::*;
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
    /// The 95% confidence interval of that median, in nanoseconds.
    median_ci_ns: (f64, f64),
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
                median_ci_ns: (
                    est["median"]["confidence_interval"]["lower_bound"]
                        .as_f64()
                        .unwrap_or(f64::NAN),
                    est["median"]["confidence_interval"]["upper_bound"]
                        .as_f64()
                        .unwrap_or(f64::NAN),
                ),
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

const COLORS: [RGBColor; 12] = [
    RGBColor(0xd6, 0x27, 0x28),
    RGBColor(0xff, 0x7f, 0x0e),
    RGBColor(0xe3, 0x77, 0xc2),
    RGBColor(0x1f, 0x77, 0xb4),
    RGBColor(0x17, 0xbe, 0xcf),
    RGBColor(0x8c, 0x56, 0x4b),
    RGBColor(0x2c, 0xa0, 0x2c),
    RGBColor(0x94, 0x67, 0xbd),
    RGBColor(0x7f, 0x7f, 0x7f),
    RGBColor(0xbc, 0xbd, 0x22),
    RGBColor(0x00, 0x00, 0x00),
    RGBColor(0xae, 0xc7, 0xe8),
];

/// One line of a plot: a contender's total throughput (Mops/s) at each
/// thread count, with the low and high ends of its error bar.
#[derive(Debug, Clone, PartialEq)]
struct Series {
    name: String,
    /// (threads, middle, low, high), in Mops/s.
    points: Vec<(usize, f64, f64, f64)>,
}

/// The plot series of a criterion thread group: median throughput, with
/// the 95% confidence interval of the median as the error bar.
fn criterion_series(points: &[&Point]) -> Vec<Series> {
    functions(points)
        .into_iter()
        .map(|function| {
            let points = points
                .iter()
                .filter(|p| p.function == function)
                .filter_map(|p| {
                    let t = p.threads?;
                    // A longer time is a lower throughput: the bounds swap.
                    let (fast, slow) = p.median_ci_ns;
                    Some((t, mops(t, p.median_ns), mops(t, slow), mops(t, fast)))
                })
                .collect();
            Series {
                name: function,
                points,
            }
        })
        .collect()
}

/// A line plot of total throughput (log scale) against thread count, one
/// line a contender (ioasid's solid, the others dashed), with an error bar
/// at each point.
fn svg(title: &str, series: &[Series]) -> Result<String, String> {
    let mut threads: Vec<usize> = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.0))
        .collect();
    threads.sort_unstable();
    threads.dedup();
    // One x position per thread count, evenly spaced.
    let x_of = |t: usize| threads.iter().position(|&u| u == t).unwrap_or(0) as i32;
    let values: Vec<f64> = series
        .iter()
        .flat_map(|s| {
            s.points
                .iter()
                .flat_map(|&(_, mid, low, high)| [mid, low, high])
        })
        .filter(|v| v.is_finite() && *v > 0.0)
        .collect();
    let lowest = values.iter().copied().fold(f64::INFINITY, f64::min);
    let highest = values.iter().copied().fold(0.0f64, f64::max);
    if values.is_empty() {
        return Err(format!("{title}: nothing to plot"));
    }
    let (ymin, ymax) = (lowest / 1.5, highest * 1.5);
    let error = |e: &dyn std::fmt::Display| format!("{title}: plot: {e}");

    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, (760, 440)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| error(&e))?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 15))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(70)
            .build_cartesian_2d(-1..threads.len() as i32, (ymin..ymax).log_scale())
            .map_err(|e| error(&e))?;
        chart
            .configure_mesh()
            .x_labels(threads.len() + 2)
            .x_label_formatter(&|&i| {
                usize::try_from(i)
                    .ok()
                    .and_then(|i| threads.get(i))
                    .map_or_else(String::new, usize::to_string)
            })
            .y_label_formatter(&|v| format!("{v}"))
            .x_desc("threads")
            .y_desc("Mops/s, all threads (log scale)")
            .light_line_style(WHITE)
            .draw()
            .map_err(|e| error(&e))?;
        for (n, line_of) in series.iter().enumerate() {
            let color = COLORS[n % COLORS.len()];
            let line: Vec<(i32, f64)> = line_of
                .points
                .iter()
                .map(|&(t, mid, _, _)| (x_of(t), mid))
                .collect();
            let style = color.stroke_width(2);
            let drawn = if line_of.name.starts_with("ioasid") {
                chart.draw_series(LineSeries::new(line, style))
            } else {
                chart.draw_series(DashedLineSeries::new(line, 6, 4, style))
            };
            drawn
                .map_err(|e| error(&e))?
                .label(line_of.name.as_str())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], style));
            chart
                .draw_series(
                    line_of
                        .points
                        .iter()
                        .filter(|&&(_, _, low, high)| low.is_finite() && high.is_finite())
                        .map(|&(t, mid, low, high)| {
                            ErrorBar::new_vertical(x_of(t), low, mid, high, color.filled(), 6)
                        }),
                )
                .map_err(|e| error(&e))?;
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()
            .map_err(|e| error(&e))?;
        root.present().map_err(|e| error(&e))?;
    }
    Ok(out)
}

/// One table of `cbench`'s output: its title and a series per contender.
#[derive(Debug, Clone, PartialEq)]
struct CbenchTable {
    title: String,
    series: Vec<Series>,
}

/// Parses `cbench`'s Markdown output: each `### title` table, its
/// contender columns (the ratio columns are left out), and per row the
/// thread count and each cell's `median [min-max]` (a lone median, from a
/// one-repetition run, gets no error bar).
fn parse_cbench(text: &str) -> Result<Vec<CbenchTable>, String> {
    let cells = |line: &str| -> Vec<String> {
        line.trim()
            .trim_matches('|')
            .split('|')
            .map(|c| c.trim().to_string())
            .collect()
    };
    let mut tables = Vec::new();
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        let Some(title) = line.strip_prefix("### ") else {
            continue;
        };
        while lines.peek().is_some_and(|l| l.trim().is_empty()) {
            lines.next();
        }
        let header = cells(lines.next().ok_or(format!("{title}: no header"))?);
        if header.first().map(String::as_str) != Some("threads") {
            return Err(format!("{title}: the header does not start with threads"));
        }
        lines.next(); // |---|---|
                      // Contender columns: every one but the thread count and the ratios.
        let columns: Vec<(usize, &String)> = header
            .iter()
            .enumerate()
            .skip(1)
            .filter(|(_, name)| !name.contains(" / "))
            .collect();
        let mut series: Vec<Series> = columns
            .iter()
            .map(|(_, name)| Series {
                name: name.to_string(),
                points: Vec::new(),
            })
            .collect();
        while let Some(row) = lines.next_if(|l| l.starts_with('|')) {
            let row = cells(row);
            let threads: usize = row[0]
                .parse()
                .map_err(|_| format!("{title}: bad thread count {:?}", row[0]))?;
            for (s, (column, _)) in series.iter_mut().zip(&columns) {
                let cell = row.get(*column).ok_or(format!("{title}: a row is short"))?;
                let number = |t: &str| {
                    t.trim()
                        .parse::<f64>()
                        .map_err(|_| format!("{title}: bad cell {cell:?}"))
                };
                let (mid, low, high) = match cell.split_once('[') {
                    Some((mid, range)) => {
                        let (low, high) = range
                            .trim_end_matches(']')
                            .split_once('-')
                            .ok_or(format!("{title}: bad range in {cell:?}"))?;
                        (number(mid)?, number(low)?, number(high)?)
                    }
                    None => (number(cell)?, f64::NAN, f64::NAN),
                };
                s.points.push((threads, mid, low, high));
            }
        }
        tables.push(CbenchTable {
            title: title.to_string(),
            series,
        });
    }
    if tables.is_empty() {
        return Err("no cbench tables (### title lines) in the input".into());
    }
    Ok(tables)
}

/// A file name for a cbench table: `c_` and its title up to the first
/// parenthesis, lower case, with runs of other characters as `_`.
fn cbench_slug(title: &str) -> String {
    let head = title.split('(').next().unwrap_or(title).to_lowercase();
    let mut slug = String::from("c");
    for word in head.split(|c: char| !c.is_ascii_alphanumeric()) {
        if !word.is_empty() {
            slug.push('_');
            slug.push_str(word);
        }
    }
    slug
}

const USAGE: &str = "\
usage: report [--criterion-dir DIR] [--plot-dir DIR]
       report --cbench FILE [--plot-dir DIR]

Prints the Markdown tables of BENCHMARKS.md from criterion's results and
writes one SVG plot per thread group. With --cbench, reads the output of
benches/c/run.sh (cbench's Markdown tables) instead and writes one SVG plot
per table, c_<title>.svg, with each cell's [min-max] as its error bar.

  --criterion-dir DIR  criterion's output (default target/criterion)
  --cbench FILE        cbench's output (- for standard input)
  --plot-dir DIR       where the plots go (default benches/plots)
  -h, --help           this text";

/// What to report from.
enum Input {
    Criterion(PathBuf),
    Cbench(PathBuf),
}

fn parse_args() -> Result<Option<(Input, PathBuf)>, lexopt::Error> {
    use lexopt::prelude::*;
    let mut input = Input::Criterion(PathBuf::from("target/criterion"));
    let mut plots = PathBuf::from("benches/plots");
    let mut parser = lexopt::Parser::from_env();
    while let Some(arg) = parser.next()? {
        match arg {
            Long("criterion-dir") => input = Input::Criterion(parser.value()?.into()),
            Long("cbench") => input = Input::Cbench(parser.value()?.into()),
            Long("plot-dir") => plots = parser.value()?.into(),
            Short('h') | Long("help") => return Ok(None),
            _ => return Err(arg.unexpected()),
        }
    }
    Ok(Some((input, plots)))
}

/// Plots every table of a cbench run into `plots`; prints the files made.
fn report_cbench(file: &Path, plots: &Path) -> Result<(), String> {
    let text = if file == Path::new("-") {
        std::io::read_to_string(std::io::stdin()).map_err(|e| format!("standard input: {e}"))?
    } else {
        fs::read_to_string(file).map_err(|e| format!("{}: {e}", file.display()))?
    };
    fs::create_dir_all(plots).map_err(|e| format!("{}: {e}", plots.display()))?;
    for table in parse_cbench(&text)? {
        let title = format!(
            "{} (C ABI)",
            table.title.split(" (").next().unwrap_or(&table.title)
        );
        let path = plots.join(format!("{}.svg", cbench_slug(&table.title)));
        fs::write(&path, svg(&title, &table.series)?)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        println!("{}", path.display());
    }
    Ok(())
}

fn main() {
    let (input, plots) = match parse_args() {
        Ok(Some(parsed)) => parsed,
        Ok(None) => {
            println!("{USAGE}");
            return;
        }
        Err(e) => {
            eprintln!("report: {e}\n\n{USAGE}");
            std::process::exit(2);
        }
    };
    let dir = match input {
        Input::Criterion(dir) => dir,
        Input::Cbench(file) => {
            if let Err(e) = report_cbench(&file, &plots) {
                eprintln!("report: {e}");
                std::process::exit(1);
            }
            return;
        }
    };
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
            let title = format!("{group}: total throughput vs threads (2-core machine)");
            let plot = svg(&title, &criterion_series(points)).unwrap_or_else(|e| panic!("{e}"));
            fs::write(&path, plot).expect("write plot");
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
            median_ci_ns: (median_ns * 0.9, median_ns * 1.2),
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
    }

    #[test]
    fn plot_has_log_axis_lines_error_bars_and_legend() {
        let points = [
            point("mutex-ida", 1, 100.0),
            point("mutex-ida", 2, 400.0),
            point("ioasid-any", 1, 50.0),
            point("ioasid-any", 2, 100.0),
        ];
        let refs: Vec<&Point> = points.iter().collect();
        let plot = svg("g: total throughput vs threads", &criterion_series(&refs)).unwrap();
        assert!(plot.starts_with("<svg"), "{plot}");
        assert!(plot.contains("g: total throughput vs threads"));
        assert!(plot.contains("(log scale)"));
        assert!(plot.contains("\nioasid-any\n") && plot.contains("\nmutex-ida\n"));
        // ioasid-any (second series, solid: its line is a polyline) has one
        // error bar per point: a marker and three lines (bar and caps).
        let color = r##"stroke="#FF7F0E""##;
        assert_eq!(
            plot.matches(&format!(r#"<line opacity="1" {color}"#))
                .count(),
            6
        );
        assert_eq!(plot.matches(r##"fill="#FF7F0E""##).count(), 2);
        assert!(plot.matches(r#"<polyline"#).count() >= 2);
    }

    #[test]
    fn units() {
        assert_eq!(time(12.34), "12.3 ns");
        assert_eq!(time(1500.0), "1.50 µs");
        assert_eq!(time(2.5e7), "25.00 ms");
    }

    const CBENCH: &str = "\
commit: abc1234
### alloc+free pairs, Lowest (ioasid_alloc on a DECLARE_IOASID_SET / ioasid_free, global space)

| threads | ioasid | mutex-ida | ioasid / best lock |
|---|---|---|---|
| 1 | 16.63 [14.91-25.96] | 51.91 [31.90-52.62] | 0.32x |
| 2 | 3.26 [3.12-7.27] | 6.39 [5.29-7.86] | 0.51x |

### find, 1024 hot IDs

| threads | ioasid | ioasid-nolock | mutex-ida | ioasid / best lock | ioasid-nolock / best lock |
|---|---|---|---|---|---|
| 1 | 20.5 | 80.25 | 40.0 | 0.51x | 2.01x |

cbench: no errors
";

    #[test]
    fn cbench_tables_parse_into_series_without_the_ratios() {
        let tables = parse_cbench(CBENCH).unwrap();
        assert_eq!(tables.len(), 2);
        assert!(tables[0].title.starts_with("alloc+free pairs, Lowest ("));
        assert_eq!(
            tables[0].series,
            vec![
                Series {
                    name: "ioasid".into(),
                    points: vec![(1, 16.63, 14.91, 25.96), (2, 3.26, 3.12, 7.27)],
                },
                Series {
                    name: "mutex-ida".into(),
                    points: vec![(1, 51.91, 31.90, 52.62), (2, 6.39, 5.29, 7.86)],
                },
            ]
        );
        let names: Vec<&str> = tables[1].series.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["ioasid", "ioasid-nolock", "mutex-ida"]);
        let (t, mid, low, high) = tables[1].series[1].points[0];
        assert_eq!((t, mid), (1, 80.25));
        assert!(
            low.is_nan() && high.is_nan(),
            "one repetition: no error bar"
        );
        assert_eq!(cbench_slug(&tables[0].title), "c_alloc_free_pairs_lowest");
        assert_eq!(cbench_slug(&tables[1].title), "c_find_1024_hot_ids");
    }

    #[test]
    fn cbench_input_errors_are_reported() {
        assert!(parse_cbench("no tables here").is_err());
        assert!(parse_cbench("### t\n\n| x | a |\n|---|---|\n").is_err());
        let bad = "### t\n\n| threads | a |\n|---|---|\n| 1 | 2.0 [1.0] |\n";
        assert!(parse_cbench(bad).unwrap_err().contains("bad range"));
    }

    #[test]
    fn cbench_plot_draws_every_contender() {
        let tables = parse_cbench(CBENCH).unwrap();
        let plot = svg("alloc+free pairs, Lowest (C ABI)", &tables[0].series).unwrap();
        assert!(plot.contains("(log scale)"));
        assert!(plot.contains("\nioasid\n") && plot.contains("\nmutex-ida\n"));
        // mutex-ida (second colour) has an error bar at both points.
        assert_eq!(plot.matches(r##"fill="#FF7F0E""##).count(), 2);
    }
}
