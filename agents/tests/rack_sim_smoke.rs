//! Both learners against the embedded rack simulator for a few thousand tasks: the bridge
//! messages are accepted, every task gets exactly one outcome, the learners update, their
//! updates reach the acting policy, and eval mode is greedy and frozen (the same seed gives
//! the same report twice, and no update happens).

use malcolm_agents::{AgentsConfig, IqnConfig, MalcolmConfig};
use malcolm_policies::{Mode, PolicyFactory};
use malcolm_serve::loopback::run_policy;
use rack_sim::{scenario, RackSim};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn run(f: &Arc<dyn PolicyFactory>, seed: u64, tasks: u64) -> rack_sim::Report {
    let s = scenario::by_name(&format!("hetero:f=3,rho=0.4,tasks={tasks},warmup=0")).unwrap();
    let mut sim = RackSim::new(s, seed).unwrap();
    let p = f.new_session(&sim.hello("smoke"), seed).unwrap();
    run_policy(&mut sim, p, 1).unwrap()
}

/// The decisions of a report (deterministic JSON of every figure).
fn json(r: &rack_sim::Report) -> String {
    serde_json::to_string(r).unwrap()
}

#[test]
fn both_learners_run_on_hetero() {
    let config = AgentsConfig {
        iqn: IqnConfig {
            learn_start: 256,
            batch: 64,
            ..Default::default()
        },
        malcolm: MalcolmConfig {
            batch: 64,
            ..Default::default()
        },
    };
    for name in ["malcolm-strict", "malcolm"] {
        let f = malcolm_agents::factory_by_name(name, &config).unwrap();
        // The untrained weights, greedily, on the evaluation seed.
        f.set_mode(Mode::Eval);
        let untrained = run(&f, 2, 2_000);
        f.set_mode(Mode::Train);
        let r = run(&f, 1, 4_000);
        assert_eq!(r.finished, 4_000, "{name}: every task finished or dropped");
        assert_eq!(r.on_time + r.missed + r.dropped, r.finished, "{name}");
        // The learner consumes transitions behind the env; give it a moment.
        let start = Instant::now();
        while f.status().updates == 0 && start.elapsed().as_secs() < 30 {
            std::thread::sleep(Duration::from_millis(20));
        }
        let st = f.status();
        assert!(st.updates > 0 && st.loss.is_finite(), "{name}: {st:?}");
        f.set_mode(Mode::Eval);
        // Let an update already in flight land before measuring.
        std::thread::sleep(Duration::from_millis(300));
        let updates = f.status().updates;
        let e = run(&f, 2, 2_000);
        assert_eq!(e.finished, 2_000);
        assert_eq!(
            json(&e),
            json(&run(&f, 2, 2_000)),
            "{name}: eval is deterministic"
        );
        assert_eq!(
            f.status().updates,
            updates,
            "{name}: eval mode does not learn"
        );
        assert_ne!(
            json(&e),
            json(&untrained),
            "{name}: the updates do not reach the acting policy"
        );
        eprintln!(
            "{name}: train miss {:.3}, eval miss {:.3} (untrained {:.3}), status {st:?}",
            r.miss_rate, e.miss_rate, untrained.miss_rate
        );
    }
}
