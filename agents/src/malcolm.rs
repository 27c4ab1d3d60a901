//! The original Malcolm (design 6.3): one actor-critic agent per node, state = the node's view
//! of the rack's load vector (no deadlines, no slack), reward = `-sum_i (x_i - mean)^2 - C(a)`
//! on the load vector the agent sees at its next decision, MSE critic loss, and critic
//! parameter consensus (every critic replaced by the mean of all critics every K updates).
//! Actors and critics are MLPs of the same size as Malcolm-Strict's (`hidden`).
//!
//! The rack size is fixed by the first session's Hello (inputs and outputs are per node);
//! later sessions of another size are refused. Like [`crate::strict`], one learner thread
//! (the crate's `host`, started by the first session or load) owns the tensors and sessions
//! act on published actor weights. Learning is on-policy advantage actor-critic over batches
//! of recent transitions (acting weights may lag the learner by one publication, which A2C
//! tolerates).

use crate::adam::Adam;
use crate::checkpoint::{self, CheckpointError};
use crate::config::MalcolmConfig;
use crate::features::FeatureBuilder;
use crate::host::{Caller, Host};
use malcolm_policies::reward::malcolm_variance;
use malcolm_policies::{
    CheckpointInfo, Decision, LearnerStatus, Mode, Policy, PolicyError, PolicyFactory,
};
use malcolm_proto::bridge::{EpisodeEnd, Hello, Step};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use tch::nn::{Init, VarStore};
use tch::{Device, Kind, Tensor};

/// Format tag of Malcolm checkpoints.
pub const CHECKPOINT_FORMAT: &str = "malcolm-ac/1";
const LEARNER_POLL: Duration = Duration::from_millis(5);
const CONTROL_TIMEOUT: Duration = Duration::from_secs(120);
/// Weight of the critic's loss next to the actor's in the one combined loss.
const CRITIC_WEIGHT: f64 = 0.5;

/// One agent's experience: its load-vector view before and after acting.
#[derive(Debug, Clone)]
pub struct AcTransition {
    pub agent: usize,
    pub state: Vec<f32>,
    pub action: usize,
    pub reward: f32,
    pub next_state: Vec<f32>,
}

/// Per-agent MLPs stored as stacked weights [agents, in, out]; a batch gathers each sample's
/// agent, so one bmm serves all agents.
#[derive(Debug)]
struct StackedMlp {
    w: Vec<Tensor>,
    b: Vec<Tensor>,
}

impl StackedMlp {
    fn new(vs: &tch::nn::Path, agents: i64, dims: &[i64]) -> Self {
        let (mut w, mut b) = (Vec::new(), Vec::new());
        for (l, pair) in dims.windows(2).enumerate() {
            let bound = 1.0 / (pair[0] as f64).sqrt();
            w.push(vs.var(
                &format!("w{l}"),
                &[agents, pair[0], pair[1]],
                Init::Uniform {
                    lo: -bound,
                    up: bound,
                },
            ));
            b.push(vs.var(&format!("b{l}"), &[agents, 1, pair[1]], Init::Const(0.0)));
        }
        Self { w, b }
    }

    /// x [B, in], agents [B] (int64) -> [B, out].
    fn forward(&self, x: &Tensor, agents: &Tensor) -> Tensor {
        let mut h = x.unsqueeze(1);
        let last = self.w.len() - 1;
        for (l, (w, b)) in self.w.iter().zip(&self.b).enumerate() {
            h = h.bmm(&w.index_select(0, agents)) + b.index_select(0, agents);
            if l != last {
                h = h.relu();
            }
        }
        h.squeeze_dim(1)
    }
}

/// Load vector of `origin`'s view as network input: ln(1 + queue_len / cores) / 3, and the
/// raw loads (tasks per core) for the reward.
fn loads(
    fb: &FeatureBuilder,
    step: &Step,
    origin: usize,
    view: &mut crate::features::OriginView,
) -> (Vec<f32>, Vec<f64>) {
    fb.origin_view(step, origin, view);
    let raw: Vec<f64> = view
        .entries
        .iter()
        .zip(&fb.nodes)
        .map(|((hb, _, _), info)| hb.queue_len as f64 / info.cores as f64)
        .collect();
    let input = raw.iter().map(|x| (x.ln_1p() / 3.0) as f32).collect();
    (input, raw)
}

