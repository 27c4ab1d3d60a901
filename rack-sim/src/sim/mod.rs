//! The rack simulator as an environment: it runs the event loop until a decision is due and
//! hands out bridge `Step`s, applies `Placement`s, and ends episodes with `EpisodeEnd`.
//!
//! Here: the simulator's state, its public API and the episode lifecycle; `slab` is the task
//! table, `events` the event handlers, `step` the Steps and Placements.

use crate::engine::{EventQueue, PRIO_LAST, PRIO_NORMAL};
use crate::error::SimError;
use crate::metrics::{reason_label, EpisodeReport, Metrics, Report};
use crate::node::{Effect, Node};
use crate::scenario::Scenario;
use crate::workload::{
    trace_class_means, BurstGen, Estimator, PoissonGen, ServiceEstimate, TraceGen,
};
use malcolm_proto::bridge::{
    self, EndReason, EpisodeEnd, GlobalStateView, Hello, NodeState, Step, TaskOutcome,
};
use malcolm_proto::{Heartbeat, HEARTBEAT_LEN};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use slab::{Slab, TaskRec};

mod events;
mod slab;
mod step;
#[cfg(test)]
mod tests;

/// What the environment has for the agent next.
// A Step is the common case and is moved, never copied, so boxing it would only add an
// allocation per decision.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum SimEvent {
    /// A decision is due: answer with [`RackSim::apply`].
    Step(Step),
    /// The episode is over; the next call to [`RackSim::next_event`] starts the next one.
    EpisodeEnd(EpisodeEnd),
}

#[derive(Debug, Clone, Copy)]
enum Ev {
    Poisson,
    Burst,
    Trace,
    Decide {
        gen: u32,
    },
    Land {
        task: u32,
    },
    Drain {
        node: u32,
    },
    Core {
        node: u32,
        core: u32,
        gen: u32,
    },
    Ps {
        node: u32,
        gen: u32,
    },
    HbSend {
        node: u32,
    },
    /// The oldest heartbeat in flight from `sender` lands (same delay for all: FIFO).
    HbLand {
        sender: u32,
    },
    TimeLimit,
}

/// A node's derived state as of a job-set version, reused while still valid.
#[derive(Debug, Clone)]
struct NodeView {
    version: u64,
    /// The view reads the same until this instant (see `Node::sth_until`).
    valid_until: u64,
    sth: malcolm_proto::SlackHistogram,
    hb: Heartbeat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// The next call starts an episode.
    Idle,
    Running,
}

/// RNG stream ids, so each random process has its own sequence (the estimates have their
/// own, so a seed's arrivals and services do not depend on the estimate model).
const STREAM_POISSON: u64 = 1;
const STREAM_BURST: u64 = 2;
const STREAM_HEARTBEAT: u64 = 3;
const STREAM_POISSON_ESTIMATE: u64 = 4;
const STREAM_BURST_ESTIMATE: u64 = 5;
const STREAM_TRACE_ESTIMATE: u64 = 6;

/// The embedded rack simulator.
pub struct RackSim {
    scenario: Scenario,
    seed: u64,
    n: usize,
    nodes: Vec<Node>,
    queue: EventQueue<Ev>,
    now: u64,
    phase: Phase,
    episode: u64,
    /// Index of the next Step of the episode (= Steps sent so far).
    step_index: u64,
    steps_total: u64,
    events: u64,
    sim_time_total: u64,
    tasks: Slab,
    poisson: Option<PoissonGen>,
    bursts: Option<BurstGen>,
    trace: Option<TraceGen>,
    pending: Vec<u32>,
    decide_gen: u32,
    outstanding: Vec<u32>,
    has_outstanding: bool,
    outcomes: Vec<TaskOutcome>,
    drain_scheduled: Vec<bool>,
    uplink_free: Vec<u64>,
    /// Each uplink's FIFO of transmissions not finished at the last look: (start, end, bytes).
    uplink_fifo: Vec<std::collections::VecDeque<(u64, u64, u32)>>,
    /// Bytes each uplink had finished sending at the previous Step (for its tx rate).
    uplink_sent: Vec<u64>,
    uplink_sent_at_step: Vec<u64>,
    policy_version: Vec<u32>,
    /// Global State Tables: receiver-major, `gst[r * n + s]` is what r last heard from s.
    gst: Vec<[u8; HEARTBEAT_LEN]>,
    gst_sent: Vec<u64>,
    /// Heartbeats on the wire per sender: (sent_at, payload).
    hb_in_flight: Vec<std::collections::VecDeque<(u64, [u8; HEARTBEAT_LEN])>>,
    views: Vec<Option<NodeView>>,
    inv_cores: Vec<f64>,
    util_busy: Vec<u64>,
    util_time: u64,
    is_origin: Vec<bool>,
    arrivals: u64,
    counted_in_flight: u64,
    effects: Vec<Effect>,
    spare_step: Option<Step>,
    gst_pool: Vec<GlobalStateView>,
    /// Bridge protocol version of the Steps (2: each distinct GST once per Step, node state
    /// in columns).
    protocol: u32,
    /// v2: each node's 1-based GST table in the Step being built (0: none).
    gst_index: Vec<u16>,
    /// v2: the node states packed into the last Step's columns, reused for the next.
    spare_nodes: Vec<NodeState>,
    metrics: Metrics,
    /// Time of the most recent Step (utilisation since then).
    last_step_time: u64,
    /// Mean true service per class, for class-mean estimates.
    class_means: Vec<(u32, f64)>,
    /// Why the last episode was cut short (a failing task source), until taken.
    source_error: Option<SimError>,
}

