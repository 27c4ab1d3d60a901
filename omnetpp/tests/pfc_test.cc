#include <gtest/gtest.h>

#include "pfc.h"

using namespace malcolm;

namespace {
PfcConfig config(bool enabled = true)
{
    PfcConfig c;
    c.enabled = enabled;
    c.ports = 4;
    c.bufferBytes = 1000000;
    c.headroomPerPortBytes = 37500;
    c.staticXoffBytes = 50000;
    c.xonOffsetBytes = 3000;
    return c;
}
constexpr int kData = 3;
}  // namespace

TEST(Pfc, HeadroomIsThreeTimesRateTimesOneWayDelay)
{
    EXPECT_EQ(pfcHeadroomBytes(100e9, 1e-6), 37500u);
    EXPECT_EQ(pfcHeadroomBytes(25e9, 2e-6), 18750u);
}

TEST(Pfc, PauseQuantaAre512BitTimes)
{
    EXPECT_EQ(pauseDurationNs(1, 100e9), 6u);            // 5.12 ns rounded up
    EXPECT_EQ(pauseDurationNs(0xFFFF, 100e9), 335540u);  // 65535 * 5.12 ns
    EXPECT_EQ(pauseDurationNs(1000, 10e9), 51200u);
    EXPECT_EQ(pauseRefreshIntervalNs(0xFFFF, 100e9), 167770u);
}

TEST(Pfc, XoffAtThresholdThenHeadroomThenDrop)
{
    PfcIngressBuffer b(config());
    PfcAction a;
    for (int i = 0; i < 49; i++) {
        a = b.onArrival(1, kData, 1000);
        ASSERT_EQ(a.admission, Admission::Shared);
        ASSERT_FALSE(a.sendPause);
    }
    a = b.onArrival(1, kData, 1000);  // reaches 50 KB: XOFF
    EXPECT_EQ(a.admission, Admission::Shared);
    EXPECT_TRUE(a.sendPause);
    EXPECT_TRUE(b.pausedUpstream(1, kData));
    // In-flight bytes land in the headroom, no second PAUSE.
    for (int i = 0; i < 37; i++) {
        a = b.onArrival(1, kData, 1000);
        ASSERT_EQ(a.admission, Admission::Headroom) << i;
        ASSERT_FALSE(a.sendPause);
    }
    EXPECT_EQ(b.headroomBytes(1, kData), 37000u);
    a = b.onArrival(1, kData, 1000);  // 38 KB > 37.5 KB headroom: the only drop
    EXPECT_EQ(a.admission, Admission::Dropped);
    EXPECT_EQ(b.drops(), 1u);
    // Other ports are unaffected.
    EXPECT_EQ(b.onArrival(2, kData, 1000).admission, Admission::Shared);
    EXPECT_FALSE(b.pausedUpstream(2, kData));
}

TEST(Pfc, XonNeedsEmptyHeadroomAndHysteresis)
{
    PfcIngressBuffer b(config());
    for (int i = 0; i < 60; i++)
        b.onArrival(0, kData, 1000);  // 50 KB shared + 10 KB headroom, paused
    ASSERT_TRUE(b.pausedUpstream(0, kData));
    PfcAction a;
    for (int i = 0; i < 10; i++) {  // headroom drains first
        a = b.onDeparture(0, kData, 1000);
        ASSERT_FALSE(a.sendResume);
        ASSERT_EQ(a.admission, Admission::Headroom);
    }
    EXPECT_EQ(b.headroomBytes(0, kData), 0u);
    EXPECT_EQ(b.sharedBytes(0, kData), 50000u);
    // 49 KB and 48 KB: still within 3 KB of the threshold.
    EXPECT_FALSE(b.onDeparture(0, kData, 1000).sendResume);
    EXPECT_FALSE(b.onDeparture(0, kData, 1000).sendResume);
    a = b.onDeparture(0, kData, 1000);  // 47 KB = threshold - 3 KB: XON
    EXPECT_TRUE(a.sendResume);
    EXPECT_FALSE(b.pausedUpstream(0, kData));
    EXPECT_FALSE(b.onDeparture(0, kData, 1000).sendResume);  // only once
    EXPECT_EQ(b.sharedUsedBytes(), 46000u);
}

TEST(Pfc, DynamicThresholdIsFreeSharedBufferOverEight)
{
    PfcConfig c = config();
    c.dynamicThreshold = true;
    PfcIngressBuffer b(c);
    uint64_t pool = c.bufferBytes - 4 * c.headroomPerPortBytes;  // 850 KB
    EXPECT_EQ(b.xoffThreshold(), pool >> 3);
    for (int i = 0; i < 100; i++)
        b.onArrival(2, kData, 1000);
    EXPECT_EQ(b.xoffThreshold(), (pool - b.sharedUsedBytes()) >> 3);
    EXPECT_TRUE(b.pausedUpstream(2, kData));  // ~94 KB free/8 is far below 100 KB offered
}

TEST(Pfc, HeadroomFollowsEachPortsRate)
{
    PfcConfig c = config();
    c.ports = 2;
    c.headroomBytesByPort = {pfcHeadroomBytes(100e9, 1e-6), pfcHeadroomBytes(400e9, 1e-6)};  // 37.5 KB, 150 KB
    PfcIngressBuffer b(c);
    int hr0 = 0, hr1 = 0;
    for (int i = 0; i < 300; i++) {
        hr0 += b.onArrival(0, kData, 1000).admission == Admission::Headroom;
        hr1 += b.onArrival(1, kData, 1000).admission == Admission::Headroom;
    }
    EXPECT_EQ(hr0, 37);
    EXPECT_EQ(hr1, 150);
    EXPECT_EQ(b.drops(), uint64_t(300 - 50 - 37 + 300 - 50 - 150));
    c.headroomBytesByPort = {1};
    EXPECT_THROW(PfcIngressBuffer bad(c), std::invalid_argument);
}

TEST(Pfc, DisabledDropsBeyondThresholdWithoutPause)
{
    PfcIngressBuffer b(config(false));
    int dropped = 0;
    for (int i = 0; i < 60; i++) {
        PfcAction a = b.onArrival(0, kData, 1000);
        EXPECT_FALSE(a.sendPause);
        dropped += a.admission == Admission::Dropped;
    }
    EXPECT_EQ(dropped, 10);
    EXPECT_EQ(b.headroomBytes(0, kData), 0u);
}

TEST(Pfc, LossyPriorityIsNeverPaused)
{
    PfcIngressBuffer b(config());
    int dropped = 0;
    for (int i = 0; i < 60; i++) {
        PfcAction a = b.onArrival(0, 0, 1000);
        EXPECT_FALSE(a.sendPause);
        dropped += a.admission == Admission::Dropped;
    }
    EXPECT_EQ(dropped, 10);
}

TEST(Pfc, PauseStateHonoursQuantaAndResume)
{
    PfcPauseState s;
    s.onPause(kData, 1000, 0, 100e9);  // 5.12 us
    EXPECT_TRUE(s.paused(kData, 5000));
    EXPECT_FALSE(s.paused(kData, 5120));
    EXPECT_FALSE(s.paused(0, 1));
    s.onPause(kData, 0xFFFF, 10000, 100e9);
    EXPECT_TRUE(s.paused(kData, 20000));
    s.onPause(kData, 0, 20000, 100e9);  // RESUME
    EXPECT_FALSE(s.paused(kData, 20000));
}
