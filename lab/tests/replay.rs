//! Record a real run over ZeroMQ to a trace file, then replay it: 100% decision agreement with
//! the same frozen policy and seed; a garbage message recorded in the stream, a flipped bit,
//! a damaged first record, a torn end are reported and skipped, never fatal; `--record` stops
//! at its size limit.

use malcolm_agents::AgentsConfig;
use malcolm_lab::replay::{counterfactual, replay};
use malcolm_policies::Mode;
use malcolm_serve::bridge::BridgeConfig;
use malcolm_serve::server::{self, ServeOptions};
use malcolm_serve::shared::Shared;
use rack_sim::{run_env_loop, RackSim, ZmqEnvClient};
use std::path::Path;
use std::time::Duration;

fn shared(policy: &str) -> std::sync::Arc<Shared> {
    let s = Shared::new(
        policy,
        malcolm_serve::registry::maker(AgentsConfig::default()),
    )
    .unwrap();
    s.set_mode(Mode::Frozen);
    s
}

/// Serves `policy` frozen, records two envs' episodes to `trace`, returns their miss rates.
fn record(policy: &str, trace: &Path) -> Vec<f64> {
    record_with(policy, trace, 0, false)
}

/// [`record`] with a size limit (0: none) and, when `garbage`, a third connection that sends
/// one undecodable message while the envs run.
fn record_with(policy: &str, trace: &Path, max_bytes: u64, garbage: bool) -> Vec<f64> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let shared = shared(policy);
    let ctx = zmq::Context::new();
    let bridge = server::bind(
        &ctx,
        BridgeConfig {
            endpoints: vec!["tcp://127.0.0.1:*".into()],
            ..BridgeConfig::default()
        },
    )
    .unwrap();
    let ep = bridge.endpoints()[0].clone();
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let srv = rt.spawn(server::run(
        bridge,
        listener,
        shared,
        ServeOptions {
            record: Some(trace.to_path_buf()),
            record_max_bytes: max_bytes,
            checkpoint_on_exit: None,
            scenario: "hetero".into(),
        },
        async {
            let _ = rx.await;
        },
    ));
    let envs: Vec<_> = (0..2u64)
        .map(|e| {
            let ep = ep.clone();
            std::thread::spawn(move || {
                let s = rack_sim::by_name("hetero:tasks=2000,warmup=100").unwrap();
                let mut sim = RackSim::new(s, 40 + e).unwrap();
                let mut c = ZmqEnvClient::connect(&ep, Duration::from_secs(20)).unwrap();
                run_env_loop(&mut sim, &mut c, &format!("rec-{e}"), 1)
                    .unwrap()
                    .miss_rate
            })
        })
        .collect();
    if garbage {
        // A client that is not an env: its bytes are refused and recorded as they came.
        let ctx = zmq::Context::new();
        let s = ctx.socket(zmq::DEALER).unwrap();
        s.set_rcvtimeo(10_000).unwrap();
        s.connect(&ep).unwrap();
        s.send(&b"\xff\xfegarbage, not an envelope"[..], 0).unwrap();
        let reply = malcolm_proto::decode_envelope(&s.recv_bytes(0).unwrap(), 1 << 20).unwrap();
        assert!(matches!(
            reply.body,
            Some(malcolm_proto::bridge::envelope::Body::Error(_))
        ));
    }
    let miss: Vec<f64> = envs.into_iter().map(|t| t.join().unwrap()).collect();
    tx.send(()).unwrap();
    rt.block_on(srv).unwrap().unwrap();
    miss
}

fn check_full_agreement(policy: &str, file: &str) {
    let dir = tempfile::tempdir().unwrap();
    let trace = dir.path().join(file);
    record(policy, &trace);
    let (report, workloads) = replay(&trace, shared(policy)).unwrap();
    assert_eq!(report.sessions, 2);
    assert!(report.stopped_early.is_none(), "{report:?}");
    assert!(report.decisions > 2 * 1500, "{report:?}");
    assert_eq!(report.compared_steps, report.steps);
    assert_eq!(report.agreeing_decisions, report.decisions, "{report:?}");
    assert_eq!(report.agreement, 1.0);
    assert!(report.recorded_outcomes > 0 && report.decide_p50_us > 0.0);
    assert_eq!(workloads.len(), 2);
    assert!(workloads.iter().all(|w| w.tasks.len() >= 2000));
}

#[test]
fn a_recorded_learner_run_replays_to_full_agreement() {
    check_full_agreement("malcolm-strict", "iqn.trace");
}

#[test]
fn a_recorded_randomised_baseline_replays_to_full_agreement_from_a_compressed_trace() {
    // power-of-2 samples its candidates: agreement needs the recorded seed to be honoured.
    check_full_agreement("po2", "po2.trace.zst");
}

#[test]
fn a_different_policy_disagrees() {
    let dir = tempfile::tempdir().unwrap();
    let trace = dir.path().join("jsq.trace");
    record("jsq", &trace);
    let (report, _) = replay(&trace, shared("random")).unwrap();
    assert!(
        report.agreement < 0.5,
        "random vs jsq agreed {}",
        report.agreement
    );
}

/// Frame starts of a format-2 trace (the header's first).
fn frames(bytes: &[u8]) -> Vec<usize> {
    bytes
        .windows(4)
        .enumerate()
        .filter(|(_, w)| *w == malcolm_serve::trace::FRAME_MARKER)
        .map(|(i, _)| i)
        .collect()
}

