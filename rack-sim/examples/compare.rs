//! Runs scenarios against baselines in process and prints one line per pair.
//!
//! `cargo run --release -p rack-sim --example compare -- SCENARIO[ SCENARIO...] -p POLICY[,POLICY]`
//! e.g. `-- hetero:discipline=fcfs ideal:discipline=fcfs hetero -p po2,slack-greedy`.

use malcolm_policies::baselines::{factory_by_name, Params};
use malcolm_serve::loopback::Loopback;
use rack_sim::{by_name, run_env_loop, RackSim};
use std::sync::Arc;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut scenarios = Vec::new();
    let mut policies = vec!["po2".to_string()];
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if a == "-p" {
            policies = it
                .next()
                .expect("-p needs a list")
                .split(',')
                .map(str::to_string)
                .collect();
        } else {
            scenarios.push(a.clone());
        }
    }
    if scenarios.is_empty() {
        scenarios.push("hetero".into());
    }
    // Percentiles over all tasks: a dropped task counts as never completing (inf).
    println!(
        "{:<40} {:<14} {:>9} {:>12} {:>10} {:>10} {:>10} {:>8}",
        "scenario", "policy", "miss", "goodput/s", "p50 us", "p99 us", "p99.9 us", "wcet"
    );
    for spec in &scenarios {
        for policy in &policies {
            let scenario = by_name(spec).expect("scenario");
            // `name:key=value;key=value` passes policy parameters.
            let (name, params) = policy.split_once(':').unwrap_or((policy.as_str(), ""));
            let params: Params = params
                .split(';')
                .filter_map(|kv| kv.split_once('='))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            let factory = factory_by_name(name, &params).expect("policy");
            let mut sim = RackSim::new(scenario, 1).expect("sim");
            let mut t = Loopback::new(Arc::from(factory), 1);
            let r = run_env_loop(&mut sim, &mut t, "compare", 1).expect("run");
            println!(
                "{:<40} {:<14} {:>9.5} {:>12.0} {:>10.1} {:>10.1} {:>10.1} {:>8.1}",
                spec,
                policy,
                r.miss_rate,
                r.goodput_per_s,
                r.latency.p50_ns / 1e3,
                r.latency.p99_ns / 1e3,
                r.latency.p999_ns / 1e3,
                r.wcet_ratio
            );
        }
    }
}
