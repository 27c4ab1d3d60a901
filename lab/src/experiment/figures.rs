//! The experiments' figures and tables: sweep charts with 95% error bars, learning curves,
//! latency-margin plots, pivot tables.

use super::*;

/// Which metric of a [`PointRow`] a sweep figure shows.
#[derive(Debug, Clone, Copy)]
pub enum Metric {
    MissPct,
    Goodput,
    P99,
    P999,
    BurstMissPct,
}

impl Metric {
    pub fn of(self, r: &PointRow) -> (f64, f64) {
        match self {
            Metric::MissPct => (r.miss_rate * 100.0, r.miss_rate_ci95 * 100.0),
            Metric::Goodput => (r.goodput_per_s, r.goodput_ci95),
            Metric::P99 => (r.p99_us, r.p99_ci95),
            Metric::P999 => (r.p999_us, r.p999_ci95),
            Metric::BurstMissPct => (r.burst_miss_rate * 100.0, r.burst_miss_rate_ci95 * 100.0),
        }
    }

    pub fn axis(self) -> &'static str {
        match self {
            Metric::MissPct => "deadline miss rate (%)",
            Metric::Goodput => "goodput (on-time completions / s)",
            Metric::P99 => "p99 latency over all tasks (us; no point: > 1% dropped)",
            Metric::P999 => "p99.9 latency over all tasks (us; no point: > 0.1% dropped)",
            Metric::BurstMissPct => "micro-burst miss rate (%)",
        }
    }

    pub fn cell(self, r: &PointRow) -> String {
        let (m, h) = self.of(r);
        match self {
            Metric::MissPct | Metric::BurstMissPct => format!("{m:.3}% ± {h:.3}"),
            Metric::Goodput => format!("{m:.0} ± {h:.0}"),
            Metric::P99 | Metric::P999 => results::fmt_tail(m, h),
        }
    }
}

/// Labels in first-seen order.
pub(super) fn labels(rows: &[PointRow]) -> Vec<String> {
    let mut v: Vec<String> = Vec::new();
    for r in rows {
        if !v.contains(&r.label) {
            v.push(r.label.clone());
        }
    }
    v
}

/// (x, y, 95% interval) of a chart line.
pub(super) type ChartPoint = (f64, f64, Option<(f64, f64)>);

/// A metric against the swept parameter, one line per label, 95% error bars.
pub fn sweep_chart(
    path: &Path,
    title: &str,
    x_label: &str,
    rows: &[PointRow],
    metric: Metric,
    x_log: bool,
    y_log: bool,
) -> Result<()> {
    let series: Vec<Series> = labels(rows)
        .into_iter()
        .map(|l| {
            let mut pts: Vec<ChartPoint> = rows
                .iter()
                .filter(|r| r.label == l)
                .map(|r| {
                    let (m, h) = metric.of(r);
                    // A log axis cannot show an interval reaching 0: no bar then.
                    let ci = (!y_log || m - h > 0.0).then_some((m - h, m + h));
                    (r.x, m, ci)
                })
                .collect();
            pts.sort_by(|a, b| a.0.total_cmp(&b.0));
            Series {
                label: l,
                points: pts,
            }
        })
        .collect();
    let estimates = results::distinct(rows.iter().map(|r| r.estimate.as_str()));
    line_chart(
        path,
        &Chart {
            title: title.into(),
            x_label: if estimates.is_empty() {
                x_label.into()
            } else {
                format!("{x_label}; service estimates: {estimates}")
            },
            y_label: metric.axis().into(),
            x_log,
            y_log,
        },
        &series,
    )?;
    Ok(())
}

/// The figures of the sweep experiments, from their summary rows (also used by `--replot`).
pub fn sweep_figures(name: &str, out: &Path, rows: &[PointRow]) -> Result<()> {
    let charts: &[(&str, &str, &str, Metric, bool)] = match name {
        "heavy-tail" => &[
            (
                "miss_vs_alpha.png",
                "Deadline miss rate against Pareto alpha (16 fast nodes)",
                "Pareto shape alpha (smaller = heavier tail)",
                Metric::MissPct,
                false,
            ),
            (
                "p99_vs_alpha.png",
                "p99 latency against Pareto alpha (16 fast nodes)",
                "Pareto shape alpha (smaller = heavier tail)",
                Metric::P99,
                false,
            ),
        ],
        "staleness" => &[
            (
                "goodput_vs_heartbeat.png",
                "Goodput against heartbeat interval (16 fast nodes)",
                "heartbeat interval T_hb (us, log scale)",
                Metric::Goodput,
                true,
            ),
            (
                "miss_vs_heartbeat.png",
                "Miss rate against heartbeat interval (16 fast nodes)",
                "heartbeat interval T_hb (us, log scale)",
                Metric::MissPct,
                true,
            ),
        ],
        "load" => &[
            (
                "p999_vs_load.png",
                "p99.9 latency against load (16 fast nodes, Pareto 1.5)",
                "load rho",
                Metric::P999,
                false,
            ),
            (
                "miss_vs_load.png",
                "Miss rate against load (16 fast nodes, Pareto 1.5)",
                "load rho",
                Metric::MissPct,
                false,
            ),
        ],
        _ => &[],
    };
    for &(file, title, x_label, metric, x_log) in charts {
        sweep_chart(&out.join(file), title, x_label, rows, metric, x_log, false)?;
    }
    Ok(())
}

