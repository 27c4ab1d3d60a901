//! Malcolm-Strict through the `PolicyFactory` interface: learning on a hand-built rack,
//! determinism in eval mode, checkpoint round trip, refusal of incompatible checkpoints,
//! concurrent sessions.

mod common;

use malcolm_agents::{factory_by_name, AgentsConfig, IqnConfig, StrictFactory};
use malcolm_policies::{Decision, Mode, PolicyFactory};
use malcolm_proto::bridge::{EndReason, EpisodeEnd};
use std::time::{Duration, Instant};

const FAST: usize = 2;
const SLOW: usize = 3;

fn small_config(seed: u64) -> IqnConfig {
    IqnConfig {
        hidden: 32,
        batch: 64,
        lr: 1e-3,
        learn_start: 256,
        update_every: 1,
        publish_every: 10,
        target_update_every: 100,
        eps_start: 0.5,
        eps_end: 0.05,
        eps_decay_decisions: 2_000,
        seed,
        ..Default::default()
    }
}

/// Runs `steps` training steps of 8 tasks; outcomes of a step arrive with the next one.
fn train(factory: &dyn PolicyFactory, steps: u64, seed: u64) {
    let n = FAST + SLOW;
    let mut policy = factory
        .new_session(&common::hello(FAST, SLOW), seed)
        .unwrap();
    let mut rng = common::rng(seed);
    let mut out = Decision::default();
    let mut prev: Option<(malcolm_proto::bridge::Step, Vec<u32>)> = None;
    for i in 0..steps {
        let mut step = common::random_step(&mut rng, n, 8, i);
        if let Some((s, t)) = prev.take() {
            step.outcomes = common::outcomes(&s, &t, FAST);
        }
        policy.decide(&step, &mut out).unwrap();
        assert_eq!(out.targets.len(), 8);
        assert!(out.targets.iter().all(|&t| (t as usize) < n));
        prev = Some((step, out.targets.clone()));
    }
    let (s, t) = prev.unwrap();
    policy.end_episode(&EpisodeEnd {
        episode: 0,
        steps,
        reason: EndReason::Truncated as i32,
        outcomes: common::outcomes(&s, &t, FAST),
        sim_time_ns: 0,
    });
}

/// Decisions (targets and scores) of a fresh session on a fixed list of steps.
fn decisions(factory: &dyn PolicyFactory, seed: u64) -> (Vec<u32>, Vec<f32>, u64) {
    let mut policy = factory.new_session(&common::hello(FAST, SLOW), 99).unwrap();
    let mut rng = common::rng(seed);
    let mut out = Decision::default();
    let (mut targets, mut scores) = (Vec::new(), Vec::new());
    for i in 0..30 {
        let step = common::random_step(&mut rng, FAST + SLOW, 8, i);
        policy.decide(&step, &mut out).unwrap();
        targets.extend_from_slice(&out.targets);
        scores.extend_from_slice(&out.scores);
    }
    (targets, scores, policy.version())
}

/// Keeps training sessions running until the learner has made `updates` updates (the
/// learner's update budget is tied to incoming transitions).
fn train_until(factory: &dyn PolicyFactory, updates: u64, seed: u64) {
    let start = Instant::now();
    let mut k = 0;
    while factory.status().updates < updates {
        assert!(
            start.elapsed() < Duration::from_secs(150),
            "learner stuck at {:?}",
            factory.status()
        );
        train(factory, 40, seed + k);
        k += 1;
    }
}

#[test]
fn learns_to_avoid_nodes_that_miss() {
    let factory = StrictFactory::new(small_config(1)).unwrap();
    let (before, _, _) = decisions(&factory, 5);
    train_until(&factory, 1_500, 11);
    factory.set_mode(Mode::Eval);
    let st = factory.status();
    assert!(st.policy_version > 1 && st.replay_len > 0, "{st:?}");
    let (after, _, _) = decisions(&factory, 5);
    let fast_share =
        |v: &[u32]| v.iter().filter(|&&t| (t as usize) < FAST).count() as f64 / v.len() as f64;
    eprintln!(
        "fast share before {:.2} after {:.2}; status {st:?}",
        fast_share(&before),
        fast_share(&after)
    );
    assert!(fast_share(&after) > 0.95, "{}", fast_share(&after));
}

