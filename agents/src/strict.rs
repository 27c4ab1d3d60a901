//! Malcolm-Strict: IQN + CVaR action selection + barrier reward.
//!
//! [`StrictFactory`] spawns one learner thread that owns the training VarStore, the target
//! network, the optimiser and the replay buffer. Sessions ([`StrictPolicy`]) act on their own
//! copy of the last published weights (refreshed when the learner publishes, every
//! `publish_every` updates) and send finished transitions over a bounded channel; a full
//! channel drops transitions rather than stall a decision.
//!
//! A transition is one task's decision: state = the task's features as its origin saw them,
//! action = the chosen node, reward = the scaled per-task reward of the task's outcome
//! (joined by task id when the outcome arrives), next state = the next decision of the same
//! session and origin. The last decision of an origin in a *terminated* episode is terminal;
//! in a *truncated* one it has no next state to bootstrap from and is not learned from.

use crate::adam::Adam;
use crate::checkpoint::{self, CheckpointError};
use crate::config::IqnConfig;
use crate::features::{FeatureBuilder, OriginView, CANDIDATE_FEATURES, SHARED_FEATURES};
use crate::iqn::{midpoint_taus, quantile_huber_loss, IqnArch, IqnNet};
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
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::Duration;
use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};

/// Format tag in the checkpoint metadata; bumped when the tensor layout changes.
pub const CHECKPOINT_FORMAT: &str = "malcolm-strict-iqn/1";
/// Decisions waiting for their outcome in one session before the session gives up on them
/// (outcomes that never come would otherwise grow memory without bound).
pub const DEFAULT_MAX_PENDING: usize = 200_000;
/// How long the learner waits for data before it looks at its control channel again.
const LEARNER_POLL: Duration = Duration::from_millis(5);
/// Longest a save or load waits for the learner thread.
pub const DEFAULT_CONTROL_TIMEOUT: Duration = Duration::from_secs(120);
/// Longest `set_mode` waits for the learner to acknowledge (one update takes milliseconds).
const MODE_BARRIER_TIMEOUT: Duration = Duration::from_secs(5);
/// Updates the learner may owe before it stops accumulating debt (keeps it from lagging
/// far behind a burst of data on a busy machine).
const MAX_OWED_UPDATES: f64 = 256.0;
/// Weight of the newest loss in the reported moving average.
const LOSS_EMA: f64 = 0.02;

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
    /// (name, values), sorted by name.
    pub params: Vec<(String, Vec<f32>)>,
}

/// State shared by the factory, the sessions and the learner thread.
#[derive(Debug)]
struct Shared {
    config: IqnConfig,
    arch: IqnArch,
    mode: AtomicU8,
    snapshot: RwLock<Arc<Snapshot>>,
    publish_seq: AtomicU64,
    decisions: AtomicU64,
    dropped_transitions: AtomicU64,
    status: Mutex<LearnerStatus>,
}

impl Shared {
    fn mode(&self) -> Mode {
        mode_from_u8(self.mode.load(Ordering::Relaxed))
    }

    fn publish(&self, snap: Arc<Snapshot>) {
        let v = snap.policy_version;
        *self.snapshot.write().expect("snapshot lock") = snap;
        self.publish_seq.fetch_add(1, Ordering::Release);
        self.status.lock().expect("status lock").policy_version = v;
    }

    fn epsilon(&self) -> f64 {
        let c = &self.config;
        let d = self.decisions.load(Ordering::Relaxed) as f64;
        let frac = (1.0 - d / c.eps_decay_decisions.max(1) as f64).max(0.0);
        c.eps_end + (c.eps_start - c.eps_end) * frac
    }
}

/// The training side: online and target networks, optimiser, replay. Owned by one thread
/// (tch tensors are not Sync); public so tests and benchmarks can drive it synchronously.
pub struct Learner {
    pub config: IqnConfig,
    pub arch: IqnArch,
    online_vs: VarStore,
    online: IqnNet,
    target_vs: VarStore,
    target: IqnNet,
    adam: Adam,
    pub replay: Replay,
    rng: ChaCha8Rng,
    pub updates: u64,
    pub policy_version: u64,
    pub loss_ema: f64,
    owed: f64,
    /// The weights sessions act with (the last snapshot published), saved as `policy.*` so a
    /// reloaded learner acts exactly as the saved one did.
    acting: Arc<Snapshot>,
}

