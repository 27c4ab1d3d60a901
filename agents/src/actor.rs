//! The acting side of the IQN in plain Rust: scores candidates from a flat weight snapshot
//! without libtorch, so sessions hold no tensors (tch tensors are not Sync), cost no dispatcher
//! overhead per Step, and can rescore a single (task, candidate) pair cheaply when an earlier
//! placement of the same Step changes that candidate's features.
//!
//! It computes exactly what [`crate::iqn::IqnNet`] computes (checked against it in the tests):
//! psi = ReLU(fc2(ReLU(fc_shared(s) + fc_cand(c)))), and for a fixed set of K taus the mean over
//! k of out(ReLU(head(psi (.) phi(tau_k)))). For fixed taus the head folds into one matrix:
//! head(psi (.) phi_k) = (W_head diag(phi_k)) psi, so all K taus cost one matrix product.

use crate::iqn::{p, IqnArch, ParamSpec};
use std::f64::consts::PI;

/// Weights of one published policy version, read by the sessions.
#[derive(Debug, Clone)]
pub struct Actor {
    pub arch: IqnArch,
    params: Vec<f32>,
    layout: Vec<ParamSpec>,
    /// fc_shared, fc_cand and fc2 weights transposed (`S x H`, `C x H`, `H x H`) for
    /// [`rows_times`].
    fc_shared_t: Vec<f32>,
    fc_cand_t: Vec<f32>,
    fc2_t: Vec<f32>,
    /// fc_tau (`E x H`) and head (`H x H2`) weights transposed, so [`Actor::head`] runs over
    /// independent lanes (train mode builds a head every Step).
    fc_tau_t: Vec<f32>,
    head_t: Vec<f32>,
}

/// The output stage for one set of taus, precomputed from the weights.
#[derive(Debug, Clone)]
pub struct Head {
    k: usize,
    /// Hidden head: `a[h * (K * H2) + k * H2 + j] = W_head[j, h] * phi_k[h]` (stored `H x K*H2`
    /// for [`rows_times`]), and its bias per j.
    /// Linear head: `a[h] = w_out[h] * mean_k phi_k[h]` (K folded into one vector).
    a: Vec<f32>,
    bias: Vec<f32>,
    w_out: Vec<f32>,
    b_out: f32,
}

