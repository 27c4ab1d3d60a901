#include "MalcolmApp.h"

#include <algorithm>
#include <fstream>

#include "BridgeCoordinator.h"
#include "EdfScheduler.h"
#include "SimTime.h"
#include "frames_m.h"

namespace malcolm {

Define_Module(MalcolmApp);

MalcolmApp::~MalcolmApp()
{
    cancelAndDelete(arrivalTimer_);
    cancelAndDelete(heartbeatTimer_);
    cancelAndDelete(microburstTimer_);
    cancelAndDelete(bulkTimer_);
    cancelAndDelete(goldenTimer_);
}

void MalcolmApp::initialize(int stage)
{
    if (stage == 0) {
        nodeId_ = par("nodeId").intValue();
        numNodes_ = par("numNodes").intValue();
        if (numNodes_ < 2 || numNodes_ > 256 || nodeId_ < 0 || nodeId_ >= numNodes_)
            throw cRuntimeError("need 2 <= numNodes <= 256 and 0 <= nodeId < numNodes");
        tasks_.initialize(*this, nodeId_, numNodes_);
        dataPriority_ = par("dataPriority").intValue();
        hbPriority_ = par("heartbeatPriority").intValue();
        if (dataPriority_ < 0 || dataPriority_ > 7 || hbPriority_ < 0 || hbPriority_ > 7)
            throw cRuntimeError("priorities must be 0..7");
        heartbeatInterval_ = par("heartbeatInterval");
        if (heartbeatInterval_ <= SIMTIME_ZERO)
            throw cRuntimeError("heartbeatInterval must be > 0");
        gst_ = GlobalStateTable(static_cast<uint32_t>(numNodes_), static_cast<uint32_t>(nodeId_));

        arrivalTimer_ = new cMessage("arrival", KIND_ARRIVAL);
        heartbeatTimer_ = new cMessage("heartbeat", KIND_HEARTBEAT);
        microburstTimer_ = new cMessage("microburst", KIND_MICROBURST);
        bulkTimer_ = new cMessage("bulk", KIND_BULK);
        goldenTimer_ = new cMessage("golden", KIND_GOLDEN);
        taskGeneratedSignal_ = registerSignal("taskGenerated");
        heartbeatSentSignal_ = registerSignal("heartbeatSent");
        heartbeatAgeSignal_ = registerSignal("heartbeatAge");
        writeLatencySignal_ = registerSignal("writeLatency");
        bulkReceivedSignal_ = registerSignal("bulkReceived");
        WATCH(nextTaskSeq_);
        return;
    }
    // stage 1: the coordinator knows the rack capacity now.
    coordinator_ = check_and_cast<BridgeCoordinator *>(getModuleByPath(par("coordinatorPath").stringValue()));
    scheduler_ = check_and_cast<EdfScheduler *>(getModuleByPath(par("schedulerPath").stringValue()));

    simtime_t start = par("startTime");
    simtime_t firstArrival = tasks_.start(start, coordinator_->rackCapacity());
    if (firstArrival >= SIMTIME_ZERO)
        scheduleAt(firstArrival, arrivalTimer_);
    simtime_t firstBurst = tasks_.firstMicroburst(start);
    if (firstBurst >= SIMTIME_ZERO)
        scheduleAt(firstBurst, microburstTimer_);
    // Heartbeats start at a random phase so that nodes do not beat in lockstep.
    scheduleAt(uniform(SIMTIME_ZERO, heartbeatInterval_), heartbeatTimer_);

    bulk_.target = par("bulkTarget").intValue();
    bulk_.count = par("bulkCount").intValue();
    bulkInterval_ = par("bulkInterval");
    bulk_.bytes = par("bulkBytes").intValue();
    bulk_.fanIn = par("bulkFanIn").intValue();
    try {
        bulk_.validate(numNodes_, bulkInterval_ > SIMTIME_ZERO);
    }
    catch (const std::exception& e) {
        throw cRuntimeError("%s", e.what());
    }
    if (bulk_.isSender(nodeId_) && bulk_.count != 0)
        scheduleAt(par("bulkStart"), bulkTimer_);

    readGoldenHeartbeats(start);
}

void MalcolmApp::readGoldenHeartbeats(simtime_t start)
{
    std::string path = par("goldenHeartbeatFile").stdstringValue();
    if (path.empty())
        return;
    golden_ = true;
    std::ifstream in(path);
    if (!in)
        throw cRuntimeError("cannot open goldenHeartbeatFile '%s'", path.c_str());
    if (nodeId_ != 0 && nodeId_ != 1)
        return;
    // Node 0 sends the rows, node 1 keeps the expected bytes.
    try {
        goldenRows_ = malcolm::readGoldenHeartbeats(in);
    }
    catch (const std::exception& e) {
        throw cRuntimeError("%s: %s", path.c_str(), e.what());
    }
    if (nodeId_ == 0)
        scheduleAt(start, goldenTimer_);
}

void MalcolmApp::handleMessage(cMessage *msg)
{
    if (!msg->isSelfMessage()) {
        receiveWrite(check_and_cast<RoceFrame *>(msg));
        return;
    }
    switch (msg->getKind()) {
        case KIND_ARRIVAL: {
            originate(tasks_.arrival(nowNs()));
            simtime_t next = tasks_.nextArrival(simTime());
            if (next >= SIMTIME_ZERO)
                scheduleAt(next, arrivalTimer_);
            break;
        }
        case KIND_MICROBURST: {
            uint64_t deadlineNs = tasks_.microburstDeadlineNs(nowNs());
            for (int i = 0; i < tasks_.microburstSize(); i++)
                originate(tasks_.microburstTask(deadlineNs));
            simtime_t next = tasks_.nextMicroburst(simTime());
            if (next >= SIMTIME_ZERO)
                scheduleAt(next, microburstTimer_);
            break;
        }
        case KIND_HEARTBEAT:
            sendHeartbeats();
            scheduleAfter(heartbeatInterval_, heartbeatTimer_);
            break;
        case KIND_BULK:
            sendBulk();
            if (bulk_.continuesAfter(bulkSent_))
                scheduleAfter(bulkInterval_, bulkTimer_);
            break;
        case KIND_GOLDEN:
            sendGoldenVectors();
            break;
        case KIND_HELD_DISPATCH: {
            auto *tm = check_and_cast<TaskMessage *>(msg);
            Task t = tm->getTask();
            uint32_t target = static_cast<uint32_t>(tm->getTarget());
            delete msg;
            dispatch(t, target, 0);
            break;
        }
        default:
            throw cRuntimeError("unexpected self-message kind %d", msg->getKind());
    }
}

void MalcolmApp::originate(const NewTask& spec)
{
    Task t;
    t.id = (static_cast<uint64_t>(nodeId_) << 40) | nextTaskSeq_++;
    t.origin = static_cast<uint32_t>(nodeId_);
    t.sizeBytes = spec.sizeBytes;
    t.arrivalNs = nowNs();
    t.deadlineNs = spec.deadlineNs;
    t.serviceRefNs = spec.serviceNs;
    t.estimateNs = spec.estimateNs;
    t.taskClass = spec.taskClass;
    emit(taskGeneratedSignal_, 1L);
    // The decision reads this node's GST: record how stale it is on average.
    if (auto age = gst_.meanPeerAge(simTime().raw()))
        emit(heartbeatAgeSignal_, SimTime::fromRaw(*age));
    coordinator_->submit(this, t);
}

Heartbeat MalcolmApp::currentHeartbeat() const
{
    return heartbeatFrom(scheduler_->sth());
}

Heartbeat MalcolmApp::heartbeatFrom(const SlackHistogram& sth) const
{
    // rho: tasks in system (queued + running) per core, now (design.md section 4).
    double rho = rhoOfTasks(scheduler_->tasksInSystem(), static_cast<uint32_t>(scheduler_->config().cores));
    return Heartbeat::fromSth(static_cast<uint8_t>(nodeId_), sth, rho, scheduler_->busyCores() > 0,
                              static_cast<uint32_t>(coordinator_->policyVersion()));
}

RoceFrame *MalcolmApp::heartbeatFrame(const char *name, int dst, const HeartbeatBytes& bytes) const
{
    auto *f = new RoceFrame(name);
    f->setSrcNode(nodeId_);
    f->setDstNode(dst);
    f->setPriority(hbPriority_);
    f->setFrameType(FRAME_HEARTBEAT);
    f->setMessageBytes(kHeartbeatLen);
    for (size_t i = 0; i < kHeartbeatLen; i++)
        f->setHeartbeat(i, bytes[i]);
    return f;
}

void MalcolmApp::sendHeartbeats()
{
    HeartbeatBytes bytes = currentHeartbeat().encode();
    gst_.record(static_cast<uint32_t>(nodeId_), bytes, simTime().raw());
    for (int peer = 0; peer < numNodes_; peer++)
        if (peer != nodeId_)
            send(heartbeatFrame("heartbeat", peer, bytes), "nicOut");
    emit(heartbeatSentSignal_, 1L);
}

void MalcolmApp::sendBulk()
{
    auto *f = new RoceFrame("bulk");
    f->setSrcNode(nodeId_);
    f->setDstNode(bulk_.target);
    f->setPriority(dataPriority_);
    f->setFrameType(FRAME_BULK);
    f->setMessageBytes(static_cast<uint32_t>(bulk_.bytes));
    send(f, "nicOut");
    bulkSent_++;
}

void MalcolmApp::sendGoldenVectors()
{
    // Node 0 writes every golden row, encoded by the core codec, to node 1.
    for (size_t index = 0; index < goldenRows_.size(); index++) {
        RoceFrame *f = heartbeatFrame("goldenHeartbeat", 1, goldenRows_[index].heartbeat.encode());
        f->setGoldenIndex(static_cast<int>(index));
        send(f, "nicOut");
    }
}

void MalcolmApp::receiveWrite(RoceFrame *f)
{
    if (!f->getWriteIncomplete())
        emit(writeLatencySignal_, simTime() - f->getWriteStart());
    switch (f->getFrameType()) {
        case FRAME_HEARTBEAT:
            if (!f->getWriteIncomplete())  // a lost heartbeat leaves the GST entry stale
                receiveHeartbeat(f);
            break;
        case FRAME_TASK: {
            Task t = f->getTask();
            t.sizeBytes = f->getMessageBytes();  // the size of the write that arrived
            if (f->getWriteIncomplete()) {
                // The request never fully arrived: the task is lost in the network.
                TaskOutcomeRecord r;
                r.task = t;
                r.nodeId = static_cast<uint32_t>(nodeId_);
                r.kind = OutcomeKind::Dropped;
                r.finishNs = nowNs();
                coordinator_->reportOutcome(r);
            }
            else
                sendToScheduler(t);
            break;
        }
        case FRAME_BULK:
            if (!f->getWriteIncomplete())
                emit(bulkReceivedSignal_, static_cast<long>(f->getMessageBytes()));
            break;
    }
    delete f;
}

void MalcolmApp::receiveHeartbeat(RoceFrame *f)
{
    HeartbeatBytes bytes;
    for (size_t i = 0; i < kHeartbeatLen; i++)
        bytes[i] = f->getHeartbeat(i);
    if (f->getGoldenIndex() >= 0) {
        size_t idx = static_cast<size_t>(f->getGoldenIndex());
        std::string got = hexOf(bytes.data(), kHeartbeatLen);
        if (idx < goldenRows_.size() && got == goldenRows_[idx].hex)
            goldenMatched_++;
        else {
            goldenMismatched_++;
            EV_ERROR << "golden heartbeat " << idx << " arrived as " << got << "\n";
        }
        return;
    }
    int src = f->getSrcNode();
    try {
        Heartbeat::decode(bytes.data(), kHeartbeatLen);  // validates the length; the GST keeps raw bytes
    }
    catch (const std::exception& e) {
        throw cRuntimeError("heartbeat from node %d: %s", src, e.what());
    }
    gst_.record(static_cast<uint32_t>(src), bytes, simTime().raw());
}

void MalcolmApp::dispatch(const Task& task, uint32_t target, uint64_t holdNs)
{
    Enter_Method_Silent();
    if (target >= static_cast<uint32_t>(numNodes_))
        throw cRuntimeError("placement of task %llu on node %u: no such node", (unsigned long long)task.id, target);
    if (holdNs > 0) {
        auto *tm = new TaskMessage("heldDispatch", KIND_HELD_DISPATCH);
        tm->setTask(task);
        tm->setTarget(static_cast<int>(target));
        scheduleAfter(fromNs(holdNs), tm);
        return;
    }
    if (target == static_cast<uint32_t>(nodeId_)) {
        sendToScheduler(task);
        return;
    }
    auto *f = new RoceFrame("task");
    f->setSrcNode(nodeId_);
    f->setDstNode(static_cast<int>(target));
    f->setPriority(dataPriority_);
    f->setFrameType(FRAME_TASK);
    f->setMessageBytes(std::max<uint32_t>(1, task.sizeBytes));
    f->setTask(task);
    send(f, "nicOut");
}

void MalcolmApp::sendToScheduler(const Task& t)
{
    auto *tm = new TaskMessage("task");
    tm->setTask(t);
    send(tm, "schedOut");
}

void MalcolmApp::gstSnapshot(std::vector<HeartbeatBytes>& bytes, std::vector<uint64_t>& ageNs,
                             const Heartbeat& own) const
{
    bytes.resize(numNodes_);
    ageNs.assign(numNodes_, kNoHeartbeatAge);
    int64_t now = simTime().raw();
    for (int i = 0; i < numNodes_; i++) {
        bytes[i] = gst_.bytes(static_cast<uint32_t>(i));
        if (i == nodeId_)
            ageNs[i] = 0;
        else if (auto age = gst_.age(static_cast<uint32_t>(i), now))
            ageNs[i] = toNs(SimTime::fromRaw(*age));
    }
    bytes[nodeId_] = own.encode();
}

std::vector<Heartbeat> MalcolmApp::gstView() const
{
    return gst_.view(currentHeartbeat());
}

void MalcolmApp::finish()
{
    if (golden_ && nodeId_ == 1) {
        recordScalar("goldenHeartbeatsExpected", goldenRows_.size());
        recordScalar("goldenHeartbeatsMatched", goldenMatched_);
        recordScalar("goldenHeartbeatsMismatched", goldenMismatched_);
    }
    recordScalar("bulkWritesSent", bulkSent_);
}

}  // namespace malcolm
