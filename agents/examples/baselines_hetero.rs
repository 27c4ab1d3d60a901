//! Quick look at the baselines on the embedded `hetero` scenario (miss rate, goodput, time).
use malcolm_serve::loopback::run_policy;
use rack_sim::{scenario, RackSim};
use std::time::Instant;

fn main() {
    let spec = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "hetero:tasks=30000,warmup=3000".into());
    for (policy, disc) in [
        ("po2", "fcfs"),
        ("po2", "edf"),
        ("slack-greedy", "edf"),
        ("slack-greedy", "fcfs"),
        ("jsq", "edf"),
        ("random", "edf"),
    ] {
        for seed in [1001u64, 1002] {
            let sc = scenario::by_name(&format!("{spec},discipline={disc}")).unwrap();
            let mut sim = RackSim::new(sc, seed).unwrap();
            let f =
                malcolm_policies::baselines::factory_by_name(policy, &Default::default()).unwrap();
            let p = f.new_session(&sim.hello("b"), seed).unwrap();
            let t = Instant::now();
            let r = run_policy(&mut sim, p, 1).unwrap();
            println!(
                "{policy:>13} {disc} seed {seed}: miss {:.4} goodput {:.0}/s offered {:.0}/s steps {} p99 {:.1}us ({:.2}s)",
                r.miss_rate, r.goodput_per_s, r.offered_per_s, r.steps, r.latency.p99_ns / 1e3, t.elapsed().as_secs_f64()
            );
        }
    }
}
