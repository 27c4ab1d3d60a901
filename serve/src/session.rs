//! One environment's conversation with the agent: the lockstep state machine (Hello, Steps,
//! EpisodeEnds, Close), input validation, and the per-session policy. No sockets here.

use crate::shared::{Counters, Shared};
use malcolm_policies::{Decision, Policy};
use malcolm_proto::bridge::{
    envelope::Body, Ack, EpisodeEnd, ErrorCode, Hello, Placement, Step, Welcome,
};
use malcolm_proto::{codec, heartbeat::HEARTBEAT_LEN, sth_config, Envelope, STH_BUCKETS};
use std::sync::Arc;

/// Largest rack the protocol can address (the heartbeat's node id is a u8).
pub const MAX_NODES: usize = 256;
/// Largest number of pending tasks in one Step; far above any real decision batch, low
/// enough that a broken env cannot make a policy allocate without bound.
pub const MAX_TASKS_PER_STEP: usize = 1 << 16;

/// A refusal, sent back as an `Error` envelope; the session stays usable unless `fatal`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{code:?}: {message}")]
pub struct Refusal {
    pub code: ErrorCode,
    pub message: String,
}

fn refuse(code: ErrorCode, message: impl Into<String>) -> Refusal {
    Refusal {
        code,
        message: message.into(),
    }
}

/// The session of one env.
pub struct Session {
    pub id: u64,
    shared: Arc<Shared>,
    state: State,
    decision: Decision,
}

enum State {
    AwaitHello,
    Active(Box<Active>),
    Closed,
}

struct Active {
    hello: Hello,
    policy: Box<dyn Policy>,
    generation: u64,
    episode: u64,
    /// Step index the next Step of `episode` must carry.
    next_step: u64,
}

/// What the caller should do after a reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum After {
    Continue,
    /// The env closed the session: drop it.
    Closed,
}

impl Session {
    pub fn new(id: u64, shared: Arc<Shared>) -> Self {
        Self {
            id,
            shared,
            state: State::AwaitHello,
            decision: Decision::default(),
        }
    }

    /// The Hello this session started with, once it has.
    pub fn hello(&self) -> Option<&Hello> {
        match &self.state {
            State::Active(a) => Some(&a.hello),
            _ => None,
        }
    }

    /// Handles one decoded envelope and returns the reply.
    pub fn handle(&mut self, env: Envelope) -> (Envelope, After) {
        let request_id = env.request_id;
        let body = env.body.expect("decode_envelope guarantees a body");
        let result = match body {
            Body::Hello(h) => self
                .on_hello(h)
                .map(|w| (Body::Welcome(w), After::Continue)),
            Body::Step(s) => self
                .on_step(&s)
                .map(|p| (Body::Placement(p), After::Continue)),
            Body::EpisodeEnd(e) => self
                .on_episode_end(&e)
                .map(|_| (Body::Ack(Ack {}), After::Continue)),
            Body::Close(_) => {
                self.close();
                Ok((Body::Ack(Ack {}), After::Closed))
            }
            other => Err(refuse(
                ErrorCode::ProtocolViolation,
                format!(
                    "{} is an agent-to-env message; envs send Hello, Step, EpisodeEnd or Close",
                    codec::body_name(&other)
                ),
            )),
        };
        match result {
            Ok((body, after)) => (codec::envelope(request_id, body), after),
            Err(r) => {
                Counters::add(&self.shared.counters.errors, 1);
                tracing::debug!(session = self.id, code = ?r.code, message = %r.message, "refused");
                (
                    codec::error_envelope(request_id, r.code, r.message),
                    After::Continue,
                )
            }
        }
    }

    /// The env vanished: discard the partial episode without telling the learner anything.
    pub fn expire(&mut self) -> bool {
        let was_active = matches!(self.state, State::Active(_));
        if was_active {
            Counters::add(&self.shared.counters.sessions_expired, 1);
            self.close();
        }
        was_active
    }

    fn close(&mut self) {
        if matches!(self.state, State::Active(_)) {
            self.shared
                .counters
                .envs_connected
                .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        }
        self.state = State::Closed;
    }

