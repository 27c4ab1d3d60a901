#include "fallback_policy.h"

#include <algorithm>
#include <stdexcept>

namespace malcolm {

FallbackPolicy FallbackPolicy::parse(const std::string& name)
{
    FallbackPolicy p;
    p.name_ = name;
    if (name == "local")
        p.kind_ = Kind::Local;
    else if (name == "random")
        p.kind_ = Kind::Random;
    else if (name == "round-robin")
        p.kind_ = Kind::RoundRobin;
    else if (name.rfind("power-of-", 0) == 0) {
        p.kind_ = Kind::PowerOfD;
        try {
            p.d_ = std::stoi(name.substr(9));
        }
        catch (const std::exception&) {
            throw std::invalid_argument("bad fallback policy '" + name + "' (power-of-D needs an integer D)");
        }
        if (p.d_ < 1)
            throw std::invalid_argument("bad fallback policy '" + name + "': D must be >= 1");
    }
    else
        throw std::invalid_argument("unknown fallback policy '" + name + "' (local, random, round-robin, power-of-D)");
    return p;
}

uint32_t FallbackPolicy::choose(const Task& task, const std::vector<Heartbeat>& view, const std::vector<double>& capacity,
                                const std::function<double()>& uniform)
{
    uint32_t n = static_cast<uint32_t>(view.size());
    if (n == 0)
        throw std::invalid_argument("FallbackPolicy: empty rack");
    auto pick = [&] { return std::min<uint32_t>(n - 1, static_cast<uint32_t>(uniform() * n)); };
    switch (kind_) {
        case Kind::Local: return task.origin;
        case Kind::Random: return pick();
        case Kind::RoundRobin: return nextRoundRobin_++ % n;
        case Kind::PowerOfD: {
            uint32_t best = pick();
            auto load = [&](uint32_t i) {
                double cap = i < capacity.size() && capacity[i] > 0 ? capacity[i] : 1.0;
                return view[i].queueLen / cap;
            };
            for (int k = 1; k < d_; k++) {
                uint32_t c = pick();
                if (load(c) < load(best))
                    best = c;
            }
            return best;
        }
    }
    return task.origin;
}

}  // namespace malcolm
