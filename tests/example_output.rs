//! The number formatting and summary layout the demo and the soak print
//! (examples/common), checked on edge cases a short run may not hit.

#[path = "../examples/common/mod.rs"]
mod common;

use common::{grouped, grouped_f64, Summary};

#[test]
fn thousands_separators() {
    assert_eq!(grouped(0), "0");
    assert_eq!(grouped(999), "999");
    assert_eq!(grouped(1_000), "1,000");
    assert_eq!(grouped(12_345), "12,345");
    assert_eq!(grouped(123_456), "123,456");
    assert_eq!(grouped(1_234_567), "1,234,567");
    assert_eq!(grouped(u64::MAX), "18,446,744,073,709,551,615");
    assert_eq!(grouped_f64(1_784_445.6), "1,784,446");
    assert_eq!(grouped_f64(-3.0), "0");
}

#[test]
fn summary_columns_line_up() {
    let mut summary = Summary::new("summary");
    summary
        .count("operations", 48_043_664, "23.36 M ops/s")
        .count("errors", 0, "")
        .text("rebinds (set_data)", "7", "note");
    let lines = summary.lines();
    assert_eq!(
        lines,
        [
            "summary",
            "  operations          48,043,664  23.36 M ops/s",
            "  errors                       0",
            "  rebinds (set_data)           7  note",
        ]
    );
}
