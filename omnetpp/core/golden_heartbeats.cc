#include "golden_heartbeats.h"

#include <cstdio>
#include <sstream>
#include <stdexcept>

namespace malcolm {

namespace {
std::vector<std::string> splitCsv(const std::string& line)
{
    std::vector<std::string> out;
    std::string field;
    std::istringstream in(line);
    while (std::getline(in, field, ','))
        out.push_back(field);
    return out;
}
}  // namespace

std::vector<GoldenHeartbeat> readGoldenHeartbeats(std::istream& in)
{
    std::vector<GoldenHeartbeat> rows;
    std::string line;
    std::getline(in, line);  // header
    while (std::getline(in, line)) {
        if (line.empty())
            continue;
        auto r = splitCsv(line);
        const std::string where = "golden heartbeat row " + std::to_string(rows.size());
        if (r.size() != 8)
            throw std::runtime_error(where + ": expected 8 columns");
        try {
            Heartbeat hb = Heartbeat::fromValues(static_cast<uint8_t>(std::stoul(r[0])), static_cast<uint8_t>(std::stoul(r[1])),
                                                 loadFactorFromRho(std::stod(r[2])), std::stoll(r[3]), std::stoll(r[4]),
                                                 std::stoull(r[5]), static_cast<uint32_t>(std::stoull(r[6])));
            rows.push_back({hb, r[7]});
        }
        catch (const std::logic_error& e) {  // std::stoul and friends
            throw std::runtime_error(where + ": " + e.what());
        }
    }
    return rows;
}

std::string hexOf(const uint8_t *bytes, size_t n)
{
    std::string s;
    char buf[3];
    for (size_t i = 0; i < n; i++) {
        std::snprintf(buf, sizeof buf, "%02x", bytes[i]);
        s += buf;
    }
    return s;
}

}  // namespace malcolm
