#include "EdfScheduler.h"

#include "BridgeCoordinator.h"
#include "SimTime.h"
#include "frames_m.h"

namespace malcolm {

Define_Module(EdfScheduler);

EdfScheduler::~EdfScheduler()
{
    cancelAndDelete(pollTimer_);
    for (cMessage *m : coreTimers_)
        cancelAndDelete(m);
}

void EdfScheduler::initialize(int stage)
{
    if (stage == 0) {
        NodeSchedulerConfig c;
        c.nodeId = static_cast<uint32_t>(getParentModule()->par("nodeId").intValue());
        std::string discipline = par("discipline").stdstringValue();
        if (discipline == "edf")
            c.discipline = Discipline::Edf;
        else if (discipline == "fcfs")
            c.discipline = Discipline::Fcfs;
        else if (discipline == "ps")
            c.discipline = Discipline::ProcessorSharing;
        else
            throw cRuntimeError("discipline must be \"edf\", \"fcfs\" or \"ps\", got \"%s\"", discipline.c_str());
        c.cores = par("cores").intValue();
        c.speed = par("speed").doubleValue();
        if (c.cores < 1 || !(c.speed > 0))
            throw cRuntimeError("cores must be >= 1 and speed > 0 (got %d, %g)", c.cores, c.speed);
        c.contextSwitchNs = toNs(par("contextSwitchTime"));
        c.preemptionThresholdNs = toNs(par("preemptionThreshold"));
        int batch = par("ingressBatch").intValue();
        if (batch < 1)
            throw cRuntimeError("ingressBatch must be >= 1");
        c.ingressBatch = batch;
        pollInterval_ = par("pollInterval");
        if (pollInterval_ < SIMTIME_ZERO)
            throw cRuntimeError("pollInterval must be >= 0");
        kind_ = par("kind").stdstringValue();
        model_ = std::make_unique<NodeScheduler>(c);
        pollTimer_ = new cMessage("poll", KIND_POLL);
        for (int i = 0; i < c.cores; i++)
            coreTimers_.push_back(new cMessage("coreDone", KIND_CORE_DONE));

        taskCompletedSignal_ = registerSignal("taskCompleted");
        taskMissedSignal_ = registerSignal("taskMissed");
        taskDroppedSignal_ = registerSignal("taskDropped");
        taskLatencySignal_ = registerSignal("taskLatency");
        deadlineMetSignal_ = registerSignal("deadlineMet");
        queueLengthSignal_ = registerSignal("queueLength");
        busyCoresSignal_ = registerSignal("busyCores");
        WATCH(completed_);
        WATCH(missed_);
        WATCH(dropped_);
    }
    else if (stage == 1) {
        coordinator_ = check_and_cast<BridgeCoordinator *>(getModuleByPath("^.^.coordinator"));
    }
}

SlackHistogram EdfScheduler::sth() const
{
    return model_->sth(nowNs());
}

uint64_t EdfScheduler::busyNs() const
{
    return model_->busyNs(nowNs());
}

NodeSpecInfo EdfScheduler::spec() const
{
    NodeSpecInfo s;
    s.cores = static_cast<uint32_t>(model_->config().cores);
    s.speed = model_->config().speed;
    s.kind = kind_;
    s.discipline = model_->config().discipline;
    return s;
}

void EdfScheduler::schedulePoll()
{
    if (!pollTimer_->isScheduled() && model_->ingressSize() > 0)
        scheduleAfter(pollInterval_, pollTimer_);
}

void EdfScheduler::handleMessage(cMessage *msg)
{
    std::vector<TaskOutcomeRecord> outcomes;
    if (msg == pollTimer_) {
        model_->poll(nowNs(), outcomes);
    }
    else if (msg->getKind() == KIND_CORE_DONE && msg->isSelfMessage()) {
        auto it = std::find(coreTimers_.begin(), coreTimers_.end(), msg);
        if (it == coreTimers_.end())
            throw cRuntimeError("unknown core timer");
        model_->onCoreTimer(static_cast<int>(it - coreTimers_.begin()), nowNs(), outcomes);
    }
    else {
        auto *tm = check_and_cast<TaskMessage *>(msg);
        Task t = tm->getTask();
        delete msg;
        model_->arrive(t);
    }
    schedulePoll();
    syncCoreTimers();
    report(outcomes);
    emit(queueLengthSignal_, static_cast<long>(model_->queuedTasks()));
    emit(busyCoresSignal_, static_cast<long>(model_->busyCores()));
}

void EdfScheduler::syncCoreTimers()
{
    for (size_t c = 0; c < coreTimers_.size(); c++) {
        uint64_t t = model_->coreTimerNs(static_cast<int>(c));
        cMessage *timer = coreTimers_[c];
        if (t == kNever) {
            cancelEvent(timer);
        }
        else if (!timer->isScheduled() || toNs(timer->getArrivalTime()) != t) {
            cancelEvent(timer);
            scheduleAt(fromNs(t), timer);
        }
    }
}

void EdfScheduler::report(std::vector<TaskOutcomeRecord>& outcomes)
{
    for (const TaskOutcomeRecord& r : outcomes) {
        simtime_t latency = fromNs(r.latencyNs());
        switch (r.kind) {
            case OutcomeKind::Completed:
                completed_++;
                emit(taskCompletedSignal_, latency);
                emit(taskLatencySignal_, latency);
                emit(deadlineMetSignal_, true);
                break;
            case OutcomeKind::Missed:
                missed_++;
                emit(taskMissedSignal_, latency);
                emit(taskLatencySignal_, latency);
                emit(deadlineMetSignal_, false);
                break;
            case OutcomeKind::Dropped:
                dropped_++;
                emit(taskDroppedSignal_, 1L);
                emit(deadlineMetSignal_, false);
                break;
        }
        coordinator_->reportOutcome(r);
    }
}

void EdfScheduler::finish()
{
    recordScalar("preemptions", model_->preemptions());
    recordScalar("contextSwitches", model_->contextSwitches());
    recordScalar("utilisation", simTime() > 0 ? model_->busyNs(nowNs()) / (double(model_->config().cores) * nowNs()) : 0.0);
}

}  // namespace malcolm
