//! Scenarios: the serialisable description of a rack, its workload, network and limits, and
//! the named ones of the experiments (`hetero`, `ideal`, `homogeneous-N`, ...).

use crate::error::SimError;
use crate::node::{Discipline, NodeSpec, NodeTiming};
use crate::workload::{
    BurstSource, DeadlineRule, Load, PoissonSource, ServiceEstimate, ServiceLaw, TraceSource,
    Workload, DEFAULT_TASK_SIZE_BYTES,
};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Tasks per episode (design.md section 9: runs of 1e6 tasks).
pub const DEFAULT_TASKS: u64 = 1_000_000;
/// Warm-up tasks excluded from the metrics (design.md section 9: 5e4).
pub const DEFAULT_WARMUP_TASKS: u64 = 50_000;
/// Heartbeat period T_hb (design.md section 9: 50 / 100 / 500 us; 100 us is the middle).
pub const DEFAULT_HEARTBEAT_INTERVAL_NS: u64 = 100_000;
/// One-way network delay: half the 5 us base RTT (design.md section 9).
pub const DEFAULT_ONE_WAY_NS: u64 = 2_500;
/// Link rate for payload serialisation (design.md section 9: 100 Gbps).
pub const DEFAULT_LINK_GBPS: f64 = 100.0;
/// Arrivals within this window share a decision step: the dispatcher's polling quantum, and it
/// keeps the per-step cost of a 64-node state vector off every single task.
pub const DEFAULT_DECISION_WINDOW_NS: u64 = 1_000;
/// Most tasks in one Step; a full batch is decided at once (bounds message size and delay).
pub const DEFAULT_MAX_BATCH: usize = 64;
/// Default load of the named scenarios: high enough that placement matters.
pub const DEFAULT_RHO: f64 = 0.8;
/// Default Pareto tail (design.md section 9 sweeps 1.1..2.5; 1.5 has infinite variance without the bound).
pub const DEFAULT_ALPHA: f64 = 1.5;
/// Deadline factor F: the design's tight 3 (with the loose 10, every baseline meets almost
/// every deadline on these racks and the experiments show nothing).
pub const DEFAULT_DEADLINE_FACTOR: f64 = 3.0;
/// Load of `hetero` and `ideal`: with F = 3 only the fast nodes can meet deadlines, and at
/// 0.5 of the hetero capacity their demand (8.8 reference cores) just exceeds their 8, so
/// placement decides (Po2 + FCFS misses ~40%, the ideal rack ~0.4%).
pub const DEFAULT_HETERO_RHO: f64 = 0.5;
/// Largest rack: the heartbeat's node id is a u8.
pub const MAX_NODES: usize = 256;

/// The names [`by_name`] knows.
pub const NAMES: &[&str] = &[
    "hetero",
    "ideal",
    "homogeneous-16",
    "homogeneous-32",
    "homogeneous-64",
    "heavy-tail",
    "microburst",
    "staleness",
];

/// Ideal network of Phase 1: a fixed one-way delay and serialisation on the origin's uplink.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct NetworkModel {
    pub one_way_ns: u64,
    /// 0 means infinitely fast (no serialisation delay).
    pub link_gbps: f64,
}

impl Default for NetworkModel {
    fn default() -> Self {
        Self {
            one_way_ns: DEFAULT_ONE_WAY_NS,
            link_gbps: DEFAULT_LINK_GBPS,
        }
    }
}

impl NetworkModel {
    /// No delay at all (queueing-theory checks).
    pub fn zero() -> Self {
        Self {
            one_way_ns: 0,
            link_gbps: 0.0,
        }
    }

    /// Serialisation time of `bytes` on one link, ns (rounded up).
    pub fn serialisation_ns(&self, bytes: u32) -> u64 {
        if self.link_gbps <= 0.0 {
            0
        } else {
            (bytes as f64 * 8.0 / self.link_gbps).ceil() as u64
        }
    }
}

/// When pending arrivals are handed to the agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DecisionConfig {
    /// A Step is taken this long after the first pending arrival (0: at the arrival instant,
    /// together with any other arrival of the same nanosecond).
    pub window_ns: u64,
    /// A Step is taken at once when this many tasks are pending.
    pub max_batch: usize,
}

impl Default for DecisionConfig {
    fn default() -> Self {
        Self {
            window_ns: DEFAULT_DECISION_WINDOW_NS,
            max_batch: DEFAULT_MAX_BATCH,
        }
    }
}

