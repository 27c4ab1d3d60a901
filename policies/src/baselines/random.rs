//! Uniformly random placement.

use crate::{Decision, Policy, PolicyError};
use malcolm_proto::bridge::{Hello, Step};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

pub struct RandomPolicy {
    nodes: usize,
    rng: ChaCha8Rng,
}

impl RandomPolicy {
    pub fn new(hello: &Hello, seed: u64) -> Self {
        Self {
            nodes: hello.nodes.len(),
            rng: ChaCha8Rng::seed_from_u64(seed),
        }
    }
}

impl Policy for RandomPolicy {
    fn decide(&mut self, step: &Step, out: &mut Decision) -> Result<(), PolicyError> {
        out.clear();
        let n = self.nodes as u32;
        out.targets
            .extend(step.tasks.iter().map(|_| self.rng.random_range(0..n)));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::testkit::*;
    use super::*;

    #[test]
    fn covers_every_node_evenly() {
        let h = hello(&[(1, 1.0); 4]);
        let mut p = RandomPolicy::new(&h, 5);
        let s = step(
            (0..4).map(|i| node(i, 0, 0)).collect(),
            (0..100).map(|i| task(i, 0, 1, 10)).collect(),
        );
        let mut d = Decision::default();
        let mut counts = [0u32; 4];
        for _ in 0..400 {
            p.decide(&s, &mut d).unwrap();
            for &t in &d.targets {
                counts[t as usize] += 1;
            }
        }
        // 40 000 draws: each count is 10 000 +- 87 (1 sd).
        assert!(
            counts.iter().all(|&c| (9_500..10_500).contains(&c)),
            "{counts:?}"
        );
    }
}
