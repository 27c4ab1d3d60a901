//! The ZeroMQ data path: a ROUTER socket serving many env sessions at once.
//!
//! One router thread owns the ROUTER socket (ZeroMQ sockets are not thread-safe) and does
//! the I/O. Sessions ([`Session`]) are pinned to worker threads, which decode, validate,
//! decide and encode, and send their replies back over an inproc PUSH/PULL pair, so a slow
//! decision (a learner, a large Step) never stalls the other envs. A small Step of a policy
//! that decides inline (fixed rules, `PolicyFactory::decides_inline`) is served on the router
//! thread itself when its session has nothing queued: a few microseconds of work, less than
//! the two thread hand-offs it saves.
//!
//! A socket monitor reports dropped connections: a session whose connection goes away
//! without Close (the env died, or sent a message above the hard cap, which ZeroMQ refuses
//! by disconnecting) ends at once, with a WARN line naming the env. Sessions silent for
//! longer than the session timeout are expired. On shutdown every open session gets an
//! UNAVAILABLE error (request id 0) and the ipc socket files are removed.

use crate::rawmsg::RawMsg;
use crate::session::{After, Session, SessionConfig, WarnLimiter};
use crate::shared::{Counters, Shared};
use crate::trace::TraceSink;
use malcolm_proto::bridge::{envelope::Body, Direction, ErrorCode};
use malcolm_proto::codec::{self, DEFAULT_MAX_MESSAGE_BYTES, HARD_CAP_FACTOR};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// An env silent this long is gone: long enough for a slow OMNeT++ event burst between two
/// decision points, short enough that a crashed env does not hold a session for minutes.
pub const DEFAULT_SESSION_TIMEOUT: Duration = Duration::from_secs(60);
/// How often the router wakes with nothing to do (shutdown check, expiry sweep).
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_millis(50);
/// Steps up to this size of an inline-deciding policy are served on the router thread: a
/// 64-node v2 Step is ~7 KB; this bounds what one env can cost the others to ~0.1 ms.
pub const INLINE_MAX_BYTES: usize = 64 << 10;
/// Identities remembered after their session ended (a late message gets SESSION_EXPIRED).
const ENDED_MEMORY: usize = 4096;
/// How long the goodbyes of a shutdown may take to leave.
const SHUTDOWN_LINGER_MS: i32 = 500;

/// Worker threads by default: one per core (the router thread mostly sleeps in poll).
pub fn default_workers() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}

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
    /// Worker threads deciding for the sessions; 0 decides everything on the router thread
    /// (one slow decision then stalls every env: only for a single env and a cheap policy).
    pub workers: usize,
    pub session_timeout: Duration,
    /// Messages above this get OVERSIZED; above `HARD_CAP_FACTOR` times it ZeroMQ drops the
    /// connection.
    pub max_message_bytes: usize,
    pub poll_interval: Duration,
    /// Limits and announcements of each session (its `max_message_bytes` is set from above).
    pub session: SessionConfig,
}

impl Default for BridgeConfig {
    fn default() -> Self {
        Self {
            endpoints: vec!["tcp://127.0.0.1:5555".into()],
            workers: default_workers(),
            session_timeout: DEFAULT_SESSION_TIMEOUT,
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
            poll_interval: DEFAULT_POLL_INTERVAL,
            session: SessionConfig::default(),
        }
    }
}

impl BridgeConfig {
    /// The size above which ZeroMQ drops the connection instead of delivering the message.
    pub fn hard_cap_bytes(&self) -> usize {
        self.max_message_bytes.saturating_mul(HARD_CAP_FACTOR)
    }
}

