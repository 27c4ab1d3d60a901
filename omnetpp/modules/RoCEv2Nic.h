// RDMA NIC with 802.1Qbb PFC on both sides (see RoCEv2Nic.ned). PFC logic in omnetpp/core/pfc.h.
#pragma once

#include <deque>
#include <map>
#include <tuple>
#include <memory>

#include <omnetpp.h>

#include "message_builder.h"
#include "pfc.h"

namespace malcolm {

using namespace omnetpp;

class RoceFrame;

class RoCEv2Nic : public cSimpleModule
{
  public:
    ~RoCEv2Nic() override;
    // Uplink (NIC -> ToR) state for a Step; resets the rate window.
    LinkSnapshot uplinkSnapshot();

  protected:
    enum SelfMessageKind { KIND_TX_DONE = 1, KIND_PAUSE_EXPIRED, KIND_PAUSE_REFRESH, KIND_RX_DRAIN };

    int numInitStages() const override { return 1; }
    void initialize(int stage) override;
    void handleMessage(cMessage *msg) override;
    void finish() override;

  private:
    void segmentWrite(RoceFrame *write);
    void receiveFromWire(cPacket *pkt);
    // Reassembly: a segment reaches host memory (lost == false) or was dropped here (true).
    void deliverToHost(RoceFrame *frame, bool lost = false);
    void reportLostWritesBefore(int src, int prio, uint64_t messageId);
    void queuePause(int prio, uint16_t quanta);
    void tryTransmit();
    void updatePausedSignal();
    double linkRate() const;

    int nodeId_ = 0;
    int mtu_ = 1024, overhead_ = 78, pauseBytes_ = 84;
    bool pfcEnabled_ = true;
    uint16_t pauseQuanta_ = kMaxPauseQuanta;
    double hostRate_ = 0;
    uint64_t nextMessageId_ = 1;

    cPacketQueue control_;
    cPacketQueue queues_[kPfcPriorities];
    uint64_t queuedBytes_ = 0;
    PfcPauseState txPause_;
    std::unique_ptr<PfcIngressBuffer> rx_;
    std::deque<RoceFrame *> rxQueue_;
    // Writes in progress, by (source, priority, message id). Segments of one source and
    // priority arrive in order, so a write still open when a later one of the same source
    // and priority shows up has lost segments (its last one, at least) on the way.
    struct Partial
    {
        uint64_t bytes = 0;
        bool damaged = false;
        RoceFrame *sample = nullptr;  // a copy of one segment: the write's task/heartbeat fields
    };
    std::map<std::tuple<int, int, uint64_t>, Partial> partial_;

    cMessage *txDone_ = nullptr, *pauseExpired_ = nullptr, *pauseRefresh_ = nullptr, *rxDrain_ = nullptr;
    cGate *portOut_ = nullptr;
    bool dataPaused_ = false;

    uint64_t txBytesTotal_ = 0, txBytesAtSnapshot_ = 0, pauseFramesReceived_ = 0, pauseFramesSent_ = 0, rxDrops_ = 0;
    simtime_t lastSnapshot_;

    simsignal_t pauseSentSignal_, resumeSentSignal_, pauseReceivedSignal_, txPausedSignal_, rxDroppedSignal_,
        txBytesSignal_, rxBufferSignal_, writeLostSignal_;
};

}  // namespace malcolm
