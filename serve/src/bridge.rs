//! The ZeroMQ data path: a ROUTER socket serving many env sessions at once.
//!
//! One router thread owns the ROUTER socket (ZeroMQ sockets are not thread-safe); it hands
//! each message to the worker that owns the sender's session (sessions are pinned to a
//! worker so their messages stay ordered) and forwards the workers' replies, which come back
//! over an inproc PULL socket. Sessions silent for longer than the session timeout are
//! expired: their partial episode is discarded and the others carry on.

use crate::session::{After, Session};
use crate::shared::{Counters, Shared};
use crate::trace::TraceSink;
use malcolm_proto::bridge::{envelope::Body, Direction, ErrorCode};
use malcolm_proto::codec::{self, DEFAULT_MAX_MESSAGE_BYTES};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// An env silent this long is gone: long enough for a slow OMNeT++ event burst between two
/// decision points, short enough that a crashed env does not hold a session for minutes.
pub const DEFAULT_SESSION_TIMEOUT: Duration = Duration::from_secs(60);
/// How often the router wakes with nothing to do (shutdown check, expiry sweep).
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_millis(50);
/// Sessions handled on the router thread by default: each hand-off to a worker thread costs
/// two context switches per Step, more than a cheap decision; use workers on big machines
/// with expensive policies.
pub const DEFAULT_WORKERS: usize = 0;
/// Messages up to this multiple of the limit are received and refused with an Error reply;
/// beyond it ZeroMQ drops the connection before buffering them (memory bound).
const HARD_LIMIT_FACTOR: usize = 4;
/// Identities remembered after expiry (so a late message gets SESSION_EXPIRED).
const EXPIRED_MEMORY: usize = 4096;

#[derive(Debug, thiserror::Error)]
pub enum BridgeError {
    #[error("zeromq {what}: {source}")]
    Zmq { what: String, source: zmq::Error },
    #[error("worker thread: {0}")]
    Worker(String),
}

fn zerr(what: impl Into<String>) -> impl FnOnce(zmq::Error) -> BridgeError {
    let what = what.into();
    move |source| BridgeError::Zmq { what, source }
}

#[derive(Debug, Clone)]
pub struct BridgeConfig {
    /// ZeroMQ endpoints to bind (`tcp://127.0.0.1:5555`, `tcp://127.0.0.1:*`, `ipc:///tmp/x`).
    pub endpoints: Vec<String>,
    /// Worker threads handling sessions; 0 handles them on the router thread itself (no thread
    /// hops: the lowest round trip when decisions are cheap or cores are few).
    pub workers: usize,
    pub session_timeout: Duration,
    pub max_message_bytes: usize,
    pub poll_interval: Duration,
}

impl Default for BridgeConfig {
    fn default() -> Self {
        Self {
            endpoints: vec!["tcp://127.0.0.1:5555".into()],
            workers: DEFAULT_WORKERS,
            session_timeout: DEFAULT_SESSION_TIMEOUT,
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
            poll_interval: DEFAULT_POLL_INTERVAL,
        }
    }
}

/// A cloneable shutdown flag for the blocking threads.
#[derive(Debug, Clone, Default)]
pub struct Shutdown(Arc<AtomicBool>);

