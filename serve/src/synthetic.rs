//! Synthetic but realistic bridge messages (a rack of fast EDF nodes and its Steps) for
//! benchmarks and tests that need a valid conversation without a simulator.

use malcolm_proto::bridge::*;

/// The origins of the tasks of synthetic Step `index`.
fn origins_of(n: u32, tasks: u32, index: u64) -> Vec<u32> {
    (0..tasks).map(|t| (t * 7 + index as u32) % n).collect()
}

/// A synthetic but realistic Step: every node's STH and heartbeat, a GST for each origin,
/// `tasks` pending tasks, and the outcomes of the previous Step's tasks (so a long run keeps
/// few tasks waiting for their outcome, as a real env does).
pub fn synthetic_step(n: u32, tasks: u32, index: u64) -> Step {
    let gst: Vec<u8> = (0..n)
        .flat_map(|i| {
            malcolm_proto::Heartbeat::from_values(i as u8, 0, 700, 5, 40, 3 + i as u64, 1).encode()
        })
        .collect();
    let origins = origins_of(n, tasks, index);
    let outcomes = match index.checked_sub(1) {
        None => vec![],
        Some(prev) => origins_of(n, tasks, prev)
            .into_iter()
            .enumerate()
            .map(|(t, o)| TaskOutcome {
                task_id: prev * 1000 + t as u64,
                node_id: o,
                origin: o,
                kind: OutcomeKind::Completed as i32,
                arrival_ns: prev * 2_000,
                finish_ns: prev * 2_000 + 12_000,
                deadline_ns: prev * 2_000 + 30_000,
                latency_ns: 12_000,
                class: 0,
                decided_at_step: prev,
            })
            .collect(),
    };
    Step {
        sim_time_ns: index * 2_000,
        episode: 0,
        step_index: index,
        nodes: (0..n)
            .map(|i| NodeState {
                node_id: i,
                sth: Some(Sth {
                    buckets: (0..16).map(|b| (b * 3 + i) % 7).collect(),
                    total_tasks: 40,
                    min_slack_us: -2,
                    sum_load_us: 400,
                }),
                heartbeat: Some(HeartbeatFields {
                    node_id: i,
                    flags: 0,
                    load_factor_milli: 700,
                    slack_p10_us: 5,
                    slack_p50_us: 40,
                    queue_len: 3 + i,
                    policy_version: 1,
                }),
                gst: origins.contains(&i).then(|| GlobalStateView {
                    heartbeats: gst.clone(),
                    age_ns: vec![25_000; n as usize],
                }),
                utilisation: 0.7,
            })
            .collect(),
        links: vec![],
        tasks: origins
            .iter()
            .enumerate()
            .map(|(t, &o)| PendingTask {
                task_id: index * 1000 + t as u64,
                origin: o,
                size_bytes: 2048,
                service_estimate_ns: 10_000,
                deadline_ns: index * 2_000 + 30_000,
                arrival_ns: index * 2_000,
                class: 0,
            })
            .collect(),
        outcomes,
        gst_tables: vec![],
        node_columns: None,
    }
}

/// A Hello for a rack of `n` fast EDF nodes (benchmarks and tests).
pub fn synthetic_hello(n: u32, env_id: &str) -> Hello {
    Hello {
        env_id: env_id.into(),
        simulator: "bench".into(),
        scenario: "synthetic".into(),
        seed: 1,
        nodes: (0..n)
            .map(|i| NodeSpec {
                node_id: i,
                cores: 4,
                speed: 1.0,
                kind: "fast".into(),
                discipline: Discipline::Edf as i32,
            })
            .collect(),
        sth: Some(malcolm_proto::sth_config()),
        heartbeat_interval_ns: 50_000,
        parameters: Default::default(),
        protocol_versions: malcolm_proto::SUPPORTED_VERSIONS.to_vec(),
    }
}

/// Rewrites a v1 Step into its v2 form: each distinct GST once in `gst_tables`, the node
/// states packed into `node_columns` (origins naming their table there).
pub fn to_v2(step: &mut Step) {
    step.gst_tables.clear();
    let mut index = vec![0u16; step.nodes.len()];
    for (i, node) in step.nodes.iter_mut().enumerate() {
        let Some(g) = node.gst.take() else {
            continue;
        };
        let k = match step.gst_tables.iter().position(|t| *t == g) {
            Some(k) => k,
            None => {
                step.gst_tables.push(g);
                step.gst_tables.len() - 1
            }
        };
        index[i] = k as u16 + 1;
    }
    let mut cols = NodeColumns::default();
    malcolm_proto::columns::pack(&step.nodes, &index, &mut cols);
    step.node_columns = Some(cols);
    step.nodes.clear();
}
