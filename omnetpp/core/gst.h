// A node's Global State Table (design.md section 4): the last 16-byte heartbeat heard from
// every node of the rack and when it arrived. Times are integers in any one unit the caller
// picks (the OMNeT++ app uses raw simulation time), so ages and their mean are exact.
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

#include "heartbeat.h"

namespace malcolm {

class GlobalStateTable
{
  public:
    GlobalStateTable() = default;  // no nodes
    // An empty table of `numNodes` entries, kept by node `self`.
    GlobalStateTable(uint32_t numNodes, uint32_t self);

    uint32_t numNodes() const { return static_cast<uint32_t>(bytes_.size()); }
    uint32_t self() const { return self_; }

    // Stores the heartbeat bytes of node `src` (own entry included) received at `at`.
    // Throws std::out_of_range for a node outside the rack.
    void record(uint32_t src, const HeartbeatBytes& bytes, int64_t at);
    // The bytes last stored for `node` (all zero before the first heartbeat).
    const HeartbeatBytes& bytes(uint32_t node) const { return bytes_.at(node); }
    // The age at `now` of the entry of `node`; none before its first heartbeat.
    std::optional<int64_t> age(uint32_t node, int64_t now) const;
    // The mean age at `now` of the peers' entries heard so far (the own entry left out), by
    // integer division; none when no peer was heard yet.
    std::optional<int64_t> meanPeerAge(int64_t now) const;
    // Every entry decoded, the own entry replaced by `own` (what a local policy reads).
    std::vector<Heartbeat> view(const Heartbeat& own) const;

  private:
    uint32_t self_ = 0;
    std::vector<HeartbeatBytes> bytes_;
    std::vector<int64_t> receivedAt_;  // < 0: never heard
};

}  // namespace malcolm
