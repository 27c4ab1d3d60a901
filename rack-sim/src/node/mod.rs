//! One server of the rack (design.md section 6) as a pure state machine: ingress ring, ready queue
//! (EDF, FCFS or processor sharing), k cores of speed v. It knows nothing of events; every
//! call takes `now` and reports what the simulator must do through [`Effect`]s.
//!
//! The node knows each task's *estimated* work, not its true work: the admission test (early
//! drop) and the slack histogram use the estimate; the true work only decides when a core
//! finishes. The semantics at one instant `t` (shared with omnetpp/core/node_scheduler.cc and
//! the Python reference of proto/testdata/generate.py, checked by the golden task trace):
//! every job whose work ends at `t` completes first (simultaneous completions are one step,
//! then one dispatch), then the tasks that landed at `t` are admitted from the ingress ring in
//! batches, each batch followed by a dispatch. EDF order is (deadline, task id); a preemption
//! victim is the running job last in that order.
//!
//! Here: the node machine; `spec` holds what a node is made of (discipline, cores, timing),
//! `ps` the processor-sharing state.

use crate::edf::{EdfQueue, Job};
use malcolm_proto::SlackHistogram;
use std::collections::VecDeque;

mod ps;
mod spec;
#[cfg(test)]
mod tests;

use ps::{Ps, PsEntry};
pub use spec::{
    Discipline, DisciplineKind, NodeSpec, NodeTiming, DEFAULT_CONTEXT_SWITCH_NS,
    DEFAULT_INGRESS_BATCH, DEFAULT_PREEMPTION_THRESHOLD_NS, PS_EPSILON,
};

/// What the simulator must do after a node call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    /// Call [`Node::core_done`] with this core and generation at `at`.
    CoreTimer { core: u32, gen: u32, at: u64 },
    /// Call [`Node::ps_done`] with this generation at `at`.
    PsTimer { gen: u32, at: u64 },
    /// The job ran to completion now.
    Completed { handle: u32 },
    /// The job was dropped now (admission or pruning).
    Dropped { handle: u32 },
}

#[derive(Debug, Clone, Copy, Default)]
struct Core {
    job: Option<Job>,
    /// When the job's work starts (after any context switch).
    work_start: u64,
    end: u64,
    /// When the job's work would end if it took its estimate.
    est_end: u64,
    gen: u32,
}

/// Slack of a job whose work ends at `finish` (saturating: "no deadline" is u64::MAX).
fn slack_ns(deadline: u64, finish: u64) -> i64 {
    let d = deadline.min(i64::MAX as u64) as i64;
    d.saturating_sub(finish.min(i64::MAX as u64) as i64)
}

/// Floor division to microseconds, so any negative slack lands in bucket 0.
fn ns_to_us_floor(ns: i64) -> i64 {
    ns.div_euclid(1000)
}

#[derive(Debug, Clone)]
pub struct Node {
    pub spec: NodeSpec,
    timing: NodeTiming,
    ingress: VecDeque<Job>,
    edf: EdfQueue,
    fifo: VecDeque<Job>,
    ps: Ps,
    cores: Vec<Core>,
    busy: u32,
    busy_ns: u64,
    busy_since: u64,
    /// Bumped by every change of the job set, so observers can cache what they derive.
    version: u64,
}

impl Node {
    pub fn new(spec: NodeSpec, timing: NodeTiming) -> Self {
        let cores = vec![Core::default(); spec.cores.max(1) as usize];
        Self {
            spec,
            timing,
            ingress: VecDeque::new(),
            edf: EdfQueue::new(),
            fifo: VecDeque::new(),
            ps: Ps::default(),
            cores,
            busy: 0,
            busy_ns: 0,
            busy_since: 0,
            version: 0,
        }
    }

    /// Changes whenever the node's jobs change.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// Tasks queued (ingress and ready) plus running.
    pub fn tasks_in_system(&self) -> usize {
        match self.spec.discipline.kind {
            DisciplineKind::ProcessorSharing => self.ingress.len() + self.ps.jobs.len(),
            _ => self.ingress.len() + self.edf.len() + self.fifo.len() + self.busy as usize,
        }
    }

    /// Cores doing work (for PS, `min(n, k)`).
    pub fn busy_cores(&self) -> u32 {
        self.busy
    }

    /// Core-nanoseconds of busy time since the start, up to `now`.
    pub fn busy_core_ns(&self, now: u64) -> u64 {
        self.busy_ns + self.busy as u64 * now.saturating_sub(self.busy_since)
    }

