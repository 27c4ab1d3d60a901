//! The one session contract: one environment's conversation with the agent, as a lockstep
//! state machine (Hello, Steps, EpisodeEnds, Close) with the validation every input gets
//! and the per-session policy. No sockets here: the ZeroMQ bridge ([`crate::bridge`]) and the
//! in-process loopback ([`crate::loopback`]) both drive this, so every env, OMNeT++ and
//! in-process runs alike, gets the same checks and the same policy calls.
//!
//! A policy sees only Steps this module validated, and the session calls it in one order:
//! `observe(outcomes)` (the outcomes a Step or EpisodeEnd carries, exactly once), then
//! `decide(step)`, and `end_episode` at an EpisodeEnd.
//!
//! Here: the state machine; `validate` holds the input checks, `warn` the WARN rate limit.

use crate::shared::{Counters, Shared};
use malcolm_policies::{Decision, Policy, PolicyError, PolicyFactory};
use malcolm_proto::bridge::{
    envelope::Body, Ack, EpisodeEnd, ErrorCode, Hello, OutcomeKind, Placement, Step, TaskOutcome,
    Welcome,
};
use malcolm_proto::codec::{self, PROTOCOL_V1, PROTOCOL_V2, SUPPORTED_VERSIONS};
use malcolm_proto::Envelope;
use std::sync::Arc;

mod validate;
mod warn;

use validate::{expand_v2, validate_outcome_nodes};
pub use validate::{validate_hello, validate_step};
pub use warn::WarnLimiter;

/// Largest rack the protocol can address (the heartbeat's node id is a u8).
pub const MAX_NODES: usize = 256;
/// Pending tasks one Step may carry: 64 times the envs' largest decision batch, low enough
/// that a broken env cannot make a policy allocate and compute without bound.
pub const DEFAULT_MAX_TASKS_PER_STEP: usize = 4096;
/// Placed tasks whose outcome has not come back yet, per session: far above the tasks in
/// system of any stable rack, low enough to bound what a learner keeps per session.
pub const DEFAULT_MAX_PENDING_DECISIONS: u64 = 65_536;
/// Open sessions per server: with the per-session bounds, a bound on the whole.
pub const DEFAULT_MAX_SESSIONS: u64 = 1024;

/// A refusal, sent back as an `Error` envelope; the session stays usable.
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

/// What a session enforces, and how loudly it announces itself.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    pub max_tasks_per_step: usize,
    pub max_pending_decisions: u64,
    pub max_sessions: u64,
    /// The message size limit the transport enforces (repeated in Welcome).
    pub max_message_bytes: usize,
    /// Log connects and disconnects at INFO (a server's sessions) rather than DEBUG (the
    /// per-episode sessions of training and in-process runs).
    pub announce: bool,
    /// Seed of the session's policy instead of the Hello's (in-process runs that pin it).
    pub seed: Option<u64>,
    /// Hold the env id for the session's life, refusing a second session with it (a server);
    /// replays of recordings, where an id may come back after its session expired, do not.
    pub unique_env_ids: bool,
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            max_tasks_per_step: DEFAULT_MAX_TASKS_PER_STEP,
            max_pending_decisions: DEFAULT_MAX_PENDING_DECISIONS,
            max_sessions: DEFAULT_MAX_SESSIONS,
            max_message_bytes: codec::DEFAULT_MAX_MESSAGE_BYTES,
            announce: true,
            seed: None,
            unique_env_ids: true,
        }
    }
}

/// The session of one env.
pub struct Session {
    pub id: u64,
    shared: Arc<Shared>,
    config: SessionConfig,
    state: State,
    decision: Decision,
    warn: WarnLimiter,
    /// Node states of earlier v2 Steps, reused to expand the next one's columns.
    spare_nodes: Vec<malcolm_proto::bridge::NodeState>,
    /// The last decoded request, whose Step buffers the next decode reuses.
    scratch: Envelope,
}

enum State {
    AwaitHello,
    Active(Box<Active>),
    Closed,
}

