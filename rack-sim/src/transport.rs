//! How the environment reaches an agent: the [`Transport`] trait, its ZeroMQ DEALER client
//! and an in-process implementation around a `Policy`, and the env loops that drive a
//! [`RackSim`] through them (Hello, Steps, EpisodeEnds, Close).

use crate::metrics::Report;
use crate::sim::{RackSim, SimEvent};
use crate::SimError;
use malcolm_policies::{Decision, Policy, PolicyError, PolicyFactory};
use malcolm_proto::bridge::Envelope;
use malcolm_proto::bridge::{
    envelope::Body, Ack, Close, EpisodeEnd, ErrorCode, Placement, Step, Welcome,
};
use malcolm_proto::codec::{
    body_name, decode_envelope, encode_envelope, envelope, error_envelope, DecodeError,
    DEFAULT_MAX_MESSAGE_BYTES,
};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long the env waits for any reply before declaring the agent dead: generous for a
/// learner that is busy, far below "hang".
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a request got no usable reply.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error("no reply to request {request_id} within {timeout:?} from {endpoint}: is the agent running?")]
    Timeout {
        endpoint: String,
        request_id: u64,
        timeout: Duration,
    },
    #[error("zeromq {op} on {endpoint}: {source}")]
    Zmq {
        op: &'static str,
        endpoint: String,
        source: zmq::Error,
    },
    #[error("undecodable reply: {0}")]
    Decode(#[from] DecodeError),
    #[error("in-process policy: {0}")]
    Policy(#[from] PolicyError),
    #[error("request {0} has no body")]
    EmptyRequest(u64),
}

/// One lockstep request/reply with an agent.
pub trait Transport {
    fn request(&mut self, env: Envelope) -> Result<Envelope, TransportError>;

    /// The Step of the last request, when the transport kept it (in-process), so the env can
    /// reuse its buffers. None by default.
    fn reclaim_step(&mut self) -> Option<Step> {
        None
    }
}

/// ZeroMQ DEALER connected to an agent's ROUTER (`tcp://` or `ipc://`). One envelope per
/// message, single frame; replies to earlier requests (after a timeout) are recognised by
/// their request id and dropped.
pub struct ZmqEnvClient {
    _ctx: zmq::Context,
    socket: zmq::Socket,
    endpoint: String,
    timeout: Duration,
    max_message_bytes: usize,
}

impl ZmqEnvClient {
    pub fn connect(endpoint: &str, timeout: Duration) -> Result<Self, TransportError> {
        let zerr = |op: &'static str| {
            let endpoint = endpoint.to_string();
            move |source| TransportError::Zmq {
                op,
                endpoint: endpoint.clone(),
                source,
            }
        };
        let ctx = zmq::Context::new();
        let socket = ctx.socket(zmq::DEALER).map_err(zerr("socket"))?;
        // Never block process exit on unsent messages to a dead agent.
        socket.set_linger(0).map_err(zerr("set_linger"))?;
        socket.connect(endpoint).map_err(zerr("connect"))?;
        tracing::debug!(endpoint, "env connected");
        Ok(Self {
            _ctx: ctx,
            socket,
            endpoint: endpoint.to_string(),
            timeout,
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
        })
    }

    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    fn zerr(&self, op: &'static str) -> impl Fn(zmq::Error) -> TransportError + '_ {
        move |source| TransportError::Zmq {
            op,
            endpoint: self.endpoint.clone(),
            source,
        }
    }
}

impl Transport for ZmqEnvClient {
    fn request(&mut self, env: Envelope) -> Result<Envelope, TransportError> {
        let id = env.request_id;
        let bytes = encode_envelope(&env);
        // A full send queue (agent gone) must not block forever either.
        self.socket
            .set_sndtimeo(self.timeout.as_millis().min(i32::MAX as u128) as i32)
            .map_err(self.zerr("set_sndtimeo"))?;
        match self.socket.send(bytes, 0) {
            Ok(()) => {}
            Err(zmq::Error::EAGAIN) => {
                return Err(TransportError::Timeout {
                    endpoint: self.endpoint.clone(),
                    request_id: id,
                    timeout: self.timeout,
                })
            }
            Err(e) => return Err(self.zerr("send")(e)),
        }
        let deadline = Instant::now() + self.timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let ms = left.as_millis().min(i64::MAX as u128) as i64;
            let ready = {
                let mut items = [self.socket.as_poll_item(zmq::POLLIN)];
                zmq::poll(&mut items, ms).map_err(self.zerr("poll"))?;
                items[0].is_readable()
            };
            if !ready {
                return Err(TransportError::Timeout {
                    endpoint: self.endpoint.clone(),
                    request_id: id,
                    timeout: self.timeout,
                });
            }
            let mut frames = self.socket.recv_multipart(0).map_err(self.zerr("recv"))?;
            // REQ-style peers may add an empty delimiter; the envelope is the last frame.
            let Some(payload) = frames.pop() else {
                continue;
            };
            let reply = decode_envelope(&payload, self.max_message_bytes)?;
            if reply.request_id != id {
                tracing::warn!(
                    expected = id,
                    got = reply.request_id,
                    "dropping a reply to an earlier request"
                );
                continue;
            }
            return Ok(reply);
        }
    }
}

