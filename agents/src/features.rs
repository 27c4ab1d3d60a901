//! State features of one task decision: shared features (task + origin's fresh STH + rack
//! aggregates of the origin's stale view) and per-candidate features (stale heartbeat, static
//! speed/cores, and the task's estimated slack on that candidate from the same wait model
//! slack-greedy uses). All scaled to about [-2, 2]; a non-finite value is refused with an
//! error naming the feature, never silently replaced.
//!
//! Candidate features split in two: a *static* part that depends only on the origin's view
//! (the same for every task of that origin in a Step, built once) and a *dynamic* part that
//! depends on the task and on what the Step placed so far (rebuilt for one candidate when an
//! earlier task of the Step lands there). The layout is versioned
//! ([`FEATURE_LAYOUT_VERSION`]); checkpoints carry it and a learner refuses another one.

use malcolm_policies::view::{fresh_heartbeat, GstView, WaitModel};
use malcolm_policies::PolicyError;
use malcolm_proto::bridge::{Hello, PendingTask, Step};
use malcolm_proto::{Heartbeat, STH_BUCKETS};

/// Version of the layout below; bump on any change of meaning or order.
pub const FEATURE_LAYOUT_VERSION: u32 = 3;

/// Names of the shared features, in order (for error messages and the docs).
pub const SHARED_FEATURE_NAMES: [&str; STH_BUCKETS + 14] = [
    "sth_bucket_0",
    "sth_bucket_1",
    "sth_bucket_2",
    "sth_bucket_3",
    "sth_bucket_4",
    "sth_bucket_5",
    "sth_bucket_6",
    "sth_bucket_7",
    "sth_bucket_8",
    "sth_bucket_9",
    "sth_bucket_10",
    "sth_bucket_11",
    "sth_bucket_12",
    "sth_bucket_13",
    "sth_bucket_14",
    "sth_bucket_15",
    "origin_tasks",
    "origin_min_slack",
    "origin_remaining_work",
    "origin_utilisation",
    "service_estimate",
    "service_vs_mean",
    "time_to_deadline",
    "slack_on_reference_core",
    "task_size",
    "task_class",
    "view_mean_rho",
    "view_panic_fraction",
    "view_mean_log_queue",
    "rack_size",
];

/// Names of the candidate features, in order.
pub const CANDIDATE_FEATURE_NAMES: [&str; 18] = [
    "hb_rho",
    "hb_slack_p10",
    "hb_slack_p50",
    "hb_queue",
    "hb_panic",
    "hb_idle",
    "hb_age",
    "hb_missing",
    "speed",
    "cores",
    "is_origin",
    "path_paused",
    "path_queue",
    "path_recent_marks",
    "slack_if_started_now",
    "slack_after_estimated_wait",
    "own_recent_placements",
    "step_placements_by_others",
];

/// Shared features per task.
pub const SHARED_FEATURES: usize = SHARED_FEATURE_NAMES.len();
/// Features per (task, candidate).
pub const CANDIDATE_FEATURES: usize = CANDIDATE_FEATURE_NAMES.len();
/// Candidate features that depend only on the origin's view (a prefix of the layout).
pub const STATIC_CANDIDATE_FEATURES: usize = 14;
/// Largest rack the heartbeat's u8 node id can address.
pub const MAX_NODES: usize = 256;

/// Signed log scaling of a slack or time in us: sign(x) ln(1 + |x|/10) / 4, about [-2, 2]
/// for |x| up to 30 ms, and linear-ish around the 10 us scale where deadlines are decided.
/// A non-finite input stays non-finite (and is then refused).
pub fn slog_us(x_us: f64) -> f32 {
    let x = x_us as f32;
    if !x.is_finite() {
        return x;
    }
    x.signum() * ln_1p(x.abs() / 10.0) / 4.0
}

/// ln(x) for finite x > 0 with an absolute error below 2e-6: the exponent from the bits, the
/// mantissa's log from the series 2 atanh(t), t = (m - 1) / (m + 1) in [0, 1/3]. Features call
/// it thousands of times per Step, where libm's log was a third of the decision time.
#[inline]
pub fn fast_ln(x: f32) -> f32 {
    let bits = x.to_bits();
    let e = ((bits >> 23) & 0xff) as i32 - 127;
    let m = f32::from_bits((bits & 0x007f_ffff) | 0x3f80_0000);
    let t = (m - 1.0) / (m + 1.0);
    let t2 = t * t;
    let series = 1.0 + t2 * (1.0 / 3.0 + t2 * (0.2 + t2 * (1.0 / 7.0 + t2 / 9.0)));
    e as f32 * std::f32::consts::LN_2 + 2.0 * t * series
}

