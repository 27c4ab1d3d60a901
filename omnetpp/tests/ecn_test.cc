#include <gtest/gtest.h>

#include "ecn.h"

using namespace malcolm;

TEST(Ecn, LinearBetweenKminAndKmax)
{
    EcnConfig c;  // 400 KB, 1600 KB, 0.2
    EXPECT_DOUBLE_EQ(ecnMarkProbability(c, 0), 0.0);
    EXPECT_DOUBLE_EQ(ecnMarkProbability(c, 400000), 0.0);
    EXPECT_DOUBLE_EQ(ecnMarkProbability(c, 1000000), 0.1);
    EXPECT_DOUBLE_EQ(ecnMarkProbability(c, 1600000), 0.2);
    EXPECT_DOUBLE_EQ(ecnMarkProbability(c, 1600001), 1.0);
}

TEST(Ecn, DecisionComparesTheUniformWithTheProbability)
{
    EcnConfig c;
    EXPECT_TRUE(ecnShouldMark(c, 1000000, 0.0999));
    EXPECT_FALSE(ecnShouldMark(c, 1000000, 0.1));
    EXPECT_FALSE(ecnShouldMark(c, 300000, 0.0));
    EXPECT_TRUE(ecnShouldMark(c, 2000000, 0.9999));
    // Over a uniform grid the marked fraction equals the probability.
    int marked = 0;
    for (int i = 0; i < 10000; i++)
        marked += ecnShouldMark(c, 700000, (i + 0.5) / 10000.0);
    EXPECT_EQ(marked, 500);  // p = 0.2 * 300/1200 = 0.05
}
