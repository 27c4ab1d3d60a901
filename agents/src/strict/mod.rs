//! Malcolm-Strict: IQN + CVaR action selection + barrier reward.
//!
//! [`StrictFactory`] spawns one learner thread that owns the libtorch side: online and target
//! networks, the optimiser and the replay buffer. Sessions ([`StrictPolicy`]) act in plain Rust
//! ([`crate::actor`]) on the last published weights (an `Arc` swap every `publish_every`
//! updates) and send finished transitions to the learner over a bounded channel.
//!
//! The replay ratio is a contract: the learner performs `samples_per_insert / batch` updates
//! per inserted transition, and when it falls more than `max_lag_updates` behind, the training
//! sessions wait for it (the bridge holds each env in lockstep, so the envs wait too). Nothing
//! is forgiven; a full channel would drop transitions, which is counted and reported.
//!
//! A transition is one task's decision: state = the task's features as its origin saw them,
//! action = the chosen node, reward = the scaled per-task reward of the task's outcome
//! (joined by task id when the outcome arrives), next state = the next decision of the same
//! session and origin. The last decision of an origin in a *terminated* episode is terminal;
//! in a *truncated* one it has no next state to bootstrap from and is not learned from.
//!
//! Within a Step, tasks are decided most urgent first, and each placement counts against its
//! node for the tasks decided after it (their features for that node are rebuilt and
//! rescored), so one Step's tasks do not herd onto the node that looked best at its start.
//!
//! Parts: this file holds the factory, the state it shares with sessions and the learner's
//! per-turn loop on its thread (the crate's `host`); `learner.rs` the [`Learner`] and [`Snapshot`];
//! `policy.rs` the sessions ([`StrictPolicy`]).

mod learner;
mod policy;

pub use learner::{Learner, Snapshot, CHECKPOINT_FORMAT};
pub use policy::{argmax, StrictPolicy, DEFAULT_MAX_PENDING};

use crate::actor::Actor;
use crate::config::IqnConfig;
use crate::host::{Caller, Host};
use crate::iqn::IqnArch;
use crate::replay::Transition;
use malcolm_policies::{CheckpointInfo, LearnerStatus, Mode, Policy, PolicyError, PolicyFactory};
use malcolm_proto::bridge::Hello;
use std::path::Path;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::{Arc, Condvar, Mutex, RwLock};
use std::time::{Duration, Instant};

/// How long the learner waits for data before it looks at its control channel again.
const LEARNER_POLL: Duration = Duration::from_millis(5);
/// Longest a save or load waits for the learner thread.
pub const DEFAULT_CONTROL_TIMEOUT: Duration = Duration::from_secs(120);
/// Longest a training session waits for the learner to catch up with the replay ratio before
/// it reports the learner as stalled (an update takes milliseconds; minutes means it is dead).
pub const DEFAULT_LIMITER_TIMEOUT: Duration = Duration::from_secs(60);
/// How often a waiting session re-checks the mode (a switch to eval releases it).
const LIMITER_POLL: Duration = Duration::from_millis(20);

fn mode_to_u8(m: Mode) -> u8 {
    match m {
        Mode::Train => 0,
        Mode::Eval => 1,
        Mode::Frozen => 2,
    }
}

fn mode_from_u8(v: u8) -> Mode {
    match v {
        0 => Mode::Train,
        1 => Mode::Eval,
        _ => Mode::Frozen,
    }
}

/// The replay-ratio contract between sessions and the learner.
#[derive(Debug, Default)]
struct Limiter {
    /// Transitions sent by sessions (accepted by the channel).
    sent: AtomicU64,
    /// Updates done by the learner.
    updates: AtomicU64,
    lock: Mutex<()>,
    cv: Condvar,
    waited_ns: AtomicU64,
}

/// State shared by the factory, the sessions and the learner thread.
#[derive(Debug)]
struct Shared {
    config: IqnConfig,
    mode: AtomicU8,
    snapshot: RwLock<Arc<Snapshot>>,
    decisions: AtomicU64,
    dropped_transitions: AtomicU64,
    limiter: Limiter,
    status: Mutex<LearnerStatus>,
}

impl Shared {
    fn mode(&self) -> Mode {
        mode_from_u8(self.mode.load(Ordering::Relaxed))
    }

    fn publish(&self, snap: Arc<Snapshot>) {
        let v = snap.policy_version;
        *self.snapshot.write().expect("snapshot lock") = snap;
        self.status.lock().expect("status lock").policy_version = v;
    }

    fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot.read().expect("snapshot lock").clone()
    }

    fn epsilon(&self) -> f64 {
        let c = &self.config;
        let d = self.decisions.load(Ordering::Relaxed) as f64;
        let frac = (1.0 - d / c.eps_decay_decisions.max(1) as f64).max(0.0);
        c.eps_end + (c.eps_start - c.eps_end) * frac
    }

    /// Updates the learner owes for what the sessions have sent.
    fn owed_updates(&self) -> f64 {
        let c = &self.config;
        let sent = self.limiter.sent.load(Ordering::Acquire) as f64;
        let due = (sent - c.learn_start as f64).max(0.0) * c.samples_per_insert / c.batch as f64;
        due - self.limiter.updates.load(Ordering::Acquire) as f64
    }

    /// Blocks a training session while the learner owes more than `max_lag_updates`.
    fn wait_for_learner(&self) -> Result<(), PolicyError> {
        let max_lag = self.config.max_lag_updates as f64;
        if self.owed_updates() <= max_lag {
            return Ok(());
        }
        let started = Instant::now();
        let mut guard = self.limiter.lock.lock().expect("limiter lock");
        while self.mode() == Mode::Train && self.owed_updates() > max_lag {
            if started.elapsed() > DEFAULT_LIMITER_TIMEOUT {
                return Err(PolicyError::Learner(format!(
                    "the learner has not kept up with the replay ratio for {} s (owes {:.0} updates)",
                    DEFAULT_LIMITER_TIMEOUT.as_secs(),
                    self.owed_updates()
                )));
            }
            guard = self
                .limiter
                .cv
                .wait_timeout(guard, LIMITER_POLL)
                .expect("limiter lock")
                .0;
        }
        self.limiter
            .waited_ns
            .fetch_add(started.elapsed().as_nanos() as u64, Ordering::Relaxed);
        Ok(())
    }
}

/// Malcolm-Strict's [`PolicyFactory`]: one learner shared by every session.
pub struct StrictFactory {
    shared: Arc<Shared>,
    host: Host<Learner, Transition>,
}

impl StrictFactory {
    pub fn new(config: IqnConfig) -> Result<Self, PolicyError> {
        config.validate().map_err(PolicyError::InvalidState)?;
        if config.torch_threads > 0 {
            tch::set_num_threads(config.torch_threads as i32);
        }
        let arch = IqnArch::new(config.hidden, config.head_hidden, config.cos_embed);
        let capacity = config.channel_capacity;
        let shared = Arc::new(Shared {
            status: Mutex::new(LearnerStatus {
                replay_capacity: config.replay_capacity as u64,
                target_samples_per_insert: config.samples_per_insert,
                ..Default::default()
            }),
            snapshot: RwLock::new(Arc::new(Snapshot {
                policy_version: 0,
                actor: Actor::new(arch, arch.init_params(config.seed)),
            })),
            config,
            mode: AtomicU8::new(mode_to_u8(Mode::Train)),
            decisions: AtomicU64::new(0),
            dropped_transitions: AtomicU64::new(0),
            limiter: Limiter::default(),
        });
        let (init_shared, turn_shared) = (shared.clone(), shared.clone());
        let mut since_status = Instant::now();
        let host = Host::start(
            "iqn-learner",
            "learner thread",
            capacity,
            move || {
                let learner = Learner::new(init_shared.config.clone())?;
                init_shared.publish(learner.acting());
                Ok(learner)
            },
            move |learner, data| learner_turn(learner, &turn_shared, data, &mut since_status),
        )?;
        Ok(Self { shared, host })
    }

    pub fn config(&self) -> &IqnConfig {
        &self.shared.config
    }

    /// Transitions dropped because the learner's channel was full.
    pub fn dropped_transitions(&self) -> u64 {
        self.shared.dropped_transitions.load(Ordering::Relaxed)
    }
}

/// Saves the learner to `path` (with `acting` as its acting weights when given).
fn save(
    caller: &Caller<Learner>,
    path: &Path,
    acting: Option<Arc<Snapshot>>,
) -> Result<CheckpointInfo, PolicyError> {
    let path = path.to_path_buf();
    caller
        .call(DEFAULT_CONTROL_TIMEOUT, move |learner| {
            let r = match &acting {
                Some(a) => learner.save_with_acting(&path, a),
                None => learner.save(&path),
            };
            if let Err(e) = &r {
                tracing::warn!(error = %e, "checkpoint save failed");
            }
            r
        })?
        .map_err(PolicyError::from)
}

