//! Unit tests of the simulator: placement errors, uplinks in Steps, network and hold costs,
//! cached node views, memory, heartbeat delays.

use super::*;
use crate::node::{Discipline, NodeSpec};
use crate::scenario::{by_name, NetworkModel};
use crate::workload::{TraceSource, TraceTask};
use malcolm_proto::bridge::Placement;

fn trace_task(arrival_ns: u64, origin: u32, service_ns: u64, deadline_ns: u64) -> TraceTask {
    TraceTask {
        arrival_ns,
        origin,
        service_ns,
        deadline_ns,
        size_bytes: 1000,
        class: 0,
        estimate_ns: None,
    }
}

#[test]
fn bad_placements_are_typed_errors() {
    let mut sim = RackSim::new(by_name("homogeneous-16:tasks=100,warmup=0").unwrap(), 1).unwrap();
    assert!(matches!(
        sim.apply(&Placement::default()),
        Err(SimError::NoStepOutstanding)
    ));
    let SimEvent::Step(step) = sim.next_event() else {
        panic!("expected a step");
    };
    let k = step.tasks.len();
    let bad = |targets: Vec<u32>, hold: Vec<u64>, idx: u64| Placement {
        step_index: idx,
        targets,
        hold_ns: hold,
        ..Default::default()
    };
    assert!(matches!(
        sim.apply(&bad(vec![0; k + 1], vec![], 0)),
        Err(SimError::TargetCount { .. })
    ));
    assert!(matches!(
        sim.apply(&bad(vec![16; k], vec![], 0)),
        Err(SimError::InvalidTarget { target: 16, .. })
    ));
    assert!(matches!(
        sim.apply(&bad(vec![0; k], vec![1; k + 2], 0)),
        Err(SimError::HoldCount { .. })
    ));
    assert!(matches!(
        sim.apply(&bad(vec![0; k], vec![], 5)),
        Err(SimError::WrongStep { .. })
    ));
    // The step is still waiting and a good placement goes through.
    sim.apply(&bad(vec![0; k], vec![], 0)).unwrap();
}

#[test]
fn steps_carry_each_uplink_queue_and_rate() {
    // 2 nodes, a 1 Gbps uplink: a 1000-byte task takes 8 us to serialise. Three tasks
    // arrive at node 0 at t = 0, 1 and 2 us (one Step each) and all go to node 1, so the
    // uplink FIFO holds them back to back from t = 0 to 24 us.
    let nodes = vec![NodeSpec::single(Discipline::fcfs()); 2];
    let trace: Vec<TraceTask> = (0..3u64)
        .map(|k| TraceTask {
            size_bytes: 1_000,
            ..trace_task(k * 1_000, 0, 5_000, 10_000_000)
        })
        .collect();
    let mut s = Scenario::trace("t", nodes, TraceSource::Inline(trace));
    s.decision.window_ns = 0;
    s.network.link_gbps = 1.0;
    let mut sim = RackSim::new(s, 0).unwrap();
    let mut seen = Vec::new();
    while let SimEvent::Step(st) = sim.next_event() {
        assert_eq!(st.links.len(), 2, "one uplink per node");
        let up0 = st.links.iter().find(|l| l.node_id == 0).unwrap();
        assert!(up0.uplink && !up0.pfc_paused && up0.link_id == 0);
        seen.push((st.sim_time_ns, up0.queue_bytes, up0.tx_rate_bps));
        sim.apply(&Placement {
            step_index: st.step_index,
            targets: vec![1; st.tasks.len()],
            ..Default::default()
        })
        .unwrap();
    }
    // At 1 us: task 1 has 7 of 8 us left (875 bytes). At 2 us: 750 bytes of task 1 and all
    // of task 2. The rate since the previous Step: 125 bytes in 1 us = 1 Gbps.
    assert_eq!(seen[0].1, 0);
    assert_eq!(seen[1], (1_000, 875, 1e9));
    assert_eq!(seen[2], (2_000, 1_750, 1e9));
}

#[test]
fn remote_placement_pays_network_and_hold_local_does_not() {
    let nodes = vec![NodeSpec::single(Discipline::fcfs()); 2];
    let trace = vec![
        trace_task(0, 0, 10_000, 1_000_000),
        trace_task(100_000, 0, 10_000, 1_000_000),
        trace_task(200_000, 0, 10_000, 1_000_000),
    ];
    let mut s = Scenario::trace("t", nodes, TraceSource::Inline(trace));
    s.decision.window_ns = 0;
    let mut sim = RackSim::new(s, 0).unwrap();
    let mut decisions = vec![(0u32, 0u64), (1, 0), (0, 7_000)].into_iter();
    let mut lat = Vec::new();
    loop {
        match sim.next_event() {
            SimEvent::Step(st) => {
                lat.extend(st.outcomes.iter().map(|o| o.latency_ns));
                let (t, h) = decisions.next().unwrap();
                sim.apply(&Placement {
                    step_index: st.step_index,
                    targets: vec![t],
                    hold_ns: vec![h],
                    ..Default::default()
                })
                .unwrap();
            }
            SimEvent::EpisodeEnd(e) => {
                lat.extend(e.outcomes.iter().map(|o| o.latency_ns));
                assert_eq!(e.reason, EndReason::Terminated as i32);
                break;
            }
        }
    }
    // Local: service only. Remote: + 1000 B at 100 Gbps (80 ns) + 2.5 us. Hold: + 7 us.
    assert_eq!(lat, vec![10_000, 12_580, 17_000]);
    assert_eq!(NetworkModel::default().serialisation_ns(1000), 80);
}

