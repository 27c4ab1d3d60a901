//! Unit tests of the node: admission, EDF and FCFS order, batches, preemption, pruning, the
//! slack histogram, processor sharing.

use super::*;

fn job(handle: u32, deadline: u64, work_ns: u64) -> Job {
    Job {
        handle,
        id: handle as u64,
        deadline,
        work_ns,
        est_ns: work_ns,
    }
}

fn node(cores: u32, discipline: Discipline) -> Node {
    Node::new(
        NodeSpec {
            kind: "t".into(),
            cores,
            speed: 1.0,
            discipline,
        },
        NodeTiming::default(),
    )
}

/// Runs a node to quiescence, firing timers in time order; returns (handle, time, done).
fn run(n: &mut Node, mut now: u64, mut out: Vec<Effect>) -> Vec<(u32, u64, bool)> {
    let mut log = Vec::new();
    let mut timers: Vec<Effect> = Vec::new();
    loop {
        for e in out.drain(..) {
            match e {
                Effect::Completed { handle } => log.push((handle, now, true)),
                Effect::Dropped { handle } => log.push((handle, now, false)),
                t => timers.push(t),
            }
        }
        let at = |e: &Effect| match *e {
            Effect::CoreTimer { at, .. } | Effect::PsTimer { at, .. } => at,
            _ => unreachable!(),
        };
        timers.sort_by_key(|e| std::cmp::Reverse(at(e)));
        let Some(t) = timers.pop() else {
            return log;
        };
        now = at(&t);
        match t {
            Effect::CoreTimer { core, gen, .. } => n.core_done(now, core, gen, &mut out),
            Effect::PsTimer { gen, .. } => n.ps_done(now, gen, &mut out),
            _ => unreachable!(),
        }
    }
}

#[test]
fn early_drop_at_admission() {
    let mut n = node(1, Discipline::edf());
    let mut out = Vec::new();
    n.enqueue(job(0, 100, 200));
    n.enqueue(job(1, 300, 200));
    n.drain(0, &mut out);
    assert_eq!(out[0], Effect::Dropped { handle: 0 });
    assert_eq!(n.tasks_in_system(), 1);
    // FCFS keeps everything.
    let mut f = node(1, Discipline::fcfs());
    let mut out = Vec::new();
    f.enqueue(job(0, 100, 200));
    f.drain(0, &mut out);
    assert!(out.iter().all(|e| !matches!(e, Effect::Dropped { .. })));
}

#[test]
fn edf_runs_earliest_deadline_first_fcfs_in_order() {
    for (disc, expect) in [
        (Discipline::edf(), vec![1, 2, 0]),
        (Discipline::fcfs(), vec![0, 1, 2]),
    ] {
        let mut n = node(1, disc);
        let mut out = Vec::new();
        n.enqueue(job(0, 1_000_000, 1000));
        n.enqueue(job(1, 10_000, 1000));
        n.enqueue(job(2, 20_000, 1000));
        n.drain(0, &mut out);
        let order: Vec<u32> = run(&mut n, 0, out).into_iter().map(|x| x.0).collect();
        assert_eq!(order, expect, "{disc:?}");
    }
}

#[test]
fn batch_drain_admits_sixteen_per_poll() {
    let mut n = node(1, Discipline::edf());
    for h in 0..20 {
        n.enqueue(job(h, 1_000_000 - h as u64, 10));
    }
    let mut out = Vec::new();
    assert!(n.drain(0, &mut out), "four left in the ring");
    assert_eq!(n.ingress.len(), 4);
    // The first poll saw only 0..16: the earliest of them (15) runs first.
    assert!(matches!(out[0], Effect::CoreTimer { .. }));
    assert_eq!(n.cores[0].job.unwrap().handle, 15);
    assert!(!n.drain(0, &mut out));
}

