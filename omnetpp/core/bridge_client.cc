#include "bridge_client.h"

#include <chrono>
#include <vector>

namespace malcolm {

const char* BridgeError::codeName(Code code)
{
    switch (code) {
        case Code::Timeout: return "timeout";
        case Code::Transport: return "transport";
        case Code::AgentError: return "agent-error";
        case Code::BadReply: return "bad-reply";
    }
    return "?";
}

BridgeClient::BridgeClient(const BridgeClientOptions& options)
    : options_(options)
{
    if (options.timeoutMs <= 0)
        throw BridgeError(BridgeError::Code::Transport, "bridge timeout must be > 0 ms");
    if (options.maxProtocolVersion < kProtocolV1 || options.maxProtocolVersion > kMaxProtocolVersion)
        throw BridgeError(BridgeError::Code::Transport,
                          "bridge protocol version " + std::to_string(options.maxProtocolVersion) + " is not 1.." +
                              std::to_string(kMaxProtocolVersion));
    if (options.endpoint.rfind(kEmbeddedScheme, 0) == 0) {
        try {
            embedded_ = std::make_unique<EmbeddedAgent>(options.agentLibrary,
                                                        options.endpoint.substr(std::string(kEmbeddedScheme).size()));
        }
        catch (const EmbeddedAgentError& e) {
            throw BridgeError(BridgeError::Code::Transport, e.what());
        }
        return;
    }
    try {
        socket_ = zmq::socket_t(context_, zmq::socket_type::dealer);  // starts ZeroMQ's I/O thread
        socket_.set(zmq::sockopt::linger, 0);  // never block process exit on unsent messages
        socket_.set(zmq::sockopt::sndtimeo, options.timeoutMs);
        socket_.set(zmq::sockopt::rcvtimeo, options.timeoutMs);
        socket_.connect(options.endpoint);
    }
    catch (const zmq::error_t& e) {
        throw BridgeError(BridgeError::Code::Transport,
                          "cannot connect to agent at '" + options.endpoint + "': " + e.what());
    }
}

BridgeClient::~BridgeClient() = default;

const pb::Envelope& BridgeClient::roundTrip(pb::Envelope& request, const char* what, ReplyVersion expect)
{
    const uint64_t id = nextRequestId_++;
    request.set_protocol_version(version_);
    request.set_request_id(id);
    std::string& bytes = requestBytes_;
    if (!request.SerializeToString(&bytes))
        throw BridgeError(BridgeError::Code::Transport, std::string("cannot serialise ") + what);
    if (!embedded_)
        return zmqRoundTrip(bytes, id, what, expect);
    const uint8_t* data = nullptr;
    size_t size = 0;
    try {
        embedded_->call(bytes, data, size);
    }
    catch (const EmbeddedAgentError& e) {
        throw BridgeError(BridgeError::Code::Transport, std::string(what) + ": " + e.what());
    }
    if (!acceptReply(data, size, id, reply_, what, expect))
        throw BridgeError(BridgeError::Code::BadReply, std::string(what) + ": embedded agent answered another request");
    return reply_;
}

const pb::Envelope& BridgeClient::zmqRoundTrip(const std::string& bytes, uint64_t id, const char* what,
                                               ReplyVersion expect)
{
    using Clock = std::chrono::steady_clock;
    try {
        if (options_.emptyDelimiter)
            socket_.send(zmq::message_t(), zmq::send_flags::sndmore);
        if (!socket_.send(zmq::buffer(bytes), zmq::send_flags::none))
            throw BridgeError(BridgeError::Code::Timeout,
                              std::string(what) + ": agent at " + options_.endpoint + " did not take the message within " +
                                  std::to_string(options_.timeoutMs) + " ms");
    }
    catch (const zmq::error_t& e) {
        throw BridgeError(BridgeError::Code::Transport, std::string(what) + ": send failed: " + e.what());
    }

    const auto deadline = Clock::now() + std::chrono::milliseconds(options_.timeoutMs);
    for (;;) {
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
        if (left <= 0)
            break;
        zmq::pollitem_t item{static_cast<void*>(socket_), 0, ZMQ_POLLIN, 0};
        try {
            zmq::poll(&item, 1, std::chrono::milliseconds(left));
        }
        catch (const zmq::error_t& e) {
            throw BridgeError(BridgeError::Code::Transport, std::string(what) + ": poll failed: " + e.what());
        }
        if (!(item.revents & ZMQ_POLLIN))
            continue;
        // One reply = one multipart message; the payload is its last frame (any empty
        // delimiter frames before it are skipped).
        std::vector<zmq::message_t> frames;
        for (;;) {
            zmq::message_t frame;
            if (!socket_.recv(frame, zmq::recv_flags::dontwait))
                break;
            bool more = frame.more();
            frames.push_back(std::move(frame));
            if (!more)
                break;
        }
        if (frames.empty())
            continue;
        const zmq::message_t& payload = frames.back();
        if (acceptReply(payload.data(), payload.size(), id, reply_, what, expect))
            return reply_;
    }
    throw BridgeError(BridgeError::Code::Timeout, std::string(what) + ": no reply from agent at " + options_.endpoint +
                                                      " within " + std::to_string(options_.timeoutMs) +
                                                      " ms (is the agent server running?)");
}

bool BridgeClient::acceptReply(const void* data, size_t size, uint64_t id, pb::Envelope& reply, const char* what,
                               ReplyVersion expect)
{
    if (size > options_.maxReplyBytes)
        throw BridgeError(BridgeError::Code::BadReply,
                          std::string(what) + ": reply of " + std::to_string(size) + " bytes exceeds the limit");
    if (!reply.ParseFromArray(data, static_cast<int>(size)))
        throw BridgeError(BridgeError::Code::BadReply, std::string(what) + ": reply is not a bridge Envelope");
    if (reply.request_id() != id) {
        discardedReplies_++;  // a late answer to an earlier request
        return false;
    }
    // An Error says more than its version would (e.g. VERSION_MISMATCH): report it first.
    if (reply.has_error())
        throw BridgeError(BridgeError::Code::AgentError,
                          std::string(what) + " refused by agent: " + pb::ErrorCode_Name(reply.error().code()) + ": " +
                              reply.error().message(),
                          reply.error().code());
    const uint32_t v = reply.protocol_version();
    const bool ok = expect == ReplyVersion::Unchecked || v == version_ ||
                    (expect == ReplyVersion::SessionOrV1 && v == kProtocolV1);
    if (!ok)
        throw BridgeError(BridgeError::Code::BadReply, std::string(what) + ": reply carries protocol version " +
                                                           std::to_string(v) + ", the session speaks " +
                                                           std::to_string(version_));
    return true;
}

pb::Welcome BridgeClient::hello(const pb::Hello& hello)
{
    pb::Envelope req;
    pb::Hello* h = req.mutable_hello();
    *h = hello;
    h->clear_protocol_versions();
    for (uint32_t v = kProtocolV1; v <= options_.maxProtocolVersion; v++)
        h->add_protocol_versions(v);
    version_ = kProtocolV1;  // the Hello's
    const pb::Envelope& reply = roundTrip(req, "Hello", ReplyVersion::Unchecked);
    if (!reply.has_welcome())
        throw BridgeError(BridgeError::Code::BadReply, "Hello: expected Welcome from agent");
    // 0: an agent that predates negotiation, which speaks v1.
    uint32_t chosen = reply.welcome().protocol_version() == 0 ? kProtocolV1 : reply.welcome().protocol_version();
    if (chosen > options_.maxProtocolVersion)
        throw BridgeError(BridgeError::Code::BadReply, "Hello: agent chose protocol version " + std::to_string(chosen) +
                                                           ", not one of the offered 1.." +
                                                           std::to_string(options_.maxProtocolVersion));
    // bridge.proto has the Welcome's envelope in v1; agent servers before that was fixed sent
    // it in the version they chose. Either is unambiguous, so both are accepted.
    if (reply.protocol_version() != kProtocolV1 && reply.protocol_version() != chosen)
        throw BridgeError(BridgeError::Code::BadReply, "Hello: reply carries protocol version " +
                                                           std::to_string(reply.protocol_version()) +
                                                           ", neither 1 nor the chosen " + std::to_string(chosen));
    version_ = chosen;
    return reply.welcome();
}

const pb::Placement& BridgeClient::step(pb::Step step)
{
    nextStep().Swap(&step);
    return sendStep();
}

const pb::Placement& BridgeClient::sendStep()
{
    const pb::Step& step = stepRequest_.step();
    const pb::Envelope& reply = roundTrip(stepRequest_, "Step");
    if (!reply.has_placement())
        throw BridgeError(BridgeError::Code::BadReply, "Step: expected Placement from agent");
    const pb::Placement& p = reply.placement();
    if (p.targets_size() != step.tasks_size())
        throw BridgeError(BridgeError::Code::BadReply, "Step " + std::to_string(step.step_index()) + ": placement has " +
                                                           std::to_string(p.targets_size()) + " targets for " +
                                                           std::to_string(step.tasks_size()) + " tasks");
    if (p.hold_ns_size() != 0 && p.hold_ns_size() != step.tasks_size())
        throw BridgeError(BridgeError::Code::BadReply, "Step: hold_ns must be empty or one per task");
    return p;
}

void BridgeClient::episodeEnd(const pb::EpisodeEnd& end)
{
    pb::Envelope req;
    *req.mutable_episode_end() = end;
    const pb::Envelope& reply = roundTrip(req, "EpisodeEnd");
    if (!reply.has_ack())
        throw BridgeError(BridgeError::Code::BadReply, "EpisodeEnd: expected Ack from agent");
}

void BridgeClient::close(const std::string& reason)
{
    pb::Envelope req;
    req.mutable_close()->set_reason(reason);
    const pb::Envelope& reply = roundTrip(req, "Close", ReplyVersion::SessionOrV1);
    if (!reply.has_ack())
        throw BridgeError(BridgeError::Code::BadReply, "Close: expected Ack from agent");
    if (embedded_) {
        try {
            embedded_->close();
        }
        catch (const EmbeddedAgentError& e) {
            throw BridgeError(BridgeError::Code::Transport, e.what());
        }
    }
}

}  // namespace malcolm
