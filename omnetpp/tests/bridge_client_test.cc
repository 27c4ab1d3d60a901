#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <sstream>
#include <thread>

#include "bridge_client.h"
#include "message_builder.h"

using namespace malcolm;
using Clock = std::chrono::steady_clock;

namespace {

int freeTcpPort()
{
    int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = 0;
    ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
    socklen_t len = sizeof a;
    ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
    int port = ntohs(a.sin_port);
    ::close(fd);
    return port;
}

pb::Hello smallHello(int nodes)
{
    std::vector<NodeSpecInfo> specs(nodes, NodeSpecInfo{4, 1.0, "fast", Discipline::Edf});
    return buildHello("omnetpp-test", "unit", 7, specs, 50000, {{"rho", "0.5"}});
}

std::vector<Task> pendingTasks(int nodes, uint64_t index, int tasks)
{
    std::vector<Task> pending;
    for (int k = 0; k < tasks; k++) {
        Task t;
        t.id = index * 100 + k;
        t.origin = uint32_t(k % nodes);
        t.sizeBytes = 1024;
        t.serviceRefNs = 10000;
        t.estimateNs = 10000;
        t.arrivalNs = 1000 * index;
        t.deadlineNs = t.arrivalNs + 30000;
        pending.push_back(t);
    }
    return pending;
}

// The Step in the session's protocol version (v1: buildStep's form, v2: fillStepV2's).
pb::Step stepFor(uint32_t version, uint64_t simTimeNs, uint64_t episode, uint64_t index,
                 const std::vector<NodeSnapshot>& snaps, const std::vector<Task>& pending)
{
    pb::Step step;
    if (version >= kProtocolV2)
        fillStepV2(step, simTimeNs, episode, index, snaps, {}, pending, {});
    else
        fillStep(step, simTimeNs, episode, index, snaps, {}, pending, {});
    return step;
}

pb::Step smallStep(int nodes, uint64_t index, int tasks, uint32_t version = kProtocolV1)
{
    std::vector<NodeSnapshot> snaps(nodes);
    for (int i = 0; i < nodes; i++) {
        snaps[i].nodeId = uint32_t(i);
        snaps[i].heartbeat = Heartbeat::fromSth(uint8_t(i), snaps[i].sth, 0.1, false, 0);
        snaps[i].includeGst = true;
        snaps[i].gst.assign(nodes, HeartbeatBytes{});
        snaps[i].gstAgeNs.assign(nodes, kNoHeartbeatAge);
    }
    return stepFor(version, 1000 * index, 0, index, snaps, pendingTasks(nodes, index, tasks));
}

// A rack whose nodes differ from each other and from Step to Step (queues, heartbeats, the
// origins' stale views), so that a policy's placements depend on the node state and the GSTs.
pb::Step variedStep(int nodes, uint64_t episode, uint64_t index, int tasks, uint32_t version)
{
    const uint64_t now = 1000000 * episode + 20000 * (index + 1);
    std::vector<NodeSnapshot> snaps(nodes);
    std::vector<HeartbeatBytes> fresh;
    for (int i = 0; i < nodes; i++) {
        NodeSnapshot& s = snaps[i];
        s.nodeId = uint32_t(i);
        int queued = int((i * 7 + index * 3) % 6);
        for (int k = 0; k < queued; k++)
            s.sth.add(int64_t((i * 13 + k * 37 + index * 5) % 90) - 10, 5 + k);
        s.heartbeat = Heartbeat::fromSth(uint8_t(i), s.sth, queued / 4.0, queued > 0, uint32_t(index / 3));
        s.utilisation = (queued % 4) / 4.0;
        fresh.push_back(s.heartbeat.encode());
    }
    std::vector<Task> pending = pendingTasks(nodes, index, tasks);
    for (Task& t : pending) {
        t.origin = uint32_t((t.id * 5 + index) % nodes);
        t.arrivalNs = now - 1000;
        t.deadlineNs = now + 10000 + 3000 * (t.id % 7);
    }
    for (const Task& t : pending) {
        NodeSnapshot& s = snaps[t.origin];
        s.includeGst = true;
        s.gst = fresh;
        s.gstAgeNs.assign(nodes, 0);
        for (int j = 0; j < nodes; j++)  // a view some heartbeats old, never heard from node 0 at first
            s.gstAgeNs[j] = (index == 0 && j == 0) ? kNoHeartbeatAge : 1000 * ((t.origin + j) % 3);
        if (index == 0)
            s.gst[0] = HeartbeatBytes{};
    }
    return stepFor(version, now, episode, index, snaps, pending);
}

// A fake agent: a ROUTER in a thread answering every request; `misbehave` first sends a
// reply with a wrong request id (which the client must discard), or an Error for Steps.
class FakeAgent
{
  public:
    enum class Mode { Good, StaleFirst, ErrorOnStep };
    // `welcomeVersion`: the Welcome's protocol_version (0, as from an agent that predates
    // negotiation, means 1); `replyVersion`: what later replies carry (0: the session's).
    explicit FakeAgent(Mode mode, uint32_t welcomeVersion = 0, uint32_t replyVersion = 0)
        : socket_(context_, zmq::socket_type::router), mode_(mode), welcomeVersion_(welcomeVersion),
          replyVersion_(replyVersion ? replyVersion : std::max(welcomeVersion, kProtocolV1))
    {
        socket_.set(zmq::sockopt::linger, 0);
        socket_.set(zmq::sockopt::rcvtimeo, 100);
        socket_.bind("tcp://127.0.0.1:*");
        endpoint_ = socket_.get(zmq::sockopt::last_endpoint);
        thread_ = std::thread([this] { serve(); });
    }
    ~FakeAgent()
    {
        stop_ = true;
        thread_.join();
    }
    const std::string& endpoint() const { return endpoint_; }
    std::atomic<int> requests{0};
    std::atomic<int> sawDelimiter{0};
    // What the client sent (read after the requests are answered).
    std::vector<uint32_t> offeredVersions;
    std::vector<uint32_t> requestVersions;

