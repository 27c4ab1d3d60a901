//! The IQN network (libtorch side, for the learner): per-candidate shared weights, the cosine
//! tau embedding, a hidden ReLU layer after the Hadamard product, the quantile Huber loss.
//!
//! Z(s, a, tau) = out(ReLU(head(psi(s, a) (.) phi(tau)))) where psi is a 2-layer ReLU MLP over
//! the task's shared features and candidate a's features and phi(tau) = ReLU(W cos(pi i tau)),
//! i = 1..64 (Dabney et al. 2018; docs/design.md, "Learner"). `head_hidden = 0` drops the
//! hidden head layer (the linear head of earlier versions, kept for the ablation).
//!
//! All parameters live in ONE flat f32 tensor; the layers are views of it. The gradient is then
//! one flat tensor, Adam is a handful of vector operations, the target copy is one `copy_`,
//! and a snapshot for the acting side ([`crate::actor`], pure Rust) is one memcpy. The layout
//! ([`IqnArch::layout`]) is shared with the actor and the checkpoints.

use crate::features::{CANDIDATE_FEATURES, FEATURE_LAYOUT_VERSION, SHARED_FEATURES};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::f64::consts::PI;
use tch::{Kind, Tensor};

/// Shapes that a checkpoint must share with the learner that loads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct IqnArch {
    pub shared_features: usize,
    pub candidate_features: usize,
    /// Version of the feature layout (see `features.rs`): a network trained on one layout
    /// reads garbage from another, so checkpoints carry it.
    pub feature_layout: u32,
    pub hidden: usize,
    /// Width of the hidden layer after the Hadamard product (0: linear head).
    pub head_hidden: usize,
    pub cos_embed: usize,
}

/// One parameter tensor of the flat layout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParamSpec {
    pub name: &'static str,
    /// `[out, in]` for weights, `[out]` for biases (PyTorch's `nn.Linear` convention).
    pub shape: Vec<usize>,
    pub offset: usize,
    /// Fan-in, for the initialisation bound 1/sqrt(fan_in) of `nn.Linear`.
    pub fan_in: usize,
}

impl ParamSpec {
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }
}

/// Indices of the parameters in [`IqnArch::layout`].
pub mod p {
    pub const FC_SHARED_W: usize = 0;
    pub const FC_SHARED_B: usize = 1;
    pub const FC_CAND_W: usize = 2;
    pub const FC2_W: usize = 3;
    pub const FC2_B: usize = 4;
    pub const FC_TAU_W: usize = 5;
    pub const FC_TAU_B: usize = 6;
    pub const OUT_W: usize = 7;
    pub const OUT_B: usize = 8;
    /// Only with a hidden head.
    pub const HEAD_W: usize = 9;
    pub const HEAD_B: usize = 10;
}

impl IqnArch {
    pub fn new(hidden: usize, head_hidden: usize, cos_embed: usize) -> Self {
        Self {
            shared_features: SHARED_FEATURES,
            candidate_features: CANDIDATE_FEATURES,
            feature_layout: FEATURE_LAYOUT_VERSION,
            hidden,
            head_hidden,
            cos_embed,
        }
    }

    /// Width of the input of the output layer.
    pub fn out_in(&self) -> usize {
        if self.head_hidden > 0 {
            self.head_hidden
        } else {
            self.hidden
        }
    }

    /// The flat parameter layout, in [`p`] order.
    pub fn layout(&self) -> Vec<ParamSpec> {
        let (s, c, h, e) = (
            self.shared_features,
            self.candidate_features,
            self.hidden,
            self.cos_embed,
        );
        let mut v: Vec<(&'static str, Vec<usize>, usize)> = vec![
            ("fc_shared.weight", vec![h, s], s + c),
            ("fc_shared.bias", vec![h], s + c),
            // The first layer over [shared, candidate] is split in two so the shared part is
            // computed once per task, not once per candidate (fan-in of the whole layer).
            ("fc_cand.weight", vec![h, c], s + c),
            ("fc2.weight", vec![h, h], h),
            ("fc2.bias", vec![h], h),
            ("fc_tau.weight", vec![h, e], e),
            ("fc_tau.bias", vec![h], e),
            ("out.weight", vec![1, self.out_in()], self.out_in()),
            ("out.bias", vec![1], self.out_in()),
        ];
        if self.head_hidden > 0 {
            v.push(("head.weight", vec![self.head_hidden, h], h));
            v.push(("head.bias", vec![self.head_hidden], h));
        }
        let mut offset = 0;
        v.into_iter()
            .map(|(name, shape, fan_in)| {
                let spec = ParamSpec {
                    name,
                    shape,
                    offset,
                    fan_in,
                };
                offset += spec.numel();
                spec
            })
            .collect()
    }

