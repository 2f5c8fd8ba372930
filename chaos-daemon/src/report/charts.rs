//! The HTML report's SVG charts, drawn with plotters' SVG backend into strings: faults per
//! second with the timeline's intensity steps, budget alerts and rollback marked, a database
//! load's throughput (queries per second against the target rate) and p95 latency with the same
//! marks, and one chart per guard with its value against its threshold and its red samples
//! marked. Every chart shares one time axis (seconds since the start) so they line up on the
//! page.

use std::ops::Range;

use plotters::coord::{Shift, types::RangedCoordf64};
use plotters::prelude::*;

use super::{BUDGET_ALERT, GuardSeries, ROLLBACK, Report, ReportError, STEP};
use crate::store::LoadSampleRow;

/// Width and height of every chart, in SVG pixels.
const WIDTH: u32 = 880;
const FAULTS_HEIGHT: u32 = 320;
const GUARD_HEIGHT: u32 = 250;
const LOAD_HEIGHT: u32 = 320;

const FAULTS: RGBColor = RGBColor(31, 94, 170);
const STEP_COLOR: RGBColor = RGBColor(110, 60, 170);
const ALERT_COLOR: RGBColor = RGBColor(214, 130, 0);
const RED_COLOR: RGBColor = RGBColor(200, 30, 30);
const GREEN_COLOR: RGBColor = RGBColor(30, 140, 60);
const GREY: RGBColor = RGBColor(120, 120, 120);
const LATENCY: RGBColor = RGBColor(0, 140, 140);
const GRID: RGBColor = RGBColor(232, 232, 232);
const FONT: &str = "sans-serif";
/// The key's strip above each plot.
const LEGEND_HEIGHT: u32 = 26;

type Area<'b> = DrawingArea<SVGBackend<'b>, Shift>;
type DrawResult = Result<(), DrawingAreaErrorKind<std::io::Error>>;
type Chart<'a, 'b> = ChartContext<'a, SVGBackend<'b>, Cartesian2d<RangedCoordf64, RangedCoordf64>>;

/// Faults per second over time, with the timeline's steps, alerts and rollback marked.
pub(super) fn faults(report: &Report) -> Result<String, ReportError> {
    svg("faults per second", FAULTS_HEIGHT, |root| {
        draw_faults(report, root)
    })
}

/// A database load's queries per second against its target rate, and its p95 latency (right
/// axis), with the timeline's steps, alerts and rollback marked.
pub(super) fn load(report: &Report) -> Result<String, ReportError> {
    svg("database load", LOAD_HEIGHT, |root| draw_load(report, root))
}

/// One guard's value over time against its threshold, its red samples marked.
pub(super) fn guard(report: &Report, g: &GuardSeries) -> Result<String, ReportError> {
    svg(&g.name, GUARD_HEIGHT, |root| draw_guard(report, g, root))
}

/// An SVG document of `height` drawn by `draw`.
fn svg(
    chart: &str,
    height: u32,
    draw: impl FnOnce(&Area) -> DrawResult,
) -> Result<String, ReportError> {
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, (WIDTH, height)).into_drawing_area();
        draw(&root)
            .and_then(|()| root.present())
            .map_err(|e| ReportError::Chart {
                chart: chart.into(),
                reason: e.to_string(),
            })?;
    }
    Ok(out)
}

/// The time axis every chart shares: from the earliest sample (0 or before, for baselines) to
/// the last thing recorded, at least one second wide.
fn time_span(report: &Report) -> Range<f64> {
    let times = report
        .events
        .iter()
        .map(|e| e.at_ms)
        .chain(report.snapshots.iter().map(|s| s.at_ms))
        .chain(
            report
                .guards
                .iter()
                .flat_map(|g| g.samples.iter().map(|s| s.at_ms)),
        )
        .chain(report.load.iter().map(|s| s.at_ms))
        .chain((report.row.ended_ms > 0).then_some(report.row.ended_ms))
        .map(|at| report.offset_s(at));
    let (lo, hi) = times.fold((0.0f64, 0.0f64), |(lo, hi), t| (lo.min(t), hi.max(t)));
    lo..hi.max(lo + 1.0)
}

