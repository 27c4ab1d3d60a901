//! Serde configuration of the learners: every hyper-parameter, with the design's defaults (docs/design.md).

use malcolm_policies::reward::{self, RewardConfig, RewardKind};
use serde::{Deserialize, Serialize};

/// Hidden width of every MLP (Malcolm-Strict and original Malcolm use the same size, design
/// 6.3.3). 32 keeps one Step of 16 tasks x 64 candidates within the inference budget on one
/// core (`cargo bench -p malcolm-agents`).
pub const DEFAULT_HIDDEN: usize = 32;
/// Width of the hidden ReLU layer after the Hadamard product (the reference IQN shape; 0 gives
/// the linear head of the ablation). Its cost per candidate is K x H x this.
pub const DEFAULT_HEAD_HIDDEN: usize = 16;
/// Number of cosine basis functions cos(pi*i*tau), i = 1..64 (design).
pub const DEFAULT_COS_EMBED: usize = 64;
/// Quantiles sampled for the online network in the loss (N, design).
pub const DEFAULT_N_TAU: usize = 32;
/// Quantiles sampled for the target network in the loss (N', design).
pub const DEFAULT_N_TAU_TARGET: usize = 32;
/// Quantiles that estimate CVaR when acting and in the target's action choice (K). The design
/// says 32; with the hidden head every tau costs a H x H2 product per candidate, and 8 midpoint
/// taus keep a 16-task x 64-node Step within budget (see docs/results.md, "Learner").
pub const DEFAULT_K_TAU: usize = 8;
/// Adam learning rate (design).
pub const DEFAULT_LR: f64 = 1e-4;
/// Minibatch size (design).
pub const DEFAULT_BATCH: usize = 256;
/// Discount per decision of the same origin. 0: each decision is a contextual bandit whose
/// return is its own task's outcome. Measured on validation seeds against 0.9 and 0.99 (the
/// design's value), 8 minutes each on hetero: best validation miss rate 9.6% at 0, 21.1% at
/// 0.9, 25.3% at 0.99 (docs/results.md, "Learner"): a placement barely moves the next hundred
/// outcomes of its origin, whose noise then swamps its own.
pub const DEFAULT_DISCOUNT: f64 = 0.0;
/// CVaR level alpha: the agent maximises the mean of the lowest 10% of returns.
pub const DEFAULT_CVAR_ALPHA: f64 = 0.10;
/// Huber threshold kappa of the quantile loss, in units of the scaled return. Chosen with
/// [`DEFAULT_REWARD_SCALE`]: TD errors between returns that differ by one on-time task (~1e-3)
/// already fall in the linear (quantile) part, so the loss estimates quantiles, not expectiles
/// (tests/iqn_known_answers.rs checks quantiles and CVaR at these settings).
pub const DEFAULT_KAPPA: f64 = 1e-3;
/// Replay capacity in transitions: several minutes of data at the default replay ratio. A
/// transition of a 64-node rack is about 1.4 KB (16 next candidates), of `hetero` about 0.6 KB.
pub const DEFAULT_REPLAY_CAPACITY: usize = 262_144;
/// Transitions in replay before the first update (enough for a few distinct minibatches).
pub const DEFAULT_LEARN_START: usize = 4_096;
/// Replay ratio: minibatch samples drawn per transition inserted (DeepMind Reverb's
/// SampleToInsertRatio). Enforced: the training envs wait when the learner falls behind.
pub const DEFAULT_SAMPLES_PER_INSERT: f64 = 32.0;
/// How many updates the learner may owe before the sessions (and so the envs) wait for it.
pub const DEFAULT_MAX_LAG_UPDATES: u64 = 8;
/// Candidates a task's decision scores: every node on racks of up to this many; on larger
/// racks a shortlist of `shortlist` nodes. Scoring every node of a larger rack herds: many
/// origins acting on equally stale views pick the same nodes (validation seeds, 3 checkpoints
/// trained on 5-node hetero: homogeneous-16 all scored 3.7-13.5% missed, shortlist 3.1-3.2%;
/// 15-node hetero unchanged, 14.8-17.2% either way).
pub const DEFAULT_MAX_CANDIDATES: usize = 8;
/// Shortlist on racks above `max_candidates`: the origin, 2 random nodes and the best other by
/// the wait model's estimated slack, a power-of-d sample plus one aimed pick. A longer aimed
/// list herds (40-node hetero, validation seeds: 16 candidates 32-52% missed, 4 31-33%); it
/// also keeps a 16-task Step on a 64-node rack cheap.
pub const DEFAULT_SHORTLIST: usize = 4;
/// A shortlist holds the origin and at least this many others (2 random, 1 by slack).
pub const SHORTLIST_MIN_OTHERS: usize = 3;
/// Next-state candidates kept per transition for the target's max (the acting network's best
/// ones; every candidate on racks of up to this many nodes).
pub const DEFAULT_NEXT_CANDIDATES: usize = 16;
/// Hard copy of the online network into the target network every this many updates.
pub const DEFAULT_TARGET_UPDATE_EVERY: u64 = 500;
/// The acting weights are republished every this many updates (an Arc swap; sessions pick it
/// up at their next Step).
pub const DEFAULT_PUBLISH_EVERY: u64 = 25;
/// Exploration: epsilon starts here (random placements on a heterogeneous rack are costly, so
/// not 1.0) ...
pub const DEFAULT_EPS_START: f64 = 0.3;
/// ... and ends here ...
pub const DEFAULT_EPS_END: f64 = 0.01;
/// ... after this many decisions over all sessions.
pub const DEFAULT_EPS_DECAY_DECISIONS: u64 = 100_000;
/// Rewards are multiplied by this before learning: the barrier spans [-1000, ~1.5], so a miss
/// is about -1 and an on-time task about +0.001.
pub const DEFAULT_REWARD_SCALE: f64 = 0.001;
/// Global gradient-norm clip (design 4.3 asks for gradient clipping).
pub const DEFAULT_GRAD_CLIP: f64 = 10.0;
/// Bounded channel from sessions to the learner, in messages (each carries a Step's batch of
/// transitions). The replay-ratio limiter keeps it far from full; a full channel would drop
/// (counted and reported) rather than block a decision.
pub const DEFAULT_CHANNEL_CAPACITY: usize = 4_096;
/// libtorch intra-op threads (process-wide): 1, because on a small machine the learner and the
/// sessions each run on their own thread and OpenMP spinning on shared cores is slower.
pub const DEFAULT_TORCH_THREADS: usize = 1;
/// Original Malcolm: critic parameters are averaged across node agents every K updates.
pub const DEFAULT_CONSENSUS_EVERY: u64 = 10;
/// Original Malcolm: entropy bonus of the actor (keeps the softmax from collapsing early).
pub const DEFAULT_ENTROPY_COEF: f64 = 0.01;
/// Original Malcolm: on-policy batch of transitions per actor-critic update.
pub const DEFAULT_AC_BATCH: usize = 256;

