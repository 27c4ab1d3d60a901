//! Service times: the laws they are drawn from, and the estimates of them that policies, the
//! admission test and the slack histogram see.

use super::{DEFAULT_PARETO_MAX_NS, DEFAULT_PARETO_MIN_NS};
use crate::error::SimError;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use rand_distr::Distribution;
use rand_distr::{Exp1, StandardNormal};
use serde::{Deserialize, Serialize};

/// Spread of the default noisy estimate: true x LogNormal(0, 0.5) is within a factor 1.39 of
/// the truth half of the time and within 2.7x nine times in ten, a plausible profile-based
/// RPC cost model (an estimate, not an oracle).
pub const DEFAULT_ESTIMATE_SIGMA: f64 = 0.5;

/// What a policy (and the node's admission test and slack histogram) knows of a task's
/// service time. The true time drives only the server. The absolute deadline of a generated
/// task is computed from the estimate (`D = A + F x estimate`): the deadline is a promise made
/// by a client who only knows the estimate, and with `D = A + F x S_true` the relative
/// deadline would reveal the exact service time (`S = (D - A) / F`) to every policy.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "model")]
pub enum ServiceEstimate {
    /// The true service time (explicit opt-in: an oracle, the behaviour before estimates).
    Exact,
    /// The mean service time of the task's class (the law's mean for generated classes, the
    /// trace's per-class mean for replayed tasks without an `estimate_ns` column).
    ClassMean,
    /// True x LogNormal(0, sigma): median-unbiased, from its own random stream so that the
    /// arrivals and services of a seed do not depend on the estimate model.
    Noisy { sigma: f64 },
}

impl Default for ServiceEstimate {
    fn default() -> Self {
        ServiceEstimate::Noisy {
            sigma: DEFAULT_ESTIMATE_SIGMA,
        }
    }
}

impl ServiceEstimate {
    /// `exact`, `class_mean` or `noisy` (with the default sigma).
    pub fn parse(model: &str) -> Option<Self> {
        match model {
            "exact" => Some(ServiceEstimate::Exact),
            "class_mean" => Some(ServiceEstimate::ClassMean),
            "noisy" => Some(ServiceEstimate::default()),
            _ => None,
        }
    }

    pub fn validate(&self) -> Result<(), SimError> {
        match *self {
            ServiceEstimate::Noisy { sigma } if !(sigma >= 0.0 && sigma.is_finite()) => Err(
                SimError::InvalidScenario(format!("estimate_sigma must be >= 0, got {sigma}")),
            ),
            _ => Ok(()),
        }
    }

    /// The estimate of a task whose true service is `service_ns`: exact, its class's mean
    /// (`class_mean_ns`; the task's own service where the class has none), or
    /// `service x exp(sigma x z)` with `z` a standard normal draw. Rounded half up, at least
    /// 1 ns. Mirrored by `ServiceEstimate::estimateNs` in omnetpp/core/workload.h (golden
    /// vectors: proto/testdata/estimate_vectors.csv).
    pub fn apply(&self, service_ns: u64, class_mean_ns: Option<f64>, z: f64) -> u64 {
        let x = match *self {
            ServiceEstimate::Exact => return service_ns,
            ServiceEstimate::ClassMean => class_mean_ns.unwrap_or(service_ns as f64),
            ServiceEstimate::Noisy { sigma } => service_ns as f64 * (sigma * z).exp(),
        };
        ((x + 0.5) as u64).max(1)
    }

    /// Short label for Hello parameters, summaries and figures.
    pub fn label(&self) -> String {
        match *self {
            ServiceEstimate::Exact => "exact".into(),
            ServiceEstimate::ClassMean => "class_mean".into(),
            ServiceEstimate::Noisy { sigma } => format!("noisy(sigma={sigma})"),
        }
    }
}

/// Turns true service times into estimates for one task source (own RNG stream).
#[derive(Debug, Clone)]
pub(crate) struct Estimator {
    model: ServiceEstimate,
    /// Mean service of each class, ns (for [`ServiceEstimate::ClassMean`]).
    class_mean_ns: Vec<(u32, f64)>,
    rng: ChaCha8Rng,
}

impl Estimator {
    pub fn new(model: ServiceEstimate, class_mean_ns: Vec<(u32, f64)>, rng: ChaCha8Rng) -> Self {
        Self {
            model,
            class_mean_ns,
            rng,
        }
    }

    /// Estimate of a task of `class` whose true service is `service_ns` (at least 1 ns).
    pub fn estimate(&mut self, class: u32, service_ns: u64) -> u64 {
        let mean = self
            .class_mean_ns
            .iter()
            .find(|(c, _)| *c == class)
            .map(|&(_, m)| m);
        let z = match self.model {
            ServiceEstimate::Noisy { .. } => StandardNormal.sample(&mut self.rng),
            _ => 0.0,
        };
        self.model.apply(service_ns, mean, z)
    }
}