    fn on_hello(&mut self, hello: Hello) -> Result<Welcome, Refusal> {
        match self.state {
            State::AwaitHello => {}
            State::Active(_) => {
                return Err(refuse(
                    ErrorCode::ProtocolViolation,
                    "second Hello on an open session (send Close first)",
                ))
            }
            State::Closed => return Err(refuse(ErrorCode::SessionExpired, "session is closed")),
        }
        validate_hello(&hello)?;
        let (generation, factory) = self.shared.active();
        let policy = factory
            .new_session(&hello, hello.seed)
            .map_err(|e| refuse(ErrorCode::InvalidArgument, e.to_string()))?;
        let welcome = Welcome {
            session_id: self.id,
            policy: factory.name().to_string(),
            policy_version: policy.version(),
            mode: mode_name(factory.mode()).to_string(),
            step_budget_ns: 0,
        };
        tracing::info!(
            session = self.id,
            env = %hello.env_id,
            scenario = %hello.scenario,
            nodes = hello.nodes.len(),
            policy = factory.name(),
            "env connected"
        );
        self.state = State::Active(Box::new(Active {
            hello,
            policy,
            generation,
            episode: 0,
            next_step: 0,
        }));
        Counters::add(&self.shared.counters.envs_connected, 1);
        Ok(welcome)
    }

    fn active(state: &mut State) -> Result<&mut Active, Refusal> {
        match state {
            State::Active(a) => Ok(a),
            State::AwaitHello => Err(refuse(
                ErrorCode::ProtocolViolation,
                "no Hello yet on this connection (or the session expired: send Hello again)",
            )),
            State::Closed => Err(refuse(ErrorCode::SessionExpired, "session is closed")),
        }
    }

    fn on_step(&mut self, step: &Step) -> Result<Placement, Refusal> {
        let shared = self.shared.clone();
        let a = Self::active(&mut self.state)?;
        let n = a.hello.nodes.len();
        if step.episode < a.episode {
            return Err(refuse(
                ErrorCode::ProtocolViolation,
                format!("episode {} goes back (current {})", step.episode, a.episode),
            ));
        }
        if step.episode > a.episode {
            a.episode = step.episode;
            a.next_step = 0;
        }
        if step.step_index != a.next_step {
            return Err(refuse(
                ErrorCode::ProtocolViolation,
                format!(
                    "step index {} in episode {}, expected {}",
                    step.step_index, step.episode, a.next_step
                ),
            ));
        }
        validate_step(step, n)?;
        // A new policy (SetPolicy, LoadCheckpoint) takes effect at the next Step.
        if a.generation != shared.generation() {
            let (generation, factory) = shared.active();
            a.policy = factory
                .new_session(&a.hello, a.hello.seed)
                .map_err(|e| refuse(ErrorCode::Internal, e.to_string()))?;
            a.generation = generation;
        }
        if !step.outcomes.is_empty() {
            record_outcomes(&shared, &step.outcomes);
            a.policy.observe(&step.outcomes);
        }
        self.decision.clear();
        a.policy
            .decide(step, &mut self.decision)
            .map_err(|e| refuse(ErrorCode::InvalidArgument, e.to_string()))?;
        let d = &self.decision;
        if d.targets.len() != step.tasks.len() || d.targets.iter().any(|&t| t as usize >= n) {
            return Err(refuse(
                ErrorCode::Internal,
                format!(
                    "policy returned {} targets for {} tasks (or a target >= {n})",
                    d.targets.len(),
                    step.tasks.len()
                ),
            ));
        }
        a.next_step += 1;
        Counters::add(&shared.counters.steps, 1);
        Counters::add(&shared.counters.decisions, step.tasks.len() as u64);
        Ok(Placement {
            step_index: step.step_index,
            targets: d.targets.clone(),
            policy_version: a.policy.version(),
            scores: d.scores.clone(),
            hold_ns: d.hold_ns.clone(),
        })
    }

    fn on_episode_end(&mut self, end: &EpisodeEnd) -> Result<(), Refusal> {
        let shared = self.shared.clone();
        let a = Self::active(&mut self.state)?;
        let n = a.hello.nodes.len();
        if end.episode < a.episode {
            return Err(refuse(
                ErrorCode::ProtocolViolation,
                format!(
                    "EpisodeEnd for past episode {} (current {})",
                    end.episode, a.episode
                ),
            ));
        }
        validate_outcome_nodes(&end.outcomes, n)?;
        if !end.outcomes.is_empty() {
            record_outcomes(&shared, &end.outcomes);
            a.policy.observe(&end.outcomes);
        }
        a.policy.end_episode(end);
        a.episode = end.episode + 1;
        a.next_step = 0;
        Counters::add(&shared.counters.episodes, 1);
        Ok(())
    }
}

fn record_outcomes(shared: &Shared, outcomes: &[malcolm_proto::bridge::TaskOutcome]) {
    use malcolm_proto::bridge::OutcomeKind;
    let missed = outcomes
        .iter()
        .filter(|o| o.kind != OutcomeKind::Completed as i32)
        .count();
    Counters::add(&shared.counters.outcomes, outcomes.len() as u64);
    Counters::add(&shared.counters.outcomes_missed, missed as u64);
}

