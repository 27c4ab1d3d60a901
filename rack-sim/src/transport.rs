//! How the environment reaches an agent: the [`Transport`] trait and its ZeroMQ DEALER
//! client, and the env loops that drive a [`RackSim`] through a transport (Hello, Steps,
//! EpisodeEnds, Close). The agent side (a policy behind the session contract, over ZeroMQ or
//! in process) lives in the agent server's crate: this crate knows only the bridge messages.

use crate::metrics::Report;
use crate::sim::{RackSim, SimEvent};
use crate::SimError;
use malcolm_proto::bridge::Envelope;
use malcolm_proto::bridge::{envelope::Body, Close, EpisodeEnd, ErrorCode, Placement, Step};
use malcolm_proto::codec::{
    body_name, decode_envelope, encode_envelope, envelope_v, DecodeError,
    DEFAULT_MAX_MESSAGE_BYTES, PROTOCOL_V1, SUPPORTED_VERSIONS,
};
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

    /// The bridge protocol versions the env offers in its Hello through this transport.
    fn versions(&self) -> &[u32] {
        SUPPORTED_VERSIONS
    }
}

/// ZeroMQ DEALER connected to an agent's ROUTER (`tcp://` or `ipc://`). One envelope per
/// message, single frame; replies to earlier requests (after a timeout) are recognised by
/// their request id and dropped. An `Error` with request id 0 (the agent could not read the
/// request's header, or is shutting down) answers the outstanding request.
pub struct ZmqEnvClient {
    _ctx: zmq::Context,
    socket: zmq::Socket,
    endpoint: String,
    timeout: Duration,
    max_message_bytes: usize,
    versions: Vec<u32>,
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
            versions: SUPPORTED_VERSIONS.to_vec(),
        })
    }

    /// Offers only `versions` in the Hello (e.g. `[1]` to speak to the agent as a v1 env).
    pub fn with_versions(mut self, versions: &[u32]) -> Self {
        self.versions = versions.to_vec();
        self
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
            let unmatched_error =
                reply.request_id == 0 && matches!(reply.body, Some(Body::Error(_)));
            if reply.request_id != id && !unmatched_error {
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

    fn versions(&self) -> &[u32] {
        &self.versions
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
    // The Hello and its reply are v1; the rest carries the version the Welcome chose.
    let version;
    let mut call = |client: &mut dyn Transport, body: Body, version: u32| {
        let id = next_id;
        next_id += 1;
        client.request(envelope_v(version, id, body))
    };
    let mut hello = sim.hello(env_id);
    hello.protocol_versions = client.versions().to_vec();
    match expect_reply("Hello", call(client, Body::Hello(hello), PROTOCOL_V1)?)? {
        Body::Welcome(w) => {
            // 0: an agent that predates negotiation, i.e. v1.
            version = w.protocol_version.max(PROTOCOL_V1);
            if !client.versions().contains(&version) {
                return Err(EnvLoopError::UnexpectedReply {
                    request: "Hello",
                    got: "a Welcome choosing a protocol version the env did not offer",
                });
            }
            sim.set_protocol(version);
            tracing::debug!(env = env_id, policy = %w.policy, mode = %w.mode_name, protocol = version, "agent welcomed the env")
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
                let reply = call(client, Body::Step(step), version)?;
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
                match expect_reply("EpisodeEnd", call(client, Body::EpisodeEnd(end), version)?)? {
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
                    let _ = call(client, Body::Close(close), version);
                    return Err(EnvLoopError::Source { episode, source });
                }
                done += 1;
            }
        }
    }
    let close = Close {
        reason: "episodes done".into(),
    };
    expect_reply("Close", call(client, Body::Close(close), version)?)?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use malcolm_proto::bridge::{Ack, Hello, Welcome};

    /// A minimal agent on a ROUTER: welcomes with `version` (0: as a pre-negotiation agent),
    /// places every task on its origin, acks the rest, until Close. Returns what it saw:
    /// (Steps with inline GSTs, Steps with GST tables).
    fn local_agent(endpoint: String, version: u32) -> std::thread::JoinHandle<(u64, u64)> {
        let ctx = zmq::Context::new();
        let router = ctx.socket(zmq::ROUTER).unwrap();
        router.bind(&endpoint).unwrap();
        std::thread::spawn(move || {
            let (mut inline, mut tables) = (0, 0);
            loop {
                let mut frames = router.recv_multipart(0).unwrap();
                let payload = frames.pop().unwrap();
                let env = decode_envelope(&payload, DEFAULT_MAX_MESSAGE_BYTES).unwrap();
                let v = env.protocol_version;
                let (body, done) = match env.body.unwrap() {
                    Body::Hello(_) => (
                        Body::Welcome(Welcome {
                            protocol_version: version,
                            ..Default::default()
                        }),
                        false,
                    ),
                    Body::Step(s) => {
                        assert_eq!(v, version.max(1), "Steps carry the chosen version");
                        inline += s.nodes.iter().any(|n| n.gst.is_some()) as u64;
                        tables += !s.gst_tables.is_empty() as u64;
                        (
                            Body::Placement(Placement {
                                step_index: s.step_index,
                                targets: s.tasks.iter().map(|t| t.origin).collect(),
                                ..Default::default()
                            }),
                            false,
                        )
                    }
                    Body::Close(_) => (Body::Ack(Ack {}), true),
                    _ => (Body::Ack(Ack {}), false),
                };
                frames.push(encode_envelope(&envelope_v(v, env.request_id, body)));
                router.send_multipart(frames, 0).unwrap();
                if done {
                    return (inline, tables);
                }
            }
        })
    }

    fn local_report(spec: &str, seed: u64) -> String {
        let mut sim = RackSim::new(crate::scenario::by_name(spec).unwrap(), seed).unwrap();
        run_episode(&mut sim, &mut |st| Placement {
            step_index: st.step_index,
            targets: st.tasks.iter().map(|t| t.origin).collect(),
            ..Default::default()
        })
        .unwrap();
        serde_json::to_string(&sim.report()).unwrap()
    }

    #[test]
    fn zmq_client_runs_an_episode_in_either_protocol_version() {
        let spec = "homogeneous-4:tasks=300,warmup=0";
        let expected = local_report(spec, 3);
        let dir = tempfile::tempdir().unwrap();
        for (k, version) in [0u32, 1, 2].into_iter().enumerate() {
            let endpoint = format!("ipc://{}/agent-{k}.sock", dir.path().display());
            let agent = local_agent(endpoint.clone(), version);
            let mut sim = RackSim::new(crate::scenario::by_name(spec).unwrap(), 3).unwrap();
            let mut client = ZmqEnvClient::connect(&endpoint, Duration::from_secs(10)).unwrap();
            let report = run_env_loop(&mut sim, &mut client, "zmq-test", 1).unwrap();
            let (inline, tables) = agent.join().unwrap();
            // Same decisions, same report, whatever the GSTs' form on the wire.
            assert_eq!(serde_json::to_string(&report).unwrap(), expected);
            if version == 2 {
                assert!(
                    tables > 0 && inline == 0,
                    "v2: tables only ({inline}, {tables})"
                );
            } else {
                assert!(
                    inline > 0 && tables == 0,
                    "v1: inline only ({inline}, {tables})"
                );
            }
        }
    }

    #[test]
    fn zmq_client_times_out_on_a_silent_agent() {
        let dir = tempfile::tempdir().unwrap();
        let endpoint = format!("ipc://{}/silent.sock", dir.path().display());
        let ctx = zmq::Context::new();
        let router = ctx.socket(zmq::ROUTER).unwrap();
        router.bind(&endpoint).unwrap();
        let mut client = ZmqEnvClient::connect(&endpoint, Duration::from_millis(300)).unwrap();
        let t0 = Instant::now();
        let err = client
            .request(envelope_v(1, 7, Body::Hello(Hello::default())))
            .unwrap_err();
        assert!(
            matches!(err, TransportError::Timeout { request_id: 7, .. }),
            "{err}"
        );
        assert!(t0.elapsed() < Duration::from_secs(5));
        assert!(err.to_string().contains("is the agent running"));
    }

    #[test]
    fn an_error_with_request_id_zero_answers_the_outstanding_request() {
        let dir = tempfile::tempdir().unwrap();
        let endpoint = format!("ipc://{}/zero.sock", dir.path().display());
        let ctx = zmq::Context::new();
        let router = ctx.socket(zmq::ROUTER).unwrap();
        router.bind(&endpoint).unwrap();
        let agent = std::thread::spawn(move || {
            let mut frames = router.recv_multipart(0).unwrap();
            frames.pop();
            // A stale reply to another request first (dropped), then the goodbye.
            for (rid, code) in [(3, ErrorCode::Internal), (0, ErrorCode::Unavailable)] {
                let mut f = frames.clone();
                f.push(encode_envelope(&malcolm_proto::error_envelope(
                    rid, code, "x",
                )));
                router.send_multipart(f, 0).unwrap();
            }
        });
        let mut client = ZmqEnvClient::connect(&endpoint, Duration::from_secs(5)).unwrap();
        let reply = client
            .request(envelope_v(1, 9, Body::Hello(Hello::default())))
            .unwrap();
        match reply.body {
            Some(Body::Error(e)) => assert_eq!(e.code, ErrorCode::Unavailable as i32),
            other => panic!("{other:?}"),
        }
        agent.join().unwrap();
    }
}