    fn set_busy(&mut self, now: u64, busy: u32) {
        self.busy_ns = self.busy_core_ns(now);
        self.busy_since = now;
        self.busy = busy;
    }

    pub fn has_ingress(&self) -> bool {
        !self.ingress.is_empty()
    }

    /// A job lands in the ingress ring; the simulator must then poll [`Node::drain`].
    pub fn enqueue(&mut self, job: Job) {
        self.version += 1;
        self.ingress.push_back(job);
    }

    /// One dispatcher poll: completes what ends `now` and dispatches if anything did (as if
    /// its timer had fired first), admits up to `ingress_batch` jobs, then dispatches.
    /// Returns true when the ingress ring still holds jobs (poll again).
    pub fn drain(&mut self, now: u64, out: &mut Vec<Effect>) -> bool {
        self.version += 1;
        let batch = self.timing.ingress_batch.max(1);
        let completed = if self.spec.discipline.kind == DisciplineKind::ProcessorSharing {
            self.ps_advance(now);
            self.ps_complete_due(out)
        } else {
            self.complete_due(now, out)
        };
        if completed {
            self.dispatch(now, out);
        }
        for _ in 0..batch {
            let Some(job) = self.ingress.pop_front() else {
                break;
            };
            if self.spec.discipline.early_drop && slack_ns(job.deadline, now + job.est_ns) < 0 {
                out.push(Effect::Dropped { handle: job.handle });
                continue;
            }
            match self.spec.discipline.kind {
                DisciplineKind::Edf => self.edf.push(job),
                DisciplineKind::Fcfs => self.fifo.push_back(job),
                DisciplineKind::ProcessorSharing => {
                    self.ps.seq += 1;
                    self.ps.jobs.push(PsEntry {
                        finish_v: self.ps.v + job.work_ns as f64,
                        start_v: self.ps.v,
                        seq: self.ps.seq,
                        job,
                    });
                }
            }
        }
        self.dispatch(now, out);
        !self.ingress.is_empty()
    }

    /// A core timer fired. Stale timers (the job was preempted, or completed with another
    /// core's timer at this instant) are ignored. Every core whose job ends `now` completes
    /// here, before the one dispatch: which timer fires first does not matter.
    pub fn core_done(&mut self, now: u64, core: u32, gen: u32, out: &mut Vec<Effect>) {
        let c = &self.cores[core as usize];
        if c.gen != gen || c.job.is_none() {
            return;
        }
        self.version += 1;
        self.complete_due(now, out);
        self.dispatch(now, out);
    }

    /// Completes every core job whose work ends at `now` (their timers become stale);
    /// true if any did.
    fn complete_due(&mut self, now: u64, out: &mut Vec<Effect>) -> bool {
        let mut busy = self.busy;
        for c in &mut self.cores {
            if c.end <= now {
                if let Some(job) = c.job.take() {
                    out.push(Effect::Completed { handle: job.handle });
                    busy -= 1;
                }
            }
        }
        if busy == self.busy {
            return false;
        }
        self.set_busy(now, busy);
        true
    }

    /// Processor sharing: completes every job that has received its work by `now` (the
    /// clock advanced to `now`); true if any did.
    fn ps_complete_due(&mut self, out: &mut Vec<Effect>) -> bool {
        let before = self.ps.jobs.len();
        while let Some(top) = self.ps.jobs.peek() {
            if top.finish_v > self.ps.v + PS_EPSILON {
                break;
            }
            let e = self.ps.jobs.pop().expect("peeked");
            out.push(Effect::Completed {
                handle: e.job.handle,
            });
        }
        if self.ps.jobs.is_empty() {
            // An empty node restarts its virtual clock: the clock's rounding error stays that
            // of one busy period.
            self.ps.v = 0.0;
        }
        self.ps.jobs.len() != before
    }

    /// The processor-sharing timer fired.
    pub fn ps_done(&mut self, now: u64, gen: u32, out: &mut Vec<Effect>) {
        if gen != self.ps.gen {
            return;
        }
        self.version += 1;
        self.ps_advance(now);
        self.ps_complete_due(out);
        self.dispatch(now, out);
    }

    fn ps_rate(&self) -> f64 {
        let n = self.ps.jobs.len() as f64;
        let k = self.cores.len() as f64;
        if n <= k {
            1.0
        } else {
            k / n
        }
    }