    pub fn num_params(&self) -> usize {
        self.layout().iter().map(ParamSpec::numel).sum()
    }

    /// Initial weights: `nn.Linear`'s U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for every tensor,
    /// drawn from `seed` (reproducible without libtorch's global generator).
    pub fn init_params(&self, seed: u64) -> Vec<f32> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x1a7e_5eed);
        let mut flat = vec![0f32; self.num_params()];
        for spec in self.layout() {
            let bound = 1.0 / (spec.fan_in as f64).sqrt();
            for x in &mut flat[spec.offset..spec.offset + spec.numel()] {
                *x = rng.random_range(-bound..bound) as f32;
            }
        }
        flat
    }
}

/// The network over a flat parameter tensor (a leaf with `requires_grad` for the online
/// network, a plain tensor for the target).
#[derive(Debug)]
pub struct IqnNet {
    pub arch: IqnArch,
    pub flat: Tensor,
    /// The layers as views of `flat`, made once: they see every in-place update of `flat`
    /// (optimiser step, target copy, checkpoint load), and a forward pass costs no slicing.
    views: Vec<Tensor>,
}

impl IqnNet {
    pub fn new(arch: IqnArch, params: &[f32], requires_grad: bool) -> Self {
        assert_eq!(params.len(), arch.num_params(), "flat parameter length");
        let flat = Tensor::from_slice(params).set_requires_grad(requires_grad);
        let views = arch
            .layout()
            .iter()
            .map(|s| {
                let shape: Vec<i64> = s.shape.iter().map(|&d| d as i64).collect();
                flat.narrow(0, s.offset as i64, s.numel() as i64)
                    .view(shape.as_slice())
            })
            .collect();
        Self { arch, flat, views }
    }

    /// Parameter `i` of [`p`] (a view of the flat tensor).
    fn w(&self, i: usize) -> &Tensor {
        &self.views[i]
    }

    /// State-action embedding psi: shared [B, S], candidates [B, M, C] -> [B, M, H].
    pub fn psi(&self, shared: &Tensor, cand: &Tensor) -> Tensor {
        let s = shared
            .linear(self.w(p::FC_SHARED_W), Some(self.w(p::FC_SHARED_B)))
            .unsqueeze(1);
        let c = cand.linear::<&Tensor>(self.w(p::FC_CAND_W), None);
        (c + s)
            .relu()
            .linear(self.w(p::FC2_W), Some(self.w(p::FC2_B)))
            .relu()
    }

    /// Tau embedding phi: taus [K] -> [K, H].
    pub fn phi(&self, taus: &Tensor) -> Tensor {
        cosine_embedding(taus, self.arch.cos_embed)
            .linear(self.w(p::FC_TAU_W), Some(self.w(p::FC_TAU_B)))
            .relu()
    }

    /// Quantile values: psi [B, M, H], phi [K, H] -> [B, M, K].
    ///
    /// head(psi (.) phi_k) = (W_head diag(phi_k)) psi, so all K taus go through one matrix
    /// product with A = [W_head diag(phi_k)]_k of shape [K * H2, H] instead of materialising
    /// the [B, M, K, H] Hadamard product (the same algebra as [`crate::actor`]). With the
    /// linear head, out(psi (.) phi_k) = psi . (w_out (.) phi_k): one product with [H, K].
    pub fn quantiles(&self, psi: &Tensor, phi: &Tensor) -> Tensor {
        let (b, m, h) = (psi.size()[0], psi.size()[1], psi.size()[2]);
        let k = phi.size()[0];
        let h2 = self.arch.head_hidden as i64;
        if h2 == 0 {
            let w = phi * self.w(p::OUT_W); // [K, H]
            return psi.matmul(&w.tr()) + self.w(p::OUT_B);
        }
        let a = self.w(p::HEAD_W).unsqueeze(0) * phi.unsqueeze(1); // [K, H2, H]
        let y = psi.matmul(&a.view([k * h2, h]).tr()).view([b, m, k, h2]);
        (y + self.w(p::HEAD_B))
            .relu()
            .linear(self.w(p::OUT_W), Some(self.w(p::OUT_B)))
            .squeeze_dim(-1)
    }

