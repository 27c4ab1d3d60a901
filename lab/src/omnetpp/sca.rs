//! Outcomes of one OMNeT++ run from its `.sca` file (the OMNeT++ 6 text format, read
//! directly: no `opp_scavetool` needed). The EDF schedulers' `completed`, `missed` and
//! `dropped` counts give the miss rate; their `latency:histogram` statistics, pooled over the
//! servers, give latency percentiles; the coordinator's `eventsPerWallSecond` the speed.

use std::path::Path;

/// What one run's `.sca` says about its tasks.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ScaOutcome {
    /// Tasks completed by their deadline / completed late / dropped (all servers).
    pub completed: u64,
    pub missed: u64,
    pub dropped: u64,
    /// Tasks the apps generated (recorded only when the ini records `generated:count`).
    pub generated: u64,
    /// Pooled latency histogram bins of the completed tasks: (lower s, upper s, count).
    pub latency_bins: Vec<(f64, f64, f64)>,
    /// The coordinator's simulation speed (events per wall-clock second), 0 if absent.
    pub events_per_s: f64,
    /// What an embedded agent recorded (a served run's counts are the server's): decisions
    /// and placements behind a PFC-paused link; `None` when the run had no embedded agent.
    pub agent_decisions: Option<u64>,
    pub agent_behind_paused: Option<u64>,
}

#[derive(Debug, thiserror::Error)]
pub enum ScaError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: no scheduler task counts (completed/missed/dropped:count) in the file")]
    NoTasks { path: String },
}

impl ScaOutcome {
    /// Reads one `.sca` file.
    pub fn read(path: &Path) -> Result<Self, ScaError> {
        let text = std::fs::read_to_string(path).map_err(|source| ScaError::Io {
            path: path.display().to_string(),
            source,
        })?;
        let o = Self::parse(&text);
        if o.total() == 0 && !text.contains(".scheduler completed:count") {
            return Err(ScaError::NoTasks {
                path: path.display().to_string(),
            });
        }
        Ok(o)
    }

    /// Parses the text of a `.sca` file (one run).
    pub fn parse(text: &str) -> Self {
        let mut o = Self::default();
        // Bins of the histogram being read: (lower, count), closed by its `max` field.
        let mut bins: Vec<(f64, f64)> = Vec::new();
        let mut in_latency = false;
        let mut max = f64::NAN;
        let flush = |bins: &mut Vec<(f64, f64)>, max: f64, out: &mut Vec<(f64, f64, f64)>| {
            for (k, &(lo, n)) in bins.iter().enumerate() {
                let hi = bins.get(k + 1).map_or(max, |b| b.0);
                if n > 0.0 && lo.is_finite() {
                    out.push((lo, hi.max(lo), n));
                } else if n > 0.0 {
                    // The underflow bin (-inf, first edge): latencies are >= 0.
                    out.push((0.0, hi.max(0.0), n));
                }
            }
            bins.clear();
        };
        for line in text.lines() {
            let mut f = line.split_whitespace();
            match f.next() {
                Some("scalar") => {
                    let (Some(module), Some(name), Some(value)) = (f.next(), f.next(), f.next())
                    else {
                        continue;
                    };
                    let v: f64 = value.parse().unwrap_or(f64::NAN);
                    if module.ends_with(".scheduler") {
                        let slot = match name {
                            "completed:count" => &mut o.completed,
                            "missed:count" => &mut o.missed,
                            "dropped:count" => &mut o.dropped,
                            _ => continue,
                        };
                        *slot += v.max(0.0) as u64;
                    } else if module.ends_with(".app") && name == "generated:count" {
                        o.generated += v.max(0.0) as u64;
                    } else if module.ends_with(".coordinator") {
                        let count = Some(v.max(0.0) as u64);
                        match name {
                            "eventsPerWallSecond" => o.events_per_s += v,
                            "agentDecisions" => o.agent_decisions = count,
                            "agentPlacedBehindPaused" => o.agent_behind_paused = count,
                            _ => {}
                        }
                    }
                }
                Some("statistic") => {
                    if in_latency {
                        flush(&mut bins, max, &mut o.latency_bins);
                    }
                    let (module, name) = (f.next().unwrap_or(""), f.next().unwrap_or(""));
                    in_latency = module.ends_with(".scheduler") && name == "latency:histogram";
                    max = f64::NAN;
                }
                Some("field") if in_latency => {
                    if let (Some("max"), Some(v)) = (f.next(), f.next()) {
                        max = v.parse().unwrap_or(f64::NAN);
                    }
                }
                Some("bin") if in_latency => {
                    if let (Some(lo), Some(n)) = (f.next(), f.next()) {
                        let lo = if lo == "-inf" {
                            f64::NEG_INFINITY
                        } else {
                            lo.parse().unwrap_or(f64::NAN)
                        };
                        bins.push((lo, n.parse().unwrap_or(0.0)));
                    }
                }
                _ => {}
            }
        }
        if in_latency {
            flush(&mut bins, max, &mut o.latency_bins);
        }
        o
    }

    /// Every task the schedulers finished or dropped.
    pub fn total(&self) -> u64 {
        self.completed + self.missed + self.dropped
    }

