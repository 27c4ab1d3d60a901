//! Every bridge message survives encode/decode, and bad bytes are errors, never panics.

use malcolm_proto::bridge::{envelope::Body, *};
use malcolm_proto::codec::{decode_envelope, encode_envelope, DEFAULT_MAX_MESSAGE_BYTES};
use malcolm_proto::{envelope, heartbeat::Heartbeat, DecodeError, PROTOCOL_VERSION};
use prost::Message;

fn sample_step() -> Step {
    let gst: Vec<u8> = (0..4u8)
        .flat_map(|i| Heartbeat::from_values(i, 0, 500, 10, 40, 3, 1).encode())
        .collect();
    Step {
        sim_time_ns: 123_456_789,
        episode: 2,
        step_index: 77,
        nodes: (0..4)
            .map(|i| NodeState {
                node_id: i,
                sth: Some(Sth {
                    buckets: (0..16).map(|b| b * i).collect(),
                    total_tasks: 120 * i,
                    min_slack_us: -5,
                    sum_load_us: 9999,
                }),
                heartbeat: Some(HeartbeatFields {
                    node_id: i,
                    flags: 1,
                    load_factor_milli: 950,
                    slack_p10_us: -3,
                    slack_p50_us: 12,
                    queue_len: 9,
                    policy_version: 4,
                }),
                gst: (i == 0).then(|| GlobalStateView {
                    heartbeats: gst.clone(),
                    age_ns: vec![0, 50_000, 50_000, u64::MAX],
                }),
                utilisation: 0.75,
            })
            .collect(),
        links: vec![LinkState {
            link_id: 3,
            node_id: 1,
            uplink: true,
            tx_rate_bps: 9.5e10,
            queue_bytes: 51_200,
            pfc_paused: true,
            ecn_marks: 4,
            pause_frames: 12,
            drops: 0,
        }],
        tasks: vec![PendingTask {
            task_id: 1 << 40,
            origin: 2,
            size_bytes: 4096,
            service_estimate_ns: 10_000,
            deadline_ns: 123_500_000,
            arrival_ns: 123_450_000,
            class: 1,
        }],
        outcomes: vec![TaskOutcome {
            task_id: 5,
            node_id: 3,
            origin: 0,
            kind: OutcomeKind::Missed as i32,
            arrival_ns: 1,
            finish_ns: 100,
            deadline_ns: 50,
            latency_ns: 99,
            class: 0,
            decided_at_step: 76,
        }],
        ..Default::default()
    }
}

fn all_bodies() -> Vec<Body> {
    vec![
        Body::Hello(Hello {
            env_id: "rack-sim-0".into(),
            simulator: "rack-sim".into(),
            scenario: "hetero".into(),
            seed: u64::MAX,
            nodes: vec![NodeSpec {
                node_id: 0,
                cores: 4,
                speed: 1.0,
                kind: "fast".into(),
                discipline: Discipline::Edf as i32,
            }],
            sth: Some(malcolm_proto::sth_config()),
            heartbeat_interval_ns: 50_000,
            parameters: [("rho".to_string(), "0.9".to_string())].into(),
            protocol_versions: vec![1, 2],
        }),
        Body::Step(sample_step()),
        Body::EpisodeEnd(EpisodeEnd {
            episode: 3,
            steps: 1000,
            reason: EndReason::Truncated as i32,
            outcomes: sample_step().outcomes,
            sim_time_ns: 1_000_000_000,
        }),
        Body::Close(Close {
            reason: "done".into(),
        }),
        Body::Welcome(Welcome {
            session_id: 9,
            policy: "malcolm-strict".into(),
            policy_version: 12,
            mode_name: "train".into(),
            step_budget_ns: 1_000_000,
            protocol_version: 2,
            mode: Mode::Train as i32,
            max_message_bytes: 8 << 20,
            max_tasks_per_step: 4096,
        }),
        Body::Placement(Placement {
            step_index: 77,
            targets: vec![3, 0, 255],
            policy_version: 12,
            scores: vec![-1.5, 0.25, f32::MAX],
            hold_ns: vec![0, 5000, 0],
        }),
        Body::Ack(Ack {}),
        Body::Error(Error {
            code: ErrorCode::InvalidNodeId as i32,
            message: "target 300 >= 16 nodes".into(),
        }),
    ]
}

