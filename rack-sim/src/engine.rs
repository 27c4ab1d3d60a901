//! The discrete-event core: a binary-heap queue ordered by (time, priority, insertion order),
//! so simultaneous events run in a fixed, reproducible order.

use std::cmp::Ordering;
use std::collections::{BinaryHeap, VecDeque};

/// Priority of ordinary events at a given instant.
pub const PRIO_NORMAL: u8 = 0;
/// Runs after every ordinary event of the same instant (a decision sees all of them).
pub const PRIO_LATE: u8 = 1;
/// Runs last of all (episode time limit).
pub const PRIO_LAST: u8 = 2;

struct Entry<E> {
    /// `time << 64 | prio << 62 | seq`: one integer comparison orders the heap.
    key: u128,
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
        other.key.cmp(&self.key)
    }
}

/// Min-heap of timed events, with a FIFO fast lane for events due at the current instant
/// (most of them: a task landing schedules its node's poll "now"), which keeps exactly the
/// same order as the heap would at a fraction of the cost.
pub struct EventQueue<E> {
    heap: BinaryHeap<Entry<E>>,
    now_lane: VecDeque<Entry<E>>,
    /// Time of the last popped event.
    current: u64,
    seq: u64,
}

impl<E> Default for EventQueue<E> {
    fn default() -> Self {
        Self {
            heap: BinaryHeap::new(),
            now_lane: VecDeque::new(),
            current: 0,
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
        debug_assert!(prio < 4 && self.seq < 1 << 62);
        let key = (time as u128) << 64 | (prio as u128) << 62 | self.seq as u128;
        // Keys in the lane are increasing (same time and priority, growing seq), so the lane
        // front is its minimum.
        if time == self.current && prio == PRIO_NORMAL {
            self.now_lane.push_back(Entry { key, ev });
        } else {
            self.heap.push(Entry { key, ev });
        }
    }

    pub fn pop(&mut self) -> Option<(u64, E)> {
        let from_lane = match (self.now_lane.front(), self.heap.peek()) {
            (Some(l), Some(h)) => l.key < h.key,
            (Some(_), None) => true,
            (None, _) => false,
        };
        let e = if from_lane {
            self.now_lane.pop_front()
        } else {
            self.heap.pop()
        }?;
        let time = (e.key >> 64) as u64;
        self.current = time;
        Some((time, e.ev))
    }

    pub fn peek_time(&self) -> Option<u64> {
        let lane = self.now_lane.front().map(|e| e.key);
        let heap = self.heap.peek().map(|e| e.key);
        let key = match (lane, heap) {
            (Some(a), Some(b)) => a.min(b),
            (a, b) => a.or(b)?,
        };
        Some((key >> 64) as u64)
    }

    pub fn len(&self) -> usize {
        self.heap.len() + self.now_lane.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn clear(&mut self) {
        self.heap.clear();
        self.now_lane.clear();
        self.current = 0;
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

    /// The fast lane must give exactly the order of a plain heap.
    #[test]
    fn now_lane_keeps_heap_order() {
        let mut q = EventQueue::new();
        let mut reference = std::collections::BTreeMap::new();
        let mut seq = 0u64;
        let mut rng = 99u64;
        let mut next = || {
            rng = rng
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            rng >> 33
        };
        let mut push =
            |q: &mut EventQueue<u64>, r: &mut std::collections::BTreeMap<_, _>, t: u64, p: u8| {
                seq += 1;
                q.push(t, p, seq);
                r.insert((t, p, seq), seq);
            };
        for i in 0..10 {
            push(&mut q, &mut reference, i * 3, PRIO_NORMAL);
        }
        let mut popped = 0;
        while let Some((t, id)) = q.pop() {
            let (&(rt, _, _), &rid) = reference.iter().next().unwrap();
            reference.remove(&reference.keys().next().copied().unwrap());
            assert_eq!((t, id), (rt, rid));
            popped += 1;
            if popped < 5_000 {
                // New events at the current instant (lane) and later (heap), mixed priorities.
                for _ in 0..(1 + next() % 2) {
                    let dt = if next() % 2 == 0 { 0 } else { next() % 5 };
                    let p = (next() % 3) as u8;
                    push(&mut q, &mut reference, t + dt, p);
                }
            }
        }
        assert!(reference.is_empty() && popped >= 5_000);
    }
}
