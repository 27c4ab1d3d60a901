//! Hand-built racks and Steps for the agents' tests (no simulator needed).
#![allow(dead_code)]

use malcolm_proto::bridge::{
    GlobalStateView, HeartbeatFields, Hello, NodeSpec, NodeState, PendingTask, Step, Sth,
    TaskOutcome,
};
use malcolm_proto::Heartbeat;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// A rack of `fast` nodes (speed 1, 4 cores) followed by `slow` ones (speed 0.2, 16 cores).
pub fn hello(fast: usize, slow: usize) -> Hello {
    let nodes = (0..fast + slow)
        .map(|i| NodeSpec {
            node_id: i as u32,
            cores: if i < fast { 4 } else { 16 },
            speed: if i < fast { 1.0 } else { 0.2 },
            kind: if i < fast { "fast" } else { "slow" }.into(),
            discipline: 1,
        })
        .collect();
    Hello {
        env_id: "test".into(),
        simulator: "hand".into(),
        scenario: "hand".into(),
        nodes,
        sth: Some(malcolm_proto::sth_config()),
        heartbeat_interval_ns: 50_000,
        ..Default::default()
    }
}

/// A random but plausible Step over `n` nodes with `tasks` pending tasks.
pub fn random_step(rng: &mut ChaCha8Rng, n: usize, tasks: usize, index: u64) -> Step {
    let now = 1_000_000 + index * 20_000;
    let hbs: Vec<Heartbeat> = (0..n)
        .map(|i| {
            Heartbeat::from_values(
                i as u8,
                rng.random_range(0..4),
                rng.random_range(0..1500),
                rng.random_range(-20..200),
                rng.random_range(0..400),
                rng.random_range(0..40),
                0,
            )
        })
        .collect();
    let bytes: Vec<u8> = hbs.iter().flat_map(|h| h.encode()).collect();
    let nodes = (0..n)
        .map(|i| {
            let mut buckets = vec![0u32; 16];
            for _ in 0..hbs[i].queue_len.min(30) {
                buckets[rng.random_range(0..16)] += 1;
            }
            NodeState {
                node_id: i as u32,
                sth: Some(Sth {
                    total_tasks: buckets.iter().sum(),
                    buckets,
                    min_slack_us: rng.random_range(-10..50),
                    sum_load_us: rng.random_range(0..500),
                }),
                heartbeat: Some(HeartbeatFields {
                    node_id: i as u32,
                    flags: hbs[i].flags as u32,
                    load_factor_milli: hbs[i].load_factor as u32,
                    slack_p10_us: hbs[i].slack_p10_us as i32,
                    slack_p50_us: hbs[i].slack_p50_us as i32,
                    queue_len: hbs[i].queue_len,
                    policy_version: 0,
                }),
                gst: Some(GlobalStateView {
                    heartbeats: bytes.clone(),
                    age_ns: (0..n).map(|_| rng.random_range(0..100_000)).collect(),
                }),
                utilisation: rng.random_range(0.0..1.0),
            }
        })
        .collect();
    let tasks = (0..tasks)
        .map(|k| {
            let service = rng.random_range(2_000..40_000u64);
            PendingTask {
                task_id: index * 1000 + k as u64,
                origin: rng.random_range(0..n as u32),
                size_bytes: rng.random_range(64..4096),
                service_estimate_ns: service,
                deadline_ns: now + 3 * service,
                arrival_ns: now,
                class: 0,
            }
        })
        .collect();
    Step {
        sim_time_ns: now,
        episode: 0,
        step_index: index,
        nodes,
        tasks,
        ..Default::default()
    }
}

/// Outcomes for the tasks of `step` given the chosen `targets`: on time when the target is a
/// fast node, else late by 20 us.
pub fn outcomes(step: &Step, targets: &[u32], fast: usize) -> Vec<TaskOutcome> {
    step.tasks
        .iter()
        .zip(targets)
        .map(|(t, &node)| {
            let on_time = (node as usize) < fast;
            let finish = if on_time {
                t.arrival_ns + t.service_estimate_ns
            } else {
                t.deadline_ns + 20_000
            };
            TaskOutcome {
                task_id: t.task_id,
                node_id: node,
                origin: t.origin,
                kind: if on_time { 1 } else { 2 },
                arrival_ns: t.arrival_ns,
                finish_ns: finish,
                deadline_ns: t.deadline_ns,
                latency_ns: finish - t.arrival_ns,
                class: 0,
                decided_at_step: 0,
            }
        })
        .collect()
}

pub fn rng(seed: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed)
}
