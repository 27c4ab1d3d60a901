//! Malcolm-Strict's sessions: [`StrictPolicy`] decides a Step's placements on published
//! weights (most urgent task first, shortlist, rescoring after each placement) and turns
//! decisions and outcomes into transitions for the learner.

use super::{Shared, Snapshot};
use crate::actor::{Head, Scratch};
use crate::features::{
    FeatureBuilder, OriginView, CANDIDATE_FEATURES, SHARED_FEATURES, STATIC_CANDIDATE_FEATURES,
};
use crate::iqn::midpoint_taus;
use crate::replay::Transition;
use malcolm_policies::reward::{self, RewardConfig};
use malcolm_policies::{Decision, Mode, Policy, PolicyError};
use malcolm_proto::bridge::{EndReason, EpisodeEnd, Hello, Step, TaskOutcome};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::mpsc::SyncSender;
use std::sync::Arc;

/// Decisions waiting for their outcome in one session before the session gives up on them
/// (outcomes that never come would otherwise grow memory without bound).
pub const DEFAULT_MAX_PENDING: usize = 200_000;
/// Random other nodes in a large rack's shortlist (see `StrictPolicy::shortlist`).
const SHORTLIST_RANDOM: usize = 2;

/// What one origin of a Step knows, built once per Step.
#[derive(Debug, Default)]
struct OriginCache {
    view: OriginView,
    /// Every node's whole wait estimate and path queue delay at the start of the Step (before
    /// any placement), for ranking a large rack's candidates (empty on small racks).
    start_wait: Vec<f64>,
    path_queue: Vec<f64>,
    /// `n x C`; the static part of row j is valid when `filled[j]`.
    rows: Vec<f32>,
    filled: Vec<bool>,
}

/// State of a decision as the next state of the previous decision of its origin: shared
/// features and the best candidates' features.
#[derive(Debug)]
struct StateRecord {
    shared: Box<[f32]>,
    cand: Box<[f32]>,
}

#[derive(Debug)]
struct Pending {
    shared: Box<[f32]>,
    chosen: Box<[f32]>,
    service_on_node_us: f64,
    reward: Option<f32>,
    next: Option<Arc<StateRecord>>,
}

/// The stale rows of one task being rescored: their features, slots in the Step's score
/// table, and new scores.
#[derive(Debug, Default)]
struct Rescore {
    rows: Vec<f32>,
    slots: Vec<usize>,
    scores: Vec<f32>,
}

impl Rescore {
    fn clear(&mut self) {
        self.rows.clear();
        self.slots.clear();
    }
}

/// One session's actor.
pub struct StrictPolicy {
    shared: Arc<Shared>,
    /// `None` for a frozen copy (never learns).
    tx: Option<SyncSender<Vec<Transition>>>,
    /// Fixed weights of a frozen copy.
    pinned: Option<Arc<Snapshot>>,
    fb: FeatureBuilder,
    snap: Arc<Snapshot>,
    rng: ChaCha8Rng,
    reward: RewardConfig,
    eval_taus: Vec<f32>,
    /// The head for `eval_taus` of the current weights (None after a refresh).
    eval_head: Option<Head>,
    /// Per origin of the current Step: its decoded view, the state part of every node's wait,
    /// and the static candidate rows built so far.
    origin_rows: HashMap<u32, OriginCache>,
    /// Caches of earlier Steps, reused (no allocation per Step).
    cache_pool: Vec<OriginCache>,
    /// (estimated slack, node) of a large rack's candidates, for the shortlist.
    rank_buf: Vec<(f64, u32)>,
    shared_buf: Vec<f32>,
    shared_h: Vec<f32>,
    /// Every candidate's features, `t x n x C`.
    cand_buf: Vec<f32>,
    /// The candidates each task scores (`t x m` node ids; all nodes when `n <= m`).
    short: Vec<u32>,
    /// One task's candidates while they are chosen.
    short_one: Vec<u32>,
    /// Their features, `t x m x C`, and scores, `t x m`.
    short_rows: Vec<f32>,
    scores: Vec<f32>,
    scratch: Scratch,
    order: Vec<usize>,
    /// The scores of the task being placed.
    row_buf: Vec<f32>,
    /// The stale rows of the task being placed, rescored together.
    later: Rescore,
    /// Slots (`t x m`) whose row a placement on their node has made stale.
    stale: Vec<bool>,
    ties: Vec<usize>,
    pending: HashMap<u64, Pending>,
    last_by_origin: HashMap<u32, u64>,
    outbox: Vec<Transition>,
}

