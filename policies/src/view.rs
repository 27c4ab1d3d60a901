//! What an origin node knows of the rack when it places a task, in one place: its stale Global
//! State Table ([`GstView`]), and the wait estimate built from it ([`WaitModel`]) that
//! slack-greedy and the learner's features both use, so the heuristic and the learner reason
//! from the same numbers.
//!
//! The estimate of the wait before a new task could start on node `j`, as origin `o` sees it:
//! - `j == o`: the origin's fresh state (remaining work over its cores once all are busy);
//! - otherwise the heartbeat in `o`'s GST: tasks beyond the free cores times the running mean
//!   service estimate, minus the heartbeat's age (the node kept working since), plus what `o`
//!   itself sent to `j` that the heartbeat cannot show yet;
//! - in both cases plus the work placed on `j` earlier in the same Step by other origins (the
//!   agent decides a Step's tasks together, so it knows them; without this, every task of a
//!   Step would herd onto the same best-looking node).
//!
//! The transfer to a remote node crosses the origin's uplink and the node's downlink: their
//! queued bytes from the Step's link state ([`LinkView`]) add to the one-way delay and the
//! serialisation. Link state is switch/NIC telemetry read at the Step, not part of the stale
//! heartbeat view.

use crate::baselines::NetInfo;
use malcolm_proto::bridge::{Hello, NodeState, Step};
use malcolm_proto::{columns, Heartbeat, HEARTBEAT_LEN};

/// How many observed tasks the running mean of service estimates averages over at most (it then
/// becomes an exponential average that follows drifting workloads).
pub const SERVICE_MEAN_WINDOW: f64 = 10_000.0;

/// Read-only access to one origin's Global State Table: heartbeat `j` and its age. The one
/// place that knows where a Step keeps it: inline in the origin's `NodeState.gst` (protocol
/// v1) or in the Step's shared `gst_tables`, named by `NodeState.gst_table` (v2).
#[derive(Debug, Clone, Copy)]
pub struct GstView<'a> {
    heartbeats: &'a [u8],
    age_ns: &'a [u64],
}

impl<'a> GstView<'a> {
    /// The GST `step` carries for node `origin` (empty when it has none).
    pub fn of(step: &'a Step, origin: usize) -> Self {
        let table = match step.nodes.get(origin).and_then(|node| node.gst.as_ref()) {
            Some(g) => Some(g),
            None => step.node_columns.as_ref().and_then(|cols| {
                columns::gst_table(cols, origin)
                    .checked_sub(1)
                    .and_then(|i| step.gst_tables.get(i))
            }),
        };
        match table {
            Some(g) => Self {
                heartbeats: &g.heartbeats,
                age_ns: &g.age_ns,
            },
            None => Self {
                heartbeats: &[],
                age_ns: &[],
            },
        }
    }

    /// Whether the Step carries a table for the origin at all.
    pub fn is_present(&self) -> bool {
        !self.age_ns.is_empty()
    }

    /// Age in ns of the origin's heartbeat from node `j`; `None` when it has none yet.
    pub fn age_ns(&self, j: usize) -> Option<u64> {
        self.age_ns.get(j).copied().filter(|&a| a != u64::MAX)
    }

    /// Heartbeat of node `j` and its age in ns; `None` when the origin has none yet (age
    /// `u64::MAX` on the wire), or the entry is missing or undecodable.
    pub fn get(&self, j: usize) -> Option<(Heartbeat, u64)> {
        let age = *self.age_ns.get(j)?;
        if age == u64::MAX {
            return None;
        }
        let bytes = self
            .heartbeats
            .get(HEARTBEAT_LEN * j..HEARTBEAT_LEN * (j + 1))?;
        Heartbeat::decode(bytes).ok().map(|hb| (hb, age))
    }
}

/// A node's own heartbeat fields from its fresh state, as a decoded heartbeat (saturated like
/// the wire format; see `Heartbeat::from_fields`).
pub fn fresh_heartbeat(node: &NodeState) -> Heartbeat {
    node.heartbeat
        .as_ref()
        .map_or_else(Heartbeat::default, Heartbeat::from_fields)
}

/// One direction of a node's link to the ToR, as the Step reports it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PortState {
    /// The env listed this link (rack-sim lists only uplinks).
    pub present: bool,
    pub queue_bytes: u64,
    /// PFC PAUSE in force on the data priority.
    pub paused: bool,
    /// ECN marks plus PAUSE frames since the previous Step (congestion signals).
    pub recent_marks: u64,
}

