//! PNG figures (plotters): line charts with optional 95% error bars and log axes, used for
//! latency CDFs, learning curves and metric-against-parameter sweeps.

use plotters::prelude::*;
use plotters::style::full_palette;
use std::path::Path;
use std::sync::OnceLock;

/// Where Debian's fonts-dejavu-core puts the font (installed by scripts/setup.sh).
pub const DEFAULT_FONT: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";

#[cfg(test)]
mod tests {
    #[test]
    fn tick_labels_are_short() {
        use super::fmt_tick;
        assert_eq!(fmt_tick(1.5, true), "31.6");
        assert_eq!(fmt_tick(0.99999, false), "1");
        assert_eq!(fmt_tick(2.5, true), "316");
        assert_eq!(fmt_tick(0.25, false), "0.25");
        assert_eq!(fmt_tick(123000.0, false), "1.2e5");
        assert_eq!(fmt_tick(0.0, false), "0");
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PlotError {
    #[error("font {path}: {reason} (install Debian's fonts-dejavu-core or set MALCOLM_FONT)")]
    Font { path: String, reason: String },
    #[error("plot {path}: {reason}")]
    Draw { path: String, reason: String },
    #[error("plot {0}: no data")]
    Empty(String),
}

/// A point: x, y and an optional (low, high) interval drawn as an error bar.
pub type Point = (f64, f64, Option<(f64, f64)>);

/// One line of a chart.
#[derive(Debug, Clone, Default)]
pub struct Series {
    pub label: String,
    pub points: Vec<Point>,
}

#[derive(Debug, Clone, Default)]
pub struct Chart {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub x_log: bool,
    pub y_log: bool,
}

fn register_font() -> Result<(), PlotError> {
    static DONE: OnceLock<Result<(), String>> = OnceLock::new();
    let path = std::env::var("MALCOLM_FONT").unwrap_or_else(|_| DEFAULT_FONT.to_string());
    DONE.get_or_init(|| {
        let bytes = std::fs::read(&path).map_err(|e| e.to_string())?;
        // plotters wants 'static font bytes; the font lives for the process anyway.
        let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
        plotters::style::register_font("sans-serif", FontStyle::Normal, bytes)
            .map_err(|_| "not a usable TrueType font".to_string())
    })
    .clone()
    .map_err(|reason| PlotError::Font { path, reason })
}

const COLORS: [RGBColor; 8] = [
    full_palette::BLUE_700,
    full_palette::RED_700,
    full_palette::GREEN_700,
    full_palette::ORANGE_700,
    full_palette::PURPLE_700,
    full_palette::BROWN_700,
    full_palette::TEAL_700,
    full_palette::GREY_700,
];

fn tf(v: f64, log: bool) -> f64 {
    if log {
        v.max(1e-12).log10()
    } else {
        v
    }
}

fn fmt_tick(v: f64, log: bool) -> String {
    let x = if log { 10f64.powf(v) } else { v };
    let a = x.abs();
    if a < 1e-9 {
        return "0".into();
    }
    if !(1e-3..1e5).contains(&a) {
        return format!("{x:.1e}");
    }
    // Three significant digits, no trailing zeros: 31.623 -> "31.6", 0.99999 -> "1".
    let decimals = (2 - a.log10().floor() as i32).max(0) as usize;
    let s = format!("{x:.decimals$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

/// Draws `series` into a 1024x640 PNG at `path`.
pub fn line_chart(path: &Path, chart: &Chart, series: &[Series]) -> Result<(), PlotError> {
    register_font()?;
    let p = path.display().to_string();
    let draw_err = |e: String| PlotError::Draw {
        path: p.clone(),
        reason: e,
    };
    let all: Vec<(f64, f64)> = series
        .iter()
        .flat_map(|s| {
            s.points.iter().flat_map(|&(x, y, ci)| {
                let mut v = vec![(x, y)];
                if let Some((lo, hi)) = ci {
                    v.push((x, lo));
                    v.push((x, hi));
                }
                v
            })
        })
        .filter(|(x, y)| x.is_finite() && y.is_finite())
        .filter(|(x, y)| (!chart.x_log || *x > 0.0) && (!chart.y_log || *y > 0.0))
        .map(|(x, y)| (tf(x, chart.x_log), tf(y, chart.y_log)))
        .collect();
    if all.is_empty() {
        return Err(PlotError::Empty(p));
    }
    let (mut x0, mut x1, mut y0, mut y1) = all.iter().fold(
        (f64::MAX, f64::MIN, f64::MAX, f64::MIN),
        |(a, b, c, d), &(x, y)| (a.min(x), b.max(x), c.min(y), d.max(y)),
    );
    if x1 - x0 < 1e-9 {
        x0 -= 0.5;
        x1 += 0.5;
    }
    if y1 - y0 < 1e-9 {
        y0 -= 0.5;
        y1 += 0.5;
    }
    let pad = (y1 - y0) * 0.05;
    let (y0, y1) = (
        if !chart.y_log && y0 >= 0.0 {
            (y0 - pad).max(0.0)
        } else {
            y0 - pad
        },
        y1 + pad,
    );
    let root = BitMapBackend::new(path, (1024, 640)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| draw_err(e.to_string()))?;
    let mut c = ChartBuilder::on(&root)
        .caption(&chart.title, ("sans-serif", 26))
        .margin(16)
        .x_label_area_size(48)
        .y_label_area_size(72)
        .build_cartesian_2d(x0..x1, y0..y1)
        .map_err(|e| draw_err(e.to_string()))?;
    let (xl, yl) = (chart.x_log, chart.y_log);
    c.configure_mesh()
        .x_desc(&chart.x_label)
        .y_desc(&chart.y_label)
        .x_label_formatter(&|v| fmt_tick(*v, xl))
        .y_label_formatter(&|v| fmt_tick(*v, yl))
        .label_style(("sans-serif", 16))
        .axis_desc_style(("sans-serif", 18))
        .draw()
        .map_err(|e| draw_err(e.to_string()))?;
    for (i, s) in series.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let pts: Vec<(f64, f64)> = s
            .points
            .iter()
            .filter(|(x, y, _)| (!xl || *x > 0.0) && (!yl || *y > 0.0))
            .map(|&(x, y, _)| (tf(x, xl), tf(y, yl)))
            .collect();
        c.draw_series(LineSeries::new(pts.clone(), color.stroke_width(2)))
            .map_err(|e| draw_err(e.to_string()))?
            .label(&s.label)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
        if pts.len() <= 40 {
            c.draw_series(pts.iter().map(|&p| Circle::new(p, 3, color.filled())))
                .map_err(|e| draw_err(e.to_string()))?;
        }
        let bars: Vec<_> = s
            .points
            .iter()
            .filter_map(|&(x, _, ci)| ci.map(|(lo, hi)| (x, lo, hi)))
            .filter(|(x, lo, _)| (!xl || *x > 0.0) && (!yl || *lo > 0.0))
            .map(|(x, lo, hi)| {
                let (x, lo, hi) = (tf(x, xl), tf(lo, yl), tf(hi, yl));
                ErrorBar::new_vertical(x, lo, (lo + hi) / 2.0, hi, color.stroke_width(1), 8)
            })
            .collect();
        c.draw_series(bars).map_err(|e| draw_err(e.to_string()))?;
    }
    c.configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font(("sans-serif", 16))
        .position(SeriesLabelPosition::UpperRight)
        .draw()
        .map_err(|e| draw_err(e.to_string()))?;
    root.present().map_err(|e| draw_err(e.to_string()))?;
    Ok(())
}

/// One bar of a [`bar_chart`]: its group (x position), its series (colour), the value and an
/// optional (low, high) interval.
#[derive(Debug, Clone)]
pub struct Bar {
    pub group: String,
    pub series: String,
    pub value: f64,
    pub ci: Option<(f64, f64)>,
}

/// Grouped bars (one group per distinct `group`, one colour per distinct `series`) with
/// error bars, into a 1024x640 PNG. Non-finite values are left out (a censored tail has no
/// height); when nothing is left there is no figure ([`PlotError::Empty`]).
pub fn bar_chart(path: &Path, chart: &Chart, bars: &[Bar]) -> Result<(), PlotError> {
    register_font()?;
    let p = path.display().to_string();
    let draw_err = |e: String| PlotError::Draw {
        path: p.clone(),
        reason: e,
    };
    let bars: Vec<&Bar> = bars.iter().filter(|b| b.value.is_finite()).collect();
    if bars.is_empty() {
        return Err(PlotError::Empty(p));
    }
    let mut groups: Vec<&str> = Vec::new();
    let mut series: Vec<&str> = Vec::new();
    for b in &bars {
        if !groups.contains(&b.group.as_str()) {
            groups.push(&b.group);
        }
        if !series.contains(&b.series.as_str()) {
            series.push(&b.series);
        }
    }
    let top = bars
        .iter()
        .map(|b| b.ci.map_or(b.value, |(_, hi)| hi.max(b.value)))
        .fold(0.0f64, f64::max);
    let top = if top > 0.0 { top * 1.15 } else { 1.0 };
    let root = BitMapBackend::new(path, (1024, 640)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| draw_err(e.to_string()))?;
    let n = groups.len() as f64;
    let mut c = ChartBuilder::on(&root)
        .caption(&chart.title, ("sans-serif", 24))
        .margin(16)
        .x_label_area_size(48)
        .y_label_area_size(72)
        .build_cartesian_2d(-0.5..n - 0.5, 0.0..top)
        .map_err(|e| draw_err(e.to_string()))?;
    let names: Vec<String> = groups.iter().map(|g| g.to_string()).collect();
    c.configure_mesh()
        .disable_x_mesh()
        .x_labels(groups.len().max(2))
        .x_label_formatter(&|v| {
            let i = v.round();
            if (v - i).abs() < 1e-6 && i >= 0.0 && (i as usize) < names.len() {
                names[i as usize].clone()
            } else {
                String::new()
            }
        })
        .x_desc(&chart.x_label)
        .y_desc(&chart.y_label)
        .y_label_formatter(&|v| fmt_tick(*v, false))
        .label_style(("sans-serif", 15))
        .axis_desc_style(("sans-serif", 18))
        .draw()
        .map_err(|e| draw_err(e.to_string()))?;
    let width = 0.8 / series.len() as f64;
    for (k, s) in series.iter().enumerate() {
        let color = COLORS[k % COLORS.len()];
        let mine: Vec<(f64, &Bar)> = bars
            .iter()
            .filter(|b| b.series == *s)
            .map(|b| {
                let g = groups.iter().position(|g| *g == b.group).unwrap_or(0) as f64;
                (g - 0.4 + width * (k as f64 + 0.5), *b)
            })
            .collect();
        c.draw_series(mine.iter().map(|&(x, b)| {
            Rectangle::new(
                [(x - width * 0.45, 0.0), (x + width * 0.45, b.value)],
                color.filled(),
            )
        }))
        .map_err(|e| draw_err(e.to_string()))?
        .label(*s)
        .legend(move |(x, y)| Rectangle::new([(x, y - 6), (x + 16, y + 6)], color.filled()));
        c.draw_series(mine.iter().filter_map(|&(x, b)| {
            b.ci.map(|(lo, hi)| {
                ErrorBar::new_vertical(x, lo.max(0.0), b.value, hi, BLACK.stroke_width(1), 8)
            })
        }))
        .map_err(|e| draw_err(e.to_string()))?;
    }
    c.configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font(("sans-serif", 15))
        .position(SeriesLabelPosition::UpperLeft)
        .draw()
        .map_err(|e| draw_err(e.to_string()))?;
    root.present().map_err(|e| draw_err(e.to_string()))?;
    Ok(())
}