/// The training side of original Malcolm.
pub struct AcLearner {
    pub config: MalcolmConfig,
    pub nodes: usize,
    vs: VarStore,
    actor: StackedMlp,
    critic: StackedMlp,
    adam: Adam,
    batch: Vec<AcTransition>,
    pub updates: u64,
    pub policy_version: u64,
    pub loss_ema: f64,
}

impl AcLearner {
    pub fn new(config: MalcolmConfig, nodes: usize) -> Result<Self, PolicyError> {
        config.validate().map_err(PolicyError::InvalidState)?;
        tch::manual_seed(config.seed as i64);
        let vs = VarStore::new(Device::Cpu);
        let (n, h) = (nodes as i64, config.hidden as i64);
        let actor = StackedMlp::new(&(vs.root() / "actor"), n, &[n, h, h, n]);
        let critic = StackedMlp::new(&(vs.root() / "critic"), n, &[n, h, h, 1]);
        let mut params: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
        params.sort_by(|a, b| a.0.cmp(&b.0));
        let adam = Adam::new(params, config.lr, config.grad_clip);
        Ok(Self {
            config,
            nodes,
            vs,
            actor,
            critic,
            adam,
            batch: Vec::new(),
            updates: 0,
            policy_version: 0,
            loss_ema: 0.0,
        })
    }

    /// Adds a transition; runs an update when a batch is full. Returns true after an update.
    pub fn push(&mut self, t: AcTransition) -> bool {
        if t.agent >= self.nodes || t.state.len() != self.nodes || t.next_state.len() != self.nodes
        {
            tracing::warn!(agent = t.agent, "transition for another rack size dropped");
            return false;
        }
        self.batch.push(t);
        if self.batch.len() >= self.config.batch {
            self.update();
            true
        } else {
            false
        }
    }

    fn update(&mut self) {
        let batch = std::mem::take(&mut self.batch);
        let b = batch.len() as i64;
        let n = self.nodes as i64;
        let flat = |f: &dyn Fn(&AcTransition) -> &[f32]| -> Tensor {
            let v: Vec<f32> = batch.iter().flat_map(|t| f(t).iter().copied()).collect();
            Tensor::from_slice(&v).view([b, n])
        };
        let s = flat(&|t| &t.state);
        let s2 = flat(&|t| &t.next_state);
        let agents = Tensor::from_slice(&batch.iter().map(|t| t.agent as i64).collect::<Vec<_>>());
        let actions =
            Tensor::from_slice(&batch.iter().map(|t| t.action as i64).collect::<Vec<_>>());
        let r = Tensor::from_slice(&batch.iter().map(|t| t.reward).collect::<Vec<_>>());
        let target = tch::no_grad(|| {
            r + self.critic.forward(&s2, &agents).squeeze_dim(1) * self.config.discount
        });
        let v = self.critic.forward(&s, &agents).squeeze_dim(1);
        let critic_loss = (&target - &v).square().mean(Kind::Float);
        let adv = (&target - &v).detach();
        let logp = self.actor.forward(&s, &agents).log_softmax(1, Kind::Float);
        let chosen = logp.gather(1, &actions.unsqueeze(1), false).squeeze_dim(1);
        let entropy = -(logp.exp() * &logp).sum_dim_intlist(1, false, Kind::Float);
        let actor_loss = -(chosen * adv).mean(Kind::Float)
            - entropy.mean(Kind::Float) * self.config.entropy_coef;
        let loss = actor_loss + critic_loss * CRITIC_WEIGHT;
        self.adam.zero_grad();
        loss.backward();
        self.adam.step();
        self.updates += 1;
        let l = loss.double_value(&[]);
        self.loss_ema = if self.updates == 1 {
            l
        } else {
            self.loss_ema + 0.05 * (l - self.loss_ema)
        };
        if self.updates.is_multiple_of(self.config.consensus_every) {
            self.consensus();
        }
    }

    /// Replaces every agent's critic parameters by the mean over agents.
    pub fn consensus(&mut self) {
        tch::no_grad(|| {
            for p in self.critic.w.iter_mut().chain(self.critic.b.iter_mut()) {
                let mean = p.mean_dim(0, true, Kind::Float).expand_as(p);
                p.copy_(&mean);
            }
        });
    }

