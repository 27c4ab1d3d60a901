//! Bounded replay buffer of IQN transitions, stored in flat f32 arrays, and minibatch assembly.
//!
//! A transition stores only what the loss reads: the shared features and the *chosen*
//! candidate's features of the decision (the network scores candidates independently), the
//! scaled reward, the discount to apply to the next state's value (0: terminal), and the next
//! decision state with its best `k` candidates as the acting network ranked them (all
//! candidates on racks of up to `k` nodes). Racks of different sizes share one buffer; a
//! minibatch pads candidates and masks them.

use crate::features::{CANDIDATE_FEATURES, SHARED_FEATURES};
use rand::Rng;
use tch::{Kind, Tensor};

/// One learning sample.
#[derive(Debug, Clone, PartialEq)]
pub struct Transition {
    pub shared: Box<[f32]>,
    pub chosen: Box<[f32]>,
    pub reward: f32,
    /// Multiplies the next state's return: the discount, or 0 for the last decision of a
    /// terminated episode (then `next_*` are empty).
    pub discount: f32,
    pub next_shared: Box<[f32]>,
    /// `k * CANDIDATE_FEATURES` features of the next state's candidates.
    pub next_cand: Box<[f32]>,
}

impl Transition {
    pub fn next_n(&self) -> usize {
        self.next_cand.len() / CANDIDATE_FEATURES
    }
}

/// Fixed-capacity ring over flat arrays; memory grows to `capacity` transitions and stays.
#[derive(Debug)]
pub struct Replay {
    capacity: usize,
    /// Most next-state candidates stored per transition.
    k: usize,
    len: usize,
    next: usize,
    pub pushed: u64,
    shared: Vec<f32>,
    chosen: Vec<f32>,
    reward: Vec<f32>,
    discount: Vec<f32>,
    next_shared: Vec<f32>,
    next_cand: Vec<f32>,
    next_count: Vec<u16>,
}

/// A minibatch as tensors.
#[derive(Debug)]
pub struct Batch {
    pub shared: Tensor,      // [B, S]
    pub chosen: Tensor,      // [B, 1, C]
    pub reward: Tensor,      // [B]
    pub discount: Tensor,    // [B]
    pub next_shared: Tensor, // [B, S]
    pub next_cand: Tensor,   // [B, M, C], padded
    pub next_mask: Tensor,   // [B, M] bool, true for real candidates
}

