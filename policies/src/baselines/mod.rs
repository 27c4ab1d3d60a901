//! Fixed-rule baseline policies (design.md section 7): random, round-robin, JSQ, power-of-d,
//! slack-aware greedy, discounted-UCB offloading (TOD-N), and JSQ on the stale heartbeat view
//! (the staleness experiment's herd-prone JSQ), and [`factory_by_name`].
//!
//! They all see the same bridge `Step` as the learned agents. JSQ and power-of-d read the
//! *fresh* queue lengths of the Step and pay for them with a probe delay (`hold_ns`); the
//! slack-aware greedy reads only what the origin node knows (its own fresh state and its stale
//! Global State Table); TOD-N reads nothing but its own past outcomes.

mod jsq;
mod power_of_d;
mod random;
mod round_robin;
mod slack_greedy;
mod stale_jsq;
mod tod_n;

pub use jsq::Jsq;
pub use power_of_d::{sample_distinct, PowerOfD};
pub use random::RandomPolicy;
pub use round_robin::RoundRobin;
pub use slack_greedy::SlackGreedy;
pub use stale_jsq::StaleJsq;
pub use tod_n::TodN;

use crate::{Policy, PolicyError, PolicyFactory};
use malcolm_proto::bridge::{Hello, Step};
use std::collections::BTreeMap;

/// Free-form policy parameters, `key -> value` (e.g. from the CLI's `--policy-param d=3`).
pub type Params = BTreeMap<String, String>;

/// Names [`factory_by_name`] accepts.
pub const NAMES: &[&str] = &[
    "random",
    "round-robin",
    "jsq",
    "power-of-d",
    "po2",
    "slack-greedy",
    "tod-n",
    "jsq-stale",
];

/// One-way propagation when the Hello does not say (design.md section 9: base RTT 5 us).
pub const DEFAULT_T_PROP_NS: u64 = 2_500;
/// Link rate when the Hello does not say (design.md section 9).
pub const DEFAULT_LINK_GBPS: f64 = 100.0;
/// A probe and its answer fit one minimal frame.
pub const DEFAULT_PROBE_BYTES: u32 = 64;
/// Time for a node to answer a probe (read its queue length and reply).
pub const DEFAULT_T_PROC_NS: u64 = 1_000;
/// Power-of-d's d (design.md section 7).
pub const DEFAULT_D: usize = 2;

/// The probe cost model of JSQ and power-of-d: `max_i(2 T_prop + T_ser) + T_proc` over the
/// probed nodes (a probe of the origin itself costs only T_proc).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProbeCost {
    pub enabled: bool,
    pub t_prop_ns: u64,
    pub t_ser_ns: u64,
    pub t_proc_ns: u64,
}

impl Default for ProbeCost {
    fn default() -> Self {
        Self {
            enabled: true,
            t_prop_ns: DEFAULT_T_PROP_NS,
            t_ser_ns: serialisation_ns(DEFAULT_PROBE_BYTES, DEFAULT_LINK_GBPS),
            t_proc_ns: DEFAULT_T_PROC_NS,
        }
    }
}

impl ProbeCost {
    /// Defaults, then the env's network from `Hello.parameters` (`one_way_ns`, `link_gbps`),
    /// then explicit params (`probe_cost=false`, `t_prop_ns`, `t_ser_ns`, `t_proc_ns`).
    pub fn from(hello: &Hello, params: &Params) -> Result<Self, PolicyError> {
        let mut c = Self::default();
        let net = NetInfo::from_hello(hello);
        c.t_prop_ns = net.one_way_ns;
        c.t_ser_ns = serialisation_ns(DEFAULT_PROBE_BYTES, net.link_gbps);
        if let Some(v) = params.get("probe_cost") {
            c.enabled = parse_bool("probe_cost", v)?;
        }
        if let Some(v) = params.get("t_prop_ns") {
            c.t_prop_ns = parse("t_prop_ns", v)?;
        }
        if let Some(v) = params.get("t_ser_ns") {
            c.t_ser_ns = parse("t_ser_ns", v)?;
        }
        if let Some(v) = params.get("t_proc_ns") {
            c.t_proc_ns = parse("t_proc_ns", v)?;
        }
        Ok(c)
    }

