//! Throughput of the simulator: a 1e6-task, 64-node run (`homogeneous-64`) with an in-process
//! power-of-2 policy, through the same bridge messages an agent gets. Prints simulated events
//! per second and wall time (targets: >= 3 M events/s, < 5 s).
//!
//! `cargo bench -p rack-sim --bench po2_64 [-- SCENARIO]`, e.g. `homogeneous-64:window_ns=0`
//! for one Step per arrival.

use malcolm_policies::baselines::{factory_by_name, Params};
use malcolm_serve::loopback::Loopback;
use rack_sim::{by_name, run_env_loop, RackSim};
use std::sync::Arc;
use std::time::Instant;

fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// CPU time of this process (user + system), from /proc (10 ms resolution): a rate per CPU
/// second stays meaningful when other jobs share the cores.
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    // USER_HZ is 100 on every Linux we run on.
    Some(ticks / 100.0)
}

fn main() {
    let spec = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with("--"))
        .unwrap_or_else(|| "homogeneous-64".to_string());
    let scenario = by_name(&spec).expect("scenario");
    let tasks = scenario.limits.tasks.unwrap_or(0);
    let factory = factory_by_name("po2", &Params::new()).expect("po2");
    let mut sim = RackSim::new(scenario, 1).expect("sim");
    let mut transport = Loopback::new(Arc::from(factory), 1);
    let cpu0 = cpu_seconds();
    let t0 = Instant::now();
    let report = run_env_loop(&mut sim, &mut transport, "bench", 1).expect("run");
    let wall = t0.elapsed().as_secs_f64();
    let cpu = cpu_seconds().zip(cpu0).map(|(b, a)| b - a);
    println!("scenario            {spec}");
    println!("tasks               {tasks} ({} measured)", report.finished);
    println!("events              {}", report.events);
    println!("steps               {}", report.steps);
    println!("wall time           {wall:.3} s");
    println!(
        "events/s            {:.2} M",
        report.events as f64 / wall / 1e6
    );
    println!("tasks/s             {:.2} M", tasks as f64 / wall / 1e6);
    if let Some(cpu) = cpu.filter(|&c| c > 0.0) {
        println!("cpu time            {cpu:.2} s");
        println!(
            "events/cpu-s        {:.2} M",
            report.events as f64 / cpu / 1e6
        );
    }
    println!(
        "simulated time      {:.3} s",
        report.sim_time_ns as f64 / 1e9
    );
    println!("miss rate           {:.4}", report.miss_rate);
    println!(
        "p99 latency         {:.1} us (all tasks; inf: > 1% dropped)",
        report.latency.p99_ns / 1e3
    );
    if let Some(kib) = peak_rss_kib() {
        println!("peak RSS            {:.1} MiB", kib as f64 / 1024.0);
    }
}