impl Head {
    /// Values it holds (for benchmarks that must keep it alive).
    pub fn len(&self) -> usize {
        self.a.len() + self.bias.len() + self.w_out.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Reusable buffers for [`Actor::score`].
#[derive(Debug, Default, Clone)]
pub struct Scratch {
    z1: Vec<f32>,
    z2: Vec<f32>,
    z3: Vec<f32>,
    lanes: Vec<f32>,
}

impl Actor {
    pub fn new(arch: IqnArch, params: Vec<f32>) -> Self {
        assert_eq!(params.len(), arch.num_params(), "flat parameter length");
        let layout = arch.layout();
        let weight = |i: usize| {
            let s: &ParamSpec = &layout[i];
            &params[s.offset..s.offset + s.numel()]
        };
        let (h, c) = (arch.hidden, arch.candidate_features);
        let fc_shared_t = transpose(weight(p::FC_SHARED_W), h, arch.shared_features);
        let fc_cand_t = transpose(weight(p::FC_CAND_W), h, c);
        let fc2_t = transpose(weight(p::FC2_W), h, h);
        let fc_tau_t = transpose(weight(p::FC_TAU_W), h, arch.cos_embed);
        let head_t = if arch.head_hidden > 0 {
            transpose(weight(p::HEAD_W), arch.head_hidden, h)
        } else {
            Vec::new() // linear head: no such layer
        };
        Self {
            layout,
            arch,
            params,
            fc_shared_t,
            fc_cand_t,
            fc2_t,
            fc_tau_t,
            head_t,
        }
    }

    pub fn params(&self) -> &[f32] {
        &self.params
    }

    fn w(&self, i: usize) -> &[f32] {
        let s = &self.layout[i];
        &self.params[s.offset..s.offset + s.numel()]
    }

    /// phi(tau) = ReLU(W_tau cos(pi i tau) + b_tau), i = 1..E: [H]. Each lane sums its
    /// products in the order i = 1..E starting from -0.0, as `Iterator::sum` over a row does,
    /// so the result is bit-identical to the row-by-row form (the test keeps that form).
    pub fn phi(&self, tau: f32) -> Vec<f32> {
        let (h, e) = (self.arch.hidden, self.arch.cos_embed);
        let mut z = vec![-0.0f32; h];
        for i in 1..=e {
            let c = ((tau * i as f32) as f64 * PI).cos() as f32;
            for (zr, &w) in z.iter_mut().zip(&self.fc_tau_t[(i - 1) * h..i * h]) {
                *zr += w * c;
            }
        }
        for (zr, &b) in z.iter_mut().zip(self.w(p::FC_TAU_B)) {
            *zr = (*zr + b).max(0.0);
        }
        z
    }

    /// The output stage for `taus` (the scores are then the mean over these taus).
    pub fn head(&self, taus: &[f32]) -> Head {
        let (h, h2) = (self.arch.hidden, self.arch.head_hidden);
        let phis: Vec<Vec<f32>> = taus.iter().map(|&t| self.phi(t)).collect();
        let w_out = self.w(p::OUT_W).to_vec();
        let b_out = self.w(p::OUT_B)[0];
        if h2 == 0 {
            let k = taus.len().max(1) as f32;
            let a = (0..h)
                .map(|j| w_out[j] * phis.iter().map(|phi| phi[j]).sum::<f32>() / k)
                .collect();
            return Head {
                k: taus.len(),
                a,
                bias: Vec::new(),
                w_out: Vec::new(),
                b_out,
            };
        }
        let width = taus.len() * h2;
        let mut a = vec![0f32; h * width];
        for c in 0..h {
            let wc = &self.head_t[c * h2..(c + 1) * h2];
            for (k, phi) in phis.iter().enumerate() {
                let at = c * width + k * h2;
                for (x, &w) in a[at..at + h2].iter_mut().zip(wc) {
                    *x = w * phi[c];
                }
            }
        }
        Head {
            k: taus.len(),
            a,
            bias: self.w(p::HEAD_B).to_vec(),
            w_out,
            b_out,
        }
    }

    /// fc_shared(s): [H], appended to `out`.
    pub fn shared_hidden(&self, shared: &[f32], out: &mut Vec<f32>) {
        let (h, s) = (self.arch.hidden, self.arch.shared_features);
        debug_assert_eq!(shared.len(), s);
        let at = out.len();
        out.resize(at + h, 0.0);
        let z = &mut out[at..];
        #[cfg(target_arch = "x86_64")]
        if simd_available() {
            // SAFETY: the CPU has AVX2 and FMA (checked just above).
            unsafe { rows_times_avx2(shared, s, &self.fc_shared_t, h, z) };
        } else {
            rows_times(shared, s, &self.fc_shared_t, h, z);
        }
        #[cfg(not(target_arch = "x86_64"))]
        rows_times(shared, s, &self.fc_shared_t, h, z);
        for (x, b) in z.iter_mut().zip(self.w(p::FC_SHARED_B)) {
            *x += b;
        }
    }

    /// Scores of `m` candidates: `shared_h` holds one fc_shared output per candidate row
    /// (`rows_per_task` consecutive candidates share one, so a whole Step is one call),
    /// `cand` is `m x C` features; writes `m` scores (mean over the head's taus).
    pub fn score(
        &self,
        shared_h: &[f32],
        rows_per_task: usize,
        cand: &[f32],
        head: &Head,
        scratch: &mut Scratch,
        out: &mut [f32],
    ) {
        #[cfg(target_arch = "x86_64")]
        if simd_available() {
            // SAFETY: the CPU has AVX2 and FMA (checked just above).
            unsafe { self.score_avx2(shared_h, rows_per_task, cand, head, scratch, out) };
            return;
        }
        self.score_portable(shared_h, rows_per_task, cand, head, scratch, out);
    }

    /// [`Actor::score`] compiled for AVX2 and FMA: the same code, 8 lanes wide. Sums run in
    /// the same order and every multiply-add is fused (exactly rounded) on both paths, so the
    /// scores equal the portable path's bit for bit.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn score_avx2(
        &self,
        shared_h: &[f32],
        rows_per_task: usize,
        cand: &[f32],
        head: &Head,
        scratch: &mut Scratch,
        out: &mut [f32],
    ) {
        self.score_portable(shared_h, rows_per_task, cand, head, scratch, out);
    }

    #[inline(always)]
    fn score_portable(
        &self,
        shared_h: &[f32],
        rows_per_task: usize,
        cand: &[f32],
        head: &Head,
        scratch: &mut Scratch,
        out: &mut [f32],
    ) {
        let (h, c) = (self.arch.hidden, self.arch.candidate_features);
        let m = out.len();
        debug_assert_eq!(cand.len(), m * c);
        debug_assert!(rows_per_task > 0 && shared_h.len() * rows_per_task >= m * h);
        let Scratch { z1, z2, z3, lanes } = scratch;
        z1.clear();
        z1.resize(m * h, 0.0);
        rows_times(cand, c, &self.fc_cand_t, h, z1);
        for (row, z) in z1.chunks_exact_mut(h).enumerate() {
            let s = &shared_h[(row / rows_per_task) * h..(row / rows_per_task + 1) * h];
            for (x, y) in z.iter_mut().zip(s) {
                *x = (*x + y).max(0.0);
            }
        }
        z2.clear();
        z2.resize(m * h, 0.0);
        rows_times(z1, h, &self.fc2_t, h, z2);
        let b2 = self.w(p::FC2_B);
        for z in z2.chunks_exact_mut(h) {
            for (x, b) in z.iter_mut().zip(b2) {
                *x = (*x + b).max(0.0);
            }
        }
        if self.arch.head_hidden == 0 {
            for (o, z) in out.iter_mut().zip(z2.chunks_exact(h)) {
                *o = z.iter().zip(&head.a).map(|(a, b)| a * b).sum::<f32>() + head.b_out;
            }
            return;
        }
        let h2 = self.arch.head_hidden;
        let width = head.k * h2;
        z3.clear();
        z3.resize(m * width, 0.0);
        rows_times(z2, h, &head.a, width, z3);
        let inv_k = 1.0 / head.k as f32;
        lanes.clear();
        lanes.resize(h2, 0.0);
        let acc = lanes.as_mut_slice();
        for (o, z) in out.iter_mut().zip(z3.chunks_exact(width)) {
            // Sum the ReLU outputs over taus lane by lane, then one dot with w_out.
            acc.fill(0.0);
            for zk in z.chunks_exact(h2) {
                for ((a, x), b) in acc.iter_mut().zip(zk).zip(&head.bias) {
                    *a += (x + b).max(0.0);
                }
            }
            let dot: f32 = acc.iter().zip(&head.w_out).map(|(a, w)| a * w).sum();
            *o = dot * inv_k + head.b_out;
        }
    }
}

/// `w` (`rows x cols`, row-major) transposed.
fn transpose(w: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut t = vec![0f32; rows * cols];
    for r in 0..rows {
        for c in 0..cols {
            t[c * rows + r] = w[r * cols + c];
        }
    }
    t
}

/// Whether this CPU runs the 8-lane fused multiply-add path (x86-64 with AVX2 and FMA, nearly
/// every x86 server since 2013; the answer is cached by std).
#[cfg(target_arch = "x86_64")]
fn simd_available() -> bool {
    std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
}

/// [`rows_times`] compiled for AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn rows_times_avx2(a: &[f32], k: usize, bt: &[f32], n: usize, out: &mut [f32]) {
    rows_times(a, k, bt, n, out);
}