impl RackSim {
    pub fn new(scenario: Scenario, seed: u64) -> Result<Self, SimError> {
        scenario.validate()?;
        if let Some(t) = &scenario.workload.trace {
            // Fail early on a missing file or a bad first row.
            TraceGen::open(t, scenario.nodes.len() as u32, None)?;
        }
        let class_means = class_means(&scenario)?;
        let n = scenario.nodes.len();
        let nodes = scenario
            .nodes
            .iter()
            .map(|s| Node::new(s.clone(), scenario.timing))
            .collect();
        Ok(Self {
            seed,
            n,
            nodes,
            queue: EventQueue::new(),
            now: 0,
            phase: Phase::Idle,
            episode: 0,
            step_index: 0,
            steps_total: 0,
            events: 0,
            sim_time_total: 0,
            tasks: Slab::default(),
            poisson: None,
            bursts: None,
            trace: None,
            pending: Vec::new(),
            decide_gen: 0,
            outstanding: Vec::new(),
            has_outstanding: false,
            outcomes: Vec::new(),
            drain_scheduled: vec![false; n],
            uplink_free: vec![0; n],
            uplink_fifo: vec![Default::default(); n],
            uplink_sent: vec![0; n],
            uplink_sent_at_step: vec![0; n],
            policy_version: vec![0; n],
            gst: vec![[0; HEARTBEAT_LEN]; n * n],
            gst_sent: vec![u64::MAX; n * n],
            hb_in_flight: vec![Default::default(); n],
            views: vec![None; n],
            inv_cores: scenario
                .nodes
                .iter()
                .map(|s| 1.0 / s.cores as f64)
                .collect(),
            util_busy: vec![0; n],
            util_time: 0,
            is_origin: vec![false; n],
            arrivals: 0,
            counted_in_flight: 0,
            effects: Vec::with_capacity(64),
            spare_step: None,
            gst_pool: Vec::new(),
            protocol: malcolm_proto::PROTOCOL_V1,
            gst_index: vec![0; n],
            spare_nodes: Vec::new(),
            metrics: Metrics::new(n),
            last_step_time: 0,
            class_means,
            source_error: None,
            scenario,
        })
    }

    pub fn scenario(&self) -> &Scenario {
        &self.scenario
    }

    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// Current episode (0-based).
    pub fn episode(&self) -> u64 {
        self.episode
    }

    /// Simulated time within the current episode.
    pub fn now(&self) -> u64 {
        self.now
    }

    /// Events processed since creation.
    pub fn events(&self) -> u64 {
        self.events
    }

    /// Emits Steps of bridge protocol `version` from now on: 1 carries each origin's GST in
    /// its node state, 2 each distinct GST once in `Step.gst_tables` (the session negotiates
    /// it in the Hello). Both describe the same tables.
    pub fn set_protocol(&mut self, version: u32) {
        self.protocol = version;
    }

    pub fn protocol(&self) -> u32 {
        self.protocol
    }

