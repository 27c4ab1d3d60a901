//! The IQN network with per-candidate shared weights, the cosine tau embedding, the quantile
//! Huber loss and CVaR estimation.
//!
//! Z(s, a, tau) = w . (psi(s, a) (.) phi(tau)) + b where psi is a 2-layer ReLU MLP over the
//! task's shared features and candidate a's features, and phi(tau) = ReLU(W cos(pi i tau)),
//! i = 1..64 (Dabney et al. 2018). The head after the Hadamard product is linear (Dopamine
//! puts a 512-wide layer there): that keeps the cost of scoring N candidates at one MLP pass
//! per candidate, and makes the mean over K fixed taus exact as one dot product with the mean
//! embedding, so acting with CVaR costs no more than acting with a single quantile.

use crate::features::{CANDIDATE_FEATURES, SHARED_FEATURES};
use serde::{Deserialize, Serialize};
use std::f64::consts::PI;
use tch::nn::{self, Module};
use tch::{Device, Kind, Tensor};

/// Shapes that a checkpoint must share with the learner that loads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct IqnArch {
    pub shared_features: usize,
    pub candidate_features: usize,
    pub hidden: usize,
    pub cos_embed: usize,
}

impl IqnArch {
    pub fn new(hidden: usize, cos_embed: usize) -> Self {
        Self {
            shared_features: SHARED_FEATURES,
            candidate_features: CANDIDATE_FEATURES,
            hidden,
            cos_embed,
        }
    }
}

/// The network's layers, registered in a VarStore under stable names.
#[derive(Debug)]
pub struct IqnNet {
    pub arch: IqnArch,
    fc_shared: nn::Linear,
    fc_cand: nn::Linear,
    fc2: nn::Linear,
    fc_tau: nn::Linear,
    out: nn::Linear,
}

impl IqnNet {
    pub fn new(root: &nn::Path, arch: IqnArch) -> Self {
        let h = arch.hidden as i64;
        let no_bias = nn::LinearConfig {
            bias: false,
            ..Default::default()
        };
        Self {
            arch,
            fc_shared: nn::linear(
                root / "fc_shared",
                arch.shared_features as i64,
                h,
                Default::default(),
            ),
            // The first layer over [shared, candidate] is split in two so the shared part is
            // computed once per task, not once per candidate.
            fc_cand: nn::linear(root / "fc_cand", arch.candidate_features as i64, h, no_bias),
            fc2: nn::linear(root / "fc2", h, h, Default::default()),
            fc_tau: nn::linear(
                root / "fc_tau",
                arch.cos_embed as i64,
                h,
                Default::default(),
            ),
            out: nn::linear(root / "out", h, 1, Default::default()),
        }
    }

    /// State-action embedding psi: shared [B, S], candidates [B, M, C] -> [B, M, H].
    pub fn psi(&self, shared: &Tensor, cand: &Tensor) -> Tensor {
        let s = self.fc_shared.forward(shared).unsqueeze(1);
        let c = self.fc_cand.forward(cand);
        self.fc2.forward(&(c + s).relu()).relu()
    }

    /// Tau embedding phi: taus [B, K] -> [B, K, H].
    pub fn phi(&self, taus: &Tensor) -> Tensor {
        self.fc_tau
            .forward(&cosine_embedding(taus, self.arch.cos_embed))
            .relu()
    }

    /// Quantile values: psi [B, M, H], phi [B, K, H] -> [B, M, K].
    pub fn quantiles(&self, psi: &Tensor, phi: &Tensor) -> Tensor {
        let w = self.out.ws.view([1, 1, -1]);
        let b = self.out.bs.as_ref().expect("out has a bias");
        psi.matmul(&(phi * w).transpose(1, 2)) + b
    }

    /// Mean of the quantiles at `taus` for every candidate: psi [B, M, H], taus [B, K] ->
    /// [B, M]. With taus spread over [0, alpha] this is the CVaR_alpha estimate. Exact because
    /// the head is linear: mean_k w.(psi (.) phi_k) = w.(psi (.) mean_k phi_k).
    pub fn mean_over_taus(&self, psi: &Tensor, taus: &Tensor) -> Tensor {
        let phi_bar = self.phi(taus).mean_dim(1, true, Kind::Float); // [B, 1, H]
        self.quantiles(psi, &phi_bar).squeeze_dim(-1)
    }

    /// The head vector `w (.) mean_k phi(tau_k)` [H, 1] for fixed taus [1, K]: with it, the
    /// mean over those taus is `psi @ head + b` (see [`IqnNet::scores_with_head`]), so eval
    /// mode computes the tau embedding once per weight version, not once per Step.
    pub fn cvar_head(&self, taus: &Tensor) -> Tensor {
        let phi_bar = self
            .phi(taus)
            .mean_dim([0i64, 1].as_slice(), false, Kind::Float); // [H]
        (phi_bar * self.out.ws.view([-1])).unsqueeze(1)
    }

    /// psi [B, M, H] with a head from [`IqnNet::cvar_head`] -> [B, M].
    pub fn scores_with_head(&self, psi: &Tensor, head: &Tensor) -> Tensor {
        let b = self.out.bs.as_ref().expect("out has a bias");
        psi.matmul(head).squeeze_dim(-1) + b
    }
}

/// cos(pi * i * tau) for i = 1..=dim: taus [..] -> [.., dim].
pub fn cosine_embedding(taus: &Tensor, dim: usize) -> Tensor {
    let i = Tensor::arange_start(1, dim as i64 + 1, (Kind::Float, taus.device()));
    (taus.unsqueeze(-1) * i * PI).cos()
}