/// Every node's uplink (NIC -> ToR) and downlink (ToR -> NIC) at the current Step, and the
/// counters of the previous Step to turn episode totals into recent rates.
#[derive(Debug, Clone, Default)]
pub struct LinkView {
    up: Vec<PortState>,
    down: Vec<PortState>,
    up_total: Vec<u64>,
    down_total: Vec<u64>,
}

impl LinkView {
    pub fn new(n: usize) -> Self {
        Self {
            up: vec![PortState::default(); n],
            down: vec![PortState::default(); n],
            up_total: vec![0; n],
            down_total: vec![0; n],
        }
    }

    /// Reads the Step's links; entries for nodes outside the rack are ignored (the session
    /// refuses such Steps before any policy sees them).
    pub fn update(&mut self, step: &Step) {
        let n = self.up.len();
        for p in self.up.iter_mut().chain(self.down.iter_mut()) {
            *p = PortState::default();
        }
        for l in &step.links {
            let i = l.node_id as usize;
            if i >= n {
                continue;
            }
            let (port, total) = if l.uplink {
                (&mut self.up[i], &mut self.up_total[i])
            } else {
                (&mut self.down[i], &mut self.down_total[i])
            };
            let marks = l.ecn_marks + l.pause_frames;
            *port = PortState {
                present: true,
                queue_bytes: l.queue_bytes,
                paused: l.pfc_paused,
                // Counters restart with an episode: a smaller total is a fresh count.
                recent_marks: marks.checked_sub(*total).unwrap_or(marks),
            };
            *total = marks;
        }
    }

    pub fn up(&self, i: usize) -> PortState {
        self.up[i]
    }

    pub fn down(&self, i: usize) -> PortState {
        self.down[i]
    }

    /// The path of a task from `o` to `j`: (paused anywhere, queued bytes, recent marks);
    /// nothing for a local task.
    pub fn path(&self, o: usize, j: usize) -> (bool, u64, u64) {
        if o == j {
            return (false, 0, 0);
        }
        let (u, d) = (self.up[o], self.down[j]);
        (
            u.paused || d.paused,
            u.queue_bytes + d.queue_bytes,
            u.recent_marks + d.recent_marks,
        )
    }
}

#[derive(Debug, Clone, Copy, Default)]
struct Placed {
    /// Work per core (wall ns) the origin sent to the node, as of `at`.
    backlog_ns: f64,
    at: u64,
}

/// The parts of a wait estimate, ns from the Step's time.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct WaitEstimate {
    /// From the node's state as the origin knows it (fresh for itself, heartbeat otherwise),
    /// aged by the heartbeat's age.
    pub state_ns: f64,
    /// What the origin itself sent to the node and the state cannot show yet (remote nodes).
    pub own_ns: f64,
    /// Work placed on the node earlier in this Step by other origins.
    pub step_ns: f64,
}

impl WaitEstimate {
    pub fn total_ns(&self) -> f64 {
        self.state_ns + self.own_ns + self.step_ns
    }
}

/// Per-session wait model: node specs, network, running mean service estimate, each origin's
/// recent placements, and this Step's placements.
#[derive(Debug, Clone)]
pub struct WaitModel {
    n: usize,
    pub cores: Vec<f64>,
    pub speed: Vec<f64>,
    pub net: NetInfo,
    mean_service_ns: f64,
    seen: f64,
    /// `placed[o * n + j]`: what origin `o` recently sent to node `j` (an origin knows only its
    /// own placements).
    placed: Vec<Placed>,
    /// Work per core placed on each node during the current Step, all origins.
    step_total: Vec<f64>,
    /// (origin, node, work per core) of the current Step, to subtract an origin's own part.
    step_log: Vec<(u32, u32, f64)>,
    step_time: u64,
    /// The Step's link state.
    pub links: LinkView,
}

impl WaitModel {
    pub fn new(hello: &Hello) -> Self {
        let n = hello.nodes.len();
        let mean_service_ns = hello
            .parameters
            .get("mean_service_ns")
            .and_then(|v| v.parse::<f64>().ok())
            .filter(|v| v.is_finite() && *v > 0.0)
            .unwrap_or(0.0);
        Self {
            n,
            cores: hello.nodes.iter().map(|s| s.cores.max(1) as f64).collect(),
            speed: hello
                .nodes
                .iter()
                .map(|s| if s.speed > 0.0 { s.speed } else { 1.0 })
                .collect(),
            net: NetInfo::from_hello(hello),
            mean_service_ns,
            seen: if mean_service_ns > 0.0 { 1.0 } else { 0.0 },
            placed: vec![Placed::default(); n * n],
            step_total: vec![0.0; n],
            step_log: Vec::new(),
            step_time: 0,
            links: LinkView::new(n),
        }
    }

