#include "edf_queue.h"

#include <algorithm>

namespace malcolm {

namespace {
// std heap functions build a max-heap: "a after b" puts the earliest deadline on top; ties
// break by task id so that runs are deterministic.
bool laterDeadline(const Task& a, const Task& b)
{
    if (a.deadlineNs != b.deadlineNs)
        return a.deadlineNs > b.deadlineNs;
    return a.id > b.id;
}
}  // namespace

bool EdfReadyQueue::admit(const Task& task, uint64_t nowNs)
{
    if (task.deadlineNs < nowNs + task.remainingNs)  // slack < 0: it cannot finish in time
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
    return heap_.front().deadlineNs + preemptionThresholdNs_ < runningDeadlineNs;
}

}  // namespace malcolm
