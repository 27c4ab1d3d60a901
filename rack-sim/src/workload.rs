//! Task arrivals: Poisson streams with service laws and deadline rules, micro-bursts, and
//! replay of recorded task traces (CSV); and the service-time estimates the policies see
//! ([`ServiceEstimate`]): the true service time drives only the server.

use crate::error::SimError;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Exp1, StandardNormal};
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::path::PathBuf;

/// Smallest Pareto service (design.md section 9: x_m = 10 us).
pub const DEFAULT_PARETO_MIN_NS: u64 = 10_000;
/// Pareto upper bound: two decades above x_m, heavy enough for a tail, finite for moments.
pub const DEFAULT_PARETO_MAX_NS: u64 = 1_000_000;
/// Request payload: one small RPC that fits a single MTU frame.
pub const DEFAULT_TASK_SIZE_BYTES: u32 = 1024;
/// Micro-burst period (design.md section 9: every 100 ms).
pub const DEFAULT_BURST_PERIOD_NS: u64 = 100_000_000;
/// Relative deadline of micro-burst tasks (design.md section 9: 10 us).
pub const DEFAULT_BURST_DEADLINE_NS: u64 = 10_000;
/// Service of a micro-burst task: short enough that the 10 us deadline is feasible.
pub const DEFAULT_BURST_SERVICE_NS: u64 = 2_000;
/// Micro-burst tasks arrive within this span (a burst, not a single instant).
pub const DEFAULT_BURST_SPREAD_NS: u64 = 5_000;
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

/// Offered load of a Poisson stream.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Load {
    /// Fraction of the rack capacity (sum of cores x speed) divided by the mean service.
    Rho(f64),
    /// Absolute rate, tasks per second of simulated time.
    PerSecond(f64),
}

/// Absolute deadline of a task.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DeadlineRule {
    /// D = A + F x E, E the task's service *estimate* on a reference core (see
    /// [`ServiceEstimate`] for why not the true service).
    Factor(f64),
    /// D = A + d.
    Relative(u64),
    /// No deadline (u64::MAX): pure queueing runs.
    None,
}

impl DeadlineRule {
    /// Absolute deadline of a task arriving at `arrival` with service estimate `estimate`.
    pub fn deadline(&self, arrival: u64, estimate: u64) -> u64 {
        match *self {
            DeadlineRule::Factor(f) => arrival.saturating_add((f * estimate as f64).round() as u64),
            DeadlineRule::Relative(d) => arrival.saturating_add(d),
            DeadlineRule::None => u64::MAX,
        }
    }
}

/// Poisson arrivals with uniform origins.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PoissonSource {
    pub load: Load,
    pub service: ServiceLaw,
    pub deadline: DeadlineRule,
    pub size_bytes: u32,
}

/// Every `period_ns`, `count` short tasks (class 1) arrive within `spread_ns`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BurstSource {
    pub period_ns: u64,
    /// Time of the first burst.
    pub first_at_ns: u64,
    pub count: u32,
    pub spread_ns: u64,
    pub service: ServiceLaw,
    pub relative_deadline_ns: u64,
    pub size_bytes: u32,
}

impl BurstSource {
    /// The design's micro-bursts for a rack of `nodes` nodes: 8 tasks per node per burst.
    pub fn standard(nodes: usize) -> Self {
        Self {
            period_ns: DEFAULT_BURST_PERIOD_NS,
            first_at_ns: DEFAULT_BURST_PERIOD_NS / 2,
            count: 8 * nodes as u32,
            spread_ns: DEFAULT_BURST_SPREAD_NS,
            service: ServiceLaw::Deterministic {
                ns: DEFAULT_BURST_SERVICE_NS,
            },
            relative_deadline_ns: DEFAULT_BURST_DEADLINE_NS,
            size_bytes: DEFAULT_TASK_SIZE_BYTES,
        }
    }
}