/// When an episode is cut (EndReason::Truncated).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct EpisodeLimits {
    /// After this many arrivals the episode ends once all of them have finished; later
    /// arrivals keep the load steady meanwhile but are not measured.
    pub tasks: Option<u64>,
    pub sim_time_ns: Option<u64>,
}

/// A complete, serialisable experiment configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Scenario {
    pub name: String,
    pub nodes: Vec<NodeSpec>,
    pub timing: NodeTiming,
    pub workload: Workload,
    pub network: NetworkModel,
    pub heartbeat_interval_ns: u64,
    pub decision: DecisionConfig,
    pub limits: EpisodeLimits,
    /// The first `warmup_tasks` arrivals of each episode are excluded from the metrics.
    pub warmup_tasks: u64,
    /// What the policies, the deadlines and the nodes' admission tests know of service times
    /// (default: noisy, sigma 0.5).
    #[serde(default)]
    pub estimate: ServiceEstimate,
}

impl Scenario {
    /// A rack with a Poisson workload and the default network, timing and limits.
    pub fn poisson(name: &str, nodes: Vec<NodeSpec>, source: PoissonSource) -> Self {
        Self {
            name: name.into(),
            nodes,
            timing: NodeTiming::default(),
            workload: Workload {
                poisson: Some(source),
                bursts: None,
                trace: None,
            },
            network: NetworkModel::default(),
            heartbeat_interval_ns: DEFAULT_HEARTBEAT_INTERVAL_NS,
            decision: DecisionConfig::default(),
            limits: EpisodeLimits {
                tasks: Some(DEFAULT_TASKS),
                sim_time_ns: None,
            },
            warmup_tasks: DEFAULT_WARMUP_TASKS,
            estimate: ServiceEstimate::default(),
        }
    }

    /// A rack replaying a task trace to its end (EndReason::Terminated), nothing excluded.
    pub fn trace(name: &str, nodes: Vec<NodeSpec>, trace: TraceSource) -> Self {
        Self {
            name: name.into(),
            nodes,
            timing: NodeTiming::default(),
            workload: Workload {
                poisson: None,
                bursts: None,
                trace: Some(trace),
            },
            network: NetworkModel::default(),
            heartbeat_interval_ns: DEFAULT_HEARTBEAT_INTERVAL_NS,
            decision: DecisionConfig::default(),
            limits: EpisodeLimits {
                tasks: None,
                sim_time_ns: None,
            },
            warmup_tasks: 0,
            estimate: ServiceEstimate::default(),
        }
    }

    /// `n` identical fast EDF nodes under the default Pareto workload.
    pub fn homogeneous(n: usize) -> Self {
        Self::poisson(
            &format!("homogeneous-{n}"),
            vec![NodeSpec::fast(Discipline::edf()); n],
            default_source(Load::Rho(DEFAULT_RHO)),
        )
    }

    /// 2 fast : 3 slow nodes (times `scale`), the design's heterogeneity experiment.
    pub fn hetero(scale: usize) -> Self {
        let mut nodes = vec![NodeSpec::fast(Discipline::edf()); 2 * scale];
        nodes.extend(vec![NodeSpec::slow(Discipline::edf()); 3 * scale]);
        Self::poisson(
            "hetero",
            nodes,
            default_source(Load::Rho(DEFAULT_HETERO_RHO)),
        )
    }

    /// 5 fast nodes (times `scale`) offered the same task rate as [`Scenario::hetero`] at
    /// load `hetero_rho`.
    pub fn ideal(scale: usize, hetero_rho: f64) -> Self {
        let mut hetero = Self::hetero(scale);
        if let Some(p) = hetero.workload.poisson.as_mut() {
            p.load = Load::Rho(hetero_rho);
        }
        let rate = hetero
            .arrival_rate_per_s()
            .expect("hetero has a Poisson source");
        Self::poisson(
            "ideal",
            vec![NodeSpec::fast(Discipline::edf()); 5 * scale],
            default_source(Load::PerSecond(rate)),
        )
    }

    /// Sum of cores x speed.
    pub fn capacity(&self) -> f64 {
        self.nodes.iter().map(NodeSpec::capacity).sum()
    }

    /// Poisson arrival rate, tasks per second of simulated time.
    pub fn arrival_rate_per_s(&self) -> Option<f64> {
        let p = self.workload.poisson.as_ref()?;
        Some(match p.load {
            Load::Rho(rho) => rho * self.capacity() / p.service.mean_ns() * 1e9,
            Load::PerSecond(r) => r,
        })
    }

    /// Sets every node's discipline.
    pub fn with_discipline(mut self, d: Discipline) -> Self {
        for n in &mut self.nodes {
            n.discipline = d;
        }
        self
    }

