//! Chapter 2.3.2, head-of-line blocking: one 1 ms task, then 100 tasks of 10 us with tight
//! deadlines (F = 3). FCFS makes the short ones wait behind the long one; EDF runs them first.

mod common;

use common::run_recording;
use malcolm_policies::{Decision, Policy, PolicyError};
use malcolm_proto::bridge::{OutcomeKind, Step};
use rack_sim::workload::{TraceSource, TraceTask};
use rack_sim::{Discipline, NodeSpec, Scenario};

const US: u64 = 1_000;

struct Local;
impl Policy for Local {
    fn decide(&mut self, step: &Step, out: &mut Decision) -> Result<(), PolicyError> {
        out.clear();
        out.targets.extend(step.tasks.iter().map(|t| t.origin));
        Ok(())
    }
}

fn workload() -> Vec<TraceTask> {
    let mut v = vec![TraceTask {
        arrival_ns: 0,
        origin: 0,
        service_ns: 1_000 * US,
        deadline_ns: 5_000 * US,
        size_bytes: 0,
        class: 0,
        estimate_ns: None,
    }];
    // One short task every 20 us from 1 us on, deadline A + 3 x 10 us.
    for i in 0..100u64 {
        let a = US + i * 20 * US;
        v.push(TraceTask {
            arrival_ns: a,
            origin: 0,
            service_ns: 10 * US,
            deadline_ns: a + 30 * US,
            size_bytes: 0,
            class: 0,
            estimate_ns: None,
        });
    }
    v
}

#[test]
fn edf_beats_fcfs_on_a_long_plus_short_mix() {
    let run = |d: Discipline| {
        let mut s = Scenario::trace(
            "hol",
            vec![NodeSpec::single(d)],
            TraceSource::Inline(workload()),
        );
        s.decision.window_ns = 0;
        // The design's example: the node knows the service times (exact estimates).
        s.estimate = rack_sim::ServiceEstimate::Exact;
        run_recording(s, Local)
    };
    let (fcfs, fcfs_out) = run(Discipline::fcfs());
    let (edf, edf_out) = run(Discipline::edf());
    let short_mean = |out: &[malcolm_proto::bridge::TaskOutcome]| {
        let s: Vec<u64> = out
            .iter()
            .filter(|o| o.task_id > 0 && o.kind != OutcomeKind::Dropped as i32)
            .map(|o| o.latency_ns)
            .collect();
        s.iter().sum::<u64>() as f64 / s.len() as f64
    };
    eprintln!(
        "FCFS miss {:.3}, short mean latency {:.1} us; EDF miss {:.3}, short mean latency {:.1} us",
        fcfs.miss_rate,
        short_mean(&fcfs_out) / 1e3,
        edf.miss_rate,
        short_mean(&edf_out) / 1e3
    );
    assert_eq!(fcfs.finished, 101);
    assert_eq!(edf.finished, 101);
    // FCFS: every short task arriving during the long one (50 of them) waits past its deadline.
    assert!(fcfs.miss_rate >= 0.5, "{}", fcfs.miss_rate);
    // EDF preempts the long task (2 us switch) for each short one; all make it, long included.
    assert_eq!(edf.miss_rate, 0.0);
    assert!(short_mean(&edf_out) <= 12.0 * US as f64);
    assert!(short_mean(&fcfs_out) > 100.0 * US as f64);
}
