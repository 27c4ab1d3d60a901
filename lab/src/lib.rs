//! # Layout
//!
//! The research lab on top of the agent server (`malcolm-serve`): everything that trains,
//! evaluates, measures and reports, against the embedded rack simulator and OMNeT++.
//!
//! - [`train`], [`eval`], [`job`]: training over ZeroMQ against the embedded simulator,
//!   held-out evaluation, and the main job that ties them together.
//! - [`omnetpp`]: training and evaluating on OMNeT++ Cmdenv runs (`agent-server omnetpp`).
//! - [`experiment`]: the design's experiments, one module per experiment, with CSV, markdown
//!   and figures.
//! - [`results`], [`plots`], [`stats`]: CSV, markdown with 95% intervals, PNG figures.
//! - [`bench`]: the bridge round-trip benchmark against the raw transport floor.
//! - [`replay`]: re-deciding a recorded trace; agreement, latency, counterfactual workload.
//! - [`env_process`]: the embedded simulator as an environment process against a server.
//! - [`spec`]: scenario spec strings; [`cli`]: the arguments and entry points of the
//!   `agent-server` subcommands that live here.

pub mod bench;
pub mod cli;
pub mod env_process;
pub mod eval;
pub mod experiment;
pub mod job;
pub mod omnetpp;
pub mod plots;
pub mod replay;
pub mod results;
pub mod spec;
pub mod stats;
pub mod train;
