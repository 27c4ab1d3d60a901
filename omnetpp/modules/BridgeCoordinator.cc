#include "BridgeCoordinator.h"

#include <algorithm>
#include <iostream>

#include <unistd.h>

#include "EdfScheduler.h"
#include "MalcolmApp.h"
#include "RoCEv2Nic.h"
#include "SimTime.h"
#include "TorSwitch.h"
#include "workload.h"

namespace malcolm {

Define_Module(BridgeCoordinator);

BridgeCoordinator::~BridgeCoordinator()
{
    cancelAndDelete(decideTimer_);
}

void BridgeCoordinator::initialize(int stage)
{
    if (stage == 0) {
        // Node specs are parameters, readable before the nodes initialise: apps need the
        // rack capacity in their stage 1.
        cModule *network = getParentModule();
        const char *vec = par("nodeVector").stringValue();
        if (!network->hasSubmoduleVector(vec))
            throw cRuntimeError("no submodule vector '%s' in %s", vec, network->getFullPath().c_str());
        int n = network->getSubmoduleVectorSize(vec);
        if (n < 2 || n > 256)
            throw cRuntimeError("a rack has 2..256 nodes, got %d", n);
        for (int i = 0; i < n; i++) {
            cModule *node = network->getSubmodule(vec, i);
            apps_.push_back(check_and_cast<MalcolmApp *>(node->getSubmodule("app")));
            schedulers_.push_back(check_and_cast<EdfScheduler *>(node->getSubmodule("scheduler")));
            nics_.push_back(check_and_cast<RoCEv2Nic *>(node->getSubmodule("nic")));
            double cap = node->getSubmodule("scheduler")->par("cores").intValue() *
                         node->getSubmodule("scheduler")->par("speed").doubleValue();
            capacity_.push_back(cap);
            rackCapacity_ += cap;
        }
        // Downlinks: a single "tor" or a vector of them (two-tier); TorSwitch says which node
        // each port leads to once initialised (stage 2 below).
        batchWindow_ = par("decisionBatchWindow");
        episodeLength_ = par("episodeLength");
        if (batchWindow_ < SIMTIME_ZERO || episodeLength_ < SIMTIME_ZERO)
            throw cRuntimeError("decisionBatchWindow and episodeLength must be >= 0");
        int maxTasks = par("maxTasksPerStep").intValue();
        if (maxTasks < 1)
            throw cRuntimeError("maxTasksPerStep must be >= 1");
        maxTasksPerStep_ = static_cast<size_t>(maxTasks);
        endpoint_ = par("agentEndpoint").stdstringValue();
        scenario_ = par("scenario").stdstringValue();
        if (scenario_.empty())
            scenario_ = getEnvir()->getConfigEx()->getActiveConfigName();
        std::string fb = par("fallbackPolicy").stdstringValue();
        if (!fb.empty()) {
            try {
                fallback_ = FallbackPolicy::parse(fb);
            }
            catch (const std::exception& e) {
                throw cRuntimeError("fallbackPolicy: %s", e.what());
            }
        }
        if (endpoint_.empty() && !fallback_)
            throw cRuntimeError("no agentEndpoint and no fallbackPolicy: set **.coordinator.agentEndpoint "
                                "(e.g. \"tcp://127.0.0.1:5555\") or a local fallbackPolicy (e.g. \"power-of-2\")");
        decideTimer_ = new cMessage("decide", KIND_DECIDE);
        stepTasksSignal_ = registerSignal("stepTasks");
        stepWallTimeSignal_ = registerSignal("stepWallTime");
        remotePlacementSignal_ = registerSignal("remotePlacement");
        busyAtLastStep_.assign(n, 0);
        WATCH(totalSteps_);
        WATCH(usingFallback_);
    }
    else if (stage == 2) {  // schedulers exist now: specs for Hello
        for (EdfScheduler *s : schedulers_)
            specs_.push_back(s->spec());
        downlinks_.assign(apps_.size(), {nullptr, -1});
        for (cModule::SubmoduleIterator it(getParentModule()); !it.end(); ++it)
            if (auto *sw = dynamic_cast<TorSwitch *>(*it))
                for (int p = 0; p < sw->gateSize("port"); p++) {
                    int node = sw->nodeOnPort(p);
                    if (node >= 0 && node < static_cast<int>(apps_.size()))
                        downlinks_[node] = {sw, p};
                }
        auto connectStart = std::chrono::steady_clock::now();
        if (endpoint_.empty()) {
            usingFallback_ = true;
            EV_WARN << "no agent endpoint: placing tasks with the local policy '" << fallback_->name() << "'\n";
            std::cerr << "[malcolm] no agent endpoint configured: using the local fallback policy '" << fallback_->name()
                      << "'" << std::endl;
        }
        else
            connectAgent();
        // The speed figures count from here: loading an embedded agent (libtorch) or the
        // Hello's round trip is a one-off cost, reported on its own.
        wallStart_ = std::chrono::steady_clock::now();
        connectWallSeconds_ = std::chrono::duration<double>(wallStart_ - connectStart).count();
    }
}

void BridgeCoordinator::connectAgent()
{
    BridgeClientOptions o;
    o.endpoint = endpoint_;
    o.agentLibrary = par("agentLibrary").stdstringValue();
    double timeout = par("bridgeTimeout").doubleValue();
    if (!(timeout > 0))
        throw cRuntimeError("bridgeTimeout must be > 0");
    o.timeoutMs = std::max(1, static_cast<int>(timeout * 1000));
    int version = par("protocolVersion").intValue();
    if (version < static_cast<int>(kProtocolV1) || version > static_cast<int>(kMaxProtocolVersion))
        throw cRuntimeError("protocolVersion must be 1..%u, got %d", kMaxProtocolVersion, version);
    o.maxProtocolVersion = static_cast<uint32_t>(version);
    // Unique among the envs of one agent server: runs may go in parallel (opp_runall).
    std::string envId = par("envId").stdstringValue();
    if (envId.empty())
        envId = "omnetpp-" + std::to_string(::getpid()) + "-" + std::to_string(getEnvir()->getConfigEx()->getActiveRunNumber());
    std::vector<std::pair<std::string, std::string>> params;
    cModule *app0 = apps_[0];
    for (const char *p : {"rho", "serviceLaw", "paretoAlpha", "deadlineFactor", "heartbeatInterval", "microburstPeriod"})
        params.emplace_back(p, app0->par(p).str());
    // The estimate model, labelled as rack-sim labels it ("noisy(sigma=0.5)", "exact", ...).
    ServiceEstimate est;
    try {
        est.kind = ServiceEstimate::parseKind(app0->par("estimate").stdstringValue());
    }
    catch (const std::exception& e) {
        throw cRuntimeError("%s", e.what());
    }
    est.sigma = app0->par("estimateSigma").doubleValue();
    params.emplace_back("service_estimate", est.label());
    params.emplace_back("run", std::to_string(getEnvir()->getConfigEx()->getActiveRunNumber()));
    // The run's seed set (from the ini's seed-set / repetition): reproduces the run.
    uint64_t seed = std::strtoull(getEnvir()->getConfigEx()->getVariable(CFGVAR_SEEDSET), nullptr, 10);
    params.emplace_back("seedset", std::to_string(seed));
    try {
        client_ = std::make_unique<BridgeClient>(o);
        pb::Hello hello = buildHello(envId, scenario_, seed, specs_,
                                     toNs(apps_[0]->par("heartbeatInterval")), params);
        pb::Welcome w = client_->hello(hello);
        policyVersion_ = w.policy_version();
        EV_INFO << "agent at " << endpoint_ << ": policy " << w.policy() << " v" << w.policy_version() << ", mode "
                << w.mode() << ", bridge protocol v" << client_->protocolVersion() << "\n";
        std::cerr << "[malcolm] connected to agent " << endpoint_ << " (policy " << w.policy() << ", mode " << w.mode()
                  << ", protocol v" << client_->protocolVersion() << ")" << std::endl;
    }
    catch (const BridgeError& e) {
        switchToFallback(e.what());
    }
}

void BridgeCoordinator::switchToFallback(const std::string& why)
{
    client_.reset();
    if (!fallback_)
        throw cRuntimeError("agent at %s unavailable: %s. Start the agent server, or set "
                            "**.coordinator.fallbackPolicy (e.g. \"power-of-2\") to continue with a local policy.",
                            endpoint_.c_str(), why.c_str());
    usingFallback_ = true;
    EV_WARN << "agent unavailable (" << why << "): continuing with the local fallback policy '" << fallback_->name()
            << "'\n";
    std::cerr << "[malcolm] agent at " << endpoint_ << " unavailable (" << why
              << "): continuing with the local fallback policy '" << fallback_->name() << "'" << std::endl;
}

void BridgeCoordinator::submit(MalcolmApp *origin, const Task& task)
{
    Enter_Method_Silent();
    pending_.push_back({task, origin});
    if (pending_.size() >= maxTasksPerStep_)
        rescheduleAfter(SIMTIME_ZERO, decideTimer_);  // a full batch goes now
    else if (!decideTimer_->isScheduled())
        scheduleAfter(batchWindow_, decideTimer_);
}

void BridgeCoordinator::reportOutcome(const TaskOutcomeRecord& outcome)
{
    Enter_Method_Silent();
    outcomes_.push_back(outcome);
}

void BridgeCoordinator::handleMessage(cMessage *msg)
{
    if (msg != decideTimer_)
        throw cRuntimeError("unexpected message %s", msg->getName());
    decide();
}

void BridgeCoordinator::fillCurrentStep(pb::Step& out)
{
    // pending_ holds this Step's batch (decide() parks the rest).
    uint64_t now = nowNs();
    size_t n = apps_.size();
    stepNodes_.resize(n);
    for (NodeSnapshot& s : stepNodes_)
        s.includeGst = false;
    for (const Pending& p : pending_)
        stepNodes_[p.task.origin].includeGst = true;
    double dtNs = (simTime() - lastStepTime_).dbl() * 1e9;
    for (size_t i = 0; i < n; i++) {
        NodeSnapshot& s = stepNodes_[i];
        s.nodeId = static_cast<uint32_t>(i);
        s.sth = schedulers_[i]->sth();
        s.heartbeat = apps_[i]->heartbeatFrom(s.sth);
        uint64_t busy = schedulers_[i]->busyNs();
        s.utilisation = dtNs > 0 ? (busy - busyAtLastStep_[i]) / (dtNs * specs_[i].cores) : 0.0;
        busyAtLastStep_[i] = busy;
        if (s.includeGst)
            apps_[i]->gstSnapshot(s.gst, s.gstAgeNs, s.heartbeat);
    }
    lastStepTime_ = simTime();
    stepLinks_.clear();
    for (size_t i = 0; i < n; i++) {
        LinkSnapshot up = nics_[i]->uplinkSnapshot();
        up.linkId = static_cast<uint32_t>(2 * i);
        stepLinks_.push_back(up);
        if (downlinks_[i].first) {
            LinkSnapshot down = downlinks_[i].first->downlinkSnapshot(downlinks_[i].second);
            down.nodeId = static_cast<uint32_t>(i);
            down.linkId = static_cast<uint32_t>(2 * i + 1);
            stepLinks_.push_back(down);
        }
    }
    stepTasks_.clear();
    for (const Pending& p : pending_)
        stepTasks_.push_back(p.task);
    if (client_ && client_->protocolVersion() >= kProtocolV2)
        fillStepV2(out, now, episode_, stepIndex_, stepNodes_, stepLinks_, stepTasks_, outcomes_);
    else
        fillStep(out, now, episode_, stepIndex_, stepNodes_, stepLinks_, stepTasks_, outcomes_);
}

void BridgeCoordinator::decide()
{
    if (episodeLength_ > SIMTIME_ZERO && simTime() >= episodeStart_ + episodeLength_)
        endEpisode(false);
    // At most maxTasksPerStep tasks per Step, oldest first; the rest go in the next Step, now.
    std::vector<Pending> later;
    if (pending_.size() > maxTasksPerStep_) {
        later.assign(pending_.begin() + maxTasksPerStep_, pending_.end());
        pending_.resize(maxTasksPerStep_);
    }
    std::vector<uint32_t> targets;
    std::vector<uint64_t> holds;
    if (!usingFallback_)
        decideWithAgent(targets, holds);
    if (usingFallback_)
        decideLocally(targets);
    emit(stepTasksSignal_, static_cast<long>(pending_.size()));
    std::vector<Pending> batch;
    batch.swap(pending_);
    for (size_t k = 0; k < batch.size(); k++) {
        Task t = batch[k].task;
        t.decidedAtStep = stepIndex_;
        t.decidedInEpisode = episode_;
        if (targets[k] >= apps_.size())
            throw cRuntimeError("placement of task %llu on node %u: the rack has %zu nodes",
                                (unsigned long long)t.id, targets[k], apps_.size());
        emit(remotePlacementSignal_, targets[k] != t.origin);
        batch[k].origin->dispatch(t, targets[k], holds.empty() ? 0 : holds[k]);
    }
    stepIndex_++;
    totalSteps_++;
    if (!later.empty()) {
        pending_ = std::move(later);
        scheduleAfter(SIMTIME_ZERO, decideTimer_);
    }
}

void BridgeCoordinator::decideWithAgent(std::vector<uint32_t>& targets, std::vector<uint64_t>& holds)
{
    auto b0 = std::chrono::steady_clock::now();
    fillCurrentStep(client_->nextStep());
    auto t0 = std::chrono::steady_clock::now();
    stepBuildWallSeconds_ += std::chrono::duration<double>(t0 - b0).count();
    try {
        const pb::Placement& p = client_->sendStep();  // the simulation is paused until the reply
        double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        bridgeWallSeconds_ += wall;
        emit(stepWallTimeSignal_, wall);
        targets.assign(p.targets().begin(), p.targets().end());
        holds.assign(p.hold_ns().begin(), p.hold_ns().end());
        policyVersion_ = p.policy_version();
        outcomes_.clear();
        agentSteps_++;
    }
    catch (const BridgeError& e) {
        switchToFallback(e.what());
    }
}

void BridgeCoordinator::decideLocally(std::vector<uint32_t>& targets)
{
    targets.clear();
    std::function<double()> u = [this] { return uniform(0, 1); };
    for (const Pending& p : pending_) {
        targets.push_back(fallback_->choose(p.task, p.origin->gstView(), capacity_, u));
        fallbackDecisions_++;
    }
    outcomes_.clear();  // nobody learns from them locally
}

void BridgeCoordinator::endEpisode(bool terminated)
{
    if (client_ && !usingFallback_) {
        try {
            client_->episodeEnd(buildEpisodeEnd(episode_, stepIndex_, terminated, nowNs(), outcomes_));
        }
        catch (const BridgeError& e) {
            switchToFallback(e.what());
        }
    }
    outcomes_.clear();
    episode_++;
    stepIndex_ = 0;
    episodeStart_ = simTime();
}

void BridgeCoordinator::finish()
{
    // The run was cut by its time limit: the state still has value (truncated).
    if (client_ && !usingFallback_) {
        endEpisode(false);
        if (client_->embedded()) {
            // The agent's own figures (a server keeps them in its control plane instead).
            MalcolmAgentStats a = client_->embeddedStats();
            recordScalar("agentDecisions", static_cast<double>(a.decisions));
            recordScalar("agentPlacedBehindPaused", static_cast<double>(a.placed_behind_paused));
            recordScalar("agentErrors", static_cast<double>(a.errors));
            recordScalar("learnerUpdates", static_cast<double>(a.learner_updates));
            recordScalar("learnerTransitions", static_cast<double>(a.transitions_inserted));
            recordScalar("learnerTransitionsDropped", static_cast<double>(a.transitions_dropped));
            recordScalar("learnerReplayRatio", a.samples_per_insert);
            recordScalar("learnerEnvWaitSeconds", a.env_wait_s);
        }
        try {
            client_->close("simulation finished");
        }
        catch (const BridgeError& e) {
            EV_WARN << "Close: " << e.what() << "\n";
            std::cerr << "[malcolm] Close: " << e.what() << std::endl;  // e.g. a checkpoint not saved
        }
    }
    double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - wallStart_).count();
    int64_t events = getSimulation()->getEventNumber();
    recordScalar("decisionSteps", totalSteps_);
    recordScalar("agentSteps", agentSteps_);
    recordScalar("fallbackDecisions", fallbackDecisions_);
    recordScalar("usedFallback", usingFallback_ ? 1 : 0);
    recordScalar("bridgeWallSeconds", bridgeWallSeconds_);
    recordScalar("stepBuildWallSeconds", stepBuildWallSeconds_);
    recordScalar("wallSeconds", wall);
    recordScalar("connectWallSeconds", connectWallSeconds_);
    recordScalar("eventsPerWallSecond", wall > 0 ? events / wall : 0.0);
    std::cerr << "[malcolm] " << scenario_ << ": " << events << " events in " << wall << " s wall after "
              << connectWallSeconds_ << " s connecting ("
              << (wall > 0 ? events / wall : 0.0) << " ev/s), " << totalSteps_ << " decision steps, "
              << (usingFallback_ ? "local policy '" + fallback_->name() + "'" : "agent " + endpoint_) << std::endl;
}

}  // namespace malcolm