/// A policy in the same process: no sockets, same messages.
pub struct InProcessTransport {
    policy: Option<Box<dyn Policy>>,
    factory: Option<Arc<dyn PolicyFactory>>,
    name: String,
    seed: u64,
    decision: Decision,
    last_step: Option<Step>,
}

impl InProcessTransport {
    /// Wraps a ready policy.
    pub fn new(policy: Box<dyn Policy>, name: &str) -> Self {
        Self {
            policy: Some(policy),
            factory: None,
            name: name.to_string(),
            seed: 0,
            decision: Decision::default(),
            last_step: None,
        }
    }

    /// Makes the policy from `factory` when the Hello arrives (seeded with `seed`).
    pub fn from_factory(factory: Arc<dyn PolicyFactory>, seed: u64) -> Self {
        Self {
            policy: None,
            name: factory.name().to_string(),
            factory: Some(factory),
            seed,
            decision: Decision::default(),
            last_step: None,
        }
    }

    fn policy(&mut self) -> Result<&mut Box<dyn Policy>, PolicyError> {
        self.policy
            .as_mut()
            .ok_or_else(|| PolicyError::InvalidState("no Hello yet".into()))
    }
}

impl Transport for InProcessTransport {
    fn request(&mut self, env: Envelope) -> Result<Envelope, TransportError> {
        let id = env.request_id;
        let body = env.body.ok_or(TransportError::EmptyRequest(id))?;
        let reply = match body {
            Body::Hello(h) => {
                if let Some(f) = &self.factory {
                    self.policy = Some(f.new_session(&h, self.seed)?);
                }
                let version = self.policy()?.version();
                Body::Welcome(Welcome {
                    session_id: 1,
                    policy: self.name.clone(),
                    policy_version: version,
                    mode: "eval".into(),
                    step_budget_ns: 0,
                })
            }
            Body::Step(step) => {
                let mut decision = std::mem::take(&mut self.decision);
                let policy = self.policy()?;
                policy.observe(&step.outcomes);
                decision.clear();
                let result = policy.decide(&step, &mut decision);
                let version = policy.version();
                if let Err(e) = result {
                    self.decision = decision;
                    self.last_step = Some(step);
                    return Ok(error_envelope(
                        id,
                        ErrorCode::InvalidArgument,
                        e.to_string(),
                    ));
                }
                let placement = Placement {
                    step_index: step.step_index,
                    targets: decision.targets.clone(),
                    policy_version: version,
                    scores: decision.scores.clone(),
                    hold_ns: decision.hold_ns.clone(),
                };
                self.decision = decision;
                self.last_step = Some(step);
                Body::Placement(placement)
            }
            Body::EpisodeEnd(end) => {
                let policy = self.policy()?;
                policy.observe(&end.outcomes);
                policy.end_episode(&end);
                Body::Ack(Ack {})
            }
            Body::Close(_) => Body::Ack(Ack {}),
            other => {
                return Ok(error_envelope(
                    id,
                    ErrorCode::ProtocolViolation,
                    format!("{} is not an env request", body_name(&other)),
                ))
            }
        };
        Ok(envelope(id, reply))
    }

    fn reclaim_step(&mut self) -> Option<Step> {
        self.last_step.take()
    }
}