impl StrictPolicy {
    pub(super) fn new(
        shared: Arc<Shared>,
        tx: Option<SyncSender<Vec<Transition>>>,
        pinned: Option<Arc<Snapshot>>,
        hello: &Hello,
        seed: u64,
    ) -> Result<Self, PolicyError> {
        let c = &shared.config;
        let fb = FeatureBuilder::from_hello(hello)?;
        let fb = if c.link_features {
            fb
        } else {
            fb.without_links()
        };
        let snap = pinned.clone().unwrap_or_else(|| shared.snapshot());
        Ok(Self {
            reward: c.reward.into(),
            rng: ChaCha8Rng::seed_from_u64(seed),
            eval_taus: midpoint_taus(c.cvar_alpha, c.k_tau),
            eval_head: None,
            tx,
            pinned,
            fb,
            snap,
            origin_rows: HashMap::new(),
            cache_pool: Vec::new(),
            rank_buf: Vec::new(),
            shared_buf: Vec::new(),
            shared_h: Vec::new(),
            cand_buf: Vec::new(),
            short: Vec::new(),
            short_one: Vec::new(),
            short_rows: Vec::new(),
            scores: Vec::new(),
            scratch: Scratch::default(),
            order: Vec::new(),
            row_buf: Vec::new(),
            later: Rescore::default(),
            stale: Vec::new(),
            ties: Vec::new(),
            pending: HashMap::new(),
            last_by_origin: HashMap::new(),
            outbox: Vec::new(),
            shared,
        })
    }

    fn mode(&self) -> Mode {
        if self.pinned.is_some() {
            Mode::Frozen
        } else {
            self.shared.mode()
        }
    }

    /// Takes the latest published weights (an Arc clone) unless frozen.
    fn refresh_weights(&mut self) {
        if self.pinned.is_some() {
            return;
        }
        let snap = self.shared.snapshot();
        if snap.policy_version != self.snap.policy_version || !Arc::ptr_eq(&snap, &self.snap) {
            self.snap = snap;
            self.eval_head = None;
        }
    }

    fn flush(&mut self) {
        if self.outbox.is_empty() {
            return;
        }
        let Some(tx) = &self.tx else {
            self.outbox.clear();
            return;
        };
        let batch = std::mem::take(&mut self.outbox);
        let n = batch.len() as u64;
        match tx.try_send(batch) {
            Ok(()) => {
                self.shared.limiter.sent.fetch_add(n, Ordering::AcqRel);
            }
            Err(_) => {
                self.shared
                    .dropped_transitions
                    .fetch_add(n, Ordering::Relaxed);
            }
        }
    }

    fn try_emit(&mut self, task_id: u64) {
        // With discount 0 (a contextual bandit: the return is the task's own outcome), a
        // decision is complete as soon as its outcome is known.
        let bandit = self.shared.config.discount == 0.0;
        let ready = matches!(self.pending.get(&task_id),
            Some(p) if p.reward.is_some() && (bandit || p.next.is_some()));
        if !ready {
            return;
        }
        let p = self.pending.remove(&task_id).expect("checked above");
        if bandit {
            self.outbox.push(Transition {
                shared: p.shared,
                chosen: p.chosen,
                reward: p.reward.expect("checked above"),
                discount: 0.0,
                next_shared: Box::new([]),
                next_cand: Box::new([]),
            });
            return;
        }
        let next = p.next.expect("checked above");
        self.outbox.push(Transition {
            shared: p.shared,
            chosen: p.chosen,
            reward: p.reward.expect("checked above"),
            discount: self.shared.config.discount as f32,
            next_shared: next.shared.clone(),
            next_cand: next.cand.clone(),
        });
    }

