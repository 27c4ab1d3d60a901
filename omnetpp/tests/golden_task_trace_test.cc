// The shared golden task trace (proto/testdata/task_trace*.csv, written by the Python
// reference scheduler of proto/testdata/generate.py): the C++ node scheduler reproduces every
// task's completion or drop time exactly, as rack-sim's node model does
// (rack-sim/tests/golden_trace.rs reads the same files).
#include <gtest/gtest.h>

#include <map>
#include <string>
#include <vector>

#include "csv.h"
#include "node_scheduler.h"

using namespace malcolm;

namespace {

struct Expected
{
    std::string outcome;
    uint64_t finishNs = 0;
};

struct Case
{
    std::vector<NodeSchedulerConfig> nodes;
    std::vector<std::pair<Task, uint32_t>> tasks;  // task, node
    std::map<uint64_t, Expected> expected;
};

std::map<std::string, Case> readCases()
{
    std::map<std::string, Case> cases;
    for (const auto& r : test::readRows("task_trace_nodes.csv")) {
        if (r.size() != 11)
            throw std::runtime_error("task_trace_nodes.csv: expected 11 columns");
        NodeSchedulerConfig c;
        c.nodeId = static_cast<uint32_t>(std::stoul(r[1]));
        if (r[2] == "edf")
            c.discipline = Discipline::Edf;
        else if (r[2] == "fcfs")
            c.discipline = Discipline::Fcfs;
        else if (r[2] == "ps")
            c.discipline = Discipline::ProcessorSharing;
        else
            throw std::runtime_error("unknown discipline " + r[2]);
        c.cores = std::stoi(r[3]);
        c.speed = std::stod(r[4]);
        c.earlyDrop = r[5] == "1";
        c.pruneLate = r[6] == "1";
        c.preempt = r[7] == "1";
        c.preemptionThresholdNs = std::stoull(r[8]);
        c.contextSwitchNs = std::stoull(r[9]);
        c.ingressBatch = std::stoul(r[10]);
        Case& k = cases[r[0]];
        if (k.nodes.size() != c.nodeId)
            throw std::runtime_error("task_trace_nodes.csv: nodes out of order");
        k.nodes.push_back(c);
    }
    for (const auto& r : test::readRows("task_trace.csv")) {
        if (r.size() != 12)
            throw std::runtime_error("task_trace.csv: expected 12 columns");
        Task t;
        t.id = std::stoull(r[1]);
        t.arrivalNs = std::stoull(r[2]);
        t.origin = static_cast<uint32_t>(std::stoul(r[3]));
        t.serviceRefNs = std::stoull(r[5]);
        t.estimateNs = std::stoull(r[6]);
        t.deadlineNs = std::stoull(r[7]);
        t.sizeBytes = static_cast<uint32_t>(std::stoul(r[8]));
        t.taskClass = static_cast<uint32_t>(std::stoul(r[9]));
        Case& k = cases.at(r[0]);
        k.tasks.push_back({t, static_cast<uint32_t>(std::stoul(r[4]))});
        k.expected[t.id] = {r[10], std::stoull(r[11])};
    }
    return cases;
}

const char *name(OutcomeKind k)
{
    switch (k) {
        case OutcomeKind::Completed: return "completed";
        case OutcomeKind::Missed: return "missed";
        case OutcomeKind::Dropped: return "dropped";
    }
    return "?";
}

// The trace's rules: at an instant, due core timers fire first (completions), then the tasks
// landing there arrive in task-id order and the dispatcher polls until the ring is empty.
std::map<uint64_t, Expected> runNode(const NodeSchedulerConfig& config, std::vector<Task> tasks)
{
    NodeScheduler s(config);
    std::stable_sort(tasks.begin(), tasks.end(), [](const Task& a, const Task& b) {
        return a.arrivalNs != b.arrivalNs ? a.arrivalNs < b.arrivalNs : a.id < b.id;
    });
    std::vector<TaskOutcomeRecord> out;
    size_t next = 0;
    for (;;) {
        uint64_t coreT = kNever;
        int core = -1;
        for (int c = 0; c < config.cores; c++)
            if (s.coreTimerNs(c) < coreT)
                coreT = s.coreTimerNs(c), core = c;
        uint64_t arrT = next < tasks.size() ? tasks[next].arrivalNs : kNever;
        if (core < 0 && arrT == kNever)
            break;
        uint64_t now = std::min(coreT, arrT);
        if (coreT == now)
            s.onCoreTimer(core, now, out);
        if (arrT == now) {
            while (next < tasks.size() && tasks[next].arrivalNs == now)
                s.arrive(tasks[next++]);
            while (s.ingressSize() > 0)
                s.poll(now, out);
        }
    }
    std::map<uint64_t, Expected> got;
    for (const auto& r : out) {
        if (got.count(r.task.id))
            throw std::runtime_error("task " + std::to_string(r.task.id) + " finished twice");
        got[r.task.id] = {name(r.kind), r.finishNs};
    }
    return got;
}

}  // namespace

TEST(GoldenTaskTrace, NodeSchedulerReproducesTheReference)
{
    auto cases = readCases();
    ASSERT_GE(cases.size(), 7u);
    size_t total = 0;
    for (const auto& [caseName, k] : cases) {
        std::map<uint64_t, Expected> got;
        for (size_t n = 0; n < k.nodes.size(); n++) {
            std::vector<Task> mine;
            for (const auto& [t, node] : k.tasks)
                if (node == n)
                    mine.push_back(t);
            for (const auto& kv : runNode(k.nodes[n], mine))
                got.insert(kv);
        }
        ASSERT_EQ(got.size(), k.tasks.size()) << caseName << ": every task has one outcome";
        int wrong = 0;
        for (const auto& [id, want] : k.expected) {
            const Expected& g = got.at(id);
            if (g.outcome != want.outcome || g.finishNs != want.finishNs) {
                if (++wrong <= 8)
                    ADD_FAILURE() << caseName << " task " << id << ": want " << want.outcome << " at " << want.finishNs
                                  << ", got " << g.outcome << " at " << g.finishNs;
            }
        }
        EXPECT_EQ(wrong, 0) << caseName << ": tasks differing from the reference";
        total += k.tasks.size();
    }
    EXPECT_GE(total, 2000u);
}