/// One recorded task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TraceTask {
    pub arrival_ns: u64,
    pub origin: u32,
    pub service_ns: u64,
    pub deadline_ns: u64,
    pub size_bytes: u32,
    #[serde(default)]
    pub class: u32,
    /// The recorded service estimate; `None`: the scenario's [`ServiceEstimate`] model makes
    /// one from `service_ns`.
    #[serde(default)]
    pub estimate_ns: Option<u64>,
}

/// Where a task trace comes from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TraceSource {
    /// CSV with header `arrival_ns,origin,service_ns,deadline_ns,size_bytes[,class]
    /// [,estimate_ns]`, sorted by arrival. Streamed, never loaded whole. The deadlines are the
    /// file's (absolute); `estimate_ns`, where present, is used as the task's estimate.
    File(PathBuf),
    Inline(Vec<TraceTask>),
}

/// Everything that generates tasks in a scenario.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Workload {
    pub poisson: Option<PoissonSource>,
    pub bursts: Option<BurstSource>,
    pub trace: Option<TraceSource>,
}

/// A task as generated, before placement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NewTask {
    pub arrival_ns: u64,
    pub origin: u32,
    /// True service on a reference core (drives the server only).
    pub service_ns: u64,
    /// What the policies and the node's admission test see (see [`ServiceEstimate`]).
    pub estimate_ns: u64,
    pub deadline_ns: u64,
    pub size_bytes: u32,
    pub class: u32,
}

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

#[derive(Debug, Deserialize)]
struct CsvRow {
    arrival_ns: u64,
    origin: u32,
    service_ns: u64,
    deadline_ns: u64,
    size_bytes: u32,
    #[serde(default)]
    class: Option<u32>,
    #[serde(default)]
    estimate_ns: Option<u64>,
}

/// Live trace reader: one row of look-ahead.
pub(crate) struct TraceGen {
    rows: Box<dyn Iterator<Item = Result<TraceTask, SimError>> + Send>,
    next: Option<TraceTask>,
    nodes: u32,
    last_arrival: u64,
    /// For rows without an `estimate_ns`.
    estimator: Option<Estimator>,
}

impl TraceGen {
    /// Opens a trace; `estimator` makes the estimates of rows that carry none (`None`: the
    /// true service, for validation passes that only read).
    pub fn open(
        src: &TraceSource,
        nodes: u32,
        estimator: Option<Estimator>,
    ) -> Result<Self, SimError> {
        let rows: Box<dyn Iterator<Item = Result<TraceTask, SimError>> + Send> = match src {
            TraceSource::Inline(v) => Box::new(v.clone().into_iter().map(Ok)),
            TraceSource::File(path) => {
                let reader = csv::ReaderBuilder::new()
                    .trim(csv::Trim::All)
                    .from_path(path)
                    .map_err(|e| SimError::Trace(format!("{}: {e}", path.display())))?;
                let p = path.clone();
                Box::new(reader.into_deserialize::<CsvRow>().map(move |r| {
                    r.map(|row| TraceTask {
                        arrival_ns: row.arrival_ns,
                        origin: row.origin,
                        service_ns: row.service_ns,
                        deadline_ns: row.deadline_ns,
                        size_bytes: row.size_bytes,
                        class: row.class.unwrap_or(0),
                        estimate_ns: row.estimate_ns,
                    })
                    .map_err(|e| SimError::Trace(format!("{}: {e}", p.display())))
                }))
            }
        };
        let mut g = Self {
            rows,
            next: None,
            nodes,
            last_arrival: 0,
            estimator,
        };
        g.next = g.read()?;
        Ok(g)
    }

