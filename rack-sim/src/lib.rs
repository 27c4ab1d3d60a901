//! # Layout
//!
//! The embedded rack simulator: the design's "Phase 1" environment (ideal network, exact
//! queueing and scheduling). It speaks only the bridge protocol, like OMNeT++ does, so an
//! agent cannot tell which environment it serves.
//!
//! [`scenario`] describes an experiment (rack, workload, network, limits) and names the
//! standard ones; [`workload`] generates tasks (Poisson with service laws, micro-bursts, CSV
//! traces); [`node`] is one server as a pure state machine (ingress, [`edf`] queue, FCFS or
//! processor sharing, k cores of speed v); [`engine`] is the event queue; [`sim`] ties them
//! into [`RackSim`], which emits `Step`s and applies `Placement`s; [`metrics`] turns outcomes
//! into a [`Report`]; [`transport`] carries the messages to an agent over ZeroMQ (or any
//! other [`Transport`], such as the agent server's in-process loopback) and holds the env
//! loops.

pub mod edf;
pub mod engine;
pub mod error;
pub mod metrics;
pub mod node;
pub mod scenario;
pub mod sim;
pub mod transport;
pub mod workload;

pub use error::SimError;
pub use metrics::Report;
pub use node::{Discipline, DisciplineKind, NodeSpec, NodeTiming};
pub use scenario::{by_name, Scenario};
pub use sim::{RackSim, SimEvent};
pub use transport::{
    run_env_loop, run_episode, EnvLoopError, Transport, TransportError, ZmqEnvClient,
};
pub use workload::{DeadlineRule, Load, ServiceEstimate, ServiceLaw, TraceSource, TraceTask};
