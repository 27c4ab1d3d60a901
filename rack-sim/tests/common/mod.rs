//! Helpers shared by the integration tests: scenarios for queueing checks and runs through
//! the in-process transport.
#![allow(dead_code)]

use malcolm_policies::baselines::{factory_by_name, Params};
use malcolm_policies::{Decision, Policy, PolicyError};
use malcolm_proto::bridge::{Step, TaskOutcome};
use malcolm_serve::loopback::Loopback;
use rack_sim::scenario::{DecisionConfig, EpisodeLimits, NetworkModel};
use rack_sim::workload::PoissonSource;
use rack_sim::{
    run_env_loop, DeadlineRule, Discipline, Load, NodeSpec, RackSim, Report, Scenario, ServiceLaw,
};
use std::sync::{Arc, Mutex};

/// Classic queueing model: `n` single-core speed-1 nodes, Poisson arrivals at `rho` per node,
/// no deadlines, no network, a decision at every arrival instant with fresh state.
pub fn queueing(
    n: usize,
    discipline: Discipline,
    service: ServiceLaw,
    rho: f64,
    tasks: u64,
) -> Scenario {
    let mut s = Scenario::poisson(
        "queueing",
        vec![NodeSpec::single(discipline); n],
        PoissonSource {
            load: Load::Rho(rho),
            service,
            deadline: DeadlineRule::None,
            size_bytes: 0,
        },
    );
    s.network = NetworkModel::zero();
    s.decision = DecisionConfig {
        window_ns: 0,
        max_batch: 64,
    };
    // Heartbeats play no part here; keep them rare.
    s.heartbeat_interval_ns = 1_000_000_000;
    s.limits = EpisodeLimits {
        tasks: Some(tasks),
        sim_time_ns: None,
    };
    s.warmup_tasks = tasks / 20;
    s
}

/// Runs one episode of `scenario` with the named baseline in process.
pub fn run_baseline(
    scenario: Scenario,
    seed: u64,
    policy: &str,
    params: &[(&str, &str)],
) -> Report {
    let params: Params = params
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let factory = factory_by_name(policy, &params).expect("baseline");
    let mut sim = RackSim::new(scenario, seed).expect("scenario");
    let mut t = Loopback::new(Arc::from(factory), seed);
    run_env_loop(&mut sim, &mut t, "test", 1).expect("run")
}

/// Wraps a policy and keeps every outcome it is shown.
pub struct Recording<P> {
    pub inner: P,
    pub outcomes: Arc<Mutex<Vec<TaskOutcome>>>,
}

impl<P: Policy> Policy for Recording<P> {
    fn decide(&mut self, step: &Step, out: &mut Decision) -> Result<(), PolicyError> {
        self.inner.decide(step, out)
    }
    fn observe(&mut self, outcomes: &[TaskOutcome]) {
        self.outcomes.lock().unwrap().extend_from_slice(outcomes);
        self.inner.observe(outcomes);
    }
}

/// Runs one episode with `policy` and returns the report and every outcome.
pub fn run_recording(
    scenario: Scenario,
    policy: impl Policy + 'static,
) -> (Report, Vec<TaskOutcome>) {
    let outcomes = Arc::new(Mutex::new(Vec::new()));
    let rec = Recording {
        inner: policy,
        outcomes: outcomes.clone(),
    };
    let mut sim = RackSim::new(scenario, 0).expect("scenario");
    let mut t = Loopback::with_policy(Box::new(rec), "recording");
    let report = run_env_loop(&mut sim, &mut t, "test", 1).expect("run");
    let v = outcomes.lock().unwrap().clone();
    (report, v)
}

/// Per-task samples of the measured tasks of one run, in arrival (task id) order.
#[derive(Debug, Default)]
pub struct Samples {
    /// End-to-end latency, ns.
    pub latency_ns: Vec<f64>,
    /// Latency minus the task's own service time on its node (read from its estimate: the
    /// scenario must use exact estimates), ns.
    pub wait_ns: Vec<f64>,
}

/// A boxed policy as a policy.
pub struct Boxed(pub Box<dyn Policy>);