    fn read(&mut self) -> Result<Option<TraceTask>, SimError> {
        let Some(row) = self.rows.next() else {
            return Ok(None);
        };
        let t = row?;
        if t.origin >= self.nodes {
            return Err(SimError::Trace(format!(
                "task at {} ns has origin {} but the rack has {} nodes",
                t.arrival_ns, t.origin, self.nodes
            )));
        }
        if t.arrival_ns < self.last_arrival {
            return Err(SimError::Trace(format!(
                "arrivals must not go back in time ({} after {})",
                t.arrival_ns, self.last_arrival
            )));
        }
        if t.service_ns == 0 || t.estimate_ns == Some(0) {
            return Err(SimError::Trace(format!(
                "task at {} ns has zero service or a zero estimate",
                t.arrival_ns
            )));
        }
        self.last_arrival = t.arrival_ns;
        Ok(Some(t))
    }

    pub fn peek_time(&self) -> Option<u64> {
        self.next.map(|t| t.arrival_ns)
    }

    pub fn next(&mut self) -> Result<Option<NewTask>, SimError> {
        let Some(t) = self.next else {
            return Ok(None);
        };
        self.next = self.read()?;
        let estimate_ns = match (t.estimate_ns, self.estimator.as_mut()) {
            (Some(e), _) => e,
            (None, Some(est)) => est.estimate(t.class, t.service_ns),
            (None, None) => t.service_ns,
        };
        Ok(Some(NewTask {
            arrival_ns: t.arrival_ns,
            origin: t.origin,
            service_ns: t.service_ns,
            estimate_ns,
            deadline_ns: t.deadline_ns,
            size_bytes: t.size_bytes,
            class: t.class,
        }))
    }
}

