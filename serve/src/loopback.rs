//! The session contract in process: rack-sim's env-side [`Transport`] implemented by a
//! [`Session`], with no sockets and no encoding. Every in-process run (evaluation,
//! validation while training, replay's counterfactual, the tests) goes through it, so an
//! in-process policy sees exactly what it would see over ZeroMQ, validated the same way.

use crate::session::{After, OnePolicy, Session, SessionConfig};
use crate::shared::Shared;
use malcolm_policies::{Policy, PolicyFactory};
use malcolm_proto::bridge::{envelope::Body, Step};
use malcolm_proto::codec::SUPPORTED_VERSIONS;
use malcolm_proto::Envelope;
use rack_sim::{EnvLoopError, RackSim, Report, Transport, TransportError};
use std::sync::Arc;

/// A [`Session`] behind rack-sim's [`Transport`].
pub struct Loopback {
    session: Session,
    last_step: Option<Step>,
    closed: bool,
}

impl Loopback {
    /// Sessions of `factory`, their policy seeded with `seed` (not the Hello's).
    pub fn new(factory: Arc<dyn PolicyFactory>, seed: u64) -> Self {
        Self::with_config(
            Shared::fixed(factory),
            SessionConfig {
                announce: false,
                seed: Some(seed),
                ..SessionConfig::default()
            },
        )
    }

    /// One session of a ready-made policy.
    pub fn with_policy(policy: Box<dyn Policy>, name: &str) -> Self {
        Self::with_config(
            Shared::fixed(Arc::new(OnePolicy::new(policy, name))),
            SessionConfig {
                announce: false,
                ..SessionConfig::default()
            },
        )
    }

    /// A session of `shared`'s active policy (its counters count this session).
    pub fn with_config(shared: Arc<Shared>, config: SessionConfig) -> Self {
        Self {
            session: Session::new(1, shared, config),
            last_step: None,
            closed: false,
        }
    }
}

impl Transport for Loopback {
    fn request(&mut self, env: Envelope) -> Result<Envelope, TransportError> {
        if self.closed {
            // As the bridge does after Close: a Hello would need a new connection here.
            self.session = self.session.successor();
            self.closed = false;
        }
        let mut env = env;
        let (reply, after) = self.session.handle(&mut env);
        self.closed = after == After::Closed;
        if let Some(Body::Step(step)) = env.body {
            self.last_step = Some(step);
        }
        Ok(reply)
    }

    fn reclaim_step(&mut self) -> Option<Step> {
        self.last_step.take()
    }

    fn versions(&self) -> &[u32] {
        SUPPORTED_VERSIONS
    }
}

/// Runs `episodes` episodes of `sim` with `policy` in process and returns the report.
pub fn run_policy(
    sim: &mut RackSim,
    policy: Box<dyn Policy>,
    episodes: u64,
) -> Result<Report, EnvLoopError> {
    let mut t = Loopback::with_policy(policy, "in-process");
    rack_sim::run_env_loop(sim, &mut t, "rack-sim-inproc", episodes)
}

/// Runs one episode of `sim` with a session of `factory` (seeded with `seed`) in process.
pub fn run_factory(
    sim: &mut RackSim,
    factory: Arc<dyn PolicyFactory>,
    seed: u64,
    env_id: &str,
) -> Result<Report, EnvLoopError> {
    let mut t = Loopback::new(factory, seed);
    rack_sim::run_env_loop(sim, &mut t, env_id, 1)
}