    fn record_outcomes(&mut self, outcomes: &[TaskOutcome]) {
        let scale = self.shared.config.reward_scale;
        for o in outcomes {
            if let Some(p) = self.pending.get_mut(&o.task_id) {
                let r = reward::task_reward(&self.reward, o, p.service_on_node_us) * scale;
                p.reward = Some(r as f32);
                self.try_emit(o.task_id);
            }
        }
    }

    /// Candidates a task scores: every node on racks of up to `max_candidates`; otherwise a
    /// `shortlist`: the origin, `SHORTLIST_RANDOM` random others, and the rest by the wait
    /// model's estimated slack (what `slack_after_estimated_wait` encodes), like power-of-d's
    /// sample plus an aimed pick.
    fn shortlist(&mut self, step: &Step, i: usize, out: &mut Vec<u32>) {
        let n = self.fb.n();
        let m = self.shared.config.candidates(n);
        out.clear();
        if n <= m {
            out.extend(0..n as u32);
            return;
        }
        let task = &step.tasks[i];
        let origin = task.origin as usize;
        out.push(origin as u32);
        while out.len() < 1 + SHORTLIST_RANDOM {
            let j = self.rng.random_range(0..n as u32);
            if !out.contains(&j) {
                out.push(j);
            }
        }
        let cache = &self.origin_rows[&task.origin];
        let mut rest = std::mem::take(&mut self.rank_buf);
        rest.clear();
        self.fb.start_slacks(
            step,
            task,
            &cache.start_wait,
            &cache.path_queue,
            out,
            &mut rest,
        );
        let k = m - out.len();
        rest.select_nth_unstable_by(k - 1, |a, b| b.0.total_cmp(&a.0));
        out.extend(rest[..k].iter().map(|&(_, j)| j));
        self.rank_buf = rest;
    }

    /// Builds candidate row (i, j) of `cand_buf`: the origin's static part and the dynamic part
    /// as of the placements made so far.
    fn build_row(&mut self, step: &Step, i: usize, j: usize) -> Result<(), PolicyError> {
        let (n, c) = (self.fb.n(), CANDIDATE_FEATURES);
        let task = &step.tasks[i];
        let o = task.origin as usize;
        let cache = self
            .origin_rows
            .get_mut(&task.origin)
            .expect("origin cached by build_and_score");
        let sc = STATIC_CANDIDATE_FEATURES;
        if !cache.filled[j] {
            self.fb
                .static_row(&cache.view, o, j, &mut cache.rows[j * c..j * c + sc]);
            cache.filled[j] = true;
        }
        let r = (i * n + j) * c;
        let row = &mut self.cand_buf[r..r + c];
        row[..sc].copy_from_slice(&cache.rows[j * c..j * c + sc]);
        self.fb
            .candidate_dynamic(step, task, j, cache.view.state_wait_ns[j], row);
        FeatureBuilder::check_candidate(task, j, row)
    }