#[test]
fn preemption_respects_the_threshold_and_pays_the_switch() {
    let mut n = node(1, Discipline::edf());
    let mut out = Vec::new();
    n.enqueue(job(0, 100_000, 50_000));
    n.drain(0, &mut out);
    // 4 us earlier than the running deadline: below the 5 us threshold, no preemption.
    n.enqueue(job(1, 96_000, 1_000));
    n.drain(10_000, &mut out);
    assert_eq!(n.cores[0].job.unwrap().handle, 0);
    // 6 us earlier: preempts; starts after the 2 us switch, the victim keeps 40 us of work.
    n.enqueue(job(2, 94_000, 1_000));
    n.drain(10_000, &mut out);
    assert_eq!(n.cores[0].job.unwrap().handle, 2);
    assert_eq!(n.cores[0].end, 10_000 + 2_000 + 1_000);
    let log = run(&mut n, 10_000, out);
    assert_eq!(log[0], (2, 13_000, true));
    // Then job 1 (deadline 96 us), then the victim with its 40 us left.
    assert_eq!(log[1], (1, 14_000, true));
    assert_eq!(log[2], (0, 54_000, true));
}

#[test]
fn lazy_pruning_drops_heads_past_their_deadline_only() {
    let mut n = node(1, Discipline::edf());
    let mut out = Vec::new();
    n.enqueue(job(0, 100_000, 99_000));
    n.drain(0, &mut out);
    // Deadline 96 us: not 5 us earlier than 100 us, so no preemption; admitted (slack
    // 94 us) but still queued at 99 us, past its deadline: pruned at the head.
    n.enqueue(job(1, 96_000, 1_000));
    // Deadline 101 us: reaches the head at 99 us, before its deadline, runs and misses.
    n.enqueue(job(2, 101_000, 5_000));
    n.drain(1_000, &mut out);
    assert_eq!(n.cores[0].job.unwrap().handle, 0);
    let log = run(&mut n, 1_000, out);
    assert_eq!(
        log,
        vec![(0, 99_000, true), (1, 99_000, false), (2, 104_000, true)]
    );
    // Without pruning the late job runs.
    let mut keep = node(
        1,
        Discipline {
            prune_late: false,
            ..Discipline::edf()
        },
    );
    let mut out = Vec::new();
    keep.enqueue(job(0, 100_000, 99_000));
    keep.drain(0, &mut out);
    keep.enqueue(job(1, 96_000, 1_000));
    keep.drain(1_000, &mut out);
    assert_eq!(
        run(&mut keep, 1_000, out),
        vec![(0, 99_000, true), (1, 100_000, true)]
    );
}

#[test]
fn sth_is_constant_until_its_horizon() {
    let no_preempt = Discipline {
        preempt: false,
        ..Discipline::edf()
    };
    let mut n = node(2, no_preempt);
    let mut out = Vec::new();
    // Running until 300 and 400 us (no timers fire here, and the loop stays below 300 us).
    for (h, d, w) in [(0, 900_000, 300_000), (1, 950_000, 400_000)] {
        n.enqueue(job(h, d, w));
    }
    n.drain(0, &mut out);
    for (h, d, w) in [
        (2, 120_345, 7_000),
        (3, 200_777, 9_000),
        (4, 150_001, 1_000),
    ] {
        n.enqueue(job(h, d, w));
    }
    n.drain(0, &mut out);
    let mut now = 1_234;
    for _ in 0..200 {
        let (h, until) = n.sth_until(now);
        assert!(until > now && until <= now + 1_000);
        for t in now..until {
            let g = n.sth(t);
            assert_eq!(
                (g.buckets, g.min_slack_us),
                (h.buckets, h.min_slack_us),
                "t={t}"
            );
        }
        now = until;
    }
    // Only a running job: fixed until it outlives its estimate, then falling with time.
    let mut r = node(2, Discipline::edf());
    r.enqueue(Job {
        est_ns: 20_000,
        ..job(0, 90_000, 30_000)
    });
    r.drain(0, &mut out);
    assert_eq!(r.sth_until(5).1, 20_000);
    assert_eq!(r.sth(5).min_slack_us, 70);
    assert_eq!(r.sth(19_999).min_slack_us, 70);
    assert_eq!(r.sth(25_500).min_slack_us, 64);
    assert_eq!(r.sth_until(25_500).1, 26_001);
    assert_eq!(r.estimated_work_ns(25_500), 0);
}