    fn ps_advance(&mut self, now: u64) {
        let dt = now.saturating_sub(self.ps.last) as f64;
        if dt > 0.0 && !self.ps.jobs.is_empty() {
            self.ps.v += dt * self.ps_rate();
        }
        self.ps.last = now;
    }

    fn start(&mut self, now: u64, core: usize, job: Job, switch_ns: u64, out: &mut Vec<Effect>) {
        let c = &mut self.cores[core];
        c.gen = c.gen.wrapping_add(1);
        c.work_start = now + switch_ns;
        c.end = c.work_start + job.work_ns;
        c.est_end = c.work_start + job.est_ns;
        c.job = Some(job);
        out.push(Effect::CoreTimer {
            core: core as u32,
            gen: c.gen,
            at: c.end,
        });
    }

    fn dispatch(&mut self, now: u64, out: &mut Vec<Effect>) {
        match self.spec.discipline.kind {
            DisciplineKind::Edf => self.dispatch_edf(now, out),
            DisciplineKind::Fcfs => self.dispatch_fcfs(now, out),
            DisciplineKind::ProcessorSharing => self.dispatch_ps(now, out),
        }
    }

    fn dispatch_fcfs(&mut self, now: u64, out: &mut Vec<Effect>) {
        let mut busy = self.busy;
        for core in 0..self.cores.len() {
            if self.cores[core].job.is_some() {
                continue;
            }
            while let Some(job) = self.fifo.pop_front() {
                if self.spec.discipline.prune_late && job.deadline < now {
                    out.push(Effect::Dropped { handle: job.handle });
                    continue;
                }
                self.start(now, core, job, 0, out);
                busy += 1;
                break;
            }
        }
        if busy != self.busy {
            self.set_busy(now, busy);
        }
    }

    /// Pops the next EDF job, pruning late ones at the head.
    fn pop_edf(&mut self, now: u64, out: &mut Vec<Effect>) -> Option<Job> {
        while let Some(job) = self.edf.peek().copied() {
            if self.spec.discipline.prune_late && job.deadline < now {
                self.edf.pop();
                out.push(Effect::Dropped { handle: job.handle });
                continue;
            }
            return self.edf.pop();
        }
        None
    }

    fn dispatch_edf(&mut self, now: u64, out: &mut Vec<Effect>) {
        let mut busy = self.busy;
        for core in 0..self.cores.len() {
            if self.cores[core].job.is_some() {
                continue;
            }
            let Some(job) = self.pop_edf(now, out) else {
                break;
            };
            self.start(now, core, job, 0, out);
            busy += 1;
        }
        if busy != self.busy {
            self.set_busy(now, busy);
        }
        if !self.spec.discipline.preempt || (busy as usize) < self.cores.len() {
            return;
        }
        // Cooperative preemption: the running job last in EDF order (latest deadline, then
        // highest task id) yields only to a head that is more urgent by more than the
        // threshold.
        loop {
            let Some(head) = self.edf.peek().copied() else {
                return;
            };
            if self.spec.discipline.prune_late && head.deadline < now {
                self.edf.pop();
                out.push(Effect::Dropped {
                    handle: head.handle,
                });
                continue;
            }
            let (victim, victim_deadline) = self
                .cores
                .iter()
                .enumerate()
                .filter_map(|(i, c)| c.job.map(|j| (i, j)))
                .max_by_key(|&(_, j)| j.edf_key())
                .map(|(i, j)| (i, j.deadline))
                .expect("all cores busy");
            if head
                .deadline
                .saturating_add(self.timing.preemption_threshold_ns)
                >= victim_deadline
            {
                return;
            }
            let c = self.cores[victim];
            let mut yielded = c.job.expect("busy core");
            let done = now.saturating_sub(c.work_start);
            // Completions at `now` ran before this dispatch, so the victim has work left.
            yielded.work_ns = yielded.work_ns.saturating_sub(done).max(1);
            yielded.est_ns = yielded.est_ns.saturating_sub(done);
            self.edf.pop();
            self.edf.push(yielded);
            self.start(now, victim, head, self.timing.context_switch_ns, out);
        }
    }