  private:
    void reply(const std::vector<zmq::message_t>& frames, const pb::Envelope& env)
    {
        std::string bytes = env.SerializeAsString();
        for (size_t i = 0; i + 1 < frames.size(); i++)  // identity and any delimiter
            socket_.send(zmq::buffer(frames[i].data(), frames[i].size()), zmq::send_flags::sndmore);
        socket_.send(zmq::buffer(bytes), zmq::send_flags::none);
    }
    void serve()
    {
        while (!stop_) {
            std::vector<zmq::message_t> frames;
            zmq::message_t f;
            if (!socket_.recv(f))
                continue;
            bool more = f.more();
            frames.push_back(std::move(f));
            while (more) {
                zmq::message_t g;
                (void)socket_.recv(g);
                more = g.more();
                frames.push_back(std::move(g));
            }
            if (frames.size() == 3 && frames[1].size() == 0)
                sawDelimiter++;
            pb::Envelope req;
            req.ParseFromArray(frames.back().data(), int(frames.back().size()));
            requestVersions.push_back(req.protocol_version());
            pb::Envelope rep;
            rep.set_protocol_version(req.has_hello() ? kProtocolV1 : replyVersion_);
            rep.set_request_id(req.request_id());
            if (req.has_hello()) {
                rep.mutable_welcome()->set_session_id(11);
                rep.mutable_welcome()->set_policy("fake");
                rep.mutable_welcome()->set_protocol_version(welcomeVersion_);
                nodes_ = req.hello().nodes_size();
                offeredVersions.assign(req.hello().protocol_versions().begin(), req.hello().protocol_versions().end());
            }
            else if (req.has_step()) {
                if (mode_ == Mode::ErrorOnStep) {
                    rep.mutable_error()->set_code(pb::ERROR_CODE_INVALID_NODE_ID);
                    rep.mutable_error()->set_message("node 9 out of range");
                }
                else {
                    if (mode_ == Mode::StaleFirst) {
                        pb::Envelope stale = rep;
                        stale.set_request_id(req.request_id() - 1);
                        stale.mutable_placement()->add_targets(0);
                        reply(frames, stale);
                    }
                    rep.mutable_placement()->set_step_index(req.step().step_index());
                    rep.mutable_placement()->set_policy_version(5);
                    for (const auto& t : req.step().tasks())
                        rep.mutable_placement()->add_targets((t.origin() + 1) % nodes_);
                }
            }
            else {
                rep.mutable_ack();
            }
            requests++;  // after the writes above, before the reply: a test reads it first
            reply(frames, rep);
        }
    }
    zmq::context_t context_{1};
    zmq::socket_t socket_;
    Mode mode_;
    uint32_t welcomeVersion_, replyVersion_;
    std::string endpoint_;
    std::thread thread_;
    std::atomic<bool> stop_{false};
    int nodes_ = 1;
};

}  // namespace