/// Service time law, in nanoseconds of reference (speed 1.0) work.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "law")]
pub enum ServiceLaw {
    BoundedPareto {
        alpha: f64,
        min_ns: u64,
        max_ns: u64,
    },
    LogNormal {
        median_ns: u64,
        sigma: f64,
    },
    Exponential {
        mean_ns: u64,
    },
    Bimodal {
        short_ns: u64,
        long_ns: u64,
        p_long: f64,
    },
    Deterministic {
        ns: u64,
    },
}

impl ServiceLaw {
    pub fn pareto(alpha: f64) -> Self {
        ServiceLaw::BoundedPareto {
            alpha,
            min_ns: DEFAULT_PARETO_MIN_NS,
            max_ns: DEFAULT_PARETO_MAX_NS,
        }
    }

    pub fn validate(&self) -> Result<(), SimError> {
        let ok = match *self {
            ServiceLaw::BoundedPareto {
                alpha,
                min_ns,
                max_ns,
            } => alpha > 0.0 && min_ns > 0 && max_ns > min_ns,
            ServiceLaw::LogNormal { median_ns, sigma } => median_ns > 0 && sigma >= 0.0,
            ServiceLaw::Exponential { mean_ns } => mean_ns > 0,
            ServiceLaw::Bimodal {
                short_ns,
                long_ns,
                p_long,
            } => short_ns > 0 && long_ns > 0 && (0.0..=1.0).contains(&p_long),
            ServiceLaw::Deterministic { ns } => ns > 0,
        };
        if ok {
            Ok(())
        } else {
            Err(SimError::InvalidScenario(format!(
                "bad service law {self:?}"
            )))
        }
    }

    /// Mean service, ns (closed forms; used to turn a load rho into an arrival rate).
    pub fn mean_ns(&self) -> f64 {
        match *self {
            ServiceLaw::BoundedPareto {
                alpha,
                min_ns,
                max_ns,
            } => {
                let (l, h) = (min_ns as f64, max_ns as f64);
                let norm = alpha * l.powf(alpha) / (1.0 - (l / h).powf(alpha));
                if (alpha - 1.0).abs() < 1e-12 {
                    norm * (h / l).ln()
                } else {
                    norm * (l.powf(1.0 - alpha) - h.powf(1.0 - alpha)) / (alpha - 1.0)
                }
            }
            ServiceLaw::LogNormal { median_ns, sigma } => {
                median_ns as f64 * (sigma * sigma / 2.0).exp()
            }
            ServiceLaw::Exponential { mean_ns } => mean_ns as f64,
            ServiceLaw::Bimodal {
                short_ns,
                long_ns,
                p_long,
            } => (1.0 - p_long) * short_ns as f64 + p_long * long_ns as f64,
            ServiceLaw::Deterministic { ns } => ns as f64,
        }
    }

    /// One draw, rounded to a whole nanosecond, at least 1.
    pub fn sample(&self, rng: &mut ChaCha8Rng) -> u64 {
        let x = match *self {
            ServiceLaw::BoundedPareto {
                alpha,
                min_ns,
                max_ns,
            } => {
                // Inverse CDF of the Pareto truncated to [L, H].
                let (l, h) = (min_ns as f64, max_ns as f64);
                let u: f64 = rng.random();
                let tail = 1.0 - (l / h).powf(alpha);
                (l / (1.0 - u * tail).powf(1.0 / alpha)).min(h)
            }
            ServiceLaw::LogNormal { median_ns, sigma } => {
                let z: f64 = StandardNormal.sample(rng);
                median_ns as f64 * (sigma * z).exp()
            }
            ServiceLaw::Exponential { mean_ns } => {
                let e: f64 = Exp1.sample(rng);
                mean_ns as f64 * e
            }
            ServiceLaw::Bimodal {
                short_ns,
                long_ns,
                p_long,
            } => {
                if rng.random::<f64>() < p_long {
                    long_ns as f64
                } else {
                    short_ns as f64
                }
            }
            ServiceLaw::Deterministic { ns } => ns as f64,
        };
        ((x + 0.5) as u64).max(1)
    }

    /// Short label for Hello parameters and logs.
    pub fn label(&self) -> String {
        match *self {
            ServiceLaw::BoundedPareto {
                alpha,
                min_ns,
                max_ns,
            } => format!("bounded-pareto(alpha={alpha},min_ns={min_ns},max_ns={max_ns})"),
            ServiceLaw::LogNormal { median_ns, sigma } => {
                format!("lognormal(median_ns={median_ns},sigma={sigma})")
            }
            ServiceLaw::Exponential { mean_ns } => format!("exponential(mean_ns={mean_ns})"),
            ServiceLaw::Bimodal {
                short_ns,
                long_ns,
                p_long,
            } => format!("bimodal(short_ns={short_ns},long_ns={long_ns},p_long={p_long})"),
            ServiceLaw::Deterministic { ns } => format!("deterministic(ns={ns})"),
        }
    }
}