    /// Largest difference between any two agents' critic parameters (0 right after
    /// consensus).
    pub fn critic_spread(&self) -> f64 {
        self.critic
            .w
            .iter()
            .chain(&self.critic.b)
            .map(|p| {
                (p - p.mean_dim(0, true, Kind::Float))
                    .abs()
                    .max()
                    .double_value(&[])
            })
            .fold(0.0, f64::max)
    }

    fn actor_snapshot(&mut self) -> ActorSnapshot {
        self.policy_version += 1;
        ActorSnapshot {
            policy_version: self.policy_version,
            nodes: self.nodes,
            layers: self
                .actor
                .w
                .iter()
                .zip(&self.actor.b)
                .map(|(w, b)| (checkpoint::tensor_f32(w), checkpoint::tensor_f32(b)))
                .collect(),
        }
    }

    fn named(&self) -> Vec<(String, Tensor)> {
        let mut v: Vec<(String, Tensor)> = self.vs.variables().into_iter().collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    pub fn save(&self, path: &Path) -> Result<CheckpointInfo, CheckpointError> {
        let named = self.named();
        let mut tensors: Vec<(String, &Tensor)> =
            named.iter().map(|(n, t)| (format!("net.{n}"), t)).collect();
        for (n, t) in self.adam.state() {
            tensors.push((format!("adam.{n}"), t));
        }
        let meta = HashMap::from([
            ("format".to_string(), CHECKPOINT_FORMAT.to_string()),
            ("nodes".into(), self.nodes.to_string()),
            ("hidden".into(), self.config.hidden.to_string()),
            (
                "config".into(),
                serde_json::to_string(&self.config).expect("config json"),
            ),
            ("updates".into(), self.updates.to_string()),
            ("adam_step".into(), self.adam.step.to_string()),
            ("policy_version".into(), self.policy_version.to_string()),
        ]);
        checkpoint::write(path, &tensors, meta, self.policy_version)
    }

    pub fn load(&mut self, path: &Path) -> Result<CheckpointInfo, CheckpointError> {
        let d = checkpoint::read(path)?;
        let bad = |reason: String| CheckpointError::Incompatible {
            path: path.into(),
            reason,
        };
        if d.metadata.get("format").map(String::as_str) != Some(CHECKPOINT_FORMAT) {
            return Err(bad(format!("format is not {CHECKPOINT_FORMAT}")));
        }
        let num = |k: &str| -> Result<u64, CheckpointError> {
            d.metadata
                .get(k)
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| bad(format!("metadata {k} missing")))
        };
        if num("nodes")? != self.nodes as u64 || num("hidden")? != self.config.hidden as u64 {
            return Err(bad(format!(
                "nodes {} hidden {} vs learner nodes {} hidden {}",
                num("nodes")?,
                num("hidden")?,
                self.nodes,
                self.config.hidden
            )));
        }
        let mut named = self.named();
        for (n, t) in &named {
            let want: Vec<usize> = t.size().iter().map(|&s| s as usize).collect();
            match d.tensors.get(&format!("net.{n}")) {
                Some((_, shape)) if *shape == want => {}
                _ => return Err(bad(format!("tensor net.{n} missing or misshapen"))),
            }
        }
        for (n, t) in &mut named {
            checkpoint::copy_into(path, &d, &format!("net.{n}"), t)?;
        }
        let adam_names: Vec<String> = self.adam.state().into_iter().map(|(n, _)| n).collect();
        for n in adam_names {
            let t = self.adam.state_mut(&n).expect("adam state");
            checkpoint::copy_into(path, &d, &format!("adam.{n}"), t)?;
        }
        self.adam.step = num("adam_step")? as i64;
        self.updates = num("updates")?;
        self.policy_version = num("policy_version")?.saturating_sub(1);
        Ok(CheckpointInfo {
            path: path.into(),
            bytes: std::fs::metadata(path).map(|m| m.len()).unwrap_or(0),
            policy_version: self.policy_version + 1,
        })
    }
}

