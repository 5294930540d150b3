//! `write_svg`: one bar chart panel per experiment, observed vs expected share per variant
//! (plotters, SVG backend only; text is left to the SVG viewer's sans-serif font). The x axis
//! has three segments per variant: observed, expected, a gap.

use super::error::SimulateError;
use super::report::SimulationReport;
use plotters::coord::ranged1d::SegmentValue;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use std::path::Path;

const OBSERVED: RGBColor = RGBColor(0x33, 0x66, 0xcc);
const EXPECTED: RGBColor = RGBColor(0xaa, 0xaa, 0xaa);
const PANEL_HEIGHT: u32 = 300;
const TITLE_HEIGHT: u32 = 40;

/// Writes `report` as an SVG bar chart to `path`: per experiment, for each variant, the observed
/// share of eligible units (blue) beside the expected share (grey), with the SRM verdict.
pub fn write_svg(report: &SimulationReport, path: &Path) -> Result<(), SimulateError> {
    let fail = |message: String| SimulateError::Plot {
        path: path.to_path_buf(),
        message,
    };
    let panels = report.experiments.len().max(1) as u32;
    let root =
        SVGBackend::new(path, (900, TITLE_HEIGHT + PANEL_HEIGHT * panels)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| fail(e.to_string()))?;
    let (title, body) = root.split_vertically(TITLE_HEIGHT);
    let heading = format!(
        "abkit simulate: observed vs expected share of eligible units ({} units from {})",
        report.units, report.input
    );
    title
        .draw_text(
            &heading,
            &TextStyle::from(("sans-serif", 18)).pos(Pos::new(HPos::Left, VPos::Top)),
            (10, 10),
        )
        .map_err(|e| fail(e.to_string()))?;
    for (area, e) in body
        .split_evenly((panels as usize, 1))
        .iter()
        .zip(&report.experiments)
    {
        let nv = e.variants.len();
        let top = e
            .variants
            .iter()
            .map(|v| v.observed_share.max(v.expected_share))
            .fold(0.0f64, f64::max);
        // headroom above the bars for the value labels and the legend
        let y_max = if top > 0.0 { top * 1.45 } else { 0.01 };
        let caption = format!(
            "{}  (SRM {}, p = {:.4})",
            e.key,
            e.srm.verdict.as_str(),
            e.srm.p_value
        );
        let mut chart = ChartBuilder::on(area)
            .caption(caption, ("sans-serif", 16))
            .margin(10)
            .x_label_area_size(30)
            .y_label_area_size(60)
            .build_cartesian_2d((0..(3 * nv).max(2) - 2).into_segmented(), 0.0..y_max)
            .map_err(|e| fail(e.to_string()))?;
        let names: Vec<String> = e.variants.iter().map(|v| v.name.clone()).collect();
        let x_label = |x: &SegmentValue<usize>| match x {
            SegmentValue::CenterOf(k) if k % 3 == 0 => {
                names.get(k / 3).cloned().unwrap_or_default()
            }
            _ => String::new(),
        };
        let decimals = if y_max >= 0.05 {
            0
        } else if y_max >= 0.005 {
            1
        } else {
            2
        };
        let y_label = |y: &f64| format!("{:.*}%", decimals, y * 100.0);
        chart
            .configure_mesh()
            .disable_x_mesh()
            .light_line_style(WHITE)
            .x_labels(3 * nv)
            .x_label_formatter(&x_label)
            .y_label_formatter(&y_label)
            .y_desc("share of eligible units")
            .draw()
            .map_err(|e| fail(e.to_string()))?;
        for (series, color, offset) in [("observed", OBSERVED, 0), ("expected", EXPECTED, 1)] {
            let bars = e.variants.iter().enumerate().map(move |(i, v)| {
                let share = if offset == 0 {
                    v.observed_share
                } else {
                    v.expected_share
                };
                let k = 3 * i + offset;
                Rectangle::new(
                    [
                        (SegmentValue::Exact(k), 0.0),
                        (SegmentValue::Exact(k + 1), share),
                    ],
                    color.filled(),
                )
            });
            chart
                .draw_series(bars)
                .map_err(|e| fail(e.to_string()))?
                .label(series)
                .legend(move |(x, y)| {
                    Rectangle::new([(x, y - 5), (x + 10, y + 5)], color.filled())
                });
            let labels = e.variants.iter().enumerate().map(move |(i, v)| {
                let share = if offset == 0 {
                    v.observed_share
                } else {
                    v.expected_share
                };
                Text::new(
                    format!("{:.2}%", share * 100.0),
                    (SegmentValue::CenterOf(3 * i + offset), share),
                    TextStyle::from(("sans-serif", 11)).pos(Pos::new(HPos::Center, VPos::Bottom)),
                )
            });
            chart.draw_series(labels).map_err(|e| fail(e.to_string()))?;
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()
            .map_err(|e| fail(e.to_string()))?;
    }
    root.present().map_err(|e| fail(e.to_string()))
}
