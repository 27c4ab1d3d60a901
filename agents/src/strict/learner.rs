//! Malcolm-Strict's training side: [`Learner`] (online and target IQN networks, Adam,
//! replay) and the [`Snapshot`] of acting weights it publishes; the thread that runs it is in
//! `super` (on the crate's `host`).

use crate::actor::Actor;
use crate::adam::FlatAdam;
use crate::checkpoint::{self, CheckpointError};
use crate::config::IqnConfig;
use crate::features::{CANDIDATE_FEATURES, FEATURE_LAYOUT_VERSION, SHARED_FEATURES};
use crate::iqn::{midpoint_taus, quantile_huber_grad, IqnArch, IqnNet};
use crate::replay::{Replay, Transition};
use malcolm_policies::{CheckpointInfo, PolicyError};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use tch::{Kind, Tensor};

/// Format tag in the checkpoint metadata; bumped when the tensor layout changes.
pub const CHECKPOINT_FORMAT: &str = "malcolm-strict-iqn/2";

/// Weight of the newest loss in the reported moving average (per update).
const LOSS_EMA: f64 = 0.02;
/// The loss value (only reported, never needed for the gradient) is computed every this many
/// updates.
const LOSS_EVERY: u64 = 10;

/// Published acting weights.
#[derive(Debug)]
pub struct Snapshot {
    pub policy_version: u64,
    pub actor: Actor,
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
        checkpoint::write(path, &tensors, meta, acting.policy_version)
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