pub fn mode_name(mode: malcolm_policies::Mode) -> &'static str {
    match mode {
        malcolm_policies::Mode::Train => "train",
        malcolm_policies::Mode::Eval => "eval",
        malcolm_policies::Mode::Frozen => "frozen",
    }
}

/// Checks a Hello: rack size, node ids in order, sane node specs, an STH we can read.
pub fn validate_hello(h: &Hello) -> Result<(), Refusal> {
    let n = h.nodes.len();
    if n == 0 || n > MAX_NODES {
        return Err(refuse(
            ErrorCode::InvalidArgument,
            format!("rack of {n} nodes; the protocol supports 1..={MAX_NODES}"),
        ));
    }
    for (i, node) in h.nodes.iter().enumerate() {
        if node.node_id as usize != i {
            return Err(refuse(
                ErrorCode::InvalidNodeId,
                format!("nodes[{i}] has node_id {} (must be {i})", node.node_id),
            ));
        }
        if node.cores == 0 || !(node.speed.is_finite() && node.speed > 0.0) {
            return Err(refuse(
                ErrorCode::InvalidArgument,
                format!(
                    "node {i}: cores {} speed {} (need cores >= 1, speed > 0)",
                    node.cores, node.speed
                ),
            ));
        }
    }
    match &h.sth {
        Some(cfg) if *cfg == sth_config() => Ok(()),
        Some(cfg) => Err(refuse(
            ErrorCode::InvalidArgument,
            format!(
                "STH config {cfg:?} is not the one this agent reads ({:?})",
                sth_config()
            ),
        )),
        None => Err(refuse(
            ErrorCode::InvalidArgument,
            "Hello without an STH config",
        )),
    }
}

/// Checks a Step against the rack size: node ids, task origins, STH and GST shapes.
pub fn validate_step(step: &Step, n: usize) -> Result<(), Refusal> {
    if step.nodes.len() != n {
        return Err(refuse(
            ErrorCode::InvalidArgument,
            format!(
                "Step has {} node states for a rack of {n}",
                step.nodes.len()
            ),
        ));
    }
    if step.tasks.len() > MAX_TASKS_PER_STEP {
        return Err(refuse(
            ErrorCode::InvalidArgument,
            format!(
                "{} pending tasks (limit {MAX_TASKS_PER_STEP})",
                step.tasks.len()
            ),
        ));
    }
    for (i, ns) in step.nodes.iter().enumerate() {
        if ns.node_id as usize != i {
            return Err(refuse(
                ErrorCode::InvalidNodeId,
                format!("nodes[{i}] has node_id {} (must be {i} of {n})", ns.node_id),
            ));
        }
        if let Some(sth) = &ns.sth {
            if sth.buckets.len() != STH_BUCKETS {
                return Err(refuse(
                    ErrorCode::InvalidArgument,
                    format!(
                        "node {i}: STH with {} buckets (need {STH_BUCKETS})",
                        sth.buckets.len()
                    ),
                ));
            }
        }
        if let Some(gst) = &ns.gst {
            if gst.heartbeats.len() != n * HEARTBEAT_LEN || gst.age_ns.len() != n {
                return Err(refuse(
                    ErrorCode::InvalidArgument,
                    format!(
                        "node {i}: GST of {} bytes and {} ages (need {} and {n})",
                        gst.heartbeats.len(),
                        gst.age_ns.len(),
                        n * HEARTBEAT_LEN
                    ),
                ));
            }
        }
    }
    for t in &step.tasks {
        if t.origin as usize >= n {
            return Err(refuse(
                ErrorCode::InvalidNodeId,
                format!(
                    "task {} has origin {} in a rack of {n}",
                    t.task_id, t.origin
                ),
            ));
        }
    }
    validate_outcome_nodes(&step.outcomes, n)
}

fn validate_outcome_nodes(
    outcomes: &[malcolm_proto::bridge::TaskOutcome],
    n: usize,
) -> Result<(), Refusal> {
    match outcomes
        .iter()
        .find(|o| o.node_id as usize >= n || o.origin as usize >= n)
    {
        Some(o) => Err(refuse(
            ErrorCode::InvalidNodeId,
            format!(
                "outcome of task {} names node {} / origin {} in a rack of {n}",
                o.task_id, o.node_id, o.origin
            ),
        )),
        None => Ok(()),
    }
}
