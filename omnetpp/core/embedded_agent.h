// The agent in this process: libmalcolm_agent.so (crate agent-ffi, C ABI in
// agent-ffi/include/malcolm_agent.h) loaded with dlopen, so the Rust toolchain is needed only
// by those who use it. A Step is then one function call on the simulation's thread with the
// same Envelope bytes a ZeroMQ round trip would carry, decided by the server's own session.
#pragma once

#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "malcolm_agent.h"

namespace malcolm {

// Where the library is looked up when no path is given: this environment variable, else the
// file name alone (the dynamic loader's search path).
constexpr const char* kAgentLibraryEnv = "MALCOLM_AGENT_LIBRARY";
constexpr const char* kAgentLibraryName = "libmalcolm_agent.so";

class EmbeddedAgentError : public std::runtime_error
{
  public:
    using std::runtime_error::runtime_error;
};

class EmbeddedAgent
{
  public:
    // Loads `library` ("" = kAgentLibraryEnv, else kAgentLibraryName) and opens an agent with
    // `flags` (agent-server serve's --policy, --mode, --checkpoint, ...). Throws
    // EmbeddedAgentError saying what failed and how to fix it.
    EmbeddedAgent(const std::string& library, const std::string& flags);
    // Closes the agent if close() was not called (errors go to stderr).
    ~EmbeddedAgent();
    EmbeddedAgent(const EmbeddedAgent&) = delete;
    EmbeddedAgent& operator=(const EmbeddedAgent&) = delete;

    // The reply to one encoded Envelope; the bytes stay valid until the next call or close.
    void call(const std::string& request, const uint8_t*& reply, size_t& replyLen);
    // What the agent has done so far (zeros once closed).
    MalcolmAgentStats stats() const;
    // Saves the checkpoint (train mode, when --checkpoint was given) and frees the agent;
    // throws on a failed save. Idempotent.
    void close();

    const std::string& libraryPath() const { return path_; }
    static std::string resolveLibrary(const std::string& library);

  private:
    using OpenFn = decltype(&malcolm_agent_open);
    using CallFn = decltype(&malcolm_agent_call);
    using CloseFn = decltype(&malcolm_agent_close);
    using AbiFn = decltype(&malcolm_agent_abi_version);
    using StatsFn = decltype(&malcolm_agent_stats);

    std::string path_;
    void* handle_ = nullptr;
    CallFn call_ = nullptr;
    CloseFn close_ = nullptr;
    StatsFn stats_ = nullptr;
    MalcolmAgent* agent_ = nullptr;
};

}  // namespace malcolm
