#include <gtest/gtest.h>

#include <cmath>

#include "workload.h"

using namespace malcolm;

namespace {
// Mean of a law over a fine uniform grid (a deterministic stand-in for sampling).
double gridMean(const ServiceLaw& law, int n)
{
    double sum = 0;
    for (int i = 0; i < n; i++)
        for (int j = 0; j < (law.kind == ServiceLaw::Kind::LogNormal ? 64 : 1); j++)
            sum += law.sampleUs((i + 0.5) / n, (j + 0.5) / 64.0);
    return sum / (n * (law.kind == ServiceLaw::Kind::LogNormal ? 64 : 1));
}
}  // namespace

TEST(Workload, BoundedParetoStaysInBoundsWithTheRightMean)
{
    ServiceLaw law;
    law.kind = ServiceLaw::Kind::BoundedPareto;
    law.alpha = 1.5;
    law.xmUs = 10;
    law.maxUs = 10000;
    EXPECT_DOUBLE_EQ(law.sampleUs(0.0, 0), 10.0);
    EXPECT_NEAR(law.sampleUs(1.0 - 1e-15, 0), 10000.0, 1e-6 * 10000);
    EXPECT_NEAR(gridMean(law, 200000), law.expectedUs(), 0.01 * law.expectedUs());
    // 10^1.5 / (1 - 0.001^1.5) * 3 * (10^-0.5 - 10000^-0.5)
    EXPECT_NEAR(boundedParetoMean(1.5, 10, 10000), 29.052, 0.001);
}

TEST(Workload, ExponentialAndBimodalMeans)
{
    ServiceLaw e;
    e.meanUs = 7;
    EXPECT_NEAR(gridMean(e, 100000), 7.0, 0.01);
    ServiceLaw b;
    b.kind = ServiceLaw::Kind::Bimodal;
    EXPECT_NEAR(gridMean(b, 100000), b.expectedUs(), 1e-9);
    EXPECT_DOUBLE_EQ(b.expectedUs(), 0.1 * 100 + 0.9 * 5);
}

TEST(Workload, LogNormalMedian)
{
    ServiceLaw l;
    l.kind = ServiceLaw::Kind::LogNormal;
    l.medianUs = 10;
    l.sigma = 2;
    // Box-Muller with u2 = 0.25 gives cos = 0: exactly the median.
    EXPECT_NEAR(l.sampleUs(0.3, 0.25), 10.0, 1e-9);
    EXPECT_NEAR(l.expectedUs(), 10 * std::exp(2.0), 1e-9);
}

TEST(Workload, UnknownLawIsRejected)
{
    EXPECT_EQ(ServiceLaw::parseKind("pareto"), ServiceLaw::Kind::BoundedPareto);
    EXPECT_THROW(ServiceLaw::parseKind("weibull"), std::invalid_argument);
}
