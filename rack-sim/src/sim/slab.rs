//! The task table of a running episode: one record per task in flight, slots reused through a
//! free list so its size follows the tasks in flight, not the run length.

#[derive(Debug, Clone, Copy)]
pub(super) struct TaskRec {
    pub(super) id: u64,
    pub(super) origin: u32,
    pub(super) class: u32,
    pub(super) size_bytes: u32,
    pub(super) service_ns: u64,
    pub(super) estimate_ns: u64,
    pub(super) arrival_ns: u64,
    pub(super) deadline_ns: u64,
    pub(super) step: u64,
    pub(super) target: u32,
    /// Arrived before the task limit: the episode waits for it.
    pub(super) counted: bool,
    /// Counted and past the warm-up: goes into the metrics.
    pub(super) measured: bool,
}

/// Task table with a free list; its size follows the tasks in flight, not the run length.
#[derive(Default)]
pub(super) struct Slab {
    pub(super) slots: Vec<Option<TaskRec>>,
    pub(super) free: Vec<u32>,
    pub(super) live: usize,
}

impl Slab {
    pub(super) fn insert(&mut self, t: TaskRec) -> u32 {
        self.live += 1;
        if let Some(h) = self.free.pop() {
            self.slots[h as usize] = Some(t);
            h
        } else {
            self.slots.push(Some(t));
            (self.slots.len() - 1) as u32
        }
    }

    pub(super) fn get(&self, h: u32) -> &TaskRec {
        self.slots[h as usize].as_ref().expect("live task handle")
    }

    pub(super) fn get_mut(&mut self, h: u32) -> &mut TaskRec {
        self.slots[h as usize].as_mut().expect("live task handle")
    }

    pub(super) fn remove(&mut self, h: u32) -> TaskRec {
        self.live -= 1;
        self.free.push(h);
        self.slots[h as usize].take().expect("live task handle")
    }

    pub(super) fn clear(&mut self) {
        self.slots.clear();
        self.free.clear();
        self.live = 0;
    }
}
