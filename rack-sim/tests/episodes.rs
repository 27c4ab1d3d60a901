//! Episode mechanics, trace files, micro-bursts and the end reasons.

mod common;

use common::run_baseline;
use malcolm_proto::bridge::{EndReason, Placement};
use rack_sim::workload::BurstSource;
use rack_sim::{by_name, run_episode, RackSim, Scenario, SimError, SimEvent, TraceSource};
use std::io::Write;

fn local(step: &malcolm_proto::bridge::Step) -> Placement {
    Placement {
        step_index: step.step_index,
        targets: step.tasks.iter().map(|t| t.origin).collect(),
        ..Default::default()
    }
}

#[test]
fn episodes_restart_with_fresh_state_and_counters() {
    let mut sim = RackSim::new(by_name("homogeneous-4:tasks=500,warmup=0").unwrap(), 1).unwrap();
    let first = run_episode(&mut sim, &mut local).unwrap();
    assert_eq!(first.episode, 0);
    assert_eq!(first.reason, EndReason::Truncated as i32);
    let SimEvent::Step(s) = sim.next_event() else {
        panic!("a new episode starts with a step");
    };
    assert_eq!((s.episode, s.step_index), (1, 0));
    assert!(s.sim_time_ns < first.sim_time_ns);
    assert!(s.outcomes.is_empty(), "nothing carried over");
    sim.apply(&local(&s)).unwrap();
    let second = run_episode(&mut sim, &mut local).unwrap();
    assert_eq!(second.episode, 1);
    let r = sim.report();
    assert_eq!(r.episodes, 2);
    assert_eq!(r.finished, 1000);
    // Every task id below the limit got exactly one outcome (steps + episode end).
}

#[test]
fn every_counted_task_gets_one_outcome() {
    let mut sim = RackSim::new(by_name("hetero:tasks=3000,warmup=0,rho=0.9").unwrap(), 4).unwrap();
    let mut seen = vec![0u32; 3000];
    let mut count = |o: &[malcolm_proto::bridge::TaskOutcome]| {
        for x in o {
            if x.task_id < 3000 {
                seen[x.task_id as usize] += 1;
            }
        }
    };
    loop {
        match sim.next_event() {
            SimEvent::Step(s) => {
                count(&s.outcomes);
                sim.apply(&local(&s)).unwrap();
            }
            SimEvent::EpisodeEnd(e) => {
                count(&e.outcomes);
                break;
            }
        }
    }
    assert!(seen.iter().all(|&c| c == 1));
}

#[test]
fn sim_time_limit_truncates() {
    let mut sim = RackSim::new(by_name("homogeneous-4:sim_time_ms=2").unwrap(), 1).unwrap();
    let end = run_episode(&mut sim, &mut local).unwrap();
    assert_eq!(end.reason, EndReason::Truncated as i32);
    assert_eq!(end.sim_time_ns, 2_000_000);
}

#[test]
fn csv_trace_replays_to_a_terminated_end() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tasks.csv");
    let mut f = std::fs::File::create(&path).unwrap();
    writeln!(f, "arrival_ns,origin,service_ns,deadline_ns,size_bytes").unwrap();
    for i in 0..200u64 {
        writeln!(
            f,
            "{},{},{},{},{}",
            i * 5_000,
            i % 3,
            8_000,
            i * 5_000 + 30_000,
            512
        )
        .unwrap();
    }
    drop(f);
    let nodes = by_name("homogeneous-3").unwrap().nodes;
    let s = Scenario::trace("trace", nodes.clone(), TraceSource::File(path.clone()));
    let r = run_baseline(s.clone(), 1, "round-robin", &[]);
    assert_eq!(r.finished, 200);
    assert_eq!(r.episode_reports[0].reason, "terminated");
    assert_eq!(r.miss_rate, 0.0);
    // Replays identically in the next episode.
    let mut sim = RackSim::new(s, 1).unwrap();
    let a = run_episode(&mut sim, &mut local).unwrap();
    let b = run_episode(&mut sim, &mut local).unwrap();
    assert_eq!(a.sim_time_ns, b.sim_time_ns);
    // A trace naming node 7 of a 3-node rack is refused up front.
    let bad = dir.path().join("bad.csv");
    std::fs::write(
        &bad,
        "arrival_ns,origin,service_ns,deadline_ns,size_bytes\n0,7,1,10,0\n",
    )
    .unwrap();
    let err = RackSim::new(
        Scenario::trace("bad", nodes.clone(), TraceSource::File(bad)),
        0,
    )
    .err()
    .unwrap();
    assert!(matches!(err, SimError::Trace(_)), "{err}");
    let missing = Scenario::trace(
        "missing",
        nodes,
        TraceSource::File(dir.path().join("nope.csv")),
    );
    assert!(RackSim::new(missing, 0).is_err());
}

#[test]
fn microbursts_are_measured_as_class_one() {
    let mut s = by_name("microburst:tasks=60000,warmup=0").unwrap();
    let b = s.workload.bursts.as_mut().unwrap();
    *b = BurstSource {
        period_ns: 2_000_000,
        first_at_ns: 1_000_000,
        ..BurstSource::standard(16)
    };
    let r = run_baseline(s, 3, "slack-greedy", &[]);
    let bursts = &r.per_class[&1];
    assert!(bursts.finished >= 5 * 128, "{bursts:?}");
    assert_eq!(bursts.finished % 128, 0, "whole bursts of 8 x 16 tasks");
    eprintln!(
        "micro-burst miss rate {:.4}, regular {:.4}",
        bursts.miss_rate, r.per_class[&0].miss_rate
    );
}

