// Service-time laws of SPEC section 9 as pure inverse transforms: the caller supplies the
// uniform numbers (from OMNeT++'s RNGs in the modules, from fixed values in tests).
#pragma once

#include <string>

namespace malcolm {

struct ServiceLaw
{
    enum class Kind { Exponential, BoundedPareto, LogNormal, Bimodal };
    Kind kind = Kind::Exponential;
    double meanUs = 10;          // exponential
    double alpha = 1.1;          // bounded Pareto shape
    double xmUs = 10;            // bounded Pareto lower bound
    double maxUs = 10000;        // bounded Pareto upper bound
    double medianUs = 10;        // lognormal
    double sigma = 2;            // lognormal
    double shortUs = 5;          // bimodal
    double longUs = 100;
    double longFraction = 0.1;

    // "exponential", "pareto" (bounded), "lognormal" or "bimodal"; throws on anything else.
    static Kind parseKind(const std::string& name);
    // One sample in us from two independent uniforms in [0, 1) (the second is used only by
    // the lognormal's Box-Muller transform).
    double sampleUs(double u1, double u2) const;
    double expectedUs() const;
};

double exponentialInverse(double meanUs, double u);
double boundedParetoInverse(double alpha, double lowUs, double highUs, double u);
double boundedParetoMean(double alpha, double lowUs, double highUs);
double standardNormalBoxMuller(double u1, double u2);

}  // namespace malcolm
