// The env side of the bridge protocol (proto/malcolm/bridge/v1/bridge.proto): a ZeroMQ
// DEALER connected to the agent's ROUTER, lockstep request/reply with monotonic request ids,
// a timeout on every wait and a clear BridgeError when the agent is unreachable or answers
// with an Error envelope. Replies carrying another request id (late answers to a request
// that already timed out) are discarded.
#pragma once

#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>

#include <zmq.hpp>

#include "malcolm/bridge/v1/bridge.pb.h"

namespace malcolm {

namespace pb = ::malcolm::bridge::v1;

constexpr uint32_t kProtocolVersion = 1;

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

struct BridgeClientOptions
{
    std::string endpoint = "tcp://127.0.0.1:5555";
    // Longest wait for any reply.
    int timeoutMs = 5000;
    // REQ-compatible framing: an empty delimiter frame before the payload, as a REQ socket
    // sends it, so a ROUTER serving REQ and DEALER peers alike reads both the same way.
    bool emptyDelimiter = true;
    size_t maxReplyBytes = 8u << 20;
};

class BridgeClient
{
  public:
    explicit BridgeClient(const BridgeClientOptions& options);
    ~BridgeClient();
    BridgeClient(const BridgeClient&) = delete;
    BridgeClient& operator=(const BridgeClient&) = delete;

    pb::Welcome hello(const pb::Hello& hello);
    // Checks that the placement has one target per pending task.
    pb::Placement step(const pb::Step& step);
    void episodeEnd(const pb::EpisodeEnd& end);
    void close(const std::string& reason);

    uint64_t lastRequestId() const { return nextRequestId_ - 1; }
    uint64_t discardedReplies() const { return discardedReplies_; }
    const BridgeClientOptions& options() const { return options_; }

  private:
    pb::Envelope roundTrip(pb::Envelope& request, const char* what);

    BridgeClientOptions options_;
    zmq::context_t context_;
    zmq::socket_t socket_;
    uint64_t nextRequestId_ = 1;
    uint64_t discardedReplies_ = 0;
};

}  // namespace malcolm
