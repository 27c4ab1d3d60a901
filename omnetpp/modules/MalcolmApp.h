// The application of one server (see MalcolmApp.ned): workload, heartbeats/GST, dispatch.
#pragma once

#include <map>
#include <string>
#include <vector>

#include <omnetpp.h>

#include "heartbeat.h"
#include "task.h"
#include "task_trace.h"
#include "workload.h"

namespace malcolm {

using namespace omnetpp;

class BridgeCoordinator;
class EdfScheduler;
class RoceFrame;

class MalcolmApp : public cSimpleModule
{
  public:
    ~MalcolmApp() override;

    // Called by the coordinator with a task's placement; holdNs delays the dispatch (probe cost).
    void dispatch(const Task& task, uint32_t target, uint64_t holdNs);
    // This node's Global State Table: last heartbeat bytes from every node and their age
    // (own entry: fresh). Ages are kNoHeartbeatAge where none was received.
    void gstSnapshot(std::vector<HeartbeatBytes>& bytes, std::vector<uint64_t>& ageNs) const;
    // Decoded view for local policies (own entry fresh).
    std::vector<Heartbeat> gstView() const;
    // The heartbeat this node would send now (rho: tasks in system / cores at this instant,
    // design.md section 4, the same definition as rack-sim's).
    Heartbeat currentHeartbeat() const;
    int nodeId() const { return nodeId_; }

  protected:
    enum SelfMessageKind { KIND_ARRIVAL = 1, KIND_HEARTBEAT, KIND_MICROBURST, KIND_BULK, KIND_GOLDEN, KIND_HELD_DISPATCH };

    int numInitStages() const override { return 2; }
    void initialize(int stage) override;
    void handleMessage(cMessage *msg) override;
    void finish() override;

  private:
    void readServiceLaw();
    void readServiceEstimate();
    // The estimate of a task of `taskClass` with true service `serviceNs` (own RNG stream).
    uint64_t estimateOf(uint32_t taskClass, uint64_t serviceNs);
    void loadTrace(const std::string& path);
    void scheduleNextArrival();
    void generateTask(uint64_t serviceNs, uint64_t estimateNs, uint64_t deadlineNs, uint32_t sizeBytes,
                      uint32_t taskClass);
    void sendHeartbeats();
    void sendBulk();
    void sendGoldenVectors();
    void receiveWrite(RoceFrame *frame);
    void sendToScheduler(const Task& task, uint32_t target);

    int nodeId_ = 0, numNodes_ = 0;
    uint64_t nextTaskSeq_ = 0;
    ServiceLaw law_;
    ServiceEstimate estimate_;
    // Mean true service per class, ns (class-mean estimates): the law's mean for class 0, the
    // micro-burst service for class 1, a trace's own per-class means for replayed tasks.
    std::map<uint32_t, double> classMeanNs_;
    double deadlineFactor_ = 3;
    double arrivalRatePerS_ = 0;  // this node's Poisson rate
    simtime_t stopTime_;
    std::vector<TraceTask> trace_;  // this node's tasks of the trace
    size_t traceNext_ = 0;
    bool useTrace_ = false;
    int dataPriority_ = 3, hbPriority_ = 6;
    simtime_t heartbeatInterval_;
    int bulkTarget_ = -1, bulkCount_ = -1, bulkSent_ = 0;
    uint32_t bulkBytes_ = 0;
    simtime_t bulkInterval_, microburstPeriod_;
    uint64_t microburstServiceNs_ = 0, microburstDeadlineNs_ = 0;
    int microburstSize_ = 0;
    std::vector<HeartbeatBytes> gst_;
    std::vector<simtime_t> gstReceivedAt_;
    // Golden heartbeat check (receiver side).
    std::vector<std::string> goldenHex_;
    long goldenMatched_ = 0, goldenMismatched_ = 0;

    cMessage *arrivalTimer_ = nullptr, *heartbeatTimer_ = nullptr, *microburstTimer_ = nullptr, *bulkTimer_ = nullptr,
             *goldenTimer_ = nullptr;
    BridgeCoordinator *coordinator_ = nullptr;
    EdfScheduler *scheduler_ = nullptr;

    simsignal_t taskGeneratedSignal_, heartbeatSentSignal_, heartbeatAgeSignal_, writeLatencySignal_, bulkReceivedSignal_;
};

}  // namespace malcolm