#[test]
fn a_torn_end_keeps_the_valid_prefix() {
    let dir = tempfile::tempdir().unwrap();
    let trace = dir.path().join("full.trace");
    record("po2", &trace);
    let bytes = std::fs::read(&trace).unwrap();
    let cut = dir.path().join("cut.trace");
    std::fs::write(&cut, &bytes[..bytes.len() * 2 / 3]).unwrap();
    let (r, _) = replay(&cut, shared("po2")).unwrap();
    let msg = r.stopped_early.clone().expect("truncation reported");
    assert!(msg.contains("truncated at byte offset"), "{msg}");
    assert!(r.records > 10 && r.decisions > 0 && r.damaged.is_empty());
    assert_eq!(r.agreement, 1.0, "the valid prefix replays exactly");
    // Not a trace at all.
    let junk = dir.path().join("junk.trace");
    std::fs::write(&junk, b"hello world").unwrap();
    assert!(replay(&junk, shared("po2")).is_err());
}

#[test]
fn a_garbage_message_in_the_stream_is_reported_and_the_rest_replays_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let trace = dir.path().join("garbage.trace");
    record_with("po2", &trace, 0, true);
    let (r, _) = replay(&trace, shared("po2")).unwrap();
    assert!(r.stopped_early.is_none(), "{r:?}");
    assert_eq!(r.damaged.len(), 1, "{:?}", r.damaged);
    assert!(r.damaged[0].contains("not an envelope"), "{:?}", r.damaged);
    // Both envs' whole runs are still there and agree exactly.
    assert_eq!(r.sessions, 3, "two envs and the garbage sender");
    assert!(r.decisions > 2 * 1500);
    assert_eq!(r.agreement, 1.0);
}

#[test]
fn a_flipped_bit_is_caught_by_the_checksum_and_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let trace = dir.path().join("bits.trace");
    record("po2", &trace);
    let mut bytes = std::fs::read(&trace).unwrap();
    let f = frames(&bytes);
    let clean = replay(&trace, shared("po2")).unwrap().0;
    // One bit in the payload of a record in the middle.
    let k = f.len() / 2;
    bytes[f[k] + 12 + (f[k + 1] - f[k] - 12) / 2] ^= 0x04;
    let flipped = dir.path().join("flipped.trace");
    std::fs::write(&flipped, &bytes).unwrap();
    let (r, _) = replay(&flipped, shared("po2")).unwrap();
    assert!(r.stopped_early.is_none(), "{r:?}");
    assert_eq!(r.damaged.len(), 1, "{:?}", r.damaged);
    assert!(
        r.damaged[0].contains("checksum mismatch"),
        "{:?}",
        r.damaged
    );
    assert_eq!(
        r.records,
        clean.records - 1,
        "exactly the damaged record is missing"
    );
}

#[test]
fn a_damaged_first_record_is_named_and_the_rest_replays() {
    let dir = tempfile::tempdir().unwrap();
    let trace = dir.path().join("first.trace");
    record("po2", &trace);
    let mut bytes = std::fs::read(&trace).unwrap();
    let f = frames(&bytes);
    // f[0] is the header's frame, f[1] the first record's: wreck its marker.
    bytes[f[1]] = b'X';
    let first = dir.path().join("first-damaged.trace");
    std::fs::write(&first, &bytes).unwrap();
    let (r, _) = replay(&first, shared("po2")).unwrap();
    assert_eq!(r.damaged.len(), 1, "{:?}", r.damaged);
    assert!(
        r.damaged[0].contains(&format!("offset {}", f[1])),
        "{:?}",
        r.damaged
    );
    assert!(r.records > 10);
    // Only records, all damaged: the error says what was found.
    let only = dir.path().join("only-damaged.trace");
    std::fs::write(&only, &bytes[..f[2]]).unwrap();
    let e = replay(&only, shared("po2")).unwrap_err().to_string();
    assert!(
        e.contains("no readable records") && e.contains("damaged"),
        "{e}"
    );
}

#[test]
fn recording_stops_at_its_size_limit() {
    let dir = tempfile::tempdir().unwrap();
    let trace = dir.path().join("capped.trace");
    let limit = 64 << 10;
    record_with("po2", &trace, limit, false);
    let len = std::fs::metadata(&trace).unwrap().len();
    assert!(
        len <= limit && len > limit / 2,
        "{len} bytes for a limit of {limit}"
    );
    // What was written is a valid trace; the run itself went on to the end.
    let (r, _) = replay(&trace, shared("po2")).unwrap();
    assert!(r.stopped_early.is_none() && r.damaged.is_empty(), "{r:?}");
    assert!(r.records > 10);
}

#[test]
fn counterfactual_reruns_the_recorded_workload_under_another_policy() {
    let dir = tempfile::tempdir().unwrap();
    let trace = dir.path().join("rr.trace");
    record("round-robin", &trace);
    let (_, workloads) = replay(&trace, shared("round-robin")).unwrap();
    let w = &workloads[0];
    let same = counterfactual(w, shared("round-robin").active().1).unwrap();
    let other = counterfactual(w, shared("slack-greedy").active().1).unwrap();
    // Every recorded task is replayed exactly once (the trace ends: terminated episodes).
    assert_eq!(same.finished as usize, w.tasks.len());
    assert_eq!(other.finished as usize, w.tasks.len());
    // Slack-aware placement beats round-robin on the same tasks (slow nodes miss tight work).
    assert!(
        other.miss_rate <= same.miss_rate,
        "{} vs {}",
        other.miss_rate,
        same.miss_rate
    );
}
