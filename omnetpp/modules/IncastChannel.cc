#include "IncastChannel.h"

#include <algorithm>

#include "frames_m.h"

namespace malcolm {

Define_Channel(IncastChannel);

void IncastChannel::initialize()
{
    cDatarateChannel::initialize();
    fanInThreshold_ = par("fanInThreshold").intValue();
    window_ = par("window");
    collapseFactor_ = par("collapseFactor").doubleValue();
    extraLatencyPerSender_ = par("extraLatencyPerSender");
    lossProbability_ = par("collapseLossProbability").doubleValue();
    if (fanInThreshold_ < 1 || window_ <= SIMTIME_ZERO || collapseFactor_ < 0 || extraLatencyPerSender_ < SIMTIME_ZERO ||
        lossProbability_ < 0 || lossProbability_ > 1)
        throw cRuntimeError("IncastChannel: fanInThreshold >= 1, window > 0, collapseFactor >= 0, "
                            "extraLatencyPerSender >= 0 and 0 <= collapseLossProbability <= 1 required");
    concurrentSendersSignal_ = registerSignal("concurrentSenders");
    collapseLossSignal_ = registerSignal("collapseLoss");
}

cChannel::Result IncastChannel::processMessage(cMessage *msg, const SendOptions& options, simtime_t t)
{
    auto *frame = dynamic_cast<RoceFrame *>(msg);
    if (!frame)
        return cDatarateChannel::processMessage(msg, options, t);
    // Senders seen within the window count as concurrent.
    lastSeen_[frame->getSrcNode()] = t;
    for (auto it = lastSeen_.begin(); it != lastSeen_.end();)
        it = it->second + window_ < t ? lastSeen_.erase(it) : std::next(it);
    int senders = static_cast<int>(lastSeen_.size());
    emit(concurrentSendersSignal_, static_cast<long>(senders));
    int excess = senders - fanInThreshold_;
    if (excess <= 0)
        return cDatarateChannel::processMessage(msg, options, t);

    SendOptions stretched = options;
    if (collapseFactor_ > 0) {
        double stretch = 1.0 + collapseFactor_ * excess / fanInThreshold_;
        stretched.duration(frame->getBitLength() / getDatarate() * stretch);
    }
    Result result = cDatarateChannel::processMessage(msg, stretched, t);
    result.delay += extraLatencyPerSender_ * excess;
    if (lossProbability_ > 0 && uniform(0, 1) < std::min(1.0, lossProbability_ * excess)) {
        result.discard = true;
        emit(collapseLossSignal_, 1L);
    }
    return result;
}

}  // namespace malcolm
