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

use crate::actor::{Actor, Head, Scratch};
use crate::adam::FlatAdam;
use crate::checkpoint::{self, CheckpointError};
use crate::config::IqnConfig;
use crate::features::{
    FeatureBuilder, OriginView, CANDIDATE_FEATURES, FEATURE_LAYOUT_VERSION, SHARED_FEATURES,
    STATIC_CANDIDATE_FEATURES,
};
use crate::iqn::{midpoint_taus, quantile_huber_grad, IqnArch, IqnNet};
use crate::replay::{Replay, Transition};
use malcolm_policies::reward::{self, RewardConfig};
use malcolm_policies::{
    CheckpointInfo, Decision, LearnerStatus, Mode, Policy, PolicyError, PolicyFactory,
};
use malcolm_proto::bridge::{EndReason, EpisodeEnd, Hello, Step, TaskOutcome};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender, SyncSender, TryRecvError};
use std::sync::{Arc, Condvar, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tch::{Kind, Tensor};

/// Format tag in the checkpoint metadata; bumped when the tensor layout changes.
pub const CHECKPOINT_FORMAT: &str = "malcolm-strict-iqn/2";
/// Decisions waiting for their outcome in one session before the session gives up on them
/// (outcomes that never come would otherwise grow memory without bound).
pub const DEFAULT_MAX_PENDING: usize = 200_000;
/// How long the learner waits for data before it looks at its control channel again.
const LEARNER_POLL: Duration = Duration::from_millis(5);
/// Longest a save or load waits for the learner thread.
pub const DEFAULT_CONTROL_TIMEOUT: Duration = Duration::from_secs(120);
/// Longest `set_mode` waits for the learner to acknowledge (one update takes milliseconds).
const MODE_BARRIER_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest a training session waits for the learner to catch up with the replay ratio before
/// it reports the learner as stalled (an update takes milliseconds; minutes means it is dead).
pub const DEFAULT_LIMITER_TIMEOUT: Duration = Duration::from_secs(60);
/// How often a waiting session re-checks the mode (a switch to eval releases it).
const LIMITER_POLL: Duration = Duration::from_millis(20);
/// Random other nodes in a large rack's shortlist (see `StrictPolicy::shortlist`).
const SHORTLIST_RANDOM: usize = 2;
/// Weight of the newest loss in the reported moving average (per update).
const LOSS_EMA: f64 = 0.02;
/// The loss value (only reported, never needed for the gradient) is computed every this many
/// updates.
const LOSS_EVERY: u64 = 10;

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

/// Published acting weights.
#[derive(Debug)]
pub struct Snapshot {
    pub policy_version: u64,
    pub actor: Actor,
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

/// The training side: online and target networks, optimiser, replay. Owned by one thread
/// (tch tensors are not Sync); public so tests and benchmarks can drive it synchronously.
pub struct Learner {
    pub config: IqnConfig,
    pub arch: IqnArch,
    online: IqnNet,
    target: IqnNet,
    adam: FlatAdam,
    pub replay: Replay,
    rng: ChaCha8Rng,
    select_taus: Tensor,
    pub updates: u64,
    pub policy_version: u64,
    pub loss_ema: f64,
    /// Transitions inserted when learning started (for the achieved replay ratio).
    inserted_at_start: Option<u64>,
    /// The weights sessions act with (the last snapshot published), saved as `policy` so a
    /// reloaded learner acts exactly as the saved one did.
    acting: Arc<Snapshot>,
}

impl Learner {
    pub fn new(config: IqnConfig) -> Result<Self, PolicyError> {
        config.validate().map_err(PolicyError::InvalidState)?;
        crate::tune_allocator();
        let arch = IqnArch::new(config.hidden, config.head_hidden, config.cos_embed);
        let init = arch.init_params(config.seed);
        let online = IqnNet::new(arch, &init, true);
        let target = IqnNet::new(arch, &init, false);
        let acting = Arc::new(Snapshot {
            policy_version: 0,
            actor: Actor::new(arch, init),
        });
        Ok(Self {
            acting,
            replay: Replay::new(config.replay_capacity, config.next_candidates),
            rng: ChaCha8Rng::seed_from_u64(config.seed ^ 0x1e4a),
            select_taus: Tensor::from_slice(&midpoint_taus(config.cvar_alpha, config.k_tau)),
            adam: FlatAdam::new(arch.num_params(), config.lr, config.grad_clip),
            arch,
            online,
            target,
            updates: 0,
            policy_version: 0,
            loss_ema: 0.0,
            inserted_at_start: None,
            config,
        })
    }

    pub fn push(&mut self, t: &Transition) {
        self.replay.push(t);
    }

    /// Changes the learning rate from the next update on (schedules in tests and tools).
    pub fn set_lr(&mut self, lr: f64) {
        self.adam.lr = lr;
    }

    /// True when the replay holds enough transitions for an update.
    pub fn ready(&self) -> bool {
        self.replay.len() >= self.config.learn_start.max(1)
    }

    /// Updates due for the transitions inserted so far, at the configured replay ratio.
    pub fn due_updates(&self) -> u64 {
        let c = &self.config;
        let over = self.replay.pushed.saturating_sub(c.learn_start as u64) as f64;
        (over * c.samples_per_insert / c.batch as f64) as u64
    }

    /// Achieved replay ratio: minibatch samples drawn per transition inserted since learning
    /// started (0 before).
    pub fn samples_per_insert(&self) -> f64 {
        match self.inserted_at_start {
            Some(start) if self.replay.pushed > start => {
                (self.updates * self.config.batch as u64) as f64
                    / (self.replay.pushed - start) as f64
            }
            _ => 0.0,
        }
    }

    /// One gradient update on a minibatch (the loss is reported in `loss_ema`).
    pub fn update(&mut self) {
        let c = &self.config;
        if self.inserted_at_start.is_none() {
            self.inserted_at_start = Some(self.replay.pushed.min(c.learn_start as u64));
        }
        let b = c.batch as i64;
        let batch = self.replay.sample(c.batch, &mut self.rng);
        // One set of taus per minibatch (the embeddings are computed once, not per sample).
        let taus = Tensor::rand([c.n_tau as i64], (Kind::Float, tch::Device::Cpu));
        let target_taus = Tensor::rand([c.n_tau_target as i64], (Kind::Float, tch::Device::Cpu));
        let target = tch::no_grad(|| {
            if c.discount == 0.0 {
                // A contextual bandit: the target is the task's own reward, no bootstrap.
                return batch.reward.unsqueeze(1);
            }
            let psi_next = self.target.psi(&batch.next_shared, &batch.next_cand);
            let cvar = self
                .target
                .mean_over_taus(&psi_next, &self.select_taus)
                .masked_fill(&batch.next_mask.logical_not(), f64::NEG_INFINITY);
            let h = psi_next.size()[2];
            let a_next = cvar
                .argmax(1, false)
                .view([b, 1, 1])
                .expand([b, 1, h], false);
            let psi_a = psi_next.gather(1, &a_next, false);
            let q_next = self
                .target
                .quantiles(&psi_a, &self.target.phi(&target_taus))
                .squeeze_dim(1);
            batch.reward.unsqueeze(1) + batch.discount.unsqueeze(1) * q_next
        });
        let pred = self
            .online
            .quantiles(
                &self.online.psi(&batch.shared, &batch.chosen),
                &self.online.phi(&taus),
            )
            .squeeze_dim(1);
        // The loss's gradient by hand (the loss value every few updates, for the status),
        // then autograd through the network only: sum(pred * g) has d/dflat = g^T dpred/dflat.
        let report = self.updates.is_multiple_of(LOSS_EVERY);
        let (g, l) =
            tch::no_grad(|| quantile_huber_grad(&pred.detach(), &taus, &target, c.kappa, report));
        let surrogate = (&pred * g).sum(Kind::Float);
        let grad =
            Tensor::run_backward(&[&surrogate], &[&self.online.flat], false, false).remove(0);
        self.adam.step(&self.online.flat, &grad);
        self.updates += 1;
        if let Some(l) = l {
            self.loss_ema = if self.updates == 1 {
                l
            } else {
                self.loss_ema + LOSS_EMA * LOSS_EVERY as f64 * (l - self.loss_ema)
            };
        }
        if self.updates.is_multiple_of(c.target_update_every) {
            self.sync_target();
        }
    }

    fn sync_target(&mut self) {
        tch::no_grad(|| self.target.flat.copy_(&self.online.flat));
    }

    /// Makes the current online weights the acting weights, with a new policy version.
    pub fn publish(&mut self) -> Arc<Snapshot> {
        self.policy_version += 1;
        self.acting = Arc::new(Snapshot {
            policy_version: self.policy_version,
            actor: Actor::new(self.arch, self.online.to_vec()),
        });
        self.acting.clone()
    }

    /// The acting weights (last published).
    pub fn acting(&self) -> Arc<Snapshot> {
        self.acting.clone()
    }

    /// Writes the full learner (online + target weights, Adam moments and step, the acting
    /// weights, counters, config) to `path` atomically. The replay buffer is not saved (it is
    /// large and refills).
    pub fn save(&self, path: &Path) -> Result<CheckpointInfo, CheckpointError> {
        self.save_with_acting(path, &self.acting)
    }

    /// As [`Learner::save`], with `acting` as the acting weights (a validated snapshot).
    pub fn save_with_acting(
        &self,
        path: &Path,
        acting: &Snapshot,
    ) -> Result<CheckpointInfo, CheckpointError> {
        let policy = Tensor::from_slice(acting.actor.params());
        let tensors: Vec<(String, &Tensor)> = vec![
            ("online".into(), &self.online.flat),
            ("target".into(), &self.target.flat),
            ("policy".into(), &policy),
            ("adam.m".into(), &self.adam.m),
            ("adam.v".into(), &self.adam.v),
        ];
        let meta = HashMap::from([
            ("format".to_string(), CHECKPOINT_FORMAT.to_string()),
            (
                "arch".into(),
                serde_json::to_string(&self.arch).expect("arch json"),
            ),
            (
                "config".into(),
                serde_json::to_string(&self.config).expect("config json"),
            ),
            ("updates".into(), self.updates.to_string()),
            ("adam_step".into(), self.adam.step.to_string()),
            ("policy_version".into(), acting.policy_version.to_string()),
            ("replay_pushed".into(), self.replay.pushed.to_string()),
        ]);
        let bytes =
            checkpoint::encode(&tensors, meta).map_err(|reason| CheckpointError::Format {
                path: path.into(),
                reason,
            })?;
        let n = checkpoint::atomic_write(path, &bytes)?;
        Ok(CheckpointInfo {
            path: path.into(),
            bytes: n,
            policy_version: acting.policy_version,
        })
    }

    /// Restores a checkpoint written by [`Learner::save`]. Refuses files of another format,
    /// feature layout or architecture before touching anything. Hyper-parameters that do not
    /// change shapes (lr, alpha, epsilon...) stay those of the running learner.
    pub fn load(&mut self, path: &Path) -> Result<CheckpointInfo, CheckpointError> {
        let d = checkpoint::read(path)?;
        let incompatible = |reason: String| CheckpointError::Incompatible {
            path: path.into(),
            reason,
        };
        match d.metadata.get("format") {
            Some(f) if f == CHECKPOINT_FORMAT => {}
            Some(f) if f == "malcolm-strict-iqn/1" => {
                return Err(incompatible(format!(
                    "written by an earlier version (format {f}: feature layout 1 with 29 shared \
                     and 13 candidate features, linear head); this learner reads \
                     {CHECKPOINT_FORMAT} with feature layout {FEATURE_LAYOUT_VERSION} \
                     ({SHARED_FEATURES} + {CANDIDATE_FEATURES} features): retrain"
                )))
            }
            other => {
                return Err(incompatible(format!(
                    "format {other:?}, expected {CHECKPOINT_FORMAT:?}"
                )))
            }
        }
        let arch: IqnArch = d
            .metadata
            .get("arch")
            .and_then(|a| serde_json::from_str(a).ok())
            .ok_or_else(|| incompatible("no readable arch metadata".into()))?;
        if arch.feature_layout != self.arch.feature_layout {
            return Err(incompatible(format!(
                "feature layout {} (this learner builds layout {}): retrain",
                arch.feature_layout, self.arch.feature_layout
            )));
        }
        if arch != self.arch {
            return Err(incompatible(format!(
                "architecture {arch:?} differs from the learner's {:?}",
                self.arch
            )));
        }
        // Checkpoints from before the flag existed read the links.
        let link_features = d
            .metadata
            .get("config")
            .and_then(|c| serde_json::from_str::<serde_json::Value>(c).ok())
            .and_then(|c| c.get("link_features").and_then(|v| v.as_bool()))
            .unwrap_or(true);
        if link_features != self.config.link_features {
            return Err(incompatible(format!(
                "trained with link_features = {link_features}, this learner has \
                 link_features = {} (set it in the agents config to match)",
                self.config.link_features
            )));
        }
        let counter = |k: &str| -> Result<u64, CheckpointError> {
            d.metadata
                .get(k)
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| incompatible(format!("metadata {k} missing or not a number")))
        };
        let (updates, adam_step, version) = (
            counter("updates")?,
            counter("adam_step")?,
            counter("policy_version")?,
        );
        // Check every tensor before copying any, so a bad file leaves the learner as it was.
        let want = vec![self.arch.num_params()];
        for name in ["online", "target", "policy", "adam.m", "adam.v"] {
            match d.tensors.get(name) {
                Some((_, shape)) if *shape == want => {}
                Some((_, shape)) => {
                    return Err(incompatible(format!(
                        "{name} has shape {shape:?}, want {want:?}"
                    )))
                }
                None => return Err(incompatible(format!("tensor {name} missing"))),
            }
        }
        tch::no_grad(|| -> Result<(), CheckpointError> {
            checkpoint::copy_into(path, &d, "online", &mut self.online.flat.shallow_clone())?;
            checkpoint::copy_into(path, &d, "target", &mut self.target.flat)?;
            checkpoint::copy_into(path, &d, "adam.m", &mut self.adam.m)?;
            checkpoint::copy_into(path, &d, "adam.v", &mut self.adam.v)?;
            Ok(())
        })?;
        self.acting = Arc::new(Snapshot {
            policy_version: version,
            actor: Actor::new(self.arch, d.tensors["policy"].0.clone()),
        });
        self.adam.step = adam_step as i64;
        self.updates = updates;
        self.policy_version = version;
        self.inserted_at_start = None;
        Ok(CheckpointInfo {
            path: path.into(),
            bytes: std::fs::metadata(path).map(|m| m.len()).unwrap_or(0),
            policy_version: version,
        })
    }
}

enum Control {
    /// Answered once the learner has finished what it was doing (used by `set_mode`).
    Barrier(mpsc::Sender<()>),
    Save(
        PathBuf,
        Option<Arc<Snapshot>>,
        mpsc::Sender<Result<CheckpointInfo, CheckpointError>>,
    ),
    Load(
        PathBuf,
        mpsc::Sender<Result<CheckpointInfo, CheckpointError>>,
    ),
    Shutdown,
}

fn control_call(
    control: &Sender<Control>,
    make: impl FnOnce(mpsc::Sender<Result<CheckpointInfo, CheckpointError>>) -> Control,
) -> Result<CheckpointInfo, PolicyError> {
    let (tx, rx) = mpsc::channel();
    control
        .send(make(tx))
        .map_err(|_| PolicyError::Learner("learner thread is gone".into()))?;
    match rx.recv_timeout(DEFAULT_CONTROL_TIMEOUT) {
        Ok(r) => r.map_err(PolicyError::from),
        Err(_) => Err(PolicyError::Learner(
            "learner did not answer within the control timeout".into(),
        )),
    }
}

/// Malcolm-Strict's [`PolicyFactory`]: one learner shared by every session.
pub struct StrictFactory {
    shared: Arc<Shared>,
    control: Sender<Control>,
    data: SyncSender<Vec<Transition>>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl StrictFactory {
    pub fn new(config: IqnConfig) -> Result<Self, PolicyError> {
        config.validate().map_err(PolicyError::InvalidState)?;
        if config.torch_threads > 0 {
            tch::set_num_threads(config.torch_threads as i32);
        }
        let (control, control_rx) = mpsc::channel();
        let (data, data_rx) = mpsc::sync_channel(config.channel_capacity);
        let arch = IqnArch::new(config.hidden, config.head_hidden, config.cos_embed);
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
        let (ready_tx, ready_rx) = mpsc::channel::<Result<(), PolicyError>>();
        let thread_shared = shared.clone();
        // The learner (and its tensors) is created on its own thread and never leaves it.
        let thread = std::thread::Builder::new()
            .name("iqn-learner".into())
            .spawn(move || {
                let mut learner = match Learner::new(thread_shared.config.clone()) {
                    Ok(l) => l,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                thread_shared.publish(learner.acting());
                let _ = ready_tx.send(Ok(()));
                learner_loop(&mut learner, &thread_shared, &control_rx, &data_rx);
            })?;
        ready_rx
            .recv()
            .map_err(|_| PolicyError::Learner("learner thread died at start".into()))??;
        Ok(Self {
            shared,
            control,
            data,
            thread: Mutex::new(Some(thread)),
        })
    }

    pub fn config(&self) -> &IqnConfig {
        &self.shared.config
    }

    /// Transitions dropped because the learner's channel was full.
    pub fn dropped_transitions(&self) -> u64 {
        self.shared.dropped_transitions.load(Ordering::Relaxed)
    }
}

impl Drop for StrictFactory {
    fn drop(&mut self) {
        let _ = self.control.send(Control::Shutdown);
        if let Some(t) = self.thread.lock().ok().and_then(|mut t| t.take()) {
            let _ = t.join();
        }
    }
}

fn learner_loop(
    learner: &mut Learner,
    shared: &Shared,
    control: &Receiver<Control>,
    data: &Receiver<Vec<Transition>>,
) {
    let publish_every = learner.config.publish_every;
    let mut since_status = Instant::now();
    loop {
        loop {
            match control.try_recv() {
                Ok(Control::Barrier(reply)) => {
                    let _ = reply.send(());
                }
                Ok(Control::Save(p, acting, reply)) => {
                    let r = match &acting {
                        Some(a) => learner.save_with_acting(&p, a),
                        None => learner.save(&p),
                    };
                    if let Err(e) = &r {
                        tracing::warn!(error = %e, "checkpoint save failed");
                    }
                    let _ = reply.send(r);
                }
                Ok(Control::Load(p, reply)) => {
                    let r = learner.load(&p);
                    if r.is_ok() {
                        shared.publish(learner.acting());
                        shared.status.lock().expect("status lock").updates = learner.updates;
                        tracing::info!(path = %p.display(), version = learner.policy_version, "checkpoint loaded");
                    }
                    let _ = reply.send(r);
                }
                Ok(Control::Shutdown) | Err(TryRecvError::Disconnected) => return,
                Err(TryRecvError::Empty) => break,
            }
        }
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
            since_status = Instant::now();
            let mut st = shared.status.lock().expect("status lock");
            st.loss = learner.loss_ema;
            st.updates = learner.updates;
            st.replay_len = learner.replay.len() as u64;
            st.transitions_inserted = learner.replay.pushed;
            st.samples_per_insert = learner.samples_per_insert();
        }
    }
}

impl PolicyFactory for StrictFactory {
    fn name(&self) -> &str {
        "malcolm-strict"
    }

    fn new_session(&self, hello: &Hello, seed: u64) -> Result<Box<dyn Policy>, PolicyError> {
        Ok(Box::new(StrictPolicy::new(
            self.shared.clone(),
            Some(self.data.clone()),
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
        let (tx, rx) = mpsc::channel();
        if self.control.send(Control::Barrier(tx)).is_ok() {
            let _ = rx.recv_timeout(MODE_BARRIER_TIMEOUT);
        }
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
        control_call(&self.control, |tx| {
            Control::Save(path.to_path_buf(), None, tx)
        })
    }

    fn load_checkpoint(&self, path: &Path) -> Result<CheckpointInfo, PolicyError> {
        control_call(&self.control, |tx| Control::Load(path.to_path_buf(), tx))
    }

    fn frozen_copy(&self) -> Option<Arc<dyn PolicyFactory>> {
        Some(Arc::new(FrozenStrict {
            shared: self.shared.clone(),
            snapshot: self.shared.snapshot(),
            control: self.control.clone(),
        }))
    }
}

/// Sessions acting greedily with one fixed snapshot (see [`PolicyFactory::frozen_copy`]).
struct FrozenStrict {
    shared: Arc<Shared>,
    snapshot: Arc<Snapshot>,
    control: Sender<Control>,
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
        control_call(&self.control, |tx| {
            Control::Save(path.to_path_buf(), Some(self.snapshot.clone()), tx)
        })
    }
}

/// What one origin of a Step knows, built once per Step.
#[derive(Debug, Default)]
struct OriginCache {
    view: OriginView,
    state: Vec<f64>,
    /// `n x C`; the static part of row j is valid when `filled[j]`.
    rows: Vec<f32>,
    filled: Vec<bool>,
}

/// State of a decision as the next state of the previous decision of its origin: shared
/// features and the best candidates' features.
#[derive(Debug)]
struct StateRecord {
    shared: Box<[f32]>,
    cand: Box<[f32]>,
}

#[derive(Debug)]
struct Pending {
    shared: Box<[f32]>,
    chosen: Box<[f32]>,
    service_on_node_us: f64,
    reward: Option<f32>,
    next: Option<Arc<StateRecord>>,
}

/// One session's actor.
pub struct StrictPolicy {
    shared: Arc<Shared>,
    /// `None` for a frozen copy (never learns).
    tx: Option<SyncSender<Vec<Transition>>>,
    /// Fixed weights of a frozen copy.
    pinned: Option<Arc<Snapshot>>,
    fb: FeatureBuilder,
    snap: Arc<Snapshot>,
    rng: ChaCha8Rng,
    reward: RewardConfig,
    eval_taus: Vec<f32>,
    /// The head for `eval_taus` of the current weights (None after a refresh).
    eval_head: Option<Head>,
    /// Per origin of the current Step: its decoded view, the state part of every node's wait,
    /// and the static candidate rows built so far.
    origin_rows: HashMap<u32, OriginCache>,
    /// Caches of earlier Steps, reused (no allocation per Step).
    cache_pool: Vec<OriginCache>,
    /// (estimated slack, node) of a large rack's candidates, for the shortlist.
    rank_buf: Vec<(f64, u32)>,
    shared_buf: Vec<f32>,
    shared_h: Vec<f32>,
    /// Every candidate's features, `t x n x C`.
    cand_buf: Vec<f32>,
    /// The candidates each task scores (`t x m` node ids; all nodes when `n <= m`).
    short: Vec<u32>,
    /// Their features, `t x m x C`, and scores, `t x m`.
    short_rows: Vec<f32>,
    scores: Vec<f32>,
    scratch: Scratch,
    order: Vec<usize>,
    ties: Vec<usize>,
    pending: HashMap<u64, Pending>,
    last_by_origin: HashMap<u32, u64>,
    outbox: Vec<Transition>,
}

impl StrictPolicy {
    fn new(
        shared: Arc<Shared>,
        tx: Option<SyncSender<Vec<Transition>>>,
        pinned: Option<Arc<Snapshot>>,
        hello: &Hello,
        seed: u64,
    ) -> Result<Self, PolicyError> {
        let c = &shared.config;
        let fb = FeatureBuilder::from_hello(hello)?;
        let fb = if c.link_features {
            fb
        } else {
            fb.without_links()
        };
        let snap = pinned.clone().unwrap_or_else(|| shared.snapshot());
        Ok(Self {
            reward: c.reward.into(),
            rng: ChaCha8Rng::seed_from_u64(seed),
            eval_taus: midpoint_taus(c.cvar_alpha, c.k_tau),
            eval_head: None,
            tx,
            pinned,
            fb,
            snap,
            origin_rows: HashMap::new(),
            cache_pool: Vec::new(),
            rank_buf: Vec::new(),
            shared_buf: Vec::new(),
            shared_h: Vec::new(),
            cand_buf: Vec::new(),
            short: Vec::new(),
            short_rows: Vec::new(),
            scores: Vec::new(),
            scratch: Scratch::default(),
            order: Vec::new(),
            ties: Vec::new(),
            pending: HashMap::new(),
            last_by_origin: HashMap::new(),
            outbox: Vec::new(),
            shared,
        })
    }

    fn mode(&self) -> Mode {
        if self.pinned.is_some() {
            Mode::Frozen
        } else {
            self.shared.mode()
        }
    }

    /// Takes the latest published weights (an Arc clone) unless frozen.
    fn refresh_weights(&mut self) {
        if self.pinned.is_some() {
            return;
        }
        let snap = self.shared.snapshot();
        if snap.policy_version != self.snap.policy_version || !Arc::ptr_eq(&snap, &self.snap) {
            self.snap = snap;
            self.eval_head = None;
        }
    }

    fn flush(&mut self) {
        if self.outbox.is_empty() {
            return;
        }
        let Some(tx) = &self.tx else {
            self.outbox.clear();
            return;
        };
        let batch = std::mem::take(&mut self.outbox);
        let n = batch.len() as u64;
        match tx.try_send(batch) {
            Ok(()) => {
                self.shared.limiter.sent.fetch_add(n, Ordering::AcqRel);
            }
            Err(_) => {
                self.shared
                    .dropped_transitions
                    .fetch_add(n, Ordering::Relaxed);
            }
        }
    }

    fn try_emit(&mut self, task_id: u64) {
        // With discount 0 (a contextual bandit: the return is the task's own outcome), a
        // decision is complete as soon as its outcome is known.
        let bandit = self.shared.config.discount == 0.0;
        let ready = matches!(self.pending.get(&task_id),
            Some(p) if p.reward.is_some() && (bandit || p.next.is_some()));
        if !ready {
            return;
        }
        let p = self.pending.remove(&task_id).expect("checked above");
        if bandit {
            self.outbox.push(Transition {
                shared: p.shared,
                chosen: p.chosen,
                reward: p.reward.expect("checked above"),
                discount: 0.0,
                next_shared: Box::new([]),
                next_cand: Box::new([]),
            });
            return;
        }
        let next = p.next.expect("checked above");
        self.outbox.push(Transition {
            shared: p.shared,
            chosen: p.chosen,
            reward: p.reward.expect("checked above"),
            discount: self.shared.config.discount as f32,
            next_shared: next.shared.clone(),
            next_cand: next.cand.clone(),
        });
    }

    fn record_outcomes(&mut self, outcomes: &[TaskOutcome]) {
        let scale = self.shared.config.reward_scale;
        for o in outcomes {
            if let Some(p) = self.pending.get_mut(&o.task_id) {
                let r = reward::task_reward(&self.reward, o, p.service_on_node_us) * scale;
                p.reward = Some(r as f32);
                self.try_emit(o.task_id);
            }
        }
    }

    /// Candidates a task scores: every node on racks of up to `max_candidates`; otherwise a
    /// `shortlist`: the origin, `SHORTLIST_RANDOM` random others, and the rest by the wait
    /// model's estimated slack (what `slack_after_estimated_wait` encodes), like power-of-d's
    /// sample plus an aimed pick.
    fn shortlist(&mut self, step: &Step, i: usize, out: &mut Vec<u32>) {
        let n = self.fb.n();
        let m = self.shared.config.candidates(n);
        out.clear();
        if n <= m {
            out.extend(0..n as u32);
            return;
        }
        let task = &step.tasks[i];
        let origin = task.origin as usize;
        out.push(origin as u32);
        while out.len() < 1 + SHORTLIST_RANDOM {
            let j = self.rng.random_range(0..n as u32);
            if !out.contains(&j) {
                out.push(j);
            }
        }
        let state = &self.origin_rows[&task.origin].state;
        let mut rest = std::mem::take(&mut self.rank_buf);
        rest.clear();
        rest.extend((0..n as u32).filter(|j| !out.contains(j)).map(|j| {
            let slack = self
                .fb
                .estimated_slack_ns(step, task, j as usize, state[j as usize]);
            (slack, j)
        }));
        let k = m - out.len();
        rest.select_nth_unstable_by(k - 1, |a, b| b.0.total_cmp(&a.0));
        out.extend(rest[..k].iter().map(|&(_, j)| j));
        self.rank_buf = rest;
    }

    /// Builds candidate row (i, j) of `cand_buf`: the origin's static part and the dynamic part
    /// as of the placements made so far.
    fn build_row(&mut self, step: &Step, i: usize, j: usize) -> Result<(), PolicyError> {
        let (n, c) = (self.fb.n(), CANDIDATE_FEATURES);
        let task = &step.tasks[i];
        let o = task.origin as usize;
        let cache = self
            .origin_rows
            .get_mut(&task.origin)
            .expect("origin cached by build_and_score");
        let sc = STATIC_CANDIDATE_FEATURES;
        if !cache.filled[j] {
            self.fb
                .static_row(&cache.view, o, j, &mut cache.rows[j * c..j * c + sc]);
            cache.filled[j] = true;
        }
        let r = (i * n + j) * c;
        let row = &mut self.cand_buf[r..r + c];
        row[..sc].copy_from_slice(&cache.rows[j * c..j * c + sc]);
        self.fb
            .candidate_dynamic(step, task, j, cache.state[j], row);
        FeatureBuilder::check_candidate(task, j, row)
    }

    /// Builds every task's shared features, picks the candidates each task scores, builds
    /// their rows, and scores them.
    fn build_and_score(&mut self, step: &Step, head: &Head) -> Result<(), PolicyError> {
        let (t, n) = (step.tasks.len(), self.fb.n());
        let (s, c) = (SHARED_FEATURES, CANDIDATE_FEATURES);
        let m = self.shared.config.candidates(n);
        self.shared_buf.resize(t * s, 0.0);
        self.cand_buf.resize(t * n * c, 0.0);
        self.short.clear();
        self.short_rows.clear();
        self.shared_h.clear();
        // One cache per origin of the Step; static rows are built when first needed.
        self.cache_pool
            .extend(self.origin_rows.drain().map(|(_, cache)| cache));
        let mut sh = Vec::new();
        let mut short = Vec::with_capacity(m);
        for (i, task) in step.tasks.iter().enumerate() {
            let o = task.origin as usize;
            if !self.origin_rows.contains_key(&task.origin) {
                let mut cache = self.cache_pool.pop().unwrap_or_default();
                self.fb.origin_view(step, o, &mut cache.view);
                self.fb.origin_waits(step, &cache.view, o, &mut cache.state);
                cache.rows.resize(n * c, 0.0);
                cache.filled.clear();
                cache.filled.resize(n, false);
                self.origin_rows.insert(task.origin, cache);
            }
            let view = &self.origin_rows[&task.origin].view;
            self.fb
                .task_shared(step, task, view, &mut self.shared_buf[i * s..(i + 1) * s])?;
            self.shortlist(step, i, &mut short);
            for &j in &short {
                self.build_row(step, i, j as usize)?;
                let r = (i * n + j as usize) * c;
                self.short_rows.extend_from_slice(&self.cand_buf[r..r + c]);
            }
            self.short.extend_from_slice(&short);
            self.snap
                .actor
                .shared_hidden(&self.shared_buf[i * s..(i + 1) * s], &mut sh);
            self.shared_h.extend_from_slice(&sh);
        }
        self.scores.resize(t * m, 0.0);
        self.snap.actor.score(
            &self.shared_h,
            m,
            &self.short_rows,
            head,
            &mut self.scratch,
            &mut self.scores,
        );
        Ok(())
    }

    /// Index of the best score, ties broken at random.
    fn argmax(&mut self, row: &[f32]) -> usize {
        let best = row
            .iter()
            .copied()
            .filter(|x| !x.is_nan())
            .fold(f32::NEG_INFINITY, f32::max);
        self.ties.clear();
        self.ties.extend((0..row.len()).filter(|&j| row[j] == best));
        match self.ties.len() {
            0 => 0,
            1 => self.ties[0],
            k => self.ties[self.rng.random_range(0..k)],
        }
    }
}

impl Policy for StrictPolicy {
    fn decide(&mut self, step: &Step, out: &mut Decision) -> Result<(), PolicyError> {
        out.clear();
        self.fb.begin_step(step)?;
        let mode = self.mode();
        let train = mode == Mode::Train;
        if mode != Mode::Frozen {
            self.refresh_weights();
        }
        let t = step.tasks.len();
        if t == 0 {
            self.flush();
            return Ok(());
        }
        let (n, c) = (self.fb.n(), CANDIDATE_FEATURES);
        let cfg = self.shared.config.clone();
        // Train: one set of taus ~ U[0, alpha] per Step. Eval: fixed midpoint taus, with the
        // head cached per weight version.
        let head = if train {
            let taus: Vec<f32> = (0..cfg.k_tau)
                .map(|_| (self.rng.random::<f64>() * cfg.cvar_alpha) as f32)
                .collect();
            self.snap.actor.head(&taus)
        } else {
            if self.eval_head.is_none() {
                self.eval_head = Some(self.snap.actor.head(&self.eval_taus));
            }
            self.eval_head.clone().expect("computed above")
        };
        self.build_and_score(step, &head)?;
        // Most urgent first; each placement counts against its node for the later tasks.
        self.order.clear();
        self.order.extend(0..t);
        self.order.sort_by_key(|&i| (step.tasks[i].deadline_ns, i));
        out.targets.resize(t, 0);
        out.scores.resize(t, 0.0);
        let eps = if train { self.shared.epsilon() } else { 0.0 };
        let order = std::mem::take(&mut self.order);
        let mut later_rows = Vec::new();
        let mut later_sh = Vec::new();
        let mut later_scores = Vec::new();
        let m = cfg.candidates(n);
        let h = self.snap.actor.arch.hidden;
        for (pos, &i) in order.iter().enumerate() {
            let task = &step.tasks[i];
            let row: Vec<f32> = self.scores[i * m..(i + 1) * m].to_vec();
            let target = if eps > 0.0 && self.rng.random::<f64>() < eps {
                self.rng.random_range(0..n)
            } else {
                let k = self.argmax(&row);
                self.short[i * m + k] as usize
            };
            let pick = self.short[i * m..(i + 1) * m]
                .iter()
                .position(|&j| j as usize == target);
            if pick.is_none() {
                // An exploratory pick outside the shortlist: its row is built now.
                self.build_row(step, i, target)?;
            }
            out.targets[i] = target as u32;
            out.scores[i] = pick.map_or(f32::NAN, |k| row[k]);
            self.fb.record(task.origin as usize, target, task);
            // Rebuild the target's row for the later tasks that score it, and rescore it.
            later_rows.clear();
            later_sh.clear();
            let mut slots = Vec::new();
            for &i2 in &order[pos + 1..] {
                if let Some(k) = self.short[i2 * m..(i2 + 1) * m]
                    .iter()
                    .position(|&j| j as usize == target)
                {
                    self.build_row(step, i2, target)?;
                    let r = (i2 * n + target) * c;
                    let slot = i2 * m + k;
                    self.short_rows[slot * c..(slot + 1) * c]
                        .copy_from_slice(&self.cand_buf[r..r + c]);
                    later_rows.extend_from_slice(&self.cand_buf[r..r + c]);
                    later_sh.extend_from_slice(&self.shared_h[i2 * h..(i2 + 1) * h]);
                    slots.push(slot);
                }
            }
            if !slots.is_empty() {
                later_scores.resize(slots.len(), 0.0);
                self.snap.actor.score(
                    &later_sh,
                    1,
                    &later_rows,
                    &head,
                    &mut self.scratch,
                    &mut later_scores,
                );
                for (&slot, &sc) in slots.iter().zip(&later_scores) {
                    self.scores[slot] = sc;
                }
            }
            if train {
                self.remember(step, i, target, &row);
            }
        }
        self.order = order;
        if train {
            self.shared.decisions.fetch_add(t as u64, Ordering::Relaxed);
            if self.pending.len() > DEFAULT_MAX_PENDING {
                tracing::warn!(
                    pending = self.pending.len(),
                    "too many decisions without outcome; forgetting them"
                );
                self.pending.clear();
                self.last_by_origin.clear();
            }
            self.flush();
            self.shared.wait_for_learner()?;
        }
        Ok(())
    }

    fn observe(&mut self, outcomes: &[TaskOutcome]) {
        if self.mode() == Mode::Train {
            self.record_outcomes(outcomes);
            self.flush();
        }
    }

    fn end_episode(&mut self, end: &EpisodeEnd) {
        if self.mode() == Mode::Train {
            self.record_outcomes(&end.outcomes);
            if end.reason() == EndReason::Terminated {
                // The last decision of each origin: terminal, reward alone.
                let last: Vec<u64> = self.last_by_origin.values().copied().collect();
                for id in last {
                    if let Some(p) = self.pending.remove(&id) {
                        if let Some(r) = p.reward {
                            self.outbox.push(Transition {
                                shared: p.shared,
                                chosen: p.chosen,
                                reward: r,
                                discount: 0.0,
                                next_shared: Box::new([]),
                                next_cand: Box::new([]),
                            });
                        }
                    }
                }
            }
        }
        // Decisions whose outcome or next state can no longer come are forgotten.
        self.pending.clear();
        self.last_by_origin.clear();
        self.flush();
    }

    fn version(&self) -> u64 {
        self.snap.policy_version
    }
}

impl StrictPolicy {
    /// Keeps task `i`'s decision for learning: it is the next state of the previous decision
    /// of the same origin, and waits for its own outcome and successor.
    fn remember(&mut self, step: &Step, i: usize, target: usize, scores: &[f32]) {
        let (n, s, c) = (self.fb.n(), SHARED_FEATURES, CANDIDATE_FEATURES);
        let m = scores.len();
        let task = &step.tasks[i];
        let shared_f: Box<[f32]> = self.shared_buf[i * s..(i + 1) * s].into();
        let r = (i * n + target) * c;
        let chosen: Box<[f32]> = self.cand_buf[r..r + c].into();
        let speed = self.fb.nodes[target].speed;
        let pending = Pending {
            shared: shared_f.clone(),
            chosen,
            service_on_node_us: task.service_estimate_ns as f64 / 1e3 / speed,
            reward: None,
            next: None,
        };
        if self.shared.config.discount == 0.0 {
            // No bootstrap: no next state to keep.
            self.pending.insert(task.task_id, pending);
            return;
        }
        // The next-state record keeps the best scored candidates by the acting network.
        let k = self.shared.config.next_candidates.min(m);
        let mut idx: Vec<usize> = (0..m).collect();
        if k < m {
            idx.select_nth_unstable_by(k - 1, |&a, &b| scores[b].total_cmp(&scores[a]));
            idx.truncate(k);
        }
        let rows = &self.short_rows[i * m * c..(i + 1) * m * c];
        let mut cand = Vec::with_capacity(k * c);
        for &j in &idx {
            cand.extend_from_slice(&rows[j * c..(j + 1) * c]);
        }
        let record = Arc::new(StateRecord {
            shared: shared_f,
            cand: cand.into(),
        });
        if let Some(prev) = self.last_by_origin.insert(task.origin, task.task_id) {
            if let Some(p) = self.pending.get_mut(&prev) {
                p.next = Some(record);
                self.try_emit(prev);
            }
        }
        self.pending.insert(task.task_id, pending);
    }
}

/// Index of the largest value (first on ties; NaN never wins). Deterministic, for policies
/// that must not draw randomness (the original Malcolm's greedy action).
pub fn argmax(v: &[f32]) -> usize {
    let mut best = 0;
    for (i, &x) in v.iter().enumerate() {
        if x > v[best] || v[best].is_nan() {
            best = i;
        }
    }
    best
}