    /// Mean of the quantiles at `taus` for every candidate: psi [B, M, H], taus [K] -> [B, M].
    /// With taus spread over [0, alpha] this is the CVaR_alpha estimate.
    pub fn mean_over_taus(&self, psi: &Tensor, taus: &Tensor) -> Tensor {
        self.quantiles(psi, &self.phi(taus))
            .mean_dim(-1, false, Kind::Float)
    }

    /// The parameters as a flat f32 vector (a snapshot for the acting side).
    pub fn to_vec(&self) -> Vec<f32> {
        let t = self.flat.detach().contiguous();
        let n = t.numel();
        let mut v = vec![0f32; n];
        t.copy_data(&mut v, n);
        v
    }
}

/// cos(pi * i * tau) for i = 1..=dim: taus [..] -> [.., dim].
pub fn cosine_embedding(taus: &Tensor, dim: usize) -> Tensor {
    let i = Tensor::arange_start(1, dim as i64 + 1, (Kind::Float, taus.device()));
    (taus.unsqueeze(-1) * i * PI).cos()
}

/// Quantile Huber loss (Dabney et al. 2018): predictions `pred` [B, N] at `taus` ([N], shared
/// by the batch, or [B, N]), targets `target` [B, N'] (no gradient).
/// rho_tau(u) = |tau - 1{u < 0}| * L_kappa(u) / kappa with u = target_j - pred_i; summed over
/// N, averaged over N' and the batch. `weights` [B] optionally scales each sample.
pub fn quantile_huber_loss(
    pred: &Tensor,
    taus: &Tensor,
    target: &Tensor,
    kappa: f64,
    weights: Option<&Tensor>,
) -> Tensor {
    // u[b, j, i] = target_j - pred_i, materialised once; every other pass reads it.
    let u = target.detach().unsqueeze(2) - pred.unsqueeze(1);
    let zero = Tensor::zeros([1], (Kind::Float, u.device()));
    let huber = u.huber_loss(&zero, tch::Reduction::None, kappa);
    // |tau - 1{u < 0}| = tau where u >= 0, 1 - tau where u < 0.
    let tau = taus.unsqueeze(-2); // [N] -> [1, N] or [B, N] -> [B, 1, N]
    let weight = tau.ones_like().g_sub(&tau).where_self(&u.lt(0.0), &tau);
    let per_sample = (weight * huber)
        .sum_dim_intlist(2, false, Kind::Float)
        .mean_dim(1, false, Kind::Float)
        / kappa;
    match weights {
        Some(w) => (per_sample * w).mean(Kind::Float),
        None => per_sample.mean(Kind::Float),
    }
}

