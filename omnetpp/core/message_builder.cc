#include "message_builder.h"

#include <cstring>
#include <stdexcept>

namespace malcolm {

pb::Hello buildHello(const std::string& envId, const std::string& scenario, uint64_t seed,
                     const std::vector<NodeSpecInfo>& nodes, uint64_t heartbeatIntervalNs,
                     const std::vector<std::pair<std::string, std::string>>& parameters)
{
    if (nodes.empty() || nodes.size() > 256)
        throw std::invalid_argument("buildHello: a rack has 1..256 nodes");
    pb::Hello hello;
    hello.set_env_id(envId);
    hello.set_simulator("omnetpp");
    hello.set_scenario(scenario);
    hello.set_seed(seed);
    for (size_t i = 0; i < nodes.size(); i++) {
        pb::NodeSpec* n = hello.add_nodes();
        n->set_node_id(static_cast<uint32_t>(i));
        n->set_cores(nodes[i].cores);
        n->set_speed(nodes[i].speed);
        n->set_kind(nodes[i].kind);
        switch (nodes[i].discipline) {
            case Discipline::Edf: n->set_discipline(pb::DISCIPLINE_EDF); break;
            case Discipline::Fcfs: n->set_discipline(pb::DISCIPLINE_FCFS); break;
            case Discipline::ProcessorSharing: n->set_discipline(pb::DISCIPLINE_PROCESSOR_SHARING); break;
        }
    }
    hello.mutable_sth()->set_buckets(kSthBuckets);
    hello.mutable_sth()->set_fine_width_us(static_cast<uint32_t>(kSthFineWidthUs));
    hello.mutable_sth()->set_critical_us(static_cast<uint32_t>(kSthCriticalUs));
    hello.set_heartbeat_interval_ns(heartbeatIntervalNs);
    for (const auto& kv : parameters)
        (*hello.mutable_parameters())[kv.first] = kv.second;
    return hello;
}

void fillSth(const SlackHistogram& sth, pb::Sth* out)
{
    out->clear_buckets();
    for (uint32_t c : sth.buckets())
        out->add_buckets(c);
    out->set_total_tasks(sth.totalTasks());
    out->set_min_slack_us(sth.minSlackOrZero());
    out->set_sum_load_us(sth.sumLoadUs());
}

void fillHeartbeat(const Heartbeat& hb, pb::HeartbeatFields* out)
{
    out->set_node_id(hb.nodeId);
    out->set_flags(hb.flags);
    out->set_load_factor_milli(hb.loadFactor);
    out->set_slack_p10_us(hb.slackP10Us);
    out->set_slack_p50_us(hb.slackP50Us);
    out->set_queue_len(hb.queueLen);
    out->set_policy_version(hb.reserved);
}

void fillOutcome(const TaskOutcomeRecord& r, pb::TaskOutcome* out)
{
    out->set_task_id(r.task.id);
    out->set_node_id(r.nodeId);
    out->set_origin(r.task.origin);
    switch (r.kind) {
        case OutcomeKind::Completed: out->set_kind(pb::OUTCOME_KIND_COMPLETED); break;
        case OutcomeKind::Missed: out->set_kind(pb::OUTCOME_KIND_MISSED); break;
        case OutcomeKind::Dropped: out->set_kind(pb::OUTCOME_KIND_DROPPED); break;
    }
    out->set_arrival_ns(r.task.arrivalNs);
    out->set_finish_ns(r.finishNs);
    out->set_deadline_ns(r.task.deadlineNs);
    out->set_latency_ns(r.latencyNs());
    out->set_class_(r.task.taskClass);
    out->set_decided_at_step(r.task.decidedAtStep);
}

pb::Step buildStep(uint64_t simTimeNs, uint64_t episode, uint64_t stepIndex, const std::vector<NodeSnapshot>& nodes,
                   const std::vector<LinkSnapshot>& links, const std::vector<Task>& pending,
                   const std::vector<TaskOutcomeRecord>& outcomes)
{
    pb::Step step;
    fillStep(step, simTimeNs, episode, stepIndex, nodes, links, pending, outcomes);
    return step;
}

namespace {

// The parts v1 and v2 share: header, links, pending tasks, outcomes (after the node checks).
void fillStepCommon(pb::Step& step, uint64_t simTimeNs, uint64_t episode, uint64_t stepIndex,
                    const std::vector<NodeSnapshot>& nodes, const std::vector<LinkSnapshot>& links,
                    const std::vector<Task>& pending, const std::vector<TaskOutcomeRecord>& outcomes)
{
    step.set_sim_time_ns(simTimeNs);
    step.set_episode(episode);
    step.set_step_index(stepIndex);
    for (const LinkSnapshot& l : links) {
        pb::LinkState* p = step.add_links();
        p->set_link_id(l.linkId);
        p->set_node_id(l.nodeId);
        p->set_uplink(l.uplink);
        p->set_tx_rate_bps(l.txRateBps);
        p->set_queue_bytes(l.queueBytes);
        p->set_pfc_paused(l.pfcPaused);
        p->set_ecn_marks(l.ecnMarks);
        p->set_pause_frames(l.pauseFrames);
        p->set_drops(l.drops);
    }
    for (const Task& t : pending) {
        if (t.origin >= nodes.size())
            throw std::invalid_argument("buildStep: pending task origin out of range");
        pb::PendingTask* p = step.add_tasks();
        p->set_task_id(t.id);
        p->set_origin(t.origin);
        p->set_size_bytes(t.sizeBytes);
        p->set_service_estimate_ns(t.estimateNs);  // the estimate only: the true time never leaves the env
        p->set_deadline_ns(t.deadlineNs);
        p->set_arrival_ns(t.arrivalNs);
        p->set_class_(t.taskClass);
    }
    for (const TaskOutcomeRecord& r : outcomes)
        fillOutcome(r, step.add_outcomes());
}

void checkNode(const NodeSnapshot& s, size_t i, size_t n)
{
    if (s.nodeId != i)
        throw std::invalid_argument("buildStep: node states must be in node-id order");
    if (s.includeGst && (s.gst.size() != n || s.gstAgeNs.size() != n))
        throw std::invalid_argument("buildStep: a GST has one entry per node");
}

static_assert(sizeof(HeartbeatBytes) == kHeartbeatLen, "GST entries are contiguous 16-byte heartbeats");

// Node `s`'s GST (heartbeat bytes and ages) into `g`, the same in v1 (per origin) and v2 (per
// distinct table); a reused message keeps its buffers.
void fillGst(const NodeSnapshot& s, pb::GlobalStateView* g)
{
    g->mutable_heartbeats()->assign(reinterpret_cast<const char*>(s.gst.data()), s.gst.size() * kHeartbeatLen);
    g->clear_age_ns();
    g->mutable_age_ns()->Reserve(static_cast<int>(s.gstAgeNs.size()));
    for (uint64_t age : s.gstAgeNs)
        g->add_age_ns(age);
}

// Little-endian stores, whatever the host's byte order.
void putLE(char* out, uint64_t v, size_t bytes)
{
    for (size_t b = 0; b < bytes; b++)
        out[b] = static_cast<char>((v >> (8 * b)) & 0xff);
}

// A column of `n` records of `width` bytes, its capacity kept from the previous Step.
char* column(std::string* col, size_t n, size_t width)
{
    col->resize(n * width);
    return n == 0 ? nullptr : &(*col)[0];
}

// Node `s`'s table already in the Step (same heartbeat bytes and ages), as 1 + its index; 0 if none.
uint16_t sharedTable(const pb::Step& step, const NodeSnapshot& s)
{
    const size_t n = s.gstAgeNs.size();
    for (int k = 0; k < step.gst_tables_size(); k++) {
        const pb::GlobalStateView& t = step.gst_tables(k);
        // Ages first: they differ sooner than the bytes between origins that heard different
        // heartbeats at different times.
        if (std::memcmp(t.age_ns().data(), s.gstAgeNs.data(), n * sizeof(uint64_t)) == 0 &&
            std::memcmp(t.heartbeats().data(), s.gst.data(), n * kHeartbeatLen) == 0)
            return static_cast<uint16_t>(k + 1);
    }
    return 0;
}

}  // namespace

void fillStep(pb::Step& step, uint64_t simTimeNs, uint64_t episode, uint64_t stepIndex,
              const std::vector<NodeSnapshot>& nodes, const std::vector<LinkSnapshot>& links,
              const std::vector<Task>& pending, const std::vector<TaskOutcomeRecord>& outcomes)
{
    step.Clear();
    for (size_t i = 0; i < nodes.size(); i++) {
        const NodeSnapshot& s = nodes[i];
        checkNode(s, i, nodes.size());
        pb::NodeState* n = step.add_nodes();
        n->set_node_id(s.nodeId);
        fillSth(s.sth, n->mutable_sth());
        fillHeartbeat(s.heartbeat, n->mutable_heartbeat());
        n->set_utilisation(s.utilisation);
        if (s.includeGst)
            fillGst(s, n->mutable_gst());
    }
    fillStepCommon(step, simTimeNs, episode, stepIndex, nodes, links, pending, outcomes);
}

void fillStepV2(pb::Step& step, uint64_t simTimeNs, uint64_t episode, uint64_t stepIndex,
                const std::vector<NodeSnapshot>& nodes, const std::vector<LinkSnapshot>& links,
                const std::vector<Task>& pending, const std::vector<TaskOutcomeRecord>& outcomes)
{
    // Not step.Clear(): that deletes node_columns (a proto3 submessage). The repeated fields
    // keep their cleared elements, the columns their strings, for the next Step.
    step.clear_nodes();
    step.clear_links();
    step.clear_tasks();
    step.clear_outcomes();
    step.clear_gst_tables();
    const size_t n = nodes.size();
    pb::NodeColumns* cols = step.mutable_node_columns();
    char* hb = column(cols->mutable_heartbeats(), n, kHeartbeatLen);
    char* buckets = column(cols->mutable_sth_buckets(), n, kColumnsBucketsWidth);
    char* totals = column(cols->mutable_sth_totals(), n, kColumnsTotalsWidth);
    char* util = column(cols->mutable_utilisation(), n, kColumnsUtilisationWidth);
    char* table = column(cols->mutable_gst_table(), n, kColumnsGstTableWidth);
    for (size_t i = 0; i < n; i++) {
        const NodeSnapshot& s = nodes[i];
        checkNode(s, i, n);
        // The payload's own saturating encoding: the same bytes the v1 fields pack into.
        HeartbeatBytes bytes = s.heartbeat.encode();
        std::memcpy(hb + i * kHeartbeatLen, bytes.data(), kHeartbeatLen);
        char* b = buckets + i * kColumnsBucketsWidth;
        for (int k = 0; k < kSthBuckets; k++)
            putLE(b + 4 * k, s.sth.buckets()[k], 4);
        char* t = totals + i * kColumnsTotalsWidth;
        putLE(t, s.sth.totalTasks(), 4);
        putLE(t + 4, static_cast<uint64_t>(s.sth.minSlackOrZero()), 8);
        putLE(t + 12, s.sth.sumLoadUs(), 8);
        uint64_t u;
        std::memcpy(&u, &s.utilisation, sizeof u);
        putLE(util + i * kColumnsUtilisationWidth, u, 8);
        uint16_t index = 0;
        if (s.includeGst) {
            index = sharedTable(step, s);
            if (index == 0) {
                fillGst(s, step.add_gst_tables());
                index = static_cast<uint16_t>(step.gst_tables_size());
            }
        }
        putLE(table + i * kColumnsGstTableWidth, index, 2);
    }
    fillStepCommon(step, simTimeNs, episode, stepIndex, nodes, links, pending, outcomes);
}

pb::EpisodeEnd buildEpisodeEnd(uint64_t episode, uint64_t steps, bool terminated, uint64_t simTimeNs,
                               const std::vector<TaskOutcomeRecord>& outcomes)
{
    pb::EpisodeEnd end;
    end.set_episode(episode);
    end.set_steps(steps);
    end.set_reason(terminated ? pb::END_REASON_TERMINATED : pb::END_REASON_TRUNCATED);
    end.set_sim_time_ns(simTimeNs);
    for (const TaskOutcomeRecord& r : outcomes)
        fillOutcome(r, end.add_outcomes());
    return end;
}

}  // namespace malcolm
