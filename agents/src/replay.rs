//! Bounded replay buffer of IQN transitions and minibatch assembly.
//!
//! A transition stores only what the loss reads: the shared features and the *chosen*
//! candidate's features of the decision (the network scores candidates independently), the
//! scaled reward, and the next decision state in full (all candidates, for the argmax).
//! Racks of different sizes may share one buffer; minibatches pad candidates and mask them.

use crate::features::{CANDIDATE_FEATURES, SHARED_FEATURES};
use rand::Rng;
use tch::{Kind, Tensor};

/// One learning sample.
#[derive(Debug, Clone, PartialEq)]
pub struct Transition {
    pub shared: Box<[f32]>,
    pub chosen: Box<[f32]>,
    pub reward: f32,
    /// False for the last decision of a terminated episode: no bootstrap.
    pub bootstrap: bool,
    /// Next decision state: shared features and n * C candidate features (empty when
    /// `bootstrap` is false).
    pub next_shared: Box<[f32]>,
    pub next_cand: Box<[f32]>,
}

impl Transition {
    pub fn next_n(&self) -> usize {
        self.next_cand.len() / CANDIDATE_FEATURES
    }
}

/// Fixed-capacity ring; memory grows to `capacity` transitions and stays there.
#[derive(Debug)]
pub struct Replay {
    items: Vec<Transition>,
    capacity: usize,
    next: usize,
    pub pushed: u64,
}

/// A minibatch as tensors.
#[derive(Debug)]
pub struct Batch {
    pub shared: Tensor,      // [B, S]
    pub chosen: Tensor,      // [B, 1, C]
    pub reward: Tensor,      // [B]
    pub bootstrap: Tensor,   // [B] (0 or 1)
    pub next_shared: Tensor, // [B, S]
    pub next_cand: Tensor,   // [B, M, C], padded
    pub next_mask: Tensor,   // [B, M] bool, true for real candidates
}

impl Replay {
    pub fn new(capacity: usize) -> Self {
        Self {
            items: Vec::new(),
            capacity: capacity.max(1),
            next: 0,
            pushed: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    pub fn push(&mut self, t: Transition) {
        debug_assert_eq!(t.shared.len(), SHARED_FEATURES);
        debug_assert_eq!(t.chosen.len(), CANDIDATE_FEATURES);
        if self.items.len() < self.capacity {
            self.items.push(t);
        } else {
            self.items[self.next] = t;
        }
        self.next = (self.next + 1) % self.capacity;
        self.pushed += 1;
    }

    /// `size` transitions drawn uniformly with replacement.
    pub fn sample(&self, size: usize, rng: &mut impl Rng) -> Batch {
        assert!(!self.items.is_empty(), "sample from an empty replay");
        let picks: Vec<&Transition> = (0..size)
            .map(|_| &self.items[rng.random_range(0..self.items.len())])
            .collect();
        let m = picks.iter().map(|t| t.next_n()).max().unwrap_or(0).max(1);
        let (s, c) = (SHARED_FEATURES, CANDIDATE_FEATURES);
        let mut shared = Vec::with_capacity(size * s);
        let mut chosen = Vec::with_capacity(size * c);
        let mut reward = Vec::with_capacity(size);
        let mut boot = Vec::with_capacity(size);
        let mut next_shared = vec![0f32; size * s];
        let mut next_cand = vec![0f32; size * m * c];
        let mut mask = vec![false; size * m];
        for (b, t) in picks.iter().enumerate() {
            shared.extend_from_slice(&t.shared);
            chosen.extend_from_slice(&t.chosen);
            reward.push(t.reward);
            let bootstrap = t.bootstrap && t.next_n() > 0;
            boot.push(bootstrap as u8 as f32);
            if bootstrap {
                next_shared[b * s..(b + 1) * s].copy_from_slice(&t.next_shared);
                next_cand[b * m * c..b * m * c + t.next_cand.len()].copy_from_slice(&t.next_cand);
                mask[b * m..b * m + t.next_n()].fill(true);
            } else {
                // Keep one unmasked slot so the argmax is defined; its value is multiplied by 0.
                mask[b * m] = true;
            }
        }
        let b = size as i64;
        Batch {
            shared: Tensor::from_slice(&shared).view([b, s as i64]),
            chosen: Tensor::from_slice(&chosen).view([b, 1, c as i64]),
            reward: Tensor::from_slice(&reward),
            bootstrap: Tensor::from_slice(&boot),
            next_shared: Tensor::from_slice(&next_shared).view([b, s as i64]),
            next_cand: Tensor::from_slice(&next_cand).view([b, m as i64, c as i64]),
            next_mask: Tensor::from_slice(&mask)
                .view([b, m as i64])
                .to_kind(Kind::Bool),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn tr(r: f32, n: usize) -> Transition {
        Transition {
            shared: vec![r; SHARED_FEATURES].into(),
            chosen: vec![r; CANDIDATE_FEATURES].into(),
            reward: r,
            bootstrap: n > 0,
            next_shared: if n > 0 {
                vec![r; SHARED_FEATURES].into()
            } else {
                Box::new([])
            },
            next_cand: vec![r; n * CANDIDATE_FEATURES].into(),
        }
    }

    #[test]
    fn ring_is_bounded_and_batches_are_padded() {
        let mut r = Replay::new(3);
        for i in 0..5 {
            r.push(tr(i as f32, (i % 3) as usize));
        }
        assert_eq!(r.len(), 3);
        assert_eq!(r.pushed, 5);
        // Oldest two (0, 1) were overwritten.
        let mut rewards: Vec<f32> = r.items.iter().map(|t| t.reward).collect();
        rewards.sort_by(f32::total_cmp);
        assert_eq!(rewards, vec![2.0, 3.0, 4.0]);
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        let b = r.sample(64, &mut rng);
        assert_eq!(b.next_cand.size()[1], 2);
        assert_eq!(b.shared.size(), vec![64, SHARED_FEATURES as i64]);
        // Each row's mask count equals its next rack size (or 1 for terminal rows).
        let counts = b
            .next_mask
            .to_kind(Kind::Float)
            .sum_dim_intlist(1, false, Kind::Float);
        for i in 0..64 {
            let rew = b.reward.double_value(&[i]);
            let want = match rew as i32 {
                2 => 2.0,
                4 => 1.0,
                _ => 1.0, // 3 -> n = 0 -> terminal, one placeholder slot
            };
            assert_eq!(counts.double_value(&[i]), want);
        }
    }
}
