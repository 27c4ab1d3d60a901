#include "embedded_agent.h"

#include <dlfcn.h>

#include <cstdlib>
#include <iostream>

namespace malcolm {

namespace {

constexpr size_t kErrLen = 2048;

// How to get the library, appended to every load error.
constexpr const char* kHowToBuild =
    " (build it with `cargo build --release -p malcolm-agent-ffi`: target/release/libmalcolm_agent.so; "
    "name it with **.coordinator.agentLibrary or the MALCOLM_AGENT_LIBRARY environment variable)";

template <typename Fn>
Fn symbol(void* handle, const char* name, const std::string& path)
{
    void* s = ::dlsym(handle, name);
    if (!s)
        throw EmbeddedAgentError("embedded agent library " + path + " has no symbol " + name +
                                 ": not a libmalcolm_agent.so" + kHowToBuild);
    return reinterpret_cast<Fn>(s);
}

}  // namespace

std::string EmbeddedAgent::resolveLibrary(const std::string& library)
{
    if (!library.empty())
        return library;
    const char* env = std::getenv(kAgentLibraryEnv);
    return env && *env ? std::string(env) : std::string(kAgentLibraryName);
}

EmbeddedAgent::EmbeddedAgent(const std::string& library, const std::string& flags) : path_(resolveLibrary(library))
{
    // RTLD_LOCAL: the library's own copies of libzmq and friends stay out of the simulation's
    // symbol namespace. Never dlclose()d: Rust's thread-local destructors may still run.
    handle_ = ::dlopen(path_.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (!handle_) {
        const char* why = ::dlerror();
        throw EmbeddedAgentError("cannot load the embedded agent library '" + path_ + "': " + (why ? why : "?") +
                                 kHowToBuild);
    }
    auto abi = symbol<AbiFn>(handle_, "malcolm_agent_abi_version", path_);
    if (abi() != MALCOLM_AGENT_ABI_VERSION)
        throw EmbeddedAgentError("embedded agent library " + path_ + " implements ABI version " +
                                 std::to_string(abi()) + ", this simulation expects " +
                                 std::to_string(MALCOLM_AGENT_ABI_VERSION) + ": rebuild the one or the other");
    auto open = symbol<OpenFn>(handle_, "malcolm_agent_open", path_);
    call_ = symbol<CallFn>(handle_, "malcolm_agent_call", path_);
    close_ = symbol<CloseFn>(handle_, "malcolm_agent_close", path_);
    stats_ = symbol<StatsFn>(handle_, "malcolm_agent_stats", path_);
    char err[kErrLen] = {0};
    agent_ = open(flags.c_str(), err, sizeof err);
    if (!agent_)
        throw EmbeddedAgentError("embedded agent (" + path_ + ") refused to start with flags '" + flags + "': " + err);
}

EmbeddedAgent::~EmbeddedAgent()
{
    try {
        close();
    }
    catch (const EmbeddedAgentError& e) {
        std::cerr << "[malcolm] " << e.what() << std::endl;
    }
}

void EmbeddedAgent::call(const std::string& request, const uint8_t*& reply, size_t& replyLen)
{
    if (!agent_)
        throw EmbeddedAgentError("embedded agent already closed");
    char err[kErrLen] = {0};
    if (call_(agent_, reinterpret_cast<const uint8_t*>(request.data()), request.size(), &reply, &replyLen, err,
              sizeof err) != 0)
        throw EmbeddedAgentError(std::string("embedded agent failed: ") + err);
}

MalcolmAgentStats EmbeddedAgent::stats() const
{
    MalcolmAgentStats s{};
    if (agent_)
        stats_(agent_, &s);
    return s;
}

void EmbeddedAgent::close()
{
    if (!agent_)
        return;
    MalcolmAgent* a = agent_;
    agent_ = nullptr;
    char err[kErrLen] = {0};
    if (close_(a, err, sizeof err) != 0)
        throw EmbeddedAgentError(std::string("embedded agent close: ") + err);
}

}  // namespace malcolm
