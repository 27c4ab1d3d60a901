#include <gtest/gtest.h>

#include <sstream>

#include "task_trace.h"

using namespace malcolm;

TEST(TaskTrace, ReadsRackSimFormatInAnyColumnOrder)
{
    std::istringstream in("# recorded by rack-sim\n"
                          "arrival_ns,origin,service_ns,deadline_ns,size_bytes,class\n"
                          "2000,1,10000,32000,1024,0\n"
                          "\n"
                          "1000,3,5000,16000,512,1\n");
    auto t = readTaskTrace(in, "a.csv");
    ASSERT_EQ(t.size(), 2u);
    EXPECT_EQ(t[0].arrivalNs, 1000u);  // sorted by arrival
    EXPECT_EQ(t[0].origin, 3u);
    EXPECT_EQ(t[0].taskClass, 1u);
    EXPECT_EQ(t[1].serviceNs, 10000u);
    EXPECT_EQ(t[1].deadlineNs, 32000u);
    EXPECT_EQ(t[1].sizeBytes, 1024u);

    std::istringstream reordered("size_bytes,deadline_ns,service_ns,origin,arrival_ns\n64,9000,3000,2,7\n");
    auto r = readTaskTrace(reordered, "b.csv");
    ASSERT_EQ(r.size(), 1u);
    EXPECT_EQ(r[0].arrivalNs, 7u);
    EXPECT_EQ(r[0].sizeBytes, 64u);
    EXPECT_EQ(r[0].taskClass, 0u);
    EXPECT_EQ(r[0].estimateNs, 0u);  // none recorded

    std::istringstream estimated("arrival_ns,origin,service_ns,deadline_ns,size_bytes,estimate_ns\n5,0,3000,9000,0,2500\n");
    EXPECT_EQ(readTaskTrace(estimated, "c.csv").at(0).estimateNs, 2500u);
    std::istringstream zero("arrival_ns,origin,service_ns,deadline_ns,size_bytes,estimate_ns\n5,0,3000,9000,0,0\n");
    EXPECT_THROW(readTaskTrace(zero, "d.csv"), TraceFormatError);
}

TEST(TaskTrace, RejectsBadInput)
{
    std::istringstream noHeader("");
    EXPECT_THROW(readTaskTrace(noHeader, "x"), TraceFormatError);
    std::istringstream missing("arrival_ns,origin,service_ns\n1,2,3\n");
    EXPECT_THROW(readTaskTrace(missing, "x"), TraceFormatError);
    std::istringstream negative("arrival_ns,origin,service_ns,deadline_ns,size_bytes\n-5,0,1,2,3\n");
    EXPECT_THROW(readTaskTrace(negative, "x"), TraceFormatError);
    std::istringstream shortRow("arrival_ns,origin,service_ns,deadline_ns,size_bytes\n5,0,1\n");
    EXPECT_THROW(readTaskTrace(shortRow, "x"), TraceFormatError);
    std::istringstream bigOrigin("arrival_ns,origin,service_ns,deadline_ns,size_bytes\n5,300,1,2,3\n");
    EXPECT_THROW(readTaskTrace(bigOrigin, "x"), TraceFormatError);
}

TEST(TaskTrace, ClassMeansAreOverTheWholeTracePerClass)
{
    std::vector<TraceTask> t(4);
    t[0].serviceNs = 10, t[0].taskClass = 0, t[0].origin = 0;
    t[1].serviceNs = 30, t[1].taskClass = 0, t[1].origin = 1;
    t[2].serviceNs = 5, t[2].taskClass = 1, t[2].origin = 2;
    t[3].serviceNs = 8, t[3].taskClass = 1, t[3].origin = 0;
    auto m = traceClassMeansNs(t);
    ASSERT_EQ(m.size(), 2u);
    EXPECT_DOUBLE_EQ(m.at(0), 20.0);
    EXPECT_DOUBLE_EQ(m.at(1), 6.5);
    EXPECT_TRUE(traceClassMeansNs({}).empty());
}
