// Conversions between OMNeT++ simulation time and the core's integer nanoseconds.
#pragma once

#include <cstdint>

#include <omnetpp.h>

namespace malcolm {

inline uint64_t toNs(omnetpp::simtime_t t) { return static_cast<uint64_t>(t.inUnit(omnetpp::SIMTIME_NS)); }
inline omnetpp::simtime_t fromNs(uint64_t ns) { return omnetpp::SimTime(static_cast<int64_t>(ns), omnetpp::SIMTIME_NS); }
inline uint64_t nowNs() { return toNs(omnetpp::simTime()); }

}  // namespace malcolm
