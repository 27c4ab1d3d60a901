//! Adam with global gradient-norm clipping, written out so that its moments and step count
//! can be checkpointed (tch's optimiser wrapper does not expose its state).

use tch::{Kind, Tensor};

/// Adam's first-moment decay (Kingma & Ba defaults).
pub const DEFAULT_BETA1: f64 = 0.9;
/// Adam's second-moment decay.
pub const DEFAULT_BETA2: f64 = 0.999;
/// Dopamine's IQN uses epsilon = 0.01 / batch; 1e-8 is PyTorch's default. We follow PyTorch.
pub const DEFAULT_ADAM_EPS: f64 = 1e-8;

/// Optimiser state over a fixed, named list of parameters.
#[derive(Debug)]
pub struct Adam {
    pub lr: f64,
    pub grad_clip: f64,
    pub step: i64,
    pub names: Vec<String>,
    params: Vec<Tensor>,
    m: Vec<Tensor>,
    v: Vec<Tensor>,
}

impl Adam {
    /// `params` are (name, variable) pairs; order is kept for checkpoints.
    pub fn new(params: Vec<(String, Tensor)>, lr: f64, grad_clip: f64) -> Self {
        let m = params.iter().map(|(_, p)| p.zeros_like()).collect();
        let v = params.iter().map(|(_, p)| p.zeros_like()).collect();
        let (names, params) = params.into_iter().unzip();
        Self {
            lr,
            grad_clip,
            step: 0,
            names,
            params,
            m,
            v,
        }
    }

    pub fn zero_grad(&mut self) {
        for p in &mut self.params {
            p.zero_grad();
        }
    }

    /// One Adam step on the current gradients; returns the gradient norm before clipping.
    pub fn step(&mut self) -> f64 {
        tch::no_grad(|| {
            let mut sq = 0.0;
            for p in &self.params {
                let g = p.grad();
                if g.defined() {
                    sq += g.square().sum(Kind::Float).double_value(&[]);
                }
            }
            let norm = sq.sqrt();
            let scale = if self.grad_clip > 0.0 && norm > self.grad_clip {
                self.grad_clip / norm
            } else {
                1.0
            };
            self.step += 1;
            let bc1 = 1.0 - DEFAULT_BETA1.powi(self.step as i32);
            let bc2 = 1.0 - DEFAULT_BETA2.powi(self.step as i32);
            for ((p, m), v) in self.params.iter_mut().zip(&mut self.m).zip(&mut self.v) {
                let g = p.grad();
                if !g.defined() {
                    continue;
                }
                let g = g * scale;
                let new_m = &*m * DEFAULT_BETA1 + &g * (1.0 - DEFAULT_BETA1);
                let new_v = &*v * DEFAULT_BETA2 + g.square() * (1.0 - DEFAULT_BETA2);
                m.copy_(&new_m);
                v.copy_(&new_v);
                let update = (&new_m / bc1) / ((&new_v / bc2).sqrt() + DEFAULT_ADAM_EPS) * self.lr;
                let new_p = &*p - update;
                p.copy_(&new_p);
            }
            norm
        })
    }

    /// The moments as (name, tensor) pairs for a checkpoint: `m.<param>` and `v.<param>`.
    pub fn state(&self) -> Vec<(String, &Tensor)> {
        let mut out = Vec::with_capacity(2 * self.names.len());
        for (i, n) in self.names.iter().enumerate() {
            out.push((format!("m.{n}"), &self.m[i]));
            out.push((format!("v.{n}"), &self.v[i]));
        }
        out
    }

    /// Mutable access to the moment named like [`Adam::state`] names it.
    pub fn state_mut(&mut self, name: &str) -> Option<&mut Tensor> {
        let (which, param) = name.split_once('.')?;
        let i = self.names.iter().position(|n| n == param)?;
        match which {
            "m" => Some(&mut self.m[i]),
            "v" => Some(&mut self.v[i]),
            _ => None,
        }
    }
}