    /// Probe cost of asking `probed` from `origin`.
    pub fn cost(&self, origin: u32, probed: impl IntoIterator<Item = u32>) -> u64 {
        if !self.enabled {
            return 0;
        }
        let rtt = probed
            .into_iter()
            .map(|i| {
                if i == origin {
                    0
                } else {
                    2 * self.t_prop_ns + self.t_ser_ns
                }
            })
            .max()
            .unwrap_or(0);
        rtt + self.t_proc_ns
    }
}

/// The env's network as announced in `Hello.parameters`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NetInfo {
    pub one_way_ns: u64,
    pub link_gbps: f64,
}

impl NetInfo {
    pub fn from_hello(hello: &Hello) -> Self {
        let p = &hello.parameters;
        Self {
            one_way_ns: p
                .get("one_way_ns")
                .and_then(|v| v.parse().ok())
                .unwrap_or(DEFAULT_T_PROP_NS),
            link_gbps: p
                .get("link_gbps")
                .and_then(|v| v.parse().ok())
                .unwrap_or(DEFAULT_LINK_GBPS),
        }
    }

    /// Delay for a task of `bytes` from one node to another (0 to itself).
    pub fn transfer_ns(&self, from: u32, to: u32, bytes: u32) -> u64 {
        if from == to {
            0
        } else {
            self.remote_transfer_ns(bytes)
        }
    }

    /// Delay for a task of `bytes` to any other node.
    pub fn remote_transfer_ns(&self, bytes: u32) -> u64 {
        self.one_way_ns + serialisation_ns(bytes, self.link_gbps)
    }
}

/// Serialisation time of `bytes` at `gbps` (0 = infinitely fast), rounded up.
pub fn serialisation_ns(bytes: u32, gbps: f64) -> u64 {
    if gbps <= 0.0 {
        0
    } else {
        (bytes as f64 * 8.0 / gbps).ceil() as u64
    }
}

fn parse<T: std::str::FromStr>(key: &str, v: &str) -> Result<T, PolicyError> {
    v.parse()
        .map_err(|_| PolicyError::InvalidState(format!("policy parameter {key}={v:?} is invalid")))
}

fn parse_bool(key: &str, v: &str) -> Result<bool, PolicyError> {
    match v {
        "true" | "1" | "on" | "yes" => Ok(true),
        "false" | "0" | "off" | "no" => Ok(false),
        _ => Err(PolicyError::InvalidState(format!(
            "policy parameter {key}={v:?} is not a boolean"
        ))),
    }
}

/// Fresh tasks-in-system of every node, from the Step's node states.
pub(crate) fn fresh_queue_lengths(step: &Step, out: &mut Vec<u64>) {
    out.clear();
    out.extend(
        step.nodes
            .iter()
            .map(|n| n.heartbeat.as_ref().map_or(0, |h| h.queue_len as u64)),
    );
}

fn known_keys(params: &Params, keys: &[&str], policy: &str) -> Result<(), PolicyError> {
    if let Some(k) = params.keys().find(|k| !keys.contains(&k.as_str())) {
        return Err(PolicyError::InvalidState(format!(
            "policy {policy} has no parameter {k:?} (known: {})",
            keys.join(", ")
        )));
    }
    Ok(())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Random,
    RoundRobin,
    Jsq,
    PowerOfD,
    SlackGreedy,
    TodN,
    StaleJsq,
}

/// Factory of one baseline; sessions share nothing.
struct BaselineFactory {
    name: String,
    kind: Kind,
    params: Params,
}

const PROBE_KEYS: &[&str] = &["probe_cost", "t_prop_ns", "t_ser_ns", "t_proc_ns"];

