//! Malcolm-Strict through the `PolicyFactory` interface: learning against the real rack
//! simulator, the replay-ratio contract, same-Step placements, determinism in eval mode,
//! frozen copies, checkpoint round trip, refusal of incompatible checkpoints, concurrent
//! sessions.

mod common;

use malcolm_agents::{factory_by_name, AgentsConfig, IqnConfig, StrictFactory};
use malcolm_policies::{Decision, Mode, PolicyFactory};
use malcolm_proto::bridge::{EndReason, EpisodeEnd};
use malcolm_serve::loopback::run_policy;
use rack_sim::{scenario, RackSim};
use std::sync::Arc;
use std::time::{Duration, Instant};

const FAST: usize = 2;
const SLOW: usize = 3;

fn small_config(seed: u64) -> IqnConfig {
    IqnConfig {
        hidden: 32,
        batch: 64,
        lr: 1e-3,
        learn_start: 256,
        samples_per_insert: 8.0,
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
        policy.observe(&step.outcomes);
        policy.decide(&step, &mut out).unwrap();
        assert_eq!(out.targets.len(), 8);
        assert!(out.targets.iter().all(|&t| (t as usize) < n));
        prev = Some((step, out.targets.clone()));
    }
    let (s, t) = prev.unwrap();
    let end = EpisodeEnd {
        episode: 0,
        steps,
        reason: EndReason::Truncated as i32,
        outcomes: common::outcomes(&s, &t, FAST),
        sim_time_ns: 0,
    };
    policy.observe(&end.outcomes);
    policy.end_episode(&end);
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

/// Keeps training sessions running until the learner has made `updates` updates.
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

fn sim_run(f: &dyn PolicyFactory, spec: &str, seed: u64) -> rack_sim::Report {
    let mut sim = RackSim::new(scenario::by_name(spec).unwrap(), seed).unwrap();
    let p = f.new_session(&sim.hello("test"), seed).unwrap();
    run_policy(&mut sim, p, 1).unwrap()
}

#[test]
fn learns_on_the_real_rack_where_random_placement_misses() {
    // hetero at 20% load: the two fast nodes could run every task on time; the slow ones miss
    // every deadline (F = 3 < 1 / 0.2). Random placement misses about 60%.
    let spec = "hetero:rho=0.2,tasks=6000,warmup=500";
    let factory = StrictFactory::new(IqnConfig {
        eps_decay_decisions: 10_000,
        ..small_config(3)
    })
    .unwrap();
    let random =
        malcolm_policies::baselines::factory_by_name("random", &Default::default()).unwrap();
    let random_miss = sim_run(random.as_ref(), spec, 900).miss_rate;
    for seed in 1..=4 {
        sim_run(&factory, spec, seed);
    }
    factory.set_mode(Mode::Eval);
    let learned = sim_run(&factory, spec, 900);
    let st = factory.status();
    eprintln!(
        "random miss {random_miss:.3}, learned miss {:.3}; {st:?}",
        learned.miss_rate
    );
    assert!(random_miss > 0.5, "random {random_miss}");
    assert!(learned.miss_rate < 0.1, "learned {}", learned.miss_rate);
    assert_eq!(st.transitions_dropped, 0);
}

#[test]
fn the_replay_ratio_is_kept_and_sessions_wait_for_the_learner() {
    let config = IqnConfig {
        samples_per_insert: 16.0,
        batch: 32,
        max_lag_updates: 4,
        // With a discount, transitions wait for their origin's next decision: the bootstrap
        // path (the default, 0, emits on the outcome alone).
        discount: 0.9,
        ..small_config(6)
    };
    let factory = StrictFactory::new(config.clone()).unwrap();
    // Hand-made Steps come far faster than updates: the sessions must wait.
    std::thread::scope(|s| {
        for k in 0..2u64 {
            let f = &factory;
            s.spawn(move || train(f, 300, 40 + k));
        }
    });
    // Let the learner finish what it owes for the last transitions.
    let start = Instant::now();
    loop {
        let st = factory.status();
        let due = (st.transitions_inserted - config.learn_start as u64) as f64
            * config.samples_per_insert
            / config.batch as f64;
        if st.updates as f64 >= due.floor() || start.elapsed() > Duration::from_secs(30) {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let st = factory.status();
    eprintln!("{st:?}");
    assert_eq!(st.transitions_dropped, 0);
    assert!(st.env_wait_s > 0.0, "sessions never waited: {st:?}");
    assert!(
        (st.samples_per_insert - 16.0).abs() < 0.5,
        "achieved ratio {} vs 16",
        st.samples_per_insert
    );
    assert_eq!(st.target_samples_per_insert, 16.0);
}

#[test]
fn a_switch_to_eval_releases_a_waiting_session() {
    // A learner that can never keep up: one update per transition of a 4096-sample batch.
    let factory = Arc::new(
        StrictFactory::new(IqnConfig {
            samples_per_insert: 4096.0,
            batch: 256,
            learn_start: 64,
            max_lag_updates: 1,
            ..small_config(9)
        })
        .unwrap(),
    );
    let f = factory.clone();
    let worker = std::thread::spawn(move || train(f.as_ref(), 200, 1));
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        !worker.is_finished(),
        "the session should be held by the limiter"
    );
    factory.set_mode(Mode::Eval);
    let start = Instant::now();
    while !worker.is_finished() {
        assert!(start.elapsed() < Duration::from_secs(30), "still held");
        std::thread::sleep(Duration::from_millis(10));
    }
    worker.join().unwrap();
}

#[test]
fn same_step_placements_change_later_tasks_scores() {
    // Eight identical tasks from one origin in one Step: every placement is rescored into the
    // later tasks' view of that node, so equal tasks on one node do not all get equal scores.
    let factory = StrictFactory::new(small_config(12)).unwrap();
    factory.set_mode(Mode::Eval);
    let mut policy = factory.new_session(&common::hello(FAST, SLOW), 1).unwrap();
    let mut rng = common::rng(3);
    let mut step = common::random_step(&mut rng, FAST + SLOW, 8, 0);
    let first = step.tasks[0];
    for (k, t) in step.tasks.iter_mut().enumerate() {
        *t = malcolm_proto::bridge::PendingTask {
            task_id: 100 + k as u64,
            ..first
        };
    }
    let mut out = Decision::default();
    policy.decide(&step, &mut out).unwrap();
    let on_first: Vec<f32> = out
        .targets
        .iter()
        .zip(&out.scores)
        .filter(|(&t, _)| t == out.targets[0])
        .map(|(_, &s)| s)
        .collect();
    assert!(
        on_first.len() == 1 || on_first.windows(2).any(|w| w[0] != w[1]),
        "later tasks on node {} were not rescored: {on_first:?}",
        out.targets[0]
    );
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

    // The file is plain safetensors with the config and the feature layout in its metadata.
    let d = malcolm_agents::checkpoint::read(&path).unwrap();
    for t in ["online", "target", "policy", "adam.m", "adam.v"] {
        assert!(d.tensors.contains_key(t), "{t}");
    }
    assert!(d.metadata["config"].contains("\"cvar_alpha\""));
    let layout = malcolm_agents::features::FEATURE_LAYOUT_VERSION;
    assert!(d.metadata["arch"].contains(&format!("\"feature_layout\":{layout}")));

    // The same weights under an older feature layout are refused: the network would read
    // other features than it learned on.
    let older = dir.path().join("older.safetensors");
    let mut meta = d.metadata.clone();
    meta.insert(
        "arch".into(),
        meta["arch"].replace(
            &format!("\"feature_layout\":{layout}"),
            &format!("\"feature_layout\":{}", layout - 1),
        ),
    );
    let owned: Vec<(String, tch::Tensor)> = d
        .tensors
        .iter()
        .map(|(k, (v, shape))| {
            let dims: Vec<i64> = shape.iter().map(|&x| x as i64).collect();
            (k.clone(), tch::Tensor::from_slice(v).view(dims.as_slice()))
        })
        .collect();
    let refs: Vec<(String, &tch::Tensor)> = owned.iter().map(|(k, t)| (k.clone(), t)).collect();
    std::fs::write(
        &older,
        malcolm_agents::checkpoint::encode(&refs, meta).unwrap(),
    )
    .unwrap();
    let err = b.load_checkpoint(&older).unwrap_err().to_string();
    assert!(
        err.contains(&format!("feature layout {}", layout - 1)) && err.contains("retrain"),
        "{err}"
    );
    std::fs::remove_file(&older).unwrap();

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

    // A learner without link features refuses weights trained with them (and says so).
    let masked = StrictFactory::new(IqnConfig {
        link_features: false,
        ..small_config(2)
    })
    .unwrap();
    let err = masked.load_checkpoint(&path).unwrap_err().to_string();
    assert!(err.contains("link_features = true"), "{err}");

    // A checkpoint of the previous format (feature layout 1) is refused, saying why.
    let old = dir.path().join("old.safetensors");
    let t = tch::Tensor::zeros([4], (tch::Kind::Float, tch::Device::Cpu));
    let bytes = malcolm_agents::checkpoint::encode(
        &[("online.fc2.weight".to_string(), &t)],
        [("format".to_string(), "malcolm-strict-iqn/1".to_string())].into(),
    )
    .unwrap();
    std::fs::write(&old, bytes).unwrap();
    let err = b.load_checkpoint(&old).unwrap_err().to_string();
    assert!(
        err.contains("feature layout") && err.contains("retrain"),
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
    std::fs::remove_file(&old).unwrap();
    std::fs::remove_file(&junk).unwrap();
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names.len(), 1, "no temp files left: {names:?}");
}

#[test]
fn a_frozen_copy_keeps_its_weights_and_saves_them_as_the_acting_ones() {
    let dir = tempfile::tempdir().unwrap();
    let a = StrictFactory::new(small_config(21)).unwrap();
    train_until(&a, 60, 5);
    let frozen = a.frozen_copy().expect("a learner has a frozen copy");
    let (d0, s0, v0) = decisions(frozen.as_ref(), 4);
    // Training goes on; the copy does not move.
    train_until(&a, 200, 50);
    assert!(a.status().policy_version > v0);
    assert_eq!(decisions(frozen.as_ref(), 4), (d0.clone(), s0.clone(), v0));
    // Its checkpoint acts like the copy once loaded.
    let path = dir.path().join("best.safetensors");
    let info = frozen.save_checkpoint(&path).unwrap();
    assert_eq!(info.policy_version, v0);
    let b = StrictFactory::new(small_config(22)).unwrap();
    b.set_mode(Mode::Eval);
    b.load_checkpoint(&path).unwrap();
    assert_eq!(decisions(&b, 4), (d0, s0, v0));
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
    let st = f.status();
    assert!(
        st.transitions_inserted > 0 && st.transitions_dropped == 0,
        "{st:?}"
    );
    // JSON config round trip (the server reads it from a file).
    let json = serde_json::to_string(&config).unwrap();
    let back: AgentsConfig = serde_json::from_str(&json).unwrap();
    assert_eq!(back, config);
    let partial: AgentsConfig = serde_json::from_str(r#"{"iqn": {"cvar_alpha": 0.05}}"#).unwrap();
    assert_eq!(partial.iqn.cvar_alpha, 0.05);
    assert_eq!(partial.iqn.n_tau, 32);
}