    /// Builds every task's shared features, picks the candidates each task scores, builds
    /// their rows, and scores them.
    fn build_and_score(&mut self, step: &Step, head: &Head) -> Result<(), PolicyError> {
        let (t, n) = (step.tasks.len(), self.fb.n());
        let (s, c) = (SHARED_FEATURES, CANDIDATE_FEATURES);
        let m = self.shared.config.candidates(n);
        self.shared_buf.resize(t * s, 0.0);
        self.cand_buf.resize(t * n * c, 0.0);
        self.short.clear();
        self.short_rows.clear();
        self.shared_h.clear();
        // One cache per origin of the Step; static rows are built when first needed.
        self.cache_pool
            .extend(self.origin_rows.drain().map(|(_, cache)| cache));
        let mut short = std::mem::take(&mut self.short_one);
        for (i, task) in step.tasks.iter().enumerate() {
            let o = task.origin as usize;
            if !self.origin_rows.contains_key(&task.origin) {
                let mut cache = self.cache_pool.pop().unwrap_or_default();
                self.fb.origin_view(step, o, &mut cache.view);
                if n > m {
                    let model = &self.fb.model;
                    model.total_waits(step, o, &cache.view.state_wait_ns, &mut cache.start_wait);
                    cache.path_queue.clear();
                    cache
                        .path_queue
                        .extend((0..n).map(|j| model.path_queue_ns(o, j)));
                }
                cache.rows.resize(n * c, 0.0);
                cache.filled.clear();
                cache.filled.resize(n, false);
                self.origin_rows.insert(task.origin, cache);
            }
            let view = &self.origin_rows[&task.origin].view;
            self.fb
                .task_shared(step, task, view, &mut self.shared_buf[i * s..(i + 1) * s])?;
            self.shortlist(step, i, &mut short);
            for &j in &short {
                self.build_row(step, i, j as usize)?;
                let r = (i * n + j as usize) * c;
                self.short_rows.extend_from_slice(&self.cand_buf[r..r + c]);
            }
            self.short.extend_from_slice(&short);
            self.snap
                .actor
                .shared_hidden(&self.shared_buf[i * s..(i + 1) * s], &mut self.shared_h);
        }
        self.short_one = short;
        self.scores.resize(t * m, 0.0);
        self.snap.actor.score(
            &self.shared_h,
            m,
            &self.short_rows,
            head,
            &mut self.scratch,
            &mut self.scores,
        );
        Ok(())
    }

    /// Places the Step's tasks, most urgent first, from the scores of `build_and_score`; each
    /// placement counts against its node for the later tasks, whose rows for that node are
    /// rebuilt and rescored. Train mode explores with epsilon and remembers each decision.
    fn place(
        &mut self,
        step: &Step,
        head: &Head,
        train: bool,
        out: &mut Decision,
    ) -> Result<(), PolicyError> {
        self.build_and_score(step, head)?;
        let t = step.tasks.len();
        let n = self.fb.n();
        let m = self.shared.config.candidates(n);
        self.order.clear();
        self.order.extend(0..t);
        self.order.sort_by_key(|&i| (step.tasks[i].deadline_ns, i));
        out.targets.resize(t, 0);
        out.scores.resize(t, 0.0);
        let eps = if train { self.shared.epsilon() } else { 0.0 };
        self.stale.clear();
        self.stale.resize(t * m, false);
        let order = std::mem::take(&mut self.order);
        let mut row = std::mem::take(&mut self.row_buf);
        let mut later = std::mem::take(&mut self.later);
        let result = (|| {
            for (pos, &i) in order.iter().enumerate() {
                let task = &step.tasks[i];
                self.rescore_stale(step, i, head, &mut later)?;
                row.clear();
                row.extend_from_slice(&self.scores[i * m..(i + 1) * m]);
                let target = if eps > 0.0 && self.rng.random::<f64>() < eps {
                    self.rng.random_range(0..n)
                } else {
                    let k = self.argmax(&row);
                    self.short[i * m + k] as usize
                };
                let pick = self.short[i * m..(i + 1) * m]
                    .iter()
                    .position(|&j| j as usize == target);
                if pick.is_none() {
                    // An exploratory pick outside the shortlist: its row is built now.
                    self.build_row(step, i, target)?;
                }
                out.targets[i] = target as u32;
                out.scores[i] = pick.map_or(f32::NAN, |k| row[k]);
                self.fb.record(task.origin as usize, target, task);
                // The later tasks' rows for the target are stale now.
                for &i2 in &order[pos + 1..] {
                    if let Some(k) = self.short[i2 * m..(i2 + 1) * m]
                        .iter()
                        .position(|&j| j as usize == target)
                    {
                        self.stale[i2 * m + k] = true;
                    }
                }
                if train {
                    self.remember(step, i, target, &row);
                }
            }
            Ok(())
        })();
        self.order = order;
        self.row_buf = row;
        self.later = later;
        result
    }

