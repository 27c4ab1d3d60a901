//! State features of one task decision: shared features (task + origin's fresh STH + rack
//! aggregates of the origin's stale view) and per-candidate features (stale heartbeat,
//! static speed/cores, the task's slack on that candidate). All scaled to about [-2, 2].

use malcolm_policies::PolicyError;
use malcolm_proto::bridge::{Hello, NodeState, PendingTask, Step};
use malcolm_proto::{Heartbeat, HEARTBEAT_LEN, STH_BUCKETS};

/// Shared features per task (see [`FeatureBuilder::task`] for the list).
pub const SHARED_FEATURES: usize = STH_BUCKETS + 13;
/// Features per (task, candidate).
pub const CANDIDATE_FEATURES: usize = 13;
/// Largest rack the heartbeat's u8 node id can address.
pub const MAX_NODES: usize = 256;
/// Weight of a new task in the per-session running mean of service estimates (a few hundred
/// tasks of memory: smooth, but follows a change of workload within an episode).
const SERVICE_EMA_WEIGHT: f64 = 0.005;

/// Signed log scaling of a slack or time in us: sign(x) ln(1 + |x|/10) / 4, about [-2, 2]
/// for |x| up to 30 ms, and linear-ish around the 10 us scale where deadlines are decided.
pub fn slog_us(x_us: f64) -> f32 {
    (x_us.signum() * (x_us.abs() / 10.0).ln_1p() / 4.0) as f32
}

/// Static description of a node from `Hello`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NodeInfo {
    pub speed: f64,
    pub cores: u32,
}

/// Builds features for the tasks of a session's Steps; owns the session's running service
/// mean (the only state).
#[derive(Debug, Clone)]
pub struct FeatureBuilder {
    pub nodes: Vec<NodeInfo>,
    mean_service_us: Option<f64>,
}

/// The decoded heartbeat view of one origin (stale GST, its own entry fresh).
#[derive(Debug, Clone, Default)]
pub struct OriginView {
    /// (heartbeat, age in us, missing).
    pub entries: Vec<(Heartbeat, f64, bool)>,
    /// Rack aggregates: mean rho, panic fraction, mean ln(1+queue_len).
    pub mean_rho: f64,
    pub panic_frac: f64,
    pub mean_log_queue: f64,
}

impl FeatureBuilder {
    pub fn from_hello(hello: &Hello) -> Result<Self, PolicyError> {
        if hello.nodes.is_empty() || hello.nodes.len() > MAX_NODES {
            return Err(PolicyError::Unsupported(format!(
                "rack of {} nodes (1..={MAX_NODES} supported)",
                hello.nodes.len()
            )));
        }
        if let Some(sth) = &hello.sth {
            if sth.buckets as usize != STH_BUCKETS {
                return Err(PolicyError::Unsupported(format!(
                    "STH with {} buckets (this agent reads {STH_BUCKETS})",
                    sth.buckets
                )));
            }
        }
        let nodes = hello
            .nodes
            .iter()
            .map(|n| NodeInfo {
                speed: if n.speed > 0.0 { n.speed } else { 1.0 },
                cores: n.cores.max(1),
            })
            .collect();
        Ok(Self {
            nodes,
            mean_service_us: None,
        })
    }

    pub fn n(&self) -> usize {
        self.nodes.len()
    }

    /// Checks a Step against the rack before any feature is built.
    pub fn check(&self, step: &Step) -> Result<(), PolicyError> {
        let n = self.n();
        if step.nodes.len() != n {
            return Err(PolicyError::InvalidState(format!(
                "step has {} node states, rack has {n}",
                step.nodes.len()
            )));
        }
        for t in &step.tasks {
            if t.origin as usize >= n {
                return Err(PolicyError::InvalidState(format!(
                    "task {} has origin {} >= {n}",
                    t.task_id, t.origin
                )));
            }
        }
        Ok(())
    }

    /// Decodes the view `origin` has of the rack: its GST for the others, its own fresh
    /// heartbeat for itself. Entries without a heartbeat yet are marked missing.
    pub fn origin_view(&self, step: &Step, origin: usize, out: &mut OriginView) {
        let n = self.n();
        out.entries.clear();
        let own = &step.nodes[origin];
        let gst = own.gst.as_ref();
        let hb_bytes = gst.map(|g| g.heartbeats.as_slice()).unwrap_or(&[]);
        let ages = gst.map(|g| g.age_ns.as_slice()).unwrap_or(&[]);
        let (mut rho, mut panic, mut lq, mut seen) = (0.0, 0.0, 0.0, 0usize);
        for j in 0..n {
            let entry = if j == origin {
                (fresh_heartbeat(own), 0.0, false)
            } else {
                let bytes = hb_bytes.get(j * HEARTBEAT_LEN..(j + 1) * HEARTBEAT_LEN);
                let age = ages.get(j).copied().unwrap_or(u64::MAX);
                match bytes.and_then(|b| Heartbeat::decode(b).ok()) {
                    Some(hb) if age != u64::MAX => (hb, age as f64 / 1e3, false),
                    _ => (Heartbeat::default(), 0.0, true),
                }
            };
            if !entry.2 {
                rho += entry.0.rho().min(4.0);
                panic += entry.0.panic() as u8 as f64;
                lq += (entry.0.queue_len as f64).ln_1p();
                seen += 1;
            }
            out.entries.push(entry);
        }
        let seen = seen.max(1) as f64;
        out.mean_rho = rho / seen;
        out.panic_frac = panic / seen;
        out.mean_log_queue = lq / seen;
    }

