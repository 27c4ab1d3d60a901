//! The rack simulator as an environment: it runs the event loop until a decision is due and
//! hands out bridge `Step`s, applies `Placement`s, and ends episodes with `EpisodeEnd`.

use crate::edf::Job;
use crate::engine::{EventQueue, PRIO_LAST, PRIO_LATE, PRIO_NORMAL};
use crate::error::SimError;
use crate::metrics::{reason_label, EpisodeReport, Finished, Metrics, Report};
use crate::node::{Effect, Node};
use crate::scenario::Scenario;
use crate::workload::{
    trace_class_means, BurstGen, Estimator, NewTask, PoissonGen, ServiceEstimate, TraceGen,
};
use malcolm_proto::bridge::{
    self, EndReason, EpisodeEnd, GlobalStateView, HeartbeatFields, Hello, NodeState, OutcomeKind,
    PendingTask, Placement, Step, TaskOutcome,
};
use malcolm_proto::heartbeat::rho_of_tasks;
use malcolm_proto::{Heartbeat, HEARTBEAT_LEN};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

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

#[derive(Debug, Clone, Copy)]
struct TaskRec {
    id: u64,
    origin: u32,
    class: u32,
    size_bytes: u32,
    service_ns: u64,
    estimate_ns: u64,
    arrival_ns: u64,
    deadline_ns: u64,
    step: u64,
    target: u32,
    /// Arrived before the task limit: the episode waits for it.
    counted: bool,
    /// Counted and past the warm-up: goes into the metrics.
    measured: bool,
}

/// Task table with a free list; its size follows the tasks in flight, not the run length.
#[derive(Default)]
struct Slab {
    slots: Vec<Option<TaskRec>>,
    free: Vec<u32>,
    live: usize,
}

impl Slab {
    fn insert(&mut self, t: TaskRec) -> u32 {
        self.live += 1;
        if let Some(h) = self.free.pop() {
            self.slots[h as usize] = Some(t);
            h
        } else {
            self.slots.push(Some(t));
            (self.slots.len() - 1) as u32
        }
    }

    fn get(&self, h: u32) -> &TaskRec {
        self.slots[h as usize].as_ref().expect("live task handle")
    }

    fn get_mut(&mut self, h: u32) -> &mut TaskRec {
        self.slots[h as usize].as_mut().expect("live task handle")
    }

    fn remove(&mut self, h: u32) -> TaskRec {
        self.live -= 1;
        self.free.push(h);
        self.slots[h as usize].take().expect("live task handle")
    }

    fn clear(&mut self) {
        self.slots.clear();
        self.free.clear();
        self.live = 0;
    }
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

    /// Handles one event; `Some(reason)` ends the episode.
    fn handle(&mut self, ev: Ev) -> Result<Option<EndReason>, SimError> {
        match ev {
            Ev::Poisson => {
                let p = self.poisson.as_mut().expect("scheduled by the source");
                let t = p.next();
                let next = p.peek_time();
                self.queue.push(next, PRIO_NORMAL, Ev::Poisson);
                self.arrive(t);
            }
            Ev::Burst => {
                let b = self.bursts.as_mut().expect("scheduled by the source");
                if let Some(t) = b.next() {
                    if let Some(next) = b.peek_time() {
                        self.queue.push(next, PRIO_NORMAL, Ev::Burst);
                    }
                    self.arrive(t);
                }
            }
            Ev::Trace => {
                let g = self.trace.as_mut().expect("scheduled by the source");
                if let Some(t) = g.next()? {
                    if let Some(next) = g.peek_time() {
                        self.queue.push(next, PRIO_NORMAL, Ev::Trace);
                    }
                    self.arrive(t);
                }
            }
            Ev::Decide { gen } => {
                if gen == self.decide_gen && !self.pending.is_empty() {
                    self.take_decision();
                }
            }
            Ev::Land { task } => self.land(task),
            Ev::Drain { node } => {
                self.drain_scheduled[node as usize] = false;
                let mut fx = std::mem::take(&mut self.effects);
                let more = self.nodes[node as usize].drain(self.now, &mut fx);
                self.apply_effects(node, &mut fx);
                self.effects = fx;
                if more {
                    self.schedule_drain(node);
                }
            }
            Ev::Core { node, core, gen } => {
                let mut fx = std::mem::take(&mut self.effects);
                self.nodes[node as usize].core_done(self.now, core, gen, &mut fx);
                self.apply_effects(node, &mut fx);
                self.effects = fx;
            }
            Ev::Ps { node, gen } => {
                let mut fx = std::mem::take(&mut self.effects);
                self.nodes[node as usize].ps_done(self.now, gen, &mut fx);
                self.apply_effects(node, &mut fx);
                self.effects = fx;
            }
            Ev::HbSend { node } => self.send_heartbeat(node),
            Ev::HbLand { sender } => {
                let (n, s) = (self.n, sender as usize);
                let (sent_at, payload) = self.hb_in_flight[s]
                    .pop_front()
                    .expect("one entry per HbLand event");
                for r in (0..n).filter(|&r| r != s) {
                    if self.gst_sent[r * n + s] == u64::MAX || self.gst_sent[r * n + s] < sent_at {
                        self.gst[r * n + s] = payload;
                        self.gst_sent[r * n + s] = sent_at;
                    }
                }
            }
            Ev::TimeLimit => return Ok(Some(EndReason::Truncated)),
        }
        Ok(None)
    }

