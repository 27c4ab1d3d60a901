#include "pfc.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>

namespace malcolm {

uint64_t pfcHeadroomBytes(double rateBps, double oneWayDelayS)
{
    return static_cast<uint64_t>(std::llround(3.0 * rateBps / 8.0 * oneWayDelayS));
}

uint64_t pauseDurationNs(uint32_t quanta, double rateBps)
{
    if (!(rateBps > 0))
        throw std::invalid_argument("pauseDurationNs: rate must be > 0");
    return static_cast<uint64_t>(std::ceil(double(quanta) * kPauseQuantumBits / rateBps * 1e9));
}

PfcIngressBuffer::PfcIngressBuffer(const PfcConfig& config) : config_(config)
{
    if (config.ports < 1)
        throw std::invalid_argument("PfcIngressBuffer: ports must be >= 1");
    if (!config.headroomBytesByPort.empty() && config.headroomBytesByPort.size() != size_t(config.ports))
        throw std::invalid_argument("PfcIngressBuffer: headroomBytesByPort needs one entry per port");
    counters_.resize(size_t(config.ports) * kPfcPriorities);
    uint64_t reserved = 0;
    for (int p = 0; p < config.ports; p++)
        reserved += headroomCapacity(p);
    if (config.enabled && reserved >= config.bufferBytes)
        throw std::invalid_argument("PfcIngressBuffer: headroom reservation exceeds the buffer");
}

PfcIngressBuffer::Counter& PfcIngressBuffer::at(int port, int prio)
{
    if (port < 0 || port >= config_.ports || prio < 0 || prio >= kPfcPriorities)
        throw std::out_of_range("PfcIngressBuffer: port or priority out of range");
    return counters_[size_t(port) * kPfcPriorities + prio];
}

const PfcIngressBuffer::Counter& PfcIngressBuffer::at(int port, int prio) const
{
    return const_cast<PfcIngressBuffer*>(this)->at(port, prio);
}

uint64_t PfcIngressBuffer::headroomCapacity(int port) const
{
    return config_.headroomBytesByPort.empty() ? config_.headroomPerPortBytes : config_.headroomBytesByPort[port];
}

uint64_t PfcIngressBuffer::sharedPoolBytes() const
{
    // Headroom is reserved only when PFC runs.
    uint64_t reserved = 0;
    if (config_.enabled)
        for (int p = 0; p < config_.ports; p++)
            reserved += headroomCapacity(p);
    return config_.bufferBytes - reserved;
}

uint64_t PfcIngressBuffer::xoffThreshold() const
{
    if (!config_.dynamicThreshold)
        return config_.staticXoffBytes;
    uint64_t pool = sharedPoolBytes();
    uint64_t free = pool > sharedUsed_ ? pool - sharedUsed_ : 0;
    return free >> config_.dynamicShift;
}

uint64_t PfcIngressBuffer::portHeadroomBytes(int port) const
{
    uint64_t sum = 0;
    for (int q = 0; q < kPfcPriorities; q++)
        sum += at(port, q).headroom;
    return sum;
}

uint64_t PfcIngressBuffer::totalUsedBytes() const
{
    uint64_t sum = sharedUsed_;
    for (const Counter& c : counters_)
        sum += c.headroom;
    return sum;
}

PfcAction PfcIngressBuffer::onArrival(int port, int prio, uint64_t bytes)
{
    Counter& c = at(port, prio);
    PfcAction action;
    uint64_t threshold = xoffThreshold();
    bool fitsShared = sharedUsed_ + bytes <= sharedPoolBytes();
    bool underThreshold = c.shared + bytes <= threshold;
    if (isLossless(prio)) {
        if (underThreshold && fitsShared) {
            c.shared += bytes;
            sharedUsed_ += bytes;
        }
        else if (portHeadroomBytes(port) + bytes <= headroomCapacity(port)) {
            c.headroom += bytes;
            action.admission = Admission::Headroom;
        }
        else {
            action.admission = Admission::Dropped;
            drops_++;
        }
        // XOFF once the priority spills into headroom or reaches the threshold.
        if (!c.paused && (c.headroom > 0 || c.shared >= threshold)) {
            c.paused = true;
            action.sendPause = true;
        }
        return action;
    }
    // Lossy class (or PFC disabled): the threshold is a hard limit.
    if (underThreshold && fitsShared) {
        c.shared += bytes;
        sharedUsed_ += bytes;
    }
    else {
        action.admission = Admission::Dropped;
        drops_++;
    }
    return action;
}

PfcAction PfcIngressBuffer::onDeparture(int port, int prio, uint64_t bytes)
{
    Counter& c = at(port, prio);
    uint64_t fromHeadroom = std::min(c.headroom, bytes);
    c.headroom -= fromHeadroom;
    uint64_t fromShared = std::min(c.shared, bytes - fromHeadroom);
    c.shared -= fromShared;
    sharedUsed_ -= std::min(sharedUsed_, fromShared);
    PfcAction action;
    action.admission = fromHeadroom > 0 ? Admission::Headroom : Admission::Shared;
    uint64_t threshold = xoffThreshold();
    if (c.paused && c.headroom == 0 && (c.shared == 0 || c.shared + config_.xonOffsetBytes <= threshold)) {
        c.paused = false;
        action.sendResume = true;
    }
    return action;
}

void PfcPauseState::onPause(int prio, uint32_t quanta, uint64_t nowNs, double rateBps)
{
    if (prio < 0 || prio >= kPfcPriorities)
        throw std::out_of_range("PfcPauseState: priority out of range");
    pausedUntilNs_[prio] = quanta == 0 ? nowNs : nowNs + pauseDurationNs(quanta, rateBps);
}

}  // namespace malcolm