    /// Rebuilds and rescores, in one call, the rows of task `i` that placements made since
    /// `build_and_score` made stale. A row for node `j` changes only when a task is placed on
    /// `j`, so rebuilding it once, just before its task is placed, gives the same row as
    /// rebuilding it after every such placement.
    fn rescore_stale(
        &mut self,
        step: &Step,
        i: usize,
        head: &Head,
        later: &mut Rescore,
    ) -> Result<(), PolicyError> {
        let (n, c) = (self.fb.n(), CANDIDATE_FEATURES);
        let m = self.shared.config.candidates(n);
        let h = self.snap.actor.arch.hidden;
        later.clear();
        for slot in i * m..(i + 1) * m {
            if !std::mem::take(&mut self.stale[slot]) {
                continue;
            }
            let j = self.short[slot] as usize;
            self.build_row(step, i, j)?;
            let r = (i * n + j) * c;
            self.short_rows[slot * c..(slot + 1) * c].copy_from_slice(&self.cand_buf[r..r + c]);
            later.rows.extend_from_slice(&self.cand_buf[r..r + c]);
            later.slots.push(slot);
        }
        if later.slots.is_empty() {
            return Ok(());
        }
        later.scores.resize(later.slots.len(), 0.0);
        self.snap.actor.score(
            &self.shared_h[i * h..(i + 1) * h],
            later.slots.len(),
            &later.rows,
            head,
            &mut self.scratch,
            &mut later.scores,
        );
        for (&slot, &sc) in later.slots.iter().zip(&later.scores) {
            self.scores[slot] = sc;
        }
        Ok(())
    }

    /// Index of the best score, ties broken at random.
    fn argmax(&mut self, row: &[f32]) -> usize {
        let best = row
            .iter()
            .copied()
            .filter(|x| !x.is_nan())
            .fold(f32::NEG_INFINITY, f32::max);
        self.ties.clear();
        self.ties.extend((0..row.len()).filter(|&j| row[j] == best));
        match self.ties.len() {
            0 => 0,
            1 => self.ties[0],
            k => self.ties[self.rng.random_range(0..k)],
        }
    }
}

impl Policy for StrictPolicy {
    fn decide(&mut self, step: &Step, out: &mut Decision) -> Result<(), PolicyError> {
        out.clear();
        self.fb.begin_step(step)?;
        let mode = self.mode();
        let train = mode == Mode::Train;
        if mode != Mode::Frozen {
            self.refresh_weights();
        }
        let t = step.tasks.len();
        if t == 0 {
            self.flush();
            return Ok(());
        }
        let (k_tau, alpha) = (self.shared.config.k_tau, self.shared.config.cvar_alpha);
        // Train: one set of taus ~ U[0, alpha] per Step. Eval: fixed midpoint taus, with the
        // head cached per weight version (taken out for the Step, put back after).
        let head = if train {
            let taus: Vec<f32> = (0..k_tau)
                .map(|_| (self.rng.random::<f64>() * alpha) as f32)
                .collect();
            self.snap.actor.head(&taus)
        } else {
            match self.eval_head.take() {
                Some(head) => head,
                None => self.snap.actor.head(&self.eval_taus),
            }
        };
        let placed = self.place(step, &head, train, out);
        if !train {
            self.eval_head = Some(head);
        }
        placed?;
        if train {
            self.shared.decisions.fetch_add(t as u64, Ordering::Relaxed);
            if self.pending.len() > DEFAULT_MAX_PENDING {
                tracing::warn!(
                    pending = self.pending.len(),
                    "too many decisions without outcome; forgetting them"
                );
                self.pending.clear();
                self.last_by_origin.clear();
            }
            self.flush();
            self.shared.wait_for_learner()?;
        }
        Ok(())
    }

