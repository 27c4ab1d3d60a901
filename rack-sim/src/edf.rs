//! The EDF ready queue: a min-heap of jobs by absolute deadline, ties broken by task id (the
//! rule omnetpp/core/edf_queue.cc follows too, checked by the shared task-trace vectors).

use std::cmp::Ordering;
use std::collections::BinaryHeap;

/// A job as a node sees it: a handle into the simulator's task table, the task's id, its
/// absolute deadline, and the work left in nanoseconds of wall time on this node (service /
/// speed), both the true work (drives the core) and the estimated work (what the node's
/// admission test and slack histogram see; the node does not know the true work).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Job {
    pub handle: u32,
    /// Task id: breaks ties between equal deadlines.
    pub id: u64,
    pub deadline: u64,
    pub work_ns: u64,
    pub est_ns: u64,
}

impl Job {
    /// The EDF order: earliest deadline first, then the lower task id.
    pub fn edf_key(&self) -> (u64, u64) {
        (self.deadline, self.id)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Entry {
    key: (u64, u64),
    job: Job,
}

impl Ord for Entry {
    fn cmp(&self, other: &Self) -> Ordering {
        // Reversed: BinaryHeap is a max-heap and we want the earliest deadline on top; the
        // task id breaks ties (deterministic, and independent of arrival interleavings).
        other.key.cmp(&self.key)
    }
}

impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// Min-heap by (absolute deadline, task id).
#[derive(Debug, Default, Clone)]
pub struct EdfQueue {
    heap: BinaryHeap<Entry>,
}

impl EdfQueue {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn push(&mut self, job: Job) {
        self.heap.push(Entry {
            key: job.edf_key(),
            job,
        });
    }

    /// The job with the earliest deadline.
    pub fn peek(&self) -> Option<&Job> {
        self.heap.peek().map(|e| &e.job)
    }

    pub fn pop(&mut self) -> Option<Job> {
        self.heap.pop().map(|e| e.job)
    }

    pub fn len(&self) -> usize {
        self.heap.len()
    }

    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }

    /// All queued jobs, in no particular order (for the slack histogram).
    pub fn iter(&self) -> impl Iterator<Item = &Job> {
        self.heap.iter().map(|e| &e.job)
    }

    pub fn clear(&mut self) {
        self.heap.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(handle: u32, deadline: u64) -> Job {
        Job {
            handle,
            id: handle as u64,
            deadline,
            work_ns: 1,
            est_ns: 1,
        }
    }

    #[test]
    fn pops_by_deadline_then_task_id() {
        let mut q = EdfQueue::new();
        // Task 3 is pushed before task 1 with the same deadline: the id decides, not the push
        // order.
        for (h, d) in [(0, 50), (3, 10), (2, 30), (1, 10), (4, 5)] {
            q.push(job(h, d));
        }
        assert_eq!(q.peek().map(|j| j.handle), Some(4));
        let order: Vec<u32> = std::iter::from_fn(|| q.pop()).map(|j| j.handle).collect();
        assert_eq!(order, vec![4, 1, 3, 2, 0]);
        assert!(q.is_empty());
    }

    #[test]
    fn interleaved_pushes_keep_the_minimum_on_top() {
        let mut q = EdfQueue::new();
        let mut rng = 12345u64;
        let mut reference = Vec::new();
        for h in 0..1000u32 {
            rng = rng
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let d = rng >> 40;
            q.push(job(h, d));
            reference.push((d, h));
            if h % 3 == 0 {
                reference.sort();
                let (d_min, h_min) = reference.remove(0);
                let got = q.pop().unwrap();
                assert_eq!((got.deadline, got.handle), (d_min, h_min));
            }
        }
        assert_eq!(q.len(), reference.len());
    }
}
