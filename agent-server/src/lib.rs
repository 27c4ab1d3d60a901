//! # Layout
//!
//! The agent server hosts placement policies for simulated racks. Environments (OMNeT++ runs
//! or the embedded `rack-sim`) connect over ZeroMQ and speak the bridge protocol of
//! `malcolm-proto`; an operator steers the server over gRPC.
//!
//! - [`bridge`]: the ZeroMQ ROUTER data path, one session per env, workers, expiry.
//! - [`session`]: the per-env lockstep state machine and input validation (no sockets).
//! - [`shared`]: the active policy, the registry of factories, counters, latency histogram.
//! - [`control`]: the tonic control plane (status, mode, policy, checkpoints, metrics).
//! - [`trace`]: trace files, recorded by the bridge and read back by replay.
//!
//! The binary (`src/main.rs`) is a thin clap front end over these.

pub mod bridge;
pub mod control;
pub mod session;
pub mod shared;
pub mod trace;