    fn observe(&mut self, outcomes: &[TaskOutcome]) {
        if self.mode() == Mode::Train {
            self.record_outcomes(outcomes);
            self.flush();
        }
    }

    fn end_episode(&mut self, end: &EpisodeEnd) {
        if self.mode() == Mode::Train {
            self.record_outcomes(&end.outcomes);
            if end.reason() == EndReason::Terminated {
                // The last decision of each origin: terminal, reward alone.
                let last: Vec<u64> = self.last_by_origin.values().copied().collect();
                for id in last {
                    if let Some(p) = self.pending.remove(&id) {
                        if let Some(r) = p.reward {
                            self.outbox.push(Transition {
                                shared: p.shared,
                                chosen: p.chosen,
                                reward: r,
                                discount: 0.0,
                                next_shared: Box::new([]),
                                next_cand: Box::new([]),
                            });
                        }
                    }
                }
            }
        }
        // Decisions whose outcome or next state can no longer come are forgotten.
        self.pending.clear();
        self.last_by_origin.clear();
        self.flush();
    }

    fn version(&self) -> u64 {
        self.snap.policy_version
    }
}

impl StrictPolicy {
    /// Keeps task `i`'s decision for learning: it is the next state of the previous decision
    /// of the same origin, and waits for its own outcome and successor.
    fn remember(&mut self, step: &Step, i: usize, target: usize, scores: &[f32]) {
        let (n, s, c) = (self.fb.n(), SHARED_FEATURES, CANDIDATE_FEATURES);
        let m = scores.len();
        let task = &step.tasks[i];
        let shared_f: Box<[f32]> = self.shared_buf[i * s..(i + 1) * s].into();
        let r = (i * n + target) * c;
        let chosen: Box<[f32]> = self.cand_buf[r..r + c].into();
        let speed = self.fb.nodes[target].speed;
        let pending = Pending {
            shared: shared_f.clone(),
            chosen,
            service_on_node_us: task.service_estimate_ns as f64 / 1e3 / speed,
            reward: None,
            next: None,
        };
        if self.shared.config.discount == 0.0 {
            // No bootstrap: no next state to keep.
            self.pending.insert(task.task_id, pending);
            return;
        }
        // The next-state record keeps the best scored candidates by the acting network.
        let k = self.shared.config.next_candidates.min(m);
        let mut idx: Vec<usize> = (0..m).collect();
        if k < m {
            idx.select_nth_unstable_by(k - 1, |&a, &b| scores[b].total_cmp(&scores[a]));
            idx.truncate(k);
        }
        let rows = &self.short_rows[i * m * c..(i + 1) * m * c];
        let mut cand = Vec::with_capacity(k * c);
        for &j in &idx {
            cand.extend_from_slice(&rows[j * c..(j + 1) * c]);
        }
        let record = Arc::new(StateRecord {
            shared: shared_f,
            cand: cand.into(),
        });
        if let Some(prev) = self.last_by_origin.insert(task.origin, task.task_id) {
            if let Some(p) = self.pending.get_mut(&prev) {
                p.next = Some(record);
                self.try_emit(prev);
            }
        }
        self.pending.insert(task.task_id, pending);
    }
}

/// Index of the largest value (first on ties; NaN never wins). Deterministic, for policies
/// that must not draw randomness (the original Malcolm's greedy action).
pub fn argmax(v: &[f32]) -> usize {
    let mut best = 0;
    for (i, &x) in v.iter().enumerate() {
        if x > v[best] || v[best].is_nan() {
            best = i;
        }
    }
    best
}