    pub fn validate(&self) -> Result<(), SimError> {
        let bad = |m: String| Err(SimError::InvalidScenario(m));
        if self.nodes.is_empty() || self.nodes.len() > MAX_NODES {
            return bad(format!(
                "a rack has 1..={MAX_NODES} nodes, got {}",
                self.nodes.len()
            ));
        }
        for (i, n) in self.nodes.iter().enumerate() {
            if n.cores == 0 || !(n.speed > 0.0 && n.speed.is_finite()) {
                return bad(format!("node {i}: cores must be >= 1 and speed > 0"));
            }
        }
        if self.heartbeat_interval_ns == 0 {
            return bad("heartbeat interval must be > 0".into());
        }
        if self.decision.max_batch == 0 {
            return bad("max_batch must be >= 1".into());
        }
        self.estimate.validate()?;
        let w = &self.workload;
        if w.poisson.is_none() && w.bursts.is_none() && w.trace.is_none() {
            return bad("the workload has no source".into());
        }
        if let Some(p) = &w.poisson {
            p.service.validate()?;
            let ok = match p.load {
                Load::Rho(r) => r > 0.0 && r.is_finite(),
                Load::PerSecond(r) => r > 0.0 && r.is_finite(),
            };
            if !ok {
                return bad(format!("load must be positive, got {:?}", p.load));
            }
        }
        if let Some(b) = &w.bursts {
            b.service.validate()?;
            if b.period_ns == 0 {
                return bad("burst period must be > 0".into());
            }
        }
        if w.trace.is_none() && self.limits.tasks.is_none() && self.limits.sim_time_ns.is_none() {
            return bad("an endless workload needs a task or sim-time limit".into());
        }
        Ok(())
    }

    /// Applies one `key=value` override (see [`by_name`] for the keys).
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), SimError> {
        let num = |v: &str| -> Result<f64, SimError> {
            v.parse::<f64>()
                .map_err(|_| SimError::InvalidScenario(format!("{key}={v}: not a number")))
        };
        let int = |v: &str| -> Result<u64, SimError> {
            v.parse::<u64>()
                .map_err(|_| SimError::InvalidScenario(format!("{key}={v}: not an integer")))
        };
        fn poisson<'a>(s: &'a mut Scenario, key: &str) -> Result<&'a mut PoissonSource, SimError> {
            s.workload.poisson.as_mut().ok_or_else(|| {
                SimError::InvalidScenario(format!("{key}: the scenario has no Poisson source"))
            })
        }
        match key {
            "rho" => poisson(self, key)?.load = Load::Rho(num(value)?),
            "rate" => poisson(self, key)?.load = Load::PerSecond(num(value)?),
            "alpha" => {
                let a = num(value)?;
                match &mut poisson(self, key)?.service {
                    ServiceLaw::BoundedPareto { alpha, .. } => *alpha = a,
                    other => *other = ServiceLaw::pareto(a),
                }
            }
            "f" | "deadline_factor" => {
                poisson(self, key)?.deadline = DeadlineRule::Factor(num(value)?)
            }
            "tasks" => self.limits.tasks = Some(int(value)?),
            "warmup" => self.warmup_tasks = int(value)?,
            "sim_time_ms" => self.limits.sim_time_ns = Some(int(value)? * 1_000_000),
            "t_hb_us" => self.heartbeat_interval_ns = int(value)? * 1_000,
            "t_hb_ns" => self.heartbeat_interval_ns = int(value)?,
            "window_ns" => self.decision.window_ns = int(value)?,
            "max_batch" => self.decision.max_batch = int(value)? as usize,
            "one_way_ns" => self.network.one_way_ns = int(value)?,
            "link_gbps" => self.network.link_gbps = num(value)?,
            "discipline" => {
                let d = Discipline::parse(value).ok_or_else(|| {
                    SimError::InvalidScenario(format!("discipline {value:?}: edf, fcfs or ps"))
                })?;
                for n in &mut self.nodes {
                    n.discipline = d;
                }
            }
            "early_drop" => {
                let on = value == "true" || value == "1";
                for n in &mut self.nodes {
                    n.discipline.early_drop = on;
                }
            }
            "estimate" => {
                self.estimate = match ServiceEstimate::parse(value) {
                    // Keep a sigma set earlier in the same spec.
                    Some(ServiceEstimate::Noisy { .. })
                        if matches!(self.estimate, ServiceEstimate::Noisy { .. }) =>
                    {
                        self.estimate
                    }
                    Some(e) => e,
                    None => {
                        return Err(SimError::InvalidScenario(format!(
                            "estimate {value:?}: exact, class_mean or noisy"
                        )))
                    }
                }
            }
            "estimate_sigma" => {
                self.estimate = ServiceEstimate::Noisy { sigma: num(value)? };
                self.estimate.validate()?;
            }
            _ => {
                return Err(SimError::InvalidScenario(format!(
                    "unknown parameter {key:?}"
                )))
            }
        }
        Ok(())
    }

    /// Description for `Hello.parameters`.
    pub fn parameters(&self) -> BTreeMap<String, String> {
        let mut m = BTreeMap::new();
        m.insert("capacity".into(), format!("{}", self.capacity()));
        m.insert("one_way_ns".into(), self.network.one_way_ns.to_string());
        m.insert("link_gbps".into(), format!("{}", self.network.link_gbps));
        m.insert(
            "decision_window_ns".into(),
            self.decision.window_ns.to_string(),
        );
        m.insert("warmup_tasks".into(), self.warmup_tasks.to_string());
        m.insert("service_estimate".into(), self.estimate.label());
        if let Some(t) = self.limits.tasks {
            m.insert("tasks".into(), t.to_string());
        }
        if let Some(p) = &self.workload.poisson {
            m.insert("service".into(), p.service.label());
            m.insert(
                "mean_service_ns".into(),
                format!("{:.0}", p.service.mean_ns()),
            );
            match p.load {
                Load::Rho(r) => m.insert("rho".into(), format!("{r}")),
                Load::PerSecond(r) => m.insert("rate_per_s".into(), format!("{r}")),
            };
            m.insert("deadline".into(), format!("{:?}", p.deadline));
            if let Some(r) = self.arrival_rate_per_s() {
                m.insert("arrival_rate_per_s".into(), format!("{r:.1}"));
            }
        }
        if let Some(b) = &self.workload.bursts {
            m.insert(
                "bursts".into(),
                format!(
                    "every {} ns, {} tasks within {} ns, deadline {} ns",
                    b.period_ns, b.count, b.spread_ns, b.relative_deadline_ns
                ),
            );
        }
        if let Some(t) = &self.workload.trace {
            m.insert(
                "trace".into(),
                match t {
                    TraceSource::File(p) => p.display().to_string(),
                    TraceSource::Inline(v) => format!("inline ({} tasks)", v.len()),
                },
            );
        }
        m
    }
}

