//! Run metrics (design.md section 9): latency percentiles, miss rate, goodput, throughput, WCET
//! ratio, per-node utilisation and per-class miss rates, warm-up excluded.
//!
//! Tail figures count every measured task: a dropped task never completes, so its latency is
//! censored at +infinity. A percentile above the completed fraction is infinite, and the CDF
//! stops at the completed fraction (an EDF node that drops its worst tasks cannot look better
//! for it than an FCFS node that serves them late). Completed-only figures are kept apart, in
//! [`Report::latency_completed`], and say so.

use hdrhistogram::Histogram;
use malcolm_proto::bridge::EndReason;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Significant digits of the latency histogram: 0.1% relative error at any magnitude, with
/// nanosecond resolution at the bottom, in about 200 KiB.
const HIST_SIGFIG: u8 = 3;
/// Largest latency the histogram holds (1 hour of simulated time); larger values saturate.
const HIST_MAX_NS: u64 = 3_600_000_000_000;

/// Counts of one workload class.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ClassReport {
    pub finished: u64,
    pub on_time: u64,
    pub missed: u64,
    pub dropped: u64,
    /// (missed + dropped) / finished.
    pub miss_rate: f64,
}

/// Latency summary of a set of tasks. In [`Report::latency`] the set is every measured task
/// and a dropped task counts with latency +infinity (censored: it never completes), so the
/// figures are `f64` nanoseconds, infinite where the quantile falls among dropped tasks. In
/// [`Report::latency_completed`] the set is the completed tasks only (on time or late).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LatencyReport {
    /// Tasks counted.
    #[serde(default)]
    pub tasks: u64,
    /// Of which dropped: latency censored at +infinity.
    #[serde(default)]
    pub censored: u64,
    /// Mean latency, ns (infinite when any task is censored).
    #[serde(with = "censored_f64")]
    pub mean_ns: f64,
    #[serde(with = "censored_f64")]
    pub p50_ns: f64,
    #[serde(with = "censored_f64")]
    pub p99_ns: f64,
    #[serde(with = "censored_f64")]
    pub p999_ns: f64,
    #[serde(with = "censored_f64")]
    pub max_ns: f64,
    /// The latency distribution as (fraction of the counted tasks, latency ns) points, for
    /// CDF plots: 100 quantiles plus the tail (0.995, 0.999, 0.9999, 1.0), up to the completed
    /// fraction, where it ends with the largest completed latency (the rest never completes).
    /// Empty when nothing completed.
    #[serde(default)]
    pub cdf: Vec<(f64, u64)>,
}

impl LatencyReport {
    /// Fraction of the counted tasks that completed.
    pub fn completed_fraction(&self) -> f64 {
        if self.tasks == 0 {
            0.0
        } else {
            (self.tasks - self.censored) as f64 / self.tasks as f64
        }
    }
}

/// Serde for latency figures that may be infinite (censored): finite values as numbers,
/// infinity as the string "inf" (JSON has no infinity).
mod censored_f64 {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
        if v.is_finite() {
            s.serialize_f64(*v)
        } else {
            s.serialize_str("inf")
        }
    }

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum NumOrInf {
        Num(f64),
        Str(String),
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        match NumOrInf::deserialize(d)? {
            NumOrInf::Num(x) => Ok(x),
            NumOrInf::Str(s) if s == "inf" => Ok(f64::INFINITY),
            NumOrInf::Str(s) => Err(serde::de::Error::custom(format!(
                "latency {s:?}: a number or \"inf\""
            ))),
        }
    }
}

/// Quantiles at which [`LatencyReport::cdf`] is sampled.
fn cdf_quantiles() -> impl Iterator<Item = f64> {
    (1..100)
        .map(|i| i as f64 / 100.0)
        .chain([0.995, 0.999, 0.9999, 1.0])
}

