// EDF ready queue (design.md section 6): a min-heap by (absolute deadline, task id) -- the order
// rack-sim's EdfQueue uses too -- with early drop at admission, lazy pruning of late tasks at
// the head, and a cooperative preemption test.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "task.h"

namespace malcolm {

constexpr uint64_t kPreemptionThresholdNs = 5000;

class EdfReadyQueue
{
  public:
    explicit EdfReadyQueue(uint64_t preemptionThresholdNs = kPreemptionThresholdNs)
        : preemptionThresholdNs_(preemptionThresholdNs) {}

    // Admission with early drop: a task whose estimated slack at `nowNs` is already negative
    // (deadline < now + estimated work left) is refused (returns false) and never queued.
    bool admit(const Task& task, uint64_t nowNs);
    // Puts a task back without the admission test (a preempted task).
    void push(const Task& task);

    // Removes the tasks at the head whose deadline has already passed (deadline < now),
    // appending them to `late`. Tasks behind a feasible head are left alone (lazy).
    void pruneLateHead(uint64_t nowNs, std::vector<Task>& late);

    bool empty() const { return heap_.empty(); }
    size_t size() const { return heap_.size(); }
    // Earliest deadline; the queue must not be empty.
    const Task& head() const { return heap_.front(); }
    Task pop();

    // Cooperative preemption: only when the head's deadline is earlier than the running
    // task's by more than the threshold (avoids thrashing on near-equal deadlines). Saturating:
    // a head without a deadline (UINT64_MAX) never preempts.
    bool shouldPreempt(uint64_t runningDeadlineNs) const;

    uint64_t preemptionThresholdNs() const { return preemptionThresholdNs_; }
    // Unordered view, for the STH.
    const std::vector<Task>& tasks() const { return heap_; }
    // The EDF order: true when `a` runs after `b` (later deadline, then higher task id).
    static bool runsAfter(const Task& a, const Task& b);

  private:
    uint64_t preemptionThresholdNs_;
    std::vector<Task> heap_;
};

}  // namespace malcolm