fn default_source(load: Load) -> PoissonSource {
    PoissonSource {
        load,
        service: ServiceLaw::pareto(DEFAULT_ALPHA),
        deadline: DeadlineRule::Factor(DEFAULT_DEADLINE_FACTOR),
        size_bytes: DEFAULT_TASK_SIZE_BYTES,
    }
}

/// A named scenario, optionally with overrides: `name[:key=value,key=value...]`.
///
/// Names: `hetero` (2 fast : 3 slow; `scale=k` for 2k : 3k), `ideal` (5 fast at hetero's task
/// rate; its `rho` is hetero's load), `homogeneous-16|32|64` (or `homogeneous-N`), `heavy-tail` (16 fast, `alpha`, default
/// 1.1), `microburst` (16 fast plus the 100 ms bursts), `staleness` (16 fast, `t_hb_us`).
/// Keys for any scenario: `rho`, `rate`, `alpha`, `f`, `tasks`, `warmup`, `sim_time_ms`,
/// `t_hb_us`, `t_hb_ns`, `window_ns`, `max_batch`, `one_way_ns`, `link_gbps`, `discipline`
/// (edf|fcfs|ps), `early_drop`, `estimate` (exact|class_mean|noisy; default noisy) and
/// `estimate_sigma` (implies noisy; default 0.5).
pub fn by_name(spec: &str) -> Result<Scenario, SimError> {
    let (name, params) = match spec.split_once(':') {
        Some((n, p)) => (n, p),
        None => (spec, ""),
    };
    let mut kv: Vec<(&str, &str)> = Vec::new();
    for part in params.split(',').filter(|p| !p.trim().is_empty()) {
        let (k, v) = part.split_once('=').ok_or_else(|| {
            SimError::InvalidScenario(format!("parameter {part:?} is not key=value"))
        })?;
        kv.push((k.trim(), v.trim()));
    }
    let take = |kv: &mut Vec<(&str, &str)>, key: &str| -> Option<String> {
        let i = kv.iter().position(|(k, _)| *k == key)?;
        Some(kv.remove(i).1.to_string())
    };
    let scale = match take(&mut kv, "scale") {
        Some(v) => v
            .parse::<usize>()
            .ok()
            .filter(|&s| s >= 1 && s * 5 <= MAX_NODES)
            .ok_or_else(|| SimError::InvalidScenario(format!("scale={v}")))?,
        None => 1,
    };
    let mut s = match name {
        "hetero" => Scenario::hetero(scale),
        "ideal" => {
            // `rho` means hetero's load here, so `ideal:rho=x` pairs with `hetero:rho=x`.
            let rho = match take(&mut kv, "rho") {
                Some(v) => v
                    .parse::<f64>()
                    .map_err(|_| SimError::InvalidScenario(format!("rho={v}: not a number")))?,
                None => DEFAULT_HETERO_RHO,
            };
            Scenario::ideal(scale, rho)
        }
        "heavy-tail" => {
            let mut s = Scenario::homogeneous(16);
            s.name = "heavy-tail".into();
            s.set("alpha", "1.1")?;
            s
        }
        "microburst" => {
            let mut s = Scenario::homogeneous(16);
            s.name = "microburst".into();
            s.set("rho", "0.6")?;
            s.workload.bursts = Some(BurstSource::standard(16));
            s
        }
        "staleness" => {
            let mut s = Scenario::homogeneous(16);
            s.name = "staleness".into();
            s
        }
        n if n.starts_with("homogeneous-") => {
            let count = n["homogeneous-".len()..]
                .parse::<usize>()
                .ok()
                .filter(|&c| (1..=MAX_NODES).contains(&c))
                .ok_or_else(|| SimError::UnknownScenario(n.into()))?;
            Scenario::homogeneous(count)
        }
        other => return Err(SimError::UnknownScenario(other.into())),
    };
    for (k, v) in kv {
        s.set(k, v)?;
    }
    if !params.is_empty() {
        s.name = spec.to_string();
    }
    s.validate()?;
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_named_scenario_is_valid_and_serialisable() {
        for name in NAMES {
            let s = by_name(name).unwrap();
            let json = serde_json::to_string(&s).unwrap();
            let back: Scenario = serde_json::from_str(&json).unwrap();
            assert_eq!(back, s, "{name}");
        }
        assert!(matches!(by_name("nope"), Err(SimError::UnknownScenario(_))));
    }

    #[test]
    fn hetero_and_ideal_share_the_task_rate() {
        let h = by_name("hetero:rho=0.7").unwrap();
        let i = by_name("ideal:rho=0.7").unwrap();
        assert_eq!(h.nodes.len(), 5);
        assert_eq!(h.nodes.iter().filter(|n| n.kind == "slow").count(), 3);
        assert!((h.capacity() - 17.6).abs() < 1e-9);
        let (rh, ri) = (
            h.arrival_rate_per_s().unwrap(),
            i.arrival_rate_per_s().unwrap(),
        );
        assert!((rh - ri).abs() < 1e-6 * rh);
    }

    #[test]
    fn overrides_apply() {
        let s = by_name("heavy-tail:alpha=1.3,rho=0.5,t_hb_us=500,discipline=fcfs").unwrap();
        let p = s.workload.poisson.as_ref().unwrap();
        assert_eq!(p.load, Load::Rho(0.5));
        assert!(matches!(p.service, ServiceLaw::BoundedPareto { alpha, .. } if alpha == 1.3));
        assert_eq!(s.heartbeat_interval_ns, 500_000);
        assert!(s.nodes.iter().all(|n| n.discipline == Discipline::fcfs()));
        assert_eq!(by_name("hetero:scale=2").unwrap().nodes.len(), 10);
        assert_eq!(
            by_name("hetero").unwrap().estimate,
            ServiceEstimate::Noisy { sigma: 0.5 }
        );
        assert_eq!(
            by_name("hetero:estimate=exact").unwrap().estimate,
            ServiceEstimate::Exact
        );
        assert_eq!(
            by_name("hetero:estimate=class_mean").unwrap().estimate,
            ServiceEstimate::ClassMean
        );
        assert_eq!(
            by_name("hetero:estimate_sigma=0.3").unwrap().estimate,
            ServiceEstimate::Noisy { sigma: 0.3 }
        );
        assert_eq!(
            by_name("hetero:estimate_sigma=0.3,estimate=noisy")
                .unwrap()
                .estimate,
            ServiceEstimate::Noisy { sigma: 0.3 }
        );
        assert!(by_name("hetero:estimate=oracle").is_err());
        assert!(by_name("hetero:estimate_sigma=-1").is_err());
        assert!(by_name("staleness:bogus=1").is_err());
        assert!(by_name("homogeneous-300").is_err());
    }
}