/// Latency figures of `completed` (a histogram of completed tasks' latencies) plus `censored`
/// dropped tasks counted at +infinity; `mean_ns` and `max_ns` are the completed tasks'.
fn latency_report(
    hist: &Histogram<u64>,
    censored: u64,
    completed_mean_ns: f64,
    completed_max_ns: u64,
) -> LatencyReport {
    let completed = hist.len();
    let tasks = completed + censored;
    if tasks == 0 {
        return LatencyReport::default();
    }
    let frac = completed as f64 / tasks as f64;
    // The q-quantile of all tasks: the (q / frac)-quantile of the completed ones while
    // q <= frac, else a censored task's (infinite).
    let at = |q: f64| -> f64 {
        if completed == 0 || q > frac {
            f64::INFINITY
        } else {
            hist.value_at_quantile((q / frac).min(1.0)) as f64
        }
    };
    let mut cdf: Vec<(f64, u64)> = if completed == 0 {
        Vec::new()
    } else {
        cdf_quantiles()
            .filter(|&q| q <= frac)
            .map(|q| (q, at(q) as u64))
            .collect()
    };
    if completed > 0 && censored > 0 {
        cdf.push((frac, completed_max_ns));
    }
    LatencyReport {
        tasks,
        censored,
        mean_ns: if censored > 0 {
            f64::INFINITY
        } else {
            completed_mean_ns
        },
        p50_ns: at(0.5),
        p99_ns: at(0.99),
        p999_ns: at(0.999),
        max_ns: if censored > 0 {
            f64::INFINITY
        } else {
            completed_max_ns as f64
        },
        cdf,
    }
}

/// One finished episode.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpisodeReport {
    pub episode: u64,
    pub reason: String,
    pub steps: u64,
    pub sim_time_ns: u64,
    pub arrivals: u64,
    pub measured: u64,
}

/// Everything a run measured. Deterministic: same scenario and seed, same bytes of JSON.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub scenario: String,
    pub seed: u64,
    /// The service-estimate model the policies saw (Hello's `service_estimate`, e.g.
    /// "noisy(sigma=0.5)" or "exact").
    #[serde(default)]
    pub service_estimate: String,
    pub nodes: usize,
    /// Episodes finished (the running one's measured tasks are included in the figures).
    pub episodes: u64,
    /// Measured tasks that left the system (completed, missed or dropped).
    pub finished: u64,
    pub on_time: u64,
    pub missed: u64,
    pub dropped: u64,
    /// (missed + dropped) / finished.
    pub miss_rate: f64,
    /// On-time completions per second of the measured arrival window.
    pub goodput_per_s: f64,
    /// Completions (on time or late) per second of the measured arrival window.
    pub throughput_per_s: f64,
    /// Measured arrivals per second of the measured arrival window.
    pub offered_per_s: f64,
    /// Latency over every measured task, dropped ones censored at +infinity.
    pub latency: LatencyReport,
    /// Latency over the completed tasks only (a labelled extra: it flatters policies that
    /// drop their slowest tasks).
    #[serde(default)]
    pub latency_completed: LatencyReport,
    /// Mean of latency minus the task's own service time on its node (queueing, network,
    /// decision delay, preemption), over completed tasks.
    pub mean_wait_ns: f64,
    /// Mean reference service of completed tasks.
    pub mean_service_ns: f64,
    /// WCET ratio: max latency / mean reference service over completed tasks (how many mean
    /// services the worst completed task took end to end).
    pub wcet_ratio: f64,
    /// Per workload class (0 regular, 1 micro-burst).
    pub per_class: BTreeMap<u32, ClassReport>,
    /// Busy core time / (cores x simulated time), per node, over all episodes.
    pub node_utilisation: Vec<f64>,
    pub sim_time_ns: u64,
    /// Events processed by the engine.
    pub events: u64,
    pub steps: u64,
    pub episode_reports: Vec<EpisodeReport>,
}

/// Accumulator behind [`Report`].
#[derive(Debug, Clone)]
pub struct Metrics {
    hist: Histogram<u64>,
    /// Measured tasks dropped (latency censored at +infinity).
    censored: u64,
    classes: BTreeMap<u32, ClassReport>,
    sum_latency_ns: u128,
    sum_wait_ns: i128,
    sum_service_ns: u128,
    completed: u64,
    max_latency_ns: u64,
    /// Measured arrival window of the running episode.
    window_first: Option<u64>,
    window_last: u64,
    /// Closed windows of finished episodes.
    window_ns: u64,
    measured_arrivals: u64,
    pub(crate) episodes: Vec<EpisodeReport>,
    node_busy_ns: Vec<u128>,
    node_time_ns: u128,
}

/// One measured task leaving the system.
#[derive(Debug, Clone, Copy)]
pub struct Finished {
    pub class: u32,
    pub on_time: bool,
    pub dropped: bool,
    pub latency_ns: u64,
    pub service_ref_ns: u64,
    pub service_wall_ns: u64,
}