TEST(BridgeClient, TimesOutWhenNobodyListens)
{
    BridgeClientOptions o;
    o.endpoint = "tcp://127.0.0.1:" + std::to_string(freeTcpPort());
    o.timeoutMs = 200;
    BridgeClient client(o);
    auto t0 = Clock::now();
    try {
        client.hello(smallHello(2));
        FAIL() << "hello returned without an agent";
    }
    catch (const BridgeError& e) {
        EXPECT_EQ(e.code(), BridgeError::Code::Timeout);
        EXPECT_NE(std::string(e.what()).find("no reply from agent"), std::string::npos) << e.what();
    }
    auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t0).count();
    EXPECT_GE(ms, 190);
    EXPECT_LT(ms, 2000);
}

TEST(BridgeClient, BadEndpointIsATransportError)
{
    BridgeClientOptions o;
    o.endpoint = "nonsense://x";
    try {
        BridgeClient client(o);
        FAIL() << "connected to a nonsense endpoint";
    }
    catch (const BridgeError& e) {
        EXPECT_EQ(e.code(), BridgeError::Code::Transport);
    }
}

TEST(BridgeClient, RoundTripAgainstFakeAgent)
{
    FakeAgent agent(FakeAgent::Mode::Good);
    BridgeClientOptions o;
    o.endpoint = agent.endpoint();
    o.timeoutMs = 2000;
    BridgeClient client(o);
    pb::Welcome w = client.hello(smallHello(4));
    EXPECT_EQ(w.session_id(), 11u);
    EXPECT_EQ(w.policy(), "fake");
    for (uint64_t i = 0; i < 3; i++) {
        pb::Placement p = client.step(smallStep(4, i, 5));
        ASSERT_EQ(p.targets_size(), 5);
        EXPECT_EQ(p.step_index(), i);
        for (int k = 0; k < 5; k++)
            EXPECT_EQ(p.targets(k), uint32_t((k % 4 + 1) % 4));
    }
    client.episodeEnd(buildEpisodeEnd(0, 3, false, 5000, {}));
    client.close("done");
    EXPECT_EQ(client.lastRequestId(), 6u);
    EXPECT_EQ(agent.requests.load(), 6);
    EXPECT_EQ(agent.sawDelimiter.load(), 6);  // REQ-compatible framing
    // An agent whose Welcome names no version speaks v1.
    EXPECT_EQ(agent.offeredVersions, (std::vector<uint32_t>{1, 2}));
    EXPECT_EQ(client.protocolVersion(), 1u);
    EXPECT_EQ(agent.requestVersions, std::vector<uint32_t>(6, 1));
}

TEST(BridgeClient, AdoptsTheVersionTheWelcomeNames)
{
    FakeAgent agent(FakeAgent::Mode::Good, 2);
    BridgeClientOptions o;
    o.endpoint = agent.endpoint();
    o.timeoutMs = 2000;
    BridgeClient client(o);
    EXPECT_EQ(client.protocolVersion(), 1u);
    client.hello(smallHello(3));
    EXPECT_EQ(client.protocolVersion(), 2u);
    EXPECT_EQ(client.step(smallStep(3, 0, 2, client.protocolVersion())).targets_size(), 2);
    client.close("done");
    ASSERT_EQ(agent.requests.load(), 3);
    // The Hello in v1 (any agent reads it), the rest in the session's version.
    EXPECT_EQ(agent.requestVersions, (std::vector<uint32_t>{1, 2, 2}));
    EXPECT_EQ(agent.offeredVersions, (std::vector<uint32_t>{1, 2}));
}

