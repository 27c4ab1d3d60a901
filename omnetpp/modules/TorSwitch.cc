#include "TorSwitch.h"

#include "SimTime.h"
#include "frames_m.h"

namespace malcolm {

Define_Module(TorSwitch);

TorSwitch::~TorSwitch()
{
    for (Port& p : ports_) {
        cancelAndDelete(p.txDone);
        cancelAndDelete(p.pauseExpired);
        cancelAndDelete(p.pauseRefresh);
    }
}

void TorSwitch::initialize(int stage)
{
    if (stage != 0)
        return;
    numPorts_ = par("numPorts").intValue();
    if (numPorts_ < 2 || numPorts_ > 256)
        throw cRuntimeError("TorSwitch: numPorts must be 2..256, got %d", numPorts_);
    pfcEnabled_ = par("pfcEnabled").boolValue();
    ecnEnabled_ = par("ecnEnabled").boolValue();
    int quanta = par("pauseQuanta").intValue();
    if (quanta < 1 || quanta > kMaxPauseQuanta)
        throw cRuntimeError("TorSwitch: pauseQuanta must be 1..65535");
    pauseQuanta_ = static_cast<uint16_t>(quanta);
    pauseBytes_ = par("pauseFrameBytes").intValue();
    forwardingDelay_ = par("forwardingDelay");
    if (forwardingDelay_ < SIMTIME_ZERO)
        throw cRuntimeError("TorSwitch: forwardingDelay must be >= 0");
    ecn_.kminBytes = par("ecnKmin").intValue();
    ecn_.kmaxBytes = par("ecnKmax").intValue();
    ecn_.pmax = par("ecnPmax").doubleValue();
    if (ecn_.kmaxBytes < ecn_.kminBytes || ecn_.pmax < 0 || ecn_.pmax > 1)
        throw cRuntimeError("TorSwitch: need ecnKmin <= ecnKmax and 0 <= ecnPmax <= 1");

    spine_ = par("spine").boolValue();
    firstNodeId_ = par("firstNodeId").intValue();
    downlinkPorts_ = par("downlinkPorts").intValue();
    rackSize_ = par("rackSize").intValue();
    uplinksPerRack_ = par("uplinksPerRack").intValue();
    if (downlinkPorts_ < 0 || downlinkPorts_ > numPorts_ || firstNodeId_ < 0 || rackSize_ < 1 || uplinksPerRack_ < 1)
        throw cRuntimeError("TorSwitch: need 0 <= downlinkPorts <= numPorts, firstNodeId >= 0, rackSize >= 1, uplinksPerRack >= 1");
    if (!spine_ && downlinkPorts_ < numPorts_ && downlinkPorts_ == 0)
        throw cRuntimeError("TorSwitch: a ToR needs downlink ports");

    ports_.resize(numPorts_);
    for (int i = 0; i < numPorts_; i++) {
        Port& p = ports_[i];
        p.out = gate("port$o", i);
        p.txDone = new cMessage("txDone", KIND_TX_DONE);
        p.pauseExpired = new cMessage("pauseExpired", KIND_PAUSE_EXPIRED);
        p.pauseRefresh = new cMessage("pauseRefresh", KIND_PAUSE_REFRESH);
        for (cMessage *m : {p.txDone, p.pauseExpired, p.pauseRefresh})
            m->setContextPointer(reinterpret_cast<void *>(static_cast<intptr_t>(i)));
        p.rate = p.out->getTransmissionChannel()->getNominalDatarate();
    }
    rate_ = ports_[0].rate;  // headroom sizing: the node-facing link rate

    PfcConfig pc;
    pc.enabled = pfcEnabled_;
    pc.ports = numPorts_;
    pc.bufferBytes = par("bufferBytes").intValue();
    pc.dynamicThreshold = par("dynamicThreshold").boolValue();
    pc.staticXoffBytes = par("xoffBytes").intValue();
    pc.xonOffsetBytes = par("xonOffsetBytes").intValue();
    double oneWay = par("linkOneWayDelay").doubleValue();
    pc.headroomPerPortBytes = pfcHeadroomBytes(rate_, oneWay);
    for (const Port& p : ports_)  // 3 x rate x delay of the link feeding each ingress port
        pc.headroomBytesByPort.push_back(pfcHeadroomBytes(p.rate, oneWay));
    try {
        buffer_ = std::make_unique<PfcIngressBuffer>(pc);
    }
    catch (const std::exception& e) {
        throw cRuntimeError("TorSwitch: bad buffer configuration: %s", e.what());
    }

    dropSignal_ = registerSignal("drop");
    pauseSentSignal_ = registerSignal("pauseSent");
    resumeSentSignal_ = registerSignal("resumeSent");
    pauseReceivedSignal_ = registerSignal("pauseReceived");
    ecnMarkedSignal_ = registerSignal("ecnMarked");
    bufferUsedSignal_ = registerSignal("bufferUsed");
    headroomUsedSignal_ = registerSignal("headroomUsed");
    pausedIngressPortsSignal_ = registerSignal("pausedIngressPorts");
    emit(pausedIngressPortsSignal_, 0L);
    WATCH(drops_);
    WATCH(pausedPairs_);
}

void TorSwitch::handleMessage(cMessage *msg)
{
    if (!msg->isSelfMessage()) {
        arriveFromPort(msg->getArrivalGate()->getIndex(), check_and_cast<cPacket *>(msg));
        return;
    }
    if (msg->getKind() == KIND_FORWARD) {
        forward(check_and_cast<cPacket *>(msg));
        return;
    }
    int port = static_cast<int>(reinterpret_cast<intptr_t>(msg->getContextPointer()));
    switch (msg->getKind()) {
        case KIND_TX_DONE:
        case KIND_PAUSE_EXPIRED:
            break;
        case KIND_PAUSE_REFRESH: {
            bool any = false;
            for (int q = 0; q < kPfcPriorities; q++)
                if (buffer_->pausedUpstream(port, q)) {
                    queuePause(port, q, pauseQuanta_);
                    any = true;
                }
            if (any)
                scheduleAfter(fromNs(pauseRefreshIntervalNs(pauseQuanta_, ports_[port].rate)), msg);
            break;
        }
        default:
            throw cRuntimeError("unexpected self-message kind %d", msg->getKind());
    }
    tryTransmit(port);
}

void TorSwitch::arriveFromPort(int port, cPacket *pkt)
{
    if (auto *pause = dynamic_cast<PfcPauseFrame *>(pkt)) {
        Port& p = ports_[port];
        p.pauseReceived++;
        emit(pauseReceivedSignal_, 1L);
        for (int q = 0; q < kPfcPriorities; q++)
            if (pause->getClassEnable() & (1u << q))
                p.txPause.onPause(q, pause->getQuanta(q), nowNs(), p.rate);
        delete pkt;
        tryTransmit(port);
        return;
    }
    auto *f = check_and_cast<RoceFrame *>(pkt);
    f->setIngressPort(port);
    PfcAction a = buffer_->onArrival(port, f->getPriority(), f->getByteLength());
    if (a.admission == Admission::Dropped) {
        drops_++;
        ports_[port].drops++;
        emit(dropSignal_, 1L);
        delete f;
        return;
    }
    if (a.sendPause) {
        queuePause(port, f->getPriority(), pauseQuanta_);
        Port& p = ports_[port];
        if (!p.pauseRefresh->isScheduled())
            scheduleAfter(fromNs(pauseRefreshIntervalNs(pauseQuanta_, p.rate)), p.pauseRefresh);
        tryTransmit(port);
    }
    emitBufferState();
    f->setKind(KIND_FORWARD);
    scheduleAfter(forwardingDelay_, f);
}

void TorSwitch::forward(cPacket *pkt)
{
    auto *f = check_and_cast<RoceFrame *>(pkt);
    f->setKind(0);
    int egress = route(f->getDstNode());
    Port& p = ports_[egress];
    if (ecnEnabled_ && f->getEcnCapable() && ecnShouldMark(ecn_, p.queuedBytes, uniform(0, 1))) {
        f->setEcnMarked(true);
        p.ecnMarks++;
        emit(ecnMarkedSignal_, 1L);
    }
    p.queues[f->getPriority()].insert(f);
    p.queuedBytes += f->getByteLength();
    tryTransmit(egress);
}

int TorSwitch::route(int dst) const
{
    int port = -1;
    if (spine_) {
        port = (dst / rackSize_) * uplinksPerRack_ + dst % uplinksPerRack_;
    }
    else if (dst >= firstNodeId_ && dst < firstNodeId_ + downlinkPorts_) {
        port = dst - firstNodeId_;
    }
    else if (numPorts_ > downlinkPorts_) {
        port = downlinkPorts_ + dst % (numPorts_ - downlinkPorts_);
    }
    if (port < 0 || port >= numPorts_)
        throw cRuntimeError("no route to node %d", dst);
    return port;
}

int TorSwitch::nodeOnPort(int port) const
{
    return !spine_ && port >= 0 && port < downlinkPorts_ ? firstNodeId_ + port : -1;
}

void TorSwitch::queuePause(int port, int prio, uint16_t quanta)
{
    auto *pf = new PfcPauseFrame(quanta ? "PAUSE" : "RESUME");
    pf->setClassEnable(static_cast<uint8_t>(1u << prio));
    pf->setQuanta(prio, quanta);
    pf->setByteLength(pauseBytes_);
    ports_[port].control.insert(pf);
    if (quanta) {
        ports_[port].pauseSent++;
        pauseSent_++;
        emit(pauseSentSignal_, 1L);
    }
    else
        emit(resumeSentSignal_, 1L);
    long paused = 0;
    for (int i = 0; i < numPorts_; i++)
        for (int q = 0; q < kPfcPriorities; q++)
            paused += buffer_->pausedUpstream(i, q);
    if (paused != pausedPairs_) {
        pausedPairs_ = paused;
        emit(pausedIngressPortsSignal_, paused);
    }
}

void TorSwitch::tryTransmit(int port)
{
    Port& p = ports_[port];
    if (p.txDone->isScheduled() || p.out->getTransmissionChannel()->isBusy())
        return;
    cPacket *next = nullptr;
    if (!p.control.isEmpty())
        next = p.control.pop();
    else {
        uint64_t now = nowNs(), wake = kNever;
        for (int q = kPfcPriorities - 1; q >= 0 && !next; q--) {
            if (p.queues[q].isEmpty())
                continue;
            if (p.txPause.paused(q, now))
                wake = std::min(wake, p.txPause.pausedUntilNs(q));
            else
                next = p.queues[q].pop();
        }
        if (!next) {
            if (wake != kNever) {
                cancelEvent(p.pauseExpired);
                scheduleAt(fromNs(wake), p.pauseExpired);
            }
            return;
        }
        auto *f = check_and_cast<RoceFrame *>(next);
        p.queuedBytes -= f->getByteLength();
        // Leaving the switch frees the bytes charged to the ingress port; maybe XON upstream.
        int ingress = f->getIngressPort();
        PfcAction a = buffer_->onDeparture(ingress, f->getPriority(), f->getByteLength());
        if (a.sendResume) {
            queuePause(ingress, f->getPriority(), 0);
            if (ingress != port)
                tryTransmit(ingress);
        }
        emitBufferState();
    }
    p.txBytes += next->getByteLength();
    send(next, p.out);
    scheduleAt(p.out->getTransmissionChannel()->getTransmissionFinishTime(), p.txDone);
}

void TorSwitch::emitBufferState()
{
    emit(bufferUsedSignal_, static_cast<long>(buffer_->totalUsedBytes()));
    emit(headroomUsedSignal_, static_cast<long>(buffer_->totalUsedBytes() - buffer_->sharedUsedBytes()));
}

LinkSnapshot TorSwitch::downlinkSnapshot(int port)
{
    Enter_Method_Silent();
    Port& p = ports_.at(port);
    LinkSnapshot s;
    s.nodeId = static_cast<uint32_t>(port);
    s.uplink = false;
    simtime_t dt = simTime() - p.lastSnapshot;
    s.txRateBps = dt > SIMTIME_ZERO ? (p.txBytes - p.txBytesAtSnapshot) * 8.0 / dt.dbl() : 0.0;
    p.txBytesAtSnapshot = p.txBytes;
    p.lastSnapshot = simTime();
    s.queueBytes = p.queuedBytes;
    uint64_t now = nowNs();
    for (int q = 0; q < kPfcPriorities; q++)
        s.pfcPaused = s.pfcPaused || p.txPause.paused(q, now);
    s.ecnMarks = p.ecnMarks;
    s.pauseFrames = p.pauseReceived;
    s.drops = p.drops;
    return s;
}

void TorSwitch::finish()
{
    recordScalar("framesDropped", drops_);
    recordScalar("pauseFramesSentTotal", pauseSent_);
    int portsThatPaused = 0;
    for (const Port& p : ports_)
        portsThatPaused += p.pauseSent > 0;
    recordScalar("portsThatSentPause", portsThatPaused);  // pause spreading: upstream ports reached
}

}  // namespace malcolm
