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
use matrixmultiply::sgemm;
use std::f64::consts::PI;

/// Weights of one published policy version, read by the sessions.
#[derive(Debug, Clone)]
pub struct Actor {
    pub arch: IqnArch,
    params: Vec<f32>,
    layout: Vec<ParamSpec>,
}

/// The output stage for one set of taus, precomputed from the weights.
#[derive(Debug, Clone)]
pub struct Head {
    k: usize,
    /// Hidden head: `a[(k * H2 + j) * H + h] = W_head[j, h] * phi_k[h]`, and its bias per j.
    /// Linear head: `a[h] = w_out[h] * mean_k phi_k[h]` (K folded into one vector).
    a: Vec<f32>,
    bias: Vec<f32>,
    w_out: Vec<f32>,
    b_out: f32,
}

/// Reusable buffers for [`Actor::score`].
#[derive(Debug, Default, Clone)]
pub struct Scratch {
    z1: Vec<f32>,
    z2: Vec<f32>,
    z3: Vec<f32>,
}

impl Actor {
    pub fn new(arch: IqnArch, params: Vec<f32>) -> Self {
        assert_eq!(params.len(), arch.num_params(), "flat parameter length");
        Self {
            layout: arch.layout(),
            arch,
            params,
        }
    }

    pub fn params(&self) -> &[f32] {
        &self.params
    }

    fn w(&self, i: usize) -> &[f32] {
        let s = &self.layout[i];
        &self.params[s.offset..s.offset + s.numel()]
    }

    /// phi(tau) = ReLU(W_tau cos(pi i tau) + b_tau), i = 1..E: [H].
    pub fn phi(&self, tau: f32) -> Vec<f32> {
        let (h, e) = (self.arch.hidden, self.arch.cos_embed);
        let cos: Vec<f32> = (1..=e)
            .map(|i| ((tau * i as f32) as f64 * PI).cos() as f32)
            .collect();
        let (w, b) = (self.w(p::FC_TAU_W), self.w(p::FC_TAU_B));
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
        let wh = self.w(p::HEAD_W);
        let mut a = Vec::with_capacity(taus.len() * h2 * h);
        for phi in &phis {
            for j in 0..h2 {
                a.extend((0..h).map(|c| wh[j * h + c] * phi[c]));
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

    /// fc_shared(s): [H].
    pub fn shared_hidden(&self, shared: &[f32], out: &mut Vec<f32>) {
        let (h, s) = (self.arch.hidden, self.arch.shared_features);
        debug_assert_eq!(shared.len(), s);
        let (w, b) = (self.w(p::FC_SHARED_W), self.w(p::FC_SHARED_B));
        out.clear();
        out.extend((0..h).map(|r| {
            w[r * s..(r + 1) * s]
                .iter()
                .zip(shared)
                .map(|(a, b)| a * b)
                .sum::<f32>()
                + b[r]
        }));
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
        let (h, c) = (self.arch.hidden, self.arch.candidate_features);
        let m = out.len();
        debug_assert_eq!(cand.len(), m * c);
        debug_assert!(rows_per_task > 0 && shared_h.len() * rows_per_task >= m * h);
        let Scratch { z1, z2, z3 } = scratch;
        z1.clear();
        z1.resize(m * h, 0.0);
        // z1 = cand @ W_cand^T (W_cand is [H, C] row-major).
        gemm(m, c, h, cand, c, 1, self.w(p::FC_CAND_W), 1, c, z1, h);
        for (row, z) in z1.chunks_exact_mut(h).enumerate() {
            let s = &shared_h[(row / rows_per_task) * h..(row / rows_per_task + 1) * h];
            for (x, y) in z.iter_mut().zip(s) {
                *x = (*x + y).max(0.0);
            }
        }
        z2.clear();
        z2.resize(m * h, 0.0);
        gemm(m, h, h, z1, h, 1, self.w(p::FC2_W), 1, h, z2, h);
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
        // z3 = z2 @ A^T with A [K*H2, H] row-major.
        gemm(m, h, width, z2, h, 1, &head.a, 1, h, z3, width);
        let inv_k = 1.0 / head.k as f32;
        let mut acc = vec![0f32; h2];
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

/// C[m x n] = A[m x k] B[k x n] with explicit row/column strides for A and B.
#[allow(clippy::too_many_arguments)]
fn gemm(
    m: usize,
    k: usize,
    n: usize,
    a: &[f32],
    rsa: usize,
    csa: usize,
    b: &[f32],
    rsb: usize,
    csb: usize,
    c: &mut [f32],
    rsc: usize,
) {
    if m == 0 {
        return;
    }
    debug_assert!(c.len() >= (m - 1) * rsc + n);
    // SAFETY: the slices hold every element the strides address (checked above for C; A and B
    // are whole matrices of the stated shapes by construction at every call site).
    unsafe {
        sgemm(
            m,
            k,
            n,
            1.0,
            a.as_ptr(),
            rsa as isize,
            csa as isize,
            b.as_ptr(),
            rsb as isize,
            csb as isize,
            0.0,
            c.as_mut_ptr(),
            rsc as isize,
            1,
        );
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
        let mut sh = Vec::new();
        let mut all_sh = Vec::new();
        for t in 0..tasks {
            actor.shared_hidden(
                &shared_v[t * SHARED_FEATURES..(t + 1) * SHARED_FEATURES],
                &mut sh,
            );
            all_sh.extend_from_slice(&sh);
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

    #[test]
    fn matches_the_torch_network_with_a_hidden_head() {
        check_against_torch(8);
    }

    #[test]
    fn matches_the_torch_network_with_a_linear_head() {
        check_against_torch(0);
    }
}