    /// Generated tasks neither finished nor dropped when the run ended (stuck in a queue or
    /// behind a paused link, or generated in its last microseconds), as a fraction of the
    /// generated ones; NaN when the run recorded no generated count.
    pub fn unfinished_fraction(&self) -> f64 {
        if self.generated == 0 {
            f64::NAN
        } else {
            self.generated.saturating_sub(self.total()) as f64 / self.generated as f64
        }
    }

    /// (late + dropped) / all tasks; NaN without tasks.
    pub fn miss_rate(&self) -> f64 {
        let t = self.total();
        if t == 0 {
            f64::NAN
        } else {
            (self.missed + self.dropped) as f64 / t as f64
        }
    }

    /// The `q` quantile of the latency over every task in microseconds, dropped tasks at
    /// +infinity (censored, as in the rest of the results): infinite when more than `1 - q`
    /// of the tasks were dropped. Interpolated linearly within the pooled histogram bins
    /// (servers' bins overlap; each bin's tasks are spread evenly over it).
    pub fn latency_quantile_us(&self, q: f64) -> f64 {
        let measured: f64 = self.latency_bins.iter().map(|b| b.2).sum();
        let total = measured + self.dropped as f64;
        if total <= 0.0 {
            return f64::NAN;
        }
        let rank = q * total;
        if rank > measured {
            return f64::INFINITY;
        }
        // The pooled distribution function at x: every bin contributes its overlap.
        let cdf = |x: f64| -> f64 {
            self.latency_bins
                .iter()
                .map(|&(lo, hi, n)| {
                    if x >= hi {
                        n
                    } else if x <= lo {
                        0.0
                    } else {
                        n * (x - lo) / (hi - lo)
                    }
                })
                .sum()
        };
        let (mut lo, mut hi) = (
            0.0,
            self.latency_bins.iter().map(|b| b.1).fold(0.0, f64::max),
        );
        for _ in 0..80 {
            let mid = 0.5 * (lo + hi);
            if cdf(mid) < rank {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        hi * 1e6
    }
}

/// The one `.sca` file in `dir` (a run's result directory).
pub fn find_sca(dir: &Path) -> Option<std::path::PathBuf> {
    std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|x| x == "sca"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SCA: &str = "version 3
run Hetero-0-20261130-02:07:06-9753
attr configname Hetero
scalar Rack16.node[0].scheduler completed:count 90
scalar Rack16.node[0].scheduler missed:count 6
scalar Rack16.node[0].scheduler dropped:count 4
scalar Rack16.node[1].scheduler completed:count 10
scalar Rack16.node[1].scheduler missed:count 0
scalar Rack16.node[1].scheduler dropped:count 0
scalar Rack16.node[0].app generated:count 111
scalar Rack16.coordinator eventsPerWallSecond 1500000
statistic Rack16.node[0].scheduler latency:histogram
field count 96
field max 0.0001
attr unit s
bin\t-inf\t0
bin\t0\t48
bin\t5e-05\t48
statistic Rack16.node[1].scheduler latency:histogram
field count 10
field max 4e-05
bin\t-inf\t0
bin\t0\t10
statistic Rack16.node[1].scheduler queueLength:histogram
field max 9
bin\t0\t5
";

    #[test]
    fn counts_and_histograms_are_pooled_over_servers() {
        let o = ScaOutcome::parse(SCA);
        assert_eq!((o.completed, o.missed, o.dropped), (100, 6, 4));
        assert_eq!(o.total(), 110);
        assert!((o.miss_rate() - 10.0 / 110.0).abs() < 1e-12);
        assert_eq!(o.events_per_s, 1_500_000.0);
        // 111 generated, 110 finished or dropped: 1 still in the rack at the end.
        assert_eq!(o.generated, 111);
        assert!((o.unfinished_fraction() - 1.0 / 111.0).abs() < 1e-12);
        // No embedded agent in this run; one that had it records its counts.
        assert_eq!((o.agent_decisions, o.agent_behind_paused), (None, None));
        let embedded = format!(
            "{SCA}scalar Rack16.coordinator agentDecisions 4872\nscalar Rack16.coordinator agentPlacedBehindPaused 17\n"
        );
        let e = ScaOutcome::parse(&embedded);
        assert_eq!(
            (e.agent_decisions, e.agent_behind_paused),
            (Some(4872), Some(17))
        );
        // The queue-length histogram is not a latency.
        assert_eq!(
            o.latency_bins,
            vec![(0.0, 5e-5, 48.0), (5e-5, 1e-4, 48.0), (0.0, 4e-5, 10.0)]
        );
    }

    #[test]
    fn quantiles_interpolate_and_censor_drops() {
        let o = ScaOutcome::parse(SCA);
        // 110 tasks, 4 dropped: 106 measured. The median (rank 55): 10 tasks in [0, 40) us
        // and 48 in [0, 50) us reach 55 at x where 10 x/40 + 48 x/50 = 55 (x <= 40: 1.21 x
        // = 55 gives 45 > 40, so past 40: 10 + 0.96 x = 55, x = 46.875 us).
        assert!((o.latency_quantile_us(0.5) - 46.875).abs() < 1e-6);
        // 4 of 110 dropped (3.6%): p99 is infinite, p95 (rank 104.5 <= 106) is not.
        assert!(o.latency_quantile_us(0.99).is_infinite());
        let p95 = o.latency_quantile_us(0.95);
        assert!(p95 > 90.0 && p95 <= 100.0, "{p95}");
        assert!(ScaOutcome::default().latency_quantile_us(0.5).is_nan());
    }
}
