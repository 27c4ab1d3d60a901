// The 16-byte heartbeat payload (design.md section 4), packed little-endian, saturating:
// node_id u8 | flags u8 | load_factor u16 | slack_p10 i16 | slack_p50 i16 | queue_len u32 |
// reserved u32 (policy version). Mirrors proto/src/heartbeat.rs.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <stdexcept>

#include "sth.h"

namespace malcolm {

constexpr size_t kHeartbeatLen = 16;
constexpr uint8_t kHeartbeatFlagPanic = 0x01;
constexpr uint8_t kHeartbeatFlagIdle = 0x02;

using HeartbeatBytes = std::array<uint8_t, kHeartbeatLen>;

class HeartbeatLengthError : public std::invalid_argument
{
  public:
    explicit HeartbeatLengthError(size_t got);
    size_t got;
};

int16_t saturateI16(int64_t v);
// The heartbeat's load rho (design.md section 4, one definition in both environments): the node's
// tasks in system (ingress ring + ready queue + running) divided by its cores, at the
// heartbeat's send time; 1.0 = one task per core. Mirrors rho_of_tasks in
// proto/src/heartbeat.rs (golden vectors: proto/testdata/heartbeat_load.csv).
double rhoOfTasks(uint64_t tasksInSystem, uint32_t cores);
// rho -> rho x 1000 in a u16, rounded half away from zero; negative and NaN become 0.
uint16_t loadFactorFromRho(double rho);

struct Heartbeat
{
    uint8_t nodeId = 0;
    uint8_t flags = 0;
    uint16_t loadFactor = 0;  // rho x 1000, rho = rhoOfTasks(tasks in system, cores)
    int16_t slackP10Us = 0;
    int16_t slackP50Us = 0;
    uint32_t queueLen = 0;
    uint32_t reserved = 0;  // policy version

    // Builds from wide values, saturating each into its wire field.
    static Heartbeat fromValues(uint8_t nodeId, uint8_t flags, uint64_t loadFactorMilli,
                                int64_t slackP10Us, int64_t slackP50Us, uint64_t queueLen,
                                uint32_t policyVersion);
    // The heartbeat a node sends given its STH; `busy`: a core runs a task (IDLE needs both
    // an empty histogram and no running task).
    static Heartbeat fromSth(uint8_t nodeId, const SlackHistogram& sth, double rho, bool busy,
                             uint32_t policyVersion);

    HeartbeatBytes encode() const;
    // Throws HeartbeatLengthError unless exactly 16 bytes.
    static Heartbeat decode(const uint8_t* data, size_t len);

    bool panic() const { return flags & kHeartbeatFlagPanic; }
    bool idle() const { return flags & kHeartbeatFlagIdle; }
    double rho() const { return loadFactor / 1000.0; }
    bool operator==(const Heartbeat& o) const;
};

}  // namespace malcolm