/// Serde mirror of [`RewardConfig`] (the policies crate stays serde-free).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RewardParams {
    /// "barrier", "linear" or "step".
    pub kind: RewardKindName,
    pub r_goodput: f64,
    pub lambda: f64,
    pub eta: f64,
    pub beta: f64,
    pub gamma: f64,
    pub r_min: f64,
    pub linear_scale_per_us: f64,
    pub step_hit: f64,
    pub step_miss: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RewardKindName {
    #[default]
    Barrier,
    Linear,
    Step,
}

impl Default for RewardParams {
    fn default() -> Self {
        Self::from(RewardConfig::default())
    }
}

impl From<RewardConfig> for RewardParams {
    fn from(c: RewardConfig) -> Self {
        Self {
            kind: match c.kind {
                RewardKind::Barrier => RewardKindName::Barrier,
                RewardKind::Linear => RewardKindName::Linear,
                RewardKind::Step => RewardKindName::Step,
            },
            r_goodput: c.r_goodput,
            lambda: c.lambda,
            eta: c.eta,
            beta: c.beta,
            gamma: c.gamma,
            r_min: c.r_min,
            linear_scale_per_us: c.linear_scale_per_us,
            step_hit: c.step_hit,
            step_miss: c.step_miss,
        }
    }
}