    fn dispatch_ps(&mut self, now: u64, out: &mut Vec<Effect>) {
        let n = self.ps.jobs.len();
        let busy = n.min(self.cores.len()) as u32;
        if busy != self.busy {
            self.set_busy(now, busy);
        }
        self.ps.gen = self.ps.gen.wrapping_add(1);
        if let Some(top) = self.ps.jobs.peek() {
            // The first whole nanosecond at which the job has all its work.
            let left = (top.finish_v - self.ps.v) / self.ps_rate();
            out.push(Effect::PsTimer {
                gen: self.ps.gen,
                at: now + (left - PS_EPSILON).max(0.0).ceil() as u64,
            });
        }
    }

    /// Processor-sharing jobs with their *estimated* work left at `now` (the virtual clock
    /// advanced to `now` without mutating the node).
    fn ps_remaining_estimate(&self, now: u64) -> impl Iterator<Item = (Job, u64)> + '_ {
        let v = if self.ps.jobs.is_empty() {
            self.ps.v
        } else {
            self.ps.v + now.saturating_sub(self.ps.last) as f64 * self.ps_rate()
        };
        self.ps.jobs.iter().map(move |e| {
            let left = e.start_v + e.job.est_ns as f64 - v;
            (e.job, left.max(0.0) as u64)
        })
    }

    /// Estimated work left of all jobs at `now`, wall ns (the STH's `sum_load`, unrounded):
    /// a running job's estimate minus the work it has done, never below 0.
    pub fn estimated_work_ns(&self, now: u64) -> u64 {
        let queued: u64 = self
            .ingress
            .iter()
            .chain(self.edf.iter())
            .chain(self.fifo.iter())
            .map(|j| j.est_ns)
            .sum();
        let running: u64 = self
            .cores
            .iter()
            .filter(|c| c.job.is_some())
            .map(|c| c.est_end.saturating_sub(now))
            .sum();
        let ps: u64 = self.ps_remaining_estimate(now).map(|(_, r)| r).sum();
        queued + running + ps
    }

    /// Fresh Slack Time Histogram over queued and running jobs at `now`: slack is the
    /// deadline minus the time the job would end if it started (or went on) right now and
    /// took its estimate (design 3.1.1: `s = D - (t + e)`, `e` the estimated remaining
    /// service).
    pub fn sth(&self, now: u64) -> SlackHistogram {
        self.sth_until(now).0
    }

    /// [`Node::sth`] plus the first instant at which it would read differently if the jobs
    /// stayed as they are: a running job's slack is fixed until it outlives its estimate, a
    /// queued job's slack (in whole microseconds, rounded down) steps at its next microsecond
    /// boundary.
    pub fn sth_until(&self, now: u64) -> (SlackHistogram, u64) {
        let mut h = SlackHistogram::new();
        let mut load_ns: u64 = 0;
        let mut until = u64::MAX;
        // Slack `D - t` falling with time `t`: its whole microseconds step at this instant.
        let next_step = |slack: i64| now + slack.rem_euclid(1000) as u64 + 1;
        for j in self
            .ingress
            .iter()
            .chain(self.edf.iter())
            .chain(self.fifo.iter())
        {
            let slack = slack_ns(j.deadline, now + j.est_ns);
            h.add(ns_to_us_floor(slack), 0);
            load_ns += j.est_ns;
            until = until.min(next_step(slack));
        }
        for c in &self.cores {
            if let Some(j) = c.job {
                let slack = slack_ns(j.deadline, c.est_end.max(now));
                h.add(ns_to_us_floor(slack), 0);
                load_ns += c.est_end.saturating_sub(now);
                until = until.min(if c.est_end > now {
                    c.est_end
                } else {
                    next_step(slack)
                });
            }
        }
        if !self.ps.jobs.is_empty() {
            for (job, remaining) in self.ps_remaining_estimate(now) {
                h.add(ns_to_us_floor(slack_ns(job.deadline, now + remaining)), 0);
                load_ns += remaining;
            }
            // Shared cores: remaining work shrinks at a fractional rate; valid this instant only.
            until = now + 1;
        }
        h.sum_load_us = load_ns / 1000;
        (h, until)
    }

    /// Forgets every job (new episode); busy-time accounting restarts at `now`.
    pub fn reset(&mut self, now: u64) {
        self.ingress.clear();
        self.edf.clear();
        self.fifo.clear();
        self.ps = Ps {
            last: now,
            ..Ps::default()
        };
        for c in &mut self.cores {
            c.job = None;
            c.gen = c.gen.wrapping_add(1);
        }
        self.busy = 0;
        self.busy_ns = 0;
        self.busy_since = now;
        self.version += 1;
    }
}
