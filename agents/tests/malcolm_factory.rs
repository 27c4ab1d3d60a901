//! Original Malcolm through the `PolicyFactory` interface: valid decisions, learning updates
//! with critic consensus, checkpoint round trip, fixed rack size; and learning that shows in
//! its decisions: on a rack where a placement adds load to its target and the reward is minus
//! the variance of the loads seen next, the trained greedy policy balances.

mod common;

use malcolm_agents::{factory_by_name, AgentsConfig, MalcolmConfig};
use malcolm_policies::{Decision, Mode, Policy, PolicyFactory};
use malcolm_proto::bridge::{GlobalStateView, HeartbeatFields, NodeState, PendingTask, Step, Sth};
use malcolm_proto::Heartbeat;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::time::{Duration, Instant};

fn config() -> AgentsConfig {
    AgentsConfig {
        malcolm: MalcolmConfig {
            hidden: 16,
            batch: 32,
            consensus_every: 3,
            seed: 5,
            ..Default::default()
        },
        ..Default::default()
    }
}

fn run(f: &dyn PolicyFactory, steps: u64, seed: u64) -> Vec<u32> {
    let mut p = f.new_session(&common::hello(2, 3), seed).unwrap();
    let mut rng = common::rng(seed);
    let mut out = Decision::default();
    let mut all = Vec::new();
    for i in 0..steps {
        let step = common::random_step(&mut rng, 5, 6, i);
        p.decide(&step, &mut out).unwrap();
        assert_eq!(out.targets.len(), 6);
        assert!(out.targets.iter().all(|&t| t < 5));
        all.extend_from_slice(&out.targets);
    }
    all
}

#[test]
fn malcolm_learns_checkpoints_and_refuses_other_racks() {
    let f = factory_by_name("malcolm", &config()).unwrap();
    assert_eq!(f.name(), "malcolm");
    // No session yet: nothing to save.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("malcolm.safetensors");
    assert!(f.save_checkpoint(&path).is_err());
    let start = Instant::now();
    let mut k = 0;
    while f.status().updates < 10 {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "{:?}",
            f.status()
        );
        run(f.as_ref(), 40, 10 + k);
        k += 1;
    }
    assert!(f.status().policy_version > 1 && f.status().loss.is_finite());
    // Another rack size is refused (inputs and outputs are per node).
    assert!(f.new_session(&common::hello(3, 3), 1).is_err());

    f.set_mode(Mode::Eval);
    std::thread::sleep(Duration::from_millis(50));
    let info = f.save_checkpoint(&path).unwrap();
    let d1 = run(f.as_ref(), 20, 99);
    assert_eq!(d1, run(f.as_ref(), 20, 99), "eval is deterministic");

    let g = factory_by_name(
        "malcolm",
        &AgentsConfig {
            malcolm: MalcolmConfig {
                seed: 6,
                ..config().malcolm
            },
            ..Default::default()
        },
    )
    .unwrap();
    g.set_mode(Mode::Eval);
    let loaded = g.load_checkpoint(&path).unwrap();
    assert_eq!(loaded.policy_version, info.policy_version);
    assert_eq!(run(g.as_ref(), 20, 99), d1);
    assert_eq!(g.status().updates, f.status().updates);

    let h = factory_by_name(
        "malcolm",
        &AgentsConfig {
            malcolm: MalcolmConfig {
                hidden: 8,
                ..config().malcolm
            },
            ..Default::default()
        },
    )
    .unwrap();
    let err = h.load_checkpoint(&path).unwrap_err().to_string();
    assert!(err.contains("incompatible"), "{err}");
}