    pub fn n(&self) -> usize {
        self.n
    }

    /// Running mean of the service estimates seen (ns; 0 before any).
    pub fn mean_service_ns(&self) -> f64 {
        self.mean_service_ns
    }

    /// Starts a Step: folds its tasks' service estimates into the running mean and forgets the
    /// previous Step's placements.
    pub fn begin_step(&mut self, step: &Step) {
        for t in &step.tasks {
            self.seen = (self.seen + 1.0).min(SERVICE_MEAN_WINDOW);
            self.mean_service_ns +=
                (t.service_estimate_ns as f64 - self.mean_service_ns) / self.seen;
        }
        self.step_total.fill(0.0);
        self.step_log.clear();
        self.step_time = step.sim_time_ns;
        self.links.update(step);
    }

    /// Placements recorded in the current Step so far.
    pub fn placements_in_step(&self) -> usize {
        self.step_log.len()
    }

    /// Work per core that `o` placed on `j` during this Step.
    fn own_in_step(&self, o: usize, j: usize) -> f64 {
        if self.step_total[j] == 0.0 {
            return 0.0;
        }
        self.step_log
            .iter()
            .filter(|&&(lo, lj, _)| lo as usize == o && lj as usize == j)
            .map(|&(_, _, w)| w)
            .sum()
    }

    /// The wait before a new task could start on `j`, as origin `o` sees it at the Step's time.
    pub fn wait(&self, step: &Step, o: usize, j: usize) -> WaitEstimate {
        self.wait_from_state(step, o, j, self.state_wait_ns(step, o, j))
    }

    /// The part of [`WaitModel::wait`] that comes from the node's state as `o` knows it (fresh
    /// for itself, its GST entry otherwise). It does not change within a Step, so callers that
    /// score many tasks of one origin compute it once per node.
    pub fn state_wait_ns(&self, step: &Step, o: usize, j: usize) -> f64 {
        let hb = (j != o).then(|| GstView::of(step, o).get(j)).flatten();
        self.state_wait_from(step, o, j, hb)
    }

    /// [`WaitModel::state_wait_ns`] with node `j`'s GST entry already decoded (None: no
    /// heartbeat yet; ignored for `j == o`, which uses the fresh state).
    pub fn state_wait_from(
        &self,
        step: &Step,
        o: usize,
        j: usize,
        hb: Option<(Heartbeat, u64)>,
    ) -> f64 {
        let (k, v) = (self.cores[j], self.speed[j]);
        if j == o {
            // Fresh and exact: the remaining work of the tasks already there.
            let sth = step.nodes[o].sth.as_ref();
            let tasks = sth.map_or(0, |s| s.total_tasks) as f64;
            let load_ns = sth.map_or(0, |s| s.sum_load_us) as f64 * 1000.0;
            return if tasks < k { 0.0 } else { load_ns / k };
        }
        match hb {
            Some((hb, age)) => {
                let q = hb.queue_len as f64;
                let mut w = 0.0;
                if !hb.idle() && q >= k {
                    // Tasks ahead once a core frees, each a mean service on k cores.
                    w = (q - k + 1.0) * self.mean_service_ns / (v * k);
                }
                // The node kept working since the heartbeat was sent.
                (w - age as f64).max(0.0)
            }
            None => 0.0,
        }
    }

    /// [`WaitModel::wait`] given its state part (from [`WaitModel::state_wait_ns`]).
    pub fn wait_from_state(&self, step: &Step, o: usize, j: usize, state_ns: f64) -> WaitEstimate {
        let age = if j == o {
            None
        } else {
            GstView::of(step, o).age_ns(j)
        };
        self.wait_parts(step.sim_time_ns, o, j, state_ns, age)
    }

    /// The total of [`WaitModel::wait_from_state`] for every node at once, `states[j]` being
    /// node `j`'s state part: one pass over the rack for one origin (the GST is looked up once).
    pub fn total_waits(&self, step: &Step, o: usize, states: &[f64], out: &mut Vec<f64>) {
        debug_assert_eq!(states.len(), self.n);
        let gst = GstView::of(step, o);
        let now = step.sim_time_ns;
        out.clear();
        out.extend(states.iter().enumerate().map(|(j, &state_ns)| {
            let age = if j == o { None } else { gst.age_ns(j) };
            self.wait_parts(now, o, j, state_ns, age).total_ns()
        }));
    }

