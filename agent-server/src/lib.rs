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
//! - [`server`]: `serve` = bridge + control plane + recorder, checkpoint on shutdown.
//! - [`registry`]: policy specs (`po2`, `power-of-d:d=3`, `malcolm-strict`) to factories.
//! - [`train`], [`eval`], [`job`]: training over ZeroMQ against the embedded simulator,
//!   held-out evaluation, and the main job that ties them together.
//! - [`replay`]: re-deciding a recorded trace; agreement, latency, counterfactual workload.
//! - [`results`], [`plots`], [`stats`]: CSV, markdown with 95% intervals, PNG figures.
//! - [`bench`]: the bridge round-trip benchmark; [`config`]: the optional config file.
//! - [`experiment`]: the design's experiments (hetero, barrier ablation, heavy tail,
//!   staleness, load, micro-bursts, CVaR level) with CSV, markdown and figures.
//!
//! The binary (`src/main.rs`) is a thin clap front end over these.

pub mod bench;
pub mod bridge;
pub mod config;
pub mod control;
pub mod eval;
pub mod experiment;
pub mod job;
pub mod plots;
pub mod registry;
pub mod replay;
pub mod results;
pub mod server;
pub mod session;
pub mod shared;
pub mod stats;
pub mod trace;
pub mod train;