impl PolicyFactory for BaselineFactory {
    fn name(&self) -> &str {
        &self.name
    }

    fn decides_inline(&self) -> bool {
        true
    }

    fn new_session(&self, hello: &Hello, seed: u64) -> Result<Box<dyn Policy>, PolicyError> {
        if hello.nodes.is_empty() {
            return Err(PolicyError::Unsupported("empty rack".into()));
        }
        let p = &self.params;
        Ok(match self.kind {
            Kind::Random => Box::new(RandomPolicy::new(hello, seed)),
            Kind::RoundRobin => Box::new(RoundRobin::new(hello)),
            Kind::Jsq => Box::new(Jsq::new(hello, ProbeCost::from(hello, p)?, seed)),
            Kind::PowerOfD => {
                let d = match p.get("d") {
                    Some(v) => parse::<usize>("d", v)?,
                    None => DEFAULT_D,
                };
                if d == 0 {
                    return Err(PolicyError::InvalidState("d must be >= 1".into()));
                }
                Box::new(PowerOfD::new(hello, d, ProbeCost::from(hello, p)?, seed))
            }
            Kind::SlackGreedy => {
                let mut g = SlackGreedy::new(hello, seed);
                if let Some(v) = p.get("sample") {
                    g.sample = if v == "all" {
                        None
                    } else {
                        Some(parse::<usize>("sample", v)?)
                    };
                }
                if let Some(v) = p.get("local_margin_us") {
                    g.local_margin_ns = if v == "none" {
                        None
                    } else {
                        Some(parse::<f64>("local_margin_us", v)? * 1000.0)
                    };
                }
                Box::new(g)
            }
            Kind::TodN => {
                let mut t = TodN::new(hello);
                if let Some(v) = p.get("gamma") {
                    t.gamma = parse("gamma", v)?;
                }
                if let Some(v) = p.get("zeta") {
                    t.zeta = parse("zeta", v)?;
                }
                if !(t.gamma > 0.0 && t.gamma <= 1.0) {
                    return Err(PolicyError::InvalidState("gamma must be in (0, 1]".into()));
                }
                Box::new(t)
            }
            Kind::StaleJsq => Box::new(StaleJsq::new(hello, seed)),
        })
    }
}

/// A baseline by name (`random`, `round-robin`, `jsq`, `power-of-d` / `po2`, `slack-greedy`,
/// `tod-n`, `jsq-stale`) with its parameters: JSQ and power-of-d take the probe keys `probe_cost`,
/// `t_prop_ns`, `t_ser_ns`, `t_proc_ns`, power-of-d also `d`; TOD-N takes `gamma` (discount)
/// and `zeta` (exploration). Unknown names or keys are errors.
pub fn factory_by_name(name: &str, params: &Params) -> Result<Box<dyn PolicyFactory>, PolicyError> {
    let (kind, keys): (Kind, Vec<&str>) = match name {
        "random" => (Kind::Random, vec![]),
        "round-robin" => (Kind::RoundRobin, vec![]),
        "jsq" => (Kind::Jsq, PROBE_KEYS.to_vec()),
        "power-of-d" | "po2" => {
            let mut k = PROBE_KEYS.to_vec();
            k.push("d");
            (Kind::PowerOfD, k)
        }
        "slack-greedy" => (Kind::SlackGreedy, vec!["local_margin_us", "sample"]),
        "tod-n" => (Kind::TodN, vec!["gamma", "zeta"]),
        "jsq-stale" => (Kind::StaleJsq, vec![]),
        other => return Err(PolicyError::UnknownPolicy(other.to_string())),
    };
    known_keys(params, &keys, name)?;
    let mut params = params.clone();
    let name = if name == "po2" {
        params.entry("d".into()).or_insert_with(|| "2".into());
        "power-of-d".to_string()
    } else {
        name.to_string()
    };
    Ok(Box::new(BaselineFactory { name, kind, params }))
}

