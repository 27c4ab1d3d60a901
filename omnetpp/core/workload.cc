#include "workload.h"

#include <algorithm>
#include <cmath>
#include <sstream>
#include <stdexcept>

namespace malcolm {

ServiceLaw::Kind ServiceLaw::parseKind(const std::string& name)
{
    if (name == "exponential")
        return Kind::Exponential;
    if (name == "pareto" || name == "bounded-pareto")
        return Kind::BoundedPareto;
    if (name == "lognormal")
        return Kind::LogNormal;
    if (name == "bimodal")
        return Kind::Bimodal;
    throw std::invalid_argument("unknown service law '" + name + "' (exponential, pareto, lognormal, bimodal)");
}

ServiceEstimate::Kind ServiceEstimate::parseKind(const std::string& name)
{
    if (name == "exact")
        return Kind::Exact;
    if (name == "class_mean")
        return Kind::ClassMean;
    if (name == "noisy")
        return Kind::Noisy;
    throw std::invalid_argument("unknown service estimate '" + name + "' (exact, class_mean, noisy)");
}

uint64_t ServiceEstimate::estimateNs(uint64_t serviceNs, double classMeanNs, double z) const
{
    double x = 0;
    switch (kind) {
        case Kind::Exact: return serviceNs;
        case Kind::ClassMean: x = classMeanNs < 0 ? double(serviceNs) : classMeanNs; break;
        case Kind::Noisy: x = double(serviceNs) * std::exp(sigma * z); break;
    }
    return std::max<uint64_t>(1, static_cast<uint64_t>(x + 0.5));
}

std::string ServiceEstimate::label() const
{
    switch (kind) {
        case Kind::Exact: return "exact";
        case Kind::ClassMean: return "class_mean";
        case Kind::Noisy: {
            std::ostringstream s;
            s << "noisy(sigma=" << sigma << ")";
            return s.str();
        }
    }
    return "noisy";
}

double exponentialInverse(double meanUs, double u)
{
    return -meanUs * std::log1p(-u);
}

double boundedParetoInverse(double alpha, double lowUs, double highUs, double u)
{
    if (!(alpha > 0) || !(lowUs > 0) || !(highUs > lowUs))
        throw std::invalid_argument("bounded Pareto needs alpha > 0 and 0 < low < high");
    double ratio = std::pow(lowUs / highUs, alpha);
    return lowUs / std::pow(1.0 - u * (1.0 - ratio), 1.0 / alpha);
}

double boundedParetoMean(double alpha, double L, double H)
{
    double ratio = std::pow(L / H, alpha);
    if (std::fabs(alpha - 1.0) < 1e-12)
        return L * std::log(H / L) / (1.0 - L / H);
    return std::pow(L, alpha) / (1.0 - ratio) * alpha / (alpha - 1.0) *
           (1.0 / std::pow(L, alpha - 1.0) - 1.0 / std::pow(H, alpha - 1.0));
}

double standardNormalBoxMuller(double u1, double u2)
{
    const double tiny = 1e-300;  // u1 == 0 would be log(0)
    return std::sqrt(-2.0 * std::log(std::max(1.0 - u1, tiny))) * std::cos(2.0 * M_PI * u2);
}

double ServiceLaw::sampleUs(double u1, double u2) const
{
    switch (kind) {
        case Kind::Exponential: return exponentialInverse(meanUs, u1);
        case Kind::BoundedPareto: return boundedParetoInverse(alpha, xmUs, maxUs, u1);
        case Kind::LogNormal: return medianUs * std::exp(sigma * standardNormalBoxMuller(u1, u2));
        case Kind::Bimodal: return u1 < longFraction ? longUs : shortUs;
    }
    return meanUs;
}

double ServiceLaw::expectedUs() const
{
    switch (kind) {
        case Kind::Exponential: return meanUs;
        case Kind::BoundedPareto: return boundedParetoMean(alpha, xmUs, maxUs);
        case Kind::LogNormal: return medianUs * std::exp(sigma * sigma / 2.0);
        case Kind::Bimodal: return longFraction * longUs + (1.0 - longFraction) * shortUs;
    }
    return meanUs;
}

}  // namespace malcolm
