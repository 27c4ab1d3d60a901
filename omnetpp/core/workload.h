// Service-time laws of design.md section 9 as pure inverse transforms: the caller supplies the
// uniform numbers (from OMNeT++'s RNGs in the modules, from fixed values in tests).
#pragma once

#include <cstdint>
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

// What policies (and a node's admission test and slack histogram) know of a task's service
// time (rack-sim's ServiceEstimate, same models, names and defaults): "exact" (an oracle,
// explicit opt-in), "class_mean" (the mean service of the task's class) or "noisy" (true x
// LogNormal(0, sigma), the default with sigma 0.5, drawn from its own random stream). The
// deadline of a generated task is D = A + F x estimate: a client promises from what it knows,
// and with the true service (D - A) / F would give it away.
struct ServiceEstimate
{
    enum class Kind { Exact, ClassMean, Noisy };
    Kind kind = Kind::Noisy;
    double sigma = 0.5;

    // "exact", "class_mean" or "noisy"; throws on anything else.
    static Kind parseKind(const std::string& name);
    // Estimate of a task whose true service is serviceNs: exact, the class mean (the service
    // itself when classMeanNs < 0), or serviceNs x exp(sigma x z) for a standard normal z;
    // rounded half up, at least 1 ns. Golden vectors: proto/testdata/estimate_vectors.csv.
    uint64_t estimateNs(uint64_t serviceNs, double classMeanNs, double z) const;
    // "exact", "class_mean", "noisy(sigma=0.5)": the label rack-sim puts in Hello.
    std::string label() const;
};

double exponentialInverse(double meanUs, double u);
double boundedParetoInverse(double alpha, double lowUs, double highUs, double u);
double boundedParetoMean(double alpha, double lowUs, double highUs);
double standardNormalBoxMuller(double u1, double u2);

}  // namespace malcolm
