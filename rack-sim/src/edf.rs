//! The EDF ready queue: a min-heap of jobs by absolute deadline, FIFO among equal deadlines.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

/// A job as a node sees it: a handle into the simulator's task table, its absolute deadline
/// and the work left, in nanoseconds of wall time on this node (service / speed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Job {
    pub handle: u32,
    pub deadline: u64,
    pub work_ns: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Entry {
    deadline: u64,
    seq: u64,
    job: Job,
}

impl Ord for Entry {
    fn cmp(&self, other: &Self) -> Ordering {
        // Reversed: BinaryHeap is a max-heap and we want the earliest deadline on top; the
        // sequence number keeps equal deadlines in arrival order (deterministic runs).
        other
            .deadline
            .cmp(&self.deadline)
            .then_with(|| other.seq.cmp(&self.seq))
    }
}

impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// Min-heap by absolute deadline.
#[derive(Debug, Default, Clone)]
pub struct EdfQueue {
    heap: BinaryHeap<Entry>,
    seq: u64,
}

impl EdfQueue {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn push(&mut self, job: Job) {
        self.seq += 1;
        self.heap.push(Entry {
            deadline: job.deadline,
            seq: self.seq,
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
        self.seq = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(handle: u32, deadline: u64) -> Job {
        Job {
            handle,
            deadline,
            work_ns: 1,
        }
    }

    #[test]
    fn pops_by_deadline_then_fifo() {
        let mut q = EdfQueue::new();
        for (h, d) in [(0, 50), (1, 10), (2, 30), (3, 10), (4, 5)] {
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
