//! # Layout
//!
//! The agent server as a library. Environments (OMNeT++ runs, the embedded `rack-sim`, any
//! client written from the `.proto` files) connect over ZeroMQ and speak the bridge protocol
//! of `malcolm-proto`; an operator steers the server over gRPC. The `agent-server` binary is
//! a thin front end; the research lab (`malcolm-lab`) builds on this crate.
//!
//! - [`session`]: the one session contract: the Hello/Step/EpisodeEnd/Close state machine
//!   with input validation and the per-session policy (no sockets).
//! - [`bridge`]: the ZeroMQ ROUTER data path serving many sessions, workers, expiry.
//! - [`loopback`]: the same session contract in process, as rack-sim's env-side `Transport`.
//! - [`embedded`]: the same session answering bytes on the env's own thread (the agent
//!   OMNeT++ loads through `malcolm-agent-ffi` instead of connecting over ZeroMQ).
//! - [`shared`]: the active policy, counters and the decision-latency histogram.
//! - [`links`]: placements behind a PFC-paused link, counted from each Step's link state.
//! - [`control`]: the tonic control plane (status, mode, policy, checkpoints, metrics).
//! - [`trace`]: trace files, recorded by the bridge and read back by replay.
//! - [`server`]: `serve` = bridge + control plane + recorder, checkpoint on shutdown.
//! - [`registry`]: policy specs (`po2`, `power-of-d:d=3`, `malcolm-strict`) to factories,
//!   and the learners' configuration file.
//! - [`config`]: the CLI's optional TOML config file; [`synthetic`]: valid messages for
//!   benchmarks and tests.

pub mod bridge;
pub mod config;
pub mod control;
pub mod embedded;
pub mod links;
pub mod loopback;
mod rawmsg;
pub mod registry;
pub mod server;
pub mod session;
pub mod shared;
pub mod synthetic;
pub mod trace;
