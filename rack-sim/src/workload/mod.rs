//! Task arrivals: Poisson streams with service laws and deadline rules, micro-bursts, and
//! replay of recorded task traces (CSV); and the service-time estimates the policies see
//! ([`ServiceEstimate`]): the true service time drives only the server.
//!
//! Here: the scenario's workload description; `service` holds the service laws and
//! estimates, `gen` the live Poisson and micro-burst generators, `trace` the trace replay.

use serde::{Deserialize, Serialize};
use std::path::PathBuf;

mod gen;
mod service;
#[cfg(test)]
mod tests;
mod trace;

pub(crate) use gen::{BurstGen, PoissonGen};
pub(crate) use service::Estimator;
pub use service::{ServiceEstimate, ServiceLaw, DEFAULT_ESTIMATE_SIGMA};
pub(crate) use trace::{trace_class_means, TraceGen};

/// Smallest Pareto service (design.md section 9: x_m = 10 us).
pub const DEFAULT_PARETO_MIN_NS: u64 = 10_000;
/// Pareto upper bound: two decades above x_m, heavy enough for a tail, finite for moments.
pub const DEFAULT_PARETO_MAX_NS: u64 = 1_000_000;
/// Request payload: one small RPC that fits a single MTU frame.
pub const DEFAULT_TASK_SIZE_BYTES: u32 = 1024;
/// Micro-burst period (design.md section 9: every 100 ms).
pub const DEFAULT_BURST_PERIOD_NS: u64 = 100_000_000;
/// Relative deadline of micro-burst tasks (design.md section 9: 10 us).
pub const DEFAULT_BURST_DEADLINE_NS: u64 = 10_000;
/// Service of a micro-burst task: short enough that the 10 us deadline is feasible.
pub const DEFAULT_BURST_SERVICE_NS: u64 = 2_000;
/// Micro-burst tasks arrive within this span (a burst, not a single instant).
pub const DEFAULT_BURST_SPREAD_NS: u64 = 5_000;
/// Offered load of a Poisson stream.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Load {
    /// Fraction of the rack capacity (sum of cores x speed) divided by the mean service.
    Rho(f64),
    /// Absolute rate, tasks per second of simulated time.
    PerSecond(f64),
}

/// Absolute deadline of a task.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DeadlineRule {
    /// D = A + F x E, E the task's service *estimate* on a reference core (see
    /// [`ServiceEstimate`] for why not the true service).
    Factor(f64),
    /// D = A + d.
    Relative(u64),
    /// No deadline (u64::MAX): pure queueing runs.
    None,
}

impl DeadlineRule {
    /// Absolute deadline of a task arriving at `arrival` with service estimate `estimate`.
    pub fn deadline(&self, arrival: u64, estimate: u64) -> u64 {
        match *self {
            DeadlineRule::Factor(f) => arrival.saturating_add((f * estimate as f64).round() as u64),
            DeadlineRule::Relative(d) => arrival.saturating_add(d),
            DeadlineRule::None => u64::MAX,
        }
    }
}

/// Poisson arrivals with uniform origins.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PoissonSource {
    pub load: Load,
    pub service: ServiceLaw,
    pub deadline: DeadlineRule,
    pub size_bytes: u32,
}

/// Every `period_ns`, `count` short tasks (class 1) arrive within `spread_ns`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BurstSource {
    pub period_ns: u64,
    /// Time of the first burst.
    pub first_at_ns: u64,
    pub count: u32,
    pub spread_ns: u64,
    pub service: ServiceLaw,
    pub relative_deadline_ns: u64,
    pub size_bytes: u32,
}

impl BurstSource {
    /// The design's micro-bursts for a rack of `nodes` nodes: 8 tasks per node per burst.
    pub fn standard(nodes: usize) -> Self {
        Self {
            period_ns: DEFAULT_BURST_PERIOD_NS,
            first_at_ns: DEFAULT_BURST_PERIOD_NS / 2,
            count: 8 * nodes as u32,
            spread_ns: DEFAULT_BURST_SPREAD_NS,
            service: ServiceLaw::Deterministic {
                ns: DEFAULT_BURST_SERVICE_NS,
            },
            relative_deadline_ns: DEFAULT_BURST_DEADLINE_NS,
            size_bytes: DEFAULT_TASK_SIZE_BYTES,
        }
    }
}

/// One recorded task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TraceTask {
    pub arrival_ns: u64,
    pub origin: u32,
    pub service_ns: u64,
    pub deadline_ns: u64,
    pub size_bytes: u32,
    #[serde(default)]
    pub class: u32,
    /// The recorded service estimate; `None`: the scenario's [`ServiceEstimate`] model makes
    /// one from `service_ns`.
    #[serde(default)]
    pub estimate_ns: Option<u64>,
}

/// Where a task trace comes from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TraceSource {
    /// CSV with header `arrival_ns,origin,service_ns,deadline_ns,size_bytes[,class]
    /// [,estimate_ns]`, sorted by arrival. Streamed, never loaded whole. The deadlines are the
    /// file's (absolute); `estimate_ns`, where present, is used as the task's estimate.
    File(PathBuf),
    Inline(Vec<TraceTask>),
}

/// Everything that generates tasks in a scenario.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Workload {
    pub poisson: Option<PoissonSource>,
    pub bursts: Option<BurstSource>,
    pub trace: Option<TraceSource>,
}

/// A task as generated, before placement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NewTask {
    pub arrival_ns: u64,
    pub origin: u32,
    /// True service on a reference core (drives the server only).
    pub service_ns: u64,
    /// What the policies and the node's admission test see (see [`ServiceEstimate`]).
    pub estimate_ns: u64,
    pub deadline_ns: u64,
    pub size_bytes: u32,
    pub class: u32,
}