impl Metrics {
    pub fn new(nodes: usize) -> Self {
        Self {
            hist: Histogram::new_with_bounds(1, HIST_MAX_NS, HIST_SIGFIG)
                .expect("static histogram bounds are valid"),
            censored: 0,
            classes: BTreeMap::new(),
            sum_latency_ns: 0,
            sum_wait_ns: 0,
            sum_service_ns: 0,
            completed: 0,
            max_latency_ns: 0,
            window_first: None,
            window_last: 0,
            window_ns: 0,
            measured_arrivals: 0,
            episodes: Vec::new(),
            node_busy_ns: vec![0; nodes],
            node_time_ns: 0,
        }
    }

    pub fn arrival(&mut self, at: u64) {
        self.measured_arrivals += 1;
        self.window_first.get_or_insert(at);
        self.window_last = at;
    }

    pub fn finish(&mut self, f: Finished) {
        let c = self.classes.entry(f.class).or_default();
        c.finished += 1;
        if f.dropped {
            c.dropped += 1;
            self.censored += 1;
            return;
        }
        if f.on_time {
            c.on_time += 1;
        } else {
            c.missed += 1;
        }
        self.completed += 1;
        self.hist.saturating_record(f.latency_ns.max(1));
        self.sum_latency_ns += f.latency_ns as u128;
        self.sum_wait_ns += f.latency_ns as i128 - f.service_wall_ns as i128;
        self.sum_service_ns += f.service_ref_ns as u128;
        self.max_latency_ns = self.max_latency_ns.max(f.latency_ns);
    }

    /// Closes the running episode's arrival window and adds the nodes' busy time.
    pub fn end_episode(&mut self, report: EpisodeReport, busy_ns: &[u64], cores: &[u32]) {
        if let Some(first) = self.window_first.take() {
            self.window_ns += self.window_last - first;
        }
        for (acc, (b, k)) in self
            .node_busy_ns
            .iter_mut()
            .zip(busy_ns.iter().zip(cores.iter()))
        {
            // Normalise per core here so the report divides by time only.
            *acc += *b as u128 / (*k as u128).max(1);
        }
        self.node_time_ns += report.sim_time_ns as u128;
        self.episodes.push(report);
    }

    pub fn report(
        &self,
        scenario: &str,
        seed: u64,
        sim_time_ns: u64,
        events: u64,
        steps: u64,
    ) -> Report {
        let mut per_class = self.classes.clone();
        let mut total = ClassReport::default();
        for c in per_class.values_mut() {
            c.miss_rate = ratio(c.missed + c.dropped, c.finished);
            total.finished += c.finished;
            total.on_time += c.on_time;
            total.missed += c.missed;
            total.dropped += c.dropped;
        }
        let window = self.window_ns
            + self
                .window_first
                .map_or(0, |first| self.window_last - first);
        let per_s = |n: u64| {
            if window == 0 {
                0.0
            } else {
                n as f64 * 1e9 / window as f64
            }
        };
        let mean = |sum: f64| {
            if self.completed == 0 {
                0.0
            } else {
                sum / self.completed as f64
            }
        };
        let mean_service_ns = mean(self.sum_service_ns as f64);
        let completed_mean = mean(self.sum_latency_ns as f64);
        let latency = latency_report(
            &self.hist,
            self.censored,
            completed_mean,
            self.max_latency_ns,
        );
        let latency_completed = latency_report(&self.hist, 0, completed_mean, self.max_latency_ns);
        Report {
            scenario: scenario.to_string(),
            seed,
            service_estimate: String::new(),
            nodes: self.node_busy_ns.len(),
            episodes: self.episodes.len() as u64,
            finished: total.finished,
            on_time: total.on_time,
            missed: total.missed,
            dropped: total.dropped,
            miss_rate: ratio(total.missed + total.dropped, total.finished),
            goodput_per_s: per_s(total.on_time),
            throughput_per_s: per_s(total.on_time + total.missed),
            offered_per_s: per_s(self.measured_arrivals),
            wcet_ratio: if mean_service_ns > 0.0 {
                self.max_latency_ns as f64 / mean_service_ns
            } else {
                0.0
            },
            latency,
            latency_completed,
            mean_wait_ns: mean(self.sum_wait_ns as f64),
            mean_service_ns,
            per_class,
            node_utilisation: self
                .node_busy_ns
                .iter()
                .map(|&b| {
                    if self.node_time_ns == 0 {
                        0.0
                    } else {
                        b as f64 / self.node_time_ns as f64
                    }
                })
                .collect(),
            sim_time_ns,
            events,
            steps,
            episode_reports: self.episodes.clone(),
        }
    }
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 {
        0.0
    } else {
        a as f64 / b as f64
    }
}

