//! Helpers shared by the integration tests: scenarios for queueing checks and runs through
//! the in-process transport.
#![allow(dead_code)]

use malcolm_policies::baselines::{factory_by_name, Params};
use malcolm_policies::{Decision, Policy, PolicyError};
use malcolm_proto::bridge::{Step, TaskOutcome};
use rack_sim::scenario::{DecisionConfig, EpisodeLimits, NetworkModel};
use rack_sim::workload::PoissonSource;
use rack_sim::{
    run_env_loop, DeadlineRule, Discipline, InProcessTransport, Load, NodeSpec, RackSim, Report,
    Scenario, ServiceLaw,
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
    let mut t = InProcessTransport::from_factory(Arc::from(factory), seed);
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
    let mut t = InProcessTransport::new(Box::new(rec), "recording");
    let report = run_env_loop(&mut sim, &mut t, "test", 1).expect("run");
    let v = outcomes.lock().unwrap().clone();
    (report, v)
}

/// Relative error.
pub fn rel(measured: f64, theory: f64) -> f64 {
    (measured - theory).abs() / theory
}
