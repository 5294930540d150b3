//! Text renderings of the reports: aligned tables for terminals and long-format CSV.

use super::diff::DiffReport;
use super::report::SimulationReport;
use super::stats::ChiSquare;
use std::fmt::Write;

/// A table whose columns are padded to their widest cell; numeric columns align right.
struct Table {
    rows: Vec<Vec<String>>,
    right: Vec<bool>,
}

impl Table {
    fn new(header: &[&str], right: &[bool]) -> Self {
        Table {
            rows: vec![header.iter().map(|h| h.to_string()).collect()],
            right: right.to_vec(),
        }
    }

    fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    fn render(&self, indent: &str, out: &mut String) {
        let cols = self.rows.iter().map(Vec::len).max().unwrap_or(0);
        let width: Vec<usize> = (0..cols)
            .map(|c| {
                self.rows
                    .iter()
                    .filter_map(|r| r.get(c))
                    .map(|s| s.chars().count())
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        for r in &self.rows {
            let mut line = String::from(indent);
            for (c, cell) in r.iter().enumerate() {
                if c > 0 {
                    line.push_str("  ");
                }
                let pad = width[c].saturating_sub(cell.chars().count());
                if self.right.get(c).copied().unwrap_or(false) {
                    line.extend(std::iter::repeat_n(' ', pad));
                    line.push_str(cell);
                } else {
                    line.push_str(cell);
                    line.extend(std::iter::repeat_n(' ', pad));
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
    }
}

/// `1234567` -> `1,234,567`.
pub(crate) fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

/// `rows read 100,000 = units 99,999 + skipped 1 (malformed)`: every row accounted for.
fn rows_line(rows: u64, units: u64, skipped: u64) -> String {
    format!(
        "rows read {} = units {} + skipped {} (malformed)",
        thousands(rows),
        thousands(units),
        thousands(skipped)
    )
}

fn pct(x: f64) -> String {
    format!("{:.2}%", 100.0 * x)
}

fn p_value(p: f64) -> String {
    if p.is_nan() {
        "-".to_string()
    } else if p > 0.0 && p < 1e-4 {
        format!("{p:.1e}")
    } else {
        format!("{p:.4}")
    }
}

fn chi2(x: f64) -> String {
    if x.is_infinite() {
        "inf".to_string()
    } else {
        format!("{x:.2}")
    }
}

fn test_line(t: &ChiSquare) -> String {
    format!(
        "chi2 {} df {} p {} adjusted {} {} ({})",
        chi2(t.chi2),
        t.df,
        p_value(t.p_value),
        p_value(t.p_adjusted),
        t.verdict.as_str(),
        t.method
    )
}

impl SimulationReport {
    /// Pretty JSON (the documented contract).
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
    }

    /// An aligned, human-readable table.
    pub fn to_table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{} unit{} from {}, {} experiment{}, clock {} ms",
            thousands(self.units),
            if self.units == 1 { "" } else { "s" },
            self.input,
            self.experiments.len(),
            if self.experiments.len() == 1 { "" } else { "s" },
            self.now_ms
        );
        let _ = writeln!(
            out,
            "{}",
            rows_line(self.rows_read, self.units, self.skipped_lines.count)
        );
        for e in &self.experiments {
            let layer = e.layer.as_ref().map_or("no layer".to_string(), |l| {
                format!("layer {} [{}, {})", l.name, l.start, l.end)
            });
            let state = if e.enabled { "" } else { "  DISABLED" };
            let _ = writeln!(
                out,
                "\n{}  {}  coverage {}  {}{}",
                e.key,
                e.strategy,
                pct(f64::from(e.coverage_bp) / 10_000.0),
                layer,
                state
            );
            let mut t = Table::new(
                &[
                    "variant",
                    "weight",
                    "units",
                    "by strategy",
                    "overridden",
                    "observed",
                    "expected",
                    "nominal",
                ],
                &[false, true, true, true, true, true, true, true],
            );
            for v in &e.variants {
                t.row(vec![
                    v.name.clone(),
                    v.weight.to_string(),
                    thousands(v.count),
                    thousands(v.assigned),
                    thousands(v.overridden),
                    if e.eligible == 0 {
                        "-".to_string()
                    } else {
                        pct(v.observed_share)
                    },
                    pct(v.expected_share),
                    pct(v.nominal_share),
                ]);
            }
            t.render("  ", &mut out);
            let _ = writeln!(
                out,
                "  enrolled {} of {}; eligible (passed targeting, not overridden) {}; shares are of eligible units",
                thousands(e.enrolled),
                thousands(self.units),
                thousands(e.eligible)
            );
            let ne: Vec<String> = e
                .not_enrolled
                .0
                .iter()
                .filter(|(_, n)| *n > 0)
                .map(|(r, n)| format!("{r} {}", thousands(*n)))
                .collect();
            let _ = writeln!(
                out,
                "  not enrolled: {}",
                if ne.is_empty() {
                    "none".to_string()
                } else {
                    ne.join(", ")
                }
            );
            if let Some(c) = &e.srm.clusters {
                let list: Vec<String> = c.iter().map(|n| thousands(*n)).collect();
                let _ = writeln!(
                    out,
                    "  clusters ({}) per variant: {}; outside coverage {}",
                    e.srm.unit,
                    list.join(" / "),
                    thousands(e.srm.clusters_outside_coverage)
                );
            }
            let _ = writeln!(out, "  SRM split:    {}", test_line(&e.srm.split));
            let _ = writeln!(out, "  SRM coverage: {}", test_line(&e.srm.coverage));
            if let Some(h) = &e.srm.holdout {
                let _ = writeln!(out, "  SRM holdout:  {}", test_line(h));
            }
            if let Some(note) = &e.srm.note {
                let _ = writeln!(out, "  note: {note}");
            }
        }
        if !self.layers.is_empty() {
            out.push_str("\nlayers (units enrolled in more than one experiment of the layer)\n");
            let mut t = Table::new(
                &["layer", "experiments", "in >1", "by strategy", "verdict"],
                &[false, false, true, true, false],
            );
            for l in &self.layers {
                t.row(vec![
                    l.name.clone(),
                    l.experiments.join(", "),
                    thousands(l.units_in_more_than_one),
                    thousands(l.units_in_more_than_one_by_strategy),
                    l.verdict.as_str().to_string(),
                ]);
            }
            t.render("  ", &mut out);
        }
        if !self.independence.is_empty() {
            out.push_str("\nindependence (over units both strategies placed in a variant)\n");
            let mut t = Table::new(
                &[
                    "a", "b", "units", "chi2", "df", "p", "adjusted", "verdict", "method",
                ],
                &[false, false, true, true, true, true, true, false, false],
            );
            for p in &self.independence {
                t.row(vec![
                    p.a.clone(),
                    p.b.clone(),
                    thousands(p.units),
                    chi2(p.test.chi2),
                    p.test.df.to_string(),
                    p_value(p.test.p_value),
                    p_value(p.test.p_adjusted),
                    p.test.verdict.as_str().to_string(),
                    p.test.method.to_string(),
                ]);
            }
            t.render("  ", &mut out);
        }
        let _ = writeln!(
            out,
            "\np-values adjusted across the report's {} tests by Holm's method; verdicts use the adjusted p-value (mismatch below {})",
            self.tests,
            super::stats::ALPHA
        );
        out
    }

    /// Long-format CSV: `section,experiment,name,count,observed_share,expected_share,chi2,df,p_value,verdict`.
    /// Sections: `units`, `rows_read`, `skipped_lines` (count = each number), `variant`, `not_enrolled` (name = reason), `srm` (name = `split` or
    /// `coverage`, count = units tested), `layer` (experiment = layer, name = its experiments
    /// joined by `;`, count = units in more than one by strategy), `independence`
    /// (experiment = a, name = b, count = units in both).
    pub fn to_csv(&self) -> String {
        let mut out = String::from(
            "section,experiment,name,count,observed_share,expected_share,chi2,df,p_value,verdict,p_adjusted\n",
        );
        let mut row = |cells: [&str; 10], adjusted: &str| {
            let mut line = Vec::with_capacity(11);
            for c in cells.into_iter().chain([adjusted]) {
                let mut buf = Vec::new();
                let _ = crate::bulk::write_csv_field(&mut buf, c);
                line.push(String::from_utf8_lossy(&buf).into_owned());
            }
            out.push_str(&line.join(","));
            out.push('\n');
        };
        let test = |t: &ChiSquare| {
            [
                if t.chi2.is_infinite() {
                    "inf".to_string()
                } else {
                    t.chi2.to_string()
                },
                t.df.to_string(),
                t.p_value.to_string(),
                t.p_adjusted.to_string(),
            ]
        };
        for (section, n) in [
            ("units", self.units),
            ("rows_read", self.rows_read),
            ("skipped_lines", self.skipped_lines.count),
        ] {
            row(
                [section, "", "", &n.to_string(), "", "", "", "", "", ""],
                "",
            );
        }
        for e in &self.experiments {
            for v in &e.variants {
                row(
                    [
                        "variant",
                        &e.key,
                        &v.name,
                        &v.count.to_string(),
                        &v.observed_share.to_string(),
                        &v.expected_share.to_string(),
                        "",
                        "",
                        "",
                        "",
                    ],
                    "",
                );
            }
            for (r, n) in &e.not_enrolled.0 {
                row(
                    [
                        "not_enrolled",
                        &e.key,
                        r.as_str(),
                        &n.to_string(),
                        "",
                        "",
                        "",
                        "",
                        "",
                        "",
                    ],
                    "",
                );
            }
            let total: u64 = e.variants.iter().map(|v| v.assigned).sum();
            for (name, t, n) in [
                ("split", &e.srm.split, total),
                ("coverage", &e.srm.coverage, e.eligible),
            ] {
                let [c, d, p, adj] = test(t);
                row(
                    [
                        "srm",
                        &e.key,
                        name,
                        &n.to_string(),
                        "",
                        "",
                        &c,
                        &d,
                        &p,
                        t.verdict.as_str(),
                    ],
                    &adj,
                );
            }
        }
        for l in &self.layers {
            row(
                [
                    "layer",
                    &l.name,
                    &l.experiments.join(";"),
                    &l.units_in_more_than_one_by_strategy.to_string(),
                    "",
                    "",
                    "",
                    "",
                    "",
                    l.verdict.as_str(),
                ],
                "",
            );
        }
        for p in &self.independence {
            let [c, d, pv, adj] = test(&p.test);
            row(
                [
                    "independence",
                    &p.a,
                    &p.b,
                    &p.units.to_string(),
                    "",
                    "",
                    &c,
                    &d,
                    &pv,
                    p.test.verdict.as_str(),
                ],
                &adj,
            );
        }
        out
    }
}

impl DiffReport {
    /// Pretty JSON (the documented contract).
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
    }

    /// An aligned summary table, then each changed experiment's transition matrix.
    pub fn to_table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{} unit{} from {}, clock {} ms\n{}\n",
            thousands(self.units),
            if self.units == 1 { "" } else { "s" },
            self.input,
            self.now_ms,
            rows_line(self.rows_read, self.units, self.skipped_lines.count)
        );
        let mut t = Table::new(
            &[
                "experiment",
                "moved",
                "moved %",
                "entered",
                "entered %",
                "left",
                "left %",
                "note",
            ],
            &[false, true, true, true, true, true, true, false],
        );
        for e in &self.experiments {
            let note = match (e.in_from, e.in_to) {
                (true, false) => "removed",
                (false, true) => "added",
                _ => "",
            };
            t.row(vec![
                e.key.clone(),
                thousands(e.moved),
                pct(e.moved_share),
                thousands(e.entered),
                pct(e.entered_share),
                thousands(e.left),
                pct(e.left_share),
                note.to_string(),
            ]);
        }
        t.render("", &mut out);
        for e in self
            .experiments
            .iter()
            .filter(|e| e.moved + e.entered + e.left > 0)
        {
            let _ = writeln!(
                out,
                "\n{} transitions (rows: from, columns: to, - = not enrolled)",
                e.key
            );
            let mut header: Vec<&str> = vec!["from \\ to"];
            header.extend(e.to_variants.iter().map(String::as_str));
            header.push("-");
            let mut right = vec![true; header.len()];
            right[0] = false;
            let mut t = Table::new(&header, &right);
            let rows = e
                .from_variants
                .iter()
                .map(|v| Some(v.as_str()))
                .chain(std::iter::once(None));
            for from in rows {
                let mut cells = vec![from.unwrap_or("-").to_string()];
                let cols = e
                    .to_variants
                    .iter()
                    .map(|v| Some(v.as_str()))
                    .chain(std::iter::once(None));
                cells.extend(cols.map(|to| thousands(e.transition(from, to))));
                t.row(cells);
            }
            t.render("  ", &mut out);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands_groups_digits() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(12_345_678), "12,345,678");
    }

    #[test]
    fn tables_align_columns() {
        let mut t = Table::new(&["a", "n"], &[false, true]);
        t.row(vec!["long name".into(), "1".into()]);
        let mut out = String::new();
        t.render("", &mut out);
        assert_eq!(out, "a          n\nlong name  1\n");
    }
}
