//! Prints Malcolm-Strict's inference latency for one Step (16 tasks, 64 nodes) on one thread,
//! and the learner's updates per second at the shipped configuration next to a PyTorch
//! reference of the identical network, loss and optimiser (`iqn_reference.py`, run with the
//! project's venv), with their ratio.

use malcolm_agents::features::{FeatureBuilder, OriginView, CANDIDATE_FEATURES, SHARED_FEATURES};
use malcolm_agents::replay::Transition;
use malcolm_agents::{IqnConfig, Learner, StrictFactory};
use malcolm_policies::{Decision, Mode, PolicyFactory};
use malcolm_proto::bridge::{
    GlobalStateView, HeartbeatFields, Hello, NodeSpec, NodeState, PendingTask, Step, Sth,
};
use malcolm_proto::Heartbeat;
use rand::{Rng, SeedableRng};
use std::time::Instant;

const NODES: usize = 64;
const TASKS: usize = 16;

fn hello() -> Hello {
    Hello {
        env_id: "bench".into(),
        nodes: (0..NODES)
            .map(|i| NodeSpec {
                node_id: i as u32,
                cores: if i % 5 < 2 { 4 } else { 16 },
                speed: if i % 5 < 2 { 1.0 } else { 0.2 },
                ..Default::default()
            })
            .collect(),
        sth: Some(malcolm_proto::sth_config()),
        ..Default::default()
    }
}