/// Label of an end reason for reports.
pub fn reason_label(r: EndReason) -> String {
    match r {
        EndReason::Terminated => "terminated".into(),
        EndReason::Truncated => "truncated".into(),
        EndReason::Unspecified => "unspecified".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_and_percentiles() {
        let mut m = Metrics::new(1);
        for i in 0..1000u64 {
            m.arrival(i * 1000);
            m.finish(Finished {
                class: (i % 10 == 0) as u32,
                on_time: i % 4 != 0,
                dropped: i % 100 == 0,
                latency_ns: 1000 + i,
                service_ref_ns: 500,
                service_wall_ns: 500,
            });
        }
        let r = m.report("t", 1, 0, 0, 0);
        assert_eq!(r.finished, 1000);
        assert_eq!(r.dropped, 10);
        assert_eq!(r.missed, 240);
        assert!((r.miss_rate - 0.25).abs() < 1e-12);
        // 750 on time over a 999 us window.
        assert!((r.goodput_per_s - 750.0 * 1e9 / 999_000.0).abs() < 1e-6);
        // Completed only: 990 latencies 1000..1999 without the multiples of 100.
        assert!((r.latency_completed.p50_ns - 1500.0).abs() <= 2.0);
        assert_eq!(r.latency_completed.max_ns, 1999.0);
        assert_eq!(r.latency_completed.censored, 0);
        assert!((r.wcet_ratio - 1999.0 / 500.0).abs() < 1e-9);
        // All tasks: the 10 drops sit above every completion, at +infinity.
        assert_eq!((r.latency.tasks, r.latency.censored), (1000, 10));
        assert!((r.latency.completed_fraction() - 0.99).abs() < 1e-12);
        // p50 of all = the 50.5%-quantile of the completed ones.
        let want = 1000.0 + 0.5 / 0.99 * 1000.0;
        assert!(
            (r.latency.p50_ns - want).abs() <= 3.0,
            "{}",
            r.latency.p50_ns
        );
        assert!(
            (r.latency.p99_ns - 1999.0).abs() <= 2.0,
            "p99 = the last completion"
        );
        assert!(r.latency.p999_ns.is_infinite());
        assert!(r.latency.mean_ns.is_infinite() && r.latency.max_ns.is_infinite());
        // The CDF ends at the completed fraction with the largest completion.
        assert_eq!(r.latency.cdf.last(), Some(&(0.99, 1999)));
        assert!(r.latency.cdf.iter().all(|&(q, _)| q <= 0.99));
        assert_eq!(r.latency_completed.cdf.last().map(|p| p.0), Some(1.0));
        // Infinite figures survive JSON.
        let json = serde_json::to_string(&r).unwrap();
        let back: Report = serde_json::from_str(&json).unwrap();
        assert_eq!(back, r);
        assert_eq!(r.per_class[&1].finished, 100);
        assert!((r.per_class[&1].miss_rate - 0.5).abs() < 1e-12);
    }

    #[test]
    fn drops_cannot_improve_the_tail() {
        // Two policies see the same 100 tasks; A completes the slow ten late, B drops them.
        let run = |drop_slow: bool| {
            let mut m = Metrics::new(1);
            for i in 0..100u64 {
                m.arrival(i);
                let slow = i % 10 == 0;
                m.finish(Finished {
                    class: 0,
                    on_time: !slow,
                    dropped: slow && drop_slow,
                    latency_ns: if slow { 50_000 } else { 1_000 + i },
                    service_ref_ns: 500,
                    service_wall_ns: 500,
                });
            }
            m.report("t", 1, 0, 0, 0)
        };
        let (served, dropped) = (run(false), run(true));
        assert!((served.latency.p99_ns - 50_000.0).abs() < 100.0);
        assert!(dropped.latency.p99_ns.is_infinite());
        // Completed-only, the dropping policy would have looked 50x better.
        assert!(dropped.latency_completed.p99_ns < 1_200.0);
    }
}
