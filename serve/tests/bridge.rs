//! The ZeroMQ data path over real loopback sockets: concurrent envs, and every kind of bad
//! input answered with an Error while the other envs carry on.

mod common;

use common::*;
use malcolm_proto::bridge::{envelope::Body, *};
use malcolm_proto::codec::encode_envelope;
use malcolm_proto::{envelope, Envelope};
use malcolm_serve::shared::Counters;
use std::time::{Duration, Instant};

#[test]
fn concurrent_envs_each_get_their_own_lockstep_session() {
    for workers in [0, 2] {
        concurrent_envs(workers);
    }
}

fn concurrent_envs(workers: usize) {
    let srv = start_bridge_with(Duration::from_secs(30), 1 << 20, workers);
    let threads: Vec<_> = (0..4u32)
        .map(|e| {
            let (ctx, ep) = (srv.ctx.clone(), srv.endpoint.clone());
            std::thread::spawn(move || {
                let mut env = RawEnv::connect(&ctx, &ep);
                let n = 8 + e;
                let w = env.request(Body::Hello(hello(n, &format!("env-{e}"))));
                assert!(matches!(w.body, Some(Body::Welcome(_))), "{w:?}");
                for i in 0..200u64 {
                    let k = (e as u64 * 7 + i) as u32;
                    let r = env.request(Body::Step(step(n, 0, i, 3, k)));
                    let p = expect_placement(&r);
                    assert_eq!(p.step_index, i);
                    // The policy picks the shortest queue of *this* env's Step.
                    assert_eq!(p.targets, vec![k % n; 3]);
                }
                let a = env.request(Body::EpisodeEnd(EpisodeEnd {
                    episode: 0,
                    steps: 200,
                    // At or after the last Step's simulated time (199 us).
                    sim_time_ns: 200 * 1000,
                    reason: EndReason::Truncated as i32,
                    ..Default::default()
                }));
                assert!(matches!(a.body, Some(Body::Ack(_))));
                // The next episode restarts the step index.
                expect_placement(&env.request(Body::Step(step(n, 1, 0, 1, 0))));
                let c = env.request(Body::Close(Close {
                    reason: "done".into(),
                }));
                assert!(matches!(c.body, Some(Body::Ack(_))));
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let c = &srv.shared.counters;
    assert_eq!(Counters::get(&c.steps), 4 * 201);
    assert_eq!(Counters::get(&c.decisions), 4 * (200 * 3 + 1));
    assert_eq!(Counters::get(&c.episodes), 4);
    assert_eq!(Counters::get(&c.envs_connected), 0);
    assert_eq!(Counters::get(&c.errors), 0);
}

#[test]
fn bad_input_gets_an_error_and_the_others_continue() {
    let srv = start_bridge(Duration::from_secs(30), 64 << 10);
    let mut good = RawEnv::connect(&srv.ctx, &srv.endpoint);
    good.request(Body::Hello(hello(4, "good")));
    let mut bad = RawEnv::connect(&srv.ctx, &srv.endpoint);

    // Garbage bytes.
    let r = bad.send_raw(&[0xff; 40]);
    expect_error(&r, ErrorCode::Malformed);
    expect_placement(&good.request(Body::Step(step(4, 0, 0, 2, 1))));

    // Step before Hello.
    let r = bad.request(Body::Step(step(4, 0, 0, 1, 0)));
    expect_error(&r, ErrorCode::ProtocolViolation);

    // Wrong protocol version: refused, request id echoed.
    let mut v2 = envelope(99, Body::Hello(hello(4, "bad")));
    v2.protocol_version = 2;
    let r = bad.send_raw(&encode_envelope(&v2));
    assert_eq!(r.request_id, 99);
    expect_error(&r, ErrorCode::VersionMismatch);

    // A rack the protocol cannot address, then a wrong STH config.
    expect_error(
        &bad.request(Body::Hello(hello(300, "bad"))),
        ErrorCode::InvalidArgument,
    );
    let mut h = hello(4, "bad");
    h.sth.as_mut().unwrap().buckets = 8;
    expect_error(&bad.request(Body::Hello(h)), ErrorCode::InvalidArgument);
    assert!(matches!(
        bad.request(Body::Hello(hello(4, "bad"))).body,
        Some(Body::Welcome(_))
    ));

    // Node ids out of range: task origin, node state id, outcome node.
    let mut s = step(4, 0, 0, 2, 0);
    s.tasks[1].origin = 4;
    expect_error(&bad.request(Body::Step(s)), ErrorCode::InvalidNodeId);
    let mut s = step(4, 0, 0, 2, 0);
    s.nodes[2].node_id = 9;
    expect_error(&bad.request(Body::Step(s)), ErrorCode::InvalidNodeId);
    let mut s = step(4, 0, 0, 2, 0);
    s.outcomes.push(TaskOutcome {
        node_id: 200,
        ..Default::default()
    });
    expect_error(&bad.request(Body::Step(s)), ErrorCode::InvalidNodeId);
    // A GST of the wrong size.
    let mut s = step(4, 0, 0, 2, 0);
    s.nodes[0].gst = Some(GlobalStateView {
        heartbeats: vec![0; 17],
        age_ns: vec![0; 4],
    });
    expect_error(&bad.request(Body::Step(s)), ErrorCode::InvalidArgument);
    // A step index that skips ahead.
    expect_error(
        &bad.request(Body::Step(step(4, 0, 5, 1, 0))),
        ErrorCode::ProtocolViolation,
    );
    // An agent-to-env message sent by an env.
    expect_error(
        &bad.request(Body::Ack(Ack {})),
        ErrorCode::ProtocolViolation,
    );
    // Oversized (over 64 KiB but under the hard cap): refused with an Error, not dropped.
    let big = encode_envelope(&envelope(5, Body::Step(step(4, 0, 0, 5000, 0))));
    assert!(
        big.len() > 64 << 10 && big.len() < 4 * (64 << 10),
        "{} bytes",
        big.len()
    );
    expect_error(&bad.send_raw(&big), ErrorCode::Oversized);

    // After all that, the bad session still works when it behaves ...
    let r = bad.request(Body::Step(step(4, 0, 0, 2, 3)));
    assert_eq!(expect_placement(&r).targets, vec![3, 3]);
    // ... and the good one never noticed.
    for i in 1..50 {
        expect_placement(&good.request(Body::Step(step(4, 0, i, 2, 2))));
    }
    assert!(Counters::get(&srv.shared.counters.errors) >= 11);
}

#[test]
fn an_env_that_vanishes_mid_episode_is_expired_and_the_others_continue() {
    for workers in [0, 2] {
        vanishing_env(workers);
    }
}

fn vanishing_env(workers: usize) {
    let srv = start_bridge_with(Duration::from_millis(300), 1 << 20, workers);
    let mut stayer = RawEnv::connect(&srv.ctx, &srv.endpoint);
    stayer.request(Body::Hello(hello(4, "stayer")));
    let mut leaver = RawEnv::connect(&srv.ctx, &srv.endpoint);
    leaver.request(Body::Hello(hello(4, "leaver")));
    for i in 0..10 {
        expect_placement(&leaver.request(Body::Step(step(4, 0, i, 1, 0))));
    }
    assert_eq!(Counters::get(&srv.shared.counters.envs_connected), 2);
    // The leaver goes silent; the stayer keeps stepping past the timeout.
    let t0 = Instant::now();
    let mut i = 0;
    while t0.elapsed() < Duration::from_millis(900) {
        expect_placement(&stayer.request(Body::Step(step(4, 0, i, 1, 1))));
        i += 1;
        std::thread::sleep(Duration::from_millis(10));
    }
    let c = &srv.shared.counters;
    assert_eq!(Counters::get(&c.sessions_expired), 1);
    assert_eq!(Counters::get(&c.envs_connected), 1);
    // A late message from the expired env is told so; a new Hello starts over.
    let r = leaver.request(Body::Step(step(4, 0, 10, 1, 0)));
    expect_error(&r, ErrorCode::SessionExpired);
    assert!(matches!(
        leaver.request(Body::Hello(hello(4, "leaver"))).body,
        Some(Body::Welcome(_))
    ));
    expect_placement(&leaver.request(Body::Step(step(4, 0, 0, 1, 2))));
}

#[test]
fn an_env_whose_process_dies_is_expired() {
    // The dying env is a real process: this test binary re-run as a child that connects,
    // sends Hello and a Step, then exits without Close.
    if let Ok(ep) = std::env::var("MALCOLM_TEST_DYING_ENV") {
        let ctx = zmq::Context::new();
        let mut env = RawEnv::connect(&ctx, &ep);
        env.request(Body::Hello(hello(4, "dying")));
        expect_placement(&env.request(Body::Step(step(4, 0, 0, 1, 0))));
        std::process::exit(0);
    }
    let srv = start_bridge(Duration::from_millis(300), 1 << 20);
    let status = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "an_env_whose_process_dies_is_expired",
            "--nocapture",
        ])
        .env("MALCOLM_TEST_DYING_ENV", &srv.endpoint)
        .status()
        .unwrap();
    assert!(status.success());
    let c = &srv.shared.counters;
    assert_eq!(Counters::get(&c.steps), 1);
    let t0 = Instant::now();
    while Counters::get(&c.sessions_expired) == 0 {
        assert!(t0.elapsed() < Duration::from_secs(5), "never expired");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(Counters::get(&c.envs_connected), 0);
}

#[test]
fn a_silent_agent_is_a_timeout_not_a_hang() {
    // Nobody listens on this endpoint: the env's receive times out.
    let ctx = zmq::Context::new();
    let sock = ctx.socket(zmq::DEALER).unwrap();
    sock.set_linger(0).unwrap();
    sock.set_rcvtimeo(200).unwrap();
    sock.connect("tcp://127.0.0.1:9").unwrap();
    let env: Envelope = envelope(1, Body::Hello(hello(4, "x")));
    let _ = sock.send(encode_envelope(&env), zmq::DONTWAIT);
    let t0 = Instant::now();
    assert_eq!(sock.recv_bytes(0).unwrap_err(), zmq::Error::EAGAIN);
    assert!(t0.elapsed() < Duration::from_secs(2));
}

#[test]
fn switching_policy_takes_effect_at_the_next_step() {
    let srv = start_bridge(Duration::from_secs(30), 1 << 20);
    let mut env = RawEnv::connect(&srv.ctx, &srv.endpoint);
    env.request(Body::Hello(hello(4, "sw")));
    assert_eq!(
        expect_placement(&env.request(Body::Step(step(4, 0, 0, 2, 3)))).targets,
        vec![3, 3]
    );
    srv.shared.set_policy("local").unwrap();
    // Local places each task on its origin (0 and 1).
    assert_eq!(
        expect_placement(&env.request(Body::Step(step(4, 0, 1, 2, 3)))).targets,
        vec![0, 1]
    );
    assert!(srv.shared.set_policy("no-such-policy").is_err());
    assert_eq!(srv.shared.policy_name(), "local");
}
