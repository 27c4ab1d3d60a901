// IEEE 802.1Qbb priority flow control, framework-free (design.md section 8).
//
// PfcIngressBuffer: a switch's (or NIC's) shared buffer with per ingress-port/priority
// accounting. A frame is charged to the shared pool while its (port, priority) stays under
// the XOFF threshold (static, 50 KB by default, or dynamic: free shared buffer >> 3), beyond
// that to the port's headroom (3 x rate x one-way delay) which absorbs what is in flight while
// the PAUSE travels upstream; only a headroom overflow drops. XOFF is asserted as soon as the
// (port, priority) has headroom bytes or reaches the threshold; XON once the headroom is empty
// and the shared use is `xonOffsetBytes` (3 KB) under the threshold. With PFC disabled the
// same thresholds are a lossy limit: beyond them frames are dropped, no pause, no headroom.
//
// PfcPauseState: the transmitter side, per priority paused-until times from PAUSE quanta
// (1 quantum = 512 bit times at the link rate; quanta 0 is RESUME).
#pragma once

#include <array>
#include <cstdint>
#include <vector>

namespace malcolm {

constexpr int kPfcPriorities = 8;
constexpr uint32_t kPauseQuantumBits = 512;
constexpr uint16_t kMaxPauseQuanta = 0xFFFF;

// Headroom per port: 3 x rate x one-way delay (37.5 KB at 100 Gbps / 1 us).
uint64_t pfcHeadroomBytes(double rateBps, double oneWayDelayS);
// Time a PAUSE of `quanta` holds a transmitter of `rateBps`, ns (rounded up).
uint64_t pauseDurationNs(uint32_t quanta, double rateBps);

struct PfcConfig
{
    bool enabled = true;
    int ports = 1;
    uint64_t bufferBytes = 12u << 20;       // total buffer (shared + headroom)
    uint64_t headroomPerPortBytes = 37500;  // reserved per port, shared by its priorities
    // Per-port headroom when the ports differ in rate (e.g. a 400 Gbps uplink needs 4x);
    // empty: every port gets headroomPerPortBytes.
    std::vector<uint64_t> headroomBytesByPort;
    bool dynamicThreshold = false;
    uint64_t staticXoffBytes = 50000;
    int dynamicShift = 3;                   // alpha = 1/8
    uint64_t xonOffsetBytes = 3000;
    std::array<bool, kPfcPriorities> lossless{false, false, false, true, false, false, true, false};
};

enum class Admission { Shared, Headroom, Dropped };

// What the caller must do after an arrival or a departure.
struct PfcAction
{
    Admission admission = Admission::Shared;
    bool sendPause = false;   // assert XOFF upstream on (port, priority)
    bool sendResume = false;  // XON
};

class PfcIngressBuffer
{
  public:
    explicit PfcIngressBuffer(const PfcConfig& config);

    PfcAction onArrival(int port, int prio, uint64_t bytes);
    // A frame charged to (port, prio) left the buffer; headroom bytes are released first.
    PfcAction onDeparture(int port, int prio, uint64_t bytes);

    // Current XOFF threshold for shared use of one (port, priority).
    uint64_t xoffThreshold() const;
    bool pausedUpstream(int port, int prio) const { return at(port, prio).paused; }
    uint64_t sharedBytes(int port, int prio) const { return at(port, prio).shared; }
    uint64_t headroomBytes(int port, int prio) const { return at(port, prio).headroom; }
    uint64_t portHeadroomBytes(int port) const;
    uint64_t sharedUsedBytes() const { return sharedUsed_; }
    uint64_t totalUsedBytes() const;
    uint64_t drops() const { return drops_; }
    const PfcConfig& config() const { return config_; }

  private:
    struct Counter
    {
        uint64_t shared = 0;
        uint64_t headroom = 0;
        bool paused = false;
    };
    Counter& at(int port, int prio);
    const Counter& at(int port, int prio) const;
    bool isLossless(int prio) const { return config_.enabled && config_.lossless[prio]; }
    uint64_t sharedPoolBytes() const;
    uint64_t headroomCapacity(int port) const;

    PfcConfig config_;
    std::vector<Counter> counters_;
    uint64_t sharedUsed_ = 0;
    uint64_t drops_ = 0;
};

class PfcPauseState
{
  public:
    // Applies a received PAUSE: quanta 0 resumes, otherwise holds until now + duration.
    void onPause(int prio, uint32_t quanta, uint64_t nowNs, double rateBps);
    bool paused(int prio, uint64_t nowNs) const { return nowNs < pausedUntilNs_[prio]; }
    uint64_t pausedUntilNs(int prio) const { return pausedUntilNs_[prio]; }

  private:
    std::array<uint64_t, kPfcPriorities> pausedUntilNs_{};
};

// XOFF side: while a (port, priority) stays paused the PAUSE must be refreshed before the
// previous one expires; refresh at half the pause duration.
inline uint64_t pauseRefreshIntervalNs(uint32_t quanta, double rateBps) { return pauseDurationNs(quanta, rateBps) / 2; }

}  // namespace malcolm
