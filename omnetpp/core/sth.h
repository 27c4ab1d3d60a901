// Slack Time Histogram (design.md section 4): 16 buckets, linear 2 us buckets below 20 us, then
// log2 buckets. Mirrors proto/src/sth.rs bit for bit (checked by the shared golden vectors).
#pragma once

#include <array>
#include <cstdint>
#include <limits>

namespace malcolm {

constexpr int kSthBuckets = 16;
constexpr int64_t kSthFineWidthUs = 2;
constexpr int64_t kSthCriticalUs = 20;
constexpr int kSthFirstLogBucket = 1 + static_cast<int>(kSthCriticalUs / kSthFineWidthUs);

// Bucket of a slack value in microseconds: 0 when late, 1 + s/2 below 20 us, then
// 11 + floor(log2(s/20)) capped at 15, computed on integers.
int sthBucketOf(int64_t slackUs);

// Smallest slack (us) that falls into `bucket`; bucket 0 has no lower edge (INT64_MIN).
int64_t sthBucketLowerEdgeUs(int bucket);

// A node's queued tasks: bucket counts plus the aggregates the agent and heartbeat need.
class SlackHistogram
{
  public:
    void clear() { *this = SlackHistogram(); }
    // Adds one task with its slack and remaining service time (both us).
    void add(int64_t slackUs, uint64_t remainingServiceUs);

    const std::array<uint32_t, kSthBuckets>& buckets() const { return buckets_; }
    uint32_t totalTasks() const { return totalTasks_; }
    // INT64_MAX while empty.
    int64_t minSlackUs() const { return minSlackUs_; }
    // As carried on the wire: 0 when empty.
    int64_t minSlackOrZero() const { return totalTasks_ == 0 ? 0 : minSlackUs_; }
    uint64_t sumLoadUs() const { return sumLoadUs_; }
    // Replaces the summed remaining work (a caller that sums nanoseconds and floors once).
    void setSumLoadUs(uint64_t us) { sumLoadUs_ = us; }
    // Some queued task is already late (the heartbeat's PANIC flag).
    bool panic() const { return buckets_[0] > 0; }

    // Percentile (1..100) read off the histogram: rank = ceil(total * pct / 100), answer the
    // lower edge of the bucket holding that rank, bucket 0 answers min slack, empty answers
    // INT64_MAX.
    int64_t percentileUs(uint32_t percent) const;

  private:
    std::array<uint32_t, kSthBuckets> buckets_{};
    uint32_t totalTasks_ = 0;
    int64_t minSlackUs_ = std::numeric_limits<int64_t>::max();
    uint64_t sumLoadUs_ = 0;
};

}  // namespace malcolm
