#include "bulk_traffic.h"

#include <stdexcept>

namespace malcolm {

void BulkTraffic::validate(int numNodes, bool intervalPositive) const
{
    if (target >= 0 && (bytes < 1 || bytes > UINT32_MAX || !intervalPositive))
        throw std::invalid_argument("bulk writes need 1 B <= bulkBytes < 4 GiB and bulkInterval > 0");
    if (target >= numNodes || fanIn < 0 || fanIn >= numNodes)
        throw std::invalid_argument("bulkTarget must be < numNodes and 0 <= bulkFanIn < numNodes");
}

bool BulkTraffic::isSender(int node) const
{
    return target >= 0 && node != target && (fanIn == 0 || (node >= 1 && node <= fanIn));
}

}  // namespace malcolm
