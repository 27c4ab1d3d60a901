//! The processor-sharing state of a node: a virtual clock and the jobs ordered by the
//! virtual time at which they finish.

use crate::edf::Job;
use std::collections::BinaryHeap;

/// Processor sharing: every job progresses at `min(1, k/n)`; a virtual clock `v` counts the
/// work each job has received, so a job finishes when `v` reaches its admission value plus
/// its work (no per-job updates when n changes). A job leaves at the first whole nanosecond
/// at which it has received all its work, holding its share until then.
#[derive(Debug, Default, Clone)]
pub(super) struct Ps {
    pub(super) v: f64,
    pub(super) last: u64,
    pub(super) jobs: BinaryHeap<PsEntry>,
    pub(super) seq: u64,
    pub(super) gen: u32,
}

#[derive(Debug, Clone, Copy)]
pub(super) struct PsEntry {
    pub(super) finish_v: f64,
    /// `v` at admission (for the estimated work left).
    pub(super) start_v: f64,
    pub(super) seq: u64,
    pub(super) job: Job,
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
