//! TOD-N (fog-offloading seed, algorithm 2): each origin runs a discounted-UCB bandit over the
//! target nodes, learning only from its own outcomes (reward 1 for an on-time completion,
//! 0 for a miss or a drop), with no view of the nodes' state. The discount gamma forgets old
//! evidence so the choice tracks a changing rack.

use crate::{Decision, Policy, PolicyError};
use malcolm_proto::bridge::{Hello, OutcomeKind, Step, TaskOutcome};

/// Discount per decision (the seed recommends gamma in (0.99, 1)).
pub const DEFAULT_GAMMA: f64 = 0.999;
/// Exploration weight: the UCB1 bonus sqrt(2 ln n / n_k).
pub const DEFAULT_ZETA: f64 = 2.0;

pub struct TodN {
    n: usize,
    pub gamma: f64,
    pub zeta: f64,
    /// Discounted play counts and reward sums, `[origin * n + target]`.
    plays: Vec<f64>,
    rewards: Vec<f64>,
}

impl TodN {
    pub fn new(hello: &Hello) -> Self {
        let n = hello.nodes.len();
        Self {
            n,
            gamma: DEFAULT_GAMMA,
            zeta: DEFAULT_ZETA,
            plays: vec![0.0; n * n],
            rewards: vec![0.0; n * n],
        }
    }

    /// The arm origin `o` plays next.
    fn choose(&self, o: usize) -> usize {
        let row = o * self.n..(o + 1) * self.n;
        let plays = &self.plays[row.clone()];
        // Every helper is tried once first (the seed's initialisation round).
        if let Some(k) = plays.iter().position(|&p| p == 0.0) {
            return k;
        }
        let total: f64 = plays.iter().sum();
        let ln = total.max(1.0).ln();
        let mut best = (f64::NEG_INFINITY, 0);
        for (k, (&p, &r)) in plays.iter().zip(&self.rewards[row]).enumerate() {
            let mean = (r / p).clamp(0.0, 1.0);
            let index = mean + (self.zeta * ln / p).sqrt();
            if index > best.0 {
                best = (index, k);
            }
        }
        best.1
    }

    fn play(&mut self, o: usize, k: usize) {
        let row = o * self.n..(o + 1) * self.n;
        for p in &mut self.plays[row.clone()] {
            *p *= self.gamma;
        }
        for r in &mut self.rewards[row] {
            *r *= self.gamma;
        }
        self.plays[o * self.n + k] += 1.0;
    }
}

impl Policy for TodN {
    fn decide(&mut self, step: &Step, out: &mut Decision) -> Result<(), PolicyError> {
        out.clear();
        for t in &step.tasks {
            let o = t.origin as usize;
            let k = self.choose(o);
            self.play(o, k);
            out.targets.push(k as u32);
        }
        Ok(())
    }

    fn observe(&mut self, outcomes: &[TaskOutcome]) {
        for o in outcomes {
            let (origin, node) = (o.origin as usize, o.node_id as usize);
            if origin >= self.n || node >= self.n {
                continue;
            }
            if o.kind == OutcomeKind::Completed as i32 {
                self.rewards[origin * self.n + node] += 1.0;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testkit::*;
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    fn run(p: &mut TodN, probs: [f64; 2], rounds: usize, rng: &mut ChaCha8Rng) -> usize {
        let s = step(vec![node(0, 0, 0), node(1, 0, 0)], vec![task(0, 0, 1, 1)]);
        let mut d = Decision::default();
        let mut picks_of_1 = 0;
        for _ in 0..rounds {
            p.decide(&s, &mut d).unwrap();
            let k = d.targets[0] as usize;
            picks_of_1 += k;
            let hit = rng.random::<f64>() < probs[k];
            p.observe(&[TaskOutcome {
                origin: 0,
                node_id: k as u32,
                kind: if hit {
                    OutcomeKind::Completed as i32
                } else {
                    OutcomeKind::Missed as i32
                },
                ..Default::default()
            }]);
        }
        picks_of_1
    }

    #[test]
    fn converges_to_the_better_arm_and_tracks_a_change() {
        let h = hello(&[(1, 1.0), (1, 1.0)]);
        let mut p = TodN::new(&h);
        let mut rng = ChaCha8Rng::seed_from_u64(42);
        run(&mut p, [0.3, 0.8], 3_000, &mut rng);
        let late = run(&mut p, [0.3, 0.8], 1_000, &mut rng);
        assert!(late > 850, "arm 1 chosen {late}/1000");
        // The arms swap: discounting lets it move to arm 0 within a few thousand rounds.
        run(&mut p, [0.8, 0.3], 4_000, &mut rng);
        let after = run(&mut p, [0.8, 0.3], 1_000, &mut rng);
        assert!(after < 150, "arm 1 still chosen {after}/1000");
    }
}
