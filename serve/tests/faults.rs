//! The bridge's strictness and the fault campaign's findings, one test per bad input or
//! fault, over real ZeroMQ sockets (tcp on loopback, ipc in a temporary directory): size
//! limit and hard cap, node ids, request ids of undecodable input, codes after Close,
//! protocol expectations, task and pending-decision caps, one slow env not stalling the
//! others, disconnects, the goodbye on shutdown, the ipc file, Malcolm frozen, a learner
//! that cannot serve a rack, and a failed final save.

mod common;

use common::*;
use malcolm_policies::{Decision, Mode, Policy, PolicyError, PolicyFactory};
use malcolm_proto::bridge::{envelope::Body, *};
use malcolm_proto::codec::{decode_envelope, encode_envelope};
use malcolm_proto::envelope;
use malcolm_serve::bridge::{Bridge, BridgeConfig, Shutdown};
use malcolm_serve::server::{self, ServeOptions, ServerError};
use malcolm_serve::session::SessionConfig;
use malcolm_serve::shared::{Counters, Shared};
use malcolm_serve::synthetic::synthetic_step;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Waits up to 5 s for a counter to reach `want`.
fn wait_for(counter: &AtomicU64, want: u64) -> u64 {
    let until = Instant::now() + Duration::from_secs(5);
    loop {
        let v = Counters::get(counter);
        if v == want || Instant::now() > until {
            return v;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A bridge of `shared` with these session limits (2 workers, 30 s session timeout).
fn start_with(shared: Arc<Shared>, session: SessionConfig, max_message_bytes: usize) -> Running {
    start_bridge_of(
        shared,
        session,
        Duration::from_secs(30),
        max_message_bytes,
        2,
    )
}

fn welcomed(env: &Envelope) -> &Welcome {
    match &env.body {
        Some(Body::Welcome(w)) => w,
        other => panic!("expected a Welcome, got {other:?}"),
    }
}

#[test]
fn a_message_over_the_limit_gets_oversized_with_its_request_id() {
    let srv = start_bridge(Duration::from_secs(30), 64 << 10);
    let mut env = RawEnv::connect(&srv.ctx, &srv.endpoint);
    env.request(Body::Hello(hello(4, "big")));
    let big = encode_envelope(&envelope(77, Body::Step(step(4, 0, 0, 5000, 0))));
    assert!(big.len() > 64 << 10 && big.len() < 4 * (64 << 10));
    let r = env.send_raw(&big);
    assert_eq!(
        r.request_id, 77,
        "the header is read even when the body is too big"
    );
    let msg = expect_error(&r, ErrorCode::Oversized);
    assert!(msg.contains("65536"), "the limit is named: {msg}");
    // The session goes on.
    expect_placement(&env.request(Body::Step(step(4, 0, 0, 2, 1))));
}

#[test]
fn a_message_over_the_hard_cap_drops_the_connection_and_ends_the_session() {
    let srv = start_bridge(Duration::from_secs(30), 16 << 10);
    let mut env = RawEnv::connect(&srv.ctx, &srv.endpoint);
    env.request(Body::Hello(hello(4, "huge")));
    assert_eq!(Counters::get(&srv.shared.counters.envs_connected), 1);
    let huge = encode_envelope(&envelope(5, Body::Step(step(4, 0, 0, 5000, 0))));
    assert!(huge.len() > 4 * (16 << 10));
    env.sock.set_rcvtimeo(500).unwrap();
    env.sock.send(&huge[..], 0).unwrap();
    assert!(
        env.sock.recv_bytes(0).is_err(),
        "no reply above the hard cap"
    );
    // ZeroMQ dropped the connection; the bridge saw it and ended the session at once.
    assert_eq!(wait_for(&srv.shared.counters.disconnects, 1), 1);
    assert_eq!(wait_for(&srv.shared.counters.envs_connected, 0), 0);
    // Others are unaffected.
    let mut other = RawEnv::connect(&srv.ctx, &srv.endpoint);
    other.request(Body::Hello(hello(4, "other")));
    expect_placement(&other.request(Body::Step(step(4, 0, 0, 2, 1))));
}

#[test]
fn link_and_heartbeat_node_ids_out_of_range_are_refused() {
    let srv = start_bridge(Duration::from_secs(30), 1 << 20);
    let mut env = RawEnv::connect(&srv.ctx, &srv.endpoint);
    env.request(Body::Hello(hello(4, "ids")));
    let mut s = step(4, 0, 0, 2, 0);
    s.links.push(LinkState {
        link_id: 1,
        node_id: 77,
        ..Default::default()
    });
    let msg = expect_error(&env.request(Body::Step(s)), ErrorCode::InvalidNodeId);
    assert!(msg.contains("77"), "{msg}");
    let mut s = step(4, 0, 0, 2, 0);
    s.nodes[1].heartbeat.as_mut().unwrap().node_id = 3;
    expect_error(&env.request(Body::Step(s)), ErrorCode::InvalidNodeId);
    // A GST entry holding another node's heartbeat.
    let mut s = synthetic_step(4, 2, 0);
    let g = s.nodes[0].gst.as_mut().unwrap();
    g.heartbeats[malcolm_proto::HEARTBEAT_LEN] = 200;
    g.age_ns[1] = 5;
    expect_error(&env.request(Body::Step(s)), ErrorCode::InvalidNodeId);
    expect_placement(&env.request(Body::Step(step(4, 0, 0, 2, 0))));
}

#[test]
fn an_undecodable_body_behind_a_readable_header_echoes_the_request_id() {
    let srv = start_bridge(Duration::from_secs(30), 1 << 20);
    let mut env = RawEnv::connect(&srv.ctx, &srv.endpoint);
    // Field 1 = 1, field 2 = 4242, field 11 (Step) of 3 bytes that do not decode.
    let mut bytes = vec![0x08, 0x01, 0x10];
    let mut id = 4242u64;
    while id >= 0x80 {
        bytes.push((id as u8 & 0x7f) | 0x80);
        id >>= 7;
    }
    bytes.push(id as u8);
    bytes.extend_from_slice(&[0x5a, 0x03, 0xff, 0xff, 0xff]);
    let r = env.send_raw(&bytes);
    assert_eq!(r.request_id, 4242);
    expect_error(&r, ErrorCode::Malformed);
    // Not even a header: request id 0, as the proto documents.
    let r = env.send_raw(&[0xff; 8]);
    assert_eq!(r.request_id, 0);
    expect_error(&r, ErrorCode::Malformed);
}

#[test]
fn a_step_after_close_is_session_expired() {
    let srv = start_bridge(Duration::from_secs(30), 1 << 20);
    let mut env = RawEnv::connect(&srv.ctx, &srv.endpoint);
    env.request(Body::Hello(hello(4, "closer")));
    expect_placement(&env.request(Body::Step(step(4, 0, 0, 1, 0))));
    let r = env.request(Body::Close(Close {
        reason: "done".into(),
    }));
    assert!(matches!(r.body, Some(Body::Ack(_))));
    expect_error(
        &env.request(Body::Step(step(4, 0, 1, 1, 0))),
        ErrorCode::SessionExpired,
    );
    // A Hello starts again.
    welcomed(&env.request(Body::Hello(hello(4, "closer"))));
}

#[test]
fn a_step_index_that_skips_ahead_is_a_protocol_violation() {
    let srv = start_bridge(Duration::from_secs(30), 1 << 20);
    let mut env = RawEnv::connect(&srv.ctx, &srv.endpoint);
    env.request(Body::Hello(hello(4, "skip")));
    expect_placement(&env.request(Body::Step(step(4, 0, 0, 1, 0))));
    let msg = expect_error(
        &env.request(Body::Step(step(4, 0, 3, 1, 0))),
        ErrorCode::ProtocolViolation,
    );
    assert!(msg.contains("skips ahead"), "{msg}");
    expect_placement(&env.request(Body::Step(step(4, 0, 1, 1, 0))));
}

#[test]
fn an_episode_end_with_the_wrong_step_count_is_a_protocol_violation() {
    let srv = start_bridge(Duration::from_secs(30), 1 << 20);
    let mut env = RawEnv::connect(&srv.ctx, &srv.endpoint);
    env.request(Body::Hello(hello(4, "count")));
    for i in 0..3 {
        expect_placement(&env.request(Body::Step(step(4, 0, i, 1, 0))));
    }
    let end = |steps| {
        Body::EpisodeEnd(EpisodeEnd {
            episode: 0,
            steps,
            sim_time_ns: 10_000,
            ..Default::default()
        })
    };
    expect_error(&env.request(end(5)), ErrorCode::ProtocolViolation);
    assert!(matches!(env.request(end(3)).body, Some(Body::Ack(_))));
}

#[test]
fn simulated_time_that_goes_back_is_a_protocol_violation() {
    let srv = start_bridge(Duration::from_secs(30), 1 << 20);
    let mut env = RawEnv::connect(&srv.ctx, &srv.endpoint);
    env.request(Body::Hello(hello(4, "clock")));
    expect_placement(&env.request(Body::Step(step(4, 0, 0, 1, 0))));
    let mut s = step(4, 0, 1, 1, 0);
    s.sim_time_ns = 500;
    expect_placement(&env.request(Body::Step(s)));
    let mut s = step(4, 0, 2, 1, 0);
    s.sim_time_ns = 100;
    let msg = expect_error(&env.request(Body::Step(s)), ErrorCode::ProtocolViolation);
    assert!(msg.contains("goes back"), "{msg}");
}

#[test]
fn a_duplicate_env_id_is_refused_while_its_session_is_open() {
    let srv = start_bridge(Duration::from_secs(30), 1 << 20);
    let mut first = RawEnv::connect(&srv.ctx, &srv.endpoint);
    welcomed(&first.request(Body::Hello(hello(4, "twin"))));
    let mut second = RawEnv::connect(&srv.ctx, &srv.endpoint);
    let msg = expect_error(
        &second.request(Body::Hello(hello(4, "twin"))),
        ErrorCode::InvalidArgument,
    );
    assert!(msg.contains("twin"), "{msg}");
    first.request(Body::Close(Close::default()));
    welcomed(&second.request(Body::Hello(hello(4, "twin"))));
}

#[test]
fn too_many_tasks_in_one_step_are_refused() {
    let srv = start_with(
        test_shared(),
        SessionConfig {
            max_tasks_per_step: 8,
            ..SessionConfig::default()
        },
        1 << 20,
    );
    let mut env = RawEnv::connect(&srv.ctx, &srv.endpoint);
    let w = env.request(Body::Hello(hello(4, "tasks")));
    assert_eq!(
        welcomed(&w).max_tasks_per_step,
        8,
        "the limit is in the Welcome"
    );
    let msg = expect_error(
        &env.request(Body::Step(step(4, 0, 0, 9, 0))),
        ErrorCode::InvalidArgument,
    );
    assert!(msg.contains("limit 8"), "{msg}");
    expect_placement(&env.request(Body::Step(step(4, 0, 0, 8, 0))));
}

#[test]
fn too_many_pending_decisions_are_refused_and_outcomes_free_them() {
    let srv = start_with(
        test_shared(),
        SessionConfig {
            max_pending_decisions: 10,
            ..SessionConfig::default()
        },
        1 << 20,
    );
    let mut env = RawEnv::connect(&srv.ctx, &srv.endpoint);
    env.request(Body::Hello(hello(4, "pending")));
    expect_placement(&env.request(Body::Step(step(4, 0, 0, 6, 0))));
    let msg = expect_error(
        &env.request(Body::Step(step(4, 0, 1, 6, 0))),
        ErrorCode::InvalidArgument,
    );
    assert!(msg.contains("limit 10"), "{msg}");
    // Outcomes of three placed tasks make room for them.
    let mut s = step(4, 0, 1, 6, 0);
    s.outcomes = (0..3)
        .map(|t| TaskOutcome {
            task_id: t,
            ..Default::default()
        })
        .collect();
    expect_placement(&env.request(Body::Step(s)));
}

/// Sleeps `delay` in every decision of envs whose id starts with "slow".
struct Sleepy(Duration);
struct SleepyPolicy(Duration);
impl Policy for SleepyPolicy {
    fn decide(&mut self, step: &Step, out: &mut Decision) -> Result<(), PolicyError> {
        std::thread::sleep(self.0);
        out.targets.extend(step.tasks.iter().map(|t| t.origin));
        Ok(())
    }
}
impl PolicyFactory for Sleepy {
    fn name(&self) -> &str {
        "sleepy"
    }
    fn new_session(&self, hello: &Hello, _: u64) -> Result<Box<dyn Policy>, PolicyError> {
        let d = if hello.env_id.starts_with("slow") {
            self.0
        } else {
            Duration::ZERO
        };
        Ok(Box::new(SleepyPolicy(d)))
    }
}

#[test]
fn one_slow_env_does_not_stall_the_others() {
    let srv = start_with(
        Shared::fixed(Arc::new(Sleepy(Duration::from_millis(1500)))),
        SessionConfig::default(),
        1 << 20,
    );
    // Session 1 (the slow one) and session 2 land on different workers.
    let mut slow = RawEnv::connect(&srv.ctx, &srv.endpoint);
    slow.request(Body::Hello(hello(4, "slow")));
    let mut fast = RawEnv::connect(&srv.ctx, &srv.endpoint);
    fast.request(Body::Hello(hello(4, "fast")));
    slow.sock
        .send(
            encode_envelope(&envelope(100, Body::Step(step(4, 0, 0, 1, 0)))),
            0,
        )
        .unwrap();
    std::thread::sleep(Duration::from_millis(50));
    let t0 = Instant::now();
    for i in 0..20 {
        expect_placement(&fast.request(Body::Step(step(4, 0, i, 1, 0))));
    }
    let fast_took = t0.elapsed();
    assert!(
        fast_took < Duration::from_millis(1000),
        "20 fast Steps took {fast_took:?} while the slow env was deciding"
    );
    let r = decode_envelope(&slow.sock.recv_bytes(0).unwrap(), usize::MAX).unwrap();
    assert_eq!(r.request_id, 100);
    expect_placement(&r);
}

#[test]
fn an_env_whose_connection_drops_is_not_counted_as_connected() {
    let srv = start_bridge(Duration::from_secs(300), 1 << 20);
    {
        let mut env = RawEnv::connect(&srv.ctx, &srv.endpoint);
        env.request(Body::Hello(hello(4, "dropper")));
        expect_placement(&env.request(Body::Step(step(4, 0, 0, 1, 0))));
        assert_eq!(Counters::get(&srv.shared.counters.envs_connected), 1);
    } // the socket closes here, long before the 300 s session timeout
    assert_eq!(wait_for(&srv.shared.counters.envs_connected, 0), 0);
    assert_eq!(Counters::get(&srv.shared.counters.disconnects), 1);
    // Its env id is free again.
    let mut again = RawEnv::connect(&srv.ctx, &srv.endpoint);
    welcomed(&again.request(Body::Hello(hello(4, "dropper"))));
}

#[test]
fn shutdown_says_goodbye_to_the_envs_and_removes_the_ipc_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bridge.sock");
    let endpoint = format!("ipc://{}", path.display());
    let ctx = zmq::Context::new();
    let bridge = Bridge::bind(
        &ctx,
        BridgeConfig {
            endpoints: vec![endpoint.clone()],
            workers: 1,
            ..BridgeConfig::default()
        },
    )
    .unwrap();
    assert!(path.exists());
    let shared = test_shared();
    let shutdown = Shutdown::new();
    let thread = {
        let (shared, shutdown) = (shared.clone(), shutdown.clone());
        std::thread::spawn(move || bridge.run(shared, None, shutdown))
    };
    let mut env = RawEnv::connect(&ctx, &endpoint);
    let w = env.request(Body::Hello(hello(4, "ipc-env")));
    let version = w.protocol_version;
    expect_placement(&env.request(Body::Step(step(4, 0, 0, 1, 0))));
    shutdown.trigger();
    let bye = decode_envelope(&env.sock.recv_bytes(0).expect("a goodbye"), usize::MAX).unwrap();
    assert_eq!(bye.request_id, 0);
    assert_eq!(bye.protocol_version, version);
    let msg = expect_error(&bye, ErrorCode::Unavailable);
    assert!(msg.contains("shutting down"), "{msg}");
    thread.join().unwrap().unwrap();
    assert!(!path.exists(), "the ipc socket file is removed");
    assert_eq!(Counters::get(&shared.counters.envs_connected), 0);
}

#[test]
fn malcolm_in_frozen_mode_serves_from_its_weights() {
    let shared = small_learner_shared("malcolm");
    shared.set_mode(Mode::Frozen);
    let srv = start_with(shared, SessionConfig::default(), 1 << 20);
    let mut env = RawEnv::connect(&srv.ctx, &srv.endpoint);
    let w = env.request(Body::Hello(hello(4, "frozen")));
    assert_eq!(welcomed(&w).mode, Mode::Frozen.to_pb() as i32);
    for i in 0..5 {
        let mut s = synthetic_step(4, 3, i);
        s.episode = 0;
        s.step_index = i;
        let r = env.request(Body::Step(s));
        assert_eq!(expect_placement(&r).targets.len(), 3);
    }
}

#[test]
fn a_learner_that_cannot_serve_a_rack_refuses_at_hello_and_running_sessions_keep_theirs() {
    let shared = small_learner_shared("po2");
    let srv = start_with(shared.clone(), SessionConfig::default(), 1 << 20);
    let mut eight = RawEnv::connect(&srv.ctx, &srv.endpoint);
    eight.request(Body::Hello(hello(8, "eight")));
    expect_placement(&eight.request(Body::Step(synthetic_step(8, 2, 0))));
    // The operator switches to the learner; the first rack it meets sizes it.
    shared.set_policy("malcolm").unwrap();
    let mut four = RawEnv::connect(&srv.ctx, &srv.endpoint);
    let w = four.request(Body::Hello(hello(4, "four")));
    assert_eq!(welcomed(&w).policy, "malcolm");
    expect_placement(&four.request(Body::Step(synthetic_step(4, 2, 0))));
    // The running 8-node session keeps po2 instead of failing mid-episode ...
    for i in 1..4 {
        let r = eight.request(Body::Step(synthetic_step(8, 2, i)));
        expect_placement(&r);
    }
    // ... and a new 8-node env is refused at its Hello, with the reason.
    let mut another = RawEnv::connect(&srv.ctx, &srv.endpoint);
    let msg = expect_error(
        &another.request(Body::Hello(hello(8, "another"))),
        ErrorCode::InvalidArgument,
    );
    assert!(msg.contains("malcolm"), "{msg}");
}

#[test]
fn a_failed_final_save_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-dir").join("learner.safetensors");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let shared = small_learner_shared("malcolm-strict");
    let ctx = zmq::Context::new();
    let bridge = bind_loopback_tcp(&ctx, 1);
    let endpoint = bridge.endpoints()[0].clone();
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let running = rt.spawn(server::run(
        bridge,
        listener,
        shared,
        ServeOptions {
            checkpoint_on_exit: Some(missing.clone()),
            ..ServeOptions::default()
        },
        async {
            let _ = stop_rx.await;
        },
    ));
    // One session, so the learner has something to save.
    let mut env = RawEnv::connect(&ctx, &endpoint);
    env.request(Body::Hello(hello(4, "learner-env")));
    expect_placement(&env.request(Body::Step(synthetic_step(4, 2, 0))));
    stop_tx.send(()).unwrap();
    let result = rt.block_on(running).unwrap();
    match result {
        Err(ServerError::FinalSave { path, .. }) => {
            assert!(path.contains("no-such-dir"), "{path}")
        }
        other => panic!("expected a FinalSave error, got {other:?}"),
    }
    assert!(!missing.exists());
}
