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