struct Active {
    hello: Hello,
    /// The negotiated protocol version of every message after the Hello.
    version: u32,
    policy: Box<dyn Policy>,
    policy_name: String,
    generation: u64,
    /// The episode the Steps carry (`None` before the session's first Step or EpisodeEnd).
    episode: Option<u64>,
    /// Step index the next Step must carry.
    next_step: u64,
    /// Simulated time of the episode's last Step.
    last_sim_time: u64,
    /// Placed tasks without an outcome yet.
    pending: u64,
}

/// What the caller should do after a reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum After {
    Continue,
    /// The env closed the session: drop it.
    Closed,
}

impl Session {
    pub fn new(id: u64, shared: Arc<Shared>, config: SessionConfig) -> Self {
        Self {
            id,
            shared,
            config,
            state: State::AwaitHello,
            decision: Decision::default(),
            warn: WarnLimiter::default(),
            spare_nodes: Vec::new(),
            scratch: Envelope::default(),
        }
    }

    /// The session that follows this one for the same env after its Close (an env that
    /// says Hello again on the same transport).
    pub fn successor(&self) -> Session {
        Session::new(self.id + 1, self.shared.clone(), self.config.clone())
    }

    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    pub fn config(&self) -> &SessionConfig {
        &self.config
    }

    /// The Hello this session started with, once it has.
    pub fn hello(&self) -> Option<&Hello> {
        match &self.state {
            State::Active(a) => Some(&a.hello),
            _ => None,
        }
    }

    /// The env id, or "-" before the Hello.
    pub fn env_id(&self) -> &str {
        self.hello().map_or("-", |h| h.env_id.as_str())
    }

    /// The protocol version this session's messages carry (1 until negotiated).
    pub fn version(&self) -> u32 {
        match &self.state {
            State::Active(a) => a.version,
            _ => PROTOCOL_V1,
        }
    }

    pub fn is_active(&self) -> bool {
        matches!(self.state, State::Active(_))
    }

    /// Decodes and handles one message as it came off the wire (at most `max_len` bytes),
    /// reusing the buffers of the previous one. Undecodable bytes get an Error that echoes the
    /// request id whenever the envelope header could be read. Also says whether it was a Step.
    pub fn handle_bytes(&mut self, payload: &[u8], max_len: usize) -> (Envelope, After, bool) {
        let mut env = std::mem::take(&mut self.scratch);
        let out = match codec::decode_envelope_into(payload, max_len, &mut env) {
            Err(e) => {
                Counters::add(&self.shared.counters.errors, 1);
                if let Some(suppressed) = self.warn.allow() {
                    tracing::warn!(
                        session = self.id,
                        env = self.env_id(),
                        error = %e,
                        bytes = payload.len(),
                        suppressed,
                        "undecodable message refused"
                    );
                }
                let reply = codec::error_envelope_v(
                    self.version(),
                    e.request_id(),
                    e.code(),
                    e.to_string(),
                );
                (reply, After::Continue, false)
            }
            Ok(()) => {
                let is_step = matches!(env.body, Some(Body::Step(_)));
                let (reply, after) = self.handle(&mut env);
                (reply, after, is_step)
            }
        };
        self.scratch = env;
        out
    }

    /// Handles one decoded envelope (its version is one the codec speaks) and returns the
    /// reply. A v2 Step's node columns are expanded into its `nodes` in place (the Step the
    /// policy sees), reusing the node states of earlier Steps.
    pub fn handle(&mut self, env: &mut Envelope) -> (Envelope, After) {
        let request_id = env.request_id;
        // The reply carries the version of its request's place in the session: 1 for a
        // Hello's, the session's for the rest (taken before a Close ends the session).
        let version = match env.body {
            Some(Body::Hello(_)) => PROTOCOL_V1,
            _ => self.version(),
        };
        let result = self.dispatch(env);
        match result {
            Ok((body, after)) => (codec::envelope_v(version, request_id, body), after),
            Err(r) => {
                Counters::add(&self.shared.counters.errors, 1);
                if let Some(suppressed) = self.warn.allow() {
                    tracing::warn!(
                        session = self.id,
                        env = self.env_id(),
                        code = ?r.code,
                        message = %r.message,
                        suppressed,
                        "request refused"
                    );
                }
                (
                    codec::error_envelope_v(version, request_id, r.code, r.message),
                    After::Continue,
                )
            }
        }
    }

