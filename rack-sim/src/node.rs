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

use crate::edf::{EdfQueue, Job};
use malcolm_proto::bridge;
use malcolm_proto::SlackHistogram;
use serde::{Deserialize, Serialize};
use std::collections::{BinaryHeap, VecDeque};

/// Tasks moved from the ingress ring to the ready queue per poll (the design's drain batch).
pub const DEFAULT_INGRESS_BATCH: usize = 16;
/// Preempt only if the new head's deadline is this much earlier (design 3.3.3: no thrashing).
pub const DEFAULT_PREEMPTION_THRESHOLD_NS: u64 = 5_000;
/// Cost of switching a core to a preempting task (cache pollution plus the switch itself).
pub const DEFAULT_CONTEXT_SWITCH_NS: u64 = 2_000;
/// Float slack of the processor-sharing virtual clock, in ns of work and of time: far below a
/// nanosecond, far above the rounding error of a busy period's clock (the clock restarts at
/// 0 whenever the node empties). The C++ node scheduler uses the same value.
pub const PS_EPSILON: f64 = 1e-4;

/// Which queue a node runs, and whether it sheds late work.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DisciplineKind {
    Edf,
    Fcfs,
    ProcessorSharing,
}

/// Intra-node discipline plus its admission and pruning switches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Discipline {
    pub kind: DisciplineKind,
    /// Drop a task at admission when `deadline < now + estimated work` (it cannot make it, as
    /// far as the node can tell).
    pub early_drop: bool,
    /// Drop a task that reaches the head of the queue after its deadline.
    pub prune_late: bool,
    /// Cooperative preemption (EDF only).
    pub preempt: bool,
}

impl Discipline {
    /// Malcolm-Strict's EDF: early drop, lazy pruning, cooperative preemption.
    pub fn edf() -> Self {
        Self {
            kind: DisciplineKind::Edf,
            early_drop: true,
            prune_late: true,
            preempt: true,
        }
    }

    /// The classic system: first come, first served, nothing is ever dropped.
    pub fn fcfs() -> Self {
        Self {
            kind: DisciplineKind::Fcfs,
            early_drop: false,
            prune_late: false,
            preempt: false,
        }
    }

    /// Egalitarian processor sharing over the k cores, nothing dropped.
    pub fn processor_sharing() -> Self {
        Self {
            kind: DisciplineKind::ProcessorSharing,
            early_drop: false,
            prune_late: false,
            preempt: false,
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "edf" => Some(Self::edf()),
            "fcfs" => Some(Self::fcfs()),
            "ps" | "processor-sharing" => Some(Self::processor_sharing()),
            _ => None,
        }
    }

    pub fn to_proto(self) -> bridge::Discipline {
        match self.kind {
            DisciplineKind::Edf => bridge::Discipline::Edf,
            DisciplineKind::Fcfs => bridge::Discipline::Fcfs,
            DisciplineKind::ProcessorSharing => bridge::Discipline::ProcessorSharing,
        }
    }
}

/// Static description of a node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeSpec {
    pub kind: String,
    pub cores: u32,
    /// Relative core speed; service time on this node is `service / speed`.
    pub speed: f64,
    pub discipline: Discipline,
}

impl NodeSpec {
    /// Speed 1.0 x 4 cores (design.md section 9).
    pub fn fast(discipline: Discipline) -> Self {
        Self {
            kind: "fast".into(),
            cores: 4,
            speed: 1.0,
            discipline,
        }
    }

    /// Speed 0.2 x 16 cores (design.md section 9).
    pub fn slow(discipline: Discipline) -> Self {
        Self {
            kind: "slow".into(),
            cores: 16,
            speed: 0.2,
            discipline,
        }
    }

    /// One core of speed 1 (queueing-theory checks).
    pub fn single(discipline: Discipline) -> Self {
        Self {
            kind: "single".into(),
            cores: 1,
            speed: 1.0,
            discipline,
        }
    }

    /// Capacity in reference cores.
    pub fn capacity(&self) -> f64 {
        self.cores as f64 * self.speed
    }

    /// Wall time on this node of `service_ns` of reference work: `service / speed` in IEEE
    /// double, rounded half away from zero, at least 1 ns (the C++ node scheduler rounds the
    /// same way).
    pub fn wall_ns(&self, service_ns: u64) -> u64 {
        if self.speed == 1.0 {
            return service_ns.max(1);
        }
        ((service_ns as f64 / self.speed).round() as u64).max(1)
    }
}

/// Timing constants shared by the nodes of a rack.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeTiming {
    pub ingress_batch: usize,
    pub preemption_threshold_ns: u64,
    pub context_switch_ns: u64,
}

impl Default for NodeTiming {
    fn default() -> Self {
        Self {
            ingress_batch: DEFAULT_INGRESS_BATCH,
            preemption_threshold_ns: DEFAULT_PREEMPTION_THRESHOLD_NS,
            context_switch_ns: DEFAULT_CONTEXT_SWITCH_NS,
        }
    }
}

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

/// Processor sharing: every job progresses at `min(1, k/n)`; a virtual clock `v` counts the
/// work each job has received, so a job finishes when `v` reaches its admission value plus
/// its work (no per-job updates when n changes). A job leaves at the first whole nanosecond
/// at which it has received all its work, holding its share until then.
#[derive(Debug, Default, Clone)]
struct Ps {
    v: f64,
    last: u64,
    jobs: BinaryHeap<PsEntry>,
    seq: u64,
    gen: u32,
}

#[derive(Debug, Clone, Copy)]
struct PsEntry {
    finish_v: f64,
    /// `v` at admission (for the estimated work left).
    start_v: f64,
    seq: u64,
    job: Job,
}

impl PartialEq for PsEntry {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == std::cmp::Ordering::Equal
    }
}
impl Eq for PsEntry {}
impl PartialOrd for PsEntry {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for PsEntry {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        other
            .finish_v
            .total_cmp(&self.finish_v)
            .then_with(|| other.seq.cmp(&self.seq))
    }
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

#[cfg(test)]
mod tests {
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
}
