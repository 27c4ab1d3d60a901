//! # Layout
//!
//! The libtorch learners behind the `malcolm_policies::Policy` interface.
//!
//! - [`strict`]: Malcolm-Strict (IQN + CVaR + barrier reward): [`StrictFactory`] owns a
//!   learner thread; sessions act on published weight snapshots.
//! - [`malcolm`]: the original Malcolm (actor-critic per node agent, load-variance reward,
//!   critic consensus averaging).
//! - [`iqn`]: the network, cosine embedding, quantile Huber loss, CVaR over taus.
//! - [`features`]: a task decision's state features from a bridge `Step`.
//! - [`replay`], [`adam`], [`checkpoint`]: replay buffer, checkpointable Adam, atomic
//!   safetensors checkpoints.
//! - [`config`]: serde configuration with every hyper-parameter; [`factory_by_name`] builds a
//!   factory from a policy name and an [`AgentsConfig`].
//!
//! # Using a learner
//!
//! `factory_by_name("malcolm-strict", &AgentsConfig::default())` gives an
//! `Arc<dyn PolicyFactory>`; each env session gets `new_session(&hello, seed)` and calls
//! `decide` per Step (which also records the Step's outcomes; `observe` with the same
//! outcomes is harmless), `end_episode` per EpisodeEnd. `set_mode(Train)` explores and
//! learns, `Eval` acts deterministically (CVaR over fixed midpoint taus), `Frozen` is Eval
//! without weight refreshes. `save_checkpoint` / `load_checkpoint` write and read one
//! safetensors file (weights, target network, Adam moments, acting weights, counters and
//! config in the header). `examples/train_hetero.rs` trains against the embedded simulator
//! and compares with the baselines; `benches/iqn.rs` prints latency and update rates.

pub mod adam;
pub mod checkpoint;
pub mod config;
pub mod features;
pub mod iqn;
pub mod malcolm;
pub mod replay;
pub mod strict;

pub use config::{AgentsConfig, IqnConfig, MalcolmConfig, RewardParams};
pub use malcolm::MalcolmFactory;
pub use strict::{Learner, StrictFactory};

use malcolm_policies::{PolicyError, PolicyFactory};
use std::sync::Arc;

/// Names `factory_by_name` accepts.
pub const POLICY_NAMES: &[&str] = &["malcolm-strict", "iqn", "malcolm"];

/// The learner factory for `name`: "malcolm-strict" (alias "iqn") or "malcolm".
/// Other names are `PolicyError::UnknownPolicy` (the baselines live in `malcolm_policies`).
pub fn factory_by_name(
    name: &str,
    config: &AgentsConfig,
) -> Result<Arc<dyn PolicyFactory>, PolicyError> {
    match name {
        "malcolm-strict" | "iqn" => Ok(Arc::new(StrictFactory::new(config.iqn.clone())?)),
        "malcolm" => Ok(Arc::new(MalcolmFactory::new(config.malcolm.clone())?)),

        other => Err(PolicyError::UnknownPolicy(other.to_string())),
    }
}
