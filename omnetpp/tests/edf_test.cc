#include <gtest/gtest.h>

#include "edf_queue.h"

using namespace malcolm;

namespace {
Task task(uint64_t id, uint64_t deadlineNs, uint64_t remainingNs = 1000)
{
    Task t;
    t.id = id;
    t.deadlineNs = deadlineNs;
    t.remainingNs = remainingNs;
    t.estRemainingNs = remainingNs;
    return t;
}
}  // namespace

TEST(EdfReadyQueue, PopsInDeadlineOrder)
{
    EdfReadyQueue q;
    for (auto [id, d] : std::vector<std::pair<uint64_t, uint64_t>>{{1, 50000}, {2, 20000}, {3, 90000}, {4, 20000}, {5, 30000}})
        ASSERT_TRUE(q.admit(task(id, d), 0));
    std::vector<uint64_t> order;
    while (!q.empty())
        order.push_back(q.pop().id);
    EXPECT_EQ(order, (std::vector<uint64_t>{2, 4, 5, 1, 3}));  // ties by id
}

TEST(EdfReadyQueue, EarlyDropAtAdmissionWhenSlackNegative)
{
    EdfReadyQueue q;
    // now 10 us, 5 us of work: deadline 15 us is exactly feasible, 14.999 us is not.
    EXPECT_TRUE(q.admit(task(1, 15000, 5000), 10000));
    EXPECT_FALSE(q.admit(task(2, 14999, 5000), 10000));
    EXPECT_EQ(q.size(), 1u);
    // The test reads the estimate, not the true work: the queue does not know the latter.
    Task t = task(3, 15000, 5000);
    t.remainingNs = 50000;
    EXPECT_TRUE(q.admit(t, 10000));
    t.estRemainingNs = 5001;
    t.remainingNs = 1;
    EXPECT_FALSE(q.admit(t, 10000));
}

TEST(EdfReadyQueue, PreemptionOnlyBeyondThreshold)
{
    EdfReadyQueue q(5000);
    EXPECT_FALSE(q.shouldPreempt(100000));  // nothing queued
    q.push(task(1, 95000));
    EXPECT_FALSE(q.shouldPreempt(100000));  // exactly 5 us earlier: not more than the threshold
    q.pop();
    q.push(task(2, 94999));
    EXPECT_TRUE(q.shouldPreempt(100000));
    EXPECT_FALSE(q.shouldPreempt(90000));   // later than the running one
    // No deadline: the saturating threshold never preempts, even a running task without one.
    q.pop();
    q.push(task(3, UINT64_MAX - 10));
    EXPECT_FALSE(q.shouldPreempt(UINT64_MAX));
}

TEST(EdfReadyQueue, LazyPruningOnlyAtTheHead)
{
    EdfReadyQueue q;
    q.push(task(1, 10000));
    q.push(task(2, 12000));
    q.push(task(3, 40000));
    q.push(task(4, 60000));
    std::vector<Task> late;
    q.pruneLateHead(30000, late);
    ASSERT_EQ(late.size(), 2u);
    EXPECT_EQ(late[0].id, 1u);
    EXPECT_EQ(late[1].id, 2u);
    EXPECT_EQ(q.size(), 2u);
    EXPECT_EQ(q.head().id, 3u);
    // A deadline equal to now is not late yet.
    q.pruneLateHead(40000, late);
    EXPECT_EQ(late.size(), 2u);
}

TEST(SlackUs, RoundsTowardsMinusInfinity)
{
    EXPECT_EQ(slackUs(10000, 0, 0), 10);
    EXPECT_EQ(slackUs(10999, 0, 0), 10);
    EXPECT_EQ(slackUs(10000, 10001, 0), -1);
    EXPECT_EQ(slackUs(10000, 9000, 2000), -1);
    EXPECT_EQ(slackUs(10000, 11000, 1000), -2);
}