fn draw_faults(report: &Report, root: &Area) -> DrawResult {
    root.fill(&WHITE)?;
    let (key, plot) = root.split_vertically(LEGEND_HEIGHT);
    legend(
        &key,
        &[
            ("faults injected per second", FAULTS.stroke_width(2)),
            ("intensity step", STEP_COLOR.stroke_width(2)),
            ("budget alert", ALERT_COLOR.stroke_width(2)),
            ("rollback", RED_COLOR.stroke_width(2)),
        ],
    )?;
    let rates: Vec<(f64, f64)> = report
        .faults_per_second()
        .into_iter()
        .map(|(at, rate)| (report.offset_s(at), rate))
        .collect();
    let top = rates.iter().fold(1.0f64, |m, &(_, r)| m.max(r)) * 1.2;
    let mut chart = ChartBuilder::on(&plot)
        .margin(12)
        .margin_top(4)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(time_span(report), 0.0..top)?;
    chart
        .configure_mesh()
        .light_line_style(GRID)
        .x_desc("seconds since start")
        .y_desc("faults / s")
        .label_style((FONT, 13))
        .draw()?;
    draw_marks(report, &mut chart, top)?;
    chart.draw_series(LineSeries::new(
        rates.iter().copied(),
        FAULTS.stroke_width(2),
    ))?;
    chart.draw_series(rates.iter().map(|&p| Circle::new(p, 3, FAULTS.filled())))?;
    Ok(())
}

/// The timeline's intensity steps, budget alerts and rollback as dashed lines up to `top`, each
/// labelled.
fn draw_marks(report: &Report, chart: &mut Chart, top: f64) -> DrawResult {
    for e in report.events {
        let (color, label) = match e.kind.as_str() {
            STEP => (STEP_COLOR, e.message.as_str()),
            BUDGET_ALERT => (ALERT_COLOR, "budget alert"),
            ROLLBACK => (RED_COLOR, "rollback"),
            _ => continue,
        };
        let t = report.offset_s(e.at_ms);
        chart.draw_series(DashedLineSeries::new(
            [(t, 0.0), (t, top)],
            5,
            4,
            color.stroke_width(2),
        ))?;
        chart.draw_series(std::iter::once(
            EmptyElement::at((t, top))
                + Text::new(
                    label.to_owned(),
                    (4, 4),
                    (FONT, 13).into_font().color(&color),
                ),
        ))?;
    }
    Ok(())
}

fn draw_load(report: &Report, root: &Area) -> DrawResult {
    root.fill(&WHITE)?;
    let (key, plot) = root.split_vertically(LEGEND_HEIGHT);
    legend(
        &key,
        &[
            ("queries / s", FAULTS.stroke_width(2)),
            ("target rate", GREY.stroke_width(2)),
            ("p95 latency (right axis)", LATENCY.stroke_width(2)),
            ("step", STEP_COLOR.stroke_width(2)),
            ("budget alert", ALERT_COLOR.stroke_width(2)),
            ("rollback", RED_COLOR.stroke_width(2)),
        ],
    )?;
    let at = |s: &LoadSampleRow| report.offset_s(s.at_ms);
    let qps: Vec<(f64, f64)> = report.load.iter().map(|s| (at(s), s.qps)).collect();
    let p95_ms: Vec<(f64, Option<f64>)> = report
        .load
        .iter()
        .map(|s| (at(s), s.p95_us.map(|us| us as f64 / 1000.0)))
        .collect();
    let top = report
        .load
        .iter()
        .fold(1.0f64, |m, s| m.max(s.qps).max(s.rate))
        * 1.2;
    let latency_top = p95_ms.iter().filter_map(|p| p.1).fold(1.0f64, f64::max) * 1.2;
    let x = time_span(report);
    let mut chart = ChartBuilder::on(&plot)
        .margin(12)
        .margin_top(4)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .right_y_label_area_size(60)
        .build_cartesian_2d(x.clone(), 0.0..top)?
        .set_secondary_coord(x, 0.0..latency_top);
    chart
        .configure_mesh()
        .light_line_style(GRID)
        .x_desc("seconds since start")
        .y_desc("queries / s")
        .label_style((FONT, 13))
        .draw()?;
    chart
        .configure_secondary_axes()
        .y_desc("p95 latency (ms)")
        .label_style((FONT, 13))
        .draw()?;
    draw_marks(report, &mut chart, top)?;
    // The target rate holds until the next sample: a staircase.
    let mut target = Vec::new();
    for s in report.load {
        if let Some(&(_, rate)) = target.last() {
            target.push((at(s), rate));
        }
        target.push((at(s), s.rate));
    }
    chart.draw_series(DashedLineSeries::new(target, 8, 4, GREY.stroke_width(2)))?;
    chart.draw_series(LineSeries::new(qps.iter().copied(), FAULTS.stroke_width(2)))?;
    chart.draw_series(qps.iter().map(|&p| Circle::new(p, 3, FAULTS.filled())))?;
    for run in broken_line(&p95_ms) {
        chart.draw_secondary_series(LineSeries::new(run, LATENCY.stroke_width(2)))?;
    }
    chart.draw_secondary_series(
        p95_ms
            .iter()
            .filter_map(|&(t, v)| v.map(|v| Circle::new((t, v), 3, LATENCY.filled()))),
    )?;
    Ok(())
}

