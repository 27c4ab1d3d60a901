// Local placement policies the OMNeT++ side can run on its own when configured to continue
// without the agent (fallbackPolicy). They read only what the origin node knows: its own
// fresh state and the stale heartbeats of its Global State Table.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "heartbeat.h"
#include "task.h"

namespace malcolm {

class FallbackPolicy
{
  public:
    enum class Kind { Local, Random, RoundRobin, PowerOfD };
    // "local", "random", "round-robin", "power-of-2" / "power-of-D"; throws on others.
    static FallbackPolicy parse(const std::string& name);

    const std::string& name() const { return name_; }
    // `view[i]` is the origin's heartbeat view of node i (its own entry fresh); `capacity[i]`
    // its cores x speed, so queue lengths compare per unit of capacity. `uniform` returns
    // numbers in [0, 1).
    uint32_t choose(const Task& task, const std::vector<Heartbeat>& view, const std::vector<double>& capacity,
                    const std::function<double()>& uniform);

  private:
    Kind kind_ = Kind::Local;
    int d_ = 2;
    std::string name_;
    uint32_t nextRoundRobin_ = 0;
};

}  // namespace malcolm
