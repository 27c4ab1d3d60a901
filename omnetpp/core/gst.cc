#include "gst.h"

#include <stdexcept>
#include <string>

namespace malcolm {

GlobalStateTable::GlobalStateTable(uint32_t numNodes, uint32_t self)
    : self_(self), bytes_(numNodes, HeartbeatBytes{}), receivedAt_(numNodes, -1)
{
    if (self >= numNodes)
        throw std::out_of_range("GlobalStateTable: node " + std::to_string(self) + " outside a rack of " +
                                std::to_string(numNodes));
}

void GlobalStateTable::record(uint32_t src, const HeartbeatBytes& bytes, int64_t at)
{
    bytes_.at(src) = bytes;
    receivedAt_.at(src) = at;
}

std::optional<int64_t> GlobalStateTable::age(uint32_t node, int64_t now) const
{
    int64_t at = receivedAt_.at(node);
    if (at < 0)
        return std::nullopt;
    return now - at;
}

std::optional<int64_t> GlobalStateTable::meanPeerAge(int64_t now) const
{
    int64_t sum = 0;
    int64_t known = 0;
    for (uint32_t i = 0; i < numNodes(); i++)
        if (i != self_ && receivedAt_[i] >= 0) {
            sum += now - receivedAt_[i];
            known++;
        }
    if (known == 0)
        return std::nullopt;
    return sum / known;
}

std::vector<Heartbeat> GlobalStateTable::view(const Heartbeat& own) const
{
    std::vector<Heartbeat> out;
    out.reserve(bytes_.size());
    for (uint32_t i = 0; i < numNodes(); i++)
        out.push_back(i == self_ ? own : Heartbeat::decode(bytes_[i].data(), kHeartbeatLen));
    return out;
}

}  // namespace malcolm