fn draw_guard(report: &Report, g: &GuardSeries, root: &Area) -> DrawResult {
    root.fill(&WHITE)?;
    let (key, plot) = root.split_vertically(LEGEND_HEIGHT);
    let baseline = report.baseline(&g.name);
    let threshold = format!("threshold {}", g.objective);
    let mut key_entries = vec![
        ("value", FAULTS.stroke_width(2)),
        (threshold.as_str(), RED_COLOR.stroke_width(2)),
    ];
    if baseline.is_some() {
        key_entries.push(("baseline", GREY.stroke_width(1)));
    }
    key_entries.extend([
        ("green sample", GREEN_COLOR.filled()),
        ("red sample", RED_COLOR.filled()),
    ]);
    legend(&key, &key_entries)?;
    let points: Vec<(f64, Option<f64>, bool)> = g
        .samples
        .iter()
        .map(|s| (report.offset_s(s.at_ms), s.value, s.ok))
        .collect();
    let y = value_span(
        points
            .iter()
            .filter_map(|p| p.1)
            .chain([g.threshold])
            .chain(baseline),
    );
    let x = time_span(report);
    let mut chart = ChartBuilder::on(&plot)
        .margin(12)
        .margin_top(4)
        .x_label_area_size(36)
        .y_label_area_size(70)
        .build_cartesian_2d(x.clone(), y.clone())?;
    chart
        .configure_mesh()
        .light_line_style(GRID)
        .x_desc("seconds since start")
        .y_desc("value")
        .label_style((FONT, 13))
        .draw()?;
    chart.draw_series(DashedLineSeries::new(
        [(x.start, g.threshold), (x.end, g.threshold)],
        8,
        4,
        RED_COLOR.stroke_width(2),
    ))?;
    if let Some(b) = baseline {
        chart.draw_series(DashedLineSeries::new(
            [(x.start, b), (x.end, b)],
            3,
            3,
            GREY.stroke_width(1),
        ))?;
    }
    let values: Vec<(f64, Option<f64>)> = points.iter().map(|&(t, v, _)| (t, v)).collect();
    for run in broken_line(&values) {
        chart.draw_series(LineSeries::new(run, FAULTS.stroke_width(2)))?;
    }
    chart.draw_series(points.iter().filter_map(|&(t, v, ok)| {
        let color = if ok { GREEN_COLOR } else { RED_COLOR };
        v.map(|v| Circle::new((t, v), if ok { 3 } else { 5 }, color.filled()))
    }))?;
    // Unavailable samples: a cross on the bottom edge.
    chart.draw_series(
        points
            .iter()
            .filter(|p| p.1.is_none())
            .map(|&(t, _, _)| Cross::new((t, y.start), 6, RED_COLOR.stroke_width(2))),
    )?;
    if let Some(v) = report
        .verdict
        .violation
        .as_ref()
        .filter(|v| v.guard == g.name)
    {
        let t = report.offset_s(v.observed_ms);
        chart.draw_series(LineSeries::new(
            [(t, y.start), (t, y.end)],
            RED_COLOR.stroke_width(1),
        ))?;
        chart.draw_series(std::iter::once(
            EmptyElement::at((t, y.end))
                + Text::new(
                    "rolled back",
                    (-84, 4),
                    (FONT, 13).into_font().color(&RED_COLOR),
                ),
        ))?;
    }
    Ok(())
}

/// A line through `points`, broken where a value is missing: its unbroken runs.
fn broken_line(points: &[(f64, Option<f64>)]) -> Vec<Vec<(f64, f64)>> {
    let mut runs: Vec<Vec<(f64, f64)>> = vec![Vec::new()];
    for &(t, v) in points {
        match (v, runs.last_mut()) {
            (Some(v), Some(run)) => run.push((t, v)),
            (None, Some(run)) if !run.is_empty() => runs.push(Vec::new()),
            _ => {}
        }
    }
    runs
}