/// The cached node views must read exactly like a fresh computation at every Step.
#[test]
fn cached_node_state_equals_fresh_state() {
    for spec in [
        "homogeneous-8:tasks=20000,warmup=0,rho=0.95,window_ns=0",
        "hetero:tasks=20000,warmup=0,rho=0.9",
        "homogeneous-4:tasks=5000,warmup=0,discipline=ps",
    ] {
        let mut sim = RackSim::new(by_name(spec).unwrap(), 2).unwrap();
        let mut checked = 0;
        while let SimEvent::Step(st) = sim.next_event() {
            for (i, ns) in st.nodes.iter().enumerate() {
                let fresh = sim.nodes[i].sth(st.sim_time_ns);
                let s = ns.sth.as_ref().unwrap();
                assert_eq!(s.buckets, fresh.buckets.to_vec(), "{spec} node {i}");
                assert_eq!(s.min_slack_us, fresh.min_slack_or_zero());
                assert_eq!(s.total_tasks, fresh.total_tasks);
                assert_eq!(
                    s.sum_load_us,
                    sim.nodes[i].estimated_work_ns(st.sim_time_ns) / 1000
                );
                let hb = sim.heartbeat_of(i);
                let f = ns.heartbeat.as_ref().unwrap();
                assert_eq!(
                    (f.flags, f.slack_p10_us, f.slack_p50_us, f.queue_len),
                    (
                        hb.flags as u32,
                        hb.slack_p10_us as i32,
                        hb.slack_p50_us as i32,
                        hb.queue_len
                    )
                );
                checked += 1;
            }
            let targets = st
                .tasks
                .iter()
                .map(|t| (t.task_id % 4) as u32 % st.nodes.len() as u32)
                .collect();
            sim.apply(&Placement {
                step_index: st.step_index,
                targets,
                ..Default::default()
            })
            .unwrap();
            sim.recycle(st);
        }
        assert!(checked > 1000);
    }
}

/// Task table and buffers follow the tasks in flight, not the run length.
#[test]
fn memory_follows_tasks_in_flight() {
    let run = |tasks: u64| {
        let spec = format!("homogeneous-16:tasks={tasks},warmup=0");
        let mut sim = RackSim::new(by_name(&spec).unwrap(), 1).unwrap();
        let mut local = |st: &Step| Placement {
            step_index: st.step_index,
            targets: st.tasks.iter().map(|t| t.origin).collect(),
            ..Default::default()
        };
        crate::run_episode(&mut sim, &mut local).unwrap();
        (
            sim.tasks.slots.len(),
            sim.queue.len(),
            sim.outcomes.capacity(),
        )
    };
    let small = run(20_000);
    let large = run(200_000);
    assert!(large.0 < 2_000, "task slots {large:?}");
    // Ten times the tasks, nowhere near ten times the table.
    assert!(large.0 < 2 * small.0 + 200, "{small:?} vs {large:?}");
}

#[test]
fn heartbeats_reach_the_gst_after_the_network_delay() {
    let mut s = by_name("homogeneous-4:tasks=2000,warmup=0,t_hb_us=50").unwrap();
    s.decision.window_ns = 0;
    let mut sim = RackSim::new(s, 9).unwrap();
    let mut checked = 0;
    while let SimEvent::Step(st) = sim.next_event() {
        for ns in &st.nodes {
            if let Some(g) = &ns.gst {
                assert_eq!(g.heartbeats.len(), 4 * 16);
                assert_eq!(g.age_ns.len(), 4);
                if st.sim_time_ns > 60_000 {
                    for (j, &age) in g.age_ns.iter().enumerate() {
                        let own = j as u32 == ns.node_id;
                        let lo = if own { 0 } else { 2_500 };
                        assert!(age >= lo && age < 50_000 + lo, "age {age} of {j}");
                        let hb = Heartbeat::decode(&g.heartbeats[16 * j..16 * j + 16]).unwrap();
                        assert_eq!(hb.node_id as usize, j);
                    }
                    checked += 1;
                }
            }
        }
        let k = st.tasks.len();
        let targets = st.tasks.iter().map(|t| t.origin).collect();
        sim.apply(&Placement {
            step_index: st.step_index,
            targets,
            hold_ns: vec![0; k],
            ..Default::default()
        })
        .unwrap();
        sim.recycle(st);
    }
    assert!(checked > 100);
}
