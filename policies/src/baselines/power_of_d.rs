//! Power-of-d choices: probe d distinct nodes chosen uniformly, join the shortest of them.

use super::{fresh_queue_lengths, ProbeCost};
use crate::{Decision, Policy, PolicyError};
use malcolm_proto::bridge::{Hello, Step};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Fills `out` with `min(d, n)` distinct node ids drawn uniformly without replacement.
pub fn sample_distinct(rng: &mut impl Rng, n: u32, d: usize, out: &mut Vec<u32>) {
    out.clear();
    let d = d.min(n as usize);
    if d * 4 <= n as usize {
        // Rejection: cheap when d is small next to n (the usual case).
        while out.len() < d {
            let c = rng.random_range(0..n);
            if !out.contains(&c) {
                out.push(c);
            }
        }
    } else {
        // Partial Fisher-Yates.
        let mut all: Vec<u32> = (0..n).collect();
        for i in 0..d {
            let j = rng.random_range(i..n as usize);
            all.swap(i, j);
        }
        out.extend_from_slice(&all[..d]);
    }
}

pub struct PowerOfD {
    nodes: usize,
    d: usize,
    probe: ProbeCost,
    rng: ChaCha8Rng,
    queues: Vec<u64>,
    candidates: Vec<u32>,
}

impl PowerOfD {
    pub fn new(hello: &Hello, d: usize, probe: ProbeCost, seed: u64) -> Self {
        Self {
            nodes: hello.nodes.len(),
            d,
            probe,
            rng: ChaCha8Rng::seed_from_u64(seed),
            queues: Vec::new(),
            candidates: Vec::with_capacity(d),
        }
    }
}

impl Policy for PowerOfD {
    fn decide(&mut self, step: &Step, out: &mut Decision) -> Result<(), PolicyError> {
        out.clear();
        fresh_queue_lengths(step, &mut self.queues);
        for t in &step.tasks {
            sample_distinct(
                &mut self.rng,
                self.nodes as u32,
                self.d,
                &mut self.candidates,
            );
            // Candidates are in random order, so the first minimum is a random tie-break.
            let pick = *self
                .candidates
                .iter()
                .min_by_key(|&&c| self.queues[c as usize])
                .expect("d >= 1");
            self.queues[pick as usize] += 1;
            out.targets.push(pick);
            out.hold_ns
                .push(self.probe.cost(t.origin, self.candidates.iter().copied()));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::testkit::*;
    use super::*;

    #[test]
    fn samples_are_distinct_and_uniform() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let mut out = Vec::new();
        for (n, d) in [(100u32, 2usize), (100, 3), (6, 4), (5, 5), (3, 7)] {
            let mut counts = vec![0u32; n as usize];
            for _ in 0..20_000 {
                sample_distinct(&mut rng, n, d, &mut out);
                assert_eq!(out.len(), d.min(n as usize));
                let mut s = out.clone();
                s.sort();
                s.dedup();
                assert_eq!(s.len(), out.len(), "duplicates in {out:?}");
                for &c in &out {
                    counts[c as usize] += 1;
                }
            }
            let expect = 20_000.0 * d.min(n as usize) as f64 / n as f64;
            for &c in &counts {
                // 5 standard deviations of a binomial count.
                assert!(
                    (c as f64 - expect).abs() < 5.0 * expect.sqrt() + 1.0,
                    "n={n} d={d}"
                );
            }
        }
    }

    /// With queues [0, 1, 2, 3] a choice among d distinct nodes picks node i with probability
    /// C(3 - i, d - 1) / C(4, d); sampling with replacement would sometimes pick node 3.
    #[test]
    fn choice_frequencies_match_d_distinct_candidates() {
        let h = hello(&[(1, 1.0); 4]);
        let s = step(
            vec![node(0, 0, 0), node(1, 1, 0), node(2, 2, 0), node(3, 3, 0)],
            vec![task(0, 0, 1, 1)],
        );
        for (d, expect) in [
            (2usize, [0.5, 1.0 / 3.0, 1.0 / 6.0, 0.0]),
            (3, [0.75, 0.25, 0.0, 0.0]),
        ] {
            let mut p = PowerOfD::new(&h, d, ProbeCost::default(), 11);
            let mut d_out = Decision::default();
            let mut counts = [0f64; 4];
            let draws = 60_000;
            for _ in 0..draws {
                p.decide(&s, &mut d_out).unwrap();
                counts[d_out.targets[0] as usize] += 1.0;
            }
            for i in 0..4 {
                let f = counts[i] / draws as f64;
                assert!(
                    (f - expect[i]).abs() < 0.01,
                    "d={d} node {i}: {f} vs {}",
                    expect[i]
                );
            }
        }
    }

    #[test]
    fn probe_cost_is_paid_and_can_be_zero() {
        let h = hello(&[(1, 1.0); 4]);
        let s = step(
            (0..4).map(|i| node(i, 0, 0)).collect(),
            vec![task(0, 0, 1, 1)],
        );
        let mut d = Decision::default();
        let mut p = PowerOfD::new(&h, 4, ProbeCost::default(), 0);
        p.decide(&s, &mut d).unwrap();
        assert_eq!(d.hold_ns, vec![6_006]);
        let free = ProbeCost {
            enabled: false,
            ..ProbeCost::default()
        };
        let mut p = PowerOfD::new(&h, 2, free, 0);
        p.decide(&s, &mut d).unwrap();
        assert_eq!(d.hold_ns, vec![0]);
    }
}
