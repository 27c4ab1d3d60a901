#include "node_scheduler.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>

namespace malcolm {

NodeScheduler::NodeScheduler(const NodeSchedulerConfig& config)
    : config_(config), edf_(config.preemptionThresholdNs), cores_(config.cores)
{
    if (config.cores < 1)
        throw std::invalid_argument("NodeScheduler: cores must be >= 1");
    if (!(config.speed > 0))
        throw std::invalid_argument("NodeScheduler: speed must be > 0");
    if (config.ingressBatch < 1)
        throw std::invalid_argument("NodeScheduler: ingressBatch must be >= 1");
}

uint64_t NodeScheduler::workNsOnThisNode(uint64_t serviceRefNs) const
{
    // ref / speed in double, rounded half away from zero, at least 1 ns (rack-sim's wall_ns).
    if (config_.speed == 1.0)
        return std::max<uint64_t>(1, serviceRefNs);
    return std::max<uint64_t>(1, static_cast<uint64_t>(std::llround(static_cast<double>(serviceRefNs) / config_.speed)));
}

void NodeScheduler::arrive(const Task& task)
{
    if (task.estimateNs == 0)
        throw std::invalid_argument("NodeScheduler::arrive: task " + std::to_string(task.id) +
                                    " has no service estimate (estimateNs == 0)");
    Task t = task;
    t.remainingNs = workNsOnThisNode(task.serviceRefNs);
    t.estRemainingNs = workNsOnThisNode(task.estimateNs);
    t.preempted = false;
    ingress_.push_back(t);
}

bool NodeScheduler::readyEmpty() const
{
    return config_.discipline == Discipline::Edf ? edf_.empty() : fifo_.empty();
}

bool NodeScheduler::psLater(const PsEntry& a, const PsEntry& b)
{
    if (a.finishV != b.finishV)
        return a.finishV > b.finishV;
    return a.seq > b.seq;
}

double NodeScheduler::psRate() const
{
    size_t n = ps_.size(), k = static_cast<size_t>(config_.cores);
    return n <= k ? 1.0 : double(k) / double(n);
}

void NodeScheduler::psAdvance(uint64_t nowNs)
{
    if (nowNs > psLastNs_ && !ps_.empty())
        psV_ += double(nowNs - psLastNs_) * psRate();
    psLastNs_ = nowNs;
}

void NodeScheduler::psSetBusy(uint64_t nowNs)
{
    int busy = static_cast<int>(std::min<size_t>(ps_.size(), static_cast<size_t>(config_.cores)));
    busyAccumulatedNs_ += uint64_t(psBusy_) * (nowNs - psBusySinceNs_);
    psBusySinceNs_ = nowNs;
    psBusy_ = busy;
}

void NodeScheduler::psReschedule(uint64_t nowNs)
{
    psSetBusy(nowNs);
    if (ps_.empty()) {
        psEndNs_ = kNever;
        return;
    }
    // The first whole nanosecond at which the task has all its work.
    double left = (ps_.front().finishV - psV_) / psRate();
    psEndNs_ = nowNs + static_cast<uint64_t>(std::ceil(std::max(0.0, left - kPsEpsilon)));
}

bool NodeScheduler::popRunnable(uint64_t nowNs, Task& task, std::vector<TaskOutcomeRecord>& out)
{
    while (!readyEmpty()) {
        if (config_.discipline == Discipline::Edf)
            task = edf_.pop();
        else {
            task = fifo_.front();
            fifo_.pop_front();
        }
        if (config_.pruneLateOn() && task.deadlineNs < nowNs) {
            record(out, task, OutcomeKind::Dropped, nowNs);  // lazy pruning: late at the head
            continue;
        }
        return true;
    }
    return false;
}

void NodeScheduler::record(std::vector<TaskOutcomeRecord>& out, const Task& task, OutcomeKind kind, uint64_t nowNs) const
{
    TaskOutcomeRecord r;
    r.task = task;
    r.nodeId = config_.nodeId;
    r.kind = kind;
    r.finishNs = nowNs;
    out.push_back(r);
}

bool NodeScheduler::completeDue(uint64_t nowNs, std::vector<TaskOutcomeRecord>& out)
{
    bool any = false;
    if (config_.discipline == Discipline::ProcessorSharing) {
        psAdvance(nowNs);
        // Every task that has all its work (within the clock's float slack) completes.
        while (!ps_.empty() && ps_.front().finishV <= psV_ + kPsEpsilon) {
            std::pop_heap(ps_.begin(), ps_.end(), psLater);
            Task t = ps_.back().task;
            ps_.pop_back();
            t.remainingNs = 0;
            record(out, t, t.deadlineNs >= nowNs ? OutcomeKind::Completed : OutcomeKind::Missed, nowNs);
            any = true;
        }
        if (ps_.empty())
            psV_ = 0;  // an empty node restarts its clock: its rounding error stays one busy period's
        return any;
    }
    for (Core& core : cores_) {
        if (!core.busy || core.endNs > nowNs)
            continue;
        core.busy = false;
        core.endNs = kNever;
        busyAccumulatedNs_ += nowNs - core.busySinceNs;
        core.task.remainingNs = 0;
        record(out, core.task, core.task.deadlineNs >= nowNs ? OutcomeKind::Completed : OutcomeKind::Missed, nowNs);
        any = true;
    }
    return any;
}

void NodeScheduler::poll(uint64_t nowNs, std::vector<TaskOutcomeRecord>& out)
{
    if (completeDue(nowNs, out))
        dispatch(nowNs, out);  // as if the due timers had fired first
    for (size_t n = 0; n < config_.ingressBatch && !ingress_.empty(); n++) {
        Task t = ingress_.front();
        ingress_.pop_front();
        if (config_.earlyDropOn() && t.deadlineNs < nowNs + t.estRemainingNs) {
            record(out, t, OutcomeKind::Dropped, nowNs);  // early drop: cannot make it (estimate)
            continue;
        }
        if (config_.discipline == Discipline::Edf)
            edf_.push(t);
        else if (config_.discipline == Discipline::Fcfs)
            fifo_.push_back(t);
        else {
            ps_.push_back({psV_ + double(t.remainingNs), psV_, ++psSeq_, t});
            std::push_heap(ps_.begin(), ps_.end(), psLater);
        }
    }
    dispatch(nowNs, out);
}

void NodeScheduler::onCoreTimer(int coreIndex, uint64_t nowNs, std::vector<TaskOutcomeRecord>& out)
{
    if (config_.discipline == Discipline::ProcessorSharing) {
        if (coreIndex != 0 || psEndNs_ != nowNs)
            throw std::logic_error("NodeScheduler::onCoreTimer: PS timer does not match");
    }
    else {
        const Core& core = cores_.at(coreIndex);
        if (!core.busy || core.endNs != nowNs)
            throw std::logic_error("NodeScheduler::onCoreTimer: core timer does not match");
    }
    completeDue(nowNs, out);
    dispatch(nowNs, out);
}

void NodeScheduler::startOnCore(Core& core, Task task, uint64_t nowNs, bool switchCost)
{
    if (!core.busy)
        core.busySinceNs = nowNs;
    core.busy = true;
    uint64_t cost = switchCost ? config_.contextSwitchNs : 0;
    if (switchCost)
        contextSwitches_++;
    core.task = task;
    core.workStartNs = nowNs + cost;
    core.endNs = core.workStartNs + task.remainingNs;
    core.estEndNs = core.workStartNs + task.estRemainingNs;
}

void NodeScheduler::dispatch(uint64_t nowNs, std::vector<TaskOutcomeRecord>& out)
{
    if (config_.discipline == Discipline::ProcessorSharing) {
        psReschedule(nowNs);
        return;
    }
    // Fill idle cores in index order.
    for (Core& core : cores_) {
        if (core.busy)
            continue;
        Task t;
        if (!popRunnable(nowNs, t, out))
            break;
        startOnCore(core, t, nowNs, false);  // new or resumed: no switch cost
    }
    if (config_.discipline != Discipline::Edf || !config_.preemptOn())
        return;
    for (const Core& core : cores_)
        if (!core.busy)
            return;
    // Cooperative preemption: the head displaces the running task last in EDF order (latest
    // deadline, then highest id) when it is more than the threshold earlier.
    for (;;) {
        std::vector<Task> late;
        if (config_.pruneLateOn())
            edf_.pruneLateHead(nowNs, late);
        for (const Task& t : late)
            record(out, t, OutcomeKind::Dropped, nowNs);
        if (edf_.empty())
            return;
        Core* victim = nullptr;
        for (Core& core : cores_)
            if (!victim || EdfReadyQueue::runsAfter(core.task, victim->task))
                victim = &core;
        if (!edf_.shouldPreempt(victim->task.deadlineNs))
            return;
        Task displaced = victim->task;
        uint64_t done = nowNs > victim->workStartNs ? nowNs - victim->workStartNs : 0;
        // Completions at `now` ran before this dispatch, so the victim has work left.
        displaced.remainingNs = std::max<uint64_t>(1, displaced.remainingNs - std::min(done, displaced.remainingNs));
        displaced.estRemainingNs -= std::min(done, displaced.estRemainingNs);
        displaced.preempted = true;
        Task next = edf_.pop();
        edf_.push(displaced);
        preemptions_++;
        startOnCore(*victim, next, nowNs, true);  // switching away from a running task
    }
}

uint64_t NodeScheduler::coreTimerNs(int core) const
{
    if (config_.discipline == Discipline::ProcessorSharing)
        return core == 0 ? psEndNs_ : kNever;
    return cores_.at(core).endNs;
}

int NodeScheduler::busyCores() const
{
    if (config_.discipline == Discipline::ProcessorSharing)
        return psBusy_;
    int n = 0;
    for (const Core& c : cores_)
        n += c.busy;
    return n;
}

size_t NodeScheduler::queuedTasks() const
{
    return ingress_.size() + edf_.size() + fifo_.size() + ps_.size();
}

size_t NodeScheduler::tasksInSystem() const
{
    if (config_.discipline == Discipline::ProcessorSharing)
        return ingress_.size() + ps_.size();
    return queuedTasks() + static_cast<size_t>(busyCores());
}

SlackHistogram NodeScheduler::sth(uint64_t nowNs) const
{
    SlackHistogram h;
    uint64_t loadNs = 0;
    auto add = [&](const Task& t, uint64_t estLeftNs) {
        h.add(slackUs(t.deadlineNs, nowNs, estLeftNs), 0);
        loadNs += estLeftNs;
    };
    for (const Task& t : ingress_)
        add(t, t.estRemainingNs);
    for (const Task& t : edf_.tasks())
        add(t, t.estRemainingNs);
    for (const Task& t : fifo_)
        add(t, t.estRemainingNs);
    if (!ps_.empty()) {
        // The clock advanced to nowNs at the current share, without mutating the node.
        double v = psV_ + (nowNs > psLastNs_ ? double(nowNs - psLastNs_) * psRate() : 0.0);
        for (const PsEntry& e : ps_) {
            double left = e.startV + double(e.task.estRemainingNs) - v;
            add(e.task, static_cast<uint64_t>(std::max(0.0, left)));
        }
    }
    for (const Core& c : cores_) {
        if (!c.busy)
            continue;
        add(c.task, c.estEndNs > nowNs ? c.estEndNs - nowNs : 0);
    }
    h.setSumLoadUs(loadNs / 1000);  // floor of the sum, as rack-sim
    return h;
}

uint64_t NodeScheduler::busyNs(uint64_t nowNs) const
{
    uint64_t total = busyAccumulatedNs_;
    if (config_.discipline == Discipline::ProcessorSharing)
        return total + uint64_t(psBusy_) * (nowNs > psBusySinceNs_ ? nowNs - psBusySinceNs_ : 0);
    for (const Core& c : cores_)
        if (c.busy && nowNs > c.busySinceNs)
            total += nowNs - c.busySinceNs;
    return total;
}

}  // namespace malcolm