    fn dispatch(&mut self, env: &mut Envelope) -> Result<(Body, After), Refusal> {
        let body = env
            .body
            .as_mut()
            .ok_or_else(|| refuse(ErrorCode::Malformed, "envelope without a body"))?;
        // The Hello and its reply are v1; everything after it carries the negotiated version.
        let expected = match body {
            Body::Hello(_) => PROTOCOL_V1,
            _ => self.version(),
        };
        if env.protocol_version != expected {
            return Err(refuse(
                ErrorCode::VersionMismatch,
                match body {
                    Body::Hello(_) => format!(
                        "a Hello carries protocol_version 1 and lists the versions the env \
                         speaks in Hello.protocol_versions; got {}",
                        env.protocol_version
                    ),
                    _ => format!(
                        "this session speaks protocol version {expected}; got {}",
                        env.protocol_version
                    ),
                },
            ));
        }
        match body {
            Body::Hello(h) => self
                .on_hello(h)
                .map(|w| (Body::Welcome(w), After::Continue)),
            Body::Step(s) => {
                let r = self.on_step(s);
                // The expanded node states go back to the pool for the next v2 Step.
                if self.version() >= PROTOCOL_V2 && !s.nodes.is_empty() {
                    self.spare_nodes = std::mem::take(&mut s.nodes);
                }
                r.map(|p| (Body::Placement(p), After::Continue))
            }
            Body::EpisodeEnd(e) => self
                .on_episode_end(e)
                .map(|_| (Body::Ack(Ack {}), After::Continue)),
            Body::Close(c) => {
                if self.config.announce {
                    tracing::info!(session = self.id, env = self.env_id(), reason = %c.reason, "env closed its session");
                } else {
                    tracing::debug!(session = self.id, env = self.env_id(), reason = %c.reason, "env closed its session");
                }
                self.end();
                Ok((Body::Ack(Ack {}), After::Closed))
            }
            other => Err(refuse(
                ErrorCode::ProtocolViolation,
                format!(
                    "{} is an agent-to-env message; envs send Hello, Step, EpisodeEnd or Close",
                    codec::body_name(&*other)
                ),
            )),
        }
    }

    /// The env vanished (silent past the timeout, or its connection dropped): discard the
    /// partial episode without telling the learner anything. True when a session was open.
    pub fn expire(&mut self) -> bool {
        let was_active = self.is_active();
        if was_active {
            Counters::add(&self.shared.counters.sessions_expired, 1);
            self.end();
        }
        was_active
    }

    /// Leaves the Active state: the env id and the connection count are released.
    fn end(&mut self) {
        if let State::Active(a) = std::mem::replace(&mut self.state, State::Closed) {
            self.shared.release_env_id(&a.hello.env_id, self.id);
            self.shared
                .counters
                .envs_connected
                .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        }
    }

