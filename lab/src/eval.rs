//! `eval`: policies side by side on embedded-simulator scenarios with held-out seeds, each
//! run through the session contract in process (the loopback transport), in parallel over seeds.

use indicatif::ProgressBar;
use malcolm_policies::PolicyFactory;
use malcolm_serve::loopback::Loopback;
use rack_sim::{run_env_loop, RackSim, Report};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// Resolves a policy spec to a factory (learners already in eval mode).
pub type FactoryResolver<'a> =
    dyn Fn(&str) -> Result<Arc<dyn PolicyFactory>, malcolm_policies::PolicyError> + Sync + 'a;
type RunResult = Result<(EvalRow, Report), EvalError>;

/// One line of a comparison: a label, the policy spec and the scenario spec it runs on.
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
}

/// The figures of one (case, seed) run.
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
    /// (it never completes): `inf` when more than 50% / 1% / 0.1% of the tasks were dropped.
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
}

impl EvalRow {
    pub fn from_report(case: &EvalCase, seed: u64, r: &Report) -> Self {
        Self {
            label: case.label.clone(),
            policy: case.policy.clone(),
            scenario: case.scenario.clone(),
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
            burst_miss_rate: r.per_class.get(&1).map_or(f64::NAN, |c| c.miss_rate),
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
    #[error("{label} seed {seed}: {source}")]
    Run {
        label: String,
        seed: u64,
        source: rack_sim::EnvLoopError,
    },
}

/// Runs one case on one seed.
pub fn run_case(
    case: &EvalCase,
    factory: Arc<dyn PolicyFactory>,
    seed: u64,
) -> Result<(EvalRow, Report), EvalError> {
    let scenario = rack_sim::by_name(&case.scenario).map_err(|source| EvalError::Scenario {
        scenario: case.scenario.clone(),
        source,
    })?;
    let mut sim = RackSim::new(scenario, seed).map_err(|source| EvalError::Scenario {
        scenario: case.scenario.clone(),
        source,
    })?;
    let mut t = Loopback::new(factory, seed);
    let report = run_env_loop(&mut sim, &mut t, &format!("eval-{}-{seed}", case.label), 1)
        .map_err(|source| EvalError::Run {
            label: case.label.clone(),
            seed,
            source,
        })?;
    Ok((EvalRow::from_report(case, seed, &report), report))
}

/// Runs every case on every seed with `threads` workers; `factory` resolves policy specs
/// (learners must already be in eval mode). Results come back in (case, seed) order.
pub fn evaluate(
    cases: &[EvalCase],
    seeds: &[u64],
    factory: &FactoryResolver<'_>,
    threads: usize,
    progress: Option<&ProgressBar>,
) -> Result<Vec<(EvalRow, Report)>, EvalError> {
    let mut factories: BTreeMap<String, Arc<dyn PolicyFactory>> = BTreeMap::new();
    for c in cases {
        if !factories.contains_key(&c.policy) {
            let f = factory(&c.policy).map_err(|source| EvalError::Policy {
                policy: c.policy.clone(),
                source,
            })?;
            factories.insert(c.policy.clone(), f);
        }
    }
    let jobs: Vec<(usize, u64)> = (0..cases.len())
        .flat_map(|c| seeds.iter().map(move |&s| (c, s)))
        .collect();
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<RunResult>>> =
        Mutex::new((0..jobs.len()).map(|_| None).collect());
    std::thread::scope(|scope| {
        for _ in 0..threads.max(1).min(jobs.len().max(1)) {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(&(c, seed)) = jobs.get(i) else { break };
                let case = &cases[c];
                let r = run_case(case, factories[&case.policy].clone(), seed);
                if let Some(pb) = progress {
                    pb.inc(1);
                    if let Ok((row, _)) = &r {
                        pb.set_message(format!(
                            "{} seed {}: miss {:.3}%",
                            row.label,
                            seed,
                            row.miss_rate * 100.0
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
