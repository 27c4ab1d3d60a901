#include "edf_queue.h"

#include <algorithm>

namespace malcolm {

// std heap functions build a max-heap: "a after b" puts the earliest deadline on top; ties
// break by task id so that runs are deterministic and independent of arrival interleavings.
bool EdfReadyQueue::runsAfter(const Task& a, const Task& b)
{
    if (a.deadlineNs != b.deadlineNs)
        return a.deadlineNs > b.deadlineNs;
    return a.id > b.id;
}

namespace {
bool laterDeadline(const Task& a, const Task& b) { return EdfReadyQueue::runsAfter(a, b); }
}  // namespace

bool EdfReadyQueue::admit(const Task& task, uint64_t nowNs)
{
    if (task.deadlineNs < nowNs + task.estRemainingNs)  // estimated slack < 0: cannot make it
        return false;
    push(task);
    return true;
}

void EdfReadyQueue::push(const Task& task)
{
    heap_.push_back(task);
    std::push_heap(heap_.begin(), heap_.end(), laterDeadline);
}

void EdfReadyQueue::pruneLateHead(uint64_t nowNs, std::vector<Task>& late)
{
    while (!heap_.empty() && heap_.front().deadlineNs < nowNs)
        late.push_back(pop());
}

Task EdfReadyQueue::pop()
{
    std::pop_heap(heap_.begin(), heap_.end(), laterDeadline);
    Task t = heap_.back();
    heap_.pop_back();
    return t;
}

bool EdfReadyQueue::shouldPreempt(uint64_t runningDeadlineNs) const
{
    if (heap_.empty())
        return false;
    uint64_t head = heap_.front().deadlineNs;
    uint64_t bar = head > UINT64_MAX - preemptionThresholdNs_ ? UINT64_MAX : head + preemptionThresholdNs_;
    return bar < runningDeadlineNs;
}

}  // namespace malcolm
