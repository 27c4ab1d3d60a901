//! Both learners against the embedded rack simulator for a few thousand tasks: the bridge
//! messages are accepted, every decision is valid, the learners update.

use malcolm_agents::{AgentsConfig, IqnConfig, MalcolmConfig};
use malcolm_policies::{Mode, PolicyFactory};
use rack_sim::{run_policy, scenario, RackSim};
use std::sync::Arc;

fn run(f: &Arc<dyn PolicyFactory>, seed: u64, tasks: u64) -> rack_sim::Report {
    let s = scenario::by_name(&format!("hetero:f=3,rho=0.4,tasks={tasks},warmup=0")).unwrap();
    let mut sim = RackSim::new(s, seed).unwrap();
    let p = f.new_session(&sim.hello("smoke"), seed).unwrap();
    run_policy(&mut sim, p, 1).unwrap()
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
        let r = run(&f, 1, 4_000);
        assert_eq!(r.finished, 4_000, "{name}: every task finished or dropped");
        // The learner consumes transitions behind the env; give it a moment.
        let start = std::time::Instant::now();
        while f.status().updates == 0 && start.elapsed().as_secs() < 30 {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let st = f.status();
        assert!(st.updates > 0 && st.loss.is_finite(), "{name}: {st:?}");
        f.set_mode(Mode::Eval);
        let e = run(&f, 2, 2_000);
        assert!(e.miss_rate >= 0.0 && e.miss_rate <= 1.0);
        eprintln!(
            "{name}: train miss {:.3}, eval miss {:.3}, status {st:?}",
            r.miss_rate, e.miss_rate
        );
    }
}
