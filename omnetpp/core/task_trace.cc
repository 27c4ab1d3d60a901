#include "task_trace.h"

#include <algorithm>
#include <map>
#include <sstream>

namespace malcolm {

namespace {
std::vector<std::string> split(const std::string& line)
{
    std::vector<std::string> out;
    std::string f;
    std::istringstream in(line);
    while (std::getline(in, f, ',')) {
        f.erase(0, f.find_first_not_of(" \t"));
        f.erase(f.find_last_not_of(" \t\r") + 1);
        out.push_back(f);
    }
    return out;
}

uint64_t toU64(const std::string& s, const std::string& where)
{
    if (s.empty() || s.find_first_not_of("0123456789") != std::string::npos)
        throw TraceFormatError(where + ": '" + s + "' is not a non-negative integer");
    try {
        return std::stoull(s);
    }
    catch (const std::exception&) {
        throw TraceFormatError(where + ": '" + s + "' is out of range");
    }
}
}  // namespace

std::vector<TraceTask> readTaskTrace(std::istream& in, const std::string& name)
{
    static const char *required[] = {"arrival_ns", "origin", "service_ns", "deadline_ns", "size_bytes"};
    std::map<std::string, size_t> column;
    std::vector<TraceTask> tasks;
    std::string line;
    int lineNo = 0;
    bool header = true;
    while (std::getline(in, line)) {
        lineNo++;
        if (line.find_first_not_of(" \t\r") == std::string::npos || line[0] == '#')
            continue;
        auto fields = split(line);
        std::string where = name + ":" + std::to_string(lineNo);
        if (header) {
            for (size_t i = 0; i < fields.size(); i++)
                column[fields[i]] = i;
            for (const char *c : required)
                if (!column.count(c))
                    throw TraceFormatError(where + ": header lacks column '" + c +
                                           "' (need arrival_ns,origin,service_ns,deadline_ns,size_bytes[,class][,estimate_ns])");
            header = false;
            continue;
        }
        if (fields.size() < column.size())
            throw TraceFormatError(where + ": expected " + std::to_string(column.size()) + " fields");
        TraceTask t;
        t.arrivalNs = toU64(fields[column["arrival_ns"]], where);
        uint64_t origin = toU64(fields[column["origin"]], where);
        uint64_t size = toU64(fields[column["size_bytes"]], where);
        if (origin > 255 || size > UINT32_MAX)
            throw TraceFormatError(where + ": origin must be < 256 and size_bytes fit in 32 bits");
        t.origin = static_cast<uint32_t>(origin);
        t.sizeBytes = static_cast<uint32_t>(size);
        t.serviceNs = toU64(fields[column["service_ns"]], where);
        t.deadlineNs = toU64(fields[column["deadline_ns"]], where);
        if (column.count("class"))
            t.taskClass = static_cast<uint32_t>(toU64(fields[column["class"]], where));
        if (column.count("estimate_ns")) {
            t.estimateNs = toU64(fields[column["estimate_ns"]], where);
            if (t.estimateNs == 0)
                throw TraceFormatError(where + ": estimate_ns must be >= 1");
        }
        tasks.push_back(t);
    }
    if (header)
        throw TraceFormatError(name + ": empty trace (no header)");
    std::stable_sort(tasks.begin(), tasks.end(), [](const TraceTask& a, const TraceTask& b) { return a.arrivalNs < b.arrivalNs; });
    return tasks;
}

std::map<uint32_t, double> traceClassMeansNs(const std::vector<TraceTask>& tasks)
{
    std::map<uint32_t, std::pair<double, uint64_t>> sums;  // per class: service sum, count
    for (const TraceTask& t : tasks) {
        sums[t.taskClass].first += double(t.serviceNs);
        sums[t.taskClass].second++;
    }
    std::map<uint32_t, double> means;
    for (const auto& [c, s] : sums)
        means[c] = s.first / double(s.second);
    return means;
}

}  // namespace malcolm
