#include <gtest/gtest.h>

#include <algorithm>
#include <map>

#include "heartbeat.h"
#include "node_scheduler.h"

using namespace malcolm;

namespace {
Task task(uint64_t id, uint64_t arrivalNs, uint64_t serviceNs, uint64_t deadlineNs)
{
    Task t;
    t.id = id;
    t.arrivalNs = arrivalNs;
    t.serviceRefNs = serviceNs;
    t.estimateNs = serviceNs;
    t.deadlineNs = deadlineNs;
    return t;
}

// A tiny event loop: arrivals poll the dispatcher at their time, core timers fire in order.
std::map<uint64_t, TaskOutcomeRecord> run(NodeScheduler& s, std::vector<Task> arrivals)
{
    std::sort(arrivals.begin(), arrivals.end(), [](const Task& a, const Task& b) { return a.arrivalNs < b.arrivalNs; });
    std::vector<TaskOutcomeRecord> out;
    size_t next = 0;
    for (;;) {
        uint64_t coreT = kNever;
        int core = -1;
        for (int c = 0; c < s.config().cores; c++)
            if (s.coreTimerNs(c) < coreT)
                coreT = s.coreTimerNs(c), core = c;
        uint64_t arrT = next < arrivals.size() ? arrivals[next].arrivalNs : kNever;
        if (core < 0 && arrT == kNever && s.ingressSize() == 0)
            break;
        if (arrT <= coreT && arrT != kNever) {
            while (next < arrivals.size() && arrivals[next].arrivalNs == arrT)
                s.arrive(arrivals[next++]);
            while (s.ingressSize() > 0)
                s.poll(arrT, out);
        }
        else {
            s.onCoreTimer(core, coreT, out);
        }
    }
    std::map<uint64_t, TaskOutcomeRecord> byId;
    for (const auto& r : out)
        byId[r.task.id] = r;
    return byId;
}

int count(const std::map<uint64_t, TaskOutcomeRecord>& m, OutcomeKind k)
{
    return int(std::count_if(m.begin(), m.end(), [&](const auto& kv) { return kv.second.kind == k; }));
}
}  // namespace

TEST(NodeScheduler, EdfPreemptsWithContextSwitchCost)
{
    NodeSchedulerConfig c;
    c.discipline = Discipline::Edf;
    NodeScheduler s(c);
    auto r = run(s, {task(1, 0, 20000, 100000), task(2, 5000, 10000, 30000)});
    // B preempts A at 5 us, pays 2 us, runs 7..17 us; A resumes at once with 15 us left.
    EXPECT_EQ(r.at(2).finishNs, 17000u);
    EXPECT_EQ(r.at(1).finishNs, 32000u);
    EXPECT_EQ(r.at(1).kind, OutcomeKind::Completed);
    EXPECT_EQ(s.preemptions(), 1u);
    EXPECT_EQ(s.contextSwitches(), 1u);
}

TEST(NodeScheduler, NoPreemptionWithinThreshold)
{
    NodeScheduler s(NodeSchedulerConfig{});
    // B's deadline is only 4 us earlier than A's: A runs to completion.
    auto r = run(s, {task(1, 0, 20000, 100000), task(2, 5000, 10000, 96000)});
    EXPECT_EQ(r.at(1).finishNs, 20000u);
    EXPECT_EQ(r.at(2).finishNs, 30000u);
    EXPECT_EQ(s.preemptions(), 0u);
}

TEST(NodeScheduler, FcfsRunsInArrivalOrder)
{
    NodeSchedulerConfig c;
    c.discipline = Discipline::Fcfs;
    NodeScheduler s(c);
    auto r = run(s, {task(1, 0, 20000, 100000), task(2, 5000, 10000, 25000)});
    EXPECT_EQ(r.at(1).finishNs, 20000u);
    EXPECT_EQ(r.at(2).finishNs, 30000u);
    EXPECT_EQ(r.at(2).kind, OutcomeKind::Missed);
}

