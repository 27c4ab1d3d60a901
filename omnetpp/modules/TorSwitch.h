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
    // Downlink (ToR -> node `port`) state for a Step; resets that port's rate window.
    LinkSnapshot downlinkSnapshot(int port);

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
        uint64_t txBytes = 0, txBytesAtSnapshot = 0, ecnMarks = 0, pauseReceived = 0, pauseSent = 0, drops = 0;
        simtime_t lastSnapshot;
    };

    void arriveFromPort(int port, cPacket *pkt);
    void forward(cPacket *frame);
    void queuePause(int port, int prio, uint16_t quanta);
    void tryTransmit(int port);
    void emitBufferState();

    int numPorts_ = 0;
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