    fn arrive(&mut self, t: NewTask) {
        let id = self.arrivals;
        self.arrivals += 1;
        let counted = self.scenario.limits.tasks.is_none_or(|l| id < l);
        let measured = counted && id >= self.scenario.warmup_tasks;
        let h = self.tasks.insert(TaskRec {
            id,
            origin: t.origin,
            class: t.class,
            size_bytes: t.size_bytes,
            service_ns: t.service_ns,
            estimate_ns: t.estimate_ns,
            arrival_ns: t.arrival_ns,
            deadline_ns: t.deadline_ns,
            step: 0,
            target: t.origin,
            counted,
            measured,
        });
        if counted {
            self.counted_in_flight += 1;
        }
        if measured {
            self.metrics.arrival(t.arrival_ns);
        }
        self.pending.push(h);
        let d = self.scenario.decision;
        if self.pending.len() >= d.max_batch {
            self.schedule_decide(self.now);
        } else if self.pending.len() == 1 {
            self.schedule_decide(self.now + d.window_ns);
        }
    }

    fn schedule_decide(&mut self, at: u64) {
        self.decide_gen = self.decide_gen.wrapping_add(1);
        self.queue.push(
            at,
            PRIO_LATE,
            Ev::Decide {
                gen: self.decide_gen,
            },
        );
    }

    fn take_decision(&mut self) {
        let d = self.scenario.decision;
        let k = self.pending.len().min(d.max_batch);
        self.outstanding.clear();
        self.outstanding.extend(self.pending.drain(..k));
        for &h in &self.outstanding {
            self.tasks.get_mut(h).step = self.step_index;
        }
        self.has_outstanding = true;
        if let Some(&first) = self.pending.first() {
            let due = self.tasks.get(first).arrival_ns + d.window_ns;
            let at = if self.pending.len() >= d.max_batch {
                self.now
            } else {
                due.max(self.now)
            };
            self.schedule_decide(at);
        }
    }

    fn schedule_drain(&mut self, node: u32) {
        if !self.drain_scheduled[node as usize] {
            self.drain_scheduled[node as usize] = true;
            self.queue.push(self.now, PRIO_NORMAL, Ev::Drain { node });
        }
    }

    fn land(&mut self, h: u32) {
        let t = *self.tasks.get(h);
        let node = &mut self.nodes[t.target as usize];
        node.enqueue(Job {
            handle: h,
            id: t.id,
            deadline: t.deadline_ns,
            work_ns: node.spec.wall_ns(t.service_ns),
            est_ns: node.spec.wall_ns(t.estimate_ns),
        });
        self.schedule_drain(t.target);
    }

    fn apply_effects(&mut self, node: u32, fx: &mut Vec<Effect>) {
        for e in fx.drain(..) {
            match e {
                Effect::CoreTimer { core, gen, at } => {
                    self.queue
                        .push(at, PRIO_NORMAL, Ev::Core { node, core, gen })
                }
                Effect::PsTimer { gen, at } => {
                    self.queue.push(at, PRIO_NORMAL, Ev::Ps { node, gen })
                }
                Effect::Completed { handle } => self.finish(handle, node, false),
                Effect::Dropped { handle } => self.finish(handle, node, true),
            }
        }
    }

