//! Record a real run over ZeroMQ to a trace file, then replay it: 100% decision agreement with
//! the same frozen policy and seed; truncated and corrupt traces keep their valid prefix.

use agent_server::bridge::BridgeConfig;
use agent_server::replay::{counterfactual, replay};
use agent_server::server::{self, ServeOptions};
use agent_server::shared::Shared;
use malcolm_agents::AgentsConfig;
use malcolm_policies::Mode;
use rack_sim::{run_env_loop, RackSim, ZmqEnvClient};
use std::path::Path;
use std::time::Duration;

fn shared(policy: &str) -> std::sync::Arc<Shared> {
    let s = Shared::new(
        policy,
        agent_server::registry::maker(AgentsConfig::default()),
    )
    .unwrap();
    s.set_mode(Mode::Frozen);
    s
}

/// Serves `policy` frozen, records two envs' episodes to `trace`, returns their miss rates.
fn record(policy: &str, trace: &Path) -> Vec<f64> {
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

#[test]
fn truncated_and_corrupt_traces_keep_their_valid_prefix() {
    let dir = tempfile::tempdir().unwrap();
    let trace = dir.path().join("full.trace");
    record("po2", &trace);
    let bytes = std::fs::read(&trace).unwrap();

    // Cut in the middle of a record.
    let cut = dir.path().join("cut.trace");
    std::fs::write(&cut, &bytes[..bytes.len() * 2 / 3]).unwrap();
    let (r, _) = replay(&cut, shared("po2")).unwrap();
    let msg = r.stopped_early.clone().expect("truncation reported");
    assert!(msg.contains("truncated at byte offset"), "{msg}");
    assert!(r.records > 10 && r.decisions > 0);
    assert_eq!(r.agreement, 1.0, "the valid prefix replays exactly");

    // Flip bytes in the middle: a corrupt record is reported with its offset.
    let mut bad = bytes.clone();
    let mid = bad.len() / 2;
    for b in &mut bad[mid..mid + 64] {
        *b = 0xff;
    }
    let corrupt = dir.path().join("corrupt.trace");
    std::fs::write(&corrupt, &bad).unwrap();
    let (r, _) = replay(&corrupt, shared("po2")).unwrap();
    let msg = r.stopped_early.expect("corruption reported");
    assert!(msg.contains("offset"), "{msg}");
    assert!(r.records > 10);

    // Not a trace at all.
    let junk = dir.path().join("junk.trace");
    std::fs::write(&junk, b"hello world").unwrap();
    assert!(replay(&junk, shared("po2")).is_err());
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
