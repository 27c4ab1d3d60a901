// Task-trace CSV (recorded workloads replayed as input), the format rack-sim reads:
// a header naming the columns arrival_ns, origin, service_ns, deadline_ns, size_bytes and
// optionally class and estimate_ns (a recorded service estimate), in any order; one task per
// line; '#' lines and blank lines ignored.
#pragma once

#include <cstdint>
#include <istream>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

namespace malcolm {

struct TraceTask
{
    uint64_t arrivalNs = 0;
    uint32_t origin = 0;
    uint64_t serviceNs = 0;
    uint64_t deadlineNs = 0;
    uint32_t sizeBytes = 0;
    uint32_t taskClass = 0;
    uint64_t estimateNs = 0;  // 0: none recorded (the scenario's estimate model makes one)
};

class TraceFormatError : public std::runtime_error
{
  public:
    using std::runtime_error::runtime_error;
};

// Reads every task (of every origin), sorted by arrival (stable). `name` labels errors.
std::vector<TraceTask> readTaskTrace(std::istream& in, const std::string& name);

// Mean true service (ns) of each task class of a trace, summed in the trace's order: the
// class means of class-mean estimates for replayed tasks (as rack-sim).
std::map<uint32_t, double> traceClassMeansNs(const std::vector<TraceTask>& tasks);

}  // namespace malcolm
