// Who sends bulk writes, how many, and which settings a rack refuses.
#include <gtest/gtest.h>

#include <stdexcept>

#include "bulk_traffic.h"

using namespace malcolm;

TEST(BulkTraffic, NoTargetNoSenders)
{
    BulkTraffic b;
    EXPECT_NO_THROW(b.validate(16, false));
    for (int n = 0; n < 16; n++)
        EXPECT_FALSE(b.isSender(n));
}

TEST(BulkTraffic, FanInPicksNodesOneToK)
{
    BulkTraffic b{0, 3, 9, 4096};
    EXPECT_NO_THROW(b.validate(16, true));
    EXPECT_FALSE(b.isSender(0));  // the target
    for (int n = 1; n <= 9; n++)
        EXPECT_TRUE(b.isSender(n)) << n;
    EXPECT_FALSE(b.isSender(10));
    b.fanIn = 0;  // every other node
    EXPECT_TRUE(b.isSender(15));
    b.target = 5;
    EXPECT_FALSE(b.isSender(5));
}

TEST(BulkTraffic, CountBoundsTheWrites)
{
    BulkTraffic b{0, 2, 0, 1};
    EXPECT_TRUE(b.continuesAfter(1));
    EXPECT_FALSE(b.continuesAfter(2));
    b.count = -1;
    EXPECT_TRUE(b.continuesAfter(1000000));
}

TEST(BulkTraffic, RefusesWhatTheRackCannotRun)
{
    EXPECT_THROW((BulkTraffic{0, 1, 0, 0}.validate(16, true)), std::invalid_argument);            // no bytes
    EXPECT_THROW((BulkTraffic{0, 1, 0, 1LL << 32}.validate(16, true)), std::invalid_argument);    // >= 4 GiB
    EXPECT_THROW((BulkTraffic{0, 1, 0, 1}.validate(16, false)), std::invalid_argument);           // no interval
    EXPECT_THROW((BulkTraffic{16, 1, 0, 1}.validate(16, true)), std::invalid_argument);           // no such node
    EXPECT_THROW((BulkTraffic{0, 1, 16, 1}.validate(16, true)), std::invalid_argument);           // fan-in too large
    EXPECT_THROW((BulkTraffic{-1, 1, -1, 0}.validate(16, true)), std::invalid_argument);          // negative fan-in
}
