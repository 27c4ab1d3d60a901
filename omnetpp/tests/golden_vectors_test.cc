// The shared golden vectors of proto/testdata, read at test time exactly as the Rust side
// (proto/tests/golden.rs) reads them.
#include <gtest/gtest.h>

#include <fstream>
#include <sstream>

#include "csv.h"
#include "golden_heartbeats.h"
#include "heartbeat.h"
#include "sth.h"
#include "workload.h"

using namespace malcolm;

TEST(GoldenVectors, SlackToBucket)
{
    auto rows = test::readRows("sth_buckets.csv");
    ASSERT_GE(rows.size(), 9u);
    for (const auto& r : rows) {
        ASSERT_EQ(r.size(), 2u);
        EXPECT_EQ(sthBucketOf(std::stoll(r[0])), std::stoi(r[1])) << "slack " << r[0];
    }
}

TEST(GoldenVectors, LowerEdgesMapBackToTheirBucket)
{
    for (int b = 1; b < kSthBuckets; b++) {
        EXPECT_EQ(sthBucketOf(sthBucketLowerEdgeUs(b)), b);
        EXPECT_EQ(sthBucketOf(sthBucketLowerEdgeUs(b) - 1), b - 1);
    }
}

TEST(GoldenVectors, HeartbeatEncodeAndDecode)
{
    std::ifstream in(std::string(MALCOLM_TESTDATA_DIR) + "/heartbeat_vectors.csv");
    ASSERT_TRUE(in);
    auto rows = readGoldenHeartbeats(in);
    ASSERT_GE(rows.size(), 9u);
    for (const auto& r : rows) {
        HeartbeatBytes bytes = r.heartbeat.encode();
        EXPECT_EQ(hexOf(bytes.data(), bytes.size()), r.hex) << "row node_id=" << int(r.heartbeat.nodeId);
        EXPECT_EQ(Heartbeat::decode(bytes.data(), bytes.size()), r.heartbeat);
    }
}

TEST(GoldenVectors, GoldenRowsNeedEightColumns)
{
    std::istringstream in("node_id,flags,rho,p10,p50,queue_len,version,hex\n1,0,0.5,1,2,3,4\n");
    EXPECT_THROW(readGoldenHeartbeats(in), std::runtime_error);
    std::istringstream bad("header\n1,0,x,1,2,3,4,00\n");
    EXPECT_THROW(readGoldenHeartbeats(bad), std::runtime_error);
}

TEST(GoldenVectors, SthPercentiles)
{
    auto rows = test::readRows("sth_percentiles.csv");
    ASSERT_GE(rows.size(), 9u);
    for (const auto& r : rows) {
        ASSERT_EQ(r.size(), 8u);
        SlackHistogram h;
        size_t n = 0;
        for (const std::string& s : test::splitFields(r[0], ';')) {
            if (s.empty())
                continue;
            h.add(std::stoll(s), 1);
            n++;
        }
        EXPECT_EQ(h.totalTasks(), n);
        EXPECT_EQ(std::to_string(h.totalTasks()), r[1]);
        EXPECT_EQ(std::to_string(h.minSlackOrZero()), r[2]);
        if (!r[3].empty()) {
            EXPECT_EQ(std::to_string(h.percentileUs(10)), r[3]) << "p10 of " << r[0];
            EXPECT_EQ(std::to_string(h.percentileUs(50)), r[4]) << "p50 of " << r[0];
        }
        else {
            EXPECT_EQ(h.percentileUs(10), INT64_MAX);
        }
        EXPECT_EQ(int(h.panic()), std::stoi(r[5]));
        Heartbeat hb = Heartbeat::fromSth(0, h, 0.0, false, 0);
        EXPECT_EQ(std::to_string(hb.slackP10Us), r[6]);
        EXPECT_EQ(std::to_string(hb.slackP50Us), r[7]);
        EXPECT_EQ(hb.panic(), h.panic());
    }
}

TEST(GoldenVectors, HeartbeatLoadIsTasksInSystemPerCore)
{
    auto rows = test::readRows("heartbeat_load.csv");
    ASSERT_GE(rows.size(), 9u);
    for (const auto& r : rows) {
        ASSERT_EQ(r.size(), 3u);
        uint64_t tasks = std::stoull(r[0]);
        uint32_t cores = static_cast<uint32_t>(std::stoul(r[1]));
        EXPECT_EQ(loadFactorFromRho(rhoOfTasks(tasks, cores)), std::stoul(r[2])) << tasks << " tasks on " << cores << " cores";
    }
}

TEST(GoldenVectors, ServiceEstimates)
{
    auto rows = test::readRows("estimate_vectors.csv");
    ASSERT_GE(rows.size(), 10u);
    for (const auto& r : rows) {
        ASSERT_EQ(r.size(), 6u);
        ServiceEstimate e;
        e.kind = ServiceEstimate::parseKind(r[0]);
        e.sigma = std::stod(r[1]);
        double mean = r[3].empty() ? -1.0 : std::stod(r[3]);
        EXPECT_EQ(e.estimateNs(std::stoull(r[2]), mean, std::stod(r[4])), std::stoull(r[5]))
            << r[0] << " sigma " << r[1] << " service " << r[2] << " mean " << r[3] << " z " << r[4];
    }
    EXPECT_THROW(ServiceEstimate::parseKind("oracle"), std::invalid_argument);
    ServiceEstimate d;
    EXPECT_EQ(d.label(), "noisy(sigma=0.5)");  // the default, labelled as rack-sim labels it
}

TEST(Heartbeat, DecodeRejectsWrongLengths)
{
    uint8_t buf[32] = {};
    for (size_t n : {0, 1, 15, 17, 32}) {
        try {
            Heartbeat::decode(buf, n);
            ADD_FAILURE() << "decoded " << n << " bytes";
        }
        catch (const HeartbeatLengthError& e) {
            EXPECT_EQ(e.got, n);
        }
    }
}

TEST(Heartbeat, IdleOnlyWhenNothingQueuedOrRunning)
{
    SlackHistogram empty;
    Heartbeat idle = Heartbeat::fromSth(3, empty, 0.0, false, 9);
    EXPECT_TRUE(idle.idle());
    EXPECT_FALSE(idle.panic());
    EXPECT_EQ(idle.slackP10Us, INT16_MAX);
    EXPECT_FALSE(Heartbeat::fromSth(3, empty, 0.5, true, 9).idle());
}