TEST(BridgeClient, ForcedV1OffersOnlyV1)
{
    FakeAgent agent(FakeAgent::Mode::Good, 1);
    BridgeClientOptions o;
    o.endpoint = agent.endpoint();
    o.timeoutMs = 2000;
    o.maxProtocolVersion = 1;
    BridgeClient client(o);
    client.hello(smallHello(3));
    EXPECT_EQ(client.protocolVersion(), 1u);
    EXPECT_EQ(client.step(smallStep(3, 0, 2)).targets_size(), 2);
    ASSERT_EQ(agent.requests.load(), 2);
    EXPECT_EQ(agent.offeredVersions, (std::vector<uint32_t>{1}));
    EXPECT_EQ(agent.requestVersions, (std::vector<uint32_t>{1, 1}));
    for (uint32_t bad : {0u, 3u}) {
        o.maxProtocolVersion = bad;
        EXPECT_THROW(BridgeClient{o}, BridgeError) << bad;
    }
}

TEST(BridgeClient, AVersionNotOfferedIsABadReply)
{
    FakeAgent agent(FakeAgent::Mode::Good, 2);  // answers v2 to a client that offered [1]
    BridgeClientOptions o;
    o.endpoint = agent.endpoint();
    o.timeoutMs = 2000;
    o.maxProtocolVersion = 1;
    BridgeClient client(o);
    try {
        client.hello(smallHello(2));
        FAIL() << "a Welcome naming v2 was accepted after offering v1 only";
    }
    catch (const BridgeError& e) {
        EXPECT_EQ(e.code(), BridgeError::Code::BadReply);
        EXPECT_NE(std::string(e.what()).find("agent chose protocol version 2"), std::string::npos) << e.what();
    }
}

TEST(BridgeClient, AReplyInAnotherVersionIsABadReply)
{
    FakeAgent agent(FakeAgent::Mode::Good, 2, 1);  // negotiates v2, then answers in v1
    BridgeClientOptions o;
    o.endpoint = agent.endpoint();
    o.timeoutMs = 2000;
    BridgeClient client(o);
    client.hello(smallHello(2));
    try {
        client.step(smallStep(2, 0, 1, kProtocolV2));
        FAIL() << "a v1 reply in a v2 session was accepted";
    }
    catch (const BridgeError& e) {
        EXPECT_EQ(e.code(), BridgeError::Code::BadReply);
        EXPECT_NE(std::string(e.what()).find("reply carries protocol version 1, the session speaks 2"),
                  std::string::npos)
            << e.what();
    }
}

TEST(BridgeClient, ReplyWithWrongRequestIdIsDiscarded)
{
    FakeAgent agent(FakeAgent::Mode::StaleFirst);
    BridgeClientOptions o;
    o.endpoint = agent.endpoint();
    o.timeoutMs = 2000;
    BridgeClient client(o);
    client.hello(smallHello(3));
    pb::Placement p = client.step(smallStep(3, 0, 2));
    EXPECT_EQ(p.targets_size(), 2);  // the stale one had a single target
    EXPECT_EQ(client.discardedReplies(), 1u);
}

TEST(BridgeClient, AgentErrorBecomesBridgeErrorWithCode)
{
    FakeAgent agent(FakeAgent::Mode::ErrorOnStep);
    BridgeClientOptions o;
    o.endpoint = agent.endpoint();
    o.timeoutMs = 2000;
    BridgeClient client(o);
    client.hello(smallHello(2));
    try {
        client.step(smallStep(2, 0, 1));
        FAIL() << "error reply accepted";
    }
    catch (const BridgeError& e) {
        EXPECT_EQ(e.code(), BridgeError::Code::AgentError);
        EXPECT_EQ(e.agentCode(), pb::ERROR_CODE_INVALID_NODE_ID);
        EXPECT_NE(std::string(e.what()).find("node 9 out of range"), std::string::npos);
    }
}

