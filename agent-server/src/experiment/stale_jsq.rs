//! JSQ on the stale view: join the shortest queue as the origin node believes it from its
//! Global State Table (the last heartbeat of every other node, `T_hb` old at most) plus its
//! own fresh queue. No probes, so no probe delay, but every origin herds onto the same
//! "shortest" node until the next heartbeat: the design's herd effect under staleness
//! (chapter 5.4, experiment 3). The `jsq` baseline of `malcolm-policies` probes fresh queue
//! lengths instead and so does not depend on the heartbeat interval at all.

use malcolm_policies::{Decision, Policy, PolicyError, PolicyFactory};
use malcolm_proto::bridge::{Hello, Step};
use malcolm_proto::{Heartbeat, HEARTBEAT_LEN};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Policy spec the experiments use for it.
pub const NAME: &str = "jsq-stale";

pub struct StaleJsqFactory;

impl PolicyFactory for StaleJsqFactory {
    fn name(&self) -> &str {
        NAME
    }

    fn new_session(&self, hello: &Hello, seed: u64) -> Result<Box<dyn Policy>, PolicyError> {
        if hello.nodes.is_empty() {
            return Err(PolicyError::Unsupported("empty rack".into()));
        }
        Ok(Box::new(StaleJsq {
            nodes: hello.nodes.len(),
            rng: StdRng::seed_from_u64(seed),
            view: Vec::new(),
            ties: Vec::new(),
        }))
    }
}

pub struct StaleJsq {
    nodes: usize,
    rng: StdRng,
    view: Vec<u64>,
    ties: Vec<u32>,
}

/// Queue lengths as node `origin` sees them: its own fresh heartbeat fields, the others from
/// its Global State Table (0 where nothing was received yet).
pub fn origin_view(step: &Step, origin: usize, out: &mut Vec<u64>) {
    let n = step.nodes.len();
    out.clear();
    out.resize(n, 0);
    let Some(me) = step.nodes.get(origin) else {
        return;
    };
    if let Some(gst) = &me.gst {
        for (j, v) in out.iter_mut().enumerate() {
            let received = gst.age_ns.get(j).is_some_and(|&a| a != u64::MAX);
            let bytes = gst
                .heartbeats
                .get(j * HEARTBEAT_LEN..(j + 1) * HEARTBEAT_LEN);
            if let (true, Some(b)) = (received, bytes) {
                if let Ok(h) = Heartbeat::decode(b) {
                    *v = h.queue_len as u64;
                }
            }
        }
    }
    out[origin] = me.heartbeat.as_ref().map_or(0, |h| h.queue_len as u64);
}

impl Policy for StaleJsq {
    fn decide(&mut self, step: &Step, out: &mut Decision) -> Result<(), PolicyError> {
        if step.nodes.len() != self.nodes {
            return Err(PolicyError::InvalidState(format!(
                "step has {} node states, the rack has {} nodes",
                step.nodes.len(),
                self.nodes
            )));
        }
        out.clear();
        // The origin knows what it placed itself within this Step.
        let mut added: Vec<(u32, u32)> = Vec::new();
        for t in &step.tasks {
            let o = t.origin as usize;
            if o >= self.nodes {
                return Err(PolicyError::InvalidState(format!(
                    "task {} has origin {} outside the rack of {}",
                    t.task_id, t.origin, self.nodes
                )));
            }
            origin_view(step, o, &mut self.view);
            for &(from, to) in &added {
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
            added.push((t.origin, pick));
            out.targets.push(pick);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use malcolm_proto::bridge::{GlobalStateView, HeartbeatFields, NodeState, PendingTask};

    fn hb(id: u8, q: u32) -> [u8; HEARTBEAT_LEN] {
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
        let fresh = [5u32, 0, 7];
        let mut gst = Vec::new();
        gst.extend_from_slice(&hb(0, 0));
        gst.extend_from_slice(&hb(1, 9));
        gst.extend_from_slice(&hb(2, 1));
        let nodes: Vec<NodeState> = (0..3)
            .map(|i| NodeState {
                node_id: i,
                heartbeat: Some(HeartbeatFields {
                    node_id: i,
                    queue_len: fresh[i as usize],
                    ..Default::default()
                }),
                gst: (i == 0).then(|| GlobalStateView {
                    heartbeats: gst.clone(),
                    age_ns: vec![0, 50_000, 50_000],
                }),
                ..Default::default()
            })
            .collect();
        let task = |id| PendingTask {
            task_id: id,
            origin: 0,
            ..Default::default()
        };
        let step = Step {
            nodes,
            tasks: vec![task(0), task(1), task(2)],
            ..Default::default()
        };
        let hello = Hello {
            nodes: vec![Default::default(); 3],
            ..Default::default()
        };
        let mut p = StaleJsqFactory.new_session(&hello, 1).unwrap();
        let mut d = Decision::default();
        p.decide(&step, &mut d).unwrap();
        // View [5 (fresh own), 9, 1]: node 2 gets tasks until it reaches 5, never node 1.
        assert_eq!(d.targets, vec![2, 2, 2]);
        assert!(d.hold_ns.is_empty());
        let mut v = Vec::new();
        origin_view(&step, 0, &mut v);
        assert_eq!(v, vec![5, 9, 1]);
        // A node with no GST sees only itself.
        origin_view(&step, 1, &mut v);
        assert_eq!(v, vec![0, 0, 0]);
    }
}
