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
    return static_cast<uint64_t>(std::ceil(static_cast<double>(serviceRefNs) / config_.speed));
}

void NodeScheduler::arrive(const Task& task)
{
    Task t = task;
    t.remainingNs = workNsOnThisNode(task.serviceRefNs);
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
    double left = std::max(0.0, ps_.front().finishV - psV_) / psRate();
    psEndNs_ = nowNs + static_cast<uint64_t>(std::ceil(left));
}

Task NodeScheduler::popReady()
{
    if (config_.discipline == Discipline::Edf)
        return edf_.pop();
    Task t = fifo_.front();
    fifo_.pop_front();
    return t;
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

void NodeScheduler::poll(uint64_t nowNs, std::vector<TaskOutcomeRecord>& out)
{
    if (config_.discipline == Discipline::ProcessorSharing)
        psAdvance(nowNs);  // before the share changes
    for (size_t n = 0; n < config_.ingressBatch && !ingress_.empty(); n++) {
        Task t = ingress_.front();
        ingress_.pop_front();
        if (config_.discipline == Discipline::Edf) {
            if (!edf_.admit(t, nowNs))
                record(out, t, OutcomeKind::Dropped, nowNs);  // early drop: cannot make it
        }
        else if (config_.discipline == Discipline::Fcfs) {
            fifo_.push_back(t);  // baselines: no admission control
        }
        else {
            ps_.push_back({psV_ + double(t.remainingNs), ++psSeq_, t});
            std::push_heap(ps_.begin(), ps_.end(), psLater);
        }
    }
    if (config_.discipline == Discipline::ProcessorSharing)
        psReschedule(nowNs);
    else
        dispatch(nowNs, out);
}

void NodeScheduler::onCoreTimer(int coreIndex, uint64_t nowNs, std::vector<TaskOutcomeRecord>& out)
{
    if (config_.discipline == Discipline::ProcessorSharing) {
        if (coreIndex != 0 || psEndNs_ != nowNs)
            throw std::logic_error("NodeScheduler::onCoreTimer: PS timer does not match");
        psAdvance(nowNs);
        // Every task whose work is done (within rounding of the ns clock) completes.
        while (!ps_.empty() && ps_.front().finishV <= psV_ + 1.0) {
            std::pop_heap(ps_.begin(), ps_.end(), psLater);
            Task t = ps_.back().task;
            ps_.pop_back();
            t.remainingNs = 0;
            record(out, t, t.deadlineNs >= nowNs ? OutcomeKind::Completed : OutcomeKind::Missed, nowNs);
        }
        psReschedule(nowNs);
        return;
    }
    Core& core = cores_.at(coreIndex);
    if (!core.busy || core.endNs != nowNs)
        throw std::logic_error("NodeScheduler::onCoreTimer: core timer does not match");
    core.busy = false;
    core.endNs = kNever;
    busyAccumulatedNs_ += nowNs - core.busySinceNs;
    core.task.remainingNs = 0;
    record(out, core.task, core.task.deadlineNs >= nowNs ? OutcomeKind::Completed : OutcomeKind::Missed, nowNs);
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
}

void NodeScheduler::dispatch(uint64_t nowNs, std::vector<TaskOutcomeRecord>& out)
{
    if (config_.discipline == Discipline::Edf) {
        std::vector<Task> late;
        edf_.pruneLateHead(nowNs, late);  // lazy pruning: only what reaches the head
        for (const Task& t : late)
            record(out, t, OutcomeKind::Dropped, nowNs);
    }
    // Fill idle cores.
    for (Core& core : cores_) {
        if (readyEmpty())
            break;
        if (!core.busy) {
            Task t = popReady();
            startOnCore(core, t, nowNs, false);  // resuming costs nothing (rack-sim's model)
        }
    }
    if (config_.discipline != Discipline::Edf)
        return;
    // Cooperative preemption: the head displaces the running task with the latest deadline
    // when it is more than the threshold earlier.
    while (!edf_.empty()) {
        Core* victim = nullptr;
        for (Core& core : cores_)
            if (core.busy && (!victim || core.task.deadlineNs > victim->task.deadlineNs))
                victim = &core;
        if (!victim || !edf_.shouldPreempt(victim->task.deadlineNs))
            break;
        Task displaced = victim->task;
        uint64_t done = nowNs > victim->workStartNs ? nowNs - victim->workStartNs : 0;
        // At least 1 ns stays: a task whose timer fires at this very instant still completes
        // through the queue rather than vanishing (as rack-sim does).
        displaced.remainingNs = std::max<uint64_t>(1, displaced.remainingNs - std::min(done, displaced.remainingNs));
        displaced.preempted = true;
        edf_.push(displaced);
        preemptions_++;
        Task next = edf_.pop();
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

SlackHistogram NodeScheduler::sth(uint64_t nowNs) const
{
    SlackHistogram h;
    auto add = [&](const Task& t, uint64_t remainingNs) {
        h.add(slackUs(t.deadlineNs, nowNs, remainingNs), remainingNs / 1000);
    };
    for (const Task& t : ingress_)
        add(t, t.remainingNs);
    for (const Task& t : edf_.tasks())
        add(t, t.remainingNs);
    for (const Task& t : fifo_)
        add(t, t.remainingNs);
    for (const PsEntry& e : ps_) {
        // Remaining work at the current share, as of nowNs.
        double v = psV_ + (nowNs > psLastNs_ ? double(nowNs - psLastNs_) * psRate() : 0.0);
        add(e.task, static_cast<uint64_t>(std::max(0.0, e.finishV - v)));
    }
    for (const Core& c : cores_) {
        if (!c.busy)
            continue;
        uint64_t left = c.endNs > nowNs ? c.endNs - nowNs : 0;
        add(c.task, left);
    }
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