/// Redraws the sweep figures of an existing results folder from its `summary.csv`.
pub fn replot(name: &str, out: &Path) -> Result<()> {
    let path = out.join("summary.csv");
    let mut r = csv::Reader::from_path(&path).with_context(|| format!("{}", path.display()))?;
    let rows: Vec<PointRow> = r
        .deserialize()
        .collect::<Result<_, _>>()
        .with_context(|| format!("{}", path.display()))?;
    sweep_figures(name, out, &rows)
}

/// Markdown pivot: one row per x, one column per label, `metric` cells.
pub fn pivot_table(x_name: &str, rows: &[PointRow], metric: Metric) -> String {
    let ls = labels(rows);
    let mut xs: Vec<f64> = Vec::new();
    for r in rows {
        if !xs.iter().any(|x| x.total_cmp(&r.x).is_eq()) {
            xs.push(r.x);
        }
    }
    let mut s = format!("| {x_name} | {} |\n|---|", ls.join(" | "));
    s += &"---:|".repeat(ls.len());
    s.push('\n');
    for x in xs {
        let _ = write!(s, "| {x} |");
        for l in &ls {
            let cell = rows
                .iter()
                .find(|r| &r.label == l && r.x.total_cmp(&x).is_eq())
                .map_or("-".to_string(), |r| metric.cell(r));
            let _ = write!(s, " {cell} |");
        }
        s.push('\n');
    }
    s
}

/// Learning curves (training miss rate, moving average) of the learners.
pub(super) fn curves_plot(path: &Path, title: &str, learners: &[(String, &Trained)]) -> Result<()> {
    let v: Vec<(String, &[CurvePoint])> = learners
        .iter()
        .filter(|(_, t)| !t.curve.is_empty())
        .map(|(l, t)| (l.clone(), t.curve.as_slice()))
        .collect();
    if !v.is_empty() {
        results::learning_curve_plot(path, title, &v, 5)?;
    }
    Ok(())
}

/// Latency CDF of every run's report, labelled by its policy (the held-out seeds' figure of
/// hetero, microburst and cvar).
pub(super) fn runs_latency_cdf(path: &Path, title: &str, runs: &[Run]) -> Result<()> {
    let reports: Vec<(String, &Report)> = runs
        .iter()
        .map(|r| (r.row.label.clone(), &r.report))
        .collect();
    results::latency_cdf_plot(path, title, &reports)?;
    Ok(())
}

/// [`margin_plot`] of each point's margin histogram pooled over its seeds.
pub(super) fn pooled_margin_plot(
    path: &Path,
    title: &str,
    points: &[Point],
    runs: &[Run],
) -> Result<()> {
    let hists: Vec<(String, MarginHist)> = points
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let mut h = MarginHist::new();
            for r in runs.iter().filter(|r| r.point == i) {
                h.merge(&r.margin);
            }
            (p.label.clone(), h)
        })
        .collect();
    margin_plot(path, title, &hists, points)
}

/// CDF of latency / relative deadline per label (pooled over seeds).
pub(super) fn margin_plot(
    path: &Path,
    title: &str,
    hists: &[(String, MarginHist)],
    points: &[Point],
) -> Result<()> {
    let estimates: Vec<String> = points.iter().map(|p| p.scenario.estimate.label()).collect();
    let series: Vec<Series> = hists
        .iter()
        .filter(|(_, h)| h.completed > 0)
        .map(|(l, h)| Series {
            label: l.clone(),
            points: h
                .cdf_points()
                .into_iter()
                .map(|(x, y)| (x, y, None))
                .collect(),
        })
        .collect();
    if series.is_empty() {
        return Ok(());
    }
    line_chart(
        path,
        &Chart {
            title: title.into(),
            x_label: format!(
                "latency / relative deadline (1 = deadline); service estimates: {}",
                results::distinct(estimates.iter().map(String::as_str))
            ),
            y_label: "fraction of tasks (dropped = never complete)".into(),
            x_log: false,
            y_log: false,
        },
        &series,
    )?;
    Ok(())
}