/// A cloneable shutdown flag for the blocking threads.
#[derive(Debug, Clone, Default)]
pub struct Shutdown(Arc<std::sync::atomic::AtomicBool>);

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
    monitor: zmq::Socket,
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
            .set_maxmsgsize(cfg.hard_cap_bytes().min(i64::MAX as usize) as i64)
            .map_err(zerr("maxmsgsize"))?;
        let monitor_ep = format!(
            "inproc://malcolm-monitor-{}",
            BRIDGE_IDS.fetch_add(1, Ordering::Relaxed)
        );
        router
            .monitor(&monitor_ep, zmq::SocketEvent::DISCONNECTED as i32)
            .map_err(zerr("monitor"))?;
        let monitor = ctx.socket(zmq::PAIR).map_err(zerr("monitor socket"))?;
        monitor
            .connect(&monitor_ep)
            .map_err(zerr("monitor connect"))?;
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
            monitor,
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
        mut self,
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
        let mut session_cfg = self.cfg.session.clone();
        session_cfg.max_message_bytes = self.cfg.max_message_bytes;
        let handler = Handler {
            shared: shared.clone(),
            trace,
            max_message_bytes: self.cfg.max_message_bytes,
        };
        let n_workers = self.cfg.workers;
        let mut senders = Vec::with_capacity(n_workers);
        let mut handles: Vec<JoinHandle<()>> = Vec::with_capacity(n_workers);
        for w in 0..n_workers {
            let (tx, rx) = mpsc::channel::<Job>();
            let push = self.ctx.socket(zmq::PUSH).map_err(zerr("push socket"))?;
            push.set_linger(0).map_err(zerr("linger"))?;
            push.connect(&reply_ep).map_err(zerr("connect replies"))?;
            let handler = handler.clone();
            let h = std::thread::Builder::new()
                .name(format!("bridge-worker-{w}"))
                .spawn(move || worker(handler, push, rx))
                .map_err(|e| BridgeError::Worker(e.to_string()))?;
            senders.push(tx);
            handles.push(h);
        }
        // A bridge per run or episode (in-process training) says so at DEBUG only.
        if self.cfg.session.announce {
            tracing::info!(
                endpoints = ?self.endpoints,
                workers = n_workers,
                max_message_bytes = self.cfg.max_message_bytes,
                hard_cap_bytes = self.cfg.hard_cap_bytes(),
                "bridge serving"
            );
        } else {
            tracing::debug!(endpoints = ?self.endpoints, workers = n_workers, "bridge serving");
        }
        let raw_router = self.router.as_mut_ptr();
        let mut router = Router {
            raw_router,
            msg: RawMsg::new(),
            bridge: &self,
            handler,
            session_cfg,
            workers: senders,
            routes: HashMap::new(),
            ended: HashMap::new(),
            next_session: 1,
            warn: WarnLimiter::default(),
            buf: Vec::new(),
        };
        let result = router.route(&pull, &shutdown);
        router.goodbye();
        drop(router);
        for h in handles {
            h.join()
                .map_err(|_| BridgeError::Worker("a worker panicked".into()))?;
        }
        let announce = self.cfg.session.announce;
        self.close();
        if announce {
            tracing::info!("bridge stopped");
        } else {
            tracing::debug!("bridge stopped");
        }
        result
    }

    /// Unbinds, lets the goodbyes leave, and removes the ipc socket files.
    fn close(self) {
        let _ = self.router.set_linger(SHUTDOWN_LINGER_MS);
        for ep in &self.endpoints {
            let _ = self.router.unbind(ep);
            if let Some(path) = ep.strip_prefix("ipc://") {
                if let Err(e) = std::fs::remove_file(path) {
                    if e.kind() != std::io::ErrorKind::NotFound {
                        tracing::warn!(path, error = %e, "could not remove the ipc socket file");
                    }
                }
            }
        }
    }
}

/// Turns request bytes into reply bytes for a session (on a worker or the router thread).
#[derive(Clone)]
struct Handler {
    shared: Arc<Shared>,
    trace: Option<TraceSink>,
    max_message_bytes: usize,
}

/// One session as the router and the workers share it.
type SharedSession = Arc<Mutex<Session>>;

impl Handler {
    fn handle(
        &self,
        session: &SharedSession,
        payload: &[u8],
        received: Instant,
        reply: &mut Vec<u8>,
    ) -> After {
        let mut s = session.lock().expect("session lock");
        if let Some(t) = &self.trace {
            t.record(s.id, Direction::EnvToAgent, payload, 0);
        }
        let (env, after, is_step) = s.handle_bytes(payload, self.max_message_bytes);
        codec::encode_envelope_into(&env, reply);
        let decide_ns = received.elapsed().as_nanos() as u64;
        if is_step {
            self.shared.record_decide_ns(decide_ns);
        }
        if let Some(t) = &self.trace {
            t.record(s.id, Direction::AgentToEnv, reply, decide_ns);
        }
        after
    }
}