    /// Updates the running mean of service estimates with the tasks of a Step (before the
    /// features of that Step are built, so a session's first Step has a mean too).
    pub fn observe_tasks(&mut self, tasks: &[PendingTask]) {
        for t in tasks {
            let s = t.service_estimate_ns as f64 / 1e3;
            self.mean_service_us = Some(match self.mean_service_us {
                None => s,
                Some(m) => m + SERVICE_EMA_WEIGHT * (s - m),
            });
        }
    }

    /// Writes the shared features of `task` into `shared` (len [`SHARED_FEATURES`]) and its
    /// candidate features into `cand` (len n * [`CANDIDATE_FEATURES`]).
    ///
    /// Shared: origin STH bucket fractions (16); ln(1+total)/4; slog(min slack); ln(1+sum
    /// load)/8; origin utilisation; ln(1+service)/5; slog(deadline - now); slog(slack on a
    /// reference core); ln(1+size KiB)/5; class; mean rho/2; panic fraction; mean
    /// ln(1+queue)/4; ln(n)/5.
    ///
    /// Candidate: rho/2 (clipped at 4); slog(p10); slog(p50); ln(1+queue)/4; panic; idle;
    /// ln(1+age)/8; missing; speed; ln(cores)/3; is origin; slog(slack if started now on the
    /// candidate); slog(slack after the candidate's estimated queue wait).
    pub fn task(
        &self,
        step: &Step,
        task: &PendingTask,
        view: &OriginView,
        shared: &mut [f32],
        cand: &mut [f32],
    ) {
        let n = self.n();
        debug_assert_eq!(shared.len(), SHARED_FEATURES);
        debug_assert_eq!(cand.len(), n * CANDIDATE_FEATURES);
        let origin = task.origin as usize;
        let now_us = step.sim_time_ns as f64 / 1e3;
        let service_us = task.service_estimate_ns as f64 / 1e3;
        let to_deadline_us = task.deadline_ns as f64 / 1e3 - now_us;
        let mean_service_us = self.mean_service_us.unwrap_or(service_us);

        let node: &NodeState = &step.nodes[origin];
        let sth = node.sth.clone().unwrap_or_default();
        let total = sth.total_tasks.max(1) as f32;
        for (b, slot) in shared.iter_mut().enumerate().take(STH_BUCKETS) {
            let count = sth.buckets.get(b).copied().unwrap_or(0) as f32;
            *slot = if sth.total_tasks == 0 {
                0.0
            } else {
                count / total
            };
        }
        let mut i = STH_BUCKETS;
        let mut push = |v: f32| {
            shared[i] = if v.is_finite() { v } else { 0.0 };
            i += 1;
        };
        push((sth.total_tasks as f32).ln_1p() / 4.0);
        push(slog_us(sth.min_slack_us as f64));
        push((sth.sum_load_us as f32).ln_1p() / 8.0);
        push(node.utilisation.clamp(0.0, 1.0) as f32);
        push((service_us as f32).ln_1p() / 5.0);
        push(slog_us(to_deadline_us));
        push(slog_us(to_deadline_us - service_us));
        push((task.size_bytes as f32 / 1024.0).ln_1p() / 5.0);
        push(task.class.min(1) as f32);
        push((view.mean_rho / 2.0) as f32);
        push(view.panic_frac as f32);
        push((view.mean_log_queue / 4.0) as f32);
        push((n as f32).ln() / 5.0);
        debug_assert_eq!(i, SHARED_FEATURES);

        for (j, c) in cand.chunks_exact_mut(CANDIDATE_FEATURES).enumerate() {
            let (hb, age_us, missing) = &view.entries[j];
            let info = self.nodes[j];
            let cores = info.cores as f64;
            let wait_us = hb.queue_len as f64 * mean_service_us / cores / info.speed;
            let run_us = service_us / info.speed;
            c[0] = (hb.rho().min(4.0) / 2.0) as f32;
            c[1] = slog_us(hb.slack_p10_us as f64);
            c[2] = slog_us(hb.slack_p50_us as f64);
            c[3] = (hb.queue_len as f32).ln_1p() / 4.0;
            c[4] = hb.panic() as u8 as f32;
            c[5] = hb.idle() as u8 as f32;
            c[6] = (age_us.max(0.0) as f32).ln_1p() / 8.0;
            c[7] = *missing as u8 as f32;
            c[8] = info.speed.min(4.0) as f32;
            c[9] = (cores as f32).ln() / 3.0;
            c[10] = (j == origin) as u8 as f32;
            c[11] = slog_us(to_deadline_us - run_us);
            c[12] = if *missing {
                c[11]
            } else {
                slog_us(to_deadline_us - wait_us - run_us)
            };
        }
    }
}