impl From<RewardParams> for RewardConfig {
    fn from(p: RewardParams) -> Self {
        Self {
            kind: match p.kind {
                RewardKindName::Barrier => RewardKind::Barrier,
                RewardKindName::Linear => RewardKind::Linear,
                RewardKindName::Step => RewardKind::Step,
            },
            r_goodput: p.r_goodput,
            lambda: p.lambda,
            eta: p.eta,
            beta: p.beta,
            gamma: p.gamma,
            r_min: p.r_min,
            linear_scale_per_us: p.linear_scale_per_us,
            step_hit: p.step_hit,
            step_miss: p.step_miss,
        }
    }
}

/// Malcolm-Strict (IQN + CVaR + barrier reward).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IqnConfig {
    pub hidden: usize,
    pub head_hidden: usize,
    pub cos_embed: usize,
    pub n_tau: usize,
    pub n_tau_target: usize,
    pub k_tau: usize,
    pub lr: f64,
    pub batch: usize,
    pub discount: f64,
    pub cvar_alpha: f64,
    pub kappa: f64,
    pub replay_capacity: usize,
    pub learn_start: usize,
    pub samples_per_insert: f64,
    pub max_lag_updates: u64,
    pub max_candidates: usize,
    pub shortlist: usize,
    pub next_candidates: usize,
    pub target_update_every: u64,
    pub publish_every: u64,
    pub eps_start: f64,
    pub eps_end: f64,
    pub eps_decay_decisions: u64,
    pub reward_scale: f64,
    pub grad_clip: f64,
    pub channel_capacity: usize,
    pub reward: RewardParams,
    /// Seed of the learner's sampling (weights init, minibatches, taus).
    pub seed: u64,
    /// libtorch intra-op threads, set process-wide when the factory starts; 0 leaves
    /// libtorch's default.
    pub torch_threads: usize,
    /// Read the Step's link state (false: the ablation without link features: the path
    /// features read as an idle, unpaused path and the slack features see no path queue).
    /// Recorded in the checkpoint's config; a learner refuses a checkpoint trained otherwise.
    pub link_features: bool,
}

impl Default for IqnConfig {
    fn default() -> Self {
        Self {
            hidden: DEFAULT_HIDDEN,
            head_hidden: DEFAULT_HEAD_HIDDEN,
            cos_embed: DEFAULT_COS_EMBED,
            n_tau: DEFAULT_N_TAU,
            n_tau_target: DEFAULT_N_TAU_TARGET,
            k_tau: DEFAULT_K_TAU,
            lr: DEFAULT_LR,
            batch: DEFAULT_BATCH,
            discount: DEFAULT_DISCOUNT,
            cvar_alpha: DEFAULT_CVAR_ALPHA,
            kappa: DEFAULT_KAPPA,
            replay_capacity: DEFAULT_REPLAY_CAPACITY,
            learn_start: DEFAULT_LEARN_START,
            samples_per_insert: DEFAULT_SAMPLES_PER_INSERT,
            max_lag_updates: DEFAULT_MAX_LAG_UPDATES,
            max_candidates: DEFAULT_MAX_CANDIDATES,
            shortlist: DEFAULT_SHORTLIST,
            next_candidates: DEFAULT_NEXT_CANDIDATES,
            target_update_every: DEFAULT_TARGET_UPDATE_EVERY,
            publish_every: DEFAULT_PUBLISH_EVERY,
            eps_start: DEFAULT_EPS_START,
            eps_end: DEFAULT_EPS_END,
            eps_decay_decisions: DEFAULT_EPS_DECAY_DECISIONS,
            reward_scale: DEFAULT_REWARD_SCALE,
            grad_clip: DEFAULT_GRAD_CLIP,
            channel_capacity: DEFAULT_CHANNEL_CAPACITY,
            reward: RewardParams::default(),
            seed: 0,
            torch_threads: DEFAULT_TORCH_THREADS,
            link_features: true,
        }
    }
}

impl IqnConfig {
    /// Candidates one task's decision scores on a rack of `nodes` nodes.
    pub fn candidates(&self, nodes: usize) -> usize {
        if nodes <= self.max_candidates {
            nodes
        } else {
            self.shortlist
        }
    }

