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
/// weights are never republished (for replay and regression).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    #[default]
    Train,
    Eval,
    Frozen,
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

/// Learner figures for the control plane (zeros for fixed rules).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct LearnerStatus {
    pub loss: f64,
    pub updates: u64,
    pub replay_len: u64,
    pub replay_capacity: u64,
    pub policy_version: u64,
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
    fn status(&self) -> LearnerStatus {
        LearnerStatus::default()
    }
    fn save_checkpoint(&self, _path: &Path) -> Result<CheckpointInfo, PolicyError> {
        Err(PolicyError::Checkpoint(format!(
            "policy {} has no learned state to save",
            self.name()
        )))
    }
    fn load_checkpoint(&self, _path: &Path) -> Result<CheckpointInfo, PolicyError> {
        Err(PolicyError::Checkpoint(format!(
            "policy {} has no learned state to load",
            self.name()
        )))
    }
}