    /// The session's first message (it offers every protocol version rack-sim speaks).
    pub fn hello(&self, env_id: &str) -> Hello {
        Hello {
            env_id: env_id.to_string(),
            simulator: "rack-sim".into(),
            scenario: self.scenario.name.clone(),
            seed: self.seed,
            nodes: self
                .scenario
                .nodes
                .iter()
                .enumerate()
                .map(|(i, s)| bridge::NodeSpec {
                    node_id: i as u32,
                    cores: s.cores,
                    speed: s.speed,
                    kind: s.kind.clone(),
                    discipline: s.discipline.to_proto() as i32,
                })
                .collect(),
            sth: Some(malcolm_proto::sth_config()),
            heartbeat_interval_ns: self.scenario.heartbeat_interval_ns,
            parameters: self.scenario.parameters().into_iter().collect(),
            protocol_versions: malcolm_proto::SUPPORTED_VERSIONS.to_vec(),
        }
    }

    /// Hands a Step back so its buffers are reused for the next one (optional; saves the
    /// allocations of a full node-state vector per Step).
    pub fn recycle(&mut self, step: Step) {
        self.spare_step = Some(step);
    }

    /// Metrics of everything measured so far.
    pub fn report(&self) -> Report {
        let mut r = self.metrics.report(
            &self.scenario.name,
            self.seed,
            self.sim_time_total
                + if self.phase == Phase::Running {
                    self.now
                } else {
                    0
                },
            self.events,
            self.steps_total,
        );
        r.service_estimate = self.scenario.estimate.label();
        r
    }

    fn episode_rng(&self, stream: u64) -> ChaCha8Rng {
        let mut r = ChaCha8Rng::seed_from_u64(self.seed);
        r.set_stream(self.episode << 8 | stream);
        r
    }

    fn estimator(&self, stream: u64) -> Estimator {
        Estimator::new(
            self.scenario.estimate,
            self.class_means.clone(),
            self.episode_rng(stream),
        )
    }

    /// The error that cut the last episode short (a task source that failed mid-episode;
    /// the episode then ended as truncated, never as terminated), if any. Taking it clears
    /// it; the env loops return it as an error.
    pub fn take_source_error(&mut self) -> Option<SimError> {
        self.source_error.take()
    }

    fn start_episode(&mut self) -> Result<(), SimError> {
        self.now = 0;
        self.queue.clear();
        self.tasks.clear();
        for node in &mut self.nodes {
            node.reset(0);
        }
        self.pending.clear();
        self.outstanding.clear();
        self.has_outstanding = false;
        self.outcomes.clear();
        self.drain_scheduled.fill(false);
        self.uplink_free.fill(0);
        for q in &mut self.uplink_fifo {
            q.clear();
        }
        self.uplink_sent.fill(0);
        self.uplink_sent_at_step.fill(0);
        self.gst.fill([0; HEARTBEAT_LEN]);
        self.gst_sent.fill(u64::MAX);
        for q in &mut self.hb_in_flight {
            q.clear();
        }
        self.views.fill(None);
        self.util_busy.fill(0);
        self.util_time = 0;
        self.last_step_time = 0;
        self.arrivals = 0;
        self.counted_in_flight = 0;
        self.step_index = 0;
        let n = self.n as u32;
        let w = self.scenario.workload.clone();
        self.poisson = w.poisson.map(|p| {
            PoissonGen::new(
                p,
                self.scenario.capacity(),
                n,
                self.episode_rng(STREAM_POISSON),
                self.estimator(STREAM_POISSON_ESTIMATE),
            )
        });
        self.bursts = w.bursts.map(|b| {
            BurstGen::new(
                b,
                n,
                self.episode_rng(STREAM_BURST),
                self.estimator(STREAM_BURST_ESTIMATE),
            )
        });
        self.trace = match &w.trace {
            Some(t) => Some(TraceGen::open(
                t,
                n,
                Some(self.estimator(STREAM_TRACE_ESTIMATE)),
            )?),
            None => None,
        };
        if let Some(p) = &self.poisson {
            self.queue.push(p.peek_time(), PRIO_NORMAL, Ev::Poisson);
        }
        if let Some(t) = self.bursts.as_ref().and_then(BurstGen::peek_time) {
            self.queue.push(t, PRIO_NORMAL, Ev::Burst);
        }
        if let Some(t) = self.trace.as_ref().and_then(TraceGen::peek_time) {
            self.queue.push(t, PRIO_NORMAL, Ev::Trace);
        }
        // Unsynchronised heartbeat phases, as on real hosts.
        let t_hb = self.scenario.heartbeat_interval_ns;
        let mut rng = self.episode_rng(STREAM_HEARTBEAT);
        for i in 0..n {
            let phase = rng.random_range(0..t_hb);
            self.queue.push(phase, PRIO_NORMAL, Ev::HbSend { node: i });
        }
        if let Some(limit) = self.scenario.limits.sim_time_ns {
            self.queue.push(limit, PRIO_LAST, Ev::TimeLimit);
        }
        self.phase = Phase::Running;
        tracing::debug!(episode = self.episode, scenario = %self.scenario.name, "episode start");
        Ok(())
    }

