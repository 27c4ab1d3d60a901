#include "RoCEv2Nic.h"

#include "SimTime.h"
#include "frames_m.h"

namespace malcolm {

Define_Module(RoCEv2Nic);

RoCEv2Nic::~RoCEv2Nic()
{
    cancelAndDelete(txDone_);
    cancelAndDelete(pauseExpired_);
    cancelAndDelete(pauseRefresh_);
    cancelAndDelete(rxDrain_);
    for (RoceFrame *f : rxQueue_)
        delete f;
    for (auto& kv : partial_)
        delete kv.second.sample;
}

void RoCEv2Nic::initialize(int stage)
{
    if (stage != 0)
        return;
    nodeId_ = par("nodeId").intValue();
    mtu_ = par("mtu").intValue();
    overhead_ = par("frameOverhead").intValue();
    pauseBytes_ = par("pauseFrameBytes").intValue();
    pfcEnabled_ = par("pfcEnabled").boolValue();
    int quanta = par("pauseQuanta").intValue();
    hostRate_ = par("hostRate").doubleValue();
    if (mtu_ < 64 || overhead_ < 0 || pauseBytes_ < 64 || quanta < 1 || quanta > kMaxPauseQuanta || hostRate_ < 0)
        throw cRuntimeError("RoCEv2Nic: need mtu >= 64B, frameOverhead >= 0, pauseFrameBytes >= 64B, "
                            "1 <= pauseQuanta <= 65535, hostRate >= 0");
    pauseQuanta_ = static_cast<uint16_t>(quanta);
    portOut_ = gate("port$o");

    PfcConfig pc;
    pc.enabled = pfcEnabled_;
    pc.ports = 1;
    pc.bufferBytes = par("rxBufferBytes").intValue();
    pc.staticXoffBytes = par("xoffBytes").intValue();
    pc.xonOffsetBytes = par("xonOffsetBytes").intValue();
    pc.headroomPerPortBytes = pfcHeadroomBytes(linkRate(), par("linkOneWayDelay").doubleValue());
    try {
        rx_ = std::make_unique<PfcIngressBuffer>(pc);
    }
    catch (const std::exception& e) {
        throw cRuntimeError("RoCEv2Nic: bad PFC configuration: %s", e.what());
    }

    control_.setName("control");
    for (int p = 0; p < kPfcPriorities; p++)
        queues_[p].setName(("prio" + std::to_string(p)).c_str());
    txDone_ = new cMessage("txDone", KIND_TX_DONE);
    pauseExpired_ = new cMessage("pauseExpired", KIND_PAUSE_EXPIRED);
    pauseRefresh_ = new cMessage("pauseRefresh", KIND_PAUSE_REFRESH);
    rxDrain_ = new cMessage("rxDrain", KIND_RX_DRAIN);

    pauseSentSignal_ = registerSignal("pauseSent");
    resumeSentSignal_ = registerSignal("resumeSent");
    pauseReceivedSignal_ = registerSignal("pauseReceived");
    txPausedSignal_ = registerSignal("txPaused");
    rxDroppedSignal_ = registerSignal("rxDropped");
    txBytesSignal_ = registerSignal("txBytes");
    rxBufferSignal_ = registerSignal("rxBufferBytes");
    writeLostSignal_ = registerSignal("writeLost");
    emit(txPausedSignal_, false);
    WATCH(queuedBytes_);
    WATCH(pauseFramesReceived_);
    WATCH(pauseFramesSent_);
}

double RoCEv2Nic::linkRate() const
{
    cChannel *ch = gate("port$o")->getTransmissionChannel();
    return ch->getNominalDatarate();
}

void RoCEv2Nic::handleMessage(cMessage *msg)
{
    if (msg->isSelfMessage()) {
        switch (msg->getKind()) {
            case KIND_TX_DONE:
            case KIND_PAUSE_EXPIRED:
                break;
            case KIND_PAUSE_REFRESH: {
                // Keep XOFF asserted: re-send before the previous PAUSE runs out.
                bool any = false;
                for (int p = 0; p < kPfcPriorities; p++)
                    if (rx_->pausedUpstream(0, p)) {
                        queuePause(p, pauseQuanta_);
                        any = true;
                    }
                if (any)
                    scheduleAfter(fromNs(pauseRefreshIntervalNs(pauseQuanta_, linkRate())), pauseRefresh_);
                break;
            }
            case KIND_RX_DRAIN: {
                RoceFrame *f = rxQueue_.front();
                rxQueue_.pop_front();
                PfcAction a = rx_->onDeparture(0, f->getPriority(), f->getByteLength());
                if (a.sendResume)
                    queuePause(f->getPriority(), 0);
                emit(rxBufferSignal_, static_cast<long>(rx_->totalUsedBytes()));
                deliverToHost(f);
                if (!rxQueue_.empty())
                    scheduleAfter(rxQueue_.front()->getBitLength() / hostRate_, rxDrain_);
                break;
            }
            default:
                throw cRuntimeError("unexpected self-message kind %d", msg->getKind());
        }
        tryTransmit();
        return;
    }
    if (msg->arrivedOn("appIn"))
        segmentWrite(check_and_cast<RoceFrame *>(msg));
    else
        receiveFromWire(check_and_cast<cPacket *>(msg));
    tryTransmit();
}

void RoCEv2Nic::segmentWrite(RoceFrame *write)
{
    uint64_t total = std::max<uint64_t>(1, write->getMessageBytes());
    uint64_t id = (static_cast<uint64_t>(nodeId_) << 40) | nextMessageId_++;
    int prio = write->getPriority();
    if (prio < 0 || prio >= kPfcPriorities)
        throw cRuntimeError("RDMA write with priority %d", prio);
    write->setWriteStart(simTime());
    for (uint64_t off = 0; off < total; off += mtu_) {
        uint64_t payload = std::min<uint64_t>(mtu_, total - off);
        RoceFrame *f = write->dup();
        f->setMessageId(id);
        f->setPayloadBytes(static_cast<uint32_t>(payload));
        f->setLastOfMessage(off + payload >= total);
        f->setByteLength(payload + overhead_);
        queues_[prio].insert(f);
        queuedBytes_ += f->getByteLength();
    }
    delete write;
}

void RoCEv2Nic::receiveFromWire(cPacket *pkt)
{
    if (auto *pause = dynamic_cast<PfcPauseFrame *>(pkt)) {
        pauseFramesReceived_++;
        emit(pauseReceivedSignal_, 1L);
        for (int p = 0; p < kPfcPriorities; p++)
            if (pause->getClassEnable() & (1u << p))
                txPause_.onPause(p, pause->getQuanta(p), nowNs(), linkRate());
        delete pkt;
        return;
    }
    auto *f = check_and_cast<RoceFrame *>(pkt);
    if (f->hasBitError())
        throw cRuntimeError("bit errors are not modelled");
    if (hostRate_ <= 0) {  // the host keeps up with the link: nothing accumulates
        deliverToHost(f);
        return;
    }
    PfcAction a = rx_->onArrival(0, f->getPriority(), f->getByteLength());
    if (a.admission == Admission::Dropped) {
        rxDrops_++;
        emit(rxDroppedSignal_, 1L);
        deliverToHost(f, true);
        return;
    }
    if (a.sendPause) {
        queuePause(f->getPriority(), pauseQuanta_);
        if (!pauseRefresh_->isScheduled())
            scheduleAfter(fromNs(pauseRefreshIntervalNs(pauseQuanta_, linkRate())), pauseRefresh_);
    }
    emit(rxBufferSignal_, static_cast<long>(rx_->totalUsedBytes()));
    rxQueue_.push_back(f);
    if (!rxDrain_->isScheduled())
        scheduleAfter(rxQueue_.front()->getBitLength() / hostRate_, rxDrain_);
}

void RoCEv2Nic::reportLostWritesBefore(int src, int prio, uint64_t messageId)
{
    auto it = partial_.lower_bound({src, prio, 0});
    while (it != partial_.end() && std::get<0>(it->first) == src && std::get<1>(it->first) == prio &&
           std::get<2>(it->first) < messageId) {
        RoceFrame *f = it->second.sample;
        f->setWriteIncomplete(true);
        emit(writeLostSignal_, 1L);
        send(f, "appOut");  // the app learns the write (e.g. a task) is gone
        it = partial_.erase(it);
    }
}

void RoCEv2Nic::deliverToHost(RoceFrame *f, bool lost)
{
    int src = f->getSrcNode(), prio = f->getPriority();
    uint64_t id = f->getMessageId();
    reportLostWritesBefore(src, prio, id);
    auto key = std::make_tuple(src, prio, id);
    uint64_t total = std::max<uint64_t>(1, f->getMessageBytes());
    auto it = partial_.find(key);
    if (it == partial_.end()) {
        if (f->getLastOfMessage() && !lost && f->getPayloadBytes() >= total) {
            send(f, "appOut");  // a single-segment write: the common case, no bookkeeping
            return;
        }
        it = partial_.emplace(key, Partial()).first;
        it->second.sample = f->dup();
    }
    Partial& p = it->second;
    if (lost)
        p.damaged = true;
    else
        p.bytes += f->getPayloadBytes();
    if (!f->getLastOfMessage()) {
        delete f;
        return;
    }
    bool complete = !p.damaged && p.bytes == total;
    delete p.sample;
    partial_.erase(it);
    if (!complete) {
        f->setWriteIncomplete(true);
        emit(writeLostSignal_, 1L);
    }
    send(f, "appOut");
}

void RoCEv2Nic::queuePause(int prio, uint16_t quanta)
{
    auto *p = new PfcPauseFrame(quanta ? "PAUSE" : "RESUME");
    p->setClassEnable(static_cast<uint8_t>(1u << prio));
    p->setQuanta(prio, quanta);
    p->setByteLength(pauseBytes_);
    control_.insert(p);
    if (quanta) {
        pauseFramesSent_++;
        emit(pauseSentSignal_, 1L);
    }
    else
        emit(resumeSentSignal_, 1L);
}

void RoCEv2Nic::tryTransmit()
{
    updatePausedSignal();
    if (txDone_->isScheduled() || portOut_->getTransmissionChannel()->isBusy())
        return;
    cPacket *next = nullptr;
    if (!control_.isEmpty())
        next = control_.pop();  // MAC control frames: strict priority, never paused
    else {
        uint64_t now = nowNs();
        uint64_t wake = kNever;
        for (int p = kPfcPriorities - 1; p >= 0 && !next; p--) {
            if (queues_[p].isEmpty())
                continue;
            if (txPause_.paused(p, now))
                wake = std::min(wake, txPause_.pausedUntilNs(p));
            else
                next = queues_[p].pop();
        }
        if (!next) {
            if (wake != kNever) {
                cancelEvent(pauseExpired_);
                scheduleAt(fromNs(wake), pauseExpired_);
            }
            return;
        }
        queuedBytes_ -= next->getByteLength();
    }
    txBytesTotal_ += next->getByteLength();
    emit(txBytesSignal_, static_cast<long>(next->getByteLength()));
    send(next, portOut_);
    scheduleAt(portOut_->getTransmissionChannel()->getTransmissionFinishTime(), txDone_);
}

void RoCEv2Nic::updatePausedSignal()
{
    uint64_t now = nowNs();
    bool paused = false;
    for (int p = 0; p < kPfcPriorities; p++)
        if (!queues_[p].isEmpty() && txPause_.paused(p, now))
            paused = true;
    if (paused != dataPaused_) {
        dataPaused_ = paused;
        emit(txPausedSignal_, paused);
    }
}

LinkSnapshot RoCEv2Nic::uplinkSnapshot()
{
    Enter_Method_Silent();
    LinkSnapshot s;
    s.nodeId = static_cast<uint32_t>(nodeId_);
    s.uplink = true;
    simtime_t dt = simTime() - lastSnapshot_;
    s.txRateBps = dt > SIMTIME_ZERO ? (txBytesTotal_ - txBytesAtSnapshot_) * 8.0 / dt.dbl() : 0.0;
    txBytesAtSnapshot_ = txBytesTotal_;
    lastSnapshot_ = simTime();
    s.queueBytes = queuedBytes_;
    s.pfcPaused = dataPaused_;
    s.pauseFrames = pauseFramesReceived_;
    s.drops = rxDrops_;
    return s;
}

void RoCEv2Nic::finish()
{
    recordScalar("queuedBytesAtEnd", queuedBytes_);
}

}  // namespace malcolm