enum Job {
    Message {
        session: SharedSession,
        /// Identity frame (and the empty delimiter of REQ peers), echoed before the reply.
        envelope_frames: Vec<Vec<u8>>,
        payload: Vec<u8>,
        received: Instant,
    },
}

/// A worker: handles its sessions' messages and queues the replies for the router thread,
/// prefixed with a flag frame saying whether the session closed.
fn worker(handler: Handler, push: zmq::Socket, rx: mpsc::Receiver<Job>) {
    for job in rx {
        match job {
            Job::Message {
                session,
                envelope_frames,
                payload,
                received,
            } => {
                let mut reply = Vec::new();
                let after = handler.handle(&session, &payload, received, &mut reply);
                let mut frames = Vec::with_capacity(envelope_frames.len() + 2);
                frames.push(vec![(after == After::Closed) as u8]);
                frames.extend(envelope_frames);
                frames.push(reply);
                if let Err(e) = push.send_multipart(frames, 0) {
                    tracing::error!(error = %e, "worker could not queue a reply");
                }
            }
        }
    }
}

/// Where an identity's session stands.
struct Route {
    session: SharedSession,
    worker: usize,
    last_seen: Instant,
    /// Messages handed to the worker and not answered yet.
    in_flight: u32,
    /// The connection's file descriptor (ZeroMQ's `ZMQ_SRCFD`), to match disconnects.
    fd: Option<i32>,
    /// Routing frames of the last request (identity and any REQ delimiter).
    frames: Vec<Vec<u8>>,
}

/// A message from an env: routing frames, payload, the connection's descriptor.
type Incoming = (Vec<Vec<u8>>, Vec<u8>, Option<i32>);

/// Why an identity has no session any more.
#[derive(Debug, Clone, Copy)]
enum Ended {
    Expired,
    Closed,
}

struct Router<'a> {
    bridge: &'a Bridge,
    handler: Handler,
    session_cfg: SessionConfig,
    workers: Vec<mpsc::Sender<Job>>,
    routes: HashMap<Vec<u8>, Route>,
    ended: HashMap<Vec<u8>, Ended>,
    next_session: u64,
    /// For messages that get refused before any session sees them.
    warn: WarnLimiter,
    buf: Vec<u8>,
    /// The ROUTER socket as the C API sees it (for [`RawMsg::recv`]).
    raw_router: *mut std::os::raw::c_void,
    msg: RawMsg,
}