impl Learner {
    pub fn new(config: IqnConfig) -> Result<Self, PolicyError> {
        config.validate().map_err(PolicyError::InvalidState)?;
        let arch = IqnArch::new(config.hidden, config.cos_embed);
        // libtorch's initialisers draw from its global generator.
        tch::manual_seed(config.seed as i64);
        let online_vs = VarStore::new(Device::Cpu);
        let online = IqnNet::new(&online_vs.root(), arch);
        let mut target_vs = VarStore::new(Device::Cpu);
        let target = IqnNet::new(&target_vs.root(), arch);
        target_vs
            .copy(&online_vs)
            .map_err(|e| PolicyError::Learner(e.to_string()))?;
        target_vs.freeze();
        let adam = Adam::new(sorted_vars(&online_vs), config.lr, config.grad_clip);
        let acting = Arc::new(snapshot_of(&online_vs, 0));
        Ok(Self {
            acting,
            replay: Replay::new(config.replay_capacity),
            rng: ChaCha8Rng::seed_from_u64(config.seed ^ 0x1e4a),
            arch,
            online_vs,
            online,
            target_vs,
            target,
            adam,
            updates: 0,
            policy_version: 0,
            loss_ema: 0.0,
            owed: 0.0,
            config,
        })
    }

    pub fn push(&mut self, t: Transition) {
        self.replay.push(t);
    }

    /// True when the replay holds enough transitions for an update.
    pub fn ready(&self) -> bool {
        self.replay.len() >= self.config.learn_start.max(1)
    }

    /// One gradient update on a minibatch; returns the loss.
    pub fn update(&mut self) -> f64 {
        let c = &self.config;
        let b = c.batch;
        let batch = self.replay.sample(b, &mut self.rng);
        let taus = uniform_taus(&mut self.rng, b, c.n_tau, 1.0);
        let target_taus = uniform_taus(&mut self.rng, b, c.n_tau_target, 1.0);
        let select_taus = Tensor::from_slice(&midpoint_taus(c.cvar_alpha, c.k_tau)).view([1, -1]);
        let h = self.arch.hidden as i64;
        let target = tch::no_grad(|| {
            let psi_next = self.target.psi(&batch.next_shared, &batch.next_cand);
            let cvar = self
                .target
                .mean_over_taus(&psi_next, &select_taus)
                .masked_fill(&batch.next_mask.logical_not(), f64::NEG_INFINITY);
            let a_next = cvar
                .argmax(1, false)
                .view([b as i64, 1, 1])
                .expand([b as i64, 1, h], false);
            let psi_a = psi_next.gather(1, &a_next, false);
            let q_next = self
                .target
                .quantiles(&psi_a, &self.target.phi(&target_taus))
                .squeeze_dim(1);
            batch.reward.unsqueeze(1) + (batch.bootstrap.unsqueeze(1) * c.discount) * q_next
        });
        let psi = self.online.psi(&batch.shared, &batch.chosen);
        let pred = self
            .online
            .quantiles(&psi, &self.online.phi(&taus))
            .squeeze_dim(1);
        let loss = quantile_huber_loss(&pred, &taus, &target, c.kappa, None);
        self.adam.zero_grad();
        loss.backward();
        self.adam.step();
        let l = loss.double_value(&[]);
        self.updates += 1;
        self.loss_ema = if self.updates == 1 {
            l
        } else {
            self.loss_ema + LOSS_EMA * (l - self.loss_ema)
        };
        if self.updates.is_multiple_of(c.target_update_every) {
            self.sync_target();
        }
        l
    }

    fn sync_target(&mut self) {
        if let Err(e) = self.target_vs.copy(&self.online_vs) {
            tracing::error!(error = %e, "target network copy failed");
        }
    }

    /// Makes the current online weights the acting weights, with a new policy version.
    pub fn publish(&mut self) -> Arc<Snapshot> {
        self.policy_version += 1;
        self.acting = Arc::new(snapshot_of(&self.online_vs, self.policy_version));
        self.acting.clone()
    }

    /// The acting weights (last published).
    pub fn acting(&self) -> Arc<Snapshot> {
        self.acting.clone()
    }