fn step(rng: &mut impl Rng, index: u64) -> Step {
    let now = 1_000_000 + index * 10_000;
    let bytes: Vec<u8> = (0..NODES)
        .flat_map(|i| {
            Heartbeat::from_values(
                i as u8,
                0,
                rng.random_range(0..1500),
                5,
                50,
                rng.random_range(0..40),
                0,
            )
            .encode()
        })
        .collect();
    Step {
        sim_time_ns: now,
        step_index: index,
        nodes: (0..NODES)
            .map(|i| NodeState {
                node_id: i as u32,
                sth: Some(Sth {
                    buckets: vec![1; 16],
                    total_tasks: 16,
                    min_slack_us: 3,
                    sum_load_us: 100,
                }),
                heartbeat: Some(HeartbeatFields::default()),
                gst: Some(GlobalStateView {
                    heartbeats: bytes.clone(),
                    age_ns: vec![20_000; NODES],
                }),
                utilisation: 0.5,
            })
            .collect(),
        tasks: (0..TASKS)
            .map(|k| PendingTask {
                task_id: index * 100 + k as u64,
                origin: rng.random_range(0..NODES as u32),
                service_estimate_ns: 10_000,
                deadline_ns: now + 30_000,
                arrival_ns: now,
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    }
}

/// CPU time of the calling thread, ns (first field of /proc/thread-self/schedstat); wall
/// latency on a shared machine also counts time the thread waited for a core.
fn thread_cpu_ns() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn main() {
    tch::set_num_threads(1);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
    let shipped = IqnConfig::default();
    println!(
        "shipped config: hidden {}, head hidden {}, K {} taus, N = N' = {}, batch {}, next candidates {}",
        shipped.hidden, shipped.head_hidden, shipped.k_tau, shipped.n_tau, shipped.batch,
        shipped.next_candidates
    );
    // `cargo bench -p malcolm-agents --bench iqn -- inference|training` runs one part.
    let only: Option<String> = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let run = |part: &str| only.as_deref().is_none_or(|o| o == part);
    if run("inference") {
        inference_bench(&mut rng, shipped.clone(), "shipped");
        inference_bench(
            &mut rng,
            IqnConfig {
                head_hidden: 0,
                ..shipped.clone()
            },
            "linear head (ablation)",
        );
        // Other head widths and tau counts, on request (their costs, not their learning).
        if std::env::var_os("MALCOLM_BENCH_WIDTHS").is_some() {
            for (h2, k) in [(8, 8), (16, 4), (8, 4)] {
                inference_bench(
                    &mut rng,
                    IqnConfig {
                        head_hidden: h2,
                        k_tau: k,
                        ..shipped.clone()
                    },
                    &format!("head hidden {h2}, K {k}"),
                );
            }
        }
    }
    if run("training") {
        for nodes in [5, NODES] {
            train_bench(&mut rng, &shipped, nodes, "shipped, discount 0");
        }
        let bootstrap = IqnConfig {
            discount: 0.99,
            ..shipped.clone()
        };
        for nodes in [5, NODES] {
            train_bench(
                &mut rng,
                &bootstrap,
                nodes,
                "discount 0.99: target network over next states",
            );
        }
    }
}

/// One session's decide() latency for a Step of 16 tasks x 64 nodes, eval mode (CVaR over K
/// fixed taus) and train mode.
fn inference_bench(rng: &mut rand_chacha::ChaCha8Rng, config: IqnConfig, label: &str) {
    let factory = StrictFactory::new(config.clone()).expect("factory");
    factory.set_mode(Mode::Eval);
    let mut policy = factory.new_session(&hello(), 1).expect("session");
    let steps: Vec<Step> = (0..200).map(|i| step(rng, i)).collect();
    let mut out = Decision::default();
    for s in steps.iter().take(50) {
        policy.decide(s, &mut out).expect("decide");
    }
    let mut lat = Vec::new();
    let cpu0 = thread_cpu_ns();
    for _ in 0..10 {
        for s in &steps {
            let t = Instant::now();
            policy.decide(s, &mut out).expect("decide");
            lat.push(t.elapsed().as_secs_f64() * 1e6);
        }
    }
    let cpu_per_step_us = (thread_cpu_ns() - cpu0) as f64 / 1e3 / lat.len() as f64;
    lat.sort_by(f64::total_cmp);
    println!(
        "inference ({label}), {TASKS} tasks x {NODES} nodes, 1 thread, eval: p50 {:.1} us  p90 {:.1} us  p99 {:.1} us  (wall, {} steps); on-CPU mean {cpu_per_step_us:.1} us/step",
        percentile(&lat, 0.5),
        percentile(&lat, 0.9),
        percentile(&lat, 0.99),
        lat.len()
    );
    // Train mode acts the same way with fresh taus per Step and epsilon exploration, and
    // remembers every decision for the learner (below learn_start: no update runs, so this is
    // the acting cost alone).
    factory.set_mode(Mode::Train);
    let mut train_lat = Vec::new();
    for s in steps.iter().take(100) {
        let t = Instant::now();
        policy.decide(s, &mut out).expect("decide");
        train_lat.push(t.elapsed().as_secs_f64() * 1e6);
    }
    train_lat.sort_by(f64::total_cmp);
    println!(
        "  train mode (acting only, {} steps): p50 {:.1} us  p90 {:.1} us",
        train_lat.len(),
        percentile(&train_lat, 0.5),
        percentile(&train_lat, 0.9)
    );
    factory.set_mode(Mode::Eval);
    // Of which the output stage for a fresh set of taus, built once per train-mode Step
    // whatever its size (so it dominates small Steps: 2 tasks x 16 nodes in OMNeT++'s Hetero).
    let arch =
        malcolm_agents::iqn::IqnArch::new(config.hidden, config.head_hidden, config.cos_embed);
    let actor = malcolm_agents::actor::Actor::new(arch, arch.init_params(1));
    let tau_sets: Vec<Vec<f32>> = (0..1000)
        .map(|_| {
            (0..config.k_tau)
                .map(|_| rng.random::<f32>() * config.cvar_alpha as f32)
                .collect()
        })
        .collect();
    let t = Instant::now();
    let mut keep = 0usize;
    for taus in &tau_sets {
        keep += std::hint::black_box(actor.head(taus)).len();
    }
    println!(
        "  of which the output stage for fresh taus (once per train-mode Step): {:.1} us ({keep} values)",
        t.elapsed().as_secs_f64() * 1e6 / tau_sets.len() as f64
    );
    // Features alone: views, shared features, every candidate row.
    let mut fb = FeatureBuilder::from_hello(&hello()).expect("features");
    let mut view = OriginView::default();
    let mut shared = vec![0f32; SHARED_FEATURES];
    let mut cand = vec![0f32; NODES * CANDIDATE_FEATURES];
    let t = Instant::now();
    for s in &steps {
        fb.begin_step(s).expect("step");
        for task in &s.tasks {
            fb.origin_view(s, task.origin as usize, &mut view);
            fb.task(s, task, &view, &mut shared, &mut cand)
                .expect("features");
        }
    }
    println!(
        "  of which features (16 views + 16 x 64 candidate rows, no caching): {:.1} us/step",
        t.elapsed().as_secs_f64() * 1e6 / steps.len() as f64
    );
}

/// Synchronous learner updates on random transitions whose next states have `nodes`
/// candidates (the replay keeps the best `next_candidates`), timed in rounds alternating with
/// the PyTorch reference (agents/benches/iqn_reference.py) run by the project's venv python.
fn train_bench(rng: &mut rand_chacha::ChaCha8Rng, config: &IqnConfig, nodes: usize, label: &str) {
    let mut learner = Learner::new(config.clone()).expect("learner");
    for _ in 0..8192 {
        let r = |rng: &mut rand_chacha::ChaCha8Rng, n: usize| -> Box<[f32]> {
            (0..n).map(|_| rng.random_range(-1.0..1.0)).collect()
        };
        learner.push(&Transition {
            shared: r(rng, SHARED_FEATURES),
            chosen: r(rng, CANDIDATE_FEATURES),
            reward: rng.random_range(-1.0..0.01),
            discount: config.discount as f32,
            next_shared: r(rng, SHARED_FEATURES),
            next_cand: r(rng, nodes * CANDIDATE_FEATURES),
        });
    }
    let m = nodes.min(config.next_candidates);
    for _ in 0..5 {
        learner.update();
    }
    let updates = 100;
    let mut reference = PyReference::start(config, m, updates);
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    for _ in 0..3 {
        let t = Instant::now();
        for _ in 0..updates {
            learner.update();
        }
        ours.push(updates as f64 / t.elapsed().as_secs_f64());
        if let Some(r) = reference.as_mut() {
            match r.round() {
                Some(x) => theirs.push(x),
                None => reference = None,
            }
        }
    }
    ours.sort_by(f64::total_cmp);
    theirs.sort_by(f64::total_cmp);
    let line = format!(
        "training ({label}), batch {}, next states of {nodes} candidates ({m} kept), 1 thread: Rust {:.0} updates/s ({:.2} ms/update)",
        config.batch,
        ours[1],
        1e3 / ours[1]
    );
    match theirs.get(1) {
        Some(py) => println!(
            "{line}; PyTorch reference {py:.0} updates/s; ratio Rust/PyTorch {:.2} (medians of 3 alternating rounds of {updates})",
            ours[1] / py
        ),
        None => println!("{line}; PyTorch reference not run (no python with torch found: run scripts/setup.sh)"),
    }
}

/// The PyTorch reference process, driven round by round.
struct PyReference {
    child: std::process::Child,
    stdin: std::process::ChildStdin,
    stdout: std::io::BufReader<std::process::ChildStdout>,
}

impl PyReference {
    fn start(c: &IqnConfig, next: usize, updates: usize) -> Option<Self> {
        use std::io::Write;
        use std::process::{Command, Stdio};
        let venv = std::env::var("MALCOLM_VENV").ok()?;
        let python = std::path::Path::new(&venv).join("bin/python");
        let script =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/iqn_reference.py");
        let mut child = Command::new(python)
            .arg(script)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .ok()?;
        let mut stdin = child.stdin.take()?;
        let stdout = std::io::BufReader::new(child.stdout.take()?);
        let cfg = serde_json::json!({
            "shared": SHARED_FEATURES, "cand": CANDIDATE_FEATURES, "hidden": c.hidden,
            "head_hidden": c.head_hidden, "cos_embed": c.cos_embed, "batch": c.batch,
            "n_tau": c.n_tau, "n_tau_target": c.n_tau_target, "k_tau": c.k_tau, "next": next,
            "alpha": c.cvar_alpha, "kappa": c.kappa, "lr": c.lr, "clip": c.grad_clip,
            "discount": c.discount, "updates": updates,
        });
        writeln!(stdin, "{cfg}").ok()?;
        Some(Self {
            child,
            stdin,
            stdout,
        })
    }

    fn round(&mut self) -> Option<f64> {
        use std::io::{BufRead, Write};
        writeln!(self.stdin, "go").ok()?;
        self.stdin.flush().ok()?;
        let mut line = String::new();
        self.stdout.read_line(&mut line).ok()?;
        line.trim().strip_prefix("updates_per_s ")?.parse().ok()
    }
}

impl Drop for PyReference {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
