//! Original Malcolm through the `PolicyFactory` interface: valid decisions, learning updates
//! with critic consensus, checkpoint round trip, fixed rack size.

mod common;

use malcolm_agents::{factory_by_name, AgentsConfig, MalcolmConfig};
use malcolm_policies::{Decision, Mode, PolicyFactory};
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
