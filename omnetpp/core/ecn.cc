#include "ecn.h"

namespace malcolm {

double ecnMarkProbability(const EcnConfig& c, uint64_t queueBytes)
{
    if (queueBytes <= c.kminBytes)
        return 0.0;
    if (queueBytes > c.kmaxBytes)
        return 1.0;
    if (c.kmaxBytes == c.kminBytes)
        return c.pmax;
    return c.pmax * double(queueBytes - c.kminBytes) / double(c.kmaxBytes - c.kminBytes);
}

bool ecnShouldMark(const EcnConfig& c, uint64_t queueBytes, double uniform01)
{
    return uniform01 < ecnMarkProbability(c, queueBytes);
}

}  // namespace malcolm