/// Published actor weights: per layer ((w, shape), (b, shape)).
#[derive(Debug)]
struct ActorSnapshot {
    policy_version: u64,
    nodes: usize,
    #[allow(clippy::type_complexity)]
    layers: Vec<((Vec<f32>, Vec<usize>), (Vec<f32>, Vec<usize>))>,
}

struct Shared {
    config: MalcolmConfig,
    mode: AtomicU8,
    snapshot: RwLock<Option<Arc<ActorSnapshot>>>,
    publish_seq: AtomicU64,
    status: Mutex<LearnerStatus>,
}

struct Running {
    nodes: usize,
    host: Host<AcLearner, AcTransition>,
}

/// Original Malcolm's [`PolicyFactory`].
pub struct MalcolmFactory {
    shared: Arc<Shared>,
    running: Mutex<Option<Running>>,
}

impl MalcolmFactory {
    pub fn new(config: MalcolmConfig) -> Result<Self, PolicyError> {
        config.validate().map_err(PolicyError::InvalidState)?;
        if config.torch_threads > 0 {
            tch::set_num_threads(config.torch_threads as i32);
        }
        Ok(Self {
            shared: Arc::new(Shared {
                config,
                mode: AtomicU8::new(0),
                snapshot: RwLock::new(None),
                publish_seq: AtomicU64::new(0),
                status: Mutex::new(LearnerStatus::default()),
            }),
            running: Mutex::new(None),
        })
    }

    /// Starts the learner for a rack of `nodes` (first session or first load), or checks that
    /// the running one has that size.
    fn ensure_running(
        &self,
        nodes: usize,
    ) -> Result<(SyncSender<Vec<AcTransition>>, Caller<AcLearner>), PolicyError> {
        let mut guard = self.running.lock().expect("running lock");
        if let Some(r) = guard.as_ref() {
            if r.nodes != nodes {
                return Err(PolicyError::Unsupported(format!(
                    "malcolm learner is sized for {} nodes, session has {nodes}",
                    r.nodes
                )));
            }
            return Ok((r.host.data(), r.host.caller().clone()));
        }
        let (init_shared, turn_shared) = (self.shared.clone(), self.shared.clone());
        let host = Host::start(
            "malcolm-learner",
            "malcolm learner",
            self.shared.config.channel_capacity,
            move || {
                let mut learner = AcLearner::new(init_shared.config.clone(), nodes)?;
                publish(&init_shared, &mut learner);
                Ok(learner)
            },
            move |learner, data| learner_turn(learner, &turn_shared, data),
        )?;
        let handles = (host.data(), host.caller().clone());
        *guard = Some(Running { nodes, host });
        Ok(handles)
    }

    /// The running learner's caller, if a session or a load has started it.
    fn caller(&self) -> Option<Caller<AcLearner>> {
        let guard = self.running.lock().expect("running lock");
        guard.as_ref().map(|r| r.host.caller().clone())
    }
}

fn publish(shared: &Shared, learner: &mut AcLearner) {
    let snap = Arc::new(learner.actor_snapshot());
    *shared.snapshot.write().expect("snapshot lock") = Some(snap);
    shared.publish_seq.fetch_add(1, Ordering::Release);
    let mut st = shared.status.lock().expect("status lock");
    st.policy_version = learner.policy_version;
    st.updates = learner.updates;
    st.loss = learner.loss_ema;
    st.replay_len = learner.batch.len() as u64;
    st.replay_capacity = learner.config.batch as u64;
}

/// One turn of the learner thread: waits briefly for a batch, learns from it in train mode
/// and publishes after an update.
fn learner_turn(learner: &mut AcLearner, shared: &Shared, data: &Receiver<Vec<AcTransition>>) {
    match data.recv_timeout(LEARNER_POLL) {
        Ok(v) => {
            let train = mode_of(shared) == Mode::Train;
            let mut updated = false;
            for t in v {
                if train {
                    updated |= learner.push(t);
                }
            }
            if updated {
                publish(shared, learner);
            }
        }
        Err(RecvTimeoutError::Timeout) | Err(RecvTimeoutError::Disconnected) => {}
    }
}

fn mode_of(shared: &Shared) -> Mode {
    match shared.mode.load(Ordering::Relaxed) {
        0 => Mode::Train,
        1 => Mode::Eval,
        _ => Mode::Frozen,
    }
}

