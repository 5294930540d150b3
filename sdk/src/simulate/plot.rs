//! `write_svg`: one panel per experiment; per variant, the observed minus the expected share
//! of eligible units in percentage points, with a 95% interval (plotters, SVG backend only;
//! text is left to the SVG viewer's sans-serif font).
//!
//! The interval is the Wilson score interval of the observed share (the normal approximation
//! to the binomial, well behaved near 0% and 100%), shifted by the expected share: a healthy
//! split has every interval across the zero line.

use super::error::SimulateError;
use super::report::{ExperimentReport, SimulationReport};
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use std::path::Path;

const BAR: RGBColor = RGBColor(0x33, 0x66, 0xcc);
const WHISKER: RGBColor = RGBColor(0x22, 0x22, 0x22);
const PANEL_HEIGHT: u32 = 320;
const TITLE_HEIGHT: u32 = 76;
/// Horizontal room per variant, in pixels (labels are shortened to fit it).
const SLOT_WIDTH: u32 = 210;
/// Room left of the plotting area (y labels and description) and right of it.
const Y_LABEL_AREA: u32 = 70;
const MARGIN: u32 = 15;
/// Room under the plotting area for the two label lines of each variant.
const X_LABEL_AREA: u32 = 44;
/// z for a two-sided 95% interval.
const Z95: f64 = 1.959_963_984_540_054;

/// One variant as drawn: differences in percentage points.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Point {
    /// Observed minus expected share, pp.
    diff: f64,
    /// The 95% interval of `diff`, pp.
    low: f64,
    high: f64,
}

/// The Wilson score interval (95%) of a share `p` observed on `n` units.
fn wilson(p: f64, n: u64) -> (f64, f64) {
    if n == 0 {
        return (0.0, 1.0);
    }
    let n = n as f64;
    let z2 = Z95 * Z95;
    let denom = 1.0 + z2 / n;
    let centre = (p + z2 / (2.0 * n)) / denom;
    let half = Z95 / denom * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt();
    ((centre - half).max(0.0), (centre + half).min(1.0))
}

fn point(observed: f64, expected: f64, eligible: u64) -> Point {
    let (lo, hi) = wilson(observed, eligible);
    Point {
        diff: (observed - expected) * 100.0,
        low: (lo - expected) * 100.0,
        high: (hi - expected) * 100.0,
    }
}

/// `+0.12`, `-0.30`: a signed number of percentage points.
fn pp(x: f64, decimals: usize) -> String {
    let x = if x.abs() < 0.5 * 10f64.powi(-(decimals as i32)) {
        0.0
    } else {
        x
    };
    format!("{x:+.decimals$}")
}

/// `text` cut to at most `max` characters, with `…` when cut.
fn fit(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_string()
    } else {
        let mut s: String = text.chars().take(max.saturating_sub(1)).collect();
        s.push('…');
        s
    }
}