    /// The wait estimate from its state part and the age of the origin's heartbeat from `j`
    /// (`None`: none yet, or `j == o`).
    fn wait_parts(
        &self,
        now: u64,
        o: usize,
        j: usize,
        state_ns: f64,
        hb_age_ns: Option<u64>,
    ) -> WaitEstimate {
        let own_step = self.own_in_step(o, j);
        let others_in_step = (self.step_total[j] - own_step).max(0.0);
        if j == o {
            // The origin's own placements on itself in this Step are not in its state yet.
            return WaitEstimate {
                state_ns,
                own_ns: own_step,
                step_ns: others_in_step,
            };
        }
        let hb_sent = hb_age_ns.map_or(0, |age| now.saturating_sub(age));
        let p = self.placed[o * self.n + j];
        // Placements that landed before the heartbeat was taken are already in it.
        let own_ns = if p.at + self.net.one_way_ns <= hb_sent && hb_sent > 0 {
            0.0
        } else {
            (p.backlog_ns - now.saturating_sub(p.at) as f64).max(0.0)
        };
        WaitEstimate {
            state_ns,
            own_ns,
            step_ns: others_in_step,
        }
    }

    /// Work per core a task of `service_estimate_ns` adds to `j` (wall ns).
    pub fn work_per_core_ns(&self, j: usize, service_estimate_ns: u64) -> f64 {
        service_estimate_ns as f64 / self.speed[j] / self.cores[j]
    }

    /// Records that origin `o` placed a task of `service_estimate_ns` on `j` in this Step.
    pub fn record(&mut self, o: usize, j: usize, service_estimate_ns: u64) {
        let per_core = self.work_per_core_ns(j, service_estimate_ns);
        let now = self.step_time;
        self.step_total[j] += per_core;
        self.step_log.push((o as u32, j as u32, per_core));
        if j != o {
            let p = &mut self.placed[o * self.n + j];
            let left = (p.backlog_ns - now.saturating_sub(p.at) as f64).max(0.0);
            *p = Placed {
                backlog_ns: left + per_core,
                at: now,
            };
        }
    }

    /// Transfer delay of `bytes` from `o` to `j` (0 when local): one-way delay, serialisation,
    /// and the bytes queued ahead on the path (origin uplink, node downlink).
    pub fn transfer_ns(&self, o: usize, j: usize, bytes: u32) -> f64 {
        if o == j {
            return 0.0;
        }
        self.net.transfer_ns(o as u32, j as u32, bytes) as f64 + self.path_queue_ns(o, j)
    }

    /// Time to drain the bytes queued on the path from `o` to `j` (origin uplink, node
    /// downlink) at the link rate; 0 when local. The part of [`WaitModel::transfer_ns`] that
    /// does not depend on the task.
    pub fn path_queue_ns(&self, o: usize, j: usize) -> f64 {
        let (_, queued, _) = self.links.path(o, j);
        if self.net.link_gbps > 0.0 {
            queued as f64 * 8.0 / self.net.link_gbps
        } else {
            0.0
        }
    }

    /// Estimated slack (ns) of a task if placed on `j` now: deadline minus the finish after the
    /// transfer or the wait (whichever is longer) and the service at `j`'s speed.
    pub fn slack_ns(
        &self,
        now: u64,
        wait: &WaitEstimate,
        transfer_ns: f64,
        service_estimate_ns: u64,
        deadline_ns: u64,
        j: usize,
    ) -> f64 {
        self.slack_after(
            now,
            wait.total_ns(),
            transfer_ns,
            service_estimate_ns,
            deadline_ns,
            j,
        )
    }

