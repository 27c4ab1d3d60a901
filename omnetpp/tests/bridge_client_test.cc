#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

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

pb::Step smallStep(int nodes, uint64_t index, int tasks)
{
    std::vector<NodeSnapshot> snaps(nodes);
    for (int i = 0; i < nodes; i++) {
        snaps[i].nodeId = uint32_t(i);
        snaps[i].heartbeat = Heartbeat::fromSth(uint8_t(i), snaps[i].sth, 0.1, false, 0);
        snaps[i].includeGst = true;
        snaps[i].gst.assign(nodes, HeartbeatBytes{});
        snaps[i].gstAgeNs.assign(nodes, kNoHeartbeatAge);
    }
    std::vector<Task> pending;
    for (int k = 0; k < tasks; k++) {
        Task t;
        t.id = index * 100 + k;
        t.origin = uint32_t(k % nodes);
        t.sizeBytes = 1024;
        t.serviceRefNs = 10000;
        t.arrivalNs = 1000 * index;
        t.deadlineNs = t.arrivalNs + 30000;
        pending.push_back(t);
    }
    return buildStep(1000 * index, 0, index, snaps, {}, pending, {});
}

// A fake agent: a ROUTER in a thread answering every request; `misbehave` first sends a
// reply with a wrong request id (which the client must discard), or an Error for Steps.
class FakeAgent
{
  public:
    enum class Mode { Good, StaleFirst, ErrorOnStep };
    explicit FakeAgent(Mode mode) : socket_(context_, zmq::socket_type::router), mode_(mode)
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
            requests++;
            pb::Envelope rep;
            rep.set_protocol_version(1);
            rep.set_request_id(req.request_id());
            if (req.has_hello()) {
                rep.mutable_welcome()->set_session_id(11);
                rep.mutable_welcome()->set_policy("fake");
                nodes_ = req.hello().nodes_size();
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
            reply(frames, rep);
        }
    }
    zmq::context_t context_{1};
    zmq::socket_t socket_;
    Mode mode_;
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

// Against the real agent server binary: MALCOLM_AGENT_SERVER_BIN=/path/to/agent-server.
TEST(BridgeClient, RoundTripAgainstRealAgentServer)
{
    const char* bin = std::getenv("MALCOLM_AGENT_SERVER_BIN");
    if (!bin || !*bin)
        GTEST_SKIP() << "MALCOLM_AGENT_SERVER_BIN is not set: skipping the round trip against the real agent server "
                        "(set it to the agent-server binary, e.g. target/release/agent-server)";
    std::string endpoint = "tcp://127.0.0.1:" + std::to_string(freeTcpPort());
    std::vector<std::string> args{bin, "serve", "--bind", endpoint};
    // Extra flags, e.g. a policy; by default a free port for the gRPC control plane so that
    // the test never collides with a server already running on the machine.
    const char* extra = std::getenv("MALCOLM_AGENT_SERVER_ARGS");
    if (!extra)
        extra = "--control 127.0.0.1:0";
    {
        std::istringstream in(extra);
        for (std::string a; in >> a;)
            args.push_back(a);
    }
    pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
        std::vector<char*> argv;
        for (auto& a : args)
            argv.push_back(a.data());
        argv.push_back(nullptr);
        execv(bin, argv.data());
        _exit(127);
    }
    struct Reaper
    {
        pid_t pid;
        ~Reaper()
        {
            kill(pid, SIGTERM);
            int status;
            waitpid(pid, &status, 0);
        }
    } reaper{pid};

    BridgeClientOptions o;
    o.endpoint = endpoint;
    o.timeoutMs = 10000;  // the server may still be starting; the DEALER queues until it binds
    BridgeClient client(o);
    pb::Welcome w = client.hello(smallHello(4));
    EXPECT_FALSE(w.policy().empty());
    for (uint64_t i = 0; i < 5; i++) {
        pb::Placement p = client.step(smallStep(4, i, 3));
        ASSERT_EQ(p.targets_size(), 3);
        for (uint32_t t : p.targets())
            EXPECT_LT(t, 4u);
    }
    client.episodeEnd(buildEpisodeEnd(0, 5, false, 5000, {}));
    client.close("test done");
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
    for (uint64_t i = 0; i < 5; i++) {
        pb::Placement p = client.step(smallStep(4, i, 3));
        ASSERT_EQ(p.targets_size(), 3);
        for (uint32_t t : p.targets()) {
            EXPECT_EQ(t, expected);
            expected = (expected + 1) % 4;
        }
    }
    // A task from a node the rack does not have: the agent's Error, and the session goes on.
    pb::Step bad = smallStep(4, 5, 2);
    bad.mutable_tasks(0)->set_origin(9);
    try {
        client.step(bad);
        FAIL() << "a Step with node 9 in a 4-node rack was placed";
    }
    catch (const BridgeError& e) {
        EXPECT_EQ(e.code(), BridgeError::Code::AgentError);
        EXPECT_EQ(e.agentCode(), pb::ERROR_CODE_INVALID_NODE_ID) << e.what();
    }
    EXPECT_EQ(client.step(smallStep(4, 5, 2)).targets_size(), 2);
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
            pb::Placement p = client.step(smallStep(4, i, 2));
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