/// Renders `report` as an SVG document (see [`write_svg`]). Fails for a report without
/// units: there is nothing to draw.
pub(crate) fn render_svg(report: &SimulationReport) -> Result<String, String> {
    if report.units == 0 {
        return Err("no units were simulated, so there is nothing to plot".to_string());
    }
    let nv_max = report
        .experiments
        .iter()
        .map(|e| e.variants.len())
        .max()
        .unwrap_or(1)
        .max(1) as u32;
    let width = (Y_LABEL_AREA + 2 * MARGIN + SLOT_WIDTH * nv_max).max(900);
    let panels = report.experiments.len().max(1) as u32;
    let height = TITLE_HEIGHT + PANEL_HEIGHT * panels;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (width, height)).into_drawing_area();
        let err = |e: &dyn std::fmt::Display| e.to_string();
        root.fill(&WHITE).map_err(|e| err(&e))?;
        let (title, body) = root.split_vertically(TITLE_HEIGHT);
        // ~0.6 em per character of a sans-serif font.
        let chars = |px: u32, size: u32| (px as f64 / (0.6 * size as f64)) as usize;
        let heading = fit(
            &format!(
                "abkit simulate: {} units from {}",
                super::render::thousands(report.units),
                report.input
            ),
            chars(width - 20, 18),
        );
        let lines = [
            (heading.as_str(), 18, 8),
            (
                "Bars: observed minus expected share of eligible units, in percentage points (pp); 0 = exactly as configured.",
                12,
                36,
            ),
            (
                "Whiskers: 95% interval (Wilson score interval, the normal approximation to the binomial). A healthy split crosses 0.",
                12,
                54,
            ),
        ];
        for (text, size, y) in lines {
            title
                .draw_text(
                    &fit(text, chars(width - 20, size)),
                    &TextStyle::from(("sans-serif", size)).pos(Pos::new(HPos::Left, VPos::Top)),
                    (10, y),
                )
                .map_err(|e| err(&e))?;
        }
        for (area, e) in body
            .split_evenly((panels as usize, 1))
            .iter()
            .zip(&report.experiments)
        {
            panel(area, e, &root).map_err(|e| err(&e))?;
        }
        root.present().map_err(|e| err(&e))?;
    }
    Ok(svg)
}

type Area<'a> = DrawingArea<SVGBackend<'a>, plotters::coord::Shift>;
type DrawResult = Result<(), DrawingAreaErrorKind<std::io::Error>>;

/// One experiment's panel.
fn panel(area: &Area<'_>, e: &ExperimentReport, root: &Area<'_>) -> DrawResult {
    let caption = format!(
        "{}  (SRM {}, p = {:.4}; {} eligible units)",
        e.key,
        e.srm.verdict.as_str(),
        e.srm.p_value,
        super::render::thousands(e.eligible)
    );
    let (w, _) = area.dim_in_pixel();
    let caption = fit(&caption, (w as f64 / (0.6 * 15.0)) as usize);
    let nv = e.variants.len();
    if e.eligible == 0 || nv == 0 {
        area.draw_text(
            &caption,
            &TextStyle::from(("sans-serif", 15)).pos(Pos::new(HPos::Left, VPos::Top)),
            (MARGIN as i32, 10),
        )?;
        return area.draw_text(
            "no eligible units (disabled, or no unit passed targeting): nothing to compare",
            &TextStyle::from(("sans-serif", 13)).pos(Pos::new(HPos::Left, VPos::Top)),
            (MARGIN as i32, 40),
        );
    }
    let points: Vec<Point> = e
        .variants
        .iter()
        .map(|v| point(v.observed_share, v.expected_share, e.eligible))
        .collect();
    let reach = points
        .iter()
        .flat_map(|p| [p.diff.abs(), p.low.abs(), p.high.abs()])
        .filter(|x| x.is_finite())
        .fold(0.0f64, f64::max)
        .max(0.01);
    // Headroom above the whiskers for the value labels.
    let top = reach * 1.45;
    let decimals = if reach >= 10.0 {
        1
    } else if reach >= 0.1 {
        2
    } else {
        3
    };
    let mut chart = ChartBuilder::on(area)
        .caption(caption, ("sans-serif", 15))
        .margin(MARGIN)
        .x_label_area_size(X_LABEL_AREA)
        .y_label_area_size(Y_LABEL_AREA)
        .build_cartesian_2d(-0.5..(nv as f64 - 0.5), -top..top)?;
    let y_label = |y: &f64| pp(*y, decimals);
    chart
        .configure_mesh()
        .disable_x_mesh()
        .disable_x_axis()
        .x_labels(0)
        .light_line_style(WHITE)
        .y_labels(7)
        .y_label_formatter(&y_label)
        .y_desc("observed − expected (pp)")
        .draw()?;
    // The zero line: the configured split.
    chart.draw_series(std::iter::once(PathElement::new(
        vec![(-0.5, 0.0), (nv as f64 - 0.5, 0.0)],
        BLACK.stroke_width(1),
    )))?;
    chart.draw_series(points.iter().enumerate().map(|(i, p)| {
        let x = i as f64;
        Rectangle::new([(x - 0.28, 0.0), (x + 0.28, p.diff)], BAR.mix(0.8).filled())
    }))?;
    for (i, p) in points.iter().enumerate() {
        let x = i as f64;
        let whisker = WHISKER.stroke_width(2);
        chart.draw_series([
            PathElement::new(vec![(x, p.low), (x, p.high)], whisker),
            PathElement::new(vec![(x - 0.06, p.low), (x + 0.06, p.low)], whisker),
            PathElement::new(vec![(x - 0.06, p.high), (x + 0.06, p.high)], whisker),
        ])?;
        let label = format!(
            "{} pp  [{}, {}]",
            pp(p.diff, decimals),
            pp(p.low, decimals),
            pp(p.high, decimals)
        );
        let above = p.high.max(p.diff).max(0.0);
        chart.draw_series(std::iter::once(Text::new(
            label,
            (x, above),
            TextStyle::from(("sans-serif", 12)).pos(Pos::new(HPos::Center, VPos::Bottom)),
        )))?;
    }
    // Variant names centred under their bars, on the canvas (absolute pixels).
    let max_chars = (SLOT_WIDTH as f64 / (0.6 * 13.0)) as usize - 1;
    for (i, v) in e.variants.iter().enumerate() {
        let (x, y) = chart.backend_coord(&(i as f64, -top));
        let centred = |size: u32| {
            TextStyle::from(("sans-serif", size)).pos(Pos::new(HPos::Center, VPos::Top))
        };
        root.draw(&Text::new(fit(&v.name, max_chars), (x, y + 6), centred(13)))?;
        let shares = format!(
            "obs {:.2}% vs exp {:.2}%",
            v.observed_share * 100.0,
            v.expected_share * 100.0
        );
        root.draw(&Text::new(
            fit(&shares, (SLOT_WIDTH as f64 / (0.6 * 11.0)) as usize - 1),
            (x, y + 24),
            centred(11),
        ))?;
    }
    Ok(())
}