    /// Runs the simulation to the next decision or the end of the episode.
    ///
    /// Calling it again while a Step waits for its placement re-sends that Step (with fresh
    /// node state and no outcomes, which were already delivered).
    ///
    /// A task source that fails (an unreadable trace row) ends the episode as *truncated*
    /// (the state still has value; it is not a natural end) and keeps the error for
    /// [`RackSim::take_source_error`].
    pub fn next_event(&mut self) -> SimEvent {
        if self.phase == Phase::Idle {
            if let Err(e) = self.start_episode() {
                // The trace was readable at construction; a failure now cuts the episode.
                tracing::error!(error = %e, "cannot start episode");
                self.source_error = Some(e);
                return self.end_episode(EndReason::Truncated);
            }
        }
        if self.has_outstanding {
            tracing::warn!(
                step = self.step_index,
                "next_event called before the placement: re-sending the step"
            );
            return SimEvent::Step(self.build_step());
        }
        loop {
            if let Some(reason) = self.episode_over() {
                return self.end_episode(reason);
            }
            let Some((t, ev)) = self.queue.pop() else {
                return self.end_episode(EndReason::Terminated);
            };
            self.now = t;
            self.events += 1;
            match self.handle(ev) {
                Ok(Some(reason)) => return self.end_episode(reason),
                Ok(None) => {}
                Err(e) => {
                    tracing::error!(error = %e, "task source failed, cutting the episode");
                    self.source_error = Some(e);
                    return self.end_episode(EndReason::Truncated);
                }
            }
            if self.has_outstanding {
                return SimEvent::Step(self.build_step());
            }
        }
    }

    fn episode_over(&self) -> Option<EndReason> {
        if let Some(limit) = self.scenario.limits.tasks {
            if self.arrivals >= limit && self.counted_in_flight == 0 {
                return Some(EndReason::Truncated);
            }
        }
        let sources_done = self.poisson.is_none()
            && self.bursts.is_none()
            && self.trace.as_ref().is_none_or(|t| t.peek_time().is_none());
        if sources_done && self.tasks.live == 0 {
            return Some(EndReason::Terminated);
        }
        None
    }

    fn end_episode(&mut self, reason: EndReason) -> SimEvent {
        let busy: Vec<u64> = self
            .nodes
            .iter()
            .map(|n| n.busy_core_ns(self.now))
            .collect();
        let cores: Vec<u32> = self.nodes.iter().map(|n| n.spec.cores).collect();
        self.metrics.end_episode(
            EpisodeReport {
                episode: self.episode,
                reason: reason_label(reason),
                steps: self.step_index,
                sim_time_ns: self.now,
                arrivals: self.arrivals,
                measured: self
                    .arrivals
                    .min(self.scenario.limits.tasks.unwrap_or(u64::MAX))
                    .saturating_sub(self.scenario.warmup_tasks),
            },
            &busy,
            &cores,
        );
        let end = EpisodeEnd {
            episode: self.episode,
            steps: self.step_index,
            reason: reason as i32,
            outcomes: std::mem::take(&mut self.outcomes),
            sim_time_ns: self.now,
        };
        tracing::debug!(episode = self.episode, reason = ?reason, steps = self.step_index, "episode end");
        self.sim_time_total += self.now;
        self.episode += 1;
        self.phase = Phase::Idle;
        self.has_outstanding = false;
        SimEvent::EpisodeEnd(end)
    }
}

/// Mean true service per task class for class-mean estimates: the law's mean for generated
/// classes (0 Poisson, 1 micro-bursts), the trace's own per-class mean otherwise.
fn class_means(s: &Scenario) -> Result<Vec<(u32, f64)>, SimError> {
    if s.estimate != ServiceEstimate::ClassMean {
        return Ok(Vec::new());
    }
    let mut m = match &s.workload.trace {
        Some(t) => trace_class_means(t, s.nodes.len() as u32)?,
        None => Vec::new(),
    };
    let mut set = |class: u32, mean: f64| match m.iter_mut().find(|(c, _)| *c == class) {
        Some(e) => e.1 = mean,
        None => m.push((class, mean)),
    };
    if let Some(p) = &s.workload.poisson {
        set(0, p.service.mean_ns());
    }
    if let Some(b) = &s.workload.bursts {
        set(1, b.service.mean_ns());
    }
    Ok(m)
}
