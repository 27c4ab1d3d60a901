//! Helpers shared by the integration tests: a bridge on a free port, a raw DEALER env client,
//! a hand-built rack and Step.
#![allow(dead_code)]

use malcolm_policies::{Decision, Policy, PolicyError, PolicyFactory};
use malcolm_proto::bridge::{envelope::Body, *};
use malcolm_proto::codec::{decode_envelope, encode_envelope};
use malcolm_proto::{envelope, Envelope};
use malcolm_serve::bridge::{Bridge, BridgeConfig, Shutdown};
use malcolm_serve::session::SessionConfig;
use malcolm_serve::shared::Shared;
use std::sync::Arc;
use std::time::Duration;

/// Places every task on the node with the shortest fresh queue (ties: lowest id).
pub struct ShortestQueue;
impl Policy for ShortestQueue {
    fn decide(&mut self, step: &Step, out: &mut Decision) -> Result<(), PolicyError> {
        let best = step
            .nodes
            .iter()
            .min_by_key(|n| (n.heartbeat.as_ref().map_or(0, |h| h.queue_len), n.node_id))
            .map_or(0, |n| n.node_id);
        out.targets.extend(step.tasks.iter().map(|_| best));
        Ok(())
    }
}
pub struct ShortestQueueFactory;
impl PolicyFactory for ShortestQueueFactory {
    fn name(&self) -> &str {
        "shortest-queue"
    }
    fn new_session(&self, _: &Hello, _: u64) -> Result<Box<dyn Policy>, PolicyError> {
        Ok(Box::new(ShortestQueue))
    }
}

/// Places every task on its origin node.
pub struct Local;
impl Policy for Local {
    fn decide(&mut self, step: &Step, out: &mut Decision) -> Result<(), PolicyError> {
        out.targets.extend(step.tasks.iter().map(|t| t.origin));
        Ok(())
    }
}
pub struct LocalFactory;
impl PolicyFactory for LocalFactory {
    fn name(&self) -> &str {
        "local"
    }
    fn new_session(&self, _: &Hello, _: u64) -> Result<Box<dyn Policy>, PolicyError> {
        Ok(Box::new(Local))
    }
}

/// A learner's server state ("malcolm-strict", "malcolm") with a replay small enough that it
/// starts updating within a test.
pub fn small_learner_shared(policy: &str) -> Arc<Shared> {
    let mut agents = malcolm_agents::AgentsConfig::default();
    agents.iqn.learn_start = 256;
    agents.iqn.batch = 64;
    Shared::new(policy, malcolm_serve::registry::maker(agents)).unwrap()
}

/// A bridge with `workers` workers on a free loopback TCP port.
pub fn bind_loopback_tcp(ctx: &zmq::Context, workers: usize) -> Bridge {
    malcolm_serve::server::bind(
        ctx,
        BridgeConfig {
            endpoints: vec!["tcp://127.0.0.1:*".into()],
            workers,
            ..BridgeConfig::default()
        },
    )
    .unwrap()
}

pub fn test_shared() -> Arc<Shared> {
    Shared::new(
        "shortest-queue",
        Box::new(
            |name: &str| -> Result<Arc<dyn PolicyFactory>, PolicyError> {
                match name {
                    "shortest-queue" => Ok(Arc::new(ShortestQueueFactory)),
                    "local" => Ok(Arc::new(LocalFactory)),
                    other => Err(PolicyError::UnknownPolicy(other.into())),
                }
            },
        ),
    )
    .unwrap()
}

pub struct Running {
    pub endpoint: String,
    pub shared: Arc<Shared>,
    pub shutdown: Shutdown,
    pub thread: Option<std::thread::JoinHandle<()>>,
    pub ctx: zmq::Context,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.shutdown.trigger();
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
    }
}

pub fn start_bridge(session_timeout: Duration, max_message_bytes: usize) -> Running {
    start_bridge_with(session_timeout, max_message_bytes, 2)
}

/// `workers` = 0 handles sessions on the router thread.
pub fn start_bridge_with(
    session_timeout: Duration,
    max_message_bytes: usize,
    workers: usize,
) -> Running {
    start_bridge_of(
        test_shared(),
        SessionConfig::default(),
        session_timeout,
        max_message_bytes,
        workers,
    )
}

