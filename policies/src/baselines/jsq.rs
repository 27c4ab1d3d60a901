//! Join-the-shortest-queue on fresh queue lengths, paying the probe round trip to every node.

use super::{fresh_queue_lengths, ProbeCost};
use crate::{Decision, Policy, PolicyError};
use malcolm_proto::bridge::{Hello, Step};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

pub struct Jsq {
    nodes: usize,
    probe: ProbeCost,
    rng: ChaCha8Rng,
    queues: Vec<u64>,
    ties: Vec<u32>,
}

impl Jsq {
    pub fn new(hello: &Hello, probe: ProbeCost, seed: u64) -> Self {
        Self {
            nodes: hello.nodes.len(),
            probe,
            rng: ChaCha8Rng::seed_from_u64(seed),
            queues: Vec::new(),
            ties: Vec::new(),
        }
    }
}

impl Policy for Jsq {
    fn decide(&mut self, step: &Step, out: &mut Decision) -> Result<(), PolicyError> {
        out.clear();
        fresh_queue_lengths(step, &mut self.queues);
        for t in &step.tasks {
            let min = *self.queues.iter().min().expect("non-empty rack");
            self.ties.clear();
            self.ties.extend(
                self.queues
                    .iter()
                    .enumerate()
                    .filter(|&(_, &q)| q == min)
                    .map(|(i, _)| i as u32),
            );
            // Random among equals so ties do not all pile onto node 0.
            let pick = self.ties[self.rng.random_range(0..self.ties.len())];
            // Later tasks of the same Step see this one.
            self.queues[pick as usize] += 1;
            out.targets.push(pick);
            out.hold_ns
                .push(self.probe.cost(t.origin, 0..self.nodes as u32));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::testkit::*;
    use super::*;

    #[test]
    fn picks_the_shortest_and_counts_its_own_placements() {
        let h = hello(&[(1, 1.0); 4]);
        let mut p = Jsq::new(&h, ProbeCost::default(), 1);
        let s = step(
            vec![node(0, 5, 0), node(1, 2, 0), node(2, 7, 0), node(3, 3, 0)],
            vec![task(0, 0, 1, 1), task(1, 0, 1, 1), task(2, 0, 1, 1)],
        );
        let mut d = Decision::default();
        p.decide(&s, &mut d).unwrap();
        // 2 -> node 1 (now 3); then nodes 1 and 3 tie at 3; then the other one.
        assert_eq!(d.targets[0], 1);
        let mut rest = d.targets[1..].to_vec();
        rest.sort();
        assert_eq!(rest, vec![1, 3]);
        assert_eq!(d.hold_ns, vec![6_006; 3]);
    }
}
