// The rack's decision point and the bridge to the agent server (see BridgeCoordinator.ned).
#pragma once

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <omnetpp.h>

#include "bridge_client.h"
#include "fallback_policy.h"
#include "message_builder.h"

namespace malcolm {

using namespace omnetpp;

class MalcolmApp;
class EdfScheduler;
class RoCEv2Nic;
class TorSwitch;

class BridgeCoordinator : public cSimpleModule
{
  public:
    ~BridgeCoordinator() override;

    // A new task at `origin` waits for a placement (decided within decisionBatchWindow).
    void submit(MalcolmApp *origin, const Task& task);
    // A task left a node (completed, missed or dropped); goes into the next Step.
    void reportOutcome(const TaskOutcomeRecord& outcome);
    // Sum over nodes of cores x speed (reference cores), known from initialize stage 0.
    double rackCapacity() const { return rackCapacity_; }
    uint64_t policyVersion() const { return policyVersion_; }

  protected:
    enum SelfMessageKind { KIND_DECIDE = 1 };

    int numInitStages() const override { return 3; }
    void initialize(int stage) override;
    void handleMessage(cMessage *msg) override;
    void finish() override;

  private:
    struct Pending
    {
        Task task;
        MalcolmApp *origin;
    };

    void connectAgent();
    void decide();
    void decideWithAgent(std::vector<uint32_t>& targets, std::vector<uint64_t>& holds);
    void decideLocally(std::vector<uint32_t>& targets);
    void switchToFallback(const std::string& why);
    // Fills `out` with the Step of pending_'s batch (scratch vectors reused between Steps).
    void fillCurrentStep(pb::Step& out);
    void endEpisode(bool terminated);

    std::vector<MalcolmApp *> apps_;
    std::vector<EdfScheduler *> schedulers_;
    std::vector<RoCEv2Nic *> nics_;
    // Switch and port behind which each node sits (its downlink), when the network has one.
    std::vector<std::pair<TorSwitch *, int>> downlinks_;
    std::vector<NodeSpecInfo> specs_;
    std::vector<double> capacity_;
    double rackCapacity_ = 0;

    std::unique_ptr<BridgeClient> client_;
    std::optional<FallbackPolicy> fallback_;
    std::string endpoint_, scenario_;
    bool usingFallback_ = false;
    uint64_t policyVersion_ = 0;
    simtime_t batchWindow_, episodeLength_, episodeStart_;
    size_t maxTasksPerStep_ = 64;
    uint64_t episode_ = 0, stepIndex_ = 0, totalSteps_ = 0, agentSteps_ = 0, fallbackDecisions_ = 0;
    std::vector<Pending> pending_;
    std::vector<TaskOutcomeRecord> outcomes_;
    std::vector<uint64_t> busyAtLastStep_;
    // Scratch of fillCurrentStep, kept to avoid allocating per Step.
    std::vector<NodeSnapshot> stepNodes_;
    std::vector<LinkSnapshot> stepLinks_;
    std::vector<Task> stepTasks_;
    simtime_t lastStepTime_;
    double bridgeWallSeconds_ = 0;
    double stepBuildWallSeconds_ = 0;  // building the Steps the agent is sent (wall clock)
    std::chrono::steady_clock::time_point wallStart_;  // after the agent is connected
    double connectWallSeconds_ = 0;                     // loading/connecting the agent, Hello
    cMessage *decideTimer_ = nullptr;

    simsignal_t stepTasksSignal_, stepWallTimeSignal_, remotePlacementSignal_;
};

}  // namespace malcolm