/// Adam over ONE flat parameter tensor (the IQN's layout, see `iqn.rs`): the whole step is a
/// few vector operations instead of a handful per parameter tensor. Same update as
/// [`Adam`] (PyTorch's), with the same global gradient-norm clip.
#[derive(Debug)]
pub struct FlatAdam {
    pub lr: f64,
    pub grad_clip: f64,
    pub step: i64,
    pub m: Tensor,
    pub v: Tensor,
}

impl FlatAdam {
    pub fn new(numel: usize, lr: f64, grad_clip: f64) -> Self {
        let z = || Tensor::zeros([numel as i64], (Kind::Float, tch::Device::Cpu));
        Self {
            lr,
            grad_clip,
            step: 0,
            m: z(),
            v: z(),
        }
    }

    /// One step of `params` (the flat leaf) along `grad`; returns the gradient norm before
    /// clipping.
    pub fn step(&mut self, params: &Tensor, grad: &Tensor) -> f64 {
        tch::no_grad(|| {
            let norm = grad.square().sum(Kind::Float).double_value(&[]).sqrt();
            let scale = if self.grad_clip > 0.0 && norm > self.grad_clip {
                self.grad_clip / norm
            } else {
                1.0
            };
            self.step += 1;
            let bc1 = 1.0 - DEFAULT_BETA1.powi(self.step as i32);
            let bc2 = 1.0 - DEFAULT_BETA2.powi(self.step as i32);
            let g = grad * scale;
            let new_m = &self.m * DEFAULT_BETA1 + &g * (1.0 - DEFAULT_BETA1);
            let new_v = &self.v * DEFAULT_BETA2 + g.square() * (1.0 - DEFAULT_BETA2);
            self.m.copy_(&new_m);
            self.v.copy_(&new_v);
            let update = (new_m / bc1) / ((new_v / bc2).sqrt() + DEFAULT_ADAM_EPS) * self.lr;
            let mut p = params.shallow_clone();
            let _ = p.g_sub_(&update);
            norm
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minimises_a_quadratic_like_pytorch_adam() {
        // One step from x = 1 on f = x^2: Adam's first step moves by lr (sign of the gradient).
        let x = Tensor::from_slice(&[1.0f32]).set_requires_grad(true);
        let mut adam = Adam::new(vec![("x".into(), x.shallow_clone())], 0.1, 0.0);
        adam.zero_grad();
        (&x * &x).sum(Kind::Float).backward();
        let norm = adam.step();
        assert!((norm - 2.0).abs() < 1e-6);
        assert!((x.double_value(&[0]) - 0.9).abs() < 1e-6);
        for _ in 0..200 {
            adam.zero_grad();
            (&x * &x).sum(Kind::Float).backward();
            adam.step();
        }
        assert!(x.double_value(&[0]).abs() < 0.05);
        assert!(adam.state_mut("m.x").is_some());
        assert!(adam.state_mut("q.x").is_none());
    }

    #[test]
    fn flat_adam_matches_per_tensor_adam() {
        let a = Tensor::from_slice(&[1.0f32, -2.0]).set_requires_grad(true);
        let b = Tensor::from_slice(&[0.5f32]).set_requires_grad(true);
        let mut per = Adam::new(
            vec![
                ("a".into(), a.shallow_clone()),
                ("b".into(), b.shallow_clone()),
            ],
            0.05,
            1.0,
        );
        let flat = Tensor::from_slice(&[1.0f32, -2.0, 0.5]).set_requires_grad(true);
        let mut fa = FlatAdam::new(3, 0.05, 1.0);
        for _ in 0..20 {
            per.zero_grad();
            ((&a * &a).sum(Kind::Float) * 3.0 + (&b * &b * &b).sum(Kind::Float)).backward();
            per.step();
            let f = (flat.narrow(0, 0, 2).square().sum(Kind::Float) * 3.0)
                + flat.narrow(0, 2, 1).pow_tensor_scalar(3).sum(Kind::Float);
            let g = Tensor::run_backward(&[f], &[&flat], false, false).remove(0);
            fa.step(&flat, &g);
        }
        let both = Tensor::cat(&[a.detach(), b.detach()], 0);
        let diff = (both - flat.detach()).abs().max().double_value(&[]);
        assert!(diff < 1e-6, "{diff}");
    }
}