/// Mean true service of each class of a trace (one streamed pass), for
/// [`ServiceEstimate::ClassMean`] estimates of rows without an `estimate_ns`.
pub(crate) fn trace_class_means(
    src: &TraceSource,
    nodes: u32,
) -> Result<Vec<(u32, f64)>, SimError> {
    let mut g = TraceGen::open(src, nodes, None)?;
    let mut sums: Vec<(u32, f64, u64)> = Vec::new();
    while let Some(t) = g.next()? {
        match sums.iter_mut().find(|(c, _, _)| *c == t.class) {
            Some(e) => {
                e.1 += t.service_ns as f64;
                e.2 += 1;
            }
            None => sums.push((t.class, t.service_ns as f64, 1)),
        }
    }
    Ok(sums
        .into_iter()
        .map(|(c, s, n)| (c, s / n as f64))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn estimates_follow_their_model() {
        let rng = || ChaCha8Rng::seed_from_u64(11);
        let mut exact = Estimator::new(ServiceEstimate::Exact, vec![], rng());
        assert_eq!(exact.estimate(0, 12_345), 12_345);
        let mut mean = Estimator::new(
            ServiceEstimate::ClassMean,
            vec![(0, 25_000.4), (1, 2_000.0)],
            rng(),
        );
        assert_eq!(mean.estimate(0, 12_345), 25_000);
        assert_eq!(mean.estimate(1, 7), 2_000);
        // A class without a known mean falls back to the task's own service.
        assert_eq!(mean.estimate(9, 77), 77);
        // Noisy: ln(estimate / true) ~ N(0, sigma^2). Mean within 4 standard errors of 0,
        // standard deviation within 2% of sigma (its standard error is sigma / sqrt(2n)).
        let sigma = 0.5;
        let n = 200_000;
        let mut noisy = Estimator::new(ServiceEstimate::Noisy { sigma }, vec![], rng());
        let logs: Vec<f64> = (0..n)
            .map(|_| (noisy.estimate(0, 1_000_000) as f64 / 1e6).ln())
            .collect();
        let m = logs.iter().sum::<f64>() / n as f64;
        let sd = (logs.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (n - 1) as f64).sqrt();
        assert!(
            m.abs() < 4.0 * sigma / (n as f64).sqrt(),
            "mean log ratio {m}"
        );
        assert!(
            (sd - sigma).abs() < 4.0 * sigma / (2.0 * n as f64).sqrt(),
            "sd {sd}"
        );
        assert_eq!(
            ServiceEstimate::default(),
            ServiceEstimate::Noisy { sigma: 0.5 }
        );
        assert_eq!(
            ServiceEstimate::parse("class_mean"),
            Some(ServiceEstimate::ClassMean)
        );
        assert!(ServiceEstimate::parse("oracle").is_none());
        assert!(ServiceEstimate::Noisy { sigma: -1.0 }.validate().is_err());
    }

    #[test]
    fn trace_class_means_are_per_class() {
        let t = |a, class, s| TraceTask {
            arrival_ns: a,
            origin: 0,
            service_ns: s,
            deadline_ns: a + 10 * s,
            size_bytes: 0,
            class,
            estimate_ns: None,
        };
        let src = TraceSource::Inline(vec![t(0, 0, 10), t(1, 1, 5), t(2, 0, 30), t(3, 1, 7)]);
        let mut m = trace_class_means(&src, 1).unwrap();
        m.sort_by_key(|e| e.0);
        assert_eq!(m, vec![(0, 20.0), (1, 6.0)]);
    }

    /// Sample mean and its standard error.
    fn sample_mean(law: &ServiceLaw, n: usize) -> (f64, f64) {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let xs: Vec<f64> = (0..n).map(|_| law.sample(&mut rng) as f64).collect();
        let m = xs.iter().sum::<f64>() / n as f64;
        let var = xs.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / (n - 1) as f64;
        (m, (var / n as f64).sqrt())
    }

    #[test]
    fn sample_means_match_closed_forms() {
        for law in [
            ServiceLaw::pareto(2.5),
            ServiceLaw::pareto(1.1),
            ServiceLaw::LogNormal {
                median_ns: 10_000,
                sigma: 0.5,
            },
            ServiceLaw::Exponential { mean_ns: 10_000 },
            ServiceLaw::Bimodal {
                short_ns: 10_000,
                long_ns: 1_000_000,
                p_long: 0.01,
            },
            ServiceLaw::Deterministic { ns: 5_000 },
        ] {
            let (m, se) = sample_mean(&law, 400_000);
            // Four standard errors, plus half a nanosecond of rounding per draw.
            let tol = 4.0 * se + 0.5;
            assert!(
                (m - law.mean_ns()).abs() < tol,
                "{law:?}: sample {m} +- {se}, closed form {}",
                law.mean_ns()
            );
        }
    }

    #[test]
    fn pareto_stays_in_bounds() {
        let law = ServiceLaw::pareto(1.1);
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        for _ in 0..100_000 {
            let x = law.sample(&mut rng);
            assert!((DEFAULT_PARETO_MIN_NS..=DEFAULT_PARETO_MAX_NS).contains(&x));
        }
    }

    #[test]
    fn trace_rejects_bad_origins_and_time_travel() {
        let t = |a, o| TraceTask {
            arrival_ns: a,
            origin: o,
            service_ns: 1,
            deadline_ns: a + 10,
            size_bytes: 0,
            class: 0,
            estimate_ns: None,
        };
        let mut g = TraceGen::open(&TraceSource::Inline(vec![t(5, 0), t(3, 0)]), 2, None).unwrap();
        assert!(g.next().is_err());
        assert!(TraceGen::open(&TraceSource::Inline(vec![t(5, 2)]), 2, None).is_err());
    }

    #[test]
    fn bursts_are_sorted_and_periodic() {
        let est = Estimator::new(ServiceEstimate::Exact, vec![], ChaCha8Rng::seed_from_u64(4));
        let mut g = BurstGen::new(
            BurstSource::standard(2),
            2,
            ChaCha8Rng::seed_from_u64(3),
            est,
        );
        let mut last = 0;
        for i in 0..48 {
            let t = g.next().unwrap();
            assert!(t.arrival_ns >= last);
            assert_eq!(t.class, 1);
            let burst = i / 16;
            let start = DEFAULT_BURST_PERIOD_NS / 2 + burst as u64 * DEFAULT_BURST_PERIOD_NS;
            assert!(t.arrival_ns >= start && t.arrival_ns < start + DEFAULT_BURST_SPREAD_NS);
            last = t.arrival_ns;
        }
    }
}
