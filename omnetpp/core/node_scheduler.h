// One server's execution model (design.md section 6), framework-free and event driven: an
// ingress ring drained in batches by a polling dispatcher, a ready queue (EDF heap, FCFS
// FIFO, or processor sharing), k cores of speed v. EDF: early drop at admission, lazy
// pruning at the head, cooperative preemption with a context-switch cost paid by the
// preempting task (a preempted task resumes without one). FCFS and PS are baselines: no
// admission control by default, tasks run to completion (late or not). PS shares the k cores
// equally among all tasks, at most one core per task.
//
// The node knows each task's *estimated* work, not its true work: the admission test and the
// STH use the estimate; the true work only decides when a core finishes.
//
// Semantics at one instant t -- the same as rack-sim's node model (rack-sim/src/node.rs),
// checked task by task against the golden trace of proto/testdata/task_trace.csv written by
// the Python reference in proto/testdata/generate.py:
//   1. every task whose work ends at t completes (all cores at once), then one dispatch;
//   2. then polls admit the tasks that landed at t, up to ingressBatch per poll, each poll
//      followed by a dispatch.
// poll() and onCoreTimer() both complete what is due first, so the order in which a caller
// delivers a poll and a core timer of the same instant does not matter. EDF order is
// (deadline, task id); a preemption victim is the running task last in that order.
//
// The caller owns the clock: it calls poll() when the dispatcher runs and onCoreTimer() when
// coreTimerNs(c) is reached (PS uses core 0's timer for its next completion).
#pragma once

#include <cstdint>
#include <deque>
#include <limits>
#include <optional>
#include <vector>

#include "edf_queue.h"
#include "sth.h"
#include "task.h"

namespace malcolm {

enum class Discipline { Edf, Fcfs, ProcessorSharing };

// Float slack of the processor-sharing virtual clock, in ns of work and of time (rack-sim's
// PS_EPSILON): far below a nanosecond, far above the rounding error of one busy period's clock.
constexpr double kPsEpsilon = 1e-4;

struct NodeSchedulerConfig
{
    uint32_t nodeId = 0;
    Discipline discipline = Discipline::Edf;
    int cores = 1;
    double speed = 1.0;            // service time scales with 1/speed
    uint64_t contextSwitchNs = 2000;
    uint64_t preemptionThresholdNs = kPreemptionThresholdNs;
    size_t ingressBatch = 16;      // tasks drained from the ingress ring per poll
    // Unset: the discipline's default (EDF: on; FCFS and PS: off), as rack-sim's Discipline.
    std::optional<bool> earlyDrop;  // drop at admission when deadline < now + estimated work
    std::optional<bool> pruneLate;  // drop a queue head already past its deadline (EDF, FCFS)
    std::optional<bool> preempt;    // cooperative preemption (EDF only)

    bool earlyDropOn() const { return earlyDrop.value_or(discipline == Discipline::Edf); }
    bool pruneLateOn() const { return pruneLate.value_or(discipline == Discipline::Edf); }
    bool preemptOn() const { return preempt.value_or(discipline == Discipline::Edf); }
};

constexpr uint64_t kNever = std::numeric_limits<uint64_t>::max();

class NodeScheduler
{
  public:
    explicit NodeScheduler(const NodeSchedulerConfig& config);

    const NodeSchedulerConfig& config() const { return config_; }

    // A task arrives in the ingress ring (it is not admitted until the next poll). Its
    // estimateNs must be set (>= 1).
    void arrive(const Task& task);
    size_t ingressSize() const { return ingress_.size(); }

    // One dispatcher pass at `nowNs`: completes what ends now (then dispatches), drains up to
    // `ingressBatch` tasks (early drop of those that cannot make it by their estimate), then
    // dispatches (prunes late heads, fills idle cores, preempts). Finished/dropped tasks are
    // appended to `out`.
    void poll(uint64_t nowNs, std::vector<TaskOutcomeRecord>& out);
    // Core `core` reached coreTimerNs(core): every task ending now completes, then the
    // dispatcher runs once.
    void onCoreTimer(int core, uint64_t nowNs, std::vector<TaskOutcomeRecord>& out);
    // When core `core` finishes its current task (kNever when idle).
    uint64_t coreTimerNs(int core) const;

    int busyCores() const;
    size_t queuedTasks() const;  // ready queue + ingress ring
    // Queued (ingress + ready) plus running: the heartbeat's load numerator (design.md section 4).
    size_t tasksInSystem() const;
    // Histogram of every task on the node (ingress, ready, running): slack = D - (now +
    // estimated work left), the estimate minus the work done, never below 0.
    SlackHistogram sth(uint64_t nowNs) const;
    // Core-busy time accumulated up to `nowNs`, summed over cores (for utilisation).
    uint64_t busyNs(uint64_t nowNs) const;
    uint64_t preemptions() const { return preemptions_; }
    uint64_t contextSwitches() const { return contextSwitches_; }

  private:
    struct Core
    {
        bool busy = false;
        Task task;
        uint64_t workStartNs = 0;  // when service starts (after any context switch)
        uint64_t endNs = kNever;
        uint64_t estEndNs = 0;     // when it would end if it took its estimate
        uint64_t busySinceNs = 0;
    };

    struct PsEntry
    {
        double finishV;  // virtual time at which the task has received all its work
        double startV;   // virtual time at admission (for the estimated work left)
        uint64_t seq;
        Task task;
    };

    static bool psLater(const PsEntry& a, const PsEntry& b);
    uint64_t workNsOnThisNode(uint64_t serviceRefNs) const;
    double psRate() const;  // work-ns each PS task receives per ns
    void psAdvance(uint64_t nowNs);
    void psReschedule(uint64_t nowNs);
    void psSetBusy(uint64_t nowNs);
    bool completeDue(uint64_t nowNs, std::vector<TaskOutcomeRecord>& out);
    bool readyEmpty() const;
    // Next task to run from the ready queue, dropping late ones when pruning; false if none.
    bool popRunnable(uint64_t nowNs, Task& task, std::vector<TaskOutcomeRecord>& out);
    void dispatch(uint64_t nowNs, std::vector<TaskOutcomeRecord>& out);
    void startOnCore(Core& core, Task task, uint64_t nowNs, bool switchCost);
    void record(std::vector<TaskOutcomeRecord>& out, const Task& task, OutcomeKind kind, uint64_t nowNs) const;

    NodeSchedulerConfig config_;
    std::deque<Task> ingress_;
    EdfReadyQueue edf_;
    std::deque<Task> fifo_;
    std::vector<Core> cores_;
    std::vector<PsEntry> ps_;  // min-heap by finishV
    double psV_ = 0;
    uint64_t psLastNs_ = 0, psSeq_ = 0, psEndNs_ = kNever, psBusySinceNs_ = 0;
    int psBusy_ = 0;
    uint64_t busyAccumulatedNs_ = 0;
    uint64_t preemptions_ = 0;
    uint64_t contextSwitches_ = 0;
};

}  // namespace malcolm
