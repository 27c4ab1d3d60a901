// The application of one server (see MalcolmApp.ned). The glue of its jobs: the tasks the
// node originates (TaskSource), its heartbeats and Global State Table (core/gst.h), bulk
// background writes (core/bulk_traffic.h), the golden-heartbeat harness
// (core/golden_heartbeats.h), and the dispatch of placed tasks to their target.
#pragma once

#include <string>
#include <vector>

#include <omnetpp.h>

#include "TaskSource.h"
#include "bulk_traffic.h"
#include "golden_heartbeats.h"
#include "gst.h"
#include "heartbeat.h"
#include "task.h"

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
    // (own entry: `own`, fresh; see currentHeartbeat). Ages are kNoHeartbeatAge where none
    // was received.
    void gstSnapshot(std::vector<HeartbeatBytes>& bytes, std::vector<uint64_t>& ageNs, const Heartbeat& own) const;
    // Decoded view for local policies (own entry fresh).
    std::vector<Heartbeat> gstView() const;
    // The heartbeat this node would send now (rho: tasks in system / cores at this instant,
    // design.md section 4, the same definition as rack-sim's).
    Heartbeat currentHeartbeat() const;
    // The same from the node's STH of this instant (a caller that has it saves recomputing it).
    Heartbeat heartbeatFrom(const SlackHistogram& sth) const;
    int nodeId() const { return nodeId_; }

  protected:
    enum SelfMessageKind { KIND_ARRIVAL = 1, KIND_HEARTBEAT, KIND_MICROBURST, KIND_BULK, KIND_GOLDEN, KIND_HELD_DISPATCH };

    int numInitStages() const override { return 2; }
    void initialize(int stage) override;
    void handleMessage(cMessage *msg) override;
    void finish() override;

  private:
    void readGoldenHeartbeats(simtime_t start);
    // Gives a task made by the source an id and the arrival time now, and submits it.
    void originate(const NewTask& spec);
    void sendHeartbeats();
    void sendBulk();
    void sendGoldenVectors();
    RoceFrame *heartbeatFrame(const char *name, int dst, const HeartbeatBytes& bytes) const;
    void receiveWrite(RoceFrame *frame);
    void receiveHeartbeat(RoceFrame *frame);
    void sendToScheduler(const Task& task);

    int nodeId_ = 0, numNodes_ = 0;
    uint64_t nextTaskSeq_ = 0;
    TaskSource tasks_;
    int dataPriority_ = 3, hbPriority_ = 6;
    simtime_t heartbeatInterval_;
    GlobalStateTable gst_;
    BulkTraffic bulk_;
    simtime_t bulkInterval_;
    int bulkSent_ = 0;
    // Golden heartbeat check: node 0 sends every row, node 1 compares what arrives.
    bool golden_ = false;
    std::vector<GoldenHeartbeat> goldenRows_;
    long goldenMatched_ = 0, goldenMismatched_ = 0;

    cMessage *arrivalTimer_ = nullptr, *heartbeatTimer_ = nullptr, *microburstTimer_ = nullptr, *bulkTimer_ = nullptr,
             *goldenTimer_ = nullptr;
    BridgeCoordinator *coordinator_ = nullptr;
    EdfScheduler *scheduler_ = nullptr;

    simsignal_t taskGeneratedSignal_, heartbeatSentSignal_, heartbeatAgeSignal_, writeLatencySignal_, bulkReceivedSignal_;
};

}  // namespace malcolm