/// The gradient of [`quantile_huber_loss`] (no sample weights) with respect to `pred`, by
/// hand, and optionally the loss itself: the learner's hot path. With u = target_j - pred_i
/// and c = clamp(u, -kappa, kappa), the Huber term is c (u - c/2) and its derivative in u is
/// c; the asymmetric weight times c is tau c + (1 - 2 tau) min(c, 0) (c < 0 exactly when
/// u < 0). tau depends on i only, so the sums over j come first:
/// d loss / d pred_i = -(tau_i S1 + (1 - 2 tau_i) S2) / (B N' kappa) with S1 = sum_j c and
/// S2 = sum_j min(c, 0). Four vectorised passes over [B, N', N], no select, no autograd.
pub fn quantile_huber_grad(
    pred: &Tensor,
    taus: &Tensor,
    target: &Tensor,
    kappa: f64,
    with_loss: bool,
) -> (Tensor, Option<f64>) {
    let (b, n2) = (pred.size()[0], target.size()[1]);
    let u = target.unsqueeze(2) - pred.unsqueeze(1); // [B, N', N]
    let c = u.clamp(-kappa, kappa);
    let m = c.clamp_max(0.0);
    let tau = taus.unsqueeze(-2); // [1, N] or [B, 1, N]
    let scale = -1.0 / (b * n2) as f64 / kappa;
    let s1 = c.sum_dim_intlist(1, false, Kind::Float);
    let s2 = m.sum_dim_intlist(1, false, Kind::Float);
    let tau2 = tau.squeeze_dim(-2);
    let grad = (&tau2 * s1 + (1.0 - &tau2 * 2.0) * s2) * scale;
    let loss = with_loss.then(|| {
        // sum_j (tau c + (1 - 2 tau) m)(u - c/2) / kappa, averaged over N' and the batch.
        let wc: Tensor = &tau * &c + (1.0 - &tau * 2.0) * &m;
        let terms: Tensor = wc * (&u - &c * 0.5);
        terms.sum(Kind::Float).double_value(&[]) / (b * n2) as f64 / kappa
    });
    (grad, loss)
}