    fn on_hello(&mut self, hello: &Hello) -> Result<Welcome, Refusal> {
        match self.state {
            State::AwaitHello => {}
            State::Active(_) => {
                return Err(refuse(
                    ErrorCode::ProtocolViolation,
                    "second Hello on an open session (send Close first)",
                ))
            }
            State::Closed => {
                return Err(refuse(
                    ErrorCode::SessionExpired,
                    "session is closed; a new connection starts a new one",
                ))
            }
        }
        validate_hello(hello)?;
        let version = codec::negotiate(&hello.protocol_versions).ok_or_else(|| {
            refuse(
                ErrorCode::VersionMismatch,
                format!(
                    "the env speaks protocol versions {:?}, this agent {SUPPORTED_VERSIONS:?}",
                    hello.protocol_versions
                ),
            )
        })?;
        let connected = Counters::get(&self.shared.counters.envs_connected);
        if connected >= self.config.max_sessions {
            return Err(refuse(
                ErrorCode::Unavailable,
                format!(
                    "the server is at its limit of {} open sessions",
                    self.config.max_sessions
                ),
            ));
        }
        let claim = if self.config.unique_env_ids {
            self.shared.claim_env_id(&hello.env_id, self.id)
        } else {
            Ok(())
        };
        claim.map_err(|other| {
            refuse(
                ErrorCode::InvalidArgument,
                format!(
                    "env id {:?} is in use by session {other}; env ids are unique among \
                         connected envs",
                    hello.env_id
                ),
            )
        })?;
        let (generation, factory) = self.shared.active();
        let seed = self.config.seed.unwrap_or(hello.seed);
        let policy = factory.new_session(hello, seed).map_err(|e| {
            self.shared.release_env_id(&hello.env_id, self.id);
            refuse(
                ErrorCode::InvalidArgument,
                format!("policy {} cannot serve this rack: {e}", factory.name()),
            )
        })?;
        let mode = factory.mode();
        let welcome = Welcome {
            session_id: self.id,
            policy: factory.name().to_string(),
            policy_version: policy.version(),
            mode_name: mode.name().to_string(),
            step_budget_ns: 0,
            protocol_version: version,
            mode: mode.to_pb() as i32,
            max_message_bytes: self.config.max_message_bytes as u64,
            max_tasks_per_step: self.config.max_tasks_per_step as u32,
        };
        if self.config.announce {
            tracing::info!(
                session = self.id,
                env = %hello.env_id,
                scenario = %hello.scenario,
                nodes = hello.nodes.len(),
                policy = factory.name(),
                protocol = version,
                "env connected"
            );
        } else {
            tracing::debug!(session = self.id, env = %hello.env_id, protocol = version, "env connected");
        }
        self.state = State::Active(Box::new(Active {
            hello: hello.clone(),
            version,
            policy,
            policy_name: factory.name().to_string(),
            generation,
            episode: None,
            next_step: 0,
            last_sim_time: 0,
            pending: 0,
        }));
        Counters::add(&self.shared.counters.envs_connected, 1);
        Ok(welcome)
    }

    fn active(state: &mut State) -> Result<&mut Active, Refusal> {
        match state {
            State::Active(a) => Ok(a),
            State::AwaitHello => Err(refuse(
                ErrorCode::ProtocolViolation,
                "no Hello yet on this connection",
            )),
            State::Closed => Err(refuse(
                ErrorCode::SessionExpired,
                "session is closed; send Hello to start a new one",
            )),
        }
    }

