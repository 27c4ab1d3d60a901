//! Results folders: CSV rows, markdown summaries with 95% intervals over seeds, and the
//! standard figures (latency CDF per policy, learning curve).
//!
//! Latency tails count every task: a dropped task never completes, so it sits at +infinity
//! (censored). A p99 is infinite (shown as ∞) when more than 1% of a run's tasks were
//! dropped, and a CDF stops at the completed fraction. Completed-only figures appear only as
//! labelled extras. Every table and figure names the service-estimate model its runs used.

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
    /// Service-estimate model(s) of the label's runs.
    pub estimate: String,
    pub seeds: usize,
    pub miss_rate: f64,
    pub miss_rate_ci95: f64,
    pub drop_rate: f64,
    pub goodput_per_s: f64,
    pub goodput_ci95: f64,
    /// Percentiles over all tasks (dropped = +infinity); infinite when any seed's is.
    pub p50_us: f64,
    pub p99_us: f64,
    pub p99_ci95: f64,
    pub p999_us: f64,
    pub p999_ci95: f64,
    /// Completed-only p99 (labelled extra).
    pub p99_completed_us: f64,
    pub wcet_ratio: f64,
    pub burst_miss_rate: f64,
}

/// Mean and 95% interval over seeds of a tail latency: infinite (half-width 0) when any
/// seed's is infinite, since averaging it away would hide the seeds whose tasks never
/// completed; NaN entries (no data) are skipped.
pub fn tail_ci(xs: &[f64]) -> MeanCi {
    let v: Vec<f64> = xs.iter().copied().filter(|x| !x.is_nan()).collect();
    if v.iter().any(|x| x.is_infinite()) {
        return MeanCi {
            mean: f64::INFINITY,
            half_width: 0.0,
            n: v.len(),
        };
    }
    MeanCi::of(&v)
}

/// A tail latency cell: "∞" (more tasks never completed than the quantile allows), else
/// mean ± half-width with one decimal.
pub fn fmt_tail(mean: f64, half_width: f64) -> String {
    if mean.is_infinite() {
        "∞".into()
    } else if half_width.is_nan() || half_width == 0.0 {
        format!("{mean:.1}")
    } else {
        format!("{mean:.1} ± {half_width:.1}")
    }
}

/// The distinct values of `items` in first-seen order, joined with ", ".
pub fn distinct<'a>(items: impl IntoIterator<Item = &'a str>) -> String {
    let mut v: Vec<&str> = Vec::new();
    for s in items {
        if !s.is_empty() && !v.contains(&s) {
            v.push(s);
        }
    }
    v.join(", ")
}

/// The note that goes under every latency table.
pub const TAIL_NOTE: &str = "Latency percentiles count every measured task: a dropped task \
     never completes and counts at +∞ (censored), so p99 is ∞ when more than 1% of a run's \
     tasks were dropped (p99.9: 0.1%, p50: half); \"p99 completed\" is over the completed \
     tasks only, an extra that flatters dropping.";

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
            let tail =
                |f: &dyn Fn(&EvalRow) -> f64| tail_ci(&g.iter().map(|r| f(r)).collect::<Vec<_>>());
            let (miss, good, p99, p999) = (
                ci(&|r| r.miss_rate),
                ci(&|r| r.goodput_per_s),
                tail(&|r| r.p99_us),
                tail(&|r| r.p999_us),
            );
            SummaryRow {
                label: label.to_string(),
                policy: g[0].policy.clone(),
                scenario: g[0].scenario.clone(),
                estimate: distinct(g.iter().map(|r| r.estimate.as_str())),
                seeds: g.len(),
                miss_rate: miss.mean,
                miss_rate_ci95: miss.half_width,
                drop_rate: ci(&|r| r.drop_rate).mean,
                goodput_per_s: good.mean,
                goodput_ci95: good.half_width,
                p50_us: tail(&|r| r.p50_us).mean,
                p99_us: p99.mean,
                p99_ci95: p99.half_width,
                p999_us: p999.mean,
                p999_ci95: p999.half_width,
                p99_completed_us: tail(&|r| r.p99_completed_us).mean,
                wcet_ratio: ci(&|r| r.wcet_ratio).mean,
                burst_miss_rate: ci(&|r| r.burst_miss_rate).mean,
            }
        })
        .collect()
}

/// A markdown table of a summary (± is the 95% interval half-width over seeds), with the
/// service-estimate model of each row and the tail note ([`TAIL_NOTE`]) under it.
pub fn markdown_table(rows: &[SummaryRow]) -> String {
    let mut s = String::from(
        "| policy | scenario | service estimates | seeds | miss rate | dropped | goodput (on-time/s) | p50 (us) | p99 (us) | p99.9 (us) | p99 completed (us) |\n\
         |---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for r in rows {
        let _ = writeln!(
            s,
            "| {} | `{}` | {} | {} | {:.3}% ± {:.3} | {:.2}% | {:.0} ± {:.0} | {} | {} | {} | {} |",
            r.label,
            r.scenario,
            r.estimate,
            r.seeds,
            r.miss_rate * 100.0,
            r.miss_rate_ci95 * 100.0,
            r.drop_rate * 100.0,
            r.goodput_per_s,
            r.goodput_ci95,
            fmt_tail(r.p50_us, 0.0),
            fmt_tail(r.p99_us, r.p99_ci95),
            fmt_tail(r.p999_us, r.p999_ci95),
            fmt_tail(r.p99_completed_us, 0.0),
        );
    }
    s.push('\n');
    s += TAIL_NOTE;
    s.push('\n');
    s
}

