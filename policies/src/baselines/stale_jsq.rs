//! JSQ on the stale view: join the shortest queue as the origin node believes it from its
//! Global State Table (the last heartbeat of every other node, `T_hb` old at most) plus its
//! own fresh queue. No probes, so no probe delay, but every origin herds onto the same
//! "shortest" node until the next heartbeat: the design's herd effect under staleness
//! (design.md section 10, the staleness experiment). The `jsq` baseline probes fresh queue
//! lengths instead and so does not depend on the heartbeat interval at all.

use crate::view::GstView;
use crate::{Decision, Policy, PolicyError};
use malcolm_proto::bridge::{Hello, Step};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

pub struct StaleJsq {
    nodes: usize,
    rng: StdRng,
    view: Vec<u64>,
    ties: Vec<u32>,
    /// (origin, target) of the tasks placed so far in the Step.
    added: Vec<(u32, u32)>,
}

impl StaleJsq {
    pub fn new(hello: &Hello, seed: u64) -> Self {
        Self {
            nodes: hello.nodes.len(),
            rng: StdRng::seed_from_u64(seed),
            view: Vec::new(),
            ties: Vec::new(),
            added: Vec::new(),
        }
    }
}

/// Queue lengths as node `origin` sees them: its own fresh heartbeat fields, the others from
/// its Global State Table (0 where nothing was received yet).
pub fn origin_view(step: &Step, origin: usize, out: &mut Vec<u64>) {
    out.clear();
    out.resize(step.nodes.len(), 0);
    let gst = GstView::of(step, origin);
    for (j, v) in out.iter_mut().enumerate() {
        if let Some((hb, _)) = gst.get(j) {
            *v = hb.queue_len as u64;
        }
    }
    out[origin] = step.nodes[origin]
        .heartbeat
        .as_ref()
        .map_or(0, |h| h.queue_len as u64);
}

impl Policy for StaleJsq {
    fn decide(&mut self, step: &Step, out: &mut Decision) -> Result<(), PolicyError> {
        out.clear();
        self.added.clear();
        for t in &step.tasks {
            let o = t.origin as usize;
            origin_view(step, o, &mut self.view);
            // The origin knows what it placed itself within this Step.
            for &(from, to) in &self.added {
                if from == t.origin {
                    self.view[to as usize] += 1;
                }
            }
            let min = *self.view.iter().min().expect("non-empty rack");
            self.ties.clear();
            self.ties.extend(
                self.view
                    .iter()
                    .enumerate()
                    .filter(|&(_, &q)| q == min)
                    .map(|(i, _)| i as u32),
            );
            let pick = self.ties[self.rng.random_range(0..self.ties.len())];
            self.added.push((t.origin, pick));
            out.targets.push(pick);
        }
        debug_assert!(out.targets.iter().all(|&t| (t as usize) < self.nodes));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::testkit::*;
    use super::*;
    use malcolm_proto::Heartbeat;

    fn hb(id: u8, q: u32) -> [u8; 16] {
        Heartbeat {
            node_id: id,
            queue_len: q,
            ..Default::default()
        }
        .encode()
    }

    #[test]
    fn decides_on_the_stale_view_not_the_fresh_one() {
        // Fresh queues: node 1 is the shortest (0). Node 0's stale view says node 2 is (1),
        // and node 1 at 9.
        let mut n0 = node(0, 5, 0);
        n0.gst = Some(gst(&[hb(0, 0), hb(1, 9), hb(2, 1)], 50_000));
        n0.gst.as_mut().unwrap().age_ns[0] = 0;
        let s = step(
            vec![n0, node(1, 0, 0), node(2, 7, 0)],
            vec![task(0, 0, 1, 1), task(1, 0, 1, 1), task(2, 0, 1, 1)],
        );
        let h = hello(&[(1, 1.0); 3]);
        let mut p = StaleJsq::new(&h, 1);
        let mut d = Decision::default();
        p.decide(&s, &mut d).unwrap();
        // View [5 (fresh own), 9, 1]: node 2 gets tasks until it reaches 5, never node 1.
        assert_eq!(d.targets, vec![2, 2, 2]);
        assert!(d.hold_ns.is_empty());
        let mut v = Vec::new();
        origin_view(&s, 0, &mut v);
        assert_eq!(v, vec![5, 9, 1]);
        // A node with no GST sees only itself.
        origin_view(&s, 1, &mut v);
        assert_eq!(v, vec![0, 0, 0]);
    }
}