/// Why an env loop stopped.
#[derive(Debug, thiserror::Error)]
pub enum EnvLoopError {
    #[error(transparent)]
    Transport(#[from] TransportError),
    #[error(transparent)]
    Sim(#[from] SimError),
    /// The task source failed mid-episode: the episode was ended as truncated (the agent got
    /// its EpisodeEnd) and the run stops here.
    #[error("episode {episode} cut short by its task source: {source}")]
    Source { episode: u64, source: SimError },
    #[error("agent answered {request} with error {code:?}: {message}")]
    Agent {
        request: &'static str,
        code: ErrorCode,
        message: String,
    },
    #[error("agent answered {request} with {got}")]
    UnexpectedReply {
        request: &'static str,
        got: &'static str,
    },
}

fn expect_reply(request: &'static str, reply: Envelope) -> Result<Body, EnvLoopError> {
    match reply.body {
        Some(Body::Error(e)) => Err(EnvLoopError::Agent {
            request,
            code: ErrorCode::try_from(e.code).unwrap_or(ErrorCode::Unspecified),
            message: e.message,
        }),
        Some(b) => Ok(b),
        None => Err(EnvLoopError::UnexpectedReply {
            request,
            got: "an empty envelope",
        }),
    }
}

/// Drives `sim` against an agent for `episodes` episodes: Hello, then Steps and EpisodeEnds
/// in lockstep, then Close. Returns the simulator's report.
pub fn run_env_loop(
    sim: &mut RackSim,
    client: &mut dyn Transport,
    env_id: &str,
    episodes: u64,
) -> Result<Report, EnvLoopError> {
    let mut next_id = 1u64;
    let mut call = |client: &mut dyn Transport, body: Body| {
        let id = next_id;
        next_id += 1;
        client.request(envelope(id, body))
    };
    let hello = sim.hello(env_id);
    match expect_reply("Hello", call(client, Body::Hello(hello))?)? {
        Body::Welcome(w) => {
            tracing::info!(env = env_id, policy = %w.policy, mode = %w.mode, "agent welcomed the env")
        }
        other => {
            return Err(EnvLoopError::UnexpectedReply {
                request: "Hello",
                got: body_name(&other),
            })
        }
    }
    let mut done = 0;
    while done < episodes {
        match sim.next_event() {
            SimEvent::Step(step) => {
                let index = step.step_index;
                let reply = call(client, Body::Step(step))?;
                if let Some(s) = client.reclaim_step() {
                    sim.recycle(s);
                }
                match expect_reply("Step", reply)? {
                    Body::Placement(p) => {
                        if p.step_index != index {
                            return Err(SimError::WrongStep {
                                expected: index,
                                got: p.step_index,
                            }
                            .into());
                        }
                        sim.apply(&p)?;
                    }
                    other => {
                        return Err(EnvLoopError::UnexpectedReply {
                            request: "Step",
                            got: body_name(&other),
                        })
                    }
                }
            }
            SimEvent::EpisodeEnd(end) => {
                let episode = end.episode;
                match expect_reply("EpisodeEnd", call(client, Body::EpisodeEnd(end))?)? {
                    Body::Ack(_) => {}
                    other => {
                        return Err(EnvLoopError::UnexpectedReply {
                            request: "EpisodeEnd",
                            got: body_name(&other),
                        })
                    }
                }
                if let Some(source) = sim.take_source_error() {
                    let close = Close {
                        reason: format!("task source failed: {source}"),
                    };
                    // Best effort: the run fails with the source's error either way.
                    let _ = call(client, Body::Close(close));
                    return Err(EnvLoopError::Source { episode, source });
                }
                done += 1;
            }
        }
    }
    let close = Close {
        reason: "episodes done".into(),
    };
    expect_reply("Close", call(client, Body::Close(close))?)?;
    Ok(sim.report())
}

/// Runs one episode with a closure as the agent; returns the EpisodeEnd, or the task
/// source's error when the episode was cut short by it.
pub fn run_episode(
    sim: &mut RackSim,
    decide: &mut dyn FnMut(&Step) -> Placement,
) -> Result<EpisodeEnd, SimError> {
    loop {
        match sim.next_event() {
            SimEvent::Step(step) => {
                let p = decide(&step);
                sim.apply(&p)?;
                sim.recycle(step);
            }
            SimEvent::EpisodeEnd(end) => {
                return match sim.take_source_error() {
                    Some(e) => Err(e),
                    None => Ok(end),
                }
            }
        }
    }
}

/// Runs `episodes` episodes of `sim` with a policy in process (no sockets) and returns the
/// report. The policy sees exactly what it would see over ZeroMQ.
pub fn run_policy(
    sim: &mut RackSim,
    policy: Box<dyn Policy>,
    episodes: u64,
) -> Result<Report, EnvLoopError> {
    let mut t = InProcessTransport::new(policy, "in-process");
    run_env_loop(sim, &mut t, "rack-sim-inproc", episodes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use malcolm_proto::bridge::Hello;

    /// An agent that places every task on its origin.
    struct Local;
    impl Policy for Local {
        fn decide(&mut self, step: &Step, out: &mut Decision) -> Result<(), PolicyError> {
            out.clear();
            out.targets.extend(step.tasks.iter().map(|t| t.origin));
            Ok(())
        }
    }

    fn serve_one_router(
        endpoint: String,
        replies: usize,
        answer: bool,
    ) -> std::thread::JoinHandle<()> {
        let ctx = zmq::Context::new();
        let router = ctx.socket(zmq::ROUTER).unwrap();
        router.bind(&endpoint).unwrap();
        std::thread::spawn(move || {
            let mut policy = InProcessTransport::new(Box::new(Local), "local");
            for _ in 0..replies {
                let mut frames = router.recv_multipart(0).unwrap();
                let payload = frames.pop().unwrap();
                let env = decode_envelope(&payload, DEFAULT_MAX_MESSAGE_BYTES).unwrap();
                if !answer {
                    continue;
                }
                let reply = policy.request(env).unwrap();
                frames.push(encode_envelope(&reply));
                router.send_multipart(frames, 0).unwrap();
            }
            drop(ctx);
        })
    }

    #[test]
    fn zmq_client_runs_an_episode_against_a_router() {
        let dir = tempfile::tempdir().unwrap();
        let endpoint = format!("ipc://{}/agent.sock", dir.path().display());
        let mut sim = RackSim::new(
            crate::scenario::by_name("homogeneous-4:tasks=300,warmup=0").unwrap(),
            3,
        )
        .unwrap();
        // Count the messages the run needs with the in-process transport first.
        let mut counting = InProcessTransport::new(Box::new(Local), "local");
        let mut reference = RackSim::new(sim.scenario().clone(), 3).unwrap();
        let expected = run_env_loop(&mut reference, &mut counting, "ref", 1).unwrap();
        let messages = 2 + expected.steps as usize + 1;
        let server = serve_one_router(endpoint.clone(), messages, true);
        let mut client = ZmqEnvClient::connect(&endpoint, Duration::from_secs(10)).unwrap();
        let report = run_env_loop(&mut sim, &mut client, "zmq-test", 1).unwrap();
        server.join().unwrap();
        // Same messages, same decisions: same report.
        assert_eq!(
            serde_json::to_string(&report).unwrap(),
            serde_json::to_string(&expected).unwrap()
        );
    }

    #[test]
    fn zmq_client_times_out_on_a_silent_agent() {
        let dir = tempfile::tempdir().unwrap();
        let endpoint = format!("ipc://{}/silent.sock", dir.path().display());
        let server = serve_one_router(endpoint.clone(), 1, false);
        let mut client = ZmqEnvClient::connect(&endpoint, Duration::from_millis(300)).unwrap();
        let t0 = Instant::now();
        let err = client
            .request(envelope(7, Body::Hello(Hello::default())))
            .unwrap_err();
        assert!(
            matches!(err, TransportError::Timeout { request_id: 7, .. }),
            "{err}"
        );
        assert!(t0.elapsed() < Duration::from_secs(5));
        assert!(err.to_string().contains("is the agent running"));
        server.join().unwrap();
    }

    #[test]
    fn in_process_refuses_agent_bodies() {
        let mut t = InProcessTransport::new(Box::new(Local), "local");
        let reply = t.request(envelope(1, Body::Ack(Ack {}))).unwrap();
        assert!(matches!(reply.body, Some(Body::Error(_))));
    }
}
