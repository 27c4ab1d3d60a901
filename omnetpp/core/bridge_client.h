// The env side of the bridge protocol (proto/malcolm/bridge/v1/bridge.proto): a ZeroMQ
// DEALER connected to the agent's ROUTER, lockstep request/reply with monotonic request ids,
// a timeout on every wait and a clear BridgeError when the agent is unreachable or answers
// with an Error envelope. Replies carrying another request id (late answers to a request
// that already timed out) are discarded. An endpoint "embedded:<flags>" loads the agent into
// this process instead (embedded_agent.h): same bytes, same checks, no sockets.
// Versions: the Hello offers 1..maxProtocolVersion, the Welcome names the session's version
// (protocolVersion()), and every later envelope, both ways, carries it. The caller fills
// Steps in that version's form (fillStep for v1, fillStepV2 for v2; message_builder.h).
#pragma once

#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>

#include <zmq.hpp>

#include "embedded_agent.h"
#include "malcolm/bridge/v1/bridge.pb.h"

namespace malcolm {

namespace pb = ::malcolm::bridge::v1;

// v1: the base every peer speaks, and the version of every Hello and its reply.
constexpr uint32_t kProtocolV1 = 1;
// v2: node state as fixed-width columns, each distinct GST once per Step.
constexpr uint32_t kProtocolV2 = 2;
// The highest version this client speaks.
constexpr uint32_t kMaxProtocolVersion = kProtocolV2;

class BridgeError : public std::runtime_error
{
  public:
    enum class Code {
        Timeout,     // no reply within the timeout: agent unreachable, dead or too slow
        Transport,   // ZeroMQ failed (bad endpoint, socket error)
        AgentError,  // the agent answered with an Error envelope (see agentCode())
        BadReply,    // undecodable bytes, wrong protocol version, unexpected body
    };
    BridgeError(Code code, const std::string& what, pb::ErrorCode agentCode = pb::ERROR_CODE_UNSPECIFIED)
        : std::runtime_error(what), code_(code), agentCode_(agentCode) {}
    Code code() const { return code_; }
    pb::ErrorCode agentCode() const { return agentCode_; }
    static const char* codeName(Code code);

  private:
    Code code_;
    pb::ErrorCode agentCode_;
};

// Endpoints starting with this are embedded agents; the rest of the string is their flags.
constexpr const char* kEmbeddedScheme = "embedded:";

struct BridgeClientOptions
{
    // tcp://HOST:PORT or ipc://PATH (an agent server), or "embedded:<flags>".
    std::string endpoint = "tcp://127.0.0.1:5555";
    // The embedded agent's library ("": $MALCOLM_AGENT_LIBRARY, else the loader's search path).
    std::string agentLibrary;
    // Longest wait for any reply.
    int timeoutMs = 5000;
    // REQ-compatible framing: an empty delimiter frame before the payload, as a REQ socket
    // sends it, so a ROUTER serving REQ and DEALER peers alike reads both the same way.
    bool emptyDelimiter = true;
    size_t maxReplyBytes = 8u << 20;
    // The highest protocol version offered in the Hello (1..kMaxProtocolVersion); 1 forces v1.
    uint32_t maxProtocolVersion = kMaxProtocolVersion;
};

class BridgeClient
{
  public:
    explicit BridgeClient(const BridgeClientOptions& options);
    ~BridgeClient();
    BridgeClient(const BridgeClient&) = delete;
    BridgeClient& operator=(const BridgeClient&) = delete;

    // Offers versions 1..maxProtocolVersion (whatever `hello` lists) and adopts the one the
    // Welcome names (0 means 1); a version that was not offered is a BadReply.
    pb::Welcome hello(const pb::Hello& hello);
    // Checks that the placement has one target per pending task. The reply stays valid until
    // the next request.
    const pb::Placement& step(pb::Step step);
    // The same without building a new message: fill nextStep() (a Step kept between calls,
    // so its allocations are reused), then sendStep().
    pb::Step& nextStep() { return *stepRequest_.mutable_step(); }
    const pb::Placement& sendStep();
    void episodeEnd(const pb::EpisodeEnd& end);
    // Sends Close; an embedded agent then saves its checkpoint (a failed save throws).
    void close(const std::string& reason);
    bool embedded() const { return embedded_ != nullptr; }
    // The embedded agent's figures (zeros for a ZeroMQ agent: the server keeps its own).
    MalcolmAgentStats embeddedStats() const { return embedded_ ? embedded_->stats() : MalcolmAgentStats{}; }
    // The session's protocol version (1 until a Welcome names another).
    uint32_t protocolVersion() const { return version_; }

    uint64_t lastRequestId() const { return nextRequestId_ - 1; }
    uint64_t discardedReplies() const { return discardedReplies_; }
    const BridgeClientOptions& options() const { return options_; }

  private:
    // The protocol version a reply must carry.
    enum class ReplyVersion {
        Session,      // the session's
        SessionOrV1,  // the session's, or 1 (agent servers before the fix acked a Close in v1)
        Unchecked,    // the Hello's reply: hello() checks it against the Welcome's choice
    };
    // The reply (a member, valid until the next request).
    const pb::Envelope& roundTrip(pb::Envelope& request, const char* what,
                                  ReplyVersion expect = ReplyVersion::Session);
    const pb::Envelope& zmqRoundTrip(const std::string& bytes, uint64_t id, const char* what, ReplyVersion expect);
    // Parses and checks one reply payload; false for a late reply to an earlier request.
    bool acceptReply(const void* data, size_t size, uint64_t id, pb::Envelope& reply, const char* what,
                     ReplyVersion expect);

    BridgeClientOptions options_;
    // Reused between requests (no allocation per Step once warm).
    pb::Envelope stepRequest_;
    pb::Envelope reply_;
    std::string requestBytes_;
    std::unique_ptr<EmbeddedAgent> embedded_;
    zmq::context_t context_;
    zmq::socket_t socket_;  // connected only for ZeroMQ endpoints
    uint32_t version_ = kProtocolV1;  // every request carries it, every reply must
    uint64_t nextRequestId_ = 1;
    uint64_t discardedReplies_ = 0;
};

}  // namespace malcolm
