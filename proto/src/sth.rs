//! Slack Time Histogram: the 16-bucket hybrid linear/log binning of task slack (design.md section 4).
//!
//! Pure integer code, mirrored bit for bit by `omnetpp/core/sth.h` and checked against the
//! shared vectors in `proto/testdata/`.

/// Number of buckets M.
pub const STH_BUCKETS: usize = 16;
/// Width of a linear bucket in the critical region, us.
pub const STH_FINE_WIDTH_US: i64 = 2;
/// End of the critical (linear) region, us.
pub const STH_CRITICAL_US: i64 = 20;
/// Index of the first logarithmic bucket (1 + critical / fine).
const FIRST_LOG_BUCKET: usize = 1 + (STH_CRITICAL_US / STH_FINE_WIDTH_US) as usize;

/// Bucket of a slack value in microseconds.
///
/// 0 for s < 0 (already late); `1 + floor(s/2)` for 0 <= s < 20; `11 + floor(log2(s/20))`
/// for s >= 20, capped at 15. The log region is computed on integers: the largest k with
/// `20 * 2^k <= s`, so [20,40) -> 11, [40,80) -> 12, ..., >= 320 -> 15.
pub fn bucket_of(slack_us: i64) -> usize {
    if slack_us < 0 {
        return 0;
    }
    if slack_us < STH_CRITICAL_US {
        return 1 + (slack_us / STH_FINE_WIDTH_US) as usize;
    }
    // floor(log2(s / 20)) == floor(log2(floor(s / 20))) for integer s >= 20.
    let ratio = (slack_us / STH_CRITICAL_US) as u64;
    let k = 63 - ratio.leading_zeros() as usize;
    (FIRST_LOG_BUCKET + k).min(STH_BUCKETS - 1)
}

/// Smallest slack (us) that falls into `bucket` (bucket 0 has no lower edge: `i64::MIN`).
pub fn bucket_lower_edge_us(bucket: usize) -> i64 {
    match bucket {
        0 => i64::MIN,
        b if b < FIRST_LOG_BUCKET => (b as i64 - 1) * STH_FINE_WIDTH_US,
        b => STH_CRITICAL_US << (b.min(STH_BUCKETS - 1) - FIRST_LOG_BUCKET),
    }
}

/// Accumulator of a node's queued tasks: bucket counts plus the aggregates the agent and the
/// heartbeat need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlackHistogram {
    pub buckets: [u32; STH_BUCKETS],
    pub total_tasks: u32,
    /// Minimum slack seen since the last reset, us (`i64::MAX` while empty).
    pub min_slack_us: i64,
    /// Sum of remaining service time, us.
    pub sum_load_us: u64,
}

impl Default for SlackHistogram {
    fn default() -> Self {
        Self {
            buckets: [0; STH_BUCKETS],
            total_tasks: 0,
            min_slack_us: i64::MAX,
            sum_load_us: 0,
        }
    }
}

impl SlackHistogram {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn clear(&mut self) {
        *self = Self::default();
    }

    /// Adds one task with the given slack and remaining service time (both us).
    pub fn add(&mut self, slack_us: i64, remaining_service_us: u64) {
        self.buckets[bucket_of(slack_us)] += 1;
        self.total_tasks += 1;
        self.sum_load_us += remaining_service_us;
        self.min_slack_us = self.min_slack_us.min(slack_us);
    }

    /// True when some queued task is already late (the heartbeat's PANIC flag).
    pub fn panic(&self) -> bool {
        self.buckets[0] > 0
    }

    /// Slack percentile `percent` (1..=100) read off the histogram, us.
    ///
    /// The rank is `ceil(total * percent / 100)` (at least 1); the answer is the lower edge of
    /// the bucket that holds that rank, except bucket 0 which answers the exact `min_slack_us`
    /// (the only negative value the histogram keeps). An empty histogram answers `i64::MAX`
    /// (no queued task: unbounded slack), which the heartbeat saturates to `i16::MAX`.
    pub fn percentile_us(&self, percent: u32) -> i64 {
        if self.total_tasks == 0 {
            return i64::MAX;
        }
        let percent = percent.clamp(1, 100) as u64;
        let rank = ((self.total_tasks as u64 * percent).div_ceil(100)).max(1);
        let mut seen = 0u64;
        for (b, &count) in self.buckets.iter().enumerate() {
            seen += count as u64;
            if seen >= rank {
                return if b == 0 {
                    self.min_slack_us
                } else {
                    bucket_lower_edge_us(b)
                };
            }
        }
        unreachable!("total_tasks equals the sum of the buckets")
    }

    /// Min slack as carried on the wire: 0 when empty.
    pub fn min_slack_or_zero(&self) -> i64 {
        if self.total_tasks == 0 {
            0
        } else {
            self.min_slack_us
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lower_edges_map_back_to_their_bucket() {
        for b in 1..STH_BUCKETS {
            assert_eq!(bucket_of(bucket_lower_edge_us(b)), b, "bucket {b}");
            assert_eq!(
                bucket_of(bucket_lower_edge_us(b) - 1),
                b - 1,
                "below bucket {b}"
            );
        }
    }

    #[test]
    fn percentiles_follow_ranks() {
        let mut h = SlackHistogram::new();
        assert_eq!(h.percentile_us(50), i64::MAX);
        for s in [-7, 3, 3, 25, 100, 1000, 5, 5, 5, 5] {
            h.add(s, 1);
        }
        // Sorted buckets: 0(-7) 2 2 4 4 4 4 11 13 15 -> rank 1 is the late task.
        assert_eq!(h.percentile_us(10), -7);
        assert_eq!(h.percentile_us(50), 4);
        assert_eq!(h.percentile_us(100), 320);
        assert!(h.panic());
        assert_eq!(h.sum_load_us, 10);
    }
}
