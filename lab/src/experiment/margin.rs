//! The safety margin of completed tasks: latency divided by the task's relative deadline
//! (deadline - arrival). Below 1 the task finished on time; the design's claim is that the
//! barrier reward pushes this distribution away from 1 ("safety margin"), while a linear
//! penalty leaves many tasks just before or just after it ("just-miss").
//!
//! [`Tap`] builds the histogram from the `TaskOutcome` lists the env sends to the agent, so it
//! needs nothing from the simulator beyond the bridge messages. Dropped tasks (EDF's early
//! drop of tasks already late) never complete: the distribution counts them at infinity, so
//! the CDF of a policy ends at its fraction of completed tasks.

use malcolm_proto::bridge::envelope::Body;
use malcolm_proto::bridge::{OutcomeKind, Step, TaskOutcome};
use malcolm_proto::Envelope;
use rack_sim::{Transport, TransportError};
use std::ops::Range;

/// Bins over latency / relative deadline in [0, [`MARGIN_MAX`]); one more for the overflow.
pub const MARGIN_BINS: usize = 200;
/// Upper end of the binned range (twice the deadline).
pub const MARGIN_MAX: f64 = 2.0;

/// Histogram of latency / relative deadline over completed tasks (on time or late).
#[derive(Debug, Clone, PartialEq)]
pub struct MarginHist {
    /// `MARGIN_BINS` equal bins over [0, MARGIN_MAX), then one bin for >= MARGIN_MAX.
    pub bins: Vec<u64>,
    /// Completed tasks recorded (the sum of `bins`).
    pub completed: u64,
    /// Completed after the deadline (the env's own verdict, not the bins).
    pub late: u64,
    /// Dropped tasks (no latency, not in the bins).
    pub dropped: u64,
    pub sum_ratio: f64,
}

impl Default for MarginHist {
    fn default() -> Self {
        Self {
            bins: vec![0; MARGIN_BINS + 1],
            completed: 0,
            late: 0,
            dropped: 0,
            sum_ratio: 0.0,
        }
    }
}

/// Width of one bin.
pub fn bin_width() -> f64 {
    MARGIN_MAX / MARGIN_BINS as f64
}

/// latency / (deadline - arrival), or None when the task had no positive relative deadline.
pub fn ratio_of(o: &TaskOutcome) -> Option<f64> {
    let rel = o.deadline_ns.saturating_sub(o.arrival_ns);
    (rel > 0).then(|| o.latency_ns as f64 / rel as f64)
}

impl MarginHist {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds one ratio (of a completed task).
    pub fn record_ratio(&mut self, r: f64, late: bool) {
        let i = if r.is_finite() && r >= 0.0 {
            ((r / bin_width()).floor() as usize).min(MARGIN_BINS)
        } else {
            MARGIN_BINS
        };
        self.bins[i] += 1;
        self.completed += 1;
        if late {
            self.late += 1;
        }
        if r.is_finite() {
            self.sum_ratio += r;
        }
    }

    /// Adds one outcome: completed and missed tasks by their ratio, drops counted apart.
    pub fn record(&mut self, o: &TaskOutcome) {
        match o.kind() {
            OutcomeKind::Dropped => self.dropped += 1,
            OutcomeKind::Completed | OutcomeKind::Missed => {
                if let Some(r) = ratio_of(o) {
                    self.record_ratio(r, o.kind() == OutcomeKind::Missed);
                }
            }
            OutcomeKind::Unspecified => {}
        }
    }

    pub fn merge(&mut self, other: &MarginHist) {
        for (a, b) in self.bins.iter_mut().zip(&other.bins) {
            *a += b;
        }
        self.completed += other.completed;
        self.late += other.late;
        self.dropped += other.dropped;
        self.sum_ratio += other.sum_ratio;
    }

    /// Completed plus dropped: the denominator of the distribution.
    pub fn total(&self) -> u64 {
        self.completed + self.dropped
    }