impl Policy for Boxed {
    fn decide(&mut self, step: &Step, out: &mut Decision) -> Result<(), PolicyError> {
        self.0.decide(step, out)
    }
    fn observe(&mut self, outcomes: &[TaskOutcome]) {
        self.0.observe(outcomes)
    }
    fn end_episode(&mut self, end: &malcolm_proto::bridge::EpisodeEnd) {
        self.0.end_episode(end)
    }
}

/// Records each task's estimate at its decision and its outcome, compactly.
struct Sampler {
    inner: Box<dyn Policy>,
    estimates: Arc<Mutex<Vec<u64>>>,
    done: Arc<Mutex<Vec<(u64, u64, u32)>>>,
}

impl Policy for Sampler {
    fn decide(&mut self, step: &Step, out: &mut Decision) -> Result<(), PolicyError> {
        let mut e = self.estimates.lock().unwrap();
        for t in &step.tasks {
            let i = t.task_id as usize;
            if e.len() <= i {
                e.resize(i + 1, 0);
            }
            e[i] = t.service_estimate_ns;
        }
        drop(e);
        self.inner.decide(step, out)
    }
    fn observe(&mut self, outcomes: &[TaskOutcome]) {
        self.done.lock().unwrap().extend(
            outcomes
                .iter()
                .map(|o| (o.task_id, o.latency_ns, o.node_id)),
        );
        self.inner.observe(outcomes);
    }
}

/// Runs one episode of `scenario` with random placement and returns the measured tasks'
/// latency and wait samples in arrival order.
pub fn run_samples(scenario: Scenario, seed: u64) -> Samples {
    assert_eq!(
        scenario.estimate,
        rack_sim::ServiceEstimate::Exact,
        "wait samples read the service from exact estimates"
    );
    let (warmup, tasks) = (
        scenario.warmup_tasks,
        scenario.limits.tasks.expect("a task limit"),
    );
    let nodes = scenario.nodes.clone();
    let factory = factory_by_name("random", &Params::new()).expect("baseline");
    let mut sim = RackSim::new(scenario, seed).expect("scenario");
    let inner = factory
        .new_session(&sim.hello("samples"), seed)
        .expect("session");
    let estimates = Arc::new(Mutex::new(Vec::new()));
    let done = Arc::new(Mutex::new(Vec::new()));
    let p = Sampler {
        inner,
        estimates: estimates.clone(),
        done: done.clone(),
    };
    let mut t = Loopback::with_policy(Box::new(p), "samples");
    run_env_loop(&mut sim, &mut t, "test", 1).expect("run");
    let est = estimates.lock().unwrap();
    let mut done = std::mem::take(&mut *done.lock().unwrap());
    done.retain(|&(id, _, _)| id >= warmup && id < tasks);
    done.sort_unstable_by_key(|x| x.0);
    assert_eq!(
        done.len() as u64,
        tasks - warmup,
        "every measured task finished once"
    );
    let mut s = Samples::default();
    for (id, latency, node) in done {
        let wall = nodes[node as usize].wall_ns(est[id as usize]);
        s.latency_ns.push(latency as f64);
        s.wait_ns.push(latency as f64 - wall as f64);
    }
    s
}

/// Runs one episode of `scenario` with the named baseline and returns every outcome.
pub fn run_outcomes(
    scenario: Scenario,
    seed: u64,
    policy: &str,
    params: &[(&str, &str)],
) -> Vec<TaskOutcome> {
    let params: Params = params
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let factory = factory_by_name(policy, &params).expect("baseline");
    let mut sim = RackSim::new(scenario, seed).expect("scenario");
    let inner = factory
        .new_session(&sim.hello("outcomes"), seed)
        .expect("session");
    let outcomes = Arc::new(Mutex::new(Vec::new()));
    let rec = Recording {
        inner: Boxed(inner),
        outcomes: outcomes.clone(),
    };
    let mut t = Loopback::with_policy(Box::new(rec), "outcomes");
    run_env_loop(&mut sim, &mut t, "test", 1).expect("run");
    let v = std::mem::take(&mut *outcomes.lock().unwrap());
    v
}

/// Relative error.
pub fn rel(measured: f64, theory: f64) -> f64 {
    (measured - theory).abs() / theory
}
