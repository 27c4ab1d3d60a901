// The golden heartbeat vectors of proto/testdata/heartbeat_vectors.csv: a header, then rows
// of node_id, flags, rho, slack_p10, slack_p50, queue_len, policy version and the expected
// 16 bytes in hex. The OMNeT++ app writes every row's heartbeat over the network and the
// receiver compares the bytes that arrive with the row's hex.
#pragma once

#include <cstddef>
#include <cstdint>
#include <istream>
#include <string>
#include <vector>

#include "heartbeat.h"

namespace malcolm {

struct GoldenHeartbeat
{
    Heartbeat heartbeat;  // built from the row's values by the codec
    std::string hex;      // the bytes the row expects, lower-case hex
};

// Reads every non-empty row after the header. Throws std::runtime_error naming the row (0 =
// first after the header) when it does not have 8 columns or a value does not parse.
std::vector<GoldenHeartbeat> readGoldenHeartbeats(std::istream& in);

// Lower-case hex of `n` bytes.
std::string hexOf(const uint8_t *bytes, size_t n);

}  // namespace malcolm
