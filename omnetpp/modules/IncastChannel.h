// A DatarateChannel reproducing many-to-one throughput collapse (see IncastChannel.ned).
#pragma once

#include <unordered_map>

#include <omnetpp.h>

namespace malcolm {

using namespace omnetpp;

class IncastChannel : public cDatarateChannel
{
  public:
    explicit IncastChannel(const char *name = nullptr) : cDatarateChannel(name) {}
    Result processMessage(cMessage *msg, const SendOptions& options, simtime_t t) override;

  protected:
    void initialize() override;

  private:
    int fanInThreshold_ = 8;
    simtime_t window_;
    double collapseFactor_ = 0;
    simtime_t extraLatencyPerSender_;
    double lossProbability_ = 0;
    std::unordered_map<int, simtime_t> lastSeen_;  // sender node -> last frame time
    simsignal_t concurrentSendersSignal_, collapseLossSignal_;
};

}  // namespace malcolm