namespace {

// The agent server binary (MALCOLM_AGENT_SERVER_BIN) serving `endpoint` until destroyed.
class AgentServer
{
  public:
    AgentServer(const std::string& bin, const std::string& endpoint, const std::string& extraArgs)
    {
        std::vector<std::string> args{bin, "serve", "--bind", endpoint};
        std::istringstream in(extraArgs);
        for (std::string a; in >> a;)
            args.push_back(a);
        pid_ = fork();
        if (pid_ < 0)
            throw std::runtime_error("fork failed");
        if (pid_ == 0) {
            std::vector<char*> argv;
            for (auto& a : args)
                argv.push_back(a.data());
            argv.push_back(nullptr);
            execv(bin.c_str(), argv.data());
            _exit(127);
        }
    }
    ~AgentServer()
    {
        kill(pid_, SIGTERM);
        int status;
        waitpid(pid_, &status, 0);
    }

  private:
    pid_t pid_ = -1;
};

const char* agentServerBin()
{
    const char* bin = std::getenv("MALCOLM_AGENT_SERVER_BIN");
    return bin && *bin ? bin : nullptr;
}

constexpr const char* kNoServerBin =
    "MALCOLM_AGENT_SERVER_BIN is not set: skipping the round trip against the real agent server "
    "(set it to the agent-server binary, e.g. target/release/agent-server)";

BridgeClientOptions serverOptions(const std::string& endpoint, uint32_t maxVersion)
{
    BridgeClientOptions o;
    o.endpoint = endpoint;
    o.timeoutMs = 10000;  // the server may still be starting; the DEALER queues until it binds
    o.maxProtocolVersion = maxVersion;
    return o;
}

// Episode `episode` of `steps` varied Steps on `nodes` nodes in the client's negotiated
// version: the targets of every Step, in order.
std::vector<std::vector<uint32_t>> runVariedEpisode(BridgeClient& client, int nodes, uint64_t steps, int tasks,
                                                    uint64_t episode = 0)
{
    std::vector<std::vector<uint32_t>> placed;
    for (uint64_t i = 0; i < steps; i++) {
        const pb::Placement& p = client.step(variedStep(nodes, episode, i, tasks, client.protocolVersion()));
        EXPECT_EQ(p.targets_size(), tasks);
        placed.emplace_back(p.targets().begin(), p.targets().end());
        for (uint32_t t : placed.back())
            EXPECT_LT(t, uint32_t(nodes));
    }
    client.episodeEnd(buildEpisodeEnd(episode, steps, false, 1000000 * episode + 20000 * (steps + 1), {}));
    return placed;
}

}  // namespace

// Against the real agent server binary: MALCOLM_AGENT_SERVER_BIN=/path/to/agent-server. A
// client that offers v2 gets it; one forced to v1 still works.
TEST(BridgeClient, RoundTripAgainstRealAgentServer)
{
    const char* bin = agentServerBin();
    if (!bin)
        GTEST_SKIP() << kNoServerBin;
    std::string endpoint = "tcp://127.0.0.1:" + std::to_string(freeTcpPort());
    // Extra flags, e.g. a policy; by default a free port for the gRPC control plane so that
    // the test never collides with a server already running on the machine.
    const char* extra = std::getenv("MALCOLM_AGENT_SERVER_ARGS");
    AgentServer server(bin, endpoint, extra ? extra : "--control 127.0.0.1:0");
    for (uint32_t version : {kProtocolV2, kProtocolV1}) {
        SCOPED_TRACE("protocol v" + std::to_string(version));
        BridgeClient client(serverOptions(endpoint, version));
        pb::Hello hello = smallHello(4);
        hello.set_env_id("omnetpp-test-v" + std::to_string(version));
        pb::Welcome w = client.hello(hello);
        EXPECT_FALSE(w.policy().empty());
        EXPECT_EQ(w.protocol_version(), version);
        ASSERT_EQ(client.protocolVersion(), version);
        for (uint64_t i = 0; i < 5; i++) {
            pb::Placement p = client.step(smallStep(4, i, 3, version));
            ASSERT_EQ(p.targets_size(), 3);
            for (uint32_t t : p.targets())
                EXPECT_LT(t, 4u);
        }
        client.episodeEnd(buildEpisodeEnd(0, 5, false, 5000, {}));
        // A second episode with varied node state and shared and distinct GSTs.
        runVariedEpisode(client, 4, 6, 5, 1);
        client.close("test done");
    }
}