/// Writes `report` as an SVG chart to `path`: per experiment, for each variant, the observed
/// minus the expected share of eligible units in percentage points (bars), with its 95%
/// Wilson score interval (whiskers; the normal approximation to the binomial), a zero line
/// and the SRM verdict. A report without units is refused and no file is written.
pub fn write_svg(report: &SimulationReport, path: &Path) -> Result<(), SimulateError> {
    let fail = |message: String| SimulateError::Plot {
        path: path.to_path_buf(),
        message,
    };
    let svg = render_svg(report).map_err(fail)?;
    std::fs::write(path, svg).map_err(|e| fail(e.to_string()))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::simulate::{run, SimulateOptions, SyntheticSpec, UnitSource};

    fn report(n: u64) -> SimulationReport {
        let sdk = crate::Sdk::from_toml_str(
            "[[experiments]]\nkey = \"checkout_button\"\nvariants = [ { name = \"control\", weight = 1 }, { name = \"treatment\", weight = 1 }, { name = \"a-variant-with-a-very-long-name-that-cannot-fit-in-its-slot\", weight = 2 } ]\n",
        )
        .unwrap();
        let opts = SimulateOptions {
            now_ms: Some(0),
            allow_empty: true,
            ..SimulateOptions::default()
        };
        run(
            &sdk.snapshot(),
            UnitSource::synthetic(SyntheticSpec::new(n)),
            &opts,
        )
        .unwrap()
    }

    /// Every number of attribute `name` in the SVG.
    fn attr_values(svg: &str, name: &str) -> Vec<f64> {
        let key = format!(" {name}=\"");
        svg.match_indices(&key)
            .filter_map(|(i, _)| {
                let rest = &svg[i + key.len()..];
                rest[..rest.find('"')?].parse().ok()
            })
            .collect()
    }

    #[test]
    fn the_chart_shows_differences_with_intervals_inside_the_canvas() {
        // Before: observed and expected bars side by side, labels under one bar of each pair,
        // the last bar against the edge.
        let r = report(20_000);
        let svg = render_svg(&r).unwrap();
        let (w, h) = (
            attr_values(&svg, "width")[0],
            attr_values(&svg, "height")[0],
        );
        assert!(svg.contains(&format!("viewBox=\"0 0 {w} {h}\"")), "{svg}");
        for name in ["control", "treatment"] {
            assert_eq!(svg.matches(&format!(">\n{name}\n<")).count(), 1, "{name}");
        }
        assert_eq!(svg.matches(">\na-variant-with-a-very-lo").count(), 1);
        assert!(svg.contains("95% interval (Wilson score interval"), "{svg}");
        assert!(svg.contains("observed − expected (pp)"));
        // The interval of each variant, as computed here, is printed.
        let e = &r.experiments[0];
        for v in &e.variants {
            let p = point(v.observed_share, v.expected_share, e.eligible);
            assert!(p.low < p.diff && p.diff < p.high, "{p:?}");
            let label = format!(
                "{} pp  [{}, {}]",
                pp(p.diff, 2),
                pp(p.low, 2),
                pp(p.high, 2)
            );
            assert!(svg.contains(&label), "{label} not in the chart");
        }
        for (axis, max) in [
            ("x", w),
            ("x1", w),
            ("x2", w),
            ("y", h),
            ("y1", h),
            ("y2", h),
        ] {
            for v in attr_values(&svg, axis) {
                assert!((0.0..=max).contains(&v), "{axis}={v} outside 0..{max}");
            }
        }
        for (i, _) in svg.match_indices(" points=\"") {
            let rest = &svg[i + 9..];
            for pair in rest[..rest.find('"').unwrap()].split_whitespace() {
                let (x, y) = pair.split_once(',').unwrap();
                let (x, y): (f64, f64) = (x.parse().unwrap(), y.parse().unwrap());
                assert!((0.0..=w).contains(&x) && (0.0..=h).contains(&y), "{pair}");
            }
        }
        // Centred text: half its estimated width (0.6 em a character) fits either side.
        for (i, _) in svg.match_indices("<text") {
            let tag = &svg[i..];
            let end = tag.find("</text>").unwrap();
            let tag = &tag[..end];
            let x: f64 = attr_values(tag, "x")[0];
            let size: f64 = tag
                .split("font-size=\"")
                .nth(1)
                .and_then(|s| s.split('"').next())
                .and_then(|s| s.parse().ok())
                .unwrap_or(12.0);
            let chars = tag[tag.find('>').unwrap() + 1..].trim().chars().count() as f64;
            let half = chars * 0.6 * size / 2.0;
            if tag.contains("rotate") {
                let y = attr_values(tag, "y")[0];
                assert!(y - half >= 0.0 && y + half <= h, "clipped: {tag}");
            } else if tag.contains("text-anchor=\"middle\"") {
                assert!(x - half >= 0.0 && x + half <= w, "clipped: {tag}");
            } else if !tag.contains("text-anchor=\"end\"") {
                assert!(x + 2.0 * half <= w, "clipped: {tag}");
            }
        }
    }

    #[test]
    fn wilson_intervals_are_sane() {
        let (lo, hi) = wilson(0.5, 10_000);
        assert!(
            (lo - 0.490_2).abs() < 1e-3 && (hi - 0.509_8).abs() < 1e-3,
            "{lo} {hi}"
        );
        let (lo, hi) = wilson(0.0, 100);
        assert!(lo.abs() < 1e-12 && hi > 0.03, "{lo} {hi}");
    }

    #[test]
    fn no_chart_for_a_report_without_units() {
        // Before: 0% bars were drawn for an empty input.
        assert!(render_svg(&report(0))
            .unwrap_err()
            .contains("nothing to plot"));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("split.svg");
        let e = write_svg(&report(0), &path).unwrap_err();
        assert!(e.to_string().contains("nothing to plot"), "{e}");
        assert!(!path.exists());
    }
}
