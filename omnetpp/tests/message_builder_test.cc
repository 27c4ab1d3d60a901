#include <gtest/gtest.h>

#include <cstring>

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

namespace {

uint64_t readLE(const std::string& col, size_t offset, size_t bytes)
{
    uint64_t v = 0;
    for (size_t b = 0; b < bytes; b++)
        v |= uint64_t(uint8_t(col.at(offset + b))) << (8 * b);
    return v;
}

// Four nodes: 1 and 3 originate with the same view, 2 with its own, 0 none; a saturating
// heartbeat, a negative min slack and a sum of load above 32 bits.
std::vector<NodeSnapshot> v2Nodes()
{
    std::vector<NodeSnapshot> nodes(4);
    for (uint32_t i = 0; i < 4; i++) {
        NodeSnapshot& s = nodes[i];
        s.nodeId = i;
        s.sth.add(-40 - int64_t(i), 3);
        for (uint32_t k = 0; k <= i; k++)
            s.sth.add(int64_t(7 * k + 30 * i), 100 + k);
        s.heartbeat = Heartbeat::fromValues(uint8_t(i), uint8_t(i % 3), 70000 * i, -50000, 12 * i, 5 + i, 9 + i);
        s.utilisation = 0.1 + 0.3 * i;
    }
    nodes[3].sth.setSumLoadUs(uint64_t(1) << 40);
    std::vector<HeartbeatBytes> view;
    for (const NodeSnapshot& s : nodes)
        view.push_back(s.heartbeat.encode());
    for (uint32_t i : {1u, 2u, 3u}) {
        nodes[i].includeGst = true;
        nodes[i].gst = view;
        nodes[i].gstAgeNs = {100, 200, kNoHeartbeatAge, 400};
    }
    nodes[2].gstAgeNs[0] = 101;  // heard node 0 at another time
    return nodes;
}

}  // namespace

// The v2 columns hold exactly the v1 node states: each column decoded back equals the
// fields of the v1 Step built from the same snapshot.
TEST(MessageBuilder, StepV2ColumnsDecodeToTheV1Fields)
{
    std::vector<NodeSnapshot> nodes = v2Nodes();
    Task t;
    t.id = 7;
    t.origin = 3;
    t.estimateNs = 5000;
    LinkSnapshot link;
    link.nodeId = 2;
    link.pfcPaused = true;
    pb::Step v1 = buildStep(5000, 1, 2, nodes, {link}, {t}, {});
    pb::Step v2;
    fillStepV2(v2, 5000, 1, 2, nodes, {link}, {t}, {});
    EXPECT_EQ(v2.nodes_size(), 0);
    ASSERT_TRUE(v2.has_node_columns());
    const pb::NodeColumns& c = v2.node_columns();
    ASSERT_EQ(c.heartbeats().size(), 4 * kHeartbeatLen);
    ASSERT_EQ(c.sth_buckets().size(), 4 * kColumnsBucketsWidth);
    ASSERT_EQ(c.sth_totals().size(), 4 * kColumnsTotalsWidth);
    ASSERT_EQ(c.utilisation().size(), 4 * kColumnsUtilisationWidth);
    ASSERT_EQ(c.gst_table().size(), 4 * kColumnsGstTableWidth);
    // Two distinct views: node 2's, and the one nodes 1 and 3 share (first seen at node 1).
    ASSERT_EQ(v2.gst_tables_size(), 2);
    for (size_t i = 0; i < 4; i++) {
        const pb::NodeState& n = v1.nodes(int(i));
        const pb::HeartbeatFields& f = n.heartbeat();
        Heartbeat fromV1{uint8_t(f.node_id()), uint8_t(f.flags()), uint16_t(f.load_factor_milli()),
                         int16_t(f.slack_p10_us()), int16_t(f.slack_p50_us()), f.queue_len(), f.policy_version()};
        HeartbeatBytes want = fromV1.encode();
        EXPECT_EQ(c.heartbeats().substr(i * kHeartbeatLen, kHeartbeatLen), std::string(want.begin(), want.end()))
            << "node " << i;
        EXPECT_EQ(uint8_t(c.heartbeats()[i * kHeartbeatLen]), i);  // the sender id
        for (int k = 0; k < kSthBuckets; k++)
            EXPECT_EQ(readLE(c.sth_buckets(), i * kColumnsBucketsWidth + 4 * k, 4), n.sth().buckets(k));
        EXPECT_EQ(readLE(c.sth_totals(), i * kColumnsTotalsWidth, 4), n.sth().total_tasks());
        EXPECT_EQ(int64_t(readLE(c.sth_totals(), i * kColumnsTotalsWidth + 4, 8)), n.sth().min_slack_us());
        EXPECT_EQ(readLE(c.sth_totals(), i * kColumnsTotalsWidth + 12, 8), n.sth().sum_load_us());
        uint64_t bits = readLE(c.utilisation(), i * kColumnsUtilisationWidth, 8);
        double u;
        std::memcpy(&u, &bits, sizeof u);
        EXPECT_EQ(u, n.utilisation());
        uint64_t table = readLE(c.gst_table(), i * kColumnsGstTableWidth, 2);
        if (!n.has_gst()) {
            EXPECT_EQ(table, 0u) << "node " << i;
            continue;
        }
        ASSERT_GE(table, 1u);
        ASSERT_LE(table, 2u);
        const pb::GlobalStateView& g = v2.gst_tables(int(table - 1));
        EXPECT_EQ(g.heartbeats(), n.gst().heartbeats()) << "node " << i;
        EXPECT_EQ(std::vector<uint64_t>(g.age_ns().begin(), g.age_ns().end()),
                  std::vector<uint64_t>(n.gst().age_ns().begin(), n.gst().age_ns().end()));
    }
    EXPECT_EQ(readLE(c.gst_table(), 1 * 2, 2), 1u);
    EXPECT_EQ(readLE(c.gst_table(), 2 * 2, 2), 2u);
    EXPECT_EQ(readLE(c.gst_table(), 3 * 2, 2), 1u);
    // The rest (header, links, tasks) is the v1 Step's.
    v1.clear_nodes();
    v2.clear_node_columns();
    v2.clear_gst_tables();
    EXPECT_EQ(v2.SerializeAsString(), v1.SerializeAsString());
}