TEST(NodeScheduler, EarlyDropAndLazyPruning)
{
    NodeScheduler s(NodeSchedulerConfig{});
    // Task 2 cannot make it at admission (arrives at 1 us with 10 us of work, deadline 5 us):
    // dropped at once. Tasks 3 and 4 preempt in turn (each more than 5 us more urgent) and
    // every feasible task completes.
    auto r = run(s, {task(1, 0, 20000, 100000), task(2, 1000, 10000, 5000), task(3, 2000, 5000, 26000),
                     task(4, 3000, 1000, 19000)});
    EXPECT_EQ(r.at(2).kind, OutcomeKind::Dropped);
    EXPECT_EQ(r.at(2).finishNs, 1000u);
    // Task 4 preempts task 1 (19 us < 100 - 5 us): runs 5..6 us, no pruning needed.
    EXPECT_EQ(r.at(4).kind, OutcomeKind::Completed);
    EXPECT_EQ(r.at(3).kind, OutcomeKind::Completed);
}

TEST(NodeScheduler, LazyPruningDropsLateHeadTasks)
{
    NodeSchedulerConfig c;
    c.preemptionThresholdNs = 1000000;  // effectively no preemption
    NodeScheduler s(c);
    auto r = run(s, {task(1, 0, 20000, 100000), task(2, 1000, 1000, 10000)});
    // Task 2 waits behind task 1 until 20 us, past its 10 us deadline: pruned at the head.
    EXPECT_EQ(r.at(2).kind, OutcomeKind::Dropped);
    EXPECT_EQ(r.at(2).finishNs, 20000u);
}

TEST(NodeScheduler, SpeedScalesServiceTimeAndCoresRunInParallel)
{
    NodeSchedulerConfig c;
    c.cores = 2;
    c.speed = 0.5;
    NodeScheduler s(c);
    auto r = run(s, {task(1, 0, 10000, 1000000), task(2, 0, 10000, 1000000), task(3, 0, 10000, 1000000)});
    EXPECT_EQ(r.at(1).finishNs, 20000u);
    EXPECT_EQ(r.at(2).finishNs, 20000u);
    EXPECT_EQ(r.at(3).finishNs, 40000u);
    EXPECT_EQ(s.busyNs(40000), 60000u);
}

TEST(NodeScheduler, IngressDrainedInBatches)
{
    NodeSchedulerConfig c;
    c.ingressBatch = 4;
    NodeScheduler s(c);
    for (uint64_t i = 0; i < 10; i++)
        s.arrive(task(i, 0, 1000, 1000000));
    std::vector<TaskOutcomeRecord> out;
    s.poll(0, out);
    EXPECT_EQ(s.ingressSize(), 6u);
    EXPECT_EQ(s.queuedTasks(), 9u);  // 6 in ingress + 3 ready, 1 running
    SlackHistogram h = s.sth(0);
    EXPECT_EQ(h.totalTasks(), 10u);
    EXPECT_EQ(h.sumLoadUs(), 10u);
}

TEST(NodeScheduler, ProcessorSharingSplitsCoresEqually)
{
    NodeSchedulerConfig c;
    c.discipline = Discipline::ProcessorSharing;
    c.cores = 1;
    NodeScheduler s(c);
    // A (10 us) alone until 4 us, then shares with B (2 us): B ends at 4 + 2 x 2 = 8 us, A has
    // 6 - 2 = 4 us left at full speed: 12 us. Late tasks are not dropped (baseline).
    auto r = run(s, {task(1, 0, 10000, 1000000), task(2, 4000, 2000, 5000)});
    EXPECT_EQ(r.at(2).finishNs, 8000u);
    EXPECT_EQ(r.at(2).kind, OutcomeKind::Missed);
    EXPECT_EQ(r.at(1).finishNs, 12000u);
    EXPECT_EQ(s.busyNs(12000), 12000u);
}

TEST(NodeScheduler, ProcessorSharingGivesAtMostOneCorePerTask)
{
    NodeSchedulerConfig c;
    c.discipline = Discipline::ProcessorSharing;
    c.cores = 4;
    c.speed = 2.0;
    NodeScheduler s(c);
    auto r = run(s, {task(1, 0, 10000, 1000000), task(2, 0, 20000, 1000000)});
    EXPECT_EQ(r.at(1).finishNs, 5000u);
    EXPECT_EQ(r.at(2).finishNs, 10000u);
    std::vector<TaskOutcomeRecord> out;
    NodeScheduler q(c);
    q.arrive(task(3, 0, 8000, 100000));
    q.poll(0, out);
    EXPECT_EQ(q.busyCores(), 1);
    EXPECT_EQ(q.sth(2000).sumLoadUs(), 2u);  // 4 us of work at speed 2, half done
}

