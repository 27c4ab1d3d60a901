// The workload job of MalcolmApp: the tasks one node originates. Poisson arrivals with a
// service law (or the node's share of a recorded trace), periodic micro-bursts, each task's
// service estimate (drawn from the app's own RNG 1) and deadline. Not a module: it reads the
// owning app's parameters and draws from its RNGs, and the app owns the timers, so the
// random streams are drawn in the order the app asks.
#pragma once

#include <cstdint>
#include <map>
#include <vector>

#include <omnetpp.h>

#include "task_trace.h"
#include "workload.h"

namespace malcolm {

using namespace omnetpp;

// A task as its source makes it, before it has an id and an arrival time.
struct NewTask
{
    uint64_t serviceNs = 0;
    uint64_t estimateNs = 0;
    uint64_t deadlineNs = 0;
    uint32_t sizeBytes = 0;
    uint32_t taskClass = 0;
};

class TaskSource
{
  public:
    // Stage 0: service law, estimate model, deadline factor (cRuntimeError on bad values).
    void initialize(cComponent& owner, int nodeId, int numNodes);
    // Stage 1: the arrival process (the trace's or Poisson at rho of `rackCapacity`) and the
    // micro-bursts. Returns the first arrival time, or a negative time when none.
    simtime_t start(simtime_t start, double rackCapacity);
    // The first micro-burst (start() first), or a negative time when there are none.
    simtime_t firstMicroburst(simtime_t start) const;

    // The task arriving now (a trace row, or a Poisson draw: service, then estimate).
    NewTask arrival(uint64_t nowNs);
    // When the next arrival follows the one just made (a Poisson draw), or a negative time.
    simtime_t nextArrival(simtime_t now);

    int microburstSize() const { return microburstSize_; }
    uint64_t microburstDeadlineNs(uint64_t nowNs) const { return nowNs + microburstDeadlineNs_; }
    // One task of the micro-burst due now (its estimate drawn now).
    NewTask microburstTask(uint64_t deadlineNs);
    // When the micro-burst after the one at `now` comes, or a negative time.
    simtime_t nextMicroburst(simtime_t now) const;

  private:
    void readServiceLaw();
    void readServiceEstimate();
    void loadTrace(const std::string& path);
    // The estimate of a task of `taskClass` with true service `serviceNs` (own RNG stream).
    uint64_t estimateOf(uint32_t taskClass, uint64_t serviceNs);
    // `t` unless the source stops before it (negative).
    simtime_t untilStop(simtime_t t) const;

    cComponent *owner_ = nullptr;
    int nodeId_ = 0, numNodes_ = 0;
    ServiceLaw law_;
    ServiceEstimate estimate_;
    // Mean true service per class, ns (class-mean estimates): the law's mean for class 0, the
    // micro-burst service for class 1, a trace's own per-class means for replayed tasks.
    std::map<uint32_t, double> classMeanNs_;
    double deadlineFactor_ = 3;
    uint32_t taskBytes_ = 0;
    double arrivalRatePerS_ = 0;  // this node's Poisson rate
    simtime_t stopTime_;
    std::vector<TraceTask> trace_;  // this node's tasks of the trace
    size_t traceNext_ = 0;
    bool useTrace_ = false;
    simtime_t microburstPeriod_;
    uint64_t microburstServiceNs_ = 0, microburstDeadlineNs_ = 0;
    int microburstSize_ = 0;
};

}  // namespace malcolm