/// `out[i, :] = a[i, :] @ bt` for every row `i` of `a` (`k` columns), `bt` a `k x n` row-major
/// matrix (a layer's weights stored transposed, so the inner loop runs along contiguous
/// outputs). Each output is summed over `p` in order with fused multiply-adds, so the result
/// does not depend on the vector width or the instruction set (`mul_add` rounds once
/// everywhere: one instruction with FMA, a correctly rounded library call without); a block of
/// 32 outputs stays in registers across the whole `p` loop.
#[inline(always)]
fn rows_times(a: &[f32], k: usize, bt: &[f32], n: usize, out: &mut [f32]) {
    const BLOCK: usize = 32;
    debug_assert_eq!(bt.len(), k * n);
    for (ai, oi) in a.chunks_exact(k).zip(out.chunks_exact_mut(n)) {
        let mut c0 = 0;
        while c0 + BLOCK <= n {
            let mut acc = [0f32; BLOCK];
            for (p, &x) in ai.iter().enumerate() {
                let b = &bt[p * n + c0..p * n + c0 + BLOCK];
                for (s, &w) in acc.iter_mut().zip(b) {
                    *s = x.mul_add(w, *s);
                }
            }
            oi[c0..c0 + BLOCK].copy_from_slice(&acc);
            c0 += BLOCK;
        }
        if c0 < n {
            let rest = &mut oi[c0..];
            rest.fill(0.0);
            for (p, &x) in ai.iter().enumerate() {
                for (s, &w) in rest.iter_mut().zip(&bt[p * n + c0..(p + 1) * n]) {
                    *s = x.mul_add(w, *s);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::features::{CANDIDATE_FEATURES, SHARED_FEATURES};
    use crate::iqn::{midpoint_taus, IqnNet};
    use tch::{Kind, Tensor};

    fn check_against_torch(head_hidden: usize) {
        let arch = IqnArch::new(16, head_hidden, 64);
        let params = arch.init_params(11);
        let net = IqnNet::new(arch, &params, false);
        let actor = Actor::new(arch, params);
        tch::manual_seed(5);
        let (tasks, m) = (3usize, 7usize);
        let shared = Tensor::randn(
            [tasks as i64, SHARED_FEATURES as i64],
            (Kind::Float, tch::Device::Cpu),
        );
        let cand = Tensor::randn(
            [tasks as i64, m as i64, CANDIDATE_FEATURES as i64],
            (Kind::Float, tch::Device::Cpu),
        );
        let taus = midpoint_taus(0.1, 8);
        let expect = net.mean_over_taus(&net.psi(&shared, &cand), &Tensor::from_slice(&taus));
        let to_vec = |t: &Tensor| {
            let t = t.contiguous();
            let n = t.numel();
            let mut v = vec![0f32; n];
            t.copy_data(&mut v, n);
            v
        };
        let (shared_v, cand_v, expect_v) = (to_vec(&shared), to_vec(&cand), to_vec(&expect));
        let head = actor.head(&taus);
        let mut all_sh = Vec::new();
        for t in 0..tasks {
            actor.shared_hidden(
                &shared_v[t * SHARED_FEATURES..(t + 1) * SHARED_FEATURES],
                &mut all_sh,
            );
        }
        let mut out = vec![0f32; tasks * m];
        actor.score(
            &all_sh,
            m,
            &cand_v,
            &head,
            &mut Scratch::default(),
            &mut out,
        );
        for (a, b) in out.iter().zip(&expect_v) {
            assert!((a - b).abs() < 1e-4, "actor {a} vs torch {b}");
        }
        // One candidate alone scores the same as within the batch.
        let mut one = [0f32; 1];
        let row = 2 * m + 3;
        actor.score(
            &all_sh[2 * 16..3 * 16],
            1,
            &cand_v[row * CANDIDATE_FEATURES..(row + 1) * CANDIDATE_FEATURES],
            &head,
            &mut Scratch::default(),
            &mut one,
        );
        assert!((one[0] - out[row]).abs() < 1e-5);
    }

    /// The vector path (AVX2 where the CPU has it) and the portable path sum in the same
    /// order: a checkpoint decides the same on every machine.
    #[test]
    fn vector_and_portable_scores_are_bit_identical() {
        for head_hidden in [0, 16] {
            let arch = IqnArch::new(32, head_hidden, 64);
            let actor = Actor::new(arch, arch.init_params(3));
            let head = actor.head(&midpoint_taus(0.1, 8));
            let m = 37;
            let cand: Vec<f32> = (0..m * CANDIDATE_FEATURES)
                .map(|i| ((i * 7919) % 1000) as f32 / 500.0 - 1.0)
                .collect();
            let shared: Vec<f32> = (0..SHARED_FEATURES).map(|i| i as f32 / 10.0).collect();
            let mut sh = Vec::new();
            actor.shared_hidden(&shared, &mut sh);
            let (mut fast, mut portable) = (vec![0f32; m], vec![0f32; m]);
            let mut scratch = Scratch::default();
            actor.score(&sh, m, &cand, &head, &mut scratch, &mut fast);
            actor.score_portable(&sh, m, &cand, &head, &mut scratch, &mut portable);
            assert!(fast.iter().any(|x| *x != 0.0));
            for (a, b) in fast.iter().zip(&portable) {
                assert_eq!(a.to_bits(), b.to_bits(), "{a} vs {b}");
            }
        }
    }

    /// The row-by-row output stage [`Actor::head`] replaced (one dot product per row of
    /// W_tau, W_head read by column): the faster form must give the same bits.
    fn head_row_by_row(actor: &Actor, taus: &[f32]) -> Vec<f32> {
        let (h, h2, e) = (
            actor.arch.hidden,
            actor.arch.head_hidden,
            actor.arch.cos_embed,
        );
        let phis: Vec<Vec<f32>> = taus
            .iter()
            .map(|&tau| {
                let cos: Vec<f32> = (1..=e)
                    .map(|i| ((tau * i as f32) as f64 * PI).cos() as f32)
                    .collect();
                let (w, b) = (actor.w(p::FC_TAU_W), actor.w(p::FC_TAU_B));
                (0..h)
                    .map(|r| {
                        let dot: f32 = w[r * e..(r + 1) * e]
                            .iter()
                            .zip(&cos)
                            .map(|(a, b)| a * b)
                            .sum();
                        (dot + b[r]).max(0.0)
                    })
                    .collect()
            })
            .collect();
        let wh = actor.w(p::HEAD_W);
        let width = taus.len() * h2;
        let mut a = vec![0f32; h * width];
        for (k, phi) in phis.iter().enumerate() {
            for j in 0..h2 {
                for c in 0..h {
                    a[c * width + k * h2 + j] = wh[j * h + c] * phi[c];
                }
            }
        }
        a
    }

    #[test]
    fn the_output_stage_is_bit_identical_to_the_row_by_row_form() {
        for seed in [3, 4] {
            let arch = IqnArch::new(32, 16, 64);
            let actor = Actor::new(arch, arch.init_params(seed));
            for taus in [
                midpoint_taus(0.1, 8),
                vec![0.0, 0.013, 0.05, 0.0999, 1.0],
                vec![0.7; 3],
            ] {
                let fast = actor.head(&taus).a;
                let slow = head_row_by_row(&actor, &taus);
                assert_eq!(fast.len(), slow.len());
                assert!(fast.iter().any(|x| *x != 0.0));
                for (x, y) in fast.iter().zip(&slow) {
                    assert_eq!(x.to_bits(), y.to_bits(), "{x} vs {y}");
                }
            }
        }
    }

    #[test]
    fn matches_the_torch_network_with_a_hidden_head() {
        check_against_torch(8);
    }

    #[test]
    fn matches_the_torch_network_with_a_linear_head() {
        check_against_torch(0);
    }
}