    fn finish(&mut self, h: u32, node: u32, dropped: bool) {
        let t = self.tasks.remove(h);
        let on_time = !dropped && self.now <= t.deadline_ns;
        let kind = if dropped {
            OutcomeKind::Dropped
        } else if on_time {
            OutcomeKind::Completed
        } else {
            OutcomeKind::Missed
        };
        let latency_ns = self.now - t.arrival_ns;
        self.outcomes.push(TaskOutcome {
            task_id: t.id,
            node_id: node,
            origin: t.origin,
            kind: kind as i32,
            arrival_ns: t.arrival_ns,
            finish_ns: self.now,
            deadline_ns: t.deadline_ns,
            latency_ns,
            class: t.class,
            decided_at_step: t.step,
        });
        if t.counted {
            self.counted_in_flight -= 1;
        }
        if t.measured {
            self.metrics.finish(Finished {
                class: t.class,
                on_time,
                dropped,
                latency_ns,
                service_ref_ns: t.service_ns,
                service_wall_ns: self.nodes[node as usize].spec.wall_ns(t.service_ns),
            });
        }
    }

    fn heartbeat_of(&self, i: usize) -> Heartbeat {
        let node = &self.nodes[i];
        let sth = node.sth(self.now);
        let rho = rho_of_tasks(node.tasks_in_system() as u64, node.spec.cores);
        Heartbeat::from_sth(
            i as u8,
            &sth,
            rho,
            node.busy_cores() > 0,
            self.policy_version[i],
        )
    }

    fn send_heartbeat(&mut self, node: u32) {
        let i = node as usize;
        let payload = self.heartbeat_of(i).encode();
        // A node's own entry is a local write, fresh at once.
        self.gst[i * self.n + i] = payload;
        self.gst_sent[i * self.n + i] = self.now;
        self.hb_in_flight[i].push_back((self.now, payload));
        self.queue.push(
            self.now + self.scenario.network.one_way_ns,
            PRIO_NORMAL,
            Ev::HbLand { sender: node },
        );
        self.queue.push(
            self.now + self.scenario.heartbeat_interval_ns,
            PRIO_NORMAL,
            Ev::HbSend { node },
        );
    }

    /// Each node's uplink (NIC -> ToR) as the Step's `links` (link id `2 * node`, the id the
    /// OMNeT++ coordinator gives uplinks): bytes queued or being serialised now, the rate sent
    /// since the previous Step. The ideal network has no PFC, ECN, drops, nor downlink queues,
    /// so those fields are false/0 and no downlinks are listed.
    fn fill_uplinks(&mut self, step: &mut Step) {
        let now = self.now;
        let dt = now.saturating_sub(self.last_step_time);
        for i in 0..self.n {
            let fifo = &mut self.uplink_fifo[i];
            while let Some(&(_, end, bytes)) = fifo.front() {
                if end > now {
                    break;
                }
                self.uplink_sent[i] += bytes as u64;
                fifo.pop_front();
            }
            // Bytes not on the wire yet; the one being sent counts by the part left.
            let queue_bytes: u64 = fifo
                .iter()
                .map(|&(start, end, bytes)| {
                    if start >= now {
                        bytes as u64
                    } else {
                        (bytes as u64 * (end - now)).div_ceil(end - start)
                    }
                })
                .sum();
            let in_flight: u64 = fifo.iter().map(|&(_, _, b)| b as u64).sum();
            let sent = self.uplink_sent[i] + (in_flight - queue_bytes);
            let tx_rate_bps = if dt > 0 {
                (sent - self.uplink_sent_at_step[i]) as f64 * 8e9 / dt as f64
            } else {
                0.0
            };
            self.uplink_sent_at_step[i] = sent;
            step.links.push(bridge::LinkState {
                link_id: 2 * i as u32,
                node_id: i as u32,
                uplink: true,
                tx_rate_bps,
                queue_bytes,
                ..Default::default()
            });
        }
    }