    /// Mean ratio of the completed tasks.
    pub fn mean(&self) -> f64 {
        if self.completed == 0 {
            f64::NAN
        } else {
            self.sum_ratio / self.completed as f64
        }
    }

    /// Upper edge of the bin where the cumulative fraction (of completed + dropped tasks)
    /// first reaches `q` (NaN if empty; infinity in the overflow bin or among the drops).
    pub fn quantile(&self, q: f64) -> f64 {
        if self.total() == 0 {
            return f64::NAN;
        }
        let target = (q.clamp(0.0, 1.0) * self.total() as f64).ceil().max(1.0) as u64;
        let mut cum = 0;
        for (i, &c) in self.bins.iter().enumerate() {
            cum += c;
            if cum >= target {
                return if i == MARGIN_BINS {
                    f64::INFINITY
                } else {
                    (i + 1) as f64 * bin_width()
                };
            }
        }
        f64::INFINITY
    }

    /// Fraction of (completed + dropped) tasks with ratio in [lo, hi) (bin resolution).
    pub fn fraction_between(&self, lo: f64, hi: f64) -> f64 {
        if self.total() == 0 {
            return f64::NAN;
        }
        let w = bin_width();
        let n: u64 = self
            .bins
            .iter()
            .enumerate()
            .filter(|&(i, _)| {
                let (a, b) = if i == MARGIN_BINS {
                    (MARGIN_MAX, f64::INFINITY)
                } else {
                    (i as f64 * w, (i + 1) as f64 * w)
                };
                // Whole bins inside [lo, hi); small epsilon against 0.9 / 0.01 rounding.
                a >= lo - 1e-9 && b <= hi + 1e-9
            })
            .map(|(_, &c)| c)
            .sum();
        n as f64 / self.total() as f64
    }

    /// Close calls: finished on time but within the last 10% of the deadline budget.
    pub fn near_miss(&self) -> f64 {
        self.fraction_between(0.9, 1.0)
    }

    /// Just missed: late by less than 10% of the deadline budget.
    pub fn just_late(&self) -> f64 {
        self.fraction_between(1.0, 1.1)
    }

    /// (ratio, cumulative fraction) at every bin's upper edge, up to MARGIN_MAX.
    pub fn cdf_points(&self) -> Vec<(f64, f64)> {
        if self.total() == 0 {
            return vec![];
        }
        let mut cum = 0u64;
        (0..MARGIN_BINS)
            .map(|i| {
                cum += self.bins[i];
                (
                    (i + 1) as f64 * bin_width(),
                    cum as f64 / self.total() as f64,
                )
            })
            .collect()
    }
}

/// Wraps an env's transport and records the outcomes of measured tasks (ids in `measured`,
/// i.e. past the warm-up and within the task limit) into a [`MarginHist`].
pub struct Tap<'a> {
    inner: &'a mut dyn Transport,
    measured: Range<u64>,
    pub hist: MarginHist,
}

impl<'a> Tap<'a> {
    pub fn new(inner: &'a mut dyn Transport, measured: Range<u64>) -> Self {
        Self {
            inner,
            measured,
            hist: MarginHist::new(),
        }
    }

    pub fn take(&mut self, outcomes: &[TaskOutcome]) {
        for o in outcomes
            .iter()
            .filter(|o| self.measured.contains(&o.task_id))
        {
            self.hist.record(o);
        }
    }
}

