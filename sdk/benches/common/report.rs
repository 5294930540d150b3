//! Prints benchmark results as a Markdown table of ratios against a baseline measured in the
//! same run (criterion writes each estimate to `<target>/criterion/<id>/new/estimates.json`).

use std::path::PathBuf;

/// Where this run's criterion output goes (also passed to `Criterion::output_directory`).
pub fn output_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(t) => PathBuf::from(t).join("criterion"),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/criterion"),
    }
}

/// Mean time per iteration in ns of benchmark `id` (`group/function`), if it ran.
pub fn mean_ns(id: &str) -> Option<f64> {
    let path = output_dir().join(id).join("new/estimates.json");
    let text = std::fs::read_to_string(path).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    v["mean"]["point_estimate"].as_f64()
}

/// Prints `| benchmark | mean | vs baseline |` rows; `rows` pairs each id with its baseline id.
pub fn print_ratio_table(title: &str, rows: &[(&str, &str)]) {
    println!("\n### {title}\n\n| benchmark | mean | ratio to baseline |\n|---|---|---|");
    for (id, base) in rows {
        match (mean_ns(id), mean_ns(base)) {
            (Some(m), Some(b)) => println!("| `{id}` | {m:.1} ns | {:.2}x `{base}` |", m / b),
            (Some(m), None) => println!("| `{id}` | {m:.1} ns | (baseline `{base}` not run) |"),
            _ => {}
        }
    }
}
