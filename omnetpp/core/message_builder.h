// Turns node states, pending tasks and outcomes into bridge protocol messages
// (proto/malcolm/bridge/v1/bridge.proto). No transport here: see bridge_client.h.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "heartbeat.h"
#include "malcolm/bridge/v1/bridge.pb.h"
#include "node_scheduler.h"
#include "sth.h"
#include "task.h"

namespace malcolm {

namespace pb = ::malcolm::bridge::v1;

constexpr uint64_t kNoHeartbeatAge = UINT64_MAX;

struct NodeSpecInfo
{
    uint32_t cores = 1;
    double speed = 1.0;
    std::string kind;
    Discipline discipline = Discipline::Edf;
};

struct NodeSnapshot
{
    uint32_t nodeId = 0;
    SlackHistogram sth;
    Heartbeat heartbeat;  // as the node would send it now
    double utilisation = 0;
    // The node's Global State Table; included when it originates a pending task.
    bool includeGst = false;
    std::vector<HeartbeatBytes> gst;   // N entries, zero where none received
    std::vector<uint64_t> gstAgeNs;    // N entries, kNoHeartbeatAge where none received
};

struct LinkSnapshot
{
    uint32_t linkId = 0;
    uint32_t nodeId = 0;
    bool uplink = true;
    double txRateBps = 0;
    uint64_t queueBytes = 0;
    bool pfcPaused = false;
    uint64_t ecnMarks = 0;
    uint64_t pauseFrames = 0;
    uint64_t drops = 0;
};

pb::Hello buildHello(const std::string& envId, const std::string& scenario, uint64_t seed,
                     const std::vector<NodeSpecInfo>& nodes, uint64_t heartbeatIntervalNs,
                     const std::vector<std::pair<std::string, std::string>>& parameters);
void fillSth(const SlackHistogram& sth, pb::Sth* out);
void fillHeartbeat(const Heartbeat& hb, pb::HeartbeatFields* out);
void fillOutcome(const TaskOutcomeRecord& r, pb::TaskOutcome* out);
// Fills `step` (cleared first: a reused message keeps its repeated elements, though protobuf
// frees each NodeState's submessages on Clear(), so v1 still allocates per node and Step).
void fillStep(pb::Step& step, uint64_t simTimeNs, uint64_t episode, uint64_t stepIndex,
              const std::vector<NodeSnapshot>& nodes, const std::vector<LinkSnapshot>& links,
              const std::vector<Task>& pending, const std::vector<TaskOutcomeRecord>& outcomes);
// The same Step in protocol v2's form (bridge.proto, "Versions"): `nodes` stays empty, the
// node state goes into `node_columns` (little-endian fixed-width columns, node i at index i)
// and each distinct GST once into `gst_tables` (shared by origins whose heartbeat bytes and
// ages are identical), as serve/src/synthetic.rs to_v2 makes it of the v1 Step. Reuses the
// message's buffers: nothing is allocated once warm.
void fillStepV2(pb::Step& step, uint64_t simTimeNs, uint64_t episode, uint64_t stepIndex,
                const std::vector<NodeSnapshot>& nodes, const std::vector<LinkSnapshot>& links,
                const std::vector<Task>& pending, const std::vector<TaskOutcomeRecord>& outcomes);
// Bytes per node of the v2 node columns (bridge.proto, NodeColumns).
constexpr size_t kColumnsBucketsWidth = 4 * kSthBuckets;
constexpr size_t kColumnsTotalsWidth = 20;  // u32 total_tasks, i64 min_slack_us, u64 sum_load_us
constexpr size_t kColumnsUtilisationWidth = 8;
constexpr size_t kColumnsGstTableWidth = 2;
pb::Step buildStep(uint64_t simTimeNs, uint64_t episode, uint64_t stepIndex, const std::vector<NodeSnapshot>& nodes,
                   const std::vector<LinkSnapshot>& links, const std::vector<Task>& pending,
                   const std::vector<TaskOutcomeRecord>& outcomes);
pb::EpisodeEnd buildEpisodeEnd(uint64_t episode, uint64_t steps, bool terminated, uint64_t simTimeNs,
                               const std::vector<TaskOutcomeRecord>& outcomes);

}  // namespace malcolm
