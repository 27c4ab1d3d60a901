//! Evaluation: policies side by side on embedded-simulator scenarios with held-out seeds, each
//! run through the session contract in process (the loopback transport), in parallel over
//! (point, seed). The one evaluation pool and the one row type of `eval.csv`, shared by the
//! `eval` command, the main job and the experiments.

use crate::experiment::margin::{MarginHist, Tap};
use indicatif::ProgressBar;
use malcolm_policies::PolicyFactory;
use malcolm_serve::loopback::Loopback;
use rack_sim::{run_env_loop, RackSim, Report, Scenario};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// Resolves a policy spec to a factory (learners already in eval mode).
pub type FactoryResolver<'a> =
    dyn Fn(&str) -> Result<Arc<dyn PolicyFactory>, malcolm_policies::PolicyError> + Sync + 'a;

/// One line of a comparison as given on the command line or in a job: a label, the policy
/// spec and the scenario spec it runs on.
#[derive(Debug, Clone, serde::Serialize)]
pub struct EvalCase {
    pub label: String,
    pub policy: String,
    pub scenario: String,
}

impl EvalCase {
    pub fn new(label: &str, policy: &str, scenario: &str) -> Self {
        Self {
            label: label.into(),
            policy: policy.into(),
            scenario: scenario.into(),
        }
    }

    /// The case as a point of no sweep, its scenario resolved.
    pub fn point(&self) -> Result<Point, EvalError> {
        Point::new(&self.label, &self.policy, &self.scenario, f64::NAN)
    }
}

/// One evaluated configuration: a policy on a scenario, one point of a series.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Point {
    /// Series (legend entry) and table row.
    pub label: String,
    /// Policy spec, or the key of a trained learner in the factory map.
    pub policy: String,
    /// Scenario spec as run (for the CSV; `scenario` below is what actually runs).
    pub scenario_spec: String,
    #[serde(skip)]
    pub scenario: Scenario,
    /// Swept parameter (NaN when the experiment sweeps nothing).
    pub x: f64,
}

impl Point {
    pub fn new(label: &str, policy: &str, spec: &str, x: f64) -> Result<Self, EvalError> {
        Ok(Self {
            label: label.into(),
            policy: policy.into(),
            scenario_spec: spec.into(),
            scenario: rack_sim::by_name(spec).map_err(|source| EvalError::Scenario {
                scenario: spec.into(),
                source,
            })?,
            x,
        })
    }
}

/// One (point, seed) run: its row, the whole report, and the latency / deadline margins of
/// its measured tasks.
pub struct Run {
    /// Index of the point in the evaluated slice.
    pub point: usize,
    pub row: EvalRow,
    pub report: Report,
    pub margin: MarginHist,
}

/// A row of `eval.csv`: the figures of one (point, seed) run.
#[derive(Debug, Clone, serde::Serialize)]
pub struct EvalRow {
    pub label: String,
    pub policy: String,
    pub scenario: String,
    pub seed: u64,
    /// The service-estimate model the policies saw ("noisy(sigma=0.5)", "exact", ...).
    pub estimate: String,
    pub finished: u64,
    pub miss_rate: f64,
    /// Dropped tasks / finished (early drop, pruning; they never complete).
    pub drop_rate: f64,
    pub goodput_per_s: f64,
    pub throughput_per_s: f64,
    /// Latency percentiles over every measured task, a dropped task counted at +infinity
    /// (it never completes): `inf` when more than 50% / 1% / 0.1% of the tasks were dropped
    /// (see results::TAIL_NOTE).
    pub p50_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    /// p99 over the completed tasks only (a labelled extra: it flatters dropping).
    pub p99_completed_us: f64,
    /// Mean latency of the completed tasks.
    pub mean_latency_completed_us: f64,
    pub wcet_ratio: f64,
    /// Miss rate of the micro-burst class (NaN when the scenario has none).
    pub burst_miss_rate: f64,
    /// Swept parameter of the point (NaN when nothing is swept).
    pub x: f64,
    /// Finished tasks of the micro-burst class.
    pub burst_finished: u64,
    /// Latency / relative deadline of the measured tasks ([`MarginHist`]).
    pub margin_median: f64,
    pub margin_p99: f64,
    pub near_miss_frac: f64,
    pub just_late_frac: f64,
}

