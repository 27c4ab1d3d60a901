//! The discrete-event core: a binary-heap queue ordered by (time, priority, insertion order),
//! so simultaneous events run in a fixed, reproducible order.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

/// Priority of ordinary events at a given instant.
pub const PRIO_NORMAL: u8 = 0;
/// Runs after every ordinary event of the same instant (a decision sees all of them).
pub const PRIO_LATE: u8 = 1;
/// Runs last of all (episode time limit).
pub const PRIO_LAST: u8 = 2;

struct Entry<E> {
    time: u64,
    prio: u8,
    seq: u64,
    ev: E,
}

impl<E> PartialEq for Entry<E> {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl<E> Eq for Entry<E> {}
impl<E> PartialOrd for Entry<E> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl<E> Ord for Entry<E> {
    fn cmp(&self, other: &Self) -> Ordering {
        // Reversed for a min-heap.
        (other.time, other.prio, other.seq).cmp(&(self.time, self.prio, self.seq))
    }
}

/// Min-heap of timed events.
pub struct EventQueue<E> {
    heap: BinaryHeap<Entry<E>>,
    seq: u64,
}

impl<E> Default for EventQueue<E> {
    fn default() -> Self {
        Self {
            heap: BinaryHeap::new(),
            seq: 0,
        }
    }
}

impl<E> EventQueue<E> {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn push(&mut self, time: u64, prio: u8, ev: E) {
        self.seq += 1;
        self.heap.push(Entry {
            time,
            prio,
            seq: self.seq,
            ev,
        });
    }

    pub fn pop(&mut self) -> Option<(u64, E)> {
        self.heap.pop().map(|e| (e.time, e.ev))
    }

    pub fn peek_time(&self) -> Option<u64> {
        self.heap.peek().map(|e| e.time)
    }

    pub fn len(&self) -> usize {
        self.heap.len()
    }

    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }

    pub fn clear(&mut self) {
        self.heap.clear();
        self.seq = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orders_by_time_then_priority_then_insertion() {
        let mut q = EventQueue::new();
        q.push(10, PRIO_LATE, "late@10");
        q.push(10, PRIO_NORMAL, "a@10");
        q.push(5, PRIO_LAST, "last@5");
        q.push(10, PRIO_NORMAL, "b@10");
        q.push(1, PRIO_NORMAL, "x@1");
        let order: Vec<&str> = std::iter::from_fn(|| q.pop()).map(|(_, e)| e).collect();
        assert_eq!(order, vec!["x@1", "last@5", "a@10", "b@10", "late@10"]);
    }
}
