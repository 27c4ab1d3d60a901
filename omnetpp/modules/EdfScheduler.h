// OMNeT++ adapter over the framework-free node model (omnetpp/core/node_scheduler.h).
#pragma once

#include <memory>
#include <vector>

#include <omnetpp.h>

#include "message_builder.h"
#include "node_scheduler.h"

namespace malcolm {

using namespace omnetpp;

class BridgeCoordinator;

class EdfScheduler : public cSimpleModule
{
  public:
    ~EdfScheduler() override;

    // For the app and the coordinator (direct calls; all pure reads).
    SlackHistogram sth() const;
    int busyCores() const { return model_->busyCores(); }
    size_t tasksInSystem() const { return model_->tasksInSystem(); }
    uint64_t busyNs() const;
    const NodeSchedulerConfig& config() const { return model_->config(); }
    NodeSpecInfo spec() const;
    double capacity() const { return model_->config().cores * model_->config().speed; }

  protected:
    enum SelfMessageKind { KIND_POLL = 1, KIND_CORE_DONE = 2 };

    int numInitStages() const override { return 2; }
    void initialize(int stage) override;
    void handleMessage(cMessage *msg) override;
    void finish() override;

  private:
    void syncCoreTimers();
    void schedulePoll();
    void report(std::vector<TaskOutcomeRecord>& outcomes);

    std::unique_ptr<NodeScheduler> model_;
    std::string kind_;
    simtime_t pollInterval_;
    cMessage *pollTimer_ = nullptr;
    std::vector<cMessage *> coreTimers_;
    BridgeCoordinator *coordinator_ = nullptr;
    uint64_t completed_ = 0, missed_ = 0, dropped_ = 0;

    simsignal_t taskCompletedSignal_, taskMissedSignal_, taskDroppedSignal_, taskLatencySignal_, deadlineMetSignal_,
        queueLengthSignal_, busyCoresSignal_;
};

}  // namespace malcolm
