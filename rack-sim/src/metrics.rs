//! Run metrics (SPEC section 9): latency percentiles, miss rate, goodput, throughput, WCET
//! ratio, per-node utilisation and per-class miss rates, warm-up excluded.

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

/// Latency summary of completed tasks (on time or late; dropped tasks have no latency).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LatencyReport {
    pub mean_ns: f64,
    pub p50_ns: u64,
    pub p99_ns: u64,
    pub p999_ns: u64,
    pub max_ns: u64,
    /// The latency distribution as (quantile, latency ns) points, for CDF plots: 100
    /// quantiles plus the tail (0.995, 0.999, 0.9999, 1.0). Empty when nothing completed.
    #[serde(default)]
    pub cdf: Vec<(f64, u64)>,
}

/// Quantiles at which [`LatencyReport::cdf`] is sampled.
fn cdf_quantiles() -> impl Iterator<Item = f64> {
    (1..100)
        .map(|i| i as f64 / 100.0)
        .chain([0.995, 0.999, 0.9999, 1.0])
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
    pub latency: LatencyReport,
    /// Mean of latency minus the task's own service time on its node (queueing, network,
    /// decision delay, preemption), over completed tasks.
    pub mean_wait_ns: f64,
    /// Mean reference service of completed tasks.
    pub mean_service_ns: f64,
    /// WCET ratio: max latency / mean reference service (how many mean services the worst
    /// task took end to end).
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
        let latency = if self.completed == 0 {
            LatencyReport::default()
        } else {
            LatencyReport {
                mean_ns: mean(self.sum_latency_ns as f64),
                p50_ns: self.hist.value_at_quantile(0.5),
                p99_ns: self.hist.value_at_quantile(0.99),
                p999_ns: self.hist.value_at_quantile(0.999),
                max_ns: self.max_latency_ns,
                cdf: cdf_quantiles()
                    .map(|q| (q, self.hist.value_at_quantile(q)))
                    .collect(),
            }
        };
        Report {
            scenario: scenario.to_string(),
            seed,
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
        assert!((r.latency.p50_ns as f64 - 1500.0).abs() <= 2.0);
        assert_eq!(r.latency.max_ns, 1999);
        assert!((r.wcet_ratio - 1999.0 / 500.0).abs() < 1e-9);
        assert_eq!(r.per_class[&1].finished, 100);
        assert!((r.per_class[&1].miss_rate - 0.5).abs() < 1e-12);
    }
}