/// A bridge serving `shared` with these session limits, on a free tcp loopback port.
pub fn start_bridge_of(
    shared: Arc<Shared>,
    session: SessionConfig,
    session_timeout: Duration,
    max_message_bytes: usize,
    workers: usize,
) -> Running {
    let ctx = zmq::Context::new();
    let bridge = Bridge::bind(
        &ctx,
        BridgeConfig {
            endpoints: vec!["tcp://127.0.0.1:*".into()],
            workers,
            session_timeout,
            max_message_bytes,
            poll_interval: Duration::from_millis(20),
            session,
        },
    )
    .unwrap();
    let endpoint = bridge.endpoints()[0].clone();
    let shutdown = Shutdown::new();
    let (s2, sd2) = (shared.clone(), shutdown.clone());
    let thread = std::thread::spawn(move || bridge.run(s2, None, sd2).unwrap());
    Running {
        endpoint,
        shared,
        shutdown,
        thread: Some(thread),
        ctx,
    }
}

/// A raw env client: one DEALER socket, lockstep, 5 s receive timeout.
pub struct RawEnv {
    pub sock: zmq::Socket,
    pub next_id: u64,
}

impl RawEnv {
    pub fn connect(ctx: &zmq::Context, endpoint: &str) -> Self {
        let sock = ctx.socket(zmq::DEALER).unwrap();
        sock.set_linger(0).unwrap();
        sock.set_rcvtimeo(5000).unwrap();
        sock.connect(endpoint).unwrap();
        Self { sock, next_id: 1 }
    }

    pub fn send_raw(&mut self, bytes: &[u8]) -> Envelope {
        self.sock.send(bytes, 0).unwrap();
        let reply = self.sock.recv_bytes(0).expect("reply within the timeout");
        decode_envelope(&reply, usize::MAX).expect("agent replies decode")
    }

    pub fn request(&mut self, body: Body) -> Envelope {
        let id = self.next_id;
        self.next_id += 1;
        let reply = self.send_raw(&encode_envelope(&envelope(id, body)));
        assert_eq!(reply.request_id, id, "request id echoed");
        reply
    }
}

/// A Hello of a v1 env (it offers only version 1: the raw client speaks v1).
pub fn hello(n: u32, env_id: &str) -> Hello {
    let mut h = malcolm_serve::synthetic::synthetic_hello(n, env_id);
    h.protocol_versions = vec![1];
    h
}

/// A Step of `n` nodes where node `(k % n)` has the shortest queue, with `tasks` tasks.
pub fn step(n: u32, episode: u64, index: u64, tasks: u32, k: u32) -> Step {
    Step {
        sim_time_ns: index * 1000,
        episode,
        step_index: index,
        nodes: (0..n)
            .map(|i| NodeState {
                node_id: i,
                sth: Some(Sth {
                    buckets: vec![1; 16],
                    total_tasks: 16,
                    min_slack_us: -1,
                    sum_load_us: 100,
                }),
                heartbeat: Some(HeartbeatFields {
                    node_id: i,
                    queue_len: if i == k % n { 1 } else { 5 + i },
                    ..Default::default()
                }),
                gst: None,
                utilisation: 0.5,
            })
            .collect(),
        links: vec![],
        tasks: (0..tasks)
            .map(|t| PendingTask {
                task_id: index * 1000 + t as u64,
                origin: t % n,
                size_bytes: 1024,
                service_estimate_ns: 10_000,
                deadline_ns: index * 1000 + 50_000,
                arrival_ns: index * 1000,
                class: 0,
            })
            .collect(),
        outcomes: vec![],
        ..Default::default()
    }
}

pub fn expect_error(env: &Envelope, code: ErrorCode) -> String {
    match &env.body {
        Some(Body::Error(e)) => {
            assert_eq!(
                e.code,
                code as i32,
                "error was {:?}: {}",
                e.code(),
                e.message
            );
            e.message.clone()
        }
        other => panic!("expected {code:?}, got {other:?}"),
    }
}

pub fn expect_placement(env: &Envelope) -> &Placement {
    match &env.body {
        Some(Body::Placement(p)) => p,
        other => panic!("expected a Placement, got {other:?}"),
    }
}
