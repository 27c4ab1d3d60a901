#include "sth.h"

#include <algorithm>

namespace malcolm {

int sthBucketOf(int64_t slackUs)
{
    if (slackUs < 0)
        return 0;
    if (slackUs < kSthCriticalUs)
        return 1 + static_cast<int>(slackUs / kSthFineWidthUs);
    // floor(log2(s / 20)) == floor(log2(floor(s / 20))) for integer s >= 20.
    uint64_t ratio = static_cast<uint64_t>(slackUs / kSthCriticalUs);
    int k = 63 - __builtin_clzll(ratio);
    return std::min(kSthFirstLogBucket + k, kSthBuckets - 1);
}

int64_t sthBucketLowerEdgeUs(int bucket)
{
    if (bucket <= 0)
        return std::numeric_limits<int64_t>::min();
    if (bucket < kSthFirstLogBucket)
        return (bucket - 1) * kSthFineWidthUs;
    return kSthCriticalUs << (std::min(bucket, kSthBuckets - 1) - kSthFirstLogBucket);
}

void SlackHistogram::add(int64_t slackUs, uint64_t remainingServiceUs)
{
    buckets_[sthBucketOf(slackUs)]++;
    totalTasks_++;
    sumLoadUs_ += remainingServiceUs;
    minSlackUs_ = std::min(minSlackUs_, slackUs);
}

int64_t SlackHistogram::percentileUs(uint32_t percent) const
{
    if (totalTasks_ == 0)
        return std::numeric_limits<int64_t>::max();
    uint64_t pct = std::clamp<uint32_t>(percent, 1, 100);
    uint64_t rank = std::max<uint64_t>(1, (uint64_t(totalTasks_) * pct + 99) / 100);
    uint64_t seen = 0;
    for (int b = 0; b < kSthBuckets; b++) {
        seen += buckets_[b];
        if (seen >= rank)
            return b == 0 ? minSlackUs_ : sthBucketLowerEdgeUs(b);
    }
    return sthBucketLowerEdgeUs(kSthBuckets - 1);  // unreachable: total == sum of buckets
}

}  // namespace malcolm