/// Quantile Huber loss (Dabney et al. 2018; SPEC section 7): pred [B, N] at taus [B, N],
/// target [B, N'] (no gradient). rho_tau(u) = |tau - 1{u < 0}| * L_kappa(u) / kappa with
/// u = target_j - pred_i; summed over N, averaged over N' and the batch. `weights` [B]
/// optionally scales each sample (None: all 1).
pub fn quantile_huber_loss(
    pred: &Tensor,
    taus: &Tensor,
    target: &Tensor,
    kappa: f64,
    weights: Option<&Tensor>,
) -> Tensor {
    // u[b, j, i] = target[b, j] - pred[b, i]
    let u = target.detach().unsqueeze(2) - pred.unsqueeze(1);
    let abs = u.abs();
    let small = abs.le(kappa).to_kind(Kind::Float);
    let huber = &small * 0.5 * &u * &u + (1.0 - &small) * kappa * (&abs - 0.5 * kappa);
    let below = u.lt(0.0).to_kind(Kind::Float);
    let weight = (taus.unsqueeze(1) - below).abs();
    let rho: Tensor = weight * huber / kappa; // [B, N', N]
    let per_sample = rho
        .sum_dim_intlist(2, false, Kind::Float)
        .mean_dim(1, false, Kind::Float);
    match weights {
        Some(w) => (per_sample * w).mean(Kind::Float),
        None => per_sample.mean(Kind::Float),
    }
}

/// Evenly spaced taus at the midpoints of K cells of [0, alpha]: the deterministic CVaR
/// estimate used in eval and frozen modes.
pub fn midpoint_taus(alpha: f64, k: usize) -> Vec<f32> {
    (0..k)
        .map(|i| (alpha * (i as f64 + 0.5) / k as f64) as f32)
        .collect()
}

/// A tensor [rows, k] from a flat f32 buffer.
pub fn taus_tensor(taus: &[f32], rows: i64) -> Tensor {
    Tensor::from_slice(taus)
        .view([rows, -1])
        .to_device(Device::Cpu)
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
        // target 1, prediction 0: u = 1 > 0, huber 0.5, weight tau.
        for tau in [0.1f32, 0.5, 0.9] {
            let l = quantile_huber_loss(
                &t(&[0.0]).view([1, 1]),
                &t(&[tau]).view([1, 1]),
                &t(&[1.0]).view([1, 1]),
                1.0,
                None,
            );
            assert!((l.double_value(&[]) - 0.5 * tau as f64).abs() < 1e-6);
        }
        // Over-estimation (prediction 1, target 0): weight 1 - tau.
        let l = quantile_huber_loss(
            &t(&[1.0]).view([1, 1]),
            &t(&[0.9]).view([1, 1]),
            &t(&[0.0]).view([1, 1]),
            1.0,
            None,
        );
        assert!((l.double_value(&[]) - 0.5 * 0.1).abs() < 1e-6);
        // Linear region: |u| = 3 -> kappa (|u| - kappa/2) = 2.5, tau 0.25 -> 0.625.
        let l = quantile_huber_loss(
            &t(&[0.0]).view([1, 1]),
            &t(&[0.25]).view([1, 1]),
            &t(&[3.0]).view([1, 1]),
            1.0,
            None,
        );
        assert!((l.double_value(&[]) - 0.625).abs() < 1e-6);
        // kappa = 2, u = 1: 0.5 u^2 / kappa = 0.25, tau 1.0 -> 0.25.
        let l = quantile_huber_loss(
            &t(&[0.0]).view([1, 1]),
            &t(&[1.0]).view([1, 1]),
            &t(&[1.0]).view([1, 1]),
            2.0,
            None,
        );
        assert!((l.double_value(&[]) - 0.25).abs() < 1e-6);
        // Sum over N, mean over N': preds (0, 0) at taus (0.2, 0.6); targets (1, -1).
        // j=target 1: 0.5*0.2 + 0.5*0.6 = 0.4; j=target -1: 0.5*0.8 + 0.5*0.4 = 0.6; mean 0.5.
        let l = quantile_huber_loss(
            &t(&[0.0, 0.0]).view([1, 2]),
            &t(&[0.2, 0.6]).view([1, 2]),
            &t(&[1.0, -1.0]).view([1, 2]),
            1.0,
            None,
        );
        assert!((l.double_value(&[]) - 0.5).abs() < 1e-6);
        // Batch mean with sample weights.
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
    fn mean_over_taus_matches_explicit_quantiles() {
        tch::manual_seed(3);
        let vs = nn::VarStore::new(Device::Cpu);
        let net = IqnNet::new(&vs.root(), IqnArch::new(16, 64));
        let shared = Tensor::randn([2, SHARED_FEATURES as i64], (Kind::Float, Device::Cpu));
        let cand = Tensor::randn(
            [2, 5, CANDIDATE_FEATURES as i64],
            (Kind::Float, Device::Cpu),
        );
        let taus = taus_tensor(&midpoint_taus(0.1, 8).repeat(2), 2);
        let psi = net.psi(&shared, &cand);
        let q = net
            .quantiles(&psi, &net.phi(&taus))
            .mean_dim(-1, false, Kind::Float);
        let fast = net.mean_over_taus(&psi, &taus);
        let diff = (&q - fast).abs().max().double_value(&[]);
        assert!(diff < 1e-5, "{diff}");
        let one = taus_tensor(&midpoint_taus(0.1, 8), 1);
        let head = net.cvar_head(&one);
        let cached = net.scores_with_head(&psi, &head);
        let diff = (&q - cached).abs().max().double_value(&[]);
        assert!(diff < 1e-5, "{diff}");
    }
}