    /// [`WaitModel::slack_ns`] from the wait's total.
    pub fn slack_after(
        &self,
        now: u64,
        wait_ns: f64,
        transfer_ns: f64,
        service_estimate_ns: u64,
        deadline_ns: u64,
        j: usize,
    ) -> f64 {
        let start = transfer_ns.max(wait_ns);
        let finish = now as f64 + start + service_estimate_ns as f64 / self.speed[j];
        deadline_ns as f64 - finish
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::baselines::testkit::*;
    use malcolm_proto::heartbeat::FLAG_IDLE;

    fn hb(node_id: u8, queue_len: u32, idle: bool) -> [u8; 16] {
        Heartbeat {
            node_id,
            flags: if idle { FLAG_IDLE } else { 0 },
            queue_len,
            ..Default::default()
        }
        .encode()
    }

    #[test]
    fn gst_entries_decode_and_missing_ones_are_none() {
        let mut n0 = node(0, 0, 0);
        n0.gst = Some(gst(&[hb(0, 0, true), hb(1, 7, false)], 3_000));
        n0.gst.as_mut().unwrap().age_ns[0] = u64::MAX;
        let s = step(vec![n0.clone(), node(1, 0, 0)], vec![]);
        let v = GstView::of(&s, 0);
        assert!(v.get(0).is_none(), "no heartbeat yet");
        let (h, age) = v.get(1).unwrap();
        assert_eq!((h.queue_len, age), (7, 3_000));
        assert!(v.get(2).is_none(), "outside the table");
        assert!(GstView::of(&s, 1).get(0).is_none());
        assert!(GstView::of(&s, 9).get(0).is_none(), "outside the rack");
        // Protocol v2: the same table once in the Step, named by the origin's column.
        let mut v2 = step(vec![node(0, 0, 0), node(1, 0, 0)], vec![]);
        v2.gst_tables.push(n0.gst.clone().unwrap());
        let mut cols = malcolm_proto::bridge::NodeColumns::default();
        columns::pack(&v2.nodes, &[1, 0], &mut cols);
        v2.node_columns = Some(cols.clone());
        let (h2, age2) = GstView::of(&v2, 0).get(1).unwrap();
        assert_eq!((h2, age2), (h, age));
        assert!(GstView::of(&v2, 0).get(0).is_none());
        assert!(!GstView::of(&v2, 1).is_present(), "table 0 means none");
        columns::pack(&v2.nodes, &[1, 7], &mut cols);
        v2.node_columns = Some(cols);
        assert!(
            !GstView::of(&v2, 1).is_present(),
            "a table the Step does not have"
        );
    }

    #[test]
    fn heartbeat_wait_ages_and_own_placements_add() {
        // Node 1: 1 core, heartbeat says 5 tasks (4 waiting + 1 running) 10 us ago; mean
        // service 20 us -> (5 - 1 + 1) * 20 = 100 us of wait when sent, 90 us now.
        let mut h = hello(&[(1, 1.0), (1, 1.0)]);
        h.parameters
            .insert("mean_service_ns".into(), "20000".into());
        let mut m = WaitModel::new(&h);
        let mut n0 = node(0, 0, 0);
        n0.gst = Some(gst(&[hb(0, 0, true), hb(1, 5, false)], 10_000));
        let s = step(vec![n0, node(1, 0, 0)], vec![task(1, 0, 20_000, 500_000)]);
        m.begin_step(&s);
        let w = m.wait(&s, 0, 1);
        assert!((w.state_ns - 90_000.0).abs() < 1e-6, "{w:?}");
        assert_eq!(w.own_ns + w.step_ns, 0.0);
        // Origin 0 sends a 20 us task there: its own backlog, not "others in this Step".
        m.record(0, 1, 20_000);
        let w = m.wait(&s, 0, 1);
        assert_eq!((w.own_ns, w.step_ns), (20_000.0, 0.0));
        // Origin 1 sees it as another origin's placement of this Step on itself.
        let w = m.wait(&s, 1, 1);
        assert_eq!(w.step_ns, 20_000.0);
        // Next Step: the Step's share is gone, origin 0 still remembers what it sent (aged).
        let mut s2 = s.clone();
        s2.sim_time_ns += 4_000;
        m.begin_step(&s2);
        let w = m.wait(&s2, 0, 1);
        assert_eq!((w.own_ns, w.step_ns), (16_000.0, 0.0));
    }

    /// The per-origin pass (`total_waits`, `path_queue_ns`, `slack_after`) that ranks a large
    /// rack's candidates equals the per-node estimate bit for bit before any placement.
    #[test]
    fn the_per_origin_pass_equals_the_per_node_estimate() {
        use malcolm_proto::bridge::LinkState;
        let mut h = hello(&[(1, 1.0), (2, 0.5), (4, 2.0)]);
        h.parameters
            .insert("mean_service_ns".into(), "20000".into());
        h.parameters.insert("link_gbps".into(), "100".into());
        h.parameters.insert("one_way_ns".into(), "2500".into());
        let mut m = WaitModel::new(&h);
        let mut n0 = node(0, 3, 40);
        n0.gst = Some(gst(
            &[hb(0, 0, true), hb(1, 5, false), hb(2, 9, false)],
            3_000,
        ));
        let t = task(1, 0, 20_000, 150_000);
        let mut s = step(vec![n0, node(1, 0, 0), node(2, 0, 0)], vec![t]);
        s.links = vec![LinkState {
            node_id: 2,
            uplink: false,
            queue_bytes: 40_000,
            ..Default::default()
        }];
        m.begin_step(&s);
        // An earlier Step's placement from origin 0 on node 1 is still in its own backlog.
        m.record(0, 1, 30_000);
        s.sim_time_ns += 1_000;
        m.begin_step(&s);
        let states: Vec<f64> = (0..3).map(|j| m.state_wait_ns(&s, 0, j)).collect();
        let mut totals = Vec::new();
        m.total_waits(&s, 0, &states, &mut totals);
        let remote = m.net.remote_transfer_ns(t.size_bytes) as f64;
        for (j, &total) in totals.iter().enumerate() {
            let w = m.wait(&s, 0, j);
            assert_eq!(total.to_bits(), w.total_ns().to_bits(), "node {j}");
            let transfer = if j == 0 {
                0.0
            } else {
                remote + m.path_queue_ns(0, j)
            };
            assert_eq!(
                transfer.to_bits(),
                m.transfer_ns(0, j, t.size_bytes).to_bits()
            );
            let per_node = m.slack_ns(s.sim_time_ns, &w, transfer, 20_000, 150_000, j);
            let pass = m.slack_after(s.sim_time_ns, total, transfer, 20_000, 150_000, j);
            assert_eq!(per_node.to_bits(), pass.to_bits(), "node {j}");
        }
        assert!(totals[1] > 0.0 && m.path_queue_ns(0, 2) > 0.0, "{totals:?}");
    }

    #[test]
    fn the_path_adds_its_queues_and_reports_pauses_and_recent_marks() {
        use malcolm_proto::bridge::LinkState;
        let mut h = hello(&[(1, 1.0), (1, 1.0), (1, 1.0)]);
        h.parameters.insert("link_gbps".into(), "100".into());
        h.parameters.insert("one_way_ns".into(), "2500".into());
        let mut m = WaitModel::new(&h);
        let link = |node: u32, uplink: bool, q: u64, paused: bool, pauses: u64| LinkState {
            node_id: node,
            uplink,
            queue_bytes: q,
            pfc_paused: paused,
            pause_frames: pauses,
            ..Default::default()
        };
        let mut s = step(vec![node(0, 0, 0), node(1, 0, 0), node(2, 0, 0)], vec![]);
        s.links = vec![
            link(0, true, 12_500, false, 3),
            link(1, false, 0, true, 10),
            link(2, false, 25_000, false, 0),
        ];
        m.begin_step(&s);
        // 0 -> 2: 12.5 KB + 25 KB at 100 Gbps = 3 us behind 2.5 us + 64 B (6 ns).
        assert_eq!(m.transfer_ns(0, 2, 64), 2_506.0 + 3_000.0);
        assert_eq!(m.links.path(0, 1), (true, 12_500, 13));
        assert_eq!(m.links.path(0, 0), (false, 0, 0));
        assert_eq!(m.transfer_ns(1, 1, 64), 0.0);
        // Counters are totals: the next Step reports only what is new.
        s.links[1].pause_frames = 14;
        m.begin_step(&s);
        assert_eq!(m.links.path(0, 1).2, 4);
        // A node id outside the rack is ignored here (the session refuses it).
        s.links.push(link(77, true, 1, true, 1));
        m.begin_step(&s);
    }

    #[test]
    fn local_wait_is_fresh_remaining_work_over_cores() {
        let h = hello(&[(2, 1.0), (1, 1.0)]);
        let mut m = WaitModel::new(&h);
        // Origin with 3 tasks on 2 cores and 40 us of remaining work: 20 us until a core
        // frees on average; with 1 task it could start at once.
        let s = step(vec![node(0, 3, 40), node(1, 0, 0)], vec![]);
        m.begin_step(&s);
        assert_eq!(m.wait(&s, 0, 0).state_ns, 20_000.0);
        let s = step(vec![node(0, 1, 40), node(1, 0, 0)], vec![]);
        m.begin_step(&s);
        assert_eq!(m.wait(&s, 0, 0).state_ns, 0.0);
        // A 10 us task placed locally on the 2-core node adds 5 us per core.
        m.record(0, 0, 10_000);
        assert_eq!(m.wait(&s, 0, 0).own_ns, 5_000.0);
        assert_eq!(m.wait(&s, 1, 0).step_ns, 5_000.0);
    }
}
