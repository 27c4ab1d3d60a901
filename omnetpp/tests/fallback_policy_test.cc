#include <gtest/gtest.h>

#include "fallback_policy.h"

using namespace malcolm;

namespace {
std::vector<Heartbeat> view(std::vector<uint32_t> queueLens)
{
    std::vector<Heartbeat> v;
    for (size_t i = 0; i < queueLens.size(); i++) {
        Heartbeat hb;
        hb.nodeId = uint8_t(i);
        hb.queueLen = queueLens[i];
        v.push_back(hb);
    }
    return v;
}
}  // namespace

TEST(FallbackPolicy, PowerOfTwoPicksTheLessLoadedOfTwoSamples)
{
    FallbackPolicy p = FallbackPolicy::parse("power-of-2");
    Task t;
    t.origin = 0;
    std::vector<double> u{0.1, 0.9};  // samples node 0 then node 3 of 4
    size_t k = 0;
    auto uniform = [&] { return u[k++ % u.size()]; };
    EXPECT_EQ(p.choose(t, view({8, 1, 1, 2}), {1, 1, 1, 1}, uniform), 3u);
    // Per unit of capacity: node 0 with 8 queued on 16 cores beats node 3 with 2 on 1 core.
    EXPECT_EQ(p.choose(t, view({8, 1, 1, 2}), {16, 1, 1, 1}, uniform), 0u);
}

TEST(FallbackPolicy, NamesAndRoundRobin)
{
    EXPECT_THROW(FallbackPolicy::parse("jsq-magic"), std::invalid_argument);
    EXPECT_THROW(FallbackPolicy::parse("power-of-x"), std::invalid_argument);
    FallbackPolicy rr = FallbackPolicy::parse("round-robin");
    Task t;
    auto uniform = [] { return 0.5; };
    std::vector<uint32_t> got;
    for (int i = 0; i < 5; i++)
        got.push_back(rr.choose(t, view({0, 0, 0}), {}, uniform));
    EXPECT_EQ(got, (std::vector<uint32_t>{0, 1, 2, 0, 1}));
    t.origin = 2;
    EXPECT_EQ(FallbackPolicy::parse("local").choose(t, view({0, 0, 0}), {}, uniform), 2u);
}
