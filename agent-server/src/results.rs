//! Results folders: CSV rows, markdown summaries with 95% intervals over seeds, and the
//! standard figures (latency CDF per policy, learning curve).

use crate::eval::EvalRow;
use crate::plots::{line_chart, Chart, PlotError, Series};
use crate::stats::MeanCi;
use crate::train::CurvePoint;
use rack_sim::Report;
use std::fmt::Write as _;
use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum ResultsError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Csv { path: String, source: csv::Error },
    #[error(transparent)]
    Plot(#[from] PlotError),
}

/// Writes serde rows as CSV with a header line.
pub fn write_csv<T: serde::Serialize>(path: &Path, rows: &[T]) -> Result<(), ResultsError> {
    let p = path.display().to_string();
    let mut w = csv::Writer::from_path(path).map_err(|source| ResultsError::Csv {
        path: p.clone(),
        source,
    })?;
    for r in rows {
        w.serialize(r).map_err(|source| ResultsError::Csv {
            path: p.clone(),
            source,
        })?;
    }
    w.flush()
        .map_err(|source| ResultsError::Io { path: p, source })
}

pub fn write_text(path: &Path, text: &str) -> Result<(), ResultsError> {
    std::fs::write(path, text).map_err(|source| ResultsError::Io {
        path: path.display().to_string(),
        source,
    })
}

/// Per-label summary over seeds.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SummaryRow {
    pub label: String,
    pub policy: String,
    pub scenario: String,
    pub seeds: usize,
    pub miss_rate: f64,
    pub miss_rate_ci95: f64,
    pub goodput_per_s: f64,
    pub goodput_ci95: f64,
    pub p50_us: f64,
    pub p99_us: f64,
    pub p99_ci95: f64,
    pub p999_us: f64,
    pub p999_ci95: f64,
    pub wcet_ratio: f64,
    pub burst_miss_rate: f64,
}

/// Groups rows by label (first-seen order) and summarises each group.
pub fn summarise(rows: &[EvalRow]) -> Vec<SummaryRow> {
    let mut labels: Vec<&str> = Vec::new();
    for r in rows {
        if !labels.contains(&r.label.as_str()) {
            labels.push(&r.label);
        }
    }
    labels
        .into_iter()
        .map(|label| {
            let g: Vec<&EvalRow> = rows.iter().filter(|r| r.label == label).collect();
            let ci = |f: &dyn Fn(&EvalRow) -> f64| {
                MeanCi::of(&g.iter().map(|r| f(r)).collect::<Vec<_>>())
            };
            let (miss, good, p99, p999) = (
                ci(&|r| r.miss_rate),
                ci(&|r| r.goodput_per_s),
                ci(&|r| r.p99_us),
                ci(&|r| r.p999_us),
            );
            SummaryRow {
                label: label.to_string(),
                policy: g[0].policy.clone(),
                scenario: g[0].scenario.clone(),
                seeds: g.len(),
                miss_rate: miss.mean,
                miss_rate_ci95: miss.half_width,
                goodput_per_s: good.mean,
                goodput_ci95: good.half_width,
                p50_us: ci(&|r| r.p50_us).mean,
                p99_us: p99.mean,
                p99_ci95: p99.half_width,
                p999_us: p999.mean,
                p999_ci95: p999.half_width,
                wcet_ratio: ci(&|r| r.wcet_ratio).mean,
                burst_miss_rate: ci(&|r| r.burst_miss_rate).mean,
            }
        })
        .collect()
}

/// A markdown table of a summary (± is the 95% interval half-width over seeds).
pub fn markdown_table(rows: &[SummaryRow]) -> String {
    let mut s = String::from(
        "| policy | scenario | seeds | miss rate | goodput (on-time/s) | p50 (us) | p99 (us) | p99.9 (us) |\n\
         |---|---|---:|---:|---:|---:|---:|---:|\n",
    );
    for r in rows {
        let _ = writeln!(
            s,
            "| {} | `{}` | {} | {:.3}% ± {:.3} | {:.0} ± {:.0} | {:.1} | {:.1} ± {:.1} | {:.1} ± {:.1} |",
            r.label,
            r.scenario,
            r.seeds,
            r.miss_rate * 100.0,
            r.miss_rate_ci95 * 100.0,
            r.goodput_per_s,
            r.goodput_ci95,
            r.p50_us,
            r.p99_us,
            r.p99_ci95,
            r.p999_us,
            r.p999_ci95
        );
    }
    s
}

/// Latency CDF per label (first seed of each label), log latency axis.
pub fn latency_cdf_plot(
    path: &Path,
    title: &str,
    runs: &[(String, &Report)],
) -> Result<(), ResultsError> {
    let mut series: Vec<Series> = Vec::new();
    for (label, r) in runs {
        if series.iter().any(|s| &s.label == label) || r.latency.cdf.is_empty() {
            continue;
        }
        series.push(Series {
            label: label.clone(),
            points: r
                .latency
                .cdf
                .iter()
                .map(|&(q, ns)| (ns as f64 / 1e3, q, None))
                .collect(),
        });
    }
    line_chart(
        path,
        &Chart {
            title: title.into(),
            x_label: "latency (us, log scale)".into(),
            y_label: "fraction of completed tasks".into(),
            x_log: true,
            y_log: false,
        },
        &series,
    )?;
    Ok(())
}

/// Learning curve: training-episode miss rate (moving average over `window` episodes).
/// Training episodes (moving average) and greedy validations of one learner, against the
/// decisions served.
pub fn learning_curve_with_validation_plot(
    path: &Path,
    title: &str,
    curve: &[CurvePoint],
    validation: &[crate::train::ValidationPoint],
    window: usize,
) -> Result<(), ResultsError> {
    let mut series = vec![Series {
        label: format!("training episodes (exploring; moving average of {window})"),
        points: curve
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let lo = i.saturating_sub(window.max(1) - 1);
                let w = &curve[lo..=i];
                let m = w.iter().map(|q| q.miss_rate).sum::<f64>() / w.len() as f64;
                (p.decisions as f64, m * 100.0, None)
            })
            .collect(),
    }];
    if !validation.is_empty() {
        series.push(Series {
            label: "greedy validation (validation seeds)".into(),
            points: validation
                .iter()
                .map(|v| (v.decisions as f64, v.miss_rate * 100.0, None))
                .collect(),
        });
    }
    line_chart(
        path,
        &Chart {
            title: title.into(),
            x_label: "decisions served during training".into(),
            y_label: "deadline miss rate %".into(),
            x_log: false,
            y_log: false,
        },
        &series,
    )?;
    Ok(())
}

pub fn learning_curve_plot(
    path: &Path,
    title: &str,
    curves: &[(String, &[CurvePoint])],
    window: usize,
) -> Result<(), ResultsError> {
    let series: Vec<Series> = curves
        .iter()
        .filter(|(_, c)| !c.is_empty())
        .map(|(label, c)| Series {
            label: label.clone(),
            points: c
                .iter()
                .enumerate()
                .map(|(i, p)| {
                    let lo = i.saturating_sub(window.max(1) - 1);
                    let w = &c[lo..=i];
                    let m = w.iter().map(|q| q.miss_rate).sum::<f64>() / w.len() as f64;
                    (p.decisions as f64, m * 100.0, None)
                })
                .collect(),
        })
        .collect();
    line_chart(
        path,
        &Chart {
            title: title.into(),
            x_label: "decisions served during training".into(),
            y_label: format!("miss rate % (moving average of {window} episodes)"),
            x_log: false,
            y_log: false,
        },
        &series,
    )?;
    Ok(())
}
