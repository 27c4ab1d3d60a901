// A task (RPC) as the node model and the bridge see it. Times are integer nanoseconds.
#pragma once

#include <cstddef>
#include <cstdint>

namespace malcolm {

struct Task
{
    uint64_t id = 0;
    uint32_t origin = 0;
    uint32_t sizeBytes = 0;
    uint64_t arrivalNs = 0;    // arrival at the origin
    uint64_t deadlineNs = 0;   // absolute
    uint64_t serviceRefNs = 0; // true service time on a reference (speed 1.0) core: drives the core only
    uint64_t estimateNs = 0;   // service estimate on a reference core: what policies and admission see (>= 1)
    uint32_t taskClass = 0;    // 0 regular, 1 micro-burst
    uint64_t decidedAtStep = 0;
    uint64_t decidedInEpisode = 0;
    // Work left on the node that holds the task, at that node's speed (set on arrival): the
    // true work, and the estimated work (what the admission test and the STH use).
    uint64_t remainingNs = 0;
    uint64_t estRemainingNs = 0;
    // Ran before and was preempted: resuming it costs a context switch.
    bool preempted = false;
};

enum class OutcomeKind { Completed = 1, Missed = 2, Dropped = 3 };

// Why and when a task left a node.
struct TaskOutcomeRecord
{
    Task task;
    uint32_t nodeId = 0;
    OutcomeKind kind = OutcomeKind::Completed;
    uint64_t finishNs = 0;
    uint64_t latencyNs() const { return finishNs >= task.arrivalNs ? finishNs - task.arrivalNs : 0; }
};

// Slack in whole microseconds, rounded towards minus infinity so that it is negative exactly
// when the task cannot finish in time.
inline int64_t slackUs(uint64_t deadlineNs, uint64_t nowNs, uint64_t remainingNs)
{
    int64_t ns = static_cast<int64_t>(deadlineNs) - static_cast<int64_t>(nowNs + remainingNs);
    return ns >= 0 ? ns / 1000 : -((-ns + 999) / 1000);
}

}  // namespace malcolm