// A reused Step: the second fill equals a fresh one (nothing left over from the first, v1
// or v2), and the columns keep their buffers.
TEST(MessageBuilder, StepV2ReusesTheMessage)
{
    std::vector<NodeSnapshot> nodes = v2Nodes();
    pb::Step reused;
    fillStep(reused, 1000, 0, 0, nodes, {}, {}, {});  // a v1 Step first: its nodes go
    fillStepV2(reused, 1000, 0, 0, nodes, {}, {}, {});
    const char* buckets = reused.node_columns().sth_buckets().data();
    nodes[1].includeGst = false;
    nodes[2].includeGst = false;
    nodes[3].utilisation = 0.5;
    fillStepV2(reused, 2000, 0, 1, nodes, {}, {}, {});
    pb::Step fresh;
    fillStepV2(fresh, 2000, 0, 1, nodes, {}, {}, {});
    EXPECT_EQ(reused.SerializeAsString(), fresh.SerializeAsString());
    EXPECT_EQ(reused.nodes_size(), 0);
    EXPECT_EQ(reused.gst_tables_size(), 1);
    EXPECT_EQ(reused.node_columns().sth_buckets().data(), buckets);
    // And back to v1: no columns or tables remain.
    fillStep(reused, 3000, 0, 2, nodes, {}, {}, {});
    EXPECT_FALSE(reused.has_node_columns());
    EXPECT_EQ(reused.gst_tables_size(), 0);
    EXPECT_EQ(reused.nodes_size(), 4);
}

TEST(MessageBuilder, StepV2RejectsBadInputLikeV1)
{
    std::vector<NodeSnapshot> nodes(2);
    nodes[0].nodeId = 0;
    nodes[1].nodeId = 1;
    pb::Step s;
    Task t;
    t.origin = 5;
    EXPECT_THROW(fillStepV2(s, 0, 0, 0, nodes, {}, {t}, {}), std::invalid_argument);
    nodes[1].includeGst = true;  // without entries
    EXPECT_THROW(fillStepV2(s, 0, 0, 0, nodes, {}, {}, {}), std::invalid_argument);
    nodes[1].includeGst = false;
    nodes[0].nodeId = 1;
    EXPECT_THROW(fillStepV2(s, 0, 0, 0, nodes, {}, {}, {}), std::invalid_argument);
}
