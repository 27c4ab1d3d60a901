//! # Layout
//!
//! The libtorch learners behind the `malcolm_policies::Policy` interface.
//!
//! - [`strict`]: Malcolm-Strict (IQN + CVaR + barrier reward): [`StrictFactory`] owns a
//!   learner thread (libtorch); sessions act in plain Rust ([`actor`]) on published weight
//!   snapshots; a replay-ratio limiter makes training sessions wait for the learner.
//! - [`malcolm`]: the original Malcolm (actor-critic per node agent, load-variance reward,
//!   critic consensus averaging).
//! - `host`: the learner thread both factories run their learner on (ready handshake, bounded
//!   data channel, calls with a reply and a bounded wait, shutdown and join on drop).
//! - [`iqn`]: the network (one flat parameter tensor), cosine embedding, quantile Huber
//!   loss, CVaR over taus; [`actor`]: the same network's forward pass in plain Rust.
//! - [`features`]: a task decision's state features from a bridge `Step`.
//! - [`replay`], [`adam`], [`checkpoint`]: replay buffer over flat arrays, checkpointable
//!   Adam (per tensor and flat), atomic safetensors checkpoints.
//! - [`config`]: serde configuration with every hyper-parameter; [`factory_by_name`] builds a
//!   factory from a policy name and an [`AgentsConfig`].
//!
//! # Using a learner
//!
//! `factory_by_name("malcolm-strict", &AgentsConfig::default())` gives an
//! `Arc<dyn PolicyFactory>`; each env session gets `new_session(&hello, seed)` and calls
//! `observe` with a Step's outcomes, then `decide` per Step, and `end_episode` per
//! EpisodeEnd (outcomes reach the learner once, through `observe`). `set_mode(Train)` explores and
//! learns, `Eval` acts deterministically (CVaR over fixed midpoint taus), `Frozen` is Eval
//! without weight refreshes. `save_checkpoint` / `load_checkpoint` write and read one
//! safetensors file (weights, target network, Adam moments, acting weights, counters and
//! config in the header). The main job (`agent-server train`) trains against the embedded
//! simulator and compares with the baselines; `benches/iqn.rs` prints latency and update
//! rates next to a PyTorch reference.

pub mod actor;
pub mod adam;
pub mod checkpoint;
pub mod config;
pub mod features;
mod host;
pub mod iqn;
pub mod malcolm;
pub mod replay;
pub mod strict;

pub use config::{AgentsConfig, IqnConfig, MalcolmConfig, RewardParams};
pub use malcolm::MalcolmFactory;
pub use strict::{Learner, StrictFactory};

use malcolm_policies::{PolicyError, PolicyFactory};
use std::sync::Arc;

/// glibc returns freed blocks above its mmap threshold to the kernel at once, so every
/// libtorch temporary of a learner update (hundreds of KB each) is a fresh mmap and a storm of
/// page faults. Keeping such blocks in the heap (and not trimming it) took a visible share of
/// the update time off; called once by the learners, process-wide, idempotent.
pub fn tune_allocator() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // SAFETY: mallopt only changes allocator parameters; called before the learner
        // allocates, values within glibc's documented ranges.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, 256 << 20);
            libc::mallopt(libc::M_TRIM_THRESHOLD, 512 << 20);
        }
    });
}

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