/// One turn of the learner thread: everything that has arrived goes into the replay, then one
/// update if the learner is behind the replay ratio (publishing every `publish_every`
/// updates), else a short wait for data; the status is refreshed.
fn learner_turn(
    learner: &mut Learner,
    shared: &Shared,
    data: &Receiver<Vec<Transition>>,
    since_status: &mut Instant,
) {
    let publish_every = learner.config.publish_every;
    let train = shared.mode() == Mode::Train;
    // Everything that has arrived goes into the replay first: the ratio is counted over
    // inserted transitions.
    let mut got = 0usize;
    while let Ok(v) = data.try_recv() {
        got += v.len();
        v.iter().for_each(|t| learner.push(t));
    }
    let behind = train && learner.ready() && learner.updates < learner.due_updates();
    if behind {
        learner.update();
        shared.limiter.updates.fetch_add(1, Ordering::AcqRel);
        shared.limiter.cv.notify_all();
        // Eval and frozen never see new weights, even from an update already under way.
        if learner.updates.is_multiple_of(publish_every) && shared.mode() == Mode::Train {
            let snap = learner.publish();
            shared.publish(snap);
        }
    } else if got == 0 {
        match data.recv_timeout(LEARNER_POLL) {
            Ok(v) => v.iter().for_each(|t| learner.push(t)),
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => {}
        }
    }
    if behind || got > 0 || since_status.elapsed() > Duration::from_millis(100) {
        *since_status = Instant::now();
        let mut st = shared.status.lock().expect("status lock");
        st.loss = learner.loss_ema;
        st.updates = learner.updates;
        st.replay_len = learner.replay.len() as u64;
        st.transitions_inserted = learner.replay.pushed;
        st.samples_per_insert = learner.samples_per_insert();
    }
}

impl PolicyFactory for StrictFactory {
    fn name(&self) -> &str {
        "malcolm-strict"
    }

    fn new_session(&self, hello: &Hello, seed: u64) -> Result<Box<dyn Policy>, PolicyError> {
        Ok(Box::new(StrictPolicy::new(
            self.shared.clone(),
            Some(self.host.data()),
            None,
            hello,
            seed,
        )?))
    }

    /// Returns once the learner has seen the mode: no update started before the call
    /// publishes weights after it.
    fn set_mode(&self, mode: Mode) {
        self.shared.mode.store(mode_to_u8(mode), Ordering::Relaxed);
        self.shared.limiter.cv.notify_all();
        self.host.caller().barrier();
    }

    fn mode(&self) -> Mode {
        self.shared.mode()
    }

    fn status(&self) -> LearnerStatus {
        let mut st = *self.shared.status.lock().expect("status lock");
        st.transitions_dropped = self.dropped_transitions();
        st.env_wait_s = self.shared.limiter.waited_ns.load(Ordering::Relaxed) as f64 / 1e9;
        st
    }

    fn save_checkpoint(&self, path: &Path) -> Result<CheckpointInfo, PolicyError> {
        save(self.host.caller(), path, None)
    }

    fn load_checkpoint(&self, path: &Path) -> Result<CheckpointInfo, PolicyError> {
        let (p, shared) = (path.to_path_buf(), self.shared.clone());
        self.host
            .caller()
            .call(DEFAULT_CONTROL_TIMEOUT, move |learner| {
                let r = learner.load(&p);
                if r.is_ok() {
                    shared.publish(learner.acting());
                    shared.status.lock().expect("status lock").updates = learner.updates;
                    tracing::info!(path = %p.display(), version = learner.policy_version, "checkpoint loaded");
                }
                r
            })?
            .map_err(PolicyError::from)
    }

    fn frozen_copy(&self) -> Option<Arc<dyn PolicyFactory>> {
        Some(Arc::new(FrozenStrict {
            shared: self.shared.clone(),
            snapshot: self.shared.snapshot(),
            caller: self.host.caller().clone(),
        }))
    }
}

/// Sessions acting greedily with one fixed snapshot (see [`PolicyFactory::frozen_copy`]).
struct FrozenStrict {
    shared: Arc<Shared>,
    snapshot: Arc<Snapshot>,
    caller: Caller<Learner>,
}

impl PolicyFactory for FrozenStrict {
    fn name(&self) -> &str {
        "malcolm-strict"
    }

    fn new_session(&self, hello: &Hello, seed: u64) -> Result<Box<dyn Policy>, PolicyError> {
        Ok(Box::new(StrictPolicy::new(
            self.shared.clone(),
            None,
            Some(self.snapshot.clone()),
            hello,
            seed,
        )?))
    }

    fn mode(&self) -> Mode {
        Mode::Frozen
    }

    fn status(&self) -> LearnerStatus {
        LearnerStatus {
            policy_version: self.snapshot.policy_version,
            ..Default::default()
        }
    }

    /// The learner's checkpoint with this snapshot as its acting weights.
    fn save_checkpoint(&self, path: &Path) -> Result<CheckpointInfo, PolicyError> {
        save(&self.caller, path, Some(self.snapshot.clone()))
    }
}
