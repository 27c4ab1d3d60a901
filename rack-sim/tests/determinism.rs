//! Same scenario and seed: byte-identical report; another seed: a different one.

mod common;

use common::run_baseline;
use rack_sim::by_name;

fn report_json(spec: &str, seed: u64, policy: &str) -> String {
    let s = by_name(spec).unwrap();
    serde_json::to_string(&run_baseline(s, seed, policy, &[])).unwrap()
}

#[test]
fn same_seed_same_bytes_other_seed_other_bytes() {
    for (spec, policy) in [
        ("hetero:tasks=60000,warmup=5000", "po2"),
        (
            "homogeneous-16:tasks=40000,warmup=1000,discipline=ps",
            "tod-n",
        ),
        (
            "staleness:tasks=40000,warmup=1000,t_hb_us=500",
            "slack-greedy",
        ),
    ] {
        let a = report_json(spec, 7, policy);
        let b = report_json(spec, 7, policy);
        assert_eq!(a, b, "{spec} {policy}");
        let c = report_json(spec, 8, policy);
        assert_ne!(a, c, "{spec} {policy}");
    }
}