/// Evenly spaced taus at the midpoints of K cells of [0, alpha]: the deterministic CVaR
/// estimate used for greedy acting and the target's action choice.
pub fn midpoint_taus(alpha: f64, k: usize) -> Vec<f32> {
    (0..k)
        .map(|i| (alpha * (i as f64 + 0.5) / k as f64) as f32)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(v: &[f32]) -> Tensor {
        Tensor::from_slice(v)
    }

    #[test]
    fn cosine_embedding_values() {
        let e = cosine_embedding(&t(&[0.0, 0.25, 0.5]), 64);
        assert_eq!(e.size(), vec![3, 64]);
        let v = |r: i64, i: i64| e.double_value(&[r, i - 1]);
        for i in 1..=64 {
            assert!((v(0, i) - 1.0).abs() < 1e-6);
            let expect = (PI * i as f64 * 0.25).cos();
            assert!((v(1, i) - expect).abs() < 1e-5, "i={i}");
        }
        // tau = 0.5: cos(pi/2) = 0, cos(pi) = -1, cos(3pi/2) = 0, cos(2pi) = 1.
        assert!(v(2, 1).abs() < 1e-6);
        assert!((v(2, 2) + 1.0).abs() < 1e-6);
        assert!((v(2, 4) - 1.0).abs() < 1e-6);
        assert!((v(1, 1) - std::f64::consts::FRAC_1_SQRT_2).abs() < 1e-6);
    }

    #[test]
    fn quantile_huber_hand_values() {
        let loss = |pred: &[f32], taus: &[f32], target: &[f32], kappa: f64| {
            quantile_huber_loss(
                &t(pred).view([1, -1]),
                &t(taus),
                &t(target).view([1, -1]),
                kappa,
                None,
            )
            .double_value(&[])
        };
        // target 1, prediction 0: u = 1 > 0, huber 0.5, weight tau.
        for tau in [0.1f32, 0.5, 0.9] {
            assert!((loss(&[0.0], &[tau], &[1.0], 1.0) - 0.5 * tau as f64).abs() < 1e-6);
        }
        // Over-estimation (prediction 1, target 0): weight 1 - tau.
        assert!((loss(&[1.0], &[0.9], &[0.0], 1.0) - 0.5 * 0.1).abs() < 1e-6);
        // Linear region: |u| = 3 -> kappa (|u| - kappa/2) = 2.5, tau 0.25 -> 0.625.
        assert!((loss(&[0.0], &[0.25], &[3.0], 1.0) - 0.625).abs() < 1e-6);
        // kappa = 2, u = 1: 0.5 u^2 / kappa = 0.25, tau 1.0 -> 0.25.
        assert!((loss(&[0.0], &[1.0], &[1.0], 2.0) - 0.25).abs() < 1e-6);
        // Small kappa: |u| = 1 >> kappa -> (|u| - kappa/2) * tau: the pinball loss.
        let l = loss(&[0.0], &[0.3], &[1.0], 0.01);
        assert!((l - 0.3 * (1.0 - 0.005)).abs() < 1e-6, "{l}");
        // Sum over N, mean over N': preds (0, 0) at taus (0.2, 0.6); targets (1, -1).
        // j=target 1: 0.5*0.2 + 0.5*0.6 = 0.4; j=target -1: 0.5*0.8 + 0.5*0.4 = 0.6; mean 0.5.
        assert!((loss(&[0.0, 0.0], &[0.2, 0.6], &[1.0, -1.0], 1.0) - 0.5).abs() < 1e-6);
        // Per-sample taus [B, N] and sample weights: batch mean of 2 * 0.25 and 1 * 0.
        let l = quantile_huber_loss(
            &t(&[0.0, 0.0]).view([2, 1]),
            &t(&[0.5, 0.5]).view([2, 1]),
            &t(&[1.0, 0.0]).view([2, 1]),
            1.0,
            Some(&t(&[2.0, 1.0])),
        );
        assert!((l.double_value(&[]) - 0.25).abs() < 1e-6);
    }

    #[test]
    fn hand_gradient_matches_autograd() {
        tch::manual_seed(2);
        for kappa in [1.0, 1e-3, 0.3] {
            let pred = (Tensor::randn([6, 5], (Kind::Float, tch::Device::Cpu)) * 0.5)
                .set_requires_grad(true);
            let taus = Tensor::rand([5], (Kind::Float, tch::Device::Cpu));
            let target = Tensor::randn([6, 7], (Kind::Float, tch::Device::Cpu)) * 0.5;
            let loss = quantile_huber_loss(&pred, &taus, &target, kappa, None);
            let auto = Tensor::run_backward(&[&loss], &[&pred], false, false).remove(0);
            let (hand, l) = quantile_huber_grad(&pred.detach(), &taus, &target, kappa, true);
            let diff = (auto - hand).abs().max().double_value(&[]);
            assert!(diff < 1e-5, "kappa {kappa}: {diff}");
            assert!((l.unwrap() - loss.double_value(&[])).abs() < 1e-4 * (1.0 + l.unwrap().abs()));
        }
    }

    #[test]
    fn layout_is_contiguous_and_initialised_within_bounds() {
        for head in [0, 16] {
            let arch = IqnArch::new(32, head, 64);
            let layout = arch.layout();
            let mut next = 0;
            for s in &layout {
                assert_eq!(s.offset, next, "{}", s.name);
                next += s.numel();
            }
            assert_eq!(next, arch.num_params());
            let flat = arch.init_params(7);
            for s in &layout {
                let bound = 1.0 / (s.fan_in as f32).sqrt();
                let part = &flat[s.offset..s.offset + s.numel()];
                assert!(part.iter().all(|x| x.abs() <= bound), "{}", s.name);
                assert!(part.iter().any(|x| *x != 0.0), "{}", s.name);
            }
            assert_eq!(flat, arch.init_params(7), "same seed, same weights");
        }
    }

    #[test]
    fn gradient_reaches_every_parameter() {
        let arch = IqnArch::new(8, 4, 16);
        let net = IqnNet::new(arch, &arch.init_params(1), true);
        let shared = Tensor::randn([3, SHARED_FEATURES as i64], (Kind::Float, tch::Device::Cpu));
        let cand = Tensor::randn(
            [3, 1, CANDIDATE_FEATURES as i64],
            (Kind::Float, tch::Device::Cpu),
        );
        let taus = t(&[0.1, 0.5, 0.9]);
        let q = net
            .quantiles(&net.psi(&shared, &cand), &net.phi(&taus))
            .squeeze_dim(1);
        let loss = quantile_huber_loss(
            &q,
            &taus,
            &Tensor::ones([3, 2], (Kind::Float, tch::Device::Cpu)),
            1.0,
            None,
        );
        loss.backward();
        let g = net.flat.grad();
        assert_eq!(g.size(), vec![arch.num_params() as i64]);
        for s in arch.layout() {
            let part = g.narrow(0, s.offset as i64, s.numel() as i64);
            assert!(
                part.abs().sum(Kind::Float).double_value(&[]) > 0.0,
                "no gradient for {}",
                s.name
            );
        }
    }
}