impl PolicyFactory for MalcolmFactory {
    fn name(&self) -> &str {
        "malcolm"
    }

    fn new_session(&self, hello: &Hello, seed: u64) -> Result<Box<dyn Policy>, PolicyError> {
        let fb = FeatureBuilder::from_hello(hello)?;
        let (data, _) = self.ensure_running(fb.n())?;
        Ok(Box::new(MalcolmPolicy {
            shared: self.shared.clone(),
            tx: data,
            fb,
            rng: ChaCha8Rng::seed_from_u64(seed),
            layers: Vec::new(),
            seen_seq: 0,
            version: 0,
            view: Default::default(),
            last: HashMap::new(),
            outbox: Vec::new(),
        }))
    }

    fn set_mode(&self, mode: Mode) {
        let v = match mode {
            Mode::Train => 0,
            Mode::Eval => 1,
            Mode::Frozen => 2,
        };
        self.shared.mode.store(v, Ordering::Relaxed);
        // Returns once the learner has seen the mode (no batch taken before the call is
        // learned from after it).
        if let Some(caller) = self.caller() {
            caller.barrier();
        }
    }

    fn mode(&self) -> Mode {
        mode_of(&self.shared)
    }

    fn status(&self) -> LearnerStatus {
        *self.shared.status.lock().expect("status lock")
    }

    fn save_checkpoint(&self, path: &Path) -> Result<CheckpointInfo, PolicyError> {
        let caller = self.caller().ok_or_else(|| {
            PolicyError::NoLearnedState("malcolm has no learner yet (no session)".into())
        })?;
        let path = path.to_path_buf();
        caller
            .call(CONTROL_TIMEOUT, move |learner| learner.save(&path))?
            .map_err(PolicyError::from)
    }

    fn load_checkpoint(&self, path: &Path) -> Result<CheckpointInfo, PolicyError> {
        let d = checkpoint::read(path)?;
        let nodes: usize = d
            .metadata
            .get("nodes")
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| {
                PolicyError::Checkpoint(format!("{} has no nodes metadata", path.display()))
            })?;
        let (_, caller) = self.ensure_running(nodes)?;
        let (path, shared) = (path.to_path_buf(), self.shared.clone());
        caller
            .call(CONTROL_TIMEOUT, move |learner| {
                let r = learner.load(&path);
                if r.is_ok() {
                    publish(&shared, learner);
                }
                r
            })?
            .map_err(PolicyError::from)
    }
}

/// One session's actors (all node agents of the rack).
struct MalcolmPolicy {
    shared: Arc<Shared>,
    tx: SyncSender<Vec<AcTransition>>,
    fb: FeatureBuilder,
    rng: ChaCha8Rng,
    /// Actor layers (w [A, in, out], b [A, 1, out]) from the last snapshot.
    layers: Vec<(Tensor, Tensor)>,
    seen_seq: u64,
    version: u64,
    view: crate::features::OriginView,
    /// Per origin: (state, action, migration cost) waiting for the next state.
    last: HashMap<usize, (Vec<f32>, usize, f64)>,
    outbox: Vec<AcTransition>,
}

impl MalcolmPolicy {
    fn refresh(&mut self) {
        let seq = self.shared.publish_seq.load(Ordering::Acquire);
        if seq == self.seen_seq {
            return;
        }
        let Some(snap) = self.shared.snapshot.read().expect("snapshot lock").clone() else {
            return;
        };
        if snap.nodes != self.fb.n() {
            return;
        }
        let dims = |s: &[usize]| s.iter().map(|&d| d as i64).collect::<Vec<_>>();
        self.layers = snap
            .layers
            .iter()
            .map(|((w, ws), (b, bs))| {
                (
                    Tensor::from_slice(w).view(dims(ws).as_slice()),
                    Tensor::from_slice(b).view(dims(bs).as_slice()),
                )
            })
            .collect();
        self.seen_seq = seq;
        self.version = snap.policy_version;
    }

