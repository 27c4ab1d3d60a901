//! The live generators of an episode: Poisson arrivals and micro-bursts, each on its own RNG
//! stream, yielding tasks in arrival order.

use super::{BurstSource, Estimator, Load, NewTask, PoissonSource};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Exp1};
use std::collections::VecDeque;

/// Live Poisson generator.
pub(crate) struct PoissonGen {
    src: PoissonSource,
    rate_per_ns: f64,
    nodes: u32,
    rng: ChaCha8Rng,
    estimator: Estimator,
    /// Next arrival time as a float, so rounding to ns does not bias the rate.
    next_f: f64,
    next_ns: u64,
}

impl PoissonGen {
    /// `estimator` draws from its own stream: the arrivals and services of `rng` do not
    /// depend on the estimate model.
    pub fn new(
        src: PoissonSource,
        capacity: f64,
        nodes: u32,
        rng: ChaCha8Rng,
        estimator: Estimator,
    ) -> Self {
        let rate_per_ns = match src.load {
            Load::Rho(rho) => rho * capacity / src.service.mean_ns(),
            Load::PerSecond(r) => r / 1e9,
        };
        let mut g = Self {
            src,
            rate_per_ns,
            nodes,
            rng,
            estimator,
            next_f: 0.0,
            next_ns: 0,
        };
        g.advance();
        g
    }

    fn advance(&mut self) {
        let e: f64 = Exp1.sample(&mut self.rng);
        self.next_f += e / self.rate_per_ns;
        // Positive values: adding one half and truncating rounds without a libm call.
        self.next_ns = (self.next_f + 0.5) as u64;
    }

    pub fn peek_time(&self) -> u64 {
        self.next_ns
    }

    pub fn next(&mut self) -> NewTask {
        let arrival_ns = self.peek_time();
        self.advance();
        let origin = self.rng.random_range(0..self.nodes);
        let service_ns = self.src.service.sample(&mut self.rng);
        let estimate_ns = self.estimator.estimate(0, service_ns);
        NewTask {
            arrival_ns,
            origin,
            service_ns,
            estimate_ns,
            deadline_ns: self.src.deadline.deadline(arrival_ns, estimate_ns),
            size_bytes: self.src.size_bytes,
            class: 0,
        }
    }
}

/// Live micro-burst generator.
pub(crate) struct BurstGen {
    src: BurstSource,
    nodes: u32,
    rng: ChaCha8Rng,
    estimator: Estimator,
    next_burst: u64,
    queued: VecDeque<NewTask>,
}

impl BurstGen {
    pub fn new(src: BurstSource, nodes: u32, rng: ChaCha8Rng, estimator: Estimator) -> Self {
        let next_burst = src.first_at_ns;
        let mut g = Self {
            src,
            nodes,
            rng,
            estimator,
            next_burst,
            queued: VecDeque::new(),
        };
        g.refill();
        g
    }

    fn refill(&mut self) {
        let t0 = self.next_burst;
        let mut offsets: Vec<u64> = (0..self.src.count)
            .map(|_| {
                if self.src.spread_ns == 0 {
                    0
                } else {
                    self.rng.random_range(0..self.src.spread_ns)
                }
            })
            .collect();
        offsets.sort_unstable();
        for off in offsets {
            let arrival_ns = t0 + off;
            let service_ns = self.src.service.sample(&mut self.rng);
            self.queued.push_back(NewTask {
                arrival_ns,
                origin: self.rng.random_range(0..self.nodes),
                service_ns,
                estimate_ns: self.estimator.estimate(1, service_ns),
                deadline_ns: arrival_ns + self.src.relative_deadline_ns,
                size_bytes: self.src.size_bytes,
                class: 1,
            });
        }
        self.next_burst = t0 + self.src.period_ns.max(1);
    }

    pub fn peek_time(&self) -> Option<u64> {
        self.queued.front().map(|t| t.arrival_ns)
    }

    pub fn next(&mut self) -> Option<NewTask> {
        let t = self.queued.pop_front();
        if self.queued.is_empty() && self.src.count > 0 {
            self.refill();
        }
        t
    }
}