impl EvalRow {
    pub fn new(point: &Point, seed: u64, r: &Report, margin: &MarginHist) -> Self {
        let burst = r.per_class.get(&1);
        Self {
            label: point.label.clone(),
            policy: point.policy.clone(),
            scenario: point.scenario_spec.clone(),
            seed,
            estimate: r.service_estimate.clone(),
            finished: r.finished,
            miss_rate: r.miss_rate,
            drop_rate: if r.finished == 0 {
                0.0
            } else {
                r.dropped as f64 / r.finished as f64
            },
            goodput_per_s: r.goodput_per_s,
            throughput_per_s: r.throughput_per_s,
            p50_us: r.latency.p50_ns / 1e3,
            p99_us: r.latency.p99_ns / 1e3,
            p999_us: r.latency.p999_ns / 1e3,
            p99_completed_us: r.latency_completed.p99_ns / 1e3,
            mean_latency_completed_us: r.latency_completed.mean_ns / 1e3,
            wcet_ratio: r.wcet_ratio,
            burst_miss_rate: burst.map_or(f64::NAN, |c| c.miss_rate),
            x: point.x,
            burst_finished: burst.map_or(0, |c| c.finished),
            margin_median: margin.quantile(0.5),
            margin_p99: margin.quantile(0.99),
            near_miss_frac: margin.near_miss(),
            just_late_frac: margin.just_late(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    #[error("scenario {scenario}: {source}")]
    Scenario {
        scenario: String,
        source: rack_sim::SimError,
    },
    #[error("policy {policy}: {source}")]
    Policy {
        policy: String,
        source: malcolm_policies::PolicyError,
    },
    #[error("{label} on {scenario} seed {seed}: {source}")]
    Run {
        label: String,
        scenario: String,
        seed: u64,
        source: rack_sim::EnvLoopError,
    },
}

/// Runs one point on one seed, with the margin tap on the env's transport; `env_prefix`
/// starts the env id.
pub fn run_point(
    point: &Point,
    factory: Arc<dyn PolicyFactory>,
    seed: u64,
    env_prefix: &str,
) -> Result<(EvalRow, Report, MarginHist), EvalError> {
    let sc = &point.scenario;
    let measured = sc.warmup_tasks..sc.limits.tasks.unwrap_or(u64::MAX);
    let mut sim = RackSim::new(sc.clone(), seed).map_err(|source| EvalError::Scenario {
        scenario: point.scenario_spec.clone(),
        source,
    })?;
    let mut inner = Loopback::new(factory, seed);
    let mut tap = Tap::new(&mut inner, measured);
    let env_id = format!("{env_prefix}-{}-{seed}", point.label);
    let report = run_env_loop(&mut sim, &mut tap, &env_id, 1).map_err(|source| EvalError::Run {
        label: point.label.clone(),
        scenario: point.scenario_spec.clone(),
        seed,
        source,
    })?;
    let margin = std::mem::take(&mut tap.hist);
    Ok((EvalRow::new(point, seed, &report, &margin), report, margin))
}

/// Runs every point on every seed with `threads` workers; `resolve` turns policy specs into
/// factories (learners must already be in eval mode). Runs come back in (point, seed) order.
pub fn run_points(
    points: &[Point],
    seeds: &[u64],
    resolve: &FactoryResolver<'_>,
    threads: usize,
    progress: Option<&ProgressBar>,
    env_prefix: &str,
) -> Result<Vec<Run>, EvalError> {
    let mut factories: BTreeMap<String, Arc<dyn PolicyFactory>> = BTreeMap::new();
    for p in points {
        if !factories.contains_key(&p.policy) {
            let f = resolve(&p.policy).map_err(|source| EvalError::Policy {
                policy: p.policy.clone(),
                source,
            })?;
            factories.insert(p.policy.clone(), f);
        }
    }
    let jobs: Vec<(usize, u64)> = (0..points.len())
        .flat_map(|p| seeds.iter().map(move |&s| (p, s)))
        .collect();
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<Result<Run, EvalError>>>> =
        Mutex::new((0..jobs.len()).map(|_| None).collect());
    std::thread::scope(|scope| {
        for _ in 0..threads.max(1).min(jobs.len().max(1)) {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(&(p, seed)) = jobs.get(i) else { break };
                let point = &points[p];
                let r = run_point(point, factories[&point.policy].clone(), seed, env_prefix).map(
                    |(row, report, margin)| Run {
                        point: p,
                        row,
                        report,
                        margin,
                    },
                );
                if let Some(pb) = progress {
                    pb.inc(1);
                    if let Ok(run) = &r {
                        pb.set_message(format!(
                            "{} seed {}: miss {:.3}%",
                            run.row.label,
                            seed,
                            run.row.miss_rate * 100.0
                        ));
                    }
                }
                results.lock().expect("results lock")[i] = Some(r);
            });
        }
    });
    results
        .into_inner()
        .expect("results lock")
        .into_iter()
        .map(|r| r.expect("every job ran"))
        .collect()
}

/// Runs every case on every seed (see [`run_points`]).
pub fn evaluate(
    cases: &[EvalCase],
    seeds: &[u64],
    resolve: &FactoryResolver<'_>,
    threads: usize,
    progress: Option<&ProgressBar>,
) -> Result<Vec<Run>, EvalError> {
    let points = cases
        .iter()
        .map(EvalCase::point)
        .collect::<Result<Vec<_>, _>>()?;
    run_points(&points, seeds, resolve, threads, progress, "eval")
}