// The same Steps in a v1 and a v2 session of a deterministic policy: the same placements
// (the agent reads the same node state and views from both forms).
TEST(BridgeClient, V1AndV2SessionsPlaceAlikeOnTheRealAgentServer)
{
    const char* bin = agentServerBin();
    if (!bin)
        GTEST_SKIP() << kNoServerBin;
    std::string endpoint = "tcp://127.0.0.1:" + std::to_string(freeTcpPort());
    AgentServer server(bin, endpoint, "--control 127.0.0.1:0 --policy slack-greedy");
    std::vector<std::vector<uint32_t>> placed[2];
    for (uint32_t version : {kProtocolV1, kProtocolV2}) {
        BridgeClient client(serverOptions(endpoint, version));
        pb::Hello hello = smallHello(8);
        hello.set_env_id("omnetpp-alike-v" + std::to_string(version));
        EXPECT_EQ(client.hello(hello).policy(), "slack-greedy");
        ASSERT_EQ(client.protocolVersion(), version);
        placed[version - 1] = runVariedEpisode(client, 8, 12, 5);
        client.close("test done");
    }
    EXPECT_EQ(placed[0], placed[1]);
}

// --- the embedded agent (libmalcolm_agent.so in this process) -------------------------------

namespace {

// The library from MALCOLM_AGENT_LIBRARY (scripts/cpp-test.sh sets it when
// target/release/libmalcolm_agent.so exists), or "" to skip.
std::string agentLibraryOrSkipReason(std::string& why)
{
    const char* lib = std::getenv(kAgentLibraryEnv);
    if (!lib || !*lib) {
        why = "MALCOLM_AGENT_LIBRARY is not set: skipping the embedded agent (build it with cargo build --release "
              "-p malcolm-agent-ffi and set it to target/release/libmalcolm_agent.so)";
        return "";
    }
    return lib;
}

BridgeClientOptions embeddedOptions(const std::string& library, const std::string& flags)
{
    BridgeClientOptions o;
    o.endpoint = std::string(kEmbeddedScheme) + flags;
    o.agentLibrary = library;
    return o;
}

}  // namespace

TEST(EmbeddedAgent, AMissingLibrarySaysHowToBuildIt)
{
    try {
        BridgeClient client(embeddedOptions("/nonexistent/libmalcolm_agent.so", "--policy round-robin"));
        FAIL() << "a missing library was accepted";
    }
    catch (const BridgeError& e) {
        EXPECT_EQ(e.code(), BridgeError::Code::Transport);
        std::string what = e.what();
        EXPECT_NE(what.find("/nonexistent/libmalcolm_agent.so"), std::string::npos) << what;
        EXPECT_NE(what.find("cargo build --release -p malcolm-agent-ffi"), std::string::npos) << what;
    }
}

TEST(EmbeddedAgent, ALibraryWithoutTheAbiIsRefused)
{
    // Any shared library that is not ours: the C library itself.
    try {
        BridgeClient client(embeddedOptions("libc.so.6", ""));
        FAIL() << "libc was accepted as an agent";
    }
    catch (const BridgeError& e) {
        EXPECT_NE(std::string(e.what()).find("has no symbol malcolm_agent_abi_version"), std::string::npos) << e.what();
    }
}