impl Shutdown {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn trigger(&self) {
        self.0.store(true, Ordering::SeqCst);
    }
    pub fn is_triggered(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// A bound (not yet running) bridge.
pub struct Bridge {
    ctx: zmq::Context,
    router: zmq::Socket,
    endpoints: Vec<String>,
    cfg: BridgeConfig,
}

static BRIDGE_IDS: AtomicU64 = AtomicU64::new(0);

impl Bridge {
    /// Binds the ROUTER to every endpoint; wildcard ports are resolved (see [`Self::endpoints`]).
    pub fn bind(ctx: &zmq::Context, cfg: BridgeConfig) -> Result<Self, BridgeError> {
        let router = ctx.socket(zmq::ROUTER).map_err(zerr("socket"))?;
        router.set_linger(0).map_err(zerr("linger"))?;
        router
            .set_maxmsgsize((cfg.max_message_bytes * HARD_LIMIT_FACTOR) as i64)
            .map_err(zerr("maxmsgsize"))?;
        let mut endpoints = Vec::new();
        for ep in &cfg.endpoints {
            router.bind(ep).map_err(zerr(format!("bind {ep}")))?;
            let actual = router
                .get_last_endpoint()
                .map_err(zerr("last endpoint"))?
                .unwrap_or_else(|_| ep.clone());
            endpoints.push(actual);
        }
        Ok(Self {
            ctx: ctx.clone(),
            router,
            endpoints,
            cfg,
        })
    }

    /// The endpoints actually bound (wildcard ports resolved).
    pub fn endpoints(&self) -> &[String] {
        &self.endpoints
    }

    /// Serves until `shutdown` is triggered. Blocking: run it on its own thread.
    pub fn run(
        self,
        shared: Arc<Shared>,
        trace: Option<TraceSink>,
        shutdown: Shutdown,
    ) -> Result<(), BridgeError> {
        let reply_ep = format!(
            "inproc://malcolm-replies-{}",
            BRIDGE_IDS.fetch_add(1, Ordering::Relaxed)
        );
        let pull = self.ctx.socket(zmq::PULL).map_err(zerr("pull socket"))?;
        pull.bind(&reply_ep).map_err(zerr("bind replies"))?;
        let n_workers = self.cfg.workers;
        let mut senders = Vec::with_capacity(n_workers);
        let mut handles: Vec<JoinHandle<()>> = Vec::with_capacity(n_workers);
        for w in 0..n_workers {
            let (tx, rx) = mpsc::channel::<Job>();
            let push = self.ctx.socket(zmq::PUSH).map_err(zerr("push socket"))?;
            push.set_linger(0).map_err(zerr("linger"))?;
            push.connect(&reply_ep).map_err(zerr("connect replies"))?;
            let worker = Worker {
                table: SessionTable::new(shared.clone(), trace.clone(), self.cfg.max_message_bytes),
                push,
            };
            let h = std::thread::Builder::new()
                .name(format!("bridge-worker-{w}"))
                .spawn(move || worker.run(rx))
                .map_err(|e| BridgeError::Worker(e.to_string()))?;
            senders.push(tx);
            handles.push(h);
        }
        let mut inline = SessionTable::new(shared, trace, self.cfg.max_message_bytes);
        tracing::info!(endpoints = ?self.endpoints, workers = n_workers, "bridge serving");
        let result = self.route(&pull, &senders, &mut inline, &shutdown);
        drop(senders);
        for h in handles {
            h.join()
                .map_err(|_| BridgeError::Worker("a worker panicked".into()))?;
        }
        tracing::info!("bridge stopped");
        result
    }

    fn route(
        &self,
        pull: &zmq::Socket,
        workers: &[mpsc::Sender<Job>],
        inline: &mut SessionTable,
        shutdown: &Shutdown,
    ) -> Result<(), BridgeError> {
        let mut routes: HashMap<Vec<u8>, Route> = HashMap::new();
        let mut expired: HashSet<Vec<u8>> = HashSet::new();
        let mut next_session: u64 = 1;
        let mut last_sweep = Instant::now();
        let poll_ms = self.cfg.poll_interval.as_millis().max(1) as i64;
        while !shutdown.is_triggered() {
            let (from_envs, from_workers) = {
                let mut items = [
                    self.router.as_poll_item(zmq::POLLIN),
                    pull.as_poll_item(zmq::POLLIN),
                ];
                zmq::poll(&mut items, poll_ms).map_err(zerr("poll"))?;
                (items[0].is_readable(), items[1].is_readable())
            };
            if from_workers {
                while let Ok(parts) = pull.recv_multipart(zmq::DONTWAIT) {
                    if let Err(e) = self.router.send_multipart(parts, 0) {
                        // The env is gone (ROUTER drops unroutable messages; this is rarer).
                        tracing::debug!(error = %e, "reply not sent");
                    }
                }
            }
            if from_envs {
                // Bounded batch so replies are forwarded between bursts.
                for _ in 0..256 {
                    let mut parts = match self.router.recv_multipart(zmq::DONTWAIT) {
                        Ok(p) => p,
                        Err(zmq::Error::EAGAIN) => break,
                        Err(e) => return Err(zerr("recv")(e)),
                    };
                    if parts.len() < 2 {
                        continue;
                    }
                    let payload = parts.pop().expect("len >= 2");
                    let identity = parts[0].clone();
                    let now = Instant::now();
                    let after_expiry = expired.remove(&identity);
                    let route = routes.entry(identity).or_insert_with(|| {
                        let id = next_session;
                        next_session += 1;
                        Route {
                            session_id: id,
                            worker: if workers.is_empty() {
                                0
                            } else {
                                (id as usize) % workers.len()
                            },
                            last_seen: now,
                        }
                    });
                    route.last_seen = now;
                    if workers.is_empty() {
                        let reply = inline.handle(route.session_id, &payload, after_expiry, now);
                        parts.push(reply);
                        if let Err(e) = self.router.send_multipart(parts, 0) {
                            tracing::debug!(error = %e, "reply not sent");
                        }
                        continue;
                    }
                    let job = Job::Message {
                        session_id: route.session_id,
                        envelope_frames: parts,
                        payload,
                        received: now,
                        after_expiry,
                    };
                    workers[route.worker]
                        .send(job)
                        .map_err(|_| BridgeError::Worker("worker exited".into()))?;
                }
            }
            if last_sweep.elapsed() >= self.cfg.poll_interval {
                last_sweep = Instant::now();
                let timeout = self.cfg.session_timeout;
                let stale: Vec<Vec<u8>> = routes
                    .iter()
                    .filter(|(_, r)| r.last_seen.elapsed() > timeout)
                    .map(|(k, _)| k.clone())
                    .collect();
                for identity in stale {
                    let r = routes.remove(&identity).expect("key from map");
                    if workers.is_empty() {
                        inline.expire(r.session_id);
                    } else {
                        let _ = workers[r.worker].send(Job::Expire {
                            session_id: r.session_id,
                        });
                    }
                    if expired.len() >= EXPIRED_MEMORY {
                        expired.clear();
                    }
                    expired.insert(identity);
                }
            }
        }
        Ok(())
    }
}

struct Route {
    session_id: u64,
    worker: usize,
    last_seen: Instant,
}

enum Job {
    Message {
        session_id: u64,
        /// Identity frame (and the empty delimiter of REQ peers), echoed before the reply.
        envelope_frames: Vec<Vec<u8>>,
        payload: Vec<u8>,
        received: Instant,
        after_expiry: bool,
    },
    Expire {
        session_id: u64,
    },
}

/// The sessions one thread owns, and how it turns request bytes into reply bytes.
struct SessionTable {
    shared: Arc<Shared>,
    trace: Option<TraceSink>,
    sessions: HashMap<u64, Session>,
    max_message_bytes: usize,
}

/// A worker thread: a session table whose replies go back over an inproc PUSH socket.
struct Worker {
    table: SessionTable,
    push: zmq::Socket,
}

impl Worker {
    fn run(mut self, rx: mpsc::Receiver<Job>) {
        for job in rx {
            match job {
                Job::Message {
                    session_id,
                    envelope_frames,
                    payload,
                    received,
                    after_expiry,
                } => {
                    let reply = self
                        .table
                        .handle(session_id, &payload, after_expiry, received);
                    let mut frames = envelope_frames;
                    frames.push(reply);
                    if let Err(e) = self.push.send_multipart(frames, 0) {
                        tracing::error!(error = %e, "worker could not queue a reply");
                    }
                }
                Job::Expire { session_id } => self.table.expire(session_id),
            }
        }
    }
}

impl SessionTable {
    fn new(shared: Arc<Shared>, trace: Option<TraceSink>, max_message_bytes: usize) -> Self {
        Self {
            shared,
            trace,
            sessions: HashMap::new(),
            max_message_bytes,
        }
    }

    fn expire(&mut self, session_id: u64) {
        if let Some(mut s) = self.sessions.remove(&session_id) {
            if s.expire() {
                tracing::warn!(
                    session = session_id,
                    env = s.hello().map_or("?", |h| h.env_id.as_str()),
                    "env silent past the session timeout: session expired, partial episode discarded"
                );
            }
        }
    }
    fn handle(
        &mut self,
        session_id: u64,
        payload: &[u8],
        after_expiry: bool,
        received: Instant,
    ) -> Vec<u8> {
        if let Some(t) = &self.trace {
            t.record(session_id, Direction::EnvToAgent, payload, 0);
        }
        let (reply, is_step) = match codec::decode_envelope(payload, self.max_message_bytes) {
            Err(e) => {
                Counters::add(&self.shared.counters.errors, 1);
                tracing::debug!(session = session_id, error = %e, "undecodable message");
                (
                    codec::error_envelope(e.request_id(), e.code(), e.to_string()),
                    false,
                )
            }
            Ok(env) => {
                let is_step = matches!(env.body, Some(Body::Step(_)));
                let is_hello = matches!(env.body, Some(Body::Hello(_)));
                if after_expiry && !is_hello && !self.sessions.contains_key(&session_id) {
                    Counters::add(&self.shared.counters.errors, 1);
                    (
                        codec::error_envelope(
                            env.request_id,
                            ErrorCode::SessionExpired,
                            "session expired after the env was silent past the timeout; send Hello to start again",
                        ),
                        false,
                    )
                } else {
                    let shared = &self.shared;
                    let session = self
                        .sessions
                        .entry(session_id)
                        .or_insert_with(|| Session::new(session_id, shared.clone()));
                    let (reply, after) = session.handle(env);
                    if after == After::Closed {
                        self.sessions.remove(&session_id);
                    }
                    (reply, is_step)
                }
            }
        };
        let bytes = codec::encode_envelope(&reply);
        let decide_ns = received.elapsed().as_nanos() as u64;
        if is_step {
            self.shared.record_decide_ns(decide_ns);
        }
        if let Some(t) = &self.trace {
            t.record(session_id, Direction::AgentToEnv, &bytes, decide_ns);
        }
        bytes
    }
}