    /// Writes the full learner (online + target weights, Adam moments and step, counters,
    /// config) to `path` atomically. The replay buffer is not saved (it is large and refills).
    pub fn save(&self, path: &Path) -> Result<CheckpointInfo, CheckpointError> {
        let online = sorted_vars(&self.online_vs);
        let target = sorted_vars(&self.target_vs);
        let mut tensors: Vec<(String, &Tensor)> = Vec::new();
        for (n, t) in &online {
            tensors.push((format!("online.{n}"), t));
        }
        for (n, t) in &target {
            tensors.push((format!("target.{n}"), t));
        }
        for (n, t) in self.adam.state() {
            tensors.push((format!("adam.{n}"), t));
        }
        let acting: Vec<(String, Tensor)> = self
            .acting
            .params
            .iter()
            .zip(&online)
            .map(|((n, data), (_, like))| {
                (
                    format!("policy.{n}"),
                    Tensor::from_slice(data).view(like.size().as_slice()),
                )
            })
            .collect();
        for (n, t) in &acting {
            tensors.push((n.clone(), t));
        }
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
            ("policy_version".into(), self.policy_version.to_string()),
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
            policy_version: self.policy_version,
        })
    }

    /// Restores a checkpoint written by [`Learner::save`]. Refuses files of another format or
    /// architecture before touching anything. Hyper-parameters that do not change shapes (lr,
    /// alpha, epsilon...) stay those of the running learner.
    pub fn load(&mut self, path: &Path) -> Result<CheckpointInfo, CheckpointError> {
        let d = checkpoint::read(path)?;
        let incompatible = |reason: String| CheckpointError::Incompatible {
            path: path.into(),
            reason,
        };
        match d.metadata.get("format") {
            Some(f) if f == CHECKPOINT_FORMAT => {}
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
        if arch != self.arch {
            return Err(incompatible(format!(
                "architecture {arch:?} differs from the learner's {:?}",
                self.arch
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
        let mut online = sorted_vars(&self.online_vs);
        let mut target = sorted_vars(&self.target_vs);
        let adam_names: Vec<String> = self.adam.state().into_iter().map(|(n, _)| n).collect();
        let expected = online
            .iter()
            .map(|(n, t)| (format!("online.{n}"), t.size()))
            .chain(
                online
                    .iter()
                    .map(|(n, t)| (format!("policy.{n}"), t.size())),
            )
            .chain(
                target
                    .iter()
                    .map(|(n, t)| (format!("target.{n}"), t.size())),
            )
            .chain(
                self.adam
                    .state()
                    .into_iter()
                    .map(|(n, t)| (format!("adam.{n}"), t.size())),
            );
        for (name, size) in expected {
            let want: Vec<usize> = size.iter().map(|&s| s as usize).collect();
            match d.tensors.get(&name) {
                Some((_, shape)) if *shape == want => {}
                Some((_, shape)) => {
                    return Err(incompatible(format!(
                        "{name} has shape {shape:?}, want {want:?}"
                    )))
                }
                None => return Err(incompatible(format!("tensor {name} missing"))),
            }
        }
        for (n, t) in &mut online {
            checkpoint::copy_into(path, &d, &format!("online.{n}"), t)?;
        }
        for (n, t) in &mut target {
            checkpoint::copy_into(path, &d, &format!("target.{n}"), t)?;
        }
        for n in adam_names {
            let t = self.adam.state_mut(&n).expect("adam state name");
            checkpoint::copy_into(path, &d, &format!("adam.{n}"), t)?;
        }
        let acting = online
            .iter()
            .map(|(n, _)| (n.clone(), d.tensors[&format!("policy.{n}")].0.clone()))
            .collect();
        self.acting = Arc::new(Snapshot {
            policy_version: version,
            params: acting,
        });
        self.adam.step = adam_step as i64;
        self.updates = updates;
        self.policy_version = version;
        Ok(CheckpointInfo {
            path: path.into(),
            bytes: std::fs::metadata(path).map(|m| m.len()).unwrap_or(0),
            policy_version: version,
        })
    }
}

fn snapshot_of(vs: &VarStore, policy_version: u64) -> Snapshot {
    Snapshot {
        policy_version,
        params: sorted_vars(vs)
            .iter()
            .map(|(n, t)| (n.clone(), checkpoint::tensor_f32(t).0))
            .collect(),
    }
}

fn sorted_vars(vs: &VarStore) -> Vec<(String, Tensor)> {
    let mut v: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

/// `rows x k` taus uniform in [0, hi).
fn uniform_taus(rng: &mut impl Rng, rows: usize, k: usize, hi: f64) -> Tensor {
    let v: Vec<f32> = (0..rows * k)
        .map(|_| (rng.random::<f64>() * hi) as f32)
        .collect();
    Tensor::from_slice(&v).view([rows as i64, k as i64])
}

enum Control {
    /// Answered once the learner has finished what it was doing (used by `set_mode`).
    Barrier(mpsc::Sender<()>),
    Save(
        PathBuf,
        mpsc::Sender<Result<CheckpointInfo, CheckpointError>>,
    ),
    Load(
        PathBuf,
        mpsc::Sender<Result<CheckpointInfo, CheckpointError>>,
    ),
    Shutdown,
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
        let shared = Arc::new(Shared {
            status: Mutex::new(LearnerStatus {
                replay_capacity: config.replay_capacity as u64,
                ..Default::default()
            }),
            arch: IqnArch::new(config.hidden, config.cos_embed),
            config,
            mode: AtomicU8::new(mode_to_u8(Mode::Train)),
            // Replaced by the learner's initial weights before `new` returns.
            snapshot: RwLock::new(Arc::new(Snapshot {
                policy_version: 0,
                params: Vec::new(),
            })),
            publish_seq: AtomicU64::new(0),
            decisions: AtomicU64::new(0),
            dropped_transitions: AtomicU64::new(0),
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

    fn control(
        &self,
        make: impl FnOnce(mpsc::Sender<Result<CheckpointInfo, CheckpointError>>) -> Control,
    ) -> Result<CheckpointInfo, PolicyError> {
        let (tx, rx) = mpsc::channel();
        self.control
            .send(make(tx))
            .map_err(|_| PolicyError::Learner("learner thread is gone".into()))?;
        match rx.recv_timeout(DEFAULT_CONTROL_TIMEOUT) {
            Ok(r) => r.map_err(PolicyError::from),
            Err(_) => Err(PolicyError::Learner(
                "learner did not answer within the control timeout".into(),
            )),
        }
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
    let update_every = learner.config.update_every as f64;
    let publish_every = learner.config.publish_every;
    loop {
        loop {
            match control.try_recv() {
                Ok(Control::Barrier(reply)) => {
                    let _ = reply.send(());
                }
                Ok(Control::Save(p, reply)) => {
                    let r = learner.save(&p);
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
        let mut got = 0usize;
        while got < 4 * learner.config.batch {
            match data.try_recv() {
                Ok(v) => {
                    got += v.len();
                    v.into_iter().for_each(|t| learner.push(t));
                }
                Err(_) => break,
            }
        }
        if train {
            learner.owed = (learner.owed + got as f64 / update_every).min(MAX_OWED_UPDATES);
        }
        if train && learner.ready() && learner.owed >= 1.0 {
            learner.owed -= 1.0;
            learner.update();
            // Eval and frozen never see new weights, even from an update already under way.
            if learner.updates.is_multiple_of(publish_every) && shared.mode() == Mode::Train {
                let snap = learner.publish();
                shared.publish(snap);
            }
            let mut st = shared.status.lock().expect("status lock");
            st.loss = learner.loss_ema;
            st.updates = learner.updates;
            st.replay_len = learner.replay.len() as u64;
        } else if got == 0 {
            match data.recv_timeout(LEARNER_POLL) {
                Ok(v) => {
                    if train {
                        learner.owed =
                            (learner.owed + v.len() as f64 / update_every).min(MAX_OWED_UPDATES);
                    }
                    v.into_iter().for_each(|t| learner.push(t));
                    shared.status.lock().expect("status lock").replay_len =
                        learner.replay.len() as u64;
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => {}
            }
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
            self.data.clone(),
            hello,
            seed,
        )?))
    }

    /// Returns once the learner has seen the mode: no update started before the call
    /// publishes weights after it.
    fn set_mode(&self, mode: Mode) {
        self.shared.mode.store(mode_to_u8(mode), Ordering::Relaxed);
        let (tx, rx) = mpsc::channel();
        if self.control.send(Control::Barrier(tx)).is_ok() {
            let _ = rx.recv_timeout(MODE_BARRIER_TIMEOUT);
        }
    }

    fn mode(&self) -> Mode {
        self.shared.mode()
    }

    fn status(&self) -> LearnerStatus {
        *self.shared.status.lock().expect("status lock")
    }

    fn save_checkpoint(&self, path: &Path) -> Result<CheckpointInfo, PolicyError> {
        self.control(|tx| Control::Save(path.to_path_buf(), tx))
    }

    fn load_checkpoint(&self, path: &Path) -> Result<CheckpointInfo, PolicyError> {
        self.control(|tx| Control::Load(path.to_path_buf(), tx))
    }
}

/// Full state of a decision, kept as the next state of the previous decision of its origin.
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
    tx: SyncSender<Vec<Transition>>,
    fb: FeatureBuilder,
    _vs: VarStore,
    net: IqnNet,
    params: Vec<Tensor>,
    seen_seq: u64,
    version: u64,
    rng: ChaCha8Rng,
    reward: RewardConfig,
    eval_taus: Tensor,
    /// `IqnNet::cvar_head` of `eval_taus` for the current weights (None after a refresh).
    eval_head: Option<Tensor>,
    view: OriginView,
    shared_buf: Vec<f32>,
    cand_buf: Vec<f32>,
    scores: Vec<f32>,
    pending: HashMap<u64, Pending>,
    last_by_origin: HashMap<u32, u64>,
    outbox: Vec<Transition>,
}

impl StrictPolicy {
    fn new(
        shared: Arc<Shared>,
        tx: SyncSender<Vec<Transition>>,
        hello: &Hello,
        seed: u64,
    ) -> Result<Self, PolicyError> {
        let fb = FeatureBuilder::from_hello(hello)?;
        let vs = VarStore::new(Device::Cpu);
        let net = IqnNet::new(&vs.root(), shared.arch);
        let params = sorted_vars(&vs).into_iter().map(|(_, t)| t).collect();
        let c = &shared.config;
        let eval_taus = Tensor::from_slice(&midpoint_taus(c.cvar_alpha, c.k_tau)).view([1, -1]);
        let mut p = Self {
            reward: c.reward.into(),
            rng: ChaCha8Rng::seed_from_u64(seed),
            eval_taus,
            eval_head: None,
            tx,
            fb,
            _vs: vs,
            net,
            params,
            seen_seq: 0,
            version: 0,
            view: OriginView::default(),
            shared_buf: Vec::new(),
            cand_buf: Vec::new(),
            scores: Vec::new(),
            pending: HashMap::new(),
            last_by_origin: HashMap::new(),
            outbox: Vec::new(),
            shared,
        };
        p.refresh_weights();
        Ok(p)
    }

    /// Copies the latest published weights if the learner published since the last look.
    fn refresh_weights(&mut self) {
        let seq = self.shared.publish_seq.load(Ordering::Acquire);
        if seq == self.seen_seq {
            return;
        }
        let snap = self.shared.snapshot.read().expect("snapshot lock").clone();
        tch::no_grad(|| {
            for (t, (_, data)) in self.params.iter_mut().zip(&snap.params) {
                let src = Tensor::from_slice(data).view(t.size().as_slice());
                t.copy_(&src);
            }
        });
        self.seen_seq = seq;
        self.version = snap.policy_version;
        self.eval_head = None;
    }

    fn flush(&mut self) {
        if self.outbox.is_empty() {
            return;
        }
        let batch = std::mem::take(&mut self.outbox);
        let n = batch.len() as u64;
        if self.tx.try_send(batch).is_err() {
            self.shared
                .dropped_transitions
                .fetch_add(n, Ordering::Relaxed);
        }
    }

    fn try_emit(&mut self, task_id: u64) {
        let ready =
            matches!(self.pending.get(&task_id), Some(p) if p.reward.is_some() && p.next.is_some());
        if !ready {
            return;
        }
        let p = self.pending.remove(&task_id).expect("checked above");
        let next = p.next.expect("checked above");
        self.outbox.push(Transition {
            shared: p.shared,
            chosen: p.chosen,
            reward: p.reward.expect("checked above"),
            bootstrap: true,
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
}

impl Policy for StrictPolicy {
    fn decide(&mut self, step: &Step, out: &mut Decision) -> Result<(), PolicyError> {
        out.clear();
        self.fb.check(step)?;
        let mode = self.shared.mode();
        let train = mode == Mode::Train;
        if mode != Mode::Frozen {
            self.refresh_weights();
        }
        // Idempotent with a separate observe() of the same outcomes.
        if train {
            self.record_outcomes(&step.outcomes);
        }
        self.fb.observe_tasks(&step.tasks);
        let t = step.tasks.len();
        if t == 0 {
            self.flush();
            return Ok(());
        }
        let n = self.fb.n();
        let (s, c) = (SHARED_FEATURES, CANDIDATE_FEATURES);
        self.shared_buf.resize(t * s, 0.0);
        self.cand_buf.resize(t * n * c, 0.0);
        let mut view_origin = usize::MAX;
        for (i, task) in step.tasks.iter().enumerate() {
            let o = task.origin as usize;
            if o != view_origin {
                self.fb.origin_view(step, o, &mut self.view);
                view_origin = o;
            }
            self.fb.task(
                step,
                task,
                &self.view,
                &mut self.shared_buf[i * s..(i + 1) * s],
                &mut self.cand_buf[i * n * c..(i + 1) * n * c],
            );
        }
        let k = self.shared.config.k_tau;
        let alpha = self.shared.config.cvar_alpha;
        // Train: one set of taus ~ U[0, alpha] per Step (the tau embedding is computed once,
        // not per task). Eval: fixed midpoint taus, folded into a cached head vector.
        let taus = train.then(|| uniform_taus(&mut self.rng, 1, k, alpha));
        if !train && self.eval_head.is_none() {
            self.eval_head = Some(tch::no_grad(|| self.net.cvar_head(&self.eval_taus)));
        }
        let scores = tch::no_grad(|| {
            let shared = Tensor::from_slice(&self.shared_buf).view([t as i64, s as i64]);
            let cand = Tensor::from_slice(&self.cand_buf).view([t as i64, n as i64, c as i64]);
            let psi = self.net.psi(&shared, &cand);
            let scores = match (&taus, &self.eval_head) {
                (Some(taus), _) => self.net.mean_over_taus(&psi, taus),
                (None, Some(head)) => self.net.scores_with_head(&psi, head),
                (None, None) => unreachable!("eval head computed above"),
            };
            scores.to_kind(Kind::Float).contiguous()
        });
        self.scores.resize(t * n, 0.0);
        scores.copy_data(&mut self.scores, t * n);
        let eps = if train { self.shared.epsilon() } else { 0.0 };
        for (i, task) in step.tasks.iter().enumerate() {
            let row = &self.scores[i * n..(i + 1) * n];
            let best = argmax(row);
            let target = if eps > 0.0 && self.rng.random::<f64>() < eps {
                self.rng.random_range(0..n)
            } else {
                best
            };
            out.targets.push(target as u32);
            out.scores.push(row[target]);
            if train {
                let shared_f: Box<[f32]> = self.shared_buf[i * s..(i + 1) * s].into();
                let cand_f = &self.cand_buf[i * n * c..(i + 1) * n * c];
                let chosen: Box<[f32]> = cand_f[target * c..(target + 1) * c].into();
                let record = Arc::new(StateRecord {
                    shared: shared_f.clone(),
                    cand: cand_f.into(),
                });
                if let Some(prev) = self.last_by_origin.insert(task.origin, task.task_id) {
                    if let Some(p) = self.pending.get_mut(&prev) {
                        p.next = Some(record);
                        self.try_emit(prev);
                    }
                }
                let speed = self.fb.nodes[target].speed;
                self.pending.insert(
                    task.task_id,
                    Pending {
                        shared: shared_f,
                        chosen,
                        service_on_node_us: task.service_estimate_ns as f64 / 1e3 / speed,
                        reward: None,
                        next: None,
                    },
                );
            }
        }
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
        }
        self.flush();
        Ok(())
    }

    fn observe(&mut self, outcomes: &[TaskOutcome]) {
        if self.shared.mode() == Mode::Train {
            self.record_outcomes(outcomes);
            self.flush();
        }
    }

    fn end_episode(&mut self, end: &EpisodeEnd) {
        if self.shared.mode() == Mode::Train {
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
                                bootstrap: false,
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
        self.version
    }
}

/// Index of the largest value (first on ties; NaN never wins).
pub fn argmax(v: &[f32]) -> usize {
    let mut best = 0;
    for (i, &x) in v.iter().enumerate() {
        if x > v[best] || v[best].is_nan() {
            best = i;
        }
    }
    best
}