    /// Rejects values the learner cannot run with.
    pub fn validate(&self) -> Result<(), String> {
        let positive = [
            ("hidden", self.hidden),
            ("cos_embed", self.cos_embed),
            ("n_tau", self.n_tau),
            ("n_tau_target", self.n_tau_target),
            ("k_tau", self.k_tau),
            ("batch", self.batch),
            ("replay_capacity", self.replay_capacity),
            ("next_candidates", self.next_candidates),
            ("channel_capacity", self.channel_capacity),
        ];
        for (name, v) in positive {
            if v == 0 {
                return Err(format!("{name} must be > 0"));
            }
        }
        if !(self.cvar_alpha > 0.0 && self.cvar_alpha <= 1.0) {
            return Err(format!("cvar_alpha {} not in (0, 1]", self.cvar_alpha));
        }
        if !(0.0..=1.0).contains(&self.discount) {
            return Err(format!("discount {} not in [0, 1]", self.discount));
        }
        if self.shortlist < 1 + SHORTLIST_MIN_OTHERS || self.shortlist > self.max_candidates {
            return Err(format!(
                "shortlist {} must be between {} and max_candidates ({})",
                self.shortlist,
                1 + SHORTLIST_MIN_OTHERS,
                self.max_candidates
            ));
        }
        if !(self.samples_per_insert.is_finite() && self.samples_per_insert > 0.0) {
            return Err(format!(
                "samples_per_insert {} must be > 0",
                self.samples_per_insert
            ));
        }
        if [self.lr, self.kappa, self.reward_scale]
            .iter()
            .any(|v| v.partial_cmp(&0.0) != Some(std::cmp::Ordering::Greater))
        {
            return Err("lr, kappa and reward_scale must be > 0".into());
        }
        if self.target_update_every == 0 || self.publish_every == 0 {
            return Err("target_update_every and publish_every must be > 0".into());
        }
        Ok(())
    }
}

/// Original Malcolm (actor-critic on the load vector, critic consensus).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MalcolmConfig {
    pub hidden: usize,
    pub lr: f64,
    pub discount: f64,
    pub batch: usize,
    pub consensus_every: u64,
    pub entropy_coef: f64,
    pub migration_cost: f64,
    pub reward_scale: f64,
    pub grad_clip: f64,
    pub channel_capacity: usize,
    pub seed: u64,
    /// As [`IqnConfig::torch_threads`].
    pub torch_threads: usize,
}

impl Default for MalcolmConfig {
    fn default() -> Self {
        Self {
            hidden: DEFAULT_HIDDEN,
            lr: DEFAULT_LR,
            discount: DEFAULT_DISCOUNT,
            batch: DEFAULT_AC_BATCH,
            consensus_every: DEFAULT_CONSENSUS_EVERY,
            entropy_coef: DEFAULT_ENTROPY_COEF,
            migration_cost: reward::DEFAULT_MIGRATION_COST,
            // Loads are tasks per core; a rack's variance is O(10..1000).
            reward_scale: 0.01,
            grad_clip: DEFAULT_GRAD_CLIP,
            channel_capacity: DEFAULT_CHANNEL_CAPACITY,
            seed: 0,
            torch_threads: DEFAULT_TORCH_THREADS,
        }
    }
}

impl MalcolmConfig {
    pub fn validate(&self) -> Result<(), String> {
        if self.hidden == 0 || self.batch == 0 || self.channel_capacity == 0 {
            return Err("hidden, batch and channel_capacity must be > 0".into());
        }
        if self.consensus_every == 0 {
            return Err("consensus_every must be > 0".into());
        }
        if !(0.0..=1.0).contains(&self.discount)
            || self.lr.partial_cmp(&0.0) != Some(std::cmp::Ordering::Greater)
        {
            return Err("discount must be in [0, 1] and lr > 0".into());
        }
        Ok(())
    }
}

/// The configuration `factory_by_name` accepts: one section per learner, both optional.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AgentsConfig {
    pub iqn: IqnConfig,
    pub malcolm: MalcolmConfig,
}