    fn build_step(&mut self) -> Step {
        let now = self.now;
        let n = self.n;
        let mut step = self.spare_step.take().unwrap_or_default();
        self.gst_pool.append(&mut step.gst_tables);
        if step.nodes.is_empty() {
            step.nodes = std::mem::take(&mut self.spare_nodes);
        }
        step.sim_time_ns = now;
        step.episode = self.episode;
        step.step_index = self.step_index;
        step.links.clear();
        self.fill_uplinks(&mut step);
        step.tasks.clear();
        for &h in &self.outstanding {
            let t = self.tasks.get(h);
            self.is_origin[t.origin as usize] = true;
            step.tasks.push(PendingTask {
                task_id: t.id,
                origin: t.origin,
                size_bytes: t.size_bytes,
                service_estimate_ns: t.estimate_ns,
                deadline_ns: t.deadline_ns,
                arrival_ns: t.arrival_ns,
                class: t.class,
            });
        }
        step.outcomes.clear();
        std::mem::swap(&mut step.outcomes, &mut self.outcomes);
        step.nodes.truncate(n);
        step.nodes.resize_with(n, NodeState::default);
        let dt = now.saturating_sub(self.last_step_time);
        // One division per Step, not per node.
        let inv_dt = if dt == 0 { 0.0 } else { 1.0 / dt as f64 };
        for i in 0..n {
            let node = &self.nodes[i];
            let fresh = self.views[i].as_ref().is_some_and(|v| {
                v.version == node.version()
                    && v.hb.reserved == self.policy_version[i]
                    && now < v.valid_until
            });
            if !fresh {
                let (sth, valid_until) = node.sth_until(now);
                let rho = rho_of_tasks(node.tasks_in_system() as u64, node.spec.cores);
                let hb = Heartbeat::from_sth(
                    i as u8,
                    &sth,
                    rho,
                    node.busy_cores() > 0,
                    self.policy_version[i],
                );
                self.views[i] = Some(NodeView {
                    version: node.version(),
                    valid_until,
                    sth,
                    hb,
                });
            }
            let NodeView { sth, hb, .. } = self.views[i].as_ref().expect("just filled");
            let ns = &mut step.nodes[i];
            ns.node_id = i as u32;
            let s = ns.sth.get_or_insert_with(Default::default);
            s.buckets.clear();
            s.buckets.extend_from_slice(&sth.buckets);
            s.total_tasks = sth.total_tasks;
            s.min_slack_us = sth.min_slack_or_zero();
            // Running work shrinks with time even when the buckets do not move.
            s.sum_load_us = if fresh {
                node.estimated_work_ns(now) / 1000
            } else {
                sth.sum_load_us
            };
            hb.write_fields(ns.heartbeat.get_or_insert_with(HeartbeatFields::default));
            let busy = node.busy_core_ns(now);
            ns.utilisation = if dt == 0 {
                node.busy_cores() as f64 * self.inv_cores[i]
            } else {
                (busy - self.util_busy[i]) as f64 * inv_dt * self.inv_cores[i]
            };
            self.util_busy[i] = busy;
            self.gst_index[i] = 0;
            if self.is_origin[i] {
                self.is_origin[i] = false;
                if self.protocol >= malcolm_proto::PROTOCOL_V2 {
                    if let Some(g) = ns.gst.take() {
                        self.gst_pool.push(g);
                    }
                    self.gst_index[i] = self.share_gst_table(&mut step.gst_tables, i, now) as u16;
                } else {
                    let g = ns
                        .gst
                        .get_or_insert_with(|| self.gst_pool.pop().unwrap_or_default());
                    self.fill_gst(g, i, now);
                }
            } else if let Some(g) = ns.gst.take() {
                self.gst_pool.push(g);
            }
        }
        if self.protocol >= malcolm_proto::PROTOCOL_V2 {
            let cols = step.node_columns.get_or_insert_with(Default::default);
            malcolm_proto::columns::pack(&step.nodes, &self.gst_index, cols);
            self.spare_nodes = std::mem::take(&mut step.nodes);
        } else {
            step.node_columns = None;
        }
        self.last_step_time = now;
        step
    }

    /// Writes node `i`'s Global State Table (heartbeat bytes and their ages at `now`) into `g`.
    fn fill_gst(&self, g: &mut GlobalStateView, i: usize, now: u64) {
        let n = self.n;
        g.heartbeats.clear();
        g.heartbeats
            .extend_from_slice(self.gst[i * n..(i + 1) * n].as_flattened());
        g.age_ns.clear();
        g.age_ns
            .extend(self.gst_sent[i * n..(i + 1) * n].iter().map(|&s| {
                if s == u64::MAX {
                    u64::MAX
                } else {
                    now - s
                }
            }));
    }

