// Top-of-rack switch with shared buffer, PFC and ECN (see TorSwitch.ned). The buffer
// accounting is omnetpp/core/pfc.h, the marking decision omnetpp/core/ecn.h.
#pragma once

#include <memory>
#include <vector>

#include <omnetpp.h>

#include "ecn.h"
#include "message_builder.h"
#include "pfc.h"

namespace malcolm {

using namespace omnetpp;

class TorSwitch : public cSimpleModule
{
  public:
    ~TorSwitch() override;
    // Downlink (ToR -> node) state of `port` for a Step; resets that port's rate window.
    LinkSnapshot downlinkSnapshot(int port);
    // Node reached through downlink `port`, or -1 (uplink ports, spine switches).
    int nodeOnPort(int port) const;

  protected:
    enum SelfMessageKind { KIND_TX_DONE = 1, KIND_PAUSE_EXPIRED, KIND_PAUSE_REFRESH, KIND_FORWARD };

    int numInitStages() const override { return 1; }
    void initialize(int stage) override;
    void handleMessage(cMessage *msg) override;
    void finish() override;

  private:
    struct Port
    {
        cPacketQueue control;
        cPacketQueue queues[kPfcPriorities];
        uint64_t queuedBytes = 0;
        PfcPauseState txPause;
        cMessage *txDone = nullptr, *pauseExpired = nullptr, *pauseRefresh = nullptr;
        cGate *out = nullptr;
        double rate = 0;  // bit/s of the outgoing link
        uint64_t txBytes = 0, txBytesAtSnapshot = 0, ecnMarks = 0, pauseReceived = 0, pauseSent = 0, drops = 0;
        simtime_t lastSnapshot;
    };

    int route(int dstNode) const;
    void arriveFromPort(int port, cPacket *pkt);
    void forward(cPacket *frame);
    void queuePause(int port, int prio, uint16_t quanta);
    void tryTransmit(int port);
    void emitBufferState();

    int numPorts_ = 0;
    // Routing: a ToR reaches nodes firstNodeId_ + p on downlink ports p < downlinkPorts_ and
    // everything else through its uplinks (by destination); a spine reaches rack r through
    // ports r * uplinksPerRack_ ... (rackSize_ nodes per rack).
    bool spine_ = false;
    int firstNodeId_ = 0, downlinkPorts_ = 0, rackSize_ = 0, uplinksPerRack_ = 1;
    bool pfcEnabled_ = true, ecnEnabled_ = true;
    uint16_t pauseQuanta_ = kMaxPauseQuanta;
    int pauseBytes_ = 84;
    simtime_t forwardingDelay_;
    double rate_ = 100e9;
    EcnConfig ecn_;
    std::unique_ptr<PfcIngressBuffer> buffer_;
    std::vector<Port> ports_;
    long pausedPairs_ = 0;
    uint64_t drops_ = 0, pauseSent_ = 0;

    simsignal_t dropSignal_, pauseSentSignal_, resumeSentSignal_, pauseReceivedSignal_, ecnMarkedSignal_,
        bufferUsedSignal_, headroomUsedSignal_, pausedIngressPortsSignal_;
};

}  // namespace malcolm