/// ln(1 + x) for x >= 0 (see [`fast_ln`]); non-finite in, non-finite out.
#[inline]
pub fn ln_1p(x: f32) -> f32 {
    if !x.is_finite() {
        return x;
    }
    fast_ln(1.0 + x.max(0.0))
}

/// Static description of a node from `Hello`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NodeInfo {
    pub speed: f64,
    pub cores: u32,
}

/// Builds features for the tasks of a session's Steps. Owns the session's wait model (running
/// service mean, each origin's recent placements, the current Step's placements).
#[derive(Debug, Clone)]
pub struct FeatureBuilder {
    pub nodes: Vec<NodeInfo>,
    pub model: WaitModel,
    /// Whether the Step's link state is read (false: every path looks idle and unpaused).
    links: bool,
}

/// The decoded heartbeat view of one origin (stale GST, its own entry fresh).
#[derive(Debug, Clone, Default)]
pub struct OriginView {
    /// (heartbeat, age in us, missing).
    pub entries: Vec<(Heartbeat, f64, bool)>,
    /// The same ages in ns, exact.
    pub ages_ns: Vec<u64>,
    /// The state part of every node's wait estimate as the origin sees it (it does not change
    /// within the Step; see `WaitModel::state_wait_ns`).
    pub state_wait_ns: Vec<f64>,
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
        if let Some((i, n)) = hello
            .nodes
            .iter()
            .enumerate()
            .find(|(_, n)| !(n.speed.is_finite() && n.speed >= 0.0))
        {
            return Err(PolicyError::InvalidState(format!(
                "node {i} has speed {} (must be a finite number > 0, or 0 for the default 1)",
                n.speed
            )));
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
            model: WaitModel::new(hello),
            links: true,
        })
    }

    /// Ignores the Step's link state (the ablation without link features): the path
    /// features then read as an idle, unpaused path and the wait model sees no path queue.
    pub fn without_links(mut self) -> Self {
        self.links = false;
        self
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
        if let Some(l) = step.links.iter().find(|l| l.node_id as usize >= n) {
            return Err(PolicyError::InvalidState(format!(
                "link {} names node {} >= {n}",
                l.link_id, l.node_id
            )));
        }
        Ok(())
    }

    /// Checks `step` and starts it in the wait model (service mean, new Step placements).
    pub fn begin_step(&mut self, step: &Step) -> Result<(), PolicyError> {
        self.check(step)?;
        self.model.begin_step(step);
        if !self.links {
            // A Step without links resets every port to idle and unpaused.
            self.model.links.update(&Step::default());
        }
        Ok(())
    }

    /// Records that a task of the current Step from `origin` was placed on `target`.
    pub fn record(&mut self, origin: usize, target: usize, task: &PendingTask) {
        self.model.record(origin, target, task.service_estimate_ns);
    }

    /// Decodes the view `origin` has of the rack: its GST for the others, its own fresh
    /// heartbeat for itself. Entries without a heartbeat yet are marked missing.
    pub fn origin_view(&self, step: &Step, origin: usize, out: &mut OriginView) {
        let n = self.n();
        out.entries.clear();
        out.ages_ns.clear();
        out.state_wait_ns.clear();
        out.entries.reserve(n);
        out.ages_ns.reserve(n);
        out.state_wait_ns.reserve(n);
        let own = &step.nodes[origin];
        let gst = GstView::of(step, origin);
        let (mut rho, mut panic, mut lq, mut seen) = (0.0, 0.0, 0.0, 0usize);
        for j in 0..n {
            let (entry, age_ns) = if j == origin {
                ((fresh_heartbeat(own), 0.0, false), 0)
            } else {
                match gst.get(j) {
                    Some((hb, age)) => ((hb, age as f64 / 1e3, false), age),
                    None => ((Heartbeat::default(), 0.0, true), 0),
                }
            };
            // The state part of node j's wait as the origin sees it, from the same entry.
            let known = (!entry.2).then_some((entry.0, age_ns));
            out.state_wait_ns
                .push(self.model.state_wait_from(step, origin, j, known));
            out.ages_ns.push(age_ns);
            if !entry.2 {
                rho += entry.0.rho().min(4.0);
                panic += entry.0.panic() as u8 as f64;
                lq += ln_1p(entry.0.queue_len as f32) as f64;
                seen += 1;
            }
            out.entries.push(entry);
        }
        let seen = seen.max(1) as f64;
        out.mean_rho = rho / seen;
        out.panic_frac = panic / seen;
        out.mean_log_queue = lq / seen;
    }

    /// The static features of candidate `j` as `origin` sees it: the first
    /// [`STATIC_CANDIDATE_FEATURES`] of `row`.
    pub fn static_row(&self, view: &OriginView, origin: usize, j: usize, c: &mut [f32]) {
        let (hb, age_us, missing) = &view.entries[j];
        let info = self.nodes[j];
        c[0] = (hb.rho().min(4.0) / 2.0) as f32;
        c[1] = slog_us(hb.slack_p10_us as f64);
        c[2] = slog_us(hb.slack_p50_us as f64);
        c[3] = ln_1p(hb.queue_len as f32) / 4.0;
        c[4] = hb.panic() as u8 as f32;
        c[5] = hb.idle() as u8 as f32;
        c[6] = ln_1p(age_us.max(0.0) as f32) / 8.0;
        c[7] = *missing as u8 as f32;
        c[8] = info.speed.min(4.0) as f32;
        c[9] = fast_ln(info.cores as f32) / 3.0;
        c[10] = (j == origin) as u8 as f32;
        // The path a task would take: origin uplink, then the candidate's downlink.
        let (paused, queued, marks) = self.model.links.path(origin, j);
        c[11] = paused as u8 as f32;
        c[12] = ln_1p(queued as f32 / 1024.0) / 8.0;
        c[13] = ln_1p(marks as f32) / 4.0;
    }

    /// The static candidate features of every node as `origin` sees it: `out` is
    /// `n x CANDIDATE_FEATURES`; the first [`STATIC_CANDIDATE_FEATURES`] of each row are
    /// written, the dynamic ones are left for [`FeatureBuilder::candidate_dynamic`].
    pub fn origin_static(&self, view: &OriginView, origin: usize, out: &mut [f32]) {
        debug_assert_eq!(out.len(), self.n() * CANDIDATE_FEATURES);
        for (j, c) in out.chunks_exact_mut(CANDIDATE_FEATURES).enumerate() {
            self.static_row(view, origin, j, c);
        }
    }

    /// The dynamic candidate features of `task` on node `j` (the last
    /// `CANDIDATE_FEATURES - STATIC_CANDIDATE_FEATURES` of `row`): slack if started now (after
    /// the transfer, path queues included), slack after the wait model's estimated wait, the
    /// origin's own recent placements on `j` and this Step's placements on `j` by other
    /// origins.
    /// `state_wait_ns` is node `j`'s entry of [`OriginView::state_wait_ns`].
    pub fn candidate_dynamic(
        &self,
        step: &Step,
        task: &PendingTask,
        j: usize,
        state_wait_ns: f64,
        row: &mut [f32],
    ) {
        let o = task.origin as usize;
        let m = &self.model;
        let now = step.sim_time_ns;
        let wait = m.wait_from_state(step, o, j, state_wait_ns);
        let transfer = m.transfer_ns(o, j, task.size_bytes);
        let to_deadline_ns = task.deadline_ns as f64 - now as f64;
        let run_ns = task.service_estimate_ns as f64 / self.nodes[j].speed;
        row[14] = slog_us((to_deadline_ns - transfer - run_ns) / 1e3);
        row[15] = slog_us(
            m.slack_ns(
                now,
                &wait,
                transfer,
                task.service_estimate_ns,
                task.deadline_ns,
                j,
            ) / 1e3,
        );
        row[16] = ln_1p(wait.own_ns as f32 / 1e3) / 8.0;
        row[17] = ln_1p(wait.step_ns as f32 / 1e3) / 8.0;
    }

    /// The wait model's estimated slack (ns) of `task` on every node but those in `skip` (what
    /// `slack_after_estimated_wait` encodes), before any placement of the Step, pushed as
    /// (slack, node) into `out`: ranks a large rack's candidates before their rows are built.
    /// `start_wait` and `path_queue` are the origin's [`WaitModel::total_waits`] and
    /// [`WaitModel::path_queue_ns`] per node, computed once per origin and Step.
    pub fn start_slacks(
        &self,
        step: &Step,
        task: &PendingTask,
        start_wait: &[f64],
        path_queue: &[f64],
        skip: &[u32],
        out: &mut Vec<(f64, u32)>,
    ) {
        let (o, m) = (task.origin as usize, &self.model);
        debug_assert!(m.placements_in_step() == 0, "start-of-Step waits are stale");
        // The same sums as `transfer_ns` and `slack_ns` (local: no transfer).
        let remote = m.net.remote_transfer_ns(task.size_bytes) as f64;
        out.extend((0..self.n() as u32).filter(|j| !skip.contains(j)).map(|j| {
            let ju = j as usize;
            let transfer = if ju == o {
                0.0
            } else {
                remote + path_queue[ju]
            };
            let slack = m.slack_after(
                step.sim_time_ns,
                start_wait[ju],
                transfer,
                task.service_estimate_ns,
                task.deadline_ns,
                ju,
            );
            (slack, j)
        }));
    }

    /// Writes the shared features of `task` into `shared` (len [`SHARED_FEATURES`]); refuses a
    /// non-finite value with the feature's name.
    pub fn task_shared(
        &self,
        step: &Step,
        task: &PendingTask,
        view: &OriginView,
        shared: &mut [f32],
    ) -> Result<(), PolicyError> {
        debug_assert_eq!(shared.len(), SHARED_FEATURES);
        let n = self.n();
        let origin = task.origin as usize;
        let now_us = step.sim_time_ns as f64 / 1e3;
        let service_us = task.service_estimate_ns as f64 / 1e3;
        let to_deadline_us = task.deadline_ns as f64 / 1e3 - now_us;
        let mean_us = self.model.mean_service_ns() / 1e3;
        let node = &step.nodes[origin];
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
        let rest = [
            ln_1p(sth.total_tasks as f32) / 4.0,
            slog_us(sth.min_slack_us as f64),
            ln_1p(sth.sum_load_us as f32) / 8.0,
            node.utilisation.clamp(0.0, 1.0) as f32,
            ln_1p(service_us as f32) / 5.0,
            if mean_us > 0.0 && service_us > 0.0 {
                ((service_us / mean_us).ln() / 2.0).clamp(-4.0, 4.0) as f32
            } else {
                0.0
            },
            slog_us(to_deadline_us),
            slog_us(to_deadline_us - service_us),
            ln_1p(task.size_bytes as f32 / 1024.0) / 5.0,
            task.class.min(1) as f32,
            (view.mean_rho / 2.0) as f32,
            view.panic_frac as f32,
            (view.mean_log_queue / 4.0) as f32,
            fast_ln(n as f32) / 5.0,
        ];
        shared[STH_BUCKETS..].copy_from_slice(&rest);
        if let Some(i) = shared.iter().position(|v| !v.is_finite()) {
            return Err(PolicyError::InvalidState(format!(
                "feature {} of task {} is {} (from the Step's values)",
                SHARED_FEATURE_NAMES[i], task.task_id, shared[i]
            )));
        }
        Ok(())
    }

    /// Refuses a candidate row holding a non-finite value, naming the feature.
    pub fn check_candidate(task: &PendingTask, j: usize, row: &[f32]) -> Result<(), PolicyError> {
        match row.iter().position(|v| !v.is_finite()) {
            None => Ok(()),
            Some(i) => Err(PolicyError::InvalidState(format!(
                "feature {} of task {} on node {j} is {}",
                CANDIDATE_FEATURE_NAMES[i], task.task_id, row[i]
            ))),
        }
    }

    /// All features of `task` (shared, and every candidate's row), for tests and tools that
    /// need one decision's state without a policy.
    pub fn task(
        &self,
        step: &Step,
        task: &PendingTask,
        view: &OriginView,
        shared: &mut [f32],
        cand: &mut [f32],
    ) -> Result<(), PolicyError> {
        self.task_shared(step, task, view, shared)?;
        self.origin_static(view, task.origin as usize, cand);
        for (j, row) in cand.chunks_exact_mut(CANDIDATE_FEATURES).enumerate() {
            self.candidate_dynamic(step, task, j, view.state_wait_ns[j], row);
            Self::check_candidate(task, j, row)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use malcolm_proto::bridge::{GlobalStateView, HeartbeatFields, NodeSpec, NodeState, Sth};

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
            parameters: [
                ("one_way_ns".to_string(), "2500".to_string()),
                ("link_gbps".to_string(), "0".to_string()),
            ]
            .into(),
            ..Default::default()
        }
    }

    fn two_node_step() -> Step {
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
        Step {
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
        }
    }

    #[test]
    fn candidate_slack_reflects_speed_staleness_and_transfer() {
        let hello = rack_hello(&[(1.0, 4), (0.2, 16)]);
        let mut fb = FeatureBuilder::from_hello(&hello).unwrap();
        let step = two_node_step();
        fb.begin_step(&step).unwrap();
        let mut view = OriginView::default();
        fb.origin_view(&step, 0, &mut view);
        assert!(!view.entries[0].2 && !view.entries[1].2);
        assert_eq!(view.entries[1].0.queue_len, 32);
        assert_eq!(view.entries[1].1, 40.0);
        let mut shared = vec![0.0; SHARED_FEATURES];
        let mut cand = vec![0.0; 2 * CANDIDATE_FEATURES];
        fb.task(&step, &step.tasks[0], &view, &mut shared, &mut cand)
            .unwrap();
        // On the fast origin: 30 - 10 = 20 us of slack; on the slow node 30 - 2.5 - 50.
        assert_eq!(cand[14], slog_us(20.0));
        assert_eq!(cand[CANDIDATE_FEATURES + 14], slog_us(-22.5));
        // Slow node wait from the heartbeat: (32 - 16 + 1) tasks * 10 us / (16 * 0.2) = 53.125
        // us when sent, 40 us ago -> 13.125 us left; the task finishes 13.125 + 50 us from now.
        assert_eq!(cand[CANDIDATE_FEATURES + 15], slog_us(30.0 - 13.125 - 50.0));
        assert_eq!(cand[10], 1.0);
        assert_eq!(cand[CANDIDATE_FEATURES + 10], 0.0);
        assert!(shared.iter().chain(cand.iter()).all(|v| v.abs() <= 4.0));
        // Placing a 10 us task of another origin on node 1 in the same Step shows up there.
        let other = PendingTask {
            task_id: 8,
            origin: 1,
            service_estimate_ns: 10_000,
            ..Default::default()
        };
        fb.record(1, 1, &other);
        let mut row = cand[CANDIDATE_FEATURES..].to_vec();
        let state = fb.model.state_wait_ns(&step, 0, 1);
        fb.candidate_dynamic(&step, &step.tasks[0], 1, state, &mut row);
        // 10 us at speed 0.2 on 16 cores = 3.125 us per core.
        assert_eq!(row[17], ln_1p(3.125) / 8.0);
        assert!(row[15] < cand[CANDIDATE_FEATURES + 15]);
    }

    #[test]
    fn a_paused_path_changes_the_candidate_features() {
        let mut hello = rack_hello(&[(1.0, 4), (1.0, 4), (1.0, 4)]);
        hello.parameters.insert("link_gbps".into(), "100".into());
        let mut fb = FeatureBuilder::from_hello(&hello).unwrap();
        let mut step = two_node_step();
        step.nodes.push(NodeState::default());
        let gst = step.nodes[0].gst.as_mut().unwrap();
        gst.heartbeats.extend_from_slice(&[0u8; 16]);
        gst.age_ns.push(u64::MAX);
        let features = |fb: &mut FeatureBuilder, step: &Step| {
            fb.begin_step(step).unwrap();
            let mut view = OriginView::default();
            fb.origin_view(step, 0, &mut view);
            let mut shared = vec![0.0; SHARED_FEATURES];
            let mut cand = vec![0.0; 3 * CANDIDATE_FEATURES];
            fb.task(step, &step.tasks[0], &view, &mut shared, &mut cand)
                .unwrap();
            cand
        };
        let calm = features(&mut fb, &step);
        // Node 2's downlink is PAUSEd with 50 KB queued: only candidate 2's path changes.
        step.links.push(malcolm_proto::bridge::LinkState {
            node_id: 2,
            uplink: false,
            queue_bytes: 50_000,
            pfc_paused: true,
            pause_frames: 7,
            ..Default::default()
        });
        let stormy = features(&mut fb, &step);
        let c = CANDIDATE_FEATURES;
        assert_eq!(calm[..2 * c], stormy[..2 * c], "other candidates unchanged");
        let (before, after) = (&calm[2 * c..], &stormy[2 * c..]);
        assert_eq!((before[11], after[11]), (0.0, 1.0), "path_paused");
        assert!(after[12] > 0.0 && after[13] > 0.0, "path queue and marks");
        // 50 KB ahead at 100 Gbps is 4 us less slack.
        assert!(after[14] < before[14] && after[15] < before[15]);
        // The origin's own (local) candidate has no path.
        assert_eq!(stormy[11..14], [0.0, 0.0, 0.0]);
        // A link naming a node outside the rack is refused.
        step.links[0].node_id = 9;
        assert!(fb.begin_step(&step).is_err());
    }

    #[test]
    fn without_links_a_paused_path_looks_calm() {
        let mut hello = rack_hello(&[(1.0, 4), (1.0, 4)]);
        hello.parameters.insert("link_gbps".into(), "100".into());
        let features = |fb: &mut FeatureBuilder, step: &Step| {
            fb.begin_step(step).unwrap();
            let mut view = OriginView::default();
            fb.origin_view(step, 0, &mut view);
            let mut shared = vec![0.0; SHARED_FEATURES];
            let mut cand = vec![0.0; 2 * CANDIDATE_FEATURES];
            fb.task(step, &step.tasks[0], &view, &mut shared, &mut cand)
                .unwrap();
            cand
        };
        let calm_step = two_node_step();
        let mut stormy_step = calm_step.clone();
        stormy_step.links.push(malcolm_proto::bridge::LinkState {
            node_id: 1,
            uplink: false,
            queue_bytes: 50_000,
            pfc_paused: true,
            pause_frames: 7,
            ..Default::default()
        });
        let mut masked = FeatureBuilder::from_hello(&hello).unwrap().without_links();
        let calm = features(&mut masked, &calm_step);
        let stormy = features(&mut masked, &stormy_step);
        assert_eq!(calm, stormy, "masked: the link state changes nothing");
        let mut full = FeatureBuilder::from_hello(&hello).unwrap();
        let seen = features(&mut full, &stormy_step);
        assert_eq!(seen[CANDIDATE_FEATURES + 11], 1.0, "unmasked: path_paused");
    }

    #[test]
    fn fast_logs_match_libm() {
        let mut x = 1e-6f32;
        while x < 1e9 {
            let (a, b) = (fast_ln(x), (x as f64).ln());
            assert!(
                (a as f64 - b).abs() < 2e-6 * (1.0 + b.abs()),
                "ln({x}): {a} vs {b}"
            );
            let (a, b) = (ln_1p(x), (x as f64).ln_1p());
            assert!(
                (a as f64 - b).abs() < 2e-6 * (1.0 + b.abs()),
                "ln_1p({x}): {a} vs {b}"
            );
            x *= 1.37;
        }
        assert!(slog_us(f64::NAN).is_nan() && slog_us(f64::INFINITY).is_infinite());
        assert_eq!(slog_us(-30.0), -slog_us(30.0));
    }

    #[test]
    fn bad_states_are_refused_with_the_feature_named() {
        let mut fb = FeatureBuilder::from_hello(&rack_hello(&[(1.0, 4), (1.0, 4)])).unwrap();
        let mut step = two_node_step();
        step.tasks[0].origin = 3;
        assert!(fb.begin_step(&step).is_err());
        assert!(FeatureBuilder::from_hello(&Hello::default()).is_err());
        let mut step = two_node_step();
        step.nodes[0].utilisation = f64::NAN;
        fb.begin_step(&step).unwrap();
        let mut view = OriginView::default();
        fb.origin_view(&step, 0, &mut view);
        let mut shared = vec![0.0; SHARED_FEATURES];
        let err = fb
            .task_shared(&step, &step.tasks[0], &view, &mut shared)
            .unwrap_err()
            .to_string();
        assert!(err.contains("origin_utilisation"), "{err}");
        let mut h = rack_hello(&[(1.0, 4)]);
        h.nodes[0].speed = f64::INFINITY;
        assert!(FeatureBuilder::from_hello(&h).is_err());
    }
}
