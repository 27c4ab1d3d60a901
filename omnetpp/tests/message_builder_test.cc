#include <gtest/gtest.h>

#include "message_builder.h"

using namespace malcolm;

TEST(MessageBuilder, StepCarriesNodesGstTasksAndOutcomes)
{
    std::vector<NodeSnapshot> nodes(2);
    for (uint32_t i = 0; i < 2; i++) {
        nodes[i].nodeId = i;
        nodes[i].sth.add(-3, 4);
        nodes[i].sth.add(25, 6);
        nodes[i].heartbeat = Heartbeat::fromSth(uint8_t(i), nodes[i].sth, 0.5, true, 7);
        nodes[i].utilisation = 0.25;
    }
    nodes[1].includeGst = true;
    nodes[1].gst = {nodes[0].heartbeat.encode(), HeartbeatBytes{}};
    nodes[1].gstAgeNs = {12345, kNoHeartbeatAge};
    Task t;
    t.id = 42;
    t.origin = 1;
    t.sizeBytes = 4096;
    t.serviceRefNs = 10000;
    t.estimateNs = 12500;
    t.deadlineNs = 90000;
    t.arrivalNs = 60000;
    TaskOutcomeRecord done;
    done.task = t;
    done.task.decidedAtStep = 3;
    done.nodeId = 0;
    done.kind = OutcomeKind::Missed;
    done.finishNs = 95000;
    pb::Step s = buildStep(100000, 2, 4, nodes, {}, {t}, {done});
    EXPECT_EQ(s.sim_time_ns(), 100000u);
    EXPECT_EQ(s.episode(), 2u);
    EXPECT_EQ(s.step_index(), 4u);
    ASSERT_EQ(s.nodes_size(), 2);
    EXPECT_EQ(s.nodes(0).sth().buckets_size(), kSthBuckets);
    EXPECT_EQ(s.nodes(0).sth().buckets(0), 1u);
    EXPECT_EQ(s.nodes(0).sth().buckets(11), 1u);
    EXPECT_EQ(s.nodes(0).sth().min_slack_us(), -3);
    EXPECT_EQ(s.nodes(0).sth().sum_load_us(), 10u);
    EXPECT_EQ(s.nodes(0).heartbeat().flags(), 1u);
    EXPECT_EQ(s.nodes(0).heartbeat().policy_version(), 7u);
    EXPECT_FALSE(s.nodes(0).has_gst());
    ASSERT_TRUE(s.nodes(1).has_gst());
    EXPECT_EQ(s.nodes(1).gst().heartbeats().size(), 32u);
    HeartbeatBytes first = nodes[0].heartbeat.encode();
    EXPECT_EQ(s.nodes(1).gst().heartbeats().substr(0, 16), std::string(first.begin(), first.end()));
    EXPECT_EQ(s.nodes(1).gst().age_ns(1), UINT64_MAX);
    ASSERT_EQ(s.tasks_size(), 1);
    EXPECT_EQ(s.tasks(0).task_id(), 42u);
    // The estimate goes on the wire, never the true service time.
    EXPECT_EQ(s.tasks(0).service_estimate_ns(), 12500u);
    ASSERT_EQ(s.outcomes_size(), 1);
    EXPECT_EQ(s.outcomes(0).kind(), pb::OUTCOME_KIND_MISSED);
    EXPECT_EQ(s.outcomes(0).latency_ns(), 35000u);
    EXPECT_EQ(s.outcomes(0).decided_at_step(), 3u);
}

TEST(MessageBuilder, RejectsBadInput)
{
    std::vector<NodeSnapshot> nodes(2);
    nodes[0].nodeId = 0;
    nodes[1].nodeId = 1;
    Task t;
    t.origin = 5;
    EXPECT_THROW(buildStep(0, 0, 0, nodes, {}, {t}, {}), std::invalid_argument);
    nodes[1].includeGst = true;  // without entries
    EXPECT_THROW(buildStep(0, 0, 0, nodes, {}, {}, {}), std::invalid_argument);
    EXPECT_THROW(buildHello("e", "s", 1, {}, 50000, {}), std::invalid_argument);
}

TEST(MessageBuilder, HelloDescribesTheRack)
{
    NodeSpecInfo fast{4, 1.0, "fast", Discipline::Edf}, slow{16, 0.2, "slow", Discipline::Fcfs};
    pb::Hello h = buildHello("omnetpp-0", "Hetero", 99, {fast, slow}, 50000, {{"rho", "0.8"}});
    EXPECT_EQ(h.simulator(), "omnetpp");
    ASSERT_EQ(h.nodes_size(), 2);
    EXPECT_EQ(h.nodes(1).node_id(), 1u);
    EXPECT_EQ(h.nodes(1).cores(), 16u);
    EXPECT_EQ(h.nodes(1).discipline(), pb::DISCIPLINE_FCFS);
    EXPECT_EQ(h.sth().buckets(), 16u);
    EXPECT_EQ(h.sth().fine_width_us(), 2u);
    EXPECT_EQ(h.sth().critical_us(), 20u);
    EXPECT_EQ(h.parameters().at("rho"), "0.8");
}