impl Transport for Tap<'_> {
    fn request(&mut self, env: Envelope) -> Result<Envelope, TransportError> {
        match &env.body {
            Some(Body::Step(s)) => self.take(&s.outcomes),
            Some(Body::EpisodeEnd(e)) => self.take(&e.outcomes),
            _ => {}
        }
        self.inner.request(env)
    }

    fn reclaim_step(&mut self) -> Option<Step> {
        self.inner.reclaim_step()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(id: u64, kind: OutcomeKind, latency: u64, rel: u64) -> TaskOutcome {
        TaskOutcome {
            task_id: id,
            kind: kind as i32,
            arrival_ns: 1_000,
            finish_ns: 1_000 + latency,
            deadline_ns: 1_000 + rel,
            latency_ns: latency,
            ..Default::default()
        }
    }

    #[test]
    fn hand_built_outcomes() {
        let mut h = MarginHist::new();
        // Ratios 0.25, 0.5, 0.95 (near miss), 1.05 (just late), 3.0 (overflow); one drop.
        h.record(&outcome(0, OutcomeKind::Completed, 25, 100));
        h.record(&outcome(1, OutcomeKind::Completed, 50, 100));
        h.record(&outcome(2, OutcomeKind::Completed, 95, 100));
        h.record(&outcome(3, OutcomeKind::Missed, 105, 100));
        h.record(&outcome(4, OutcomeKind::Missed, 300, 100));
        h.record(&outcome(5, OutcomeKind::Dropped, 0, 100));
        assert_eq!(h.completed, 5);
        assert_eq!(h.late, 2);
        assert_eq!(h.dropped, 1);
        assert_eq!(h.bins[25], 1);
        assert_eq!(h.bins[50], 1);
        assert_eq!(h.bins[95], 1);
        assert_eq!(h.bins[105], 1);
        assert_eq!(h.bins[MARGIN_BINS], 1);
        // Six tasks in the distribution, the drop at infinity.
        assert_eq!(h.total(), 6);
        assert!((h.near_miss() - 1.0 / 6.0).abs() < 1e-12);
        assert!((h.just_late() - 1.0 / 6.0).abs() < 1e-12);
        assert!((h.mean() - (0.25 + 0.5 + 0.95 + 1.05 + 3.0) / 5.0).abs() < 1e-12);
        // Median is the third of six: 0.95 -> upper edge of bin 95.
        assert!((h.quantile(0.5) - 0.96).abs() < 1e-9);
        assert!((h.quantile(0.1) - 0.26).abs() < 1e-9);
        assert!(h.quantile(0.9).is_infinite());
        let cdf = h.cdf_points();
        assert_eq!(cdf.len(), MARGIN_BINS);
        assert!((cdf[99].1 - 0.5).abs() < 1e-12, "{:?}", cdf[99]);
        // The overflow task and the drop are beyond the last edge.
        assert!((cdf.last().unwrap().1 - 4.0 / 6.0).abs() < 1e-12);
        let mut m = h.clone();
        m.merge(&h);
        assert_eq!(m.completed, 10);
        assert_eq!(m.dropped, 2);
        assert_eq!(m.bins[25], 2);
        assert!((m.near_miss() - 1.0 / 6.0).abs() < 1e-12);
    }

    #[test]
    fn empty_and_degenerate() {
        let h = MarginHist::new();
        assert!(h.quantile(0.5).is_nan());
        assert!(h.cdf_points().is_empty());
        let mut h = MarginHist::new();
        // Zero relative deadline: no ratio, nothing recorded.
        h.record(&outcome(0, OutcomeKind::Completed, 10, 0));
        assert_eq!(h.completed, 0);
    }

    #[test]
    fn tap_keeps_only_measured_tasks() {
        struct Echo;
        impl Transport for Echo {
            fn request(&mut self, env: Envelope) -> Result<Envelope, TransportError> {
                Ok(env)
            }
        }
        let mut echo = Echo;
        let mut tap = Tap::new(&mut echo, 10..20);
        let step = Step {
            outcomes: vec![
                outcome(5, OutcomeKind::Completed, 10, 100),
                outcome(12, OutcomeKind::Completed, 10, 100),
                outcome(25, OutcomeKind::Completed, 10, 100),
            ],
            ..Default::default()
        };
        let env = Envelope {
            protocol_version: 1,
            request_id: 1,
            body: Some(Body::Step(step)),
        };
        tap.request(env).unwrap();
        assert_eq!(tap.hist.completed, 1);
        assert_eq!(tap.hist.bins[10], 1);
    }
}