TEST(EmbeddedAgent, RoundRobinInProcessAnswersLikeTheServerAndSurvivesBadInput)
{
    std::string why;
    std::string lib = agentLibraryOrSkipReason(why);
    if (lib.empty())
        GTEST_SKIP() << why;
    EXPECT_THROW(BridgeClient(embeddedOptions(lib, "--policy round-robin --mode sideways")), BridgeError);
    BridgeClient client(embeddedOptions(lib, "--policy round-robin"));
    ASSERT_TRUE(client.embedded());
    pb::Welcome w = client.hello(smallHello(4));
    EXPECT_EQ(w.policy(), "round-robin");
    // Round-robin's known answer: targets 0, 1, 2, 3, 0, ... across Steps of one session.
    uint32_t expected = 0;
    EXPECT_EQ(client.protocolVersion(), kProtocolV2);
    for (uint64_t i = 0; i < 5; i++) {
        pb::Placement p = client.step(smallStep(4, i, 3, kProtocolV2));
        ASSERT_EQ(p.targets_size(), 3);
        for (uint32_t t : p.targets()) {
            EXPECT_EQ(t, expected);
            expected = (expected + 1) % 4;
        }
    }
    // A task from a node the rack does not have: the agent's Error, and the session goes on.
    pb::Step bad = smallStep(4, 5, 2, kProtocolV2);
    bad.mutable_tasks(0)->set_origin(9);
    try {
        client.step(bad);
        FAIL() << "a Step with node 9 in a 4-node rack was placed";
    }
    catch (const BridgeError& e) {
        EXPECT_EQ(e.code(), BridgeError::Code::AgentError);
        EXPECT_EQ(e.agentCode(), pb::ERROR_CODE_INVALID_NODE_ID) << e.what();
    }
    // A v1 Step in a v2 session is refused, and the session goes on.
    try {
        client.step(smallStep(4, 5, 2, kProtocolV1));
        FAIL() << "a v1 Step was placed in a v2 session";
    }
    catch (const BridgeError& e) {
        EXPECT_EQ(e.agentCode(), pb::ERROR_CODE_INVALID_ARGUMENT) << e.what();
    }
    EXPECT_EQ(client.step(smallStep(4, 5, 2, kProtocolV2)).targets_size(), 2);
    MalcolmAgentStats st = client.embeddedStats();
    EXPECT_EQ(st.steps, 6u);       // 5 + the one after the refusals
    EXPECT_EQ(st.decisions, 17u);  // 5 x 3 + 2
    EXPECT_EQ(st.errors, 2u);      // node 9, and the v1 Step
    EXPECT_EQ(st.learner_updates, 0u);
    client.episodeEnd(buildEpisodeEnd(0, 6, false, 12000, {}));
    client.close("test done");
}

TEST(EmbeddedAgent, ALearnerSavesItsCheckpointAtClose)
{
    std::string why;
    std::string lib = agentLibraryOrSkipReason(why);
    if (lib.empty())
        GTEST_SKIP() << why;
    char dir[] = "/tmp/malcolm-embedded-XXXXXX";
    ASSERT_NE(::mkdtemp(dir), nullptr);
    std::string ckpt = std::string(dir) + "/agent.safetensors";
    {
        BridgeClient client(embeddedOptions(lib, "--policy malcolm-strict --mode train --checkpoint " + ckpt));
        client.hello(smallHello(4));
        for (uint64_t i = 0; i < 20; i++) {
            pb::Placement p = client.step(smallStep(4, i, 2, client.protocolVersion()));
            ASSERT_EQ(p.targets_size(), 2);
            for (uint32_t t : p.targets())
                EXPECT_LT(t, 4u);
        }
        client.episodeEnd(buildEpisodeEnd(0, 20, false, 40000, {}));
        client.close("test done");
    }
    FILE* f = std::fopen(ckpt.c_str(), "rb");
    ASSERT_NE(f, nullptr) << "no checkpoint at " << ckpt;
    std::fseek(f, 0, SEEK_END);
    EXPECT_GT(std::ftell(f), 10000);
    std::fclose(f);
    std::remove(ckpt.c_str());
    ::rmdir(dir);
}

// The same Steps in a v1 and a v2 session of the embedded agent, for a baseline and for the
// learner's greedy policy: the same placements.
TEST(EmbeddedAgent, V1AndV2SessionsPlaceAlike)
{
    std::string why;
    std::string lib = agentLibraryOrSkipReason(why);
    if (lib.empty())
        GTEST_SKIP() << why;
    for (const char* flags : {"--policy slack-greedy", "--policy malcolm-strict --mode eval"}) {
        SCOPED_TRACE(flags);
        std::vector<std::vector<uint32_t>> placed[2];
        for (uint32_t version : {kProtocolV1, kProtocolV2}) {
            BridgeClientOptions o = embeddedOptions(lib, flags);
            o.maxProtocolVersion = version;
            BridgeClient client(o);
            client.hello(smallHello(8));
            ASSERT_EQ(client.protocolVersion(), version);
            placed[version - 1] = runVariedEpisode(client, 8, 12, 5);
            client.close("test done");
        }
        EXPECT_EQ(placed[0], placed[1]);
    }
}