#[test]
fn eval_is_deterministic_and_checkpoints_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("strict.safetensors");
    let a = StrictFactory::new(small_config(2)).unwrap();
    train_until(&a, 50, 3);
    a.set_mode(Mode::Frozen);
    let info = a.save_checkpoint(&path).unwrap();
    assert!(info.bytes > 0);
    let (d1, s1, v1) = decisions(&a, 8);
    let (d1b, s1b, _) = decisions(&a, 8);
    assert_eq!(
        (&d1, &s1),
        (&d1b, &s1b),
        "eval decisions must be deterministic"
    );
    assert_eq!(v1, info.policy_version);

    // A different learner decides differently until it loads the checkpoint.
    let b = StrictFactory::new(small_config(77)).unwrap();
    b.set_mode(Mode::Eval);
    let (_, s0, _) = decisions(&b, 8);
    assert_ne!(s0, s1);
    let loaded = b.load_checkpoint(&path).unwrap();
    assert_eq!(loaded.policy_version, info.policy_version);
    let (d2, s2, v2) = decisions(&b, 8);
    assert_eq!(d2, d1);
    assert_eq!(s2, s1);
    assert_eq!(v2, info.policy_version);
    assert_eq!(b.status().updates, a.status().updates);

    // The file is plain safetensors with the config in its metadata.
    let d = malcolm_agents::checkpoint::read(&path).unwrap();
    assert!(d.tensors.contains_key("online.fc2.weight"));
    assert!(d.tensors.contains_key("adam.m.fc2.weight"));
    assert!(d.metadata["config"].contains("\"cvar_alpha\""));

    // Incompatible architecture: refused with a clear message, learner untouched.
    let c = StrictFactory::new(IqnConfig {
        hidden: 48,
        ..small_config(2)
    })
    .unwrap();
    let err = c.load_checkpoint(&path).unwrap_err().to_string();
    assert!(
        err.contains("incompatible") && err.contains("hidden"),
        "{err}"
    );

    // A garbage file is refused and leaves b as it was.
    let junk = dir.path().join("junk.safetensors");
    std::fs::write(&junk, b"not a checkpoint").unwrap();
    assert!(b.load_checkpoint(&junk).is_err());
    assert_eq!(decisions(&b, 8).1, s1);

    // A save that cannot complete leaves the previous checkpoint loadable.
    let bad = dir.path().join("no-such-dir").join("x.safetensors");
    assert!(a.save_checkpoint(&bad).is_err());
    assert!(b.load_checkpoint(&path).is_ok());
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names.len(), 2, "no temp files left: {names:?}");
}

#[test]
fn concurrent_sessions_and_factory_by_name() {
    let config = AgentsConfig {
        iqn: small_config(4),
        ..Default::default()
    };
    let f = factory_by_name("iqn", &config).unwrap();
    assert_eq!(f.name(), "malcolm-strict");
    assert!(factory_by_name("nope", &config).is_err());
    std::thread::scope(|s| {
        for k in 0..4u64 {
            let f = f.clone();
            s.spawn(move || train(f.as_ref(), 60, 100 + k));
        }
        s.spawn(|| {
            for _ in 0..20 {
                let _ = f.status();
                std::thread::sleep(Duration::from_millis(5));
            }
        });
    });
    assert!(f.status().replay_len > 0);
    // JSON config round trip (the server reads it from a file).
    let json = serde_json::to_string(&config).unwrap();
    let back: AgentsConfig = serde_json::from_str(&json).unwrap();
    assert_eq!(back, config);
    let partial: AgentsConfig = serde_json::from_str(r#"{"iqn": {"cvar_alpha": 0.05}}"#).unwrap();
    assert_eq!(partial.iqn.cvar_alpha, 0.05);
    assert_eq!(partial.iqn.n_tau, 32);
}
