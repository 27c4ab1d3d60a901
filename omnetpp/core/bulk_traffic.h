// Background RDMA writes of the app (incast and PFC-storm traffic): senders write `bytes` to
// one target node every interval, `count` times (or without end).
#pragma once

#include <cstdint>

namespace malcolm {

struct BulkTraffic
{
    int target = -1;     // < 0: no bulk traffic
    int count = -1;      // writes per sender; < 0: until the run ends
    int fanIn = 0;       // 0: every other node sends; k > 0: nodes 1..k send
    int64_t bytes = 0;   // per write, 1 B .. 4 GiB - 1

    // Throws std::invalid_argument on a setting a rack of `numNodes` cannot run (the interval
    // between writes must be positive: `intervalPositive`).
    void validate(int numNodes, bool intervalPositive) const;
    // Whether `node` writes to the target.
    bool isSender(int node) const;
    // Whether another write follows the `sent` ones.
    bool continuesAfter(int sent) const { return count < 0 || sent < count; }
};

}  // namespace malcolm
