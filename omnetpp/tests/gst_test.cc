// The Global State Table of the OMNeT++ app: entries, ages and the mean peer age.
#include <gtest/gtest.h>

#include "gst.h"

using namespace malcolm;

namespace {
HeartbeatBytes beat(uint8_t node, uint32_t queueLen)
{
    return Heartbeat::fromValues(node, 0, 500, 3, 7, queueLen, 0).encode();
}
}  // namespace

TEST(GlobalStateTable, UnheardEntriesHaveNoAgeAndZeroBytes)
{
    GlobalStateTable g(4, 1);
    EXPECT_EQ(g.numNodes(), 4u);
    EXPECT_EQ(g.self(), 1u);
    for (uint32_t i = 0; i < 4; i++) {
        EXPECT_FALSE(g.age(i, 100).has_value());
        EXPECT_EQ(g.bytes(i), HeartbeatBytes{});
    }
    EXPECT_FALSE(g.meanPeerAge(100).has_value());
}

TEST(GlobalStateTable, RecordsBytesAndAges)
{
    GlobalStateTable g(3, 0);
    g.record(2, beat(2, 9), 40);
    EXPECT_EQ(g.bytes(2), beat(2, 9));
    EXPECT_EQ(g.age(2, 100).value(), 60);
    g.record(2, beat(2, 4), 90);  // a newer heartbeat replaces the entry
    EXPECT_EQ(g.bytes(2), beat(2, 4));
    EXPECT_EQ(g.age(2, 100).value(), 10);
    EXPECT_THROW(g.record(3, beat(3, 0), 0), std::out_of_range);
    EXPECT_THROW(GlobalStateTable(2, 2), std::out_of_range);
}

TEST(GlobalStateTable, MeanPeerAgeLeavesTheOwnEntryOutAndTruncates)
{
    GlobalStateTable g(4, 1);
    g.record(1, beat(1, 0), 0);  // own entry: not a peer
    EXPECT_FALSE(g.meanPeerAge(50).has_value());
    g.record(0, beat(0, 0), 10);
    g.record(3, beat(3, 0), 20);
    // ages 40 and 30 at t = 50: mean 35; at t = 51: 41 and 31, mean 36
    EXPECT_EQ(g.meanPeerAge(50).value(), 35);
    g.record(2, beat(2, 0), 49);
    // ages 40, 1, 30: 71 / 3 = 23 (integer division)
    EXPECT_EQ(g.meanPeerAge(50).value(), 23);
}

TEST(GlobalStateTable, ViewDecodesPeersAndUsesTheOwnHeartbeat)
{
    GlobalStateTable g(3, 2);
    g.record(0, beat(0, 5), 1);
    Heartbeat own = Heartbeat::decode(beat(2, 11).data(), kHeartbeatLen);
    auto v = g.view(own);
    ASSERT_EQ(v.size(), 3u);
    EXPECT_EQ(v[0], Heartbeat::decode(beat(0, 5).data(), kHeartbeatLen));
    EXPECT_EQ(v[1], Heartbeat::decode(HeartbeatBytes{}.data(), kHeartbeatLen));
    EXPECT_EQ(v[2], own);
}