    /// Action probabilities of agent `agent` for input `x`.
    fn probs(&self, agent: usize, x: &[f32]) -> Vec<f32> {
        tch::no_grad(|| {
            let mut h = Tensor::from_slice(x).view([1, -1]);
            let last = self.layers.len() - 1;
            for (l, (w, b)) in self.layers.iter().enumerate() {
                h = h.matmul(&w.get(agent as i64)) + b.get(agent as i64);
                if l != last {
                    h = h.relu();
                }
            }
            let p = h.softmax(-1, Kind::Float).contiguous();
            let n = p.numel();
            let mut out = vec![0f32; n];
            p.copy_data(&mut out, n);
            out
        })
    }
}

impl Policy for MalcolmPolicy {
    fn decide(&mut self, step: &Step, out: &mut Decision) -> Result<(), PolicyError> {
        out.clear();
        self.fb.check(step)?;
        let mode = mode_of(&self.shared);
        // Frozen keeps the weights it has, but a session that has none yet takes the ones the
        // learner published at start (its initial or loaded weights) instead of refusing.
        if mode != Mode::Frozen || self.layers.is_empty() {
            self.refresh();
        }
        if self.layers.is_empty() {
            return Err(PolicyError::Learner(
                "no actor weights published yet".into(),
            ));
        }
        let train = mode == Mode::Train;
        let scale = self.shared.config.reward_scale;
        let cost = self.shared.config.migration_cost;
        for task in &step.tasks {
            let origin = task.origin as usize;
            let (x, raw) = loads(&self.fb, step, origin, &mut self.view);
            if train {
                if let Some((s, a, c)) = self.last.remove(&origin) {
                    self.outbox.push(AcTransition {
                        agent: origin,
                        state: s,
                        action: a,
                        reward: (malcolm_variance(&raw, c) * scale) as f32,
                        next_state: x.clone(),
                    });
                }
            }
            let p = self.probs(origin, &x);
            let target = if train {
                // Sample from the policy (on-policy exploration).
                let u: f32 = self.rng.random();
                let mut acc = 0.0;
                let mut pick = p.len() - 1;
                for (i, &pi) in p.iter().enumerate() {
                    acc += pi;
                    if u < acc {
                        pick = i;
                        break;
                    }
                }
                pick
            } else {
                crate::strict::argmax(&p)
            };
            out.targets.push(target as u32);
            out.scores.push(p[target]);
            if train {
                self.last.insert(
                    origin,
                    (x, target, if target == origin { 0.0 } else { cost }),
                );
            }
        }
        if !self.outbox.is_empty() {
            let batch = std::mem::take(&mut self.outbox);
            // A full channel drops the batch: acting must not wait for learning.
            let _ = self.tx.try_send(batch);
        }
        Ok(())
    }

    fn end_episode(&mut self, _end: &EpisodeEnd) {
        // The last decision of each agent has no post-decision load vector: not learned from.
        self.last.clear();
    }

    fn version(&self) -> u64 {
        self.version
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consensus_averages_critics_but_not_actors() {
        let mut l = AcLearner::new(
            MalcolmConfig {
                hidden: 8,
                batch: 4,
                consensus_every: 1000,
                ..Default::default()
            },
            3,
        )
        .unwrap();
        assert!(
            l.critic_spread() > 0.0,
            "agents start with different critics"
        );
        let actor_before = checkpoint::tensor_f32(&l.actor.w[0]).0;
        l.consensus();
        assert!(l.critic_spread() < 1e-6);
        assert_eq!(checkpoint::tensor_f32(&l.actor.w[0]).0, actor_before);
        // Updates push the critics apart again (each agent learns on its own samples) ...
        for k in 0..8 {
            l.push(AcTransition {
                agent: k % 3,
                state: vec![0.1 * k as f32, 0.2, 0.3],
                action: k % 3,
                reward: -(k as f32),
                next_state: vec![0.2, 0.1, 0.0],
            });
        }
        assert_eq!(l.updates, 2);
        assert!(l.critic_spread() > 0.0);
        // ... and every K-th update averages them.
        l.config.consensus_every = 1;
        for k in 0..4 {
            l.push(AcTransition {
                agent: k % 3,
                state: vec![0.0, 0.2, 0.3],
                action: 0,
                reward: -1.0,
                next_state: vec![0.2, 0.1, 0.0],
            });
        }
        assert_eq!(l.updates, 3);
        assert!(l.critic_spread() < 1e-6);
    }
}
