//! An experiment's evaluation: every point on every held-out seed through the one evaluation
//! pool ([`crate::eval`]), and the rows of `eval.csv` and `summary.csv`.

use super::*;
pub use crate::eval::{Point, Run};

/// A row of `summary.csv`: one point, mean and 95% half-width over seeds.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct PointRow {
    pub label: String,
    pub x: f64,
    pub policy: String,
    pub scenario: String,
    /// Service-estimate model of the point's runs (empty in summaries written before
    /// estimates existed: those runs used exact service times).
    #[serde(default)]
    pub estimate: String,
    pub seeds: usize,
    pub miss_rate: f64,
    pub miss_rate_ci95: f64,
    pub goodput_per_s: f64,
    pub goodput_ci95: f64,
    pub p99_us: f64,
    pub p99_ci95: f64,
    /// Over all tasks, dropped ones at +infinity: infinite when any seed's is.
    pub p999_us: f64,
    pub p999_ci95: f64,
    /// Dropped tasks / finished, mean over seeds.
    #[serde(default)]
    pub drop_rate: f64,
    pub burst_miss_rate: f64,
    pub burst_miss_rate_ci95: f64,
    /// Pooled over seeds.
    pub margin_median: f64,
    pub margin_p99: f64,
    pub near_miss_frac: f64,
    pub just_late_frac: f64,
}

/// Runs every point on every seed with the size's threads (the one evaluation pool,
/// [`crate::eval::run_points`]); `learners` maps learner keys used as `Point::policy` to their
/// factories (in eval mode), other specs go to the registry.
pub fn evaluate_points(
    ctx: &Ctx,
    size: &Size,
    points: &[Point],
    learners: &HashMap<String, Arc<dyn PolicyFactory>>,
) -> Result<Vec<Run>> {
    let resolve = |spec: &str| match learners.get(spec) {
        Some(f) => Ok(f.clone()),
        None => registry::make_factory(spec, &ctx.agents),
    };
    let seeds: Vec<u64> = (0..size.eval_seeds as u64)
        .map(|i| EVAL_SEED_BASE + i)
        .collect();
    let pb = if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        let pb = ProgressBar::new((points.len() * seeds.len()) as u64);
        pb.set_style(
            ProgressStyle::with_template("  evaluating [{elapsed_precise}] {bar:30} {pos}/{len}")
                .expect("valid template"),
        );
        pb
    } else {
        ProgressBar::hidden()
    };
    let runs = eval::run_points(points, &seeds, &resolve, size.threads, Some(&pb), "exp")?;
    pb.finish_and_clear();
    Ok(runs)
}

/// The rows of `eval.csv`, one per run.
pub(super) fn run_rows(runs: &[Run]) -> Vec<EvalRow> {
    runs.iter().map(|r| r.row.clone()).collect()
}

/// Summarises runs per point (in point order).
pub fn point_rows(points: &[Point], runs: &[Run]) -> Vec<PointRow> {
    points
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let g: Vec<&Run> = runs.iter().filter(|r| r.point == i).collect();
            let ci = |f: &dyn Fn(&Run) -> f64| {
                MeanCi::of(
                    &g.iter()
                        .map(|r| f(r))
                        .filter(|v| v.is_finite())
                        .collect::<Vec<_>>(),
                )
            };
            // Tails: an infinite seed makes the point infinite (filtering it would hide it).
            let tail = |f: &dyn Fn(&Run) -> f64| {
                results::tail_ci(&g.iter().map(|r| f(r)).collect::<Vec<_>>())
            };
            let (miss, good, p99, p999, burst) = (
                ci(&|r| r.row.miss_rate),
                ci(&|r| r.row.goodput_per_s),
                tail(&|r| r.row.p99_us),
                tail(&|r| r.row.p999_us),
                ci(&|r| r.row.burst_miss_rate),
            );
            let mut m = MarginHist::new();
            for r in &g {
                m.merge(&r.margin);
            }
            PointRow {
                label: p.label.clone(),
                x: p.x,
                policy: p.policy.clone(),
                scenario: p.scenario_spec.clone(),
                estimate: p.scenario.estimate.label(),
                seeds: g.len(),
                miss_rate: miss.mean,
                miss_rate_ci95: miss.half_width,
                goodput_per_s: good.mean,
                goodput_ci95: good.half_width,
                p99_us: p99.mean,
                p99_ci95: p99.half_width,
                p999_us: p999.mean,
                p999_ci95: p999.half_width,
                drop_rate: ci(&|r| r.row.drop_rate).mean,
                burst_miss_rate: burst.mean,
                burst_miss_rate_ci95: burst.half_width,
                margin_median: m.quantile(0.5),
                margin_p99: m.quantile(0.99),
                near_miss_frac: m.near_miss(),
                just_late_frac: m.just_late(),
            }
        })
        .collect()
}