/// Latency CDF per label (first seed of each label) over *all* tasks, log latency axis: a
/// curve ends at its completed fraction (dropped tasks never complete). The x axis names the
/// runs' service-estimate model.
pub fn latency_cdf_plot(
    path: &Path,
    title: &str,
    runs: &[(String, &Report)],
) -> Result<(), ResultsError> {
    let mut series: Vec<Series> = Vec::new();
    let mut seen: Vec<&str> = Vec::new();
    for (label, r) in runs {
        if seen.contains(&label.as_str()) || r.latency.cdf.is_empty() {
            continue;
        }
        seen.push(label);
        let completed = r.latency.completed_fraction();
        series.push(Series {
            label: if completed < 1.0 {
                format!("{label} ({:.1}% never complete)", 100.0 * (1.0 - completed))
            } else {
                label.clone()
            },
            points: r
                .latency
                .cdf
                .iter()
                .map(|&(q, ns)| (ns as f64 / 1e3, q, None))
                .collect(),
        });
    }
    let estimates = distinct(runs.iter().map(|(_, r)| r.service_estimate.as_str()));
    line_chart(
        path,
        &Chart {
            title: title.into(),
            x_label: if estimates.is_empty() {
                "latency (us, log scale)".into()
            } else {
                format!("latency (us, log scale); service estimates: {estimates}")
            },
            y_label: "fraction of all tasks (dropped = never complete)".into(),
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
    baseline: Option<&(String, f64, f64)>,
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
    if let (Some((name, miss, _)), Some(last)) = (baseline, curve.last()) {
        series.push(Series {
            label: format!("{name} on the validation seeds"),
            points: vec![
                (0.0, miss * 100.0, None),
                (last.decisions as f64, miss * 100.0, None),
            ],
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eval::{EvalCase, EvalRow};
    use crate::experiment::margin::MarginHist;
    use rack_sim::metrics::{Finished, Metrics};

    /// A report of 1000 tasks: `dropped` of them dropped, the rest completed with latencies
    /// `base_ns + i` (i the task index).
    fn report(dropped: u64, base_ns: u64) -> rack_sim::Report {
        let mut m = Metrics::new(1);
        for i in 0..1000u64 {
            m.arrival(i * 1000);
            m.finish(Finished {
                class: 0,
                on_time: i >= dropped,
                dropped: i < dropped,
                latency_ns: base_ns + i,
                service_ref_ns: 1_000,
                service_wall_ns: 1_000,
            });
        }
        let mut r = m.report("t", 1, 0, 0, 0);
        r.service_estimate = "noisy(sigma=0.5)".into();
        r
    }

    #[test]
    fn a_policy_that_drops_does_not_get_the_best_tail() {
        // "random" drops 60% and serves the rest fast; "fifo" serves everything slower.
        let rows: Vec<EvalRow> = [("random", 600, 10_000), ("fifo", 0, 50_000)]
            .iter()
            .flat_map(|&(p, d, base)| {
                let point = EvalCase::new(p, p, "hetero").point().unwrap();
                (0..3).map(move |seed| {
                    EvalRow::new(&point, seed, &report(d, base), &MarginHist::new())
                })
            })
            .collect();
        let s = summarise(&rows);
        let (random, fifo) = (&s[0], &s[1]);
        assert!(random.p50_us.is_infinite() && random.p99_us.is_infinite());
        assert!((fifo.p99_us - 51.0).abs() < 0.1, "{}", fifo.p99_us);
        // Completed-only, the dropping policy would have had the better tail.
        assert!(random.p99_completed_us < fifo.p99_completed_us);
        assert!((random.drop_rate - 0.6).abs() < 1e-12);
        assert_eq!(random.estimate, "noisy(sigma=0.5)");
        let md = markdown_table(&s);
        assert!(
            md.contains("| random | `hetero` | noisy(sigma=0.5) | 3 |"),
            "{md}"
        );
        assert!(md.contains("| ∞ | ∞ | ∞ |"), "{md}");
        assert!(md.contains(TAIL_NOTE));
    }

    #[test]
    fn tail_intervals_keep_infinite_seeds() {
        let m = tail_ci(&[10.0, f64::INFINITY, 12.0]);
        assert!(m.mean.is_infinite() && m.half_width == 0.0 && m.n == 3);
        let m = tail_ci(&[10.0, f64::NAN, 12.0]);
        assert_eq!((m.mean, m.n), (11.0, 2));
        assert_eq!(fmt_tail(f64::INFINITY, 0.0), "∞");
        assert_eq!(fmt_tail(12.34, 0.5), "12.3 ± 0.5");
        assert_eq!(fmt_tail(12.34, 0.0), "12.3");
        assert_eq!(distinct(["a", "", "b", "a"]), "a, b");
    }

    #[test]
    fn the_latency_cdf_covers_all_tasks() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (report(600, 10_000), report(0, 50_000));
        // Ends at the completed fraction: 40% of the dropping policy's tasks ever finish.
        assert_eq!(a.latency.cdf.last().map(|p| p.0), Some(0.4));
        assert_eq!(b.latency.cdf.last().map(|p| p.0), Some(1.0));
        let path = dir.path().join("cdf.png");
        latency_cdf_plot(&path, "test", &[("random".into(), &a), ("fifo".into(), &b)]).unwrap();
        assert!(std::fs::metadata(&path).unwrap().len() > 2000);
    }
}