#[cfg(test)]
pub(crate) mod testkit {
    //! Hand-built Hellos and Steps for the baseline tests.
    use malcolm_proto::bridge::{
        GlobalStateView, HeartbeatFields, Hello, NodeSpec, NodeState, PendingTask, Step, Sth,
    };

    pub fn hello(specs: &[(u32, f64)]) -> Hello {
        Hello {
            env_id: "test".into(),
            nodes: specs
                .iter()
                .enumerate()
                .map(|(i, &(cores, speed))| NodeSpec {
                    node_id: i as u32,
                    cores,
                    speed,
                    kind: "t".into(),
                    discipline: 1,
                })
                .collect(),
            heartbeat_interval_ns: 100_000,
            ..Default::default()
        }
    }

    pub fn node(i: u32, queue_len: u32, sum_load_us: u64) -> NodeState {
        NodeState {
            node_id: i,
            sth: Some(Sth {
                buckets: vec![0; 16],
                total_tasks: queue_len,
                min_slack_us: 0,
                sum_load_us,
            }),
            heartbeat: Some(HeartbeatFields {
                node_id: i,
                flags: if queue_len == 0 { 2 } else { 0 },
                queue_len,
                ..Default::default()
            }),
            gst: None,
            utilisation: 0.0,
        }
    }

    pub fn task(id: u64, origin: u32, service_ns: u64, deadline_ns: u64) -> PendingTask {
        PendingTask {
            task_id: id,
            origin,
            size_bytes: 64,
            service_estimate_ns: service_ns,
            deadline_ns,
            arrival_ns: 0,
            class: 0,
        }
    }

    pub fn step(nodes: Vec<NodeState>, tasks: Vec<PendingTask>) -> Step {
        Step {
            nodes,
            tasks,
            ..Default::default()
        }
    }

    pub fn gst(heartbeats: &[[u8; 16]], age_ns: u64) -> GlobalStateView {
        GlobalStateView {
            heartbeats: heartbeats.iter().flatten().copied().collect(),
            age_ns: vec![age_ns; heartbeats.len()],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_resolve_and_bad_params_are_refused() {
        for name in NAMES {
            let f = factory_by_name(name, &Params::new()).unwrap();
            let h = testkit::hello(&[(1, 1.0), (1, 1.0)]);
            f.new_session(&h, 1).unwrap();
        }
        assert_eq!(
            factory_by_name("po2", &Params::new()).unwrap().name(),
            "power-of-d"
        );
        assert!(matches!(
            factory_by_name("nope", &Params::new()),
            Err(PolicyError::UnknownPolicy(_))
        ));
        let bad: Params = [("q".to_string(), "1".to_string())].into();
        assert!(factory_by_name("jsq", &bad).is_err());
        let d0: Params = [("d".to_string(), "0".to_string())].into();
        let f = factory_by_name("power-of-d", &d0).unwrap();
        assert!(f.new_session(&testkit::hello(&[(1, 1.0)]), 0).is_err());
    }

    #[test]
    fn probe_cost_follows_the_formula() {
        let c = ProbeCost::default();
        // 2 x 2.5 us + 64 B at 100 Gbps (5.12 -> 6 ns) + 1 us.
        assert_eq!(c.cost(0, [1, 2]), 5_000 + 6 + 1_000);
        assert_eq!(c.cost(0, [0]), 1_000);
        let off: Params = [("probe_cost".to_string(), "false".to_string())].into();
        let h = testkit::hello(&[(1, 1.0)]);
        assert_eq!(ProbeCost::from(&h, &off).unwrap().cost(0, [1]), 0);
        let mut h = h;
        h.parameters.insert("one_way_ns".into(), "0".into());
        h.parameters.insert("link_gbps".into(), "0".into());
        let c = ProbeCost::from(&h, &Params::new()).unwrap();
        assert_eq!(c.cost(0, [1]), 1_000);
    }
}
