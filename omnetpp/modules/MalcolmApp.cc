#include "MalcolmApp.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <sstream>

#include "BridgeCoordinator.h"
#include "EdfScheduler.h"
#include "SimTime.h"
#include "frames_m.h"
#include "message_builder.h"

namespace malcolm {

Define_Module(MalcolmApp);

namespace {
// Module-local RNG of the service estimates (the arrivals and services use RNG 0).
constexpr int kEstimateRng = 1;

std::vector<std::string> splitCsv(const std::string& line)
{
    std::vector<std::string> out;
    std::string field;
    std::istringstream in(line);
    while (std::getline(in, field, ','))
        out.push_back(field);
    return out;
}

std::string hexOf(const uint8_t *b, size_t n)
{
    std::string s;
    char buf[3];
    for (size_t i = 0; i < n; i++) {
        std::snprintf(buf, sizeof buf, "%02x", b[i]);
        s += buf;
    }
    return s;
}
}  // namespace

MalcolmApp::~MalcolmApp()
{
    cancelAndDelete(arrivalTimer_);
    cancelAndDelete(heartbeatTimer_);
    cancelAndDelete(microburstTimer_);
    cancelAndDelete(bulkTimer_);
    cancelAndDelete(goldenTimer_);
}

void MalcolmApp::readServiceLaw()
{
    try {
        law_.kind = ServiceLaw::parseKind(par("serviceLaw").stdstringValue());
    }
    catch (const std::exception& e) {
        throw cRuntimeError("%s", e.what());
    }
    law_.alpha = par("paretoAlpha").doubleValue();
    law_.xmUs = par("paretoMin").doubleValue() * 1e6;
    law_.maxUs = par("paretoMax").doubleValue() * 1e6;
    law_.medianUs = par("lognormalMedian").doubleValue() * 1e6;
    law_.sigma = par("lognormalSigma").doubleValue();
    law_.meanUs = par("exponentialMean").doubleValue() * 1e6;
    law_.shortUs = par("bimodalShort").doubleValue() * 1e6;
    law_.longUs = par("bimodalLong").doubleValue() * 1e6;
    law_.longFraction = par("bimodalLongFraction").doubleValue();
    if (law_.kind == ServiceLaw::Kind::BoundedPareto && !(law_.alpha > 0 && law_.xmUs > 0 && law_.maxUs > law_.xmUs))
        throw cRuntimeError("bounded Pareto needs paretoAlpha > 0 and 0 < paretoMin < paretoMax");
    if (!(law_.expectedUs() > 0))
        throw cRuntimeError("service law %s has no positive mean", par("serviceLaw").stringValue());
}

void MalcolmApp::readServiceEstimate()
{
    try {
        estimate_.kind = ServiceEstimate::parseKind(par("estimate").stdstringValue());
    }
    catch (const std::exception& e) {
        throw cRuntimeError("%s", e.what());
    }
    estimate_.sigma = par("estimateSigma").doubleValue();
    if (!(estimate_.sigma >= 0) || !std::isfinite(estimate_.sigma))
        throw cRuntimeError("estimateSigma must be >= 0, got %g", estimate_.sigma);
    // The estimates draw from their own stream (module-local RNG 1): a run's arrivals and
    // services do not depend on the estimate model.
    try {
        getRNG(kEstimateRng);
    }
    catch (const std::exception& e) {
        throw cRuntimeError("MalcolmApp draws service estimates from its RNG %d: set num-rngs = 2 (or more) in the "
                            "ini (%s)", kEstimateRng, e.what());
    }
}

uint64_t MalcolmApp::estimateOf(uint32_t taskClass, uint64_t serviceNs)
{
    auto it = classMeanNs_.find(taskClass);
    double mean = it == classMeanNs_.end() ? -1.0 : it->second;
    double z = estimate_.kind == ServiceEstimate::Kind::Noisy ? normal(0.0, 1.0, kEstimateRng) : 0.0;
    return estimate_.estimateNs(serviceNs, mean, z);
}

void MalcolmApp::initialize(int stage)
{
    if (stage == 0) {
        nodeId_ = par("nodeId").intValue();
        numNodes_ = par("numNodes").intValue();
        if (numNodes_ < 2 || numNodes_ > 256 || nodeId_ < 0 || nodeId_ >= numNodes_)
            throw cRuntimeError("need 2 <= numNodes <= 256 and 0 <= nodeId < numNodes");
        readServiceLaw();
        readServiceEstimate();
        classMeanNs_[0] = law_.expectedUs() * 1000.0;
        deadlineFactor_ = par("deadlineFactor").doubleValue();
        if (!(deadlineFactor_ > 0))
            throw cRuntimeError("deadlineFactor must be > 0");
        stopTime_ = par("stopTime");
        dataPriority_ = par("dataPriority").intValue();
        hbPriority_ = par("heartbeatPriority").intValue();
        if (dataPriority_ < 0 || dataPriority_ > 7 || hbPriority_ < 0 || hbPriority_ > 7)
            throw cRuntimeError("priorities must be 0..7");
        heartbeatInterval_ = par("heartbeatInterval");
        if (heartbeatInterval_ <= SIMTIME_ZERO)
            throw cRuntimeError("heartbeatInterval must be > 0");
        gst_.assign(numNodes_, HeartbeatBytes{});
        gstReceivedAt_.assign(numNodes_, -1);

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

    std::string tracePath = par("taskTraceFile").stdstringValue();
    simtime_t start = par("startTime");
    if (!tracePath.empty()) {
        loadTrace(tracePath);
        useTrace_ = true;
        if (!trace_.empty())
            scheduleAt(std::max(start, fromNs(trace_[0].arrivalNs)), arrivalTimer_);
    }
    else {
        double rho = par("rho").doubleValue();
        if (rho < 0)
            throw cRuntimeError("rho must be >= 0");
        // Every node originates the same share of rho x rack capacity (tasks per second).
        arrivalRatePerS_ = rho * coordinator_->rackCapacity() / (numNodes_ * law_.expectedUs() * 1e-6);
        if (arrivalRatePerS_ > 0)
            scheduleAt(start + exponential(1.0 / arrivalRatePerS_), arrivalTimer_);
    }
    microburstPeriod_ = par("microburstPeriod");
    microburstSize_ = par("microburstSize").intValue();
    microburstServiceNs_ = toNs(par("microburstService"));
    microburstDeadlineNs_ = toNs(par("microburstDeadline"));
    if (microburstPeriod_ > SIMTIME_ZERO)
        classMeanNs_[1] = double(microburstServiceNs_);
    if (microburstPeriod_ < SIMTIME_ZERO || microburstSize_ < 0 || microburstServiceNs_ == 0 || microburstDeadlineNs_ == 0)
        throw cRuntimeError("micro-bursts need microburstPeriod >= 0, microburstSize >= 0 and positive service and deadline");
    if (microburstPeriod_ > SIMTIME_ZERO)
        scheduleAt(start + microburstPeriod_, microburstTimer_);
    // Heartbeats start at a random phase so that nodes do not beat in lockstep.
    scheduleAt(uniform(SIMTIME_ZERO, heartbeatInterval_), heartbeatTimer_);

    bulkTarget_ = par("bulkTarget").intValue();
    bulkCount_ = par("bulkCount").intValue();
    bulkInterval_ = par("bulkInterval");
    int64_t bulkBytes = par("bulkBytes").intValue();
    if (bulkTarget_ >= 0 && (bulkBytes < 1 || bulkBytes > UINT32_MAX || bulkInterval_ <= SIMTIME_ZERO))
        throw cRuntimeError("bulk writes need 1 B <= bulkBytes < 4 GiB and bulkInterval > 0");
    bulkBytes_ = static_cast<uint32_t>(bulkBytes);
    int fanIn = par("bulkFanIn").intValue();
    if (bulkTarget_ >= numNodes_ || fanIn < 0 || fanIn >= numNodes_)
        throw cRuntimeError("bulkTarget must be < numNodes and 0 <= bulkFanIn < numNodes");
    bool bulkSender = bulkTarget_ >= 0 && nodeId_ != bulkTarget_ &&
                      (fanIn == 0 || (nodeId_ >= 1 && nodeId_ <= fanIn));
    if (bulkSender && bulkCount_ != 0)
        scheduleAt(par("bulkStart"), bulkTimer_);

    std::string golden = par("goldenHeartbeatFile").stdstringValue();
    if (!golden.empty()) {
        std::ifstream in(golden);
        if (!in)
            throw cRuntimeError("cannot open goldenHeartbeatFile '%s'", golden.c_str());
        if (nodeId_ == 0)
            scheduleAt(start, goldenTimer_);
        if (nodeId_ == 1) {  // the receiver keeps the expected bytes
            std::string line;
            std::getline(in, line);  // header
            while (std::getline(in, line))
                if (!line.empty())
                    goldenHex_.push_back(splitCsv(line).at(7));
        }
    }
}

void MalcolmApp::loadTrace(const std::string& path)
{
    std::ifstream in(path);
    if (!in)
        throw cRuntimeError("cannot open taskTraceFile '%s'", path.c_str());
    std::map<uint32_t, std::pair<double, uint64_t>> sums;  // per class: service sum, count
    try {
        for (const TraceTask& t : readTaskTrace(in, path)) {
            if (t.origin == static_cast<uint32_t>(nodeId_))
                trace_.push_back(t);
            else if (t.origin >= static_cast<uint32_t>(numNodes_))
                throw cRuntimeError("%s: task origin %u but the rack has %d nodes", path.c_str(), t.origin, numNodes_);
            sums[t.taskClass].first += double(t.serviceNs);
            sums[t.taskClass].second++;
        }
    }
    catch (const TraceFormatError& e) {
        throw cRuntimeError("%s", e.what());
    }
    // Replayed tasks: class-mean estimates use the whole trace's per-class means (as rack-sim).
    classMeanNs_.clear();
    for (const auto& [c, s] : sums)
        classMeanNs_[c] = s.first / double(s.second);
}

void MalcolmApp::handleMessage(cMessage *msg)
{
    if (!msg->isSelfMessage()) {
        receiveWrite(check_and_cast<RoceFrame *>(msg));
        return;
    }
    switch (msg->getKind()) {
        case KIND_ARRIVAL:
            if (useTrace_) {
                const TraceTask& r = trace_[traceNext_++];
                // A recorded estimate is used as is; the trace's deadline is the promise made.
                uint64_t est = r.estimateNs > 0 ? r.estimateNs : estimateOf(r.taskClass, r.serviceNs);
                generateTask(r.serviceNs, est, r.deadlineNs, r.sizeBytes, r.taskClass);
                if (traceNext_ < trace_.size())
                    scheduleAt(std::max(simTime(), fromNs(trace_[traceNext_].arrivalNs)), arrivalTimer_);
            }
            else {
                uint64_t serviceNs = static_cast<uint64_t>(std::llround(law_.sampleUs(uniform(0, 1), uniform(0, 1)) * 1000.0));
                serviceNs = std::max<uint64_t>(serviceNs, 1);
                // D = A + F x estimate: the client promises from what it knows (the true time
                // would leak through (D - A) / F).
                uint64_t est = estimateOf(0, serviceNs);
                uint64_t deadlineNs = nowNs() + static_cast<uint64_t>(std::llround(deadlineFactor_ * double(est)));
                generateTask(serviceNs, est, deadlineNs, static_cast<uint32_t>(par("taskBytes").intValue()), 0);
                simtime_t next = simTime() + exponential(1.0 / arrivalRatePerS_);
                if (stopTime_ < SIMTIME_ZERO || next <= stopTime_)
                    scheduleAt(next, arrivalTimer_);
            }
            break;
        case KIND_MICROBURST: {
            uint64_t deadlineNs = nowNs() + microburstDeadlineNs_;
            for (int i = 0; i < microburstSize_; i++)
                generateTask(microburstServiceNs_, estimateOf(1, microburstServiceNs_), deadlineNs,
                             static_cast<uint32_t>(par("taskBytes").intValue()), 1);
            simtime_t next = simTime() + microburstPeriod_;
            if (stopTime_ < SIMTIME_ZERO || next <= stopTime_)
                scheduleAt(next, microburstTimer_);
            break;
        }
        case KIND_HEARTBEAT:
            sendHeartbeats();
            scheduleAfter(heartbeatInterval_, heartbeatTimer_);
            break;
        case KIND_BULK:
            sendBulk();
            if (bulkCount_ < 0 || bulkSent_ < bulkCount_)
                scheduleAfter(bulkInterval_, bulkTimer_);
            break;
        case KIND_GOLDEN:
            sendGoldenVectors();
            break;
        case KIND_HELD_DISPATCH: {
            auto *tm = check_and_cast<TaskMessage *>(msg);
            Task t;
            t.id = tm->getTaskId();
            t.origin = tm->getOrigin();
            t.sizeBytes = tm->getSizeBytes();
            t.arrivalNs = tm->getArrivalNs();
            t.deadlineNs = tm->getDeadlineNs();
            t.serviceRefNs = tm->getServiceNs();
            t.estimateNs = tm->getEstimateNs();
            t.taskClass = tm->getTaskClass();
            t.decidedAtStep = tm->getDecidedAtStep();
            t.decidedInEpisode = tm->getDecidedInEpisode();
            uint32_t target = static_cast<uint32_t>(tm->getTarget());
            delete msg;
            dispatch(t, target, 0);
            break;
        }
        default:
            throw cRuntimeError("unexpected self-message kind %d", msg->getKind());
    }
}

void MalcolmApp::generateTask(uint64_t serviceNs, uint64_t estimateNs, uint64_t deadlineNs, uint32_t sizeBytes,
                              uint32_t taskClass)
{
    Task t;
    t.id = (static_cast<uint64_t>(nodeId_) << 40) | nextTaskSeq_++;
    t.origin = static_cast<uint32_t>(nodeId_);
    t.sizeBytes = sizeBytes;
    t.arrivalNs = nowNs();
    t.deadlineNs = deadlineNs;
    t.serviceRefNs = serviceNs;
    t.estimateNs = estimateNs;
    t.taskClass = taskClass;
    emit(taskGeneratedSignal_, 1L);
    // The decision reads this node's GST: record how stale it is on average.
    simtime_t ageSum;
    int known = 0;
    for (int i = 0; i < numNodes_; i++)
        if (i != nodeId_ && gstReceivedAt_[i] >= SIMTIME_ZERO) {
            ageSum += simTime() - gstReceivedAt_[i];
            known++;
        }
    if (known > 0)
        emit(heartbeatAgeSignal_, ageSum / known);
    coordinator_->submit(this, t);
}

Heartbeat MalcolmApp::currentHeartbeat() const
{
    // rho: tasks in system (queued + running) per core, now (design.md section 4).
    double rho = rhoOfTasks(scheduler_->tasksInSystem(), static_cast<uint32_t>(scheduler_->config().cores));
    return Heartbeat::fromSth(static_cast<uint8_t>(nodeId_), scheduler_->sth(), rho, scheduler_->busyCores() > 0,
                              static_cast<uint32_t>(coordinator_->policyVersion()));
}

void MalcolmApp::sendHeartbeats()
{
    HeartbeatBytes bytes = currentHeartbeat().encode();
    gst_[nodeId_] = bytes;
    gstReceivedAt_[nodeId_] = simTime();
    for (int peer = 0; peer < numNodes_; peer++) {
        if (peer == nodeId_)
            continue;
        auto *f = new RoceFrame("heartbeat");
        f->setSrcNode(nodeId_);
        f->setDstNode(peer);
        f->setPriority(hbPriority_);
        f->setFrameType(FRAME_HEARTBEAT);
        f->setMessageBytes(kHeartbeatLen);
        for (size_t i = 0; i < kHeartbeatLen; i++)
            f->setHeartbeat(i, bytes[i]);
        send(f, "nicOut");
    }
    emit(heartbeatSentSignal_, 1L);
}

void MalcolmApp::sendBulk()
{
    auto *f = new RoceFrame("bulk");
    f->setSrcNode(nodeId_);
    f->setDstNode(bulkTarget_);
    f->setPriority(dataPriority_);
    f->setFrameType(FRAME_BULK);
    f->setMessageBytes(bulkBytes_);
    send(f, "nicOut");
    bulkSent_++;
}

void MalcolmApp::sendGoldenVectors()
{
    // Node 0 encodes every golden input row with the core codec and writes it to node 1.
    std::ifstream in(par("goldenHeartbeatFile").stringValue());
    std::string line;
    std::getline(in, line);
    int index = 0;
    while (std::getline(in, line)) {
        if (line.empty())
            continue;
        auto r = splitCsv(line);
        if (r.size() != 8)
            throw cRuntimeError("golden heartbeat row %d: expected 8 columns", index);
        Heartbeat hb = Heartbeat::fromValues(static_cast<uint8_t>(std::stoul(r[0])), static_cast<uint8_t>(std::stoul(r[1])),
                                             loadFactorFromRho(std::stod(r[2])), std::stoll(r[3]), std::stoll(r[4]),
                                             std::stoull(r[5]), static_cast<uint32_t>(std::stoull(r[6])));
        HeartbeatBytes bytes = hb.encode();
        auto *f = new RoceFrame("goldenHeartbeat");
        f->setSrcNode(nodeId_);
        f->setDstNode(1);
        f->setPriority(hbPriority_);
        f->setFrameType(FRAME_HEARTBEAT);
        f->setMessageBytes(kHeartbeatLen);
        f->setGoldenIndex(index++);
        for (size_t i = 0; i < kHeartbeatLen; i++)
            f->setHeartbeat(i, bytes[i]);
        send(f, "nicOut");
    }
}

void MalcolmApp::receiveWrite(RoceFrame *f)
{
    if (!f->getWriteIncomplete())
        emit(writeLatencySignal_, simTime() - f->getWriteStart());
    switch (f->getFrameType()) {
        case FRAME_HEARTBEAT: {
            if (f->getWriteIncomplete())
                break;  // a lost heartbeat leaves the GST entry stale
            uint8_t bytes[kHeartbeatLen];
            for (size_t i = 0; i < kHeartbeatLen; i++)
                bytes[i] = f->getHeartbeat(i);
            if (f->getGoldenIndex() >= 0) {
                int idx = f->getGoldenIndex();
                if (idx < static_cast<int>(goldenHex_.size()) && hexOf(bytes, kHeartbeatLen) == goldenHex_[idx])
                    goldenMatched_++;
                else {
                    goldenMismatched_++;
                    EV_ERROR << "golden heartbeat " << idx << " arrived as " << hexOf(bytes, kHeartbeatLen) << "\n";
                }
                break;
            }
            int src = f->getSrcNode();
            try {
                Heartbeat::decode(bytes, kHeartbeatLen);  // validates the length; the GST keeps raw bytes
            }
            catch (const std::exception& e) {
                throw cRuntimeError("heartbeat from node %d: %s", src, e.what());
            }
            std::copy(bytes, bytes + kHeartbeatLen, gst_[src].begin());
            gstReceivedAt_[src] = simTime();
            break;
        }
        case FRAME_TASK: {
            Task t;
            t.id = f->getTaskId();
            t.origin = f->getTaskOrigin();
            t.sizeBytes = f->getMessageBytes();
            t.arrivalNs = f->getTaskArrivalNs();
            t.deadlineNs = f->getTaskDeadlineNs();
            t.serviceRefNs = f->getTaskServiceNs();
            t.estimateNs = f->getTaskEstimateNs();
            t.taskClass = f->getTaskClass();
            t.decidedAtStep = f->getTaskDecidedAtStep();
            t.decidedInEpisode = f->getTaskDecidedInEpisode();
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
                sendToScheduler(t, static_cast<uint32_t>(nodeId_));
            break;
        }
        case FRAME_BULK:
            if (!f->getWriteIncomplete())
                emit(bulkReceivedSignal_, static_cast<long>(f->getMessageBytes()));
            break;
    }
    delete f;
}

void MalcolmApp::dispatch(const Task& task, uint32_t target, uint64_t holdNs)
{
    Enter_Method_Silent();
    if (target >= static_cast<uint32_t>(numNodes_))
        throw cRuntimeError("placement of task %llu on node %u: no such node", (unsigned long long)task.id, target);
    if (holdNs > 0) {
        auto *tm = new TaskMessage("heldDispatch", KIND_HELD_DISPATCH);
        tm->setTaskId(task.id);
        tm->setOrigin(task.origin);
        tm->setSizeBytes(task.sizeBytes);
        tm->setArrivalNs(task.arrivalNs);
        tm->setDeadlineNs(task.deadlineNs);
        tm->setServiceNs(task.serviceRefNs);
        tm->setEstimateNs(task.estimateNs);
        tm->setTaskClass(task.taskClass);
        tm->setDecidedAtStep(task.decidedAtStep);
        tm->setDecidedInEpisode(task.decidedInEpisode);
        tm->setTarget(static_cast<int>(target));
        scheduleAfter(fromNs(holdNs), tm);
        return;
    }
    if (target == static_cast<uint32_t>(nodeId_)) {
        sendToScheduler(task, target);
        return;
    }
    auto *f = new RoceFrame("task");
    f->setSrcNode(nodeId_);
    f->setDstNode(static_cast<int>(target));
    f->setPriority(dataPriority_);
    f->setFrameType(FRAME_TASK);
    f->setMessageBytes(std::max<uint32_t>(1, task.sizeBytes));
    f->setTaskId(task.id);
    f->setTaskOrigin(task.origin);
    f->setTaskArrivalNs(task.arrivalNs);
    f->setTaskDeadlineNs(task.deadlineNs);
    f->setTaskServiceNs(task.serviceRefNs);
    f->setTaskEstimateNs(task.estimateNs);
    f->setTaskClass(task.taskClass);
    f->setTaskDecidedAtStep(task.decidedAtStep);
    f->setTaskDecidedInEpisode(task.decidedInEpisode);
    send(f, "nicOut");
}

void MalcolmApp::sendToScheduler(const Task& t, uint32_t)
{
    auto *tm = new TaskMessage("task");
    tm->setTaskId(t.id);
    tm->setOrigin(t.origin);
    tm->setSizeBytes(t.sizeBytes);
    tm->setArrivalNs(t.arrivalNs);
    tm->setDeadlineNs(t.deadlineNs);
    tm->setServiceNs(t.serviceRefNs);
    tm->setEstimateNs(t.estimateNs);
    tm->setTaskClass(t.taskClass);
    tm->setDecidedAtStep(t.decidedAtStep);
    tm->setDecidedInEpisode(t.decidedInEpisode);
    send(tm, "schedOut");
}

void MalcolmApp::gstSnapshot(std::vector<HeartbeatBytes>& bytes, std::vector<uint64_t>& ageNs) const
{
    bytes = gst_;
    bytes[nodeId_] = currentHeartbeat().encode();
    ageNs.assign(numNodes_, kNoHeartbeatAge);
    for (int i = 0; i < numNodes_; i++)
        if (i == nodeId_)
            ageNs[i] = 0;
        else if (gstReceivedAt_[i] >= SIMTIME_ZERO)
            ageNs[i] = toNs(simTime() - gstReceivedAt_[i]);
}

std::vector<Heartbeat> MalcolmApp::gstView() const
{
    std::vector<Heartbeat> view;
    view.reserve(numNodes_);
    for (int i = 0; i < numNodes_; i++)
        view.push_back(i == nodeId_ ? currentHeartbeat() : Heartbeat::decode(gst_[i].data(), kHeartbeatLen));
    return view;
}

void MalcolmApp::finish()
{
    if (!par("goldenHeartbeatFile").stdstringValue().empty() && nodeId_ == 1) {
        recordScalar("goldenHeartbeatsExpected", goldenHex_.size());
        recordScalar("goldenHeartbeatsMatched", goldenMatched_);
        recordScalar("goldenHeartbeatsMismatched", goldenMismatched_);
    }
    recordScalar("bulkWritesSent", bulkSent_);
}

}  // namespace malcolm