#[test]
fn hello_describes_the_rack() {
    let sim = RackSim::new(by_name("hetero").unwrap(), 5).unwrap();
    let h = sim.hello("env-0");
    assert_eq!(h.nodes.len(), 5);
    assert_eq!(h.nodes[4].kind, "slow");
    assert_eq!(h.nodes[4].cores, 16);
    assert_eq!(h.sth.unwrap().buckets, 16);
    assert_eq!(h.seed, 5);
    assert!(h.parameters.contains_key("mean_service_ns"));
}

#[test]
fn a_failing_trace_cuts_the_episode_and_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tasks.csv");
    let mut f = std::fs::File::create(&path).unwrap();
    writeln!(f, "arrival_ns,origin,service_ns,deadline_ns,size_bytes").unwrap();
    for i in 0..100u64 {
        writeln!(f, "{},0,1000,{},0", i * 5_000, i * 5_000 + 30_000).unwrap();
    }
    // Time travel at row 101: the source fails mid-episode.
    writeln!(f, "1000,0,1000,40000,0").unwrap();
    drop(f);
    let nodes = by_name("homogeneous-2").unwrap().nodes;
    let s = Scenario::trace("trace", nodes, TraceSource::File(path));
    let mut sim = RackSim::new(s.clone(), 1).unwrap();
    let end = loop {
        match sim.next_event() {
            SimEvent::Step(st) => sim.apply(&local(&st)).unwrap(),
            SimEvent::EpisodeEnd(e) => break e,
        }
    };
    // Not a natural end: learners must not treat it as terminal.
    assert_eq!(end.reason, EndReason::Truncated as i32);
    assert!(matches!(sim.take_source_error(), Some(SimError::Trace(_))));
    assert!(sim.take_source_error().is_none(), "taken once");
    // The closure runner and the env loop report it as an error.
    let mut sim = RackSim::new(s.clone(), 1).unwrap();
    assert!(matches!(
        run_episode(&mut sim, &mut local),
        Err(SimError::Trace(_))
    ));
    let mut sim = RackSim::new(s, 1).unwrap();
    let policy = malcolm_policies::baselines::factory_by_name("round-robin", &Default::default())
        .unwrap()
        .new_session(&sim.hello("t"), 1)
        .unwrap();
    let err = malcolm_serve::loopback::run_policy(&mut sim, policy, 1).unwrap_err();
    assert!(
        matches!(err, rack_sim::EnvLoopError::Source { episode: 0, .. }),
        "{err}"
    );
}

/// Pending tasks of one episode with local placement: (task id, arrival, origin, estimate,
/// deadline).
fn pending(spec: &str, seed: u64) -> Vec<(u64, u64, u32, u64, u64)> {
    let mut sim = RackSim::new(by_name(spec).unwrap(), seed).unwrap();
    let mut v = Vec::new();
    run_episode(&mut sim, &mut |st| {
        v.extend(st.tasks.iter().map(|t| {
            (
                t.task_id,
                t.arrival_ns,
                t.origin,
                t.service_estimate_ns,
                t.deadline_ns,
            )
        }));
        local(st)
    })
    .unwrap();
    // Arrivals after the task limit keep the load steady but are not part of the episode.
    v.retain(|t| t.0 < 3000);
    v.sort();
    v
}

#[test]
fn estimates_have_their_own_stream_and_set_the_deadline() {
    let base = "homogeneous-4:tasks=3000,warmup=0,f=3";
    let exact = pending(&format!("{base},estimate=exact"), 8);
    let noisy = pending(&format!("{base},estimate=noisy"), 8);
    let mean = pending(&format!("{base},estimate=class_mean"), 8);
    assert_eq!(exact.len(), 3000);
    // Same arrivals and origins whatever the estimate model.
    let key = |v: &[(u64, u64, u32, u64, u64)]| -> Vec<(u64, u64, u32)> {
        v.iter().map(|t| (t.0, t.1, t.2)).collect()
    };
    assert_eq!(key(&exact), key(&noisy));
    assert_eq!(key(&exact), key(&mean));
    // D = A + F x estimate, for every model.
    for v in [&exact, &noisy, &mean] {
        for t in v.iter() {
            assert_eq!(t.4 - t.1, (3.0 * t.3 as f64).round() as u64, "{t:?}");
        }
    }
    // Class mean: one value, the law's mean.
    let law_mean = by_name(base)
        .unwrap()
        .workload
        .poisson
        .unwrap()
        .service
        .mean_ns();
    assert!(mean.iter().all(|t| t.3 == (law_mean + 0.5) as u64));
    // Noisy: a log-normal factor around the exact estimate (the true service), sigma 0.5.
    let logs: Vec<f64> = exact
        .iter()
        .zip(&noisy)
        .map(|(e, n)| (n.3 as f64 / e.3 as f64).ln())
        .collect();
    let m = logs.iter().sum::<f64>() / logs.len() as f64;
    let sd = (logs.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (logs.len() - 1) as f64).sqrt();
    assert!(m.abs() < 4.0 * 0.5 / (logs.len() as f64).sqrt(), "{m}");
    assert!((sd - 0.5).abs() < 0.05, "{sd}");
    // The default is noisy, and Hello says so.
    assert_eq!(pending(base, 8), noisy);
    let sim = RackSim::new(by_name(base).unwrap(), 8).unwrap();
    assert_eq!(
        sim.hello("t")
            .parameters
            .get("service_estimate")
            .map(String::as_str),
        Some("noisy(sigma=0.5)")
    );
}