#[test]
fn admission_and_histogram_see_the_estimate_not_the_work() {
    let mut n = node(1, Discipline::edf());
    let mut out = Vec::new();
    // True work 20 us, estimate 5 us, deadline 10 us: admitted (the node cannot know) and
    // then finishes late.
    n.enqueue(Job {
        est_ns: 5_000,
        ..job(0, 10_000, 20_000)
    });
    // True work 1 us, estimate 50 us, deadline 40 us: dropped at admission although it
    // would have made it.
    n.enqueue(Job {
        est_ns: 50_000,
        ..job(1, 40_000, 1_000)
    });
    n.drain(0, &mut out);
    assert_eq!(out[0], Effect::Dropped { handle: 1 });
    let h = n.sth(1_000);
    assert_eq!(h.min_slack_us, 5, "10 us deadline - 5 us estimated end");
    assert_eq!(h.sum_load_us, 4);
    assert_eq!(n.estimated_work_ns(1_000), 4_000);
    let log = run(&mut n, 0, out);
    assert_eq!(log, vec![(1, 0, false), (0, 20_000, true)]);
}

#[test]
fn completions_at_an_instant_precede_its_admissions() {
    // Both cores end at 10 us. An urgent task polled at 10 us, before the core timers
    // fire, must find both cores free: it must not preempt a job that is ending (which
    // would yield with 1 ns left and make the urgent one pay a context switch).
    let mut n = node(2, Discipline::edf());
    let mut out = Vec::new();
    n.enqueue(job(0, 500_000, 10_000));
    n.enqueue(job(1, 400_000, 10_000));
    n.drain(0, &mut out);
    n.enqueue(job(2, 300_000, 5_000));
    n.drain(10_000, &mut out);
    let log = run(&mut n, 10_000, out);
    assert_eq!(
        log,
        vec![(1, 10_000, true), (0, 10_000, true), (2, 15_000, true)]
    );
}

#[test]
fn equal_deadlines_run_in_task_id_order() {
    let mut n = node(1, Discipline::edf());
    let mut out = Vec::new();
    for h in [3, 1, 2] {
        n.enqueue(job(h, 1_000_000, 1_000));
    }
    n.drain(0, &mut out);
    let order: Vec<u32> = run(&mut n, 0, out).into_iter().map(|x| x.0).collect();
    assert_eq!(order, vec![1, 2, 3]);
}

#[test]
fn processor_sharing_splits_the_cores() {
    let mut n = node(1, Discipline::processor_sharing());
    let mut out = Vec::new();
    n.enqueue(job(0, u64::MAX, 1_000));
    n.enqueue(job(1, u64::MAX, 3_000));
    n.drain(0, &mut out);
    let log = run(&mut n, 0, out);
    // Both at half speed until job 0 is done at 2 us, then job 1 alone: 2 us more.
    assert_eq!(log, vec![(0, 2_000, true), (1, 4_000, true)]);
    let mut two = node(2, Discipline::processor_sharing());
    let mut out = Vec::new();
    for h in 0..2 {
        two.enqueue(job(h, u64::MAX, 1_000));
    }
    two.drain(0, &mut out);
    assert_eq!(
        run(&mut two, 0, out),
        vec![(0, 1_000, true), (1, 1_000, true)]
    );
}

#[test]
fn sth_counts_queued_and_running_with_fresh_slack() {
    let mut n = node(1, Discipline::edf());
    let mut out = Vec::new();
    n.enqueue(job(0, 30_000, 10_000)); // runs 0..10 us: slack 20 us -> bucket 11
    n.enqueue(job(1, 40_000, 5_000)); // queued: slack at t=2us = 40-2-5 = 33 -> bucket 11
    n.drain(0, &mut out);
    let h = n.sth(2_000);
    assert_eq!(h.total_tasks, 2);
    assert_eq!(h.buckets[11], 2);
    assert_eq!(h.sum_load_us, 8 + 5);
    assert_eq!(h.min_slack_us, 20);
    // A late queued job falls into bucket 0 even by less than a microsecond.
    let mut q = node(
        1,
        Discipline {
            preempt: false,
            ..Discipline::edf()
        },
    );
    q.enqueue(job(0, 100_000, 50_000));
    q.drain(0, &mut out);
    q.enqueue(job(1, 52_500, 5_000));
    q.drain(0, &mut out);
    let h = q.sth(48_000);
    assert_eq!(h.buckets[0], 1);
    assert_eq!(h.buckets[12], 1, "running job: slack 50 us");
    assert_eq!(h.min_slack_us, -1);
    assert_eq!(n.busy_core_ns(5_000), 5_000);
}
