// ECN marking decision (RED-like, as DCQCN switches do; design.md section 8): no mark below Kmin,
// probability rising linearly to Pmax at Kmax, always above Kmax. Pure: the caller passes
// the uniform random number.
#pragma once

#include <cstdint>

namespace malcolm {

struct EcnConfig
{
    uint64_t kminBytes = 400000;
    uint64_t kmaxBytes = 1600000;
    double pmax = 0.2;
};

double ecnMarkProbability(const EcnConfig& config, uint64_t queueBytes);
// `uniform01` in [0, 1).
bool ecnShouldMark(const EcnConfig& config, uint64_t queueBytes, double uniform01);

}  // namespace malcolm