    /// Protocol v2: the 1-based index of node `i`'s table in `tables`, adding it when no
    /// table there is identical (same bytes, same ages). Heartbeats reach every peer at the
    /// same instant on the ideal network, so most origins share one table.
    fn share_gst_table(&mut self, tables: &mut Vec<GlobalStateView>, i: usize, now: u64) -> u32 {
        let n = self.n;
        let bytes = self.gst[i * n..(i + 1) * n].as_flattened();
        let sent = &self.gst_sent[i * n..(i + 1) * n];
        let same = |t: &GlobalStateView| {
            t.heartbeats == bytes
                && t.age_ns
                    .iter()
                    .zip(sent)
                    .all(|(&age, &s)| age == if s == u64::MAX { u64::MAX } else { now - s })
        };
        if let Some(k) = tables.iter().position(same) {
            return k as u32 + 1;
        }
        let mut g = self.gst_pool.pop().unwrap_or_default();
        self.fill_gst(&mut g, i, now);
        tables.push(g);
        tables.len() as u32
    }

    /// Applies the agent's answer to the waiting Step. A bad placement is refused and the
    /// Step keeps waiting.
    pub fn apply(&mut self, p: &Placement) -> Result<(), SimError> {
        if !self.has_outstanding {
            return Err(SimError::NoStepOutstanding);
        }
        if p.step_index != self.step_index {
            return Err(SimError::WrongStep {
                expected: self.step_index,
                got: p.step_index,
            });
        }
        let tasks = self.outstanding.len();
        if p.targets.len() != tasks {
            return Err(SimError::TargetCount {
                targets: p.targets.len(),
                tasks,
            });
        }
        if !p.hold_ns.is_empty() && p.hold_ns.len() != tasks {
            return Err(SimError::HoldCount {
                hold: p.hold_ns.len(),
                tasks,
            });
        }
        if let Some((index, &target)) = p
            .targets
            .iter()
            .enumerate()
            .find(|(_, &t)| t as usize >= self.n)
        {
            return Err(SimError::InvalidTarget {
                index,
                target,
                nodes: self.n,
            });
        }
        let net = self.scenario.network;
        let version = p.policy_version.min(u32::MAX as u64) as u32;
        let outstanding = std::mem::take(&mut self.outstanding);
        for (i, &h) in outstanding.iter().enumerate() {
            let target = p.targets[i];
            let hold = p.hold_ns.get(i).copied().unwrap_or(0);
            let t = self.tasks.get_mut(h);
            t.target = target;
            let origin = t.origin as usize;
            let size = t.size_bytes;
            self.policy_version[origin] = version;
            let ready = self.now + hold;
            let land_at = if target as usize == origin {
                ready
            } else {
                // FIFO on the origin's uplink, then the propagation delay.
                let ser = net.serialisation_ns(size);
                let depart = ready.max(self.uplink_free[origin]);
                self.uplink_free[origin] = depart + ser;
                if ser > 0 {
                    self.uplink_fifo[origin].push_back((depart, depart + ser, size));
                }
                depart + ser + net.one_way_ns
            };
            if land_at == self.now {
                self.land(h);
            } else {
                self.queue.push(land_at, PRIO_NORMAL, Ev::Land { task: h });
            }
        }
        self.outstanding = outstanding;
        self.outstanding.clear();
        self.has_outstanding = false;
        self.step_index += 1;
        self.steps_total += 1;
        Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::{Discipline, NodeSpec};
    use crate::scenario::{by_name, NetworkModel};
    use crate::workload::{TraceSource, TraceTask};

    fn trace_task(arrival_ns: u64, origin: u32, service_ns: u64, deadline_ns: u64) -> TraceTask {
        TraceTask {
            arrival_ns,
            origin,
            service_ns,
            deadline_ns,
            size_bytes: 1000,
            class: 0,
            estimate_ns: None,
        }
    }

    #[test]
    fn bad_placements_are_typed_errors() {
        let mut sim =
            RackSim::new(by_name("homogeneous-16:tasks=100,warmup=0").unwrap(), 1).unwrap();
        assert!(matches!(
            sim.apply(&Placement::default()),
            Err(SimError::NoStepOutstanding)
        ));
        let SimEvent::Step(step) = sim.next_event() else {
            panic!("expected a step");
        };
        let k = step.tasks.len();
        let bad = |targets: Vec<u32>, hold: Vec<u64>, idx: u64| Placement {
            step_index: idx,
            targets,
            hold_ns: hold,
            ..Default::default()
        };
        assert!(matches!(
            sim.apply(&bad(vec![0; k + 1], vec![], 0)),
            Err(SimError::TargetCount { .. })
        ));
        assert!(matches!(
            sim.apply(&bad(vec![16; k], vec![], 0)),
            Err(SimError::InvalidTarget { target: 16, .. })
        ));
        assert!(matches!(
            sim.apply(&bad(vec![0; k], vec![1; k + 2], 0)),
            Err(SimError::HoldCount { .. })
        ));
        assert!(matches!(
            sim.apply(&bad(vec![0; k], vec![], 5)),
            Err(SimError::WrongStep { .. })
        ));
        // The step is still waiting and a good placement goes through.
        sim.apply(&bad(vec![0; k], vec![], 0)).unwrap();
    }

    #[test]
    fn steps_carry_each_uplink_queue_and_rate() {
        // 2 nodes, a 1 Gbps uplink: a 1000-byte task takes 8 us to serialise. Three tasks
        // arrive at node 0 at t = 0, 1 and 2 us (one Step each) and all go to node 1, so the
        // uplink FIFO holds them back to back from t = 0 to 24 us.
        let nodes = vec![NodeSpec::single(Discipline::fcfs()); 2];
        let trace: Vec<TraceTask> = (0..3u64)
            .map(|k| TraceTask {
                size_bytes: 1_000,
                ..trace_task(k * 1_000, 0, 5_000, 10_000_000)
            })
            .collect();
        let mut s = Scenario::trace("t", nodes, TraceSource::Inline(trace));
        s.decision.window_ns = 0;
        s.network.link_gbps = 1.0;
        let mut sim = RackSim::new(s, 0).unwrap();
        let mut seen = Vec::new();
        while let SimEvent::Step(st) = sim.next_event() {
            assert_eq!(st.links.len(), 2, "one uplink per node");
            let up0 = st.links.iter().find(|l| l.node_id == 0).unwrap();
            assert!(up0.uplink && !up0.pfc_paused && up0.link_id == 0);
            seen.push((st.sim_time_ns, up0.queue_bytes, up0.tx_rate_bps));
            sim.apply(&Placement {
                step_index: st.step_index,
                targets: vec![1; st.tasks.len()],
                ..Default::default()
            })
            .unwrap();
        }
        // At 1 us: task 1 has 7 of 8 us left (875 bytes). At 2 us: 750 bytes of task 1 and all
        // of task 2. The rate since the previous Step: 125 bytes in 1 us = 1 Gbps.
        assert_eq!(seen[0].1, 0);
        assert_eq!(seen[1], (1_000, 875, 1e9));
        assert_eq!(seen[2], (2_000, 1_750, 1e9));
    }

    #[test]
    fn remote_placement_pays_network_and_hold_local_does_not() {
        let nodes = vec![NodeSpec::single(Discipline::fcfs()); 2];
        let trace = vec![
            trace_task(0, 0, 10_000, 1_000_000),
            trace_task(100_000, 0, 10_000, 1_000_000),
            trace_task(200_000, 0, 10_000, 1_000_000),
        ];
        let mut s = Scenario::trace("t", nodes, TraceSource::Inline(trace));
        s.decision.window_ns = 0;
        let mut sim = RackSim::new(s, 0).unwrap();
        let mut decisions = vec![(0u32, 0u64), (1, 0), (0, 7_000)].into_iter();
        let mut lat = Vec::new();
        loop {
            match sim.next_event() {
                SimEvent::Step(st) => {
                    lat.extend(st.outcomes.iter().map(|o| o.latency_ns));
                    let (t, h) = decisions.next().unwrap();
                    sim.apply(&Placement {
                        step_index: st.step_index,
                        targets: vec![t],
                        hold_ns: vec![h],
                        ..Default::default()
                    })
                    .unwrap();
                }
                SimEvent::EpisodeEnd(e) => {
                    lat.extend(e.outcomes.iter().map(|o| o.latency_ns));
                    assert_eq!(e.reason, EndReason::Terminated as i32);
                    break;
                }
            }
        }
        // Local: service only. Remote: + 1000 B at 100 Gbps (80 ns) + 2.5 us. Hold: + 7 us.
        assert_eq!(lat, vec![10_000, 12_580, 17_000]);
        assert_eq!(NetworkModel::default().serialisation_ns(1000), 80);
    }

    /// The cached node views must read exactly like a fresh computation at every Step.
    #[test]
    fn cached_node_state_equals_fresh_state() {
        for spec in [
            "homogeneous-8:tasks=20000,warmup=0,rho=0.95,window_ns=0",
            "hetero:tasks=20000,warmup=0,rho=0.9",
            "homogeneous-4:tasks=5000,warmup=0,discipline=ps",
        ] {
            let mut sim = RackSim::new(by_name(spec).unwrap(), 2).unwrap();
            let mut checked = 0;
            while let SimEvent::Step(st) = sim.next_event() {
                for (i, ns) in st.nodes.iter().enumerate() {
                    let fresh = sim.nodes[i].sth(st.sim_time_ns);
                    let s = ns.sth.as_ref().unwrap();
                    assert_eq!(s.buckets, fresh.buckets.to_vec(), "{spec} node {i}");
                    assert_eq!(s.min_slack_us, fresh.min_slack_or_zero());
                    assert_eq!(s.total_tasks, fresh.total_tasks);
                    assert_eq!(
                        s.sum_load_us,
                        sim.nodes[i].estimated_work_ns(st.sim_time_ns) / 1000
                    );
                    let hb = sim.heartbeat_of(i);
                    let f = ns.heartbeat.as_ref().unwrap();
                    assert_eq!(
                        (f.flags, f.slack_p10_us, f.slack_p50_us, f.queue_len),
                        (
                            hb.flags as u32,
                            hb.slack_p10_us as i32,
                            hb.slack_p50_us as i32,
                            hb.queue_len
                        )
                    );
                    checked += 1;
                }
                let targets = st
                    .tasks
                    .iter()
                    .map(|t| (t.task_id % 4) as u32 % st.nodes.len() as u32)
                    .collect();
                sim.apply(&Placement {
                    step_index: st.step_index,
                    targets,
                    ..Default::default()
                })
                .unwrap();
                sim.recycle(st);
            }
            assert!(checked > 1000);
        }
    }

    /// Task table and buffers follow the tasks in flight, not the run length.
    #[test]
    fn memory_follows_tasks_in_flight() {
        let run = |tasks: u64| {
            let spec = format!("homogeneous-16:tasks={tasks},warmup=0");
            let mut sim = RackSim::new(by_name(&spec).unwrap(), 1).unwrap();
            let mut local = |st: &Step| Placement {
                step_index: st.step_index,
                targets: st.tasks.iter().map(|t| t.origin).collect(),
                ..Default::default()
            };
            crate::run_episode(&mut sim, &mut local).unwrap();
            (
                sim.tasks.slots.len(),
                sim.queue.len(),
                sim.outcomes.capacity(),
            )
        };
        let small = run(20_000);
        let large = run(200_000);
        assert!(large.0 < 2_000, "task slots {large:?}");
        // Ten times the tasks, nowhere near ten times the table.
        assert!(large.0 < 2 * small.0 + 200, "{small:?} vs {large:?}");
    }

    #[test]
    fn heartbeats_reach_the_gst_after_the_network_delay() {
        let mut s = by_name("homogeneous-4:tasks=2000,warmup=0,t_hb_us=50").unwrap();
        s.decision.window_ns = 0;
        let mut sim = RackSim::new(s, 9).unwrap();
        let mut checked = 0;
        while let SimEvent::Step(st) = sim.next_event() {
            for ns in &st.nodes {
                if let Some(g) = &ns.gst {
                    assert_eq!(g.heartbeats.len(), 4 * 16);
                    assert_eq!(g.age_ns.len(), 4);
                    if st.sim_time_ns > 60_000 {
                        for (j, &age) in g.age_ns.iter().enumerate() {
                            let own = j as u32 == ns.node_id;
                            let lo = if own { 0 } else { 2_500 };
                            assert!(age >= lo && age < 50_000 + lo, "age {age} of {j}");
                            let hb = Heartbeat::decode(&g.heartbeats[16 * j..16 * j + 16]).unwrap();
                            assert_eq!(hb.node_id as usize, j);
                        }
                        checked += 1;
                    }
                }
            }
            let k = st.tasks.len();
            let targets = st.tasks.iter().map(|t| t.origin).collect();
            sim.apply(&Placement {
                step_index: st.step_index,
                targets,
                hold_ns: vec![0; k],
                ..Default::default()
            })
            .unwrap();
            sim.recycle(st);
        }
        assert!(checked > 100);
    }
}