/// A node's own heartbeat fields as a decoded heartbeat (saturated like the wire format).
fn fresh_heartbeat(node: &NodeState) -> Heartbeat {
    match &node.heartbeat {
        Some(h) => Heartbeat::from_values(
            h.node_id as u8,
            h.flags as u8,
            h.load_factor_milli as u64,
            h.slack_p10_us as i64,
            h.slack_p50_us as i64,
            h.queue_len as u64,
            h.policy_version,
        ),
        None => Heartbeat::default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use malcolm_proto::bridge::{GlobalStateView, HeartbeatFields, NodeSpec, Sth};

    pub(crate) fn rack_hello(speeds: &[(f64, u32)]) -> Hello {
        Hello {
            env_id: "t".into(),
            nodes: speeds
                .iter()
                .enumerate()
                .map(|(i, &(speed, cores))| NodeSpec {
                    node_id: i as u32,
                    cores,
                    speed,
                    ..Default::default()
                })
                .collect(),
            sth: Some(malcolm_proto::sth_config()),
            ..Default::default()
        }
    }

    #[test]
    fn candidate_slack_reflects_speed_and_staleness() {
        let hello = rack_hello(&[(1.0, 4), (0.2, 16)]);
        let fb = FeatureBuilder::from_hello(&hello).unwrap();
        let hb1 = Heartbeat::from_values(1, 0, 500, 10, 20, 32, 0).encode();
        let mut heartbeats = vec![0u8; 32];
        heartbeats[16..].copy_from_slice(&hb1);
        let node0 = NodeState {
            node_id: 0,
            sth: Some(Sth {
                buckets: vec![0; 16],
                ..Default::default()
            }),
            heartbeat: Some(HeartbeatFields {
                queue_len: 0,
                flags: 2,
                ..Default::default()
            }),
            gst: Some(GlobalStateView {
                heartbeats,
                age_ns: vec![u64::MAX, 40_000],
            }),
            utilisation: 0.0,
        };
        let step = Step {
            sim_time_ns: 1_000_000,
            nodes: vec![node0, NodeState::default()],
            tasks: vec![PendingTask {
                task_id: 7,
                origin: 0,
                service_estimate_ns: 10_000,
                deadline_ns: 1_030_000,
                ..Default::default()
            }],
            ..Default::default()
        };
        fb.check(&step).unwrap();
        let mut view = OriginView::default();
        fb.origin_view(&step, 0, &mut view);
        assert!(!view.entries[0].2 && !view.entries[1].2);
        assert_eq!(view.entries[1].0.queue_len, 32);
        assert_eq!(view.entries[1].1, 40.0);
        let mut shared = vec![0.0; SHARED_FEATURES];
        let mut cand = vec![0.0; 2 * CANDIDATE_FEATURES];
        fb.task(&step, &step.tasks[0], &view, &mut shared, &mut cand);
        // On the fast origin: 30 - 10 = 20 us of slack; on the slow node: 30 - 50 = -20 us.
        assert_eq!(cand[11], slog_us(20.0));
        assert_eq!(cand[CANDIDATE_FEATURES + 11], slog_us(-20.0));
        // Slow node wait: 32 tasks * 10 us / 16 cores / 0.2 = 100 us.
        assert_eq!(cand[CANDIDATE_FEATURES + 12], slog_us(30.0 - 100.0 - 50.0));
        assert_eq!(cand[10], 1.0);
        assert_eq!(cand[CANDIDATE_FEATURES + 10], 0.0);
        assert!(shared.iter().chain(cand.iter()).all(|v| v.abs() <= 4.0));
    }

    #[test]
    fn bad_states_are_refused() {
        let fb = FeatureBuilder::from_hello(&rack_hello(&[(1.0, 4)])).unwrap();
        let step = Step {
            nodes: vec![NodeState::default()],
            tasks: vec![PendingTask {
                origin: 3,
                ..Default::default()
            }],
            ..Default::default()
        };
        assert!(fb.check(&step).is_err());
        assert!(FeatureBuilder::from_hello(&Hello::default()).is_err());
    }
}