/// A one-line key above a chart: a line (a dot, for a filled style) and a label per entry.
fn legend(area: &Area, entries: &[(&str, ShapeStyle)]) -> DrawResult {
    let y = LEGEND_HEIGHT as i32 / 2 + 2;
    let mut x = 84;
    for &(label, style) in entries {
        if style.filled {
            area.draw(&Circle::new((x + 9, y), 4, style))?;
        } else {
            area.draw(&PathElement::new([(x, y), (x + 18, y)], style))?;
        }
        area.draw(&Text::new(
            label,
            (x + 24, y - 7),
            (FONT, 13).into_font().color(&BLACK),
        ))?;
        // Room for the label at about 7 px a character, and a gap.
        x += 24 + 7 * label.chars().count() as i32 + 22;
    }
    Ok(())
}

/// A value axis around `values`, padded so that nothing sits on an edge.
fn value_span(values: impl Iterator<Item = f64>) -> Range<f64> {
    let (lo, hi) = values
        .filter(|v| v.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
            (lo.min(v), hi.max(v))
        });
    if lo > hi {
        return 0.0..1.0;
    }
    let pad = if hi > lo {
        (hi - lo) * 0.15
    } else {
        lo.abs().max(1.0) * 0.1
    };
    let bottom = if lo >= 0.0 {
        (lo - pad).max(0.0)
    } else {
        lo - pad
    };
    bottom..hi + pad
}

#[cfg(test)]
mod tests {
    use super::super::fixture;
    use super::*;

    #[test]
    fn the_value_axis_pads_both_sides_and_stays_non_negative_for_rates() {
        let r = value_span([0.002, 0.08, 0.01].into_iter());
        assert_eq!(r.start, 0.0);
        assert!((r.end - (0.08 + 0.078 * 0.15)).abs() < 1e-12);
        let flat = value_span([1.0, 1.0].into_iter());
        assert!((flat.start - 0.9).abs() < 1e-12 && (flat.end - 1.1).abs() < 1e-12);
        assert_eq!(value_span(std::iter::empty()), 0.0..1.0);
        let neg = value_span([-2.0, 2.0].into_iter());
        assert!((neg.start + 2.6).abs() < 1e-12);
    }

    #[test]
    fn the_time_axis_covers_every_sample_and_the_end() {
        let f = fixture::Fixture::new();
        assert_eq!(time_span(&f.report()), 0.0..6.5);
    }

    #[test]
    fn a_line_breaks_where_a_value_is_missing() {
        let runs = broken_line(&[
            (0.0, None),
            (1.0, Some(1.0)),
            (2.0, Some(2.0)),
            (3.0, None),
            (4.0, None),
            (5.0, Some(5.0)),
        ]);
        assert_eq!(runs, [vec![(1.0, 1.0), (2.0, 2.0)], vec![(5.0, 5.0)]]);
    }

    #[test]
    fn the_load_chart_has_the_rate_its_target_its_p95_and_the_marks() {
        let f = fixture::Fixture::database_load();
        let svg = load(&f.report()).unwrap();
        assert!(svg.starts_with("<svg"));
        let text = |t: &str| svg.contains(&format!(">\n{t}\n</text>"));
        for label in [
            "queries / s",
            "target rate",
            "p95 latency (right axis)",
            "p95 latency (ms)",
            "intensity 0.05",
            "rollback",
        ] {
            assert!(text(label), "{label}");
        }
        // Each with its key's line: the rate's line, the p95 line broken at the second where
        // nothing finished, the target's staircase (dashed: a segment each).
        let colour = |c: RGBColor| format!("stroke=\"#{:02X}{:02X}{:02X}\"", c.0, c.1, c.2);
        let polylines = |c: RGBColor| {
            svg.lines()
                .filter(|l| l.starts_with("<polyline") && l.contains(&colour(c)))
                .count()
        };
        assert_eq!(polylines(FAULTS), 1 + 1, "{svg}");
        assert_eq!(polylines(LATENCY), 1 + 2, "{svg}");
        assert!(polylines(GREY) > 1 + 2, "{svg}");
        // The axes reach past the peaks: 500 qps and 180 ms.
        assert!(text("500.0") && text("180.0"), "{svg}");
    }

    #[test]
    fn the_faults_chart_marks_each_step_with_its_intensity() {
        let svg = faults(&fixture::Fixture::new().without_guards()).unwrap();
        assert!(svg.starts_with("<svg"));
        let text = |t: &str| svg.contains(&format!(">\n{t}\n</text>"));
        assert!(text("intensity 0.05") && text("intensity 0.10"));
        assert!(text("budget alert") && text("rollback"));
        assert!(svg.contains("<polyline"));
    }
}