impl Router<'_> {
    fn route(&mut self, pull: &zmq::Socket, shutdown: &Shutdown) -> Result<(), BridgeError> {
        let mut last_sweep = Instant::now();
        let poll_ms = self.bridge.cfg.poll_interval.as_millis().max(1) as i64;
        while !shutdown.is_triggered() {
            let (from_envs, from_workers) = {
                let mut items = [
                    self.bridge.router.as_poll_item(zmq::POLLIN),
                    pull.as_poll_item(zmq::POLLIN),
                    self.bridge.monitor.as_poll_item(zmq::POLLIN),
                ];
                zmq::poll(&mut items, poll_ms).map_err(zerr("poll"))?;
                (items[0].is_readable(), items[1].is_readable())
            };
            if from_workers {
                while let Ok(parts) = pull.recv_multipart(zmq::DONTWAIT) {
                    self.forward_reply(parts);
                }
            }
            if from_envs {
                // Bounded batch so replies are forwarded between bursts.
                for _ in 0..256 {
                    // Disconnects first: a message from a reused descriptor must not be
                    // taken for the dropped connection's.
                    self.read_monitor();
                    let msg = match self.recv() {
                        Ok(Some(m)) => m,
                        Ok(None) => break,
                        Err(e) => return Err(e),
                    };
                    self.on_message(msg);
                }
            }
            self.read_monitor();
            if last_sweep.elapsed() >= self.bridge.cfg.poll_interval {
                last_sweep = Instant::now();
                self.expire_silent();
            }
        }
        Ok(())
    }

    /// One multipart message from an env: routing frames, payload, and the connection's fd.
    fn recv(&mut self) -> Result<Option<Incoming>, BridgeError> {
        let mut frames = Vec::with_capacity(2);
        let mut fd = None;
        loop {
            let flags = if frames.is_empty() { zmq::DONTWAIT } else { 0 };
            match self.msg.recv(self.raw_router, flags) {
                Ok(()) => {}
                Err(zmq::Error::EAGAIN) if frames.is_empty() => return Ok(None),
                Err(e) => return Err(zerr("recv")(e)),
            }
            let more = self.msg.more();
            if !more {
                fd = self.msg.source_fd();
            }
            frames.push(self.msg.data().to_vec());
            if !more {
                break;
            }
        }
        if frames.len() < 2 {
            return Ok(Some((frames, Vec::new(), fd)));
        }
        let payload = frames.pop().expect("len >= 2");
        Ok(Some((frames, payload, fd)))
    }

    fn on_message(&mut self, (frames, payload, fd): Incoming) {
        if frames.len() < 2 && payload.is_empty() {
            return; // a ROUTER always prefixes the identity; nothing to answer
        }
        let identity = frames[0].clone();
        let now = Instant::now();
        if !self.routes.contains_key(&identity) {
            if let Some(why) = self.ended.get(&identity).copied() {
                // Only a Hello reopens an identity whose session ended.
                if !is_hello(&payload) {
                    let rid = codec::peek_header(&payload).request_id.unwrap_or(0);
                    let msg = match why {
                        Ended::Expired => "session expired (silent past the session timeout, or its connection dropped); send Hello to start again",
                        Ended::Closed => "session closed; send Hello to start again",
                    };
                    Counters::add(&self.handler.shared.counters.errors, 1);
                    if let Some(suppressed) = self.warn.allow() {
                        tracing::warn!(reason = ?why, suppressed, "message for an ended session refused");
                    }
                    let reply = codec::error_envelope(rid, ErrorCode::SessionExpired, msg);
                    self.send(frames, &codec::encode_envelope(&reply));
                    return;
                }
                self.ended.remove(&identity);
            }
            let id = self.next_session;
            self.next_session += 1;
            let session = Session::new(id, self.handler.shared.clone(), self.session_cfg.clone());
            self.routes.insert(
                identity.clone(),
                Route {
                    session: Arc::new(Mutex::new(session)),
                    worker: if self.workers.is_empty() {
                        0
                    } else {
                        (id as usize) % self.workers.len()
                    },
                    last_seen: now,
                    in_flight: 0,
                    fd,
                    frames: frames.clone(),
                },
            );
        }
        let route = self.routes.get_mut(&identity).expect("inserted above");
        route.last_seen = now;
        route.fd = fd.or(route.fd);
        route.frames.clone_from(&frames);
        let inline = self.workers.is_empty()
            || (route.in_flight == 0
                && payload.len() <= INLINE_MAX_BYTES
                && self.handler.shared.decides_inline());
        if inline {
            let session = route.session.clone();
            let mut reply = std::mem::take(&mut self.buf);
            let after = self.handler.handle(&session, &payload, now, &mut reply);
            self.send(frames, &reply);
            self.buf = reply;
            if after == After::Closed {
                self.end(&identity, Ended::Closed);
            }
            return;
        }
        route.in_flight += 1;
        let job = Job::Message {
            session: route.session.clone(),
            envelope_frames: frames,
            payload,
            received: now,
        };
        if self.workers[route.worker].send(job).is_err() {
            tracing::error!("a bridge worker has exited; the message is lost");
        }
    }

    fn send(&self, frames: Vec<Vec<u8>>, payload: &[u8]) {
        for f in frames {
            if let Err(e) = self.bridge.router.send(f, zmq::SNDMORE) {
                tracing::debug!(error = %e, "reply not sent");
                return;
            }
        }
        if let Err(e) = self.bridge.router.send(payload, 0) {
            // The env is gone (a ROUTER drops unroutable messages; this is rarer).
            tracing::debug!(error = %e, "reply not sent");
        }
    }

    /// A worker's reply: [closed flag, routing frames.., payload].
    fn forward_reply(&mut self, mut parts: Vec<Vec<u8>>) {
        if parts.len() < 3 {
            return;
        }
        let closed = parts.remove(0).first() == Some(&1);
        let identity = parts[0].clone();
        let payload = parts.pop().expect("len >= 2");
        if let Some(r) = self.routes.get_mut(&identity) {
            r.in_flight = r.in_flight.saturating_sub(1);
        }
        self.send(parts, &payload);
        if closed {
            self.end(&identity, Ended::Closed);
        }
    }

    /// Forgets an identity's route, remembering why (for its late messages).
    fn end(&mut self, identity: &[u8], why: Ended) {
        self.routes.remove(identity);
        if self.ended.len() >= ENDED_MEMORY {
            self.ended.clear();
        }
        self.ended.insert(identity.to_vec(), why);
    }

    fn expire_silent(&mut self) {
        let timeout = self.bridge.cfg.session_timeout;
        let stale: Vec<Vec<u8>> = self
            .routes
            .iter()
            .filter(|(_, r)| r.in_flight == 0 && r.last_seen.elapsed() > timeout)
            .map(|(k, _)| k.clone())
            .collect();
        for identity in stale {
            let r = &self.routes[&identity];
            let mut s = r.session.lock().expect("session lock");
            let env = s.env_id().to_string();
            if s.expire() {
                tracing::warn!(
                    session = s.id,
                    env = %env,
                    silent_s = timeout.as_secs_f64(),
                    "env silent past the session timeout: session expired, partial episode discarded"
                );
            }
            drop(s);
            self.end(&identity, Ended::Expired);
        }
    }

    /// Disconnect events: the sessions on that connection end now.
    fn read_monitor(&mut self) {
        while let Ok(parts) = self.bridge.monitor.recv_multipart(zmq::DONTWAIT) {
            let Some(fd) = monitor_fd(&parts) else {
                continue;
            };
            let gone: Vec<Vec<u8>> = self
                .routes
                .iter()
                .filter(|(_, r)| r.fd == Some(fd))
                .map(|(k, _)| k.clone())
                .collect();
            for identity in gone {
                let r = &self.routes[&identity];
                let mut s = r.session.lock().expect("session lock");
                let env = s.env_id().to_string();
                if s.expire() {
                    Counters::add(&self.handler.shared.counters.disconnects, 1);
                    tracing::warn!(
                        session = s.id,
                        env = %env,
                        hard_cap_bytes = self.bridge.cfg.hard_cap_bytes(),
                        "env disconnected without Close (it died, or ZeroMQ dropped it for a \
                         message above the hard cap): session ended, partial episode discarded"
                    );
                }
                drop(s);
                self.routes.remove(&identity);
            }
        }
    }

    /// Tells every open session the server is going away (UNAVAILABLE, request id 0).
    fn goodbye(&mut self) {
        let mut told = 0;
        for (_, r) in std::mem::take(&mut self.routes) {
            let version = {
                let s = r.session.lock().expect("session lock");
                if !s.is_active() {
                    continue;
                }
                s.version()
            };
            let bye = codec::encode_envelope(&codec::error_envelope_v(
                version,
                0,
                ErrorCode::Unavailable,
                "the agent server is shutting down",
            ));
            self.send(r.frames.clone(), &bye);
            told += 1;
        }
        if told > 0 {
            tracing::info!(
                envs = told,
                "told the connected envs that the server is shutting down"
            );
        }
    }
}

fn is_hello(payload: &[u8]) -> bool {
    matches!(
        codec::decode_envelope(payload, usize::MAX).map(|e| e.body),
        Ok(Some(Body::Hello(_)))
    )
}

/// The fd of a monitor event (first frame: u16 event, u32 value; DISCONNECTED's value is the
/// descriptor).
fn monitor_fd(parts: &[Vec<u8>]) -> Option<i32> {
    let f = parts.first()?;
    if f.len() < 6 {
        return None;
    }
    let event = u16::from_le_bytes([f[0], f[1]]);
    if event != zmq::SocketEvent::DISCONNECTED as u16 {
        return None;
    }
    Some(i32::from_le_bytes([f[2], f[3], f[4], f[5]]))
}
