//! SVG charts of a suite (plotters' SVG backend: text is left to the
//! browser, so no font library is built or needed).

use std::path::Path;

use anyhow::{Result, anyhow};
use plotters::coord::CoordTranslate;
use plotters::coord::ranged1d::{AsRangedCoord, ValueFormatter};
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::report::{Chart, Suite};

/// Draws `suite` to `path`.
pub fn draw(suite: &Suite, path: &Path) -> Result<()> {
    let drawn = match suite.chart {
        Chart::Bars => bars(suite, path),
        Chart::Lines => lines(suite, path),
    };
    drawn.map_err(|e| anyhow!("cannot draw {}: {e}", path.display()))
}

type Drawn = std::result::Result<(), Box<dyn std::error::Error>>;

/// The y axis: linear from 0, or logarithmic when the values span more than
/// 30x (a slow peer would otherwise flatten everyone else to the floor).
fn y_axis(suite: &Suite) -> (f64, f64, bool) {
    let values = suite
        .results
        .iter()
        .map(|m| m.median)
        .filter(|v| v.is_finite() && *v > 0.0);
    let (lo, hi) = values.fold((f64::MAX, 0.0f64), |(lo, hi), v| (lo.min(v), hi.max(v)));
    if hi <= 0.0 {
        (0.0, 1.0, false)
    } else if hi / lo > 30.0 {
        (lo / 1.5, hi * 1.5, true)
    } else {
        (0.0, hi * 1.15, false)
    }
}

/// One group of bars per item, one bar per engine.
fn bars(suite: &Suite, path: &Path) -> Drawn {
    match y_axis(suite) {
        (lo, hi, true) => bars_on(
            suite,
            path,
            (lo..hi).log_scale(),
            lo,
            "seconds (median, log scale)",
        ),
        (lo, hi, false) => bars_on(suite, path, lo..hi, lo, "seconds (median)"),
    }
}

fn bars_on<Y>(suite: &Suite, path: &Path, y: Y, floor: f64, y_desc: &str) -> Drawn
where
    Y: AsRangedCoord<Value = f64>,
    Y::CoordDescType: ValueFormatter<f64>,
{
    let (items, engines) = (&suite.items, &suite.engines);
    let width = (120 + items.len() * (14 * engines.len() + 20)).max(640) as u32;
    let root = SVGBackend::new(path, (width, 440)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(&suite.title, ("sans-serif", 18))
        .margin(14)
        .x_label_area_size(36)
        .y_label_area_size(64)
        .build_cartesian_2d(0f64..items.len() as f64, y)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(0)
        .y_desc(y_desc)
        .draw()?;
    let width = 0.8 / engines.len().max(1) as f64;
    for (j, engine) in engines.iter().enumerate() {
        let color = Palette99::pick(j).to_rgba().filled();
        let bars = items.iter().enumerate().filter_map(|(i, item)| {
            let m = suite.result(engine, item)?;
            let x = i as f64 + 0.1 + j as f64 * width;
            Some(Rectangle::new([(x, floor), (x + width, m.median)], color))
        });
        chart
            .draw_series(bars)?
            .label(engine.as_str())
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 10, y + 5)], color));
    }
    let label =
        TextStyle::from(("sans-serif", 12).into_font()).pos(Pos::new(HPos::Center, VPos::Top));
    for (i, item) in items.iter().enumerate() {
        let (x, y) = chart.backend_coord(&(i as f64 + 0.5, floor));
        root.draw(&Text::new(item.clone(), (x, y + 6), label.clone()))?;
    }
    legend(&mut chart)?;
    root.present()?;
    Ok(())
}

/// One line per engine over the items (iterations).
fn lines(suite: &Suite, path: &Path) -> Drawn {
    match y_axis(suite) {
        (lo, hi, true) => lines_on(
            suite,
            path,
            (lo..hi).log_scale(),
            "seconds (median, log scale)",
        ),
        (lo, hi, false) => lines_on(suite, path, lo..hi, "seconds (median)"),
    }
}

fn lines_on<Y>(suite: &Suite, path: &Path, y: Y, y_desc: &str) -> Drawn
where
    Y: AsRangedCoord<Value = f64>,
    Y::CoordDescType: ValueFormatter<f64>,
{
    let (items, engines) = (&suite.items, &suite.engines);
    let root = SVGBackend::new(path, (800, 440)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(&suite.title, ("sans-serif", 18))
        .margin(14)
        .x_label_area_size(40)
        .y_label_area_size(64)
        .build_cartesian_2d(0.5f64..items.len() as f64 + 0.5, y)?;
    chart
        .configure_mesh()
        .x_labels(items.len().min(24))
        .x_label_formatter(&|x| format!("{x:.0}"))
        .x_desc("iteration")
        .y_desc(y_desc)
        .draw()?;
    for (j, engine) in engines.iter().enumerate() {
        let color = Palette99::pick(j).to_rgba();
        let points: Vec<(f64, f64)> = items
            .iter()
            .enumerate()
            .filter_map(|(i, item)| Some((i as f64 + 1.0, suite.result(engine, item)?.median)))
            .collect();
        chart
            .draw_series(LineSeries::new(points.clone(), color.stroke_width(2)))?
            .label(engine.as_str())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 14, y)], color.stroke_width(2))
            });
        chart.draw_series(
            points
                .into_iter()
                .map(|p| Circle::new(p, 3, color.filled())),
        )?;
    }
    legend(&mut chart)?;
    root.present()?;
    Ok(())
}

fn legend<'a, DB: DrawingBackend + 'a, CT: CoordTranslate>(
    chart: &mut ChartContext<'a, DB, CT>,
) -> std::result::Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.4))
        .draw()
}