#[test]
fn every_message_round_trips() {
    for (i, body) in all_bodies().into_iter().enumerate() {
        let env = envelope(i as u64 + 1, body);
        let bytes = encode_envelope(&env);
        let back = decode_envelope(&bytes, DEFAULT_MAX_MESSAGE_BYTES).unwrap();
        assert_eq!(back, env);
    }
}

#[test]
fn trace_records_round_trip_length_delimited() {
    let header = TraceHeader {
        protocol_version: PROTOCOL_VERSION,
        recorder: "test".into(),
        scenario: "hetero".into(),
        started_unix_ns: 1,
        policy: "jsq".into(),
    };
    let rec = TraceRecord {
        session_id: 4,
        t_ns: 10,
        direction: Direction::EnvToAgent as i32,
        envelope: encode_envelope(&envelope(1, Body::Step(sample_step()))),
        decide_ns: 0,
    };
    let mut buf = Vec::new();
    header.encode_length_delimited(&mut buf).unwrap();
    rec.encode_length_delimited(&mut buf).unwrap();
    let mut rd = &buf[..];
    assert_eq!(
        TraceHeader::decode_length_delimited(&mut rd).unwrap(),
        header
    );
    assert_eq!(TraceRecord::decode_length_delimited(&mut rd).unwrap(), rec);
    assert!(rd.is_empty());
}

#[test]
fn wrong_version_is_refused_with_the_request_id() {
    let mut env = envelope(42, Body::Ack(Ack {}));
    env.protocol_version = 3;
    let err = decode_envelope(&encode_envelope(&env), 1 << 20).unwrap_err();
    assert_eq!(
        err,
        DecodeError::VersionMismatch {
            got: 3,
            request_id: 42
        }
    );
    assert_eq!(err.code(), ErrorCode::VersionMismatch);
    assert_eq!(err.request_id(), 42);
}

#[test]
fn empty_body_and_oversize_are_refused() {
    let env = Envelope {
        protocol_version: PROTOCOL_VERSION,
        request_id: 7,
        body: None,
    };
    assert_eq!(
        decode_envelope(&encode_envelope(&env), 1 << 20).unwrap_err(),
        DecodeError::EmptyBody { request_id: 7 }
    );
    let big = encode_envelope(&envelope(1, Body::Step(sample_step())));
    assert!(matches!(
        decode_envelope(&big, 16),
        Err(DecodeError::Oversized { limit: 16, .. })
    ));
}

#[test]
fn every_truncation_of_a_valid_message_is_an_error_or_a_prefix_message_never_a_panic() {
    let bytes = encode_envelope(&envelope(9, Body::Step(sample_step())));
    for cut in 0..bytes.len() {
        // A protobuf prefix may still parse (fields are optional); it must never panic and
        // must never come back equal to the whole message.
        if let Ok(env) = decode_envelope(&bytes[..cut], DEFAULT_MAX_MESSAGE_BYTES) {
            assert_ne!(encode_envelope(&env), bytes);
        }
    }
}

#[test]
fn garbage_bytes_never_panic() {
    // A small deterministic xorshift stream: no dependency, same bytes every run.
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut errors = 0;
    for len in 0..2000usize {
        let buf: Vec<u8> = (0..len % 257)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        if decode_envelope(&buf, DEFAULT_MAX_MESSAGE_BYTES).is_err() {
            errors += 1;
        }
    }
    // Random bytes are almost never a valid current-version envelope with a body.
    assert!(
        errors > 1900,
        "only {errors} of 2000 garbage buffers refused"
    );
}

#[test]
fn known_garbage_is_malformed() {
    // 0xFF.. is an invalid varint key; a length prefix pointing past the end is truncated.
    for bad in [
        &[0xffu8; 12][..],
        &[0x0a, 0x50, 0x01][..],
        &[0x5a, 0x05, 0x08][..],
    ] {
        let err = decode_envelope(bad, 1 << 20).unwrap_err();
        assert_eq!(err.code(), ErrorCode::Malformed, "{bad:?}: {err}");
    }
}

#[test]
fn heartbeat_is_sixteen_bytes_for_all_inputs() {
    let mut x: u64 = 1;
    for _ in 0..10_000 {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let hb = Heartbeat::from_values(
            (x >> 56) as u8,
            (x >> 48) as u8,
            x >> 20,
            x as i64,
            (x.rotate_left(17)) as i64,
            x.rotate_left(33),
            (x >> 7) as u32,
        );
        let bytes = hb.encode();
        assert_eq!(bytes.len(), 16);
        assert_eq!(Heartbeat::decode(&bytes).unwrap(), hb);
    }
}
