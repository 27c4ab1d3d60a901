//! Prints Malcolm-Strict's inference latency for one Step (16 tasks, 64 nodes) on one thread
//! and the learner's updates per second at batch 256.

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

    for hidden in [64, 32] {
        inference_bench(&mut rng, hidden);
    }
    for (nodes, batch, hidden) in [(NODES, 256, 32), (5, 256, 32), (NODES, 256, 64)] {
        train_bench(&mut rng, nodes, batch, hidden);
    }
}

/// One session's decide() latency, eval mode (deterministic CVaR over 32 fixed taus) and
/// train mode.
fn inference_bench(rng: &mut rand_chacha::ChaCha8Rng, hidden: usize) {
    let factory = StrictFactory::new(IqnConfig {
        hidden,
        ..Default::default()
    })
    .expect("factory");
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
        "inference, hidden {hidden}, {TASKS} tasks x {NODES} nodes, 1 thread, eval: p50 {:.1} us  p90 {:.1} us  p99 {:.1} us  (wall, {} steps); on-CPU mean {cpu_per_step_us:.1} us/step",
        percentile(&lat, 0.5),
        percentile(&lat, 0.9),
        percentile(&lat, 0.99),
        lat.len()
    );
    // The Rust side alone: heartbeat decoding and feature building for the same Steps.
    let mut fb = FeatureBuilder::from_hello(&hello()).expect("features");
    let mut view = OriginView::default();
    let mut shared = vec![0f32; TASKS * SHARED_FEATURES];
    let mut cand = vec![0f32; TASKS * NODES * CANDIDATE_FEATURES];
    let t = Instant::now();
    for s in &steps {
        fb.observe_tasks(&s.tasks);
        for (i, task) in s.tasks.iter().enumerate() {
            fb.origin_view(s, task.origin as usize, &mut view);
            let (a, b) = (i * SHARED_FEATURES, i * NODES * CANDIDATE_FEATURES);
            fb.task(
                s,
                task,
                &view,
                &mut shared[a..a + SHARED_FEATURES],
                &mut cand[b..b + NODES * CANDIDATE_FEATURES],
            );
        }
    }
    println!(
        "  of which features (decode 16 views + 16 x 64 candidates): {:.1} us/step",
        t.elapsed().as_secs_f64() * 1e6 / steps.len() as f64
    );
    factory.set_mode(Mode::Train);
    let mut lat = Vec::new();
    for s in &steps {
        let t = Instant::now();
        policy.decide(s, &mut out).expect("decide");
        lat.push(t.elapsed().as_secs_f64() * 1e6);
    }
    lat.sort_by(f64::total_cmp);
    println!(
        "inference, train mode (sampled taus, transition bookkeeping): p50 {:.1} us  p99 {:.1} us",
        percentile(&lat, 0.5),
        percentile(&lat, 0.99)
    );
}

/// Synchronous learner updates on random transitions whose next states have `nodes`
/// candidates.
fn train_bench(rng: &mut rand_chacha::ChaCha8Rng, nodes: usize, batch: usize, hidden: usize) {
    let mut learner = Learner::new(IqnConfig {
        batch,
        hidden,
        ..Default::default()
    })
    .expect("learner");
    for _ in 0..4096 {
        let r = |rng: &mut rand_chacha::ChaCha8Rng, n: usize| -> Box<[f32]> {
            (0..n).map(|_| rng.random_range(-1.0..1.0)).collect()
        };
        learner.push(Transition {
            shared: r(rng, SHARED_FEATURES),
            chosen: r(rng, CANDIDATE_FEATURES),
            reward: rng.random_range(-1.0..0.01),
            bootstrap: true,
            next_shared: r(rng, SHARED_FEATURES),
            next_cand: r(rng, nodes * CANDIDATE_FEATURES),
        });
    }
    for _ in 0..5 {
        learner.update();
    }
    let n = 100;
    let t = Instant::now();
    for _ in 0..n {
        learner.update();
    }
    let dt = t.elapsed().as_secs_f64();
    println!(
        "training, batch {batch}, hidden {hidden}, N = N' = 32, next states of {nodes} candidates, 1 thread: {:.1} updates/s ({:.2} ms/update)",
        n as f64 / dt,
        dt * 1e3 / n as f64
    );
}
