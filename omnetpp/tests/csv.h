// Minimal reader for the shared golden-vector CSVs in proto/testdata (no quoting used there).
#pragma once

#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace malcolm::test {

inline std::vector<std::string> splitFields(const std::string& line, char sep)
{
    std::vector<std::string> out;
    std::string field;
    std::istringstream in(line);
    while (std::getline(in, field, sep))
        out.push_back(field);
    if (!line.empty() && line.back() == sep)
        out.push_back("");
    return out;
}

// Rows of `file` under MALCOLM_TESTDATA_DIR, header skipped.
inline std::vector<std::vector<std::string>> readRows(const std::string& file)
{
    std::string path = std::string(MALCOLM_TESTDATA_DIR) + "/" + file;
    std::ifstream in(path);
    if (!in)
        throw std::runtime_error("cannot open golden vectors " + path);
    std::vector<std::vector<std::string>> rows;
    std::string line;
    bool header = true;
    while (std::getline(in, line)) {
        if (!line.empty() && line.back() == '\r')
            line.pop_back();
        if (line.empty())
            continue;
        if (header) {
            header = false;
            continue;
        }
        rows.push_back(splitFields(line, ','));
    }
    return rows;
}

}  // namespace malcolm::test