impl Replay {
    pub fn new(capacity: usize, k: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            k: k.max(1),
            len: 0,
            next: 0,
            pushed: 0,
            shared: Vec::new(),
            chosen: Vec::new(),
            reward: Vec::new(),
            discount: Vec::new(),
            next_shared: Vec::new(),
            next_cand: Vec::new(),
            next_count: Vec::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Most next-state candidates a transition keeps.
    pub fn next_candidates(&self) -> usize {
        self.k
    }

    /// Bytes held by the stored transitions.
    pub fn bytes(&self) -> usize {
        4 * (self.shared.len()
            + self.chosen.len()
            + self.reward.len()
            + self.discount.len()
            + self.next_shared.len()
            + self.next_cand.len())
            + 2 * self.next_count.len()
    }

    /// Stores `t` (keeping at most `k` next candidates, its first ones), overwriting the
    /// oldest transition when full.
    pub fn push(&mut self, t: &Transition) {
        let (s, c, k) = (SHARED_FEATURES, CANDIDATE_FEATURES, self.k);
        assert_eq!(t.shared.len(), s, "shared features");
        assert_eq!(t.chosen.len(), c, "candidate features");
        let m = t.next_n().min(k);
        let terminal = t.discount == 0.0 || m == 0;
        let i = self.next;
        if self.len < self.capacity && i == self.len {
            self.shared.extend_from_slice(&t.shared);
            self.chosen.extend_from_slice(&t.chosen);
            self.reward.push(t.reward);
            self.discount.push(0.0);
            self.next_shared.resize(self.next_shared.len() + s, 0.0);
            self.next_cand.resize(self.next_cand.len() + k * c, 0.0);
            self.next_count.push(0);
            self.len += 1;
        } else {
            self.shared[i * s..(i + 1) * s].copy_from_slice(&t.shared);
            self.chosen[i * c..(i + 1) * c].copy_from_slice(&t.chosen);
            self.reward[i] = t.reward;
        }
        if terminal {
            self.discount[i] = 0.0;
            self.next_count[i] = 0;
        } else {
            self.discount[i] = t.discount;
            self.next_shared[i * s..(i + 1) * s].copy_from_slice(&t.next_shared);
            self.next_cand[i * k * c..i * k * c + m * c].copy_from_slice(&t.next_cand[..m * c]);
            self.next_count[i] = m as u16;
        }
        self.next = (self.next + 1) % self.capacity;
        self.pushed += 1;
    }

    /// `size` transitions drawn uniformly with replacement.
    pub fn sample(&self, size: usize, rng: &mut impl Rng) -> Batch {
        assert!(self.len > 0, "sample from an empty replay");
        let (s, c, k) = (SHARED_FEATURES, CANDIDATE_FEATURES, self.k);
        let picks: Vec<usize> = (0..size).map(|_| rng.random_range(0..self.len)).collect();
        let m = picks
            .iter()
            .map(|&i| self.next_count[i] as usize)
            .max()
            .unwrap_or(0)
            .max(1);
        let mut shared = Vec::with_capacity(size * s);
        let mut chosen = Vec::with_capacity(size * c);
        let mut reward = Vec::with_capacity(size);
        let mut discount = Vec::with_capacity(size);
        let mut next_shared = Vec::with_capacity(size * s);
        let mut next_cand = vec![0f32; size * m * c];
        let mut mask = vec![false; size * m];
        for (b, &i) in picks.iter().enumerate() {
            shared.extend_from_slice(&self.shared[i * s..(i + 1) * s]);
            chosen.extend_from_slice(&self.chosen[i * c..(i + 1) * c]);
            reward.push(self.reward[i]);
            discount.push(self.discount[i]);
            next_shared.extend_from_slice(&self.next_shared[i * s..(i + 1) * s]);
            let n = self.next_count[i] as usize;
            next_cand[b * m * c..b * m * c + n * c]
                .copy_from_slice(&self.next_cand[i * k * c..i * k * c + n * c]);
            // A terminal keeps one unmasked slot so the argmax is defined; its value is
            // multiplied by a discount of 0.
            mask[b * m..b * m + n.max(1)].fill(true);
        }
        let b = size as i64;
        let mask_u8: Vec<u8> = mask.iter().map(|&x| x as u8).collect();
        Batch {
            shared: Tensor::from_slice(&shared).view([b, s as i64]),
            chosen: Tensor::from_slice(&chosen).view([b, 1, c as i64]),
            reward: Tensor::from_slice(&reward),
            discount: Tensor::from_slice(&discount),
            next_shared: Tensor::from_slice(&next_shared).view([b, s as i64]),
            next_cand: Tensor::from_slice(&next_cand).view([b, m as i64, c as i64]),
            next_mask: Tensor::from_slice(&mask_u8)
                .view([b, m as i64])
                .to_kind(Kind::Bool),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn t(v: f32, next: usize, discount: f32) -> Transition {
        Transition {
            shared: vec![v; SHARED_FEATURES].into(),
            chosen: vec![v; CANDIDATE_FEATURES].into(),
            reward: v,
            discount,
            next_shared: vec![v; SHARED_FEATURES].into(),
            next_cand: (0..next * CANDIDATE_FEATURES)
                .map(|i| v + (i / CANDIDATE_FEATURES) as f32)
                .collect(),
        }
    }

    #[test]
    fn ring_overwrites_oldest_and_memory_stays_bounded() {
        let mut r = Replay::new(3, 4);
        for i in 0..3 {
            r.push(&t(i as f32, 2, 0.9));
        }
        let full = r.bytes();
        for i in 3..10 {
            r.push(&t(i as f32, 2, 0.9));
        }
        assert_eq!(r.len(), 3);
        assert_eq!(r.bytes(), full);
        assert_eq!(r.pushed, 10);
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        let batch = r.sample(64, &mut rng);
        let mut rewards = vec![0f32; 64];
        batch.reward.copy_data(&mut rewards, 64);
        assert!(
            rewards.iter().all(|&x| (7.0..=9.0).contains(&x)),
            "{rewards:?}"
        );
    }

    #[test]
    fn batches_pad_mask_truncate_and_mark_terminals() {
        let mut r = Replay::new(8, 3);
        r.push(&t(1.0, 2, 0.5));
        r.push(&t(2.0, 5, 0.5)); // keeps its first 3 candidates
        r.push(&Transition {
            next_shared: Box::new([]),
            next_cand: Box::new([]),
            ..t(3.0, 0, 0.0)
        });
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(2);
        let b = r.sample(200, &mut rng);
        assert_eq!(b.next_cand.size(), vec![200, 3, CANDIDATE_FEATURES as i64]);
        for row in 0..200 {
            let reward = b.reward.double_value(&[row]);
            let mask: Vec<bool> = (0..3)
                .map(|j| b.next_mask.int64_value(&[row, j]) != 0)
                .collect();
            let d = b.discount.double_value(&[row]);
            match reward as i64 {
                1 => assert_eq!((mask, d), (vec![true, true, false], 0.5)),
                2 => {
                    assert_eq!((mask, d), (vec![true, true, true], 0.5));
                    assert_eq!(b.next_cand.double_value(&[row, 2, 0]), 4.0);
                }
                3 => assert_eq!((mask, d), (vec![true, false, false], 0.0)),
                other => panic!("reward {other}"),
            }
        }
    }
}