/// A Step of a 2-node rack (4 cores each) whose nodes hold `q` tasks, with one pending task
/// at `origin`; every node's GST holds the current heartbeats (fresh view).
fn balance_step(q: [u32; 2], origin: u32, index: u64) -> Step {
    let now = 1_000_000 + index * 10_000;
    let hbs: Vec<Heartbeat> = (0..2)
        .map(|i| Heartbeat::from_values(i as u8, 0, q[i] as u64 * 250, 0, 0, q[i] as u64, 0))
        .collect();
    let bytes: Vec<u8> = hbs.iter().flat_map(|h| h.encode()).collect();
    Step {
        sim_time_ns: now,
        step_index: index,
        nodes: (0..2)
            .map(|i| NodeState {
                node_id: i as u32,
                sth: Some(Sth {
                    buckets: vec![0; 16],
                    ..Default::default()
                }),
                heartbeat: Some(HeartbeatFields {
                    node_id: i as u32,
                    load_factor_milli: hbs[i].load_factor as u32,
                    queue_len: q[i],
                    ..Default::default()
                }),
                gst: Some(GlobalStateView {
                    heartbeats: bytes.clone(),
                    age_ns: vec![1_000, 1_000],
                }),
                utilisation: 0.5,
            })
            .collect(),
        tasks: vec![PendingTask {
            task_id: index,
            origin,
            size_bytes: 1024,
            service_estimate_ns: 10_000,
            deadline_ns: now + 30_000,
            arrival_ns: now,
            class: 0,
        }],
        ..Default::default()
    }
}

/// A clearly unbalanced rack: one node holds 20..80 tasks, the other none.
fn unbalanced(rng: &mut ChaCha8Rng) -> [u32; 2] {
    let r = rng.random_range(20..80);
    if rng.random_bool(0.5) {
        [r, 0]
    } else {
        [0, r]
    }
}

/// Fraction of greedy decisions that pick the less loaded node, on 400 unbalanced racks.
fn balanced_choices(p: &mut dyn Policy, seed: u64) -> f64 {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut out = Decision::default();
    let mut good = 0;
    for i in 0..400 {
        let q = unbalanced(&mut rng);
        p.decide(&balance_step(q, (i % 2) as u32, i), &mut out)
            .unwrap();
        let light = if q[0] < q[1] { 0 } else { 1 };
        good += (out.targets[0] == light) as u32;
    }
    good as f64 / 400.0
}

#[test]
fn malcolm_learns_to_balance_load() {
    let f = factory_by_name(
        "malcolm",
        &AgentsConfig {
            malcolm: MalcolmConfig {
                hidden: 32,
                batch: 32,
                lr: 1e-3,
                seed: 3,
                // The reward of a placement arrives with the agent's next decision: a
                // contextual bandit, so no bootstrapping. (With the default discount 0.99 the
                // same run drifts the other way, p(lighter node) 0.5 -> 0.07 in 600 updates:
                // reported as a finding, not hidden by this test.)
                discount: 0.0,
                ..Default::default()
            },
            ..Default::default()
        },
    )
    .unwrap();
    let hello = common::hello(2, 0);
    f.set_mode(Mode::Eval);
    let before = balanced_choices(f.new_session(&hello, 1).unwrap().as_mut(), 77);
    f.set_mode(Mode::Train);
    // The environment: a placement adds 8 tasks to its target, each node then finishes 4;
    // every 40 decisions the rack is re-drawn unbalanced. Origins alternate.
    let mut p = f.new_session(&hello, 2).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let mut q = unbalanced(&mut rng);
    let mut out = Decision::default();
    let start = Instant::now();
    let mut i = 0u64;
    while f.status().updates < 600 {
        assert!(
            start.elapsed() < Duration::from_secs(90),
            "{:?} after {i} decisions",
            f.status()
        );
        if i.is_multiple_of(40) {
            q = unbalanced(&mut rng);
        }
        p.decide(&balance_step(q, (i % 2) as u32, i), &mut out)
            .unwrap();
        q[out.targets[0] as usize] += 8;
        q = [q[0].saturating_sub(4), q[1].saturating_sub(4)];
        i += 1;
        if i.is_multiple_of(64) {
            // Let the learner thread keep up (the channel drops what it cannot take).
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    f.set_mode(Mode::Eval);
    std::thread::sleep(Duration::from_millis(200));
    let after = balanced_choices(f.new_session(&hello, 3).unwrap().as_mut(), 77);
    eprintln!(
        "greedy choices of the lighter node: {:.1}% untrained, {:.1}% after {} updates ({i} decisions)",
        100.0 * before,
        100.0 * after,
        f.status().updates
    );
    assert!(after >= 0.9, "trained Malcolm balances only {after}");
    assert!(after >= before + 0.2, "no learning: {before} -> {after}");
}
