#include "TaskSource.h"

#include <algorithm>
#include <cmath>
#include <fstream>

#include "SimTime.h"

namespace malcolm {

namespace {
// Module-local RNG of the service estimates (the arrivals and services use RNG 0).
constexpr int kEstimateRng = 1;
}  // namespace

void TaskSource::initialize(cComponent& owner, int nodeId, int numNodes)
{
    owner_ = &owner;
    nodeId_ = nodeId;
    numNodes_ = numNodes;
    readServiceLaw();
    readServiceEstimate();
    classMeanNs_[0] = law_.expectedUs() * 1000.0;
    deadlineFactor_ = owner.par("deadlineFactor").doubleValue();
    if (!(deadlineFactor_ > 0))
        throw cRuntimeError("deadlineFactor must be > 0");
    stopTime_ = owner.par("stopTime");
}

void TaskSource::readServiceLaw()
{
    cComponent& o = *owner_;
    try {
        law_.kind = ServiceLaw::parseKind(o.par("serviceLaw").stdstringValue());
    }
    catch (const std::exception& e) {
        throw cRuntimeError("%s", e.what());
    }
    law_.alpha = o.par("paretoAlpha").doubleValue();
    law_.xmUs = o.par("paretoMin").doubleValue() * 1e6;
    law_.maxUs = o.par("paretoMax").doubleValue() * 1e6;
    law_.medianUs = o.par("lognormalMedian").doubleValue() * 1e6;
    law_.sigma = o.par("lognormalSigma").doubleValue();
    law_.meanUs = o.par("exponentialMean").doubleValue() * 1e6;
    law_.shortUs = o.par("bimodalShort").doubleValue() * 1e6;
    law_.longUs = o.par("bimodalLong").doubleValue() * 1e6;
    law_.longFraction = o.par("bimodalLongFraction").doubleValue();
    if (law_.kind == ServiceLaw::Kind::BoundedPareto && !(law_.alpha > 0 && law_.xmUs > 0 && law_.maxUs > law_.xmUs))
        throw cRuntimeError("bounded Pareto needs paretoAlpha > 0 and 0 < paretoMin < paretoMax");
    if (!(law_.expectedUs() > 0))
        throw cRuntimeError("service law %s has no positive mean", o.par("serviceLaw").stringValue());
}

void TaskSource::readServiceEstimate()
{
    try {
        estimate_.kind = ServiceEstimate::parseKind(owner_->par("estimate").stdstringValue());
    }
    catch (const std::exception& e) {
        throw cRuntimeError("%s", e.what());
    }
    estimate_.sigma = owner_->par("estimateSigma").doubleValue();
    if (!(estimate_.sigma >= 0) || !std::isfinite(estimate_.sigma))
        throw cRuntimeError("estimateSigma must be >= 0, got %g", estimate_.sigma);
    // The estimates draw from their own stream (module-local RNG 1): a run's arrivals and
    // services do not depend on the estimate model.
    try {
        owner_->getRNG(kEstimateRng);
    }
    catch (const std::exception& e) {
        throw cRuntimeError("MalcolmApp draws service estimates from its RNG %d: set num-rngs = 2 (or more) in the "
                            "ini (%s)", kEstimateRng, e.what());
    }
}

uint64_t TaskSource::estimateOf(uint32_t taskClass, uint64_t serviceNs)
{
    auto it = classMeanNs_.find(taskClass);
    double mean = it == classMeanNs_.end() ? -1.0 : it->second;
    double z = estimate_.kind == ServiceEstimate::Kind::Noisy ? owner_->normal(0.0, 1.0, kEstimateRng) : 0.0;
    return estimate_.estimateNs(serviceNs, mean, z);
}

simtime_t TaskSource::start(simtime_t start, double rackCapacity)
{
    cComponent& o = *owner_;
    simtime_t first = -1;
    std::string tracePath = o.par("taskTraceFile").stdstringValue();
    if (!tracePath.empty()) {
        loadTrace(tracePath);
        useTrace_ = true;
        if (!trace_.empty())
            first = std::max(start, fromNs(trace_[0].arrivalNs));
    }
    else {
        double rho = o.par("rho").doubleValue();
        if (rho < 0)
            throw cRuntimeError("rho must be >= 0");
        // Every node originates the same share of rho x rack capacity (tasks per second).
        arrivalRatePerS_ = rho * rackCapacity / (numNodes_ * law_.expectedUs() * 1e-6);
        if (arrivalRatePerS_ > 0)
            first = start + o.exponential(1.0 / arrivalRatePerS_);
    }
    microburstPeriod_ = o.par("microburstPeriod");
    microburstSize_ = o.par("microburstSize").intValue();
    microburstServiceNs_ = toNs(o.par("microburstService"));
    microburstDeadlineNs_ = toNs(o.par("microburstDeadline"));
    if (microburstPeriod_ > SIMTIME_ZERO)
        classMeanNs_[1] = double(microburstServiceNs_);
    if (microburstPeriod_ < SIMTIME_ZERO || microburstSize_ < 0 || microburstServiceNs_ == 0 || microburstDeadlineNs_ == 0)
        throw cRuntimeError("micro-bursts need microburstPeriod >= 0, microburstSize >= 0 and positive service and deadline");
    return first;
}

simtime_t TaskSource::firstMicroburst(simtime_t start) const
{
    return microburstPeriod_ > SIMTIME_ZERO ? start + microburstPeriod_ : simtime_t(-1);
}

void TaskSource::loadTrace(const std::string& path)
{
    std::ifstream in(path);
    if (!in)
        throw cRuntimeError("cannot open taskTraceFile '%s'", path.c_str());
    std::vector<TraceTask> all;
    try {
        all = readTaskTrace(in, path);
    }
    catch (const TraceFormatError& e) {
        throw cRuntimeError("%s", e.what());
    }
    for (const TraceTask& t : all) {
        if (t.origin == static_cast<uint32_t>(nodeId_))
            trace_.push_back(t);
        else if (t.origin >= static_cast<uint32_t>(numNodes_))
            throw cRuntimeError("%s: task origin %u but the rack has %d nodes", path.c_str(), t.origin, numNodes_);
    }
    // Replayed tasks: class-mean estimates use the whole trace's per-class means (as rack-sim).
    classMeanNs_ = traceClassMeansNs(all);
}

NewTask TaskSource::arrival(uint64_t nowNs)
{
    NewTask t;
    if (useTrace_) {
        const TraceTask& r = trace_[traceNext_++];
        t.serviceNs = r.serviceNs;
        // A recorded estimate is used as is; the trace's deadline is the promise made.
        t.estimateNs = r.estimateNs > 0 ? r.estimateNs : estimateOf(r.taskClass, r.serviceNs);
        t.deadlineNs = r.deadlineNs;
        t.sizeBytes = r.sizeBytes;
        t.taskClass = r.taskClass;
        return t;
    }
    uint64_t serviceNs = static_cast<uint64_t>(
        std::llround(law_.sampleUs(owner_->uniform(0, 1), owner_->uniform(0, 1)) * 1000.0));
    t.serviceNs = std::max<uint64_t>(serviceNs, 1);
    // D = A + F x estimate: the client promises from what it knows (the true time would leak
    // through (D - A) / F).
    t.estimateNs = estimateOf(0, t.serviceNs);
    t.deadlineNs = nowNs + static_cast<uint64_t>(std::llround(deadlineFactor_ * double(t.estimateNs)));
    t.sizeBytes = static_cast<uint32_t>(owner_->par("taskBytes").intValue());
    t.taskClass = 0;
    return t;
}

simtime_t TaskSource::nextArrival(simtime_t now)
{
    if (useTrace_)
        return traceNext_ < trace_.size() ? std::max(now, fromNs(trace_[traceNext_].arrivalNs)) : simtime_t(-1);
    return untilStop(now + owner_->exponential(1.0 / arrivalRatePerS_));
}

NewTask TaskSource::microburstTask(uint64_t deadlineNs)
{
    NewTask t;
    t.serviceNs = microburstServiceNs_;
    t.estimateNs = estimateOf(1, microburstServiceNs_);
    t.deadlineNs = deadlineNs;
    t.sizeBytes = static_cast<uint32_t>(owner_->par("taskBytes").intValue());
    t.taskClass = 1;
    return t;
}

simtime_t TaskSource::nextMicroburst(simtime_t now) const
{
    return untilStop(now + microburstPeriod_);
}

simtime_t TaskSource::untilStop(simtime_t t) const
{
    return stopTime_ < SIMTIME_ZERO || t <= stopTime_ ? t : simtime_t(-1);
}

}  // namespace malcolm
