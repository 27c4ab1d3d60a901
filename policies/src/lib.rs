//! # Layout
//!
//! Everything a placement policy needs that does not need libtorch. [`Policy`] is the one
//! interface every policy implements (a Step's state in, one target node per pending task
//! out, plus learning hooks); [`PolicyFactory`] makes one per env session and owns whatever
//! the sessions share (a learner, a mode). The baselines live here, the libtorch agents
//! (IQN Malcolm-Strict, original Malcolm) in the `malcolm-agents` crate. [`view`] is what an
//! origin knows of the rack (its stale GST and a wait estimate built from it), shared by
//! slack-greedy and the learner's features; [`reward`] holds the reward functions.

pub mod baselines;
pub mod reward;
pub mod view;

use malcolm_proto::bridge::{EpisodeEnd, Hello, Step, TaskOutcome};
use std::path::Path;

/// What a policy returns for one Step: `targets[i]` for `step.tasks[i]`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Decision {
    pub targets: Vec<u32>,
    /// Optional score of each chosen target (CVaR for Malcolm-Strict); empty if none.
    pub scores: Vec<f32>,
    /// Optional extra delay per task before dispatch (probe cost); empty if none.
    pub hold_ns: Vec<u64>,
}

impl Decision {
    pub fn clear(&mut self) {
        self.targets.clear();
        self.scores.clear();
        self.hold_ns.clear();
    }
}

/// Train explores and learns; eval acts greedily without learning; frozen is eval whose
/// weights are never republished (for replay and regression). The one mode type: the wire's
/// `malcolm.bridge.v1.Mode` (Welcome, control plane), the CLI's names and the learners'
/// atomics all convert through here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    #[default]
    Train,
    Eval,
    Frozen,
}

impl Mode {
    /// Every mode, in wire order.
    pub const ALL: [Mode; 3] = [Mode::Train, Mode::Eval, Mode::Frozen];

    /// The mode's name on the command line, in logs and in `Welcome.mode_name`.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Train => "train",
            Mode::Eval => "eval",
            Mode::Frozen => "frozen",
        }
    }

    /// The wire enum.
    pub fn to_pb(self) -> malcolm_proto::bridge::Mode {
        use malcolm_proto::bridge::Mode as Pb;
        match self {
            Mode::Train => Pb::Train,
            Mode::Eval => Pb::Eval,
            Mode::Frozen => Pb::Frozen,
        }
    }

    /// From the wire enum; `None` for MODE_UNSPECIFIED.
    pub fn from_pb(m: malcolm_proto::bridge::Mode) -> Option<Self> {
        use malcolm_proto::bridge::Mode as Pb;
        match m {
            Pb::Train => Some(Mode::Train),
            Pb::Eval => Some(Mode::Eval),
            Pb::Frozen => Some(Mode::Frozen),
            Pb::Unspecified => None,
        }
    }

    /// A compact code for an atomic (the learners keep the mode in an `AtomicU8`).
    pub fn to_u8(self) -> u8 {
        self.to_pb() as u8
    }

    /// The inverse of [`Mode::to_u8`]; an unknown code reads as frozen (the safest: no
    /// exploration, no learning, no new weights).
    pub fn from_u8(v: u8) -> Self {
        malcolm_proto::bridge::Mode::try_from(v as i32)
            .ok()
            .and_then(Self::from_pb)
            .unwrap_or(Mode::Frozen)
    }
}

impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Mode {
    type Err = PolicyError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|m| m.name() == s)
            .ok_or_else(|| {
                PolicyError::InvalidState(format!("mode {s:?}: one of train, eval, frozen"))
            })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("invalid state: {0}")]
    InvalidState(String),
    #[error("unsupported rack: {0}")]
    Unsupported(String),
    #[error("unknown policy {0:?}")]
    UnknownPolicy(String),
    #[error("checkpoint: {0}")]
    Checkpoint(String),
    /// The policy has nothing to save or load (fixed rules, or a learner not started yet):
    /// not a failure of a save.
    #[error("no learned state: {0}")]
    NoLearnedState(String),
    #[error("learner unavailable: {0}")]
    Learner(String),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// A placement policy bound to one env session.
pub trait Policy: Send {
    /// Decides a target for every pending task of `step`, writing into `out` (cleared first).
    fn decide(&mut self, step: &Step, out: &mut Decision) -> Result<(), PolicyError>;
    /// Outcomes reported by the env (with a Step or an EpisodeEnd). Learning hook.
    fn observe(&mut self, _outcomes: &[TaskOutcome]) {}
    /// The env ended an episode (terminated or truncated). Learning hook.
    fn end_episode(&mut self, _end: &EpisodeEnd) {}
    /// Version of the weights the last decision used (0 for fixed rules).
    fn version(&self) -> u64 {
        0
    }
}

/// Learner figures for the control plane, the progress line and the CSVs (zeros for fixed
/// rules).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct LearnerStatus {
    pub loss: f64,
    pub updates: u64,
    pub replay_len: u64,
    pub replay_capacity: u64,
    pub policy_version: u64,
    /// Transitions the learner has put into its replay.
    pub transitions_inserted: u64,
    /// Transitions lost on the way to the learner (a full channel); 0 when the replay-ratio
    /// limiter works.
    pub transitions_dropped: u64,
    /// Configured replay ratio, minibatch samples per inserted transition (0: not enforced).
    pub target_samples_per_insert: f64,
    /// Achieved replay ratio: samples drawn / transitions inserted since learning started.
    pub samples_per_insert: f64,
    /// Seconds sessions spent waiting for the learner to keep the ratio (summed over sessions).
    pub env_wait_s: f64,
}

/// Result of a checkpoint save or load.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckpointInfo {
    pub path: std::path::PathBuf,
    pub bytes: u64,
    pub policy_version: u64,
}

/// Makes policies for sessions and holds what they share. Shared across server threads.
pub trait PolicyFactory: Send + Sync {
    fn name(&self) -> &str;
    /// A policy for a new session of the rack described by `hello`. `seed` makes any random
    /// choices of the session reproducible.
    fn new_session(&self, hello: &Hello, seed: u64) -> Result<Box<dyn Policy>, PolicyError>;
    fn set_mode(&self, _mode: Mode) {}
    fn mode(&self) -> Mode {
        Mode::Eval
    }
    /// True when a session's decisions are cheap and never wait for anything (fixed rules:
    /// work proportional to tasks x nodes): a server may then decide small Steps on the
    /// thread that received them, saving two thread hand-offs per Step. Policies that may
    /// block (a learner enforcing its replay ratio) or that take long must say false, the
    /// default, so that one env never stalls the others.
    fn decides_inline(&self) -> bool {
        false
    }
    fn status(&self) -> LearnerStatus {
        LearnerStatus::default()
    }
    fn save_checkpoint(&self, _path: &Path) -> Result<CheckpointInfo, PolicyError> {
        Err(PolicyError::NoLearnedState(format!(
            "policy {} has no learned state to save",
            self.name()
        )))
    }
    fn load_checkpoint(&self, _path: &Path) -> Result<CheckpointInfo, PolicyError> {
        Err(PolicyError::NoLearnedState(format!(
            "policy {} has no learned state to load",
            self.name()
        )))
    }
    /// A factory whose sessions act greedily (eval) with the weights acting right now, frozen,
    /// independent of later training; its `save_checkpoint` writes the learner's checkpoint
    /// with these weights as the acting ones. For validating while training; `None` for
    /// policies without learned state.
    fn frozen_copy(&self) -> Option<std::sync::Arc<dyn PolicyFactory>> {
        None
    }
}