    fn on_step(&mut self, step: &mut Step) -> Result<Placement, Refusal> {
        if let State::Active(a) = &self.state {
            if a.version >= PROTOCOL_V2 {
                let n = a.hello.nodes.len();
                expand_v2(step, n, &mut self.spare_nodes)?;
            }
        }
        let step = &*step;
        let shared = self.shared.clone();
        let (id, max_tasks, max_pending) = (
            self.id,
            self.config.max_tasks_per_step,
            self.config.max_pending_decisions,
        );
        let a = Self::active(&mut self.state)?;
        let n = a.hello.nodes.len();
        if let Some(e) = a.episode {
            if step.episode != e {
                return Err(refuse(
                    ErrorCode::ProtocolViolation,
                    format!(
                        "Step of episode {} while episode {e} is running (end it with EpisodeEnd)",
                        step.episode
                    ),
                ));
            }
        }
        if step.step_index != a.next_step {
            let how = if step.step_index < a.next_step {
                "goes back"
            } else {
                "skips ahead"
            };
            return Err(refuse(
                ErrorCode::ProtocolViolation,
                format!(
                    "step index {} {how}: episode {} expects {}",
                    step.step_index, step.episode, a.next_step
                ),
            ));
        }
        if a.next_step > 0 && step.sim_time_ns < a.last_sim_time {
            return Err(refuse(
                ErrorCode::ProtocolViolation,
                format!(
                    "simulated time goes back: {} ns after {} ns",
                    step.sim_time_ns, a.last_sim_time
                ),
            ));
        }
        validate_step(step, n, a.version, max_tasks)?;
        let pending = a
            .pending
            .saturating_sub(step.outcomes.len() as u64)
            .saturating_add(step.tasks.len() as u64);
        if pending > max_pending {
            return Err(refuse(
                ErrorCode::InvalidArgument,
                format!(
                    "{pending} placed tasks would be waiting for their outcome (limit \
                     {max_pending} per session)"
                ),
            ));
        }
        // A new policy (SetPolicy, LoadCheckpoint) takes effect at the next Step; one that
        // cannot serve this rack leaves the session with the policy it was welcomed with.
        let generation = shared.generation();
        if a.generation != generation {
            let (generation, factory) = shared.active();
            a.generation = generation;
            match factory.new_session(&a.hello, a.hello.seed) {
                Ok(p) => {
                    a.policy = p;
                    a.policy_name = factory.name().to_string();
                }
                Err(e) => tracing::warn!(
                    session = id,
                    env = %a.hello.env_id,
                    policy = factory.name(),
                    kept = %a.policy_name,
                    error = %e,
                    "the new policy cannot serve this session's rack; it keeps its policy"
                ),
            }
        }
        if !step.outcomes.is_empty() {
            record_outcomes(&shared, &step.outcomes);
            a.policy.observe(&step.outcomes);
        }
        self.decision.clear();
        a.policy
            .decide(step, &mut self.decision)
            .map_err(policy_refusal)?;
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
        a.episode = Some(step.episode);
        a.next_step += 1;
        a.last_sim_time = step.sim_time_ns;
        a.pending = pending;
        Counters::add(&shared.counters.steps, 1);
        Counters::add(&shared.counters.decisions, step.tasks.len() as u64);
        let behind = crate::links::behind_paused(step, &d.targets, n);
        if behind > 0 {
            Counters::add(&shared.counters.placed_behind_paused, behind);
        }
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
        let current = a.episode.unwrap_or(end.episode);
        if end.episode != current {
            return Err(refuse(
                ErrorCode::ProtocolViolation,
                format!(
                    "EpisodeEnd for episode {} while episode {current} is running",
                    end.episode
                ),
            ));
        }
        if end.steps != a.next_step {
            return Err(refuse(
                ErrorCode::ProtocolViolation,
                format!(
                    "EpisodeEnd says {} Steps; this session answered {} in episode {current}",
                    end.steps, a.next_step
                ),
            ));
        }
        if a.next_step > 0 && end.sim_time_ns < a.last_sim_time {
            return Err(refuse(
                ErrorCode::ProtocolViolation,
                format!(
                    "EpisodeEnd at {} ns, before the episode's last Step at {} ns",
                    end.sim_time_ns, a.last_sim_time
                ),
            ));
        }
        validate_outcome_nodes(&end.outcomes, n)?;
        if !end.outcomes.is_empty() {
            record_outcomes(&shared, &end.outcomes);
            a.policy.observe(&end.outcomes);
        }
        a.policy.end_episode(end);
        a.episode = Some(current + 1);
        a.next_step = 0;
        a.last_sim_time = 0;
        // Tasks still in the rack when an episode ends never report.
        a.pending = 0;
        Counters::add(&shared.counters.episodes, 1);
        Ok(())
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.end();
    }
}

/// A policy's failure as the env sees it: the input was fine (the session checked it), so
/// anything but a refusal of the rack is the server's.
fn policy_refusal(e: PolicyError) -> Refusal {
    let code = match e {
        PolicyError::Unsupported(_) | PolicyError::InvalidState(_) => ErrorCode::InvalidArgument,
        _ => ErrorCode::Internal,
    };
    refuse(code, e.to_string())
}

fn record_outcomes(shared: &Shared, outcomes: &[TaskOutcome]) {
    let missed = outcomes
        .iter()
        .filter(|o| o.kind != OutcomeKind::Completed as i32)
        .count();
    Counters::add(&shared.counters.outcomes, outcomes.len() as u64);
    Counters::add(&shared.counters.outcomes_missed, missed as u64);
}

/// A factory that hands out one ready-made policy to the first session that asks (in-process
/// runs of a policy instance; a second session is refused).
pub struct OnePolicy {
    name: String,
    policy: std::sync::Mutex<Option<Box<dyn Policy>>>,
}

impl OnePolicy {
    pub fn new(policy: Box<dyn Policy>, name: &str) -> Self {
        Self {
            name: name.to_string(),
            policy: std::sync::Mutex::new(Some(policy)),
        }
    }
}

impl PolicyFactory for OnePolicy {
    fn name(&self) -> &str {
        &self.name
    }

    fn new_session(&self, _hello: &Hello, _seed: u64) -> Result<Box<dyn Policy>, PolicyError> {
        self.policy
            .lock()
            .expect("policy lock")
            .take()
            .ok_or_else(|| {
                PolicyError::InvalidState("this policy instance serves one session".into())
            })
    }
}
