#include "heartbeat.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>

namespace malcolm {

HeartbeatLengthError::HeartbeatLengthError(size_t got)
    : std::invalid_argument("heartbeat payload must be exactly 16 bytes, got " + std::to_string(got)), got(got)
{
}

int16_t saturateI16(int64_t v)
{
    return static_cast<int16_t>(std::clamp<int64_t>(v, std::numeric_limits<int16_t>::min(), std::numeric_limits<int16_t>::max()));
}

double rhoOfTasks(uint64_t tasksInSystem, uint32_t cores)
{
    return static_cast<double>(tasksInSystem) / static_cast<double>(cores > 0 ? cores : 1);
}

uint16_t loadFactorFromRho(double rho)
{
    if (std::isnan(rho) || rho <= 0.0)
        return 0;
    double milli = std::round(rho * 1000.0);  // half away from zero, like Rust's f64::round
    if (milli >= 65535.0)
        return 65535;
    return static_cast<uint16_t>(milli);
}

Heartbeat Heartbeat::fromValues(uint8_t nodeId, uint8_t flags, uint64_t loadFactorMilli, int64_t slackP10Us,
                                int64_t slackP50Us, uint64_t queueLen, uint32_t policyVersion)
{
    Heartbeat hb;
    hb.nodeId = nodeId;
    hb.flags = flags;
    hb.loadFactor = static_cast<uint16_t>(std::min<uint64_t>(loadFactorMilli, 65535));
    hb.slackP10Us = saturateI16(slackP10Us);
    hb.slackP50Us = saturateI16(slackP50Us);
    hb.queueLen = static_cast<uint32_t>(std::min<uint64_t>(queueLen, std::numeric_limits<uint32_t>::max()));
    hb.reserved = policyVersion;
    return hb;
}

Heartbeat Heartbeat::fromSth(uint8_t nodeId, const SlackHistogram& sth, double rho, bool busy, uint32_t policyVersion)
{
    uint8_t flags = 0;
    if (sth.panic())
        flags |= kHeartbeatFlagPanic;
    if (sth.totalTasks() == 0 && !busy)
        flags |= kHeartbeatFlagIdle;
    Heartbeat hb;
    hb.nodeId = nodeId;
    hb.flags = flags;
    hb.loadFactor = loadFactorFromRho(rho);
    hb.slackP10Us = saturateI16(sth.percentileUs(10));
    hb.slackP50Us = saturateI16(sth.percentileUs(50));
    hb.queueLen = sth.totalTasks();
    hb.reserved = policyVersion;
    return hb;
}

namespace {
void putLe(uint8_t* out, uint64_t v, int bytes)
{
    for (int i = 0; i < bytes; i++)
        out[i] = static_cast<uint8_t>(v >> (8 * i));
}
uint64_t getLe(const uint8_t* in, int bytes)
{
    uint64_t v = 0;
    for (int i = 0; i < bytes; i++)
        v |= uint64_t(in[i]) << (8 * i);
    return v;
}
}  // namespace

HeartbeatBytes Heartbeat::encode() const
{
    HeartbeatBytes b{};
    b[0] = nodeId;
    b[1] = flags;
    putLe(&b[2], loadFactor, 2);
    putLe(&b[4], static_cast<uint16_t>(slackP10Us), 2);
    putLe(&b[6], static_cast<uint16_t>(slackP50Us), 2);
    putLe(&b[8], queueLen, 4);
    putLe(&b[12], reserved, 4);
    return b;
}

Heartbeat Heartbeat::decode(const uint8_t* data, size_t len)
{
    if (len != kHeartbeatLen)
        throw HeartbeatLengthError(len);
    Heartbeat hb;
    hb.nodeId = data[0];
    hb.flags = data[1];
    hb.loadFactor = static_cast<uint16_t>(getLe(&data[2], 2));
    hb.slackP10Us = static_cast<int16_t>(static_cast<uint16_t>(getLe(&data[4], 2)));
    hb.slackP50Us = static_cast<int16_t>(static_cast<uint16_t>(getLe(&data[6], 2)));
    hb.queueLen = static_cast<uint32_t>(getLe(&data[8], 4));
    hb.reserved = static_cast<uint32_t>(getLe(&data[12], 4));
    return hb;
}

bool Heartbeat::operator==(const Heartbeat& o) const
{
    return nodeId == o.nodeId && flags == o.flags && loadFactor == o.loadFactor && slackP10Us == o.slackP10Us &&
           slackP50Us == o.slackP50Us && queueLen == o.queueLen && reserved == o.reserved;
}

}  // namespace malcolm