TEST(NodeScheduler, EdfMeetsMoreDeadlinesThanFcfsOnTheSameWorkload)
{
    // A long task followed by a burst of short urgent ones, repeated.
    std::vector<Task> work;
    uint64_t id = 0;
    for (uint64_t k = 0; k < 20; k++) {
        uint64_t t0 = k * 200000;
        work.push_back(task(id++, t0, 100000, t0 + 400000));
        for (uint64_t j = 1; j <= 5; j++)
            work.push_back(task(id++, t0 + j * 1000, 5000, t0 + j * 1000 + 40000));
    }
    NodeSchedulerConfig edfC, fcfsC;
    fcfsC.discipline = Discipline::Fcfs;
    NodeScheduler edf(edfC), fcfs(fcfsC);
    auto re = run(edf, work), rf = run(fcfs, work);
    int edfMet = count(re, OutcomeKind::Completed), fcfsMet = count(rf, OutcomeKind::Completed);
    EXPECT_GT(edfMet, fcfsMet);
    EXPECT_EQ(edfMet, int(work.size()));
}

TEST(NodeScheduler, AdmissionAndHistogramSeeTheEstimate)
{
    NodeScheduler s(NodeSchedulerConfig{});
    std::vector<TaskOutcomeRecord> out;
    // True work 20 us, estimate 5 us, deadline 10 us: admitted, then finishes late.
    Task a = task(1, 0, 20000, 10000);
    a.estimateNs = 5000;
    // True work 1 us, estimate 50 us, deadline 40 us: dropped although it would make it.
    Task b = task(2, 0, 1000, 40000);
    b.estimateNs = 50000;
    s.arrive(a);
    s.arrive(b);
    s.poll(0, out);
    ASSERT_EQ(out.size(), 1u);
    EXPECT_EQ(out[0].task.id, 2u);
    EXPECT_EQ(out[0].kind, OutcomeKind::Dropped);
    SlackHistogram h = s.sth(1000);
    EXPECT_EQ(h.minSlackUs(), 5);  // 10 us deadline - 5 us estimated end
    EXPECT_EQ(h.sumLoadUs(), 4u);
    EXPECT_EQ(s.sth(19500).minSlackUs(), -10);  // outlived its estimate: slack D - now
    Task none = task(3, 0, 1000, 40000);
    none.estimateNs = 0;
    EXPECT_THROW(s.arrive(none), std::invalid_argument);
}

TEST(NodeScheduler, CompletionsAtAnInstantPrecedeItsAdmissions)
{
    // Both cores end at 10 us; an urgent task polled at 10 us before the timers fire must
    // find both cores free (no preemption of an ending task, no switch cost).
    NodeSchedulerConfig c;
    c.cores = 2;
    NodeScheduler s(c);
    std::vector<TaskOutcomeRecord> out;
    s.arrive(task(0, 0, 10000, 500000));
    s.arrive(task(1, 0, 10000, 400000));
    s.poll(0, out);
    s.arrive(task(2, 10000, 5000, 300000));
    s.poll(10000, out);
    ASSERT_EQ(out.size(), 2u);
    EXPECT_EQ(s.preemptions(), 0u);
    EXPECT_EQ(s.coreTimerNs(0), 15000u);
    EXPECT_EQ(s.coreTimerNs(1), kNever);
    EXPECT_EQ(s.tasksInSystem(), 1u);
}

TEST(NodeScheduler, TasksInSystemCountsIngressReadyAndRunning)
{
    NodeSchedulerConfig c;
    c.cores = 2;
    c.ingressBatch = 3;
    NodeScheduler s(c);
    for (uint64_t i = 0; i < 5; i++)
        s.arrive(task(i, 0, 1000, 1000000));
    EXPECT_EQ(s.tasksInSystem(), 5u);
    std::vector<TaskOutcomeRecord> out;
    s.poll(0, out);  // 3 admitted: 2 running, 1 ready; 2 in the ring
    EXPECT_EQ(s.busyCores(), 2);
    EXPECT_EQ(s.tasksInSystem(), 5u);
    EXPECT_EQ(loadFactorFromRho(rhoOfTasks(s.tasksInSystem(), 2)), 2500);
}
