#pragma once
// Parsers for the compact specifications the mlnc program accepts on its command line.

#include <mlnc/error.hpp>

#include <algorithm>
#include <cstdint>
#include <limits>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

namespace mlnc_cli {

// `--n 1:20,2:4,3:2`: n_m samples for each m-subset of the labels (cli.md). Returns n with
// n[m-1] = n_m for m = 1..max m given (multiplicities not listed get 0). Entries are "m:count" with
// m a positive integer and count a non-negative integer (below 2^53, so exact as a double),
// separated by commas, each m at most once. With K, a multiplicity above K is refused before
// anything is allocated. Errors are mlnc::error naming arg_name and the entry.
inline std::vector<double> parse_n_spec(const std::string& spec, const char* arg_name,
                                        std::optional<std::int64_t> K = std::nullopt) {
    const std::string arg(arg_name);
    if (spec.empty()) throw mlnc::error(arg + ": empty; expected entries m:count such as 1:20,2:4");
    // Digits only (no sign, space, exponent or decimal point); false when empty or above max.
    const auto parse_uint = [](const std::string& s, std::uint64_t max, std::uint64_t& out) {
        if (s.empty() || s.size() > 20) return false;
        std::uint64_t v = 0;
        for (char ch : s) {
            if (ch < '0' || ch > '9') return false;
            const auto digit = static_cast<std::uint64_t>(ch - '0');
            if (v > (max - digit) / 10) return false;
            v = v * 10 + digit;
        }
        out = v;
        return true;
    };
    constexpr std::uint64_t max_m = static_cast<std::uint64_t>(std::numeric_limits<std::int32_t>::max());
    constexpr std::uint64_t max_count = std::uint64_t{1} << 53;
    std::vector<std::pair<std::uint64_t, std::uint64_t>> entries;
    std::set<std::uint64_t> seen;
    std::size_t pos = 0;
    while (true) {
        const std::size_t comma = spec.find(',', pos);
        const std::string entry = spec.substr(pos, comma == std::string::npos ? std::string::npos : comma - pos);
        const std::string where = arg + ": entry '" + entry + "'";
        if (entry.empty()) throw mlnc::error(arg + ": empty entry in '" + spec + "'; expected m:count,m:count,...");
        const std::size_t colon = entry.find(':');
        if (colon == std::string::npos || entry.find(':', colon + 1) != std::string::npos)
            throw mlnc::error(where + ": expected m:count, e.g. 2:4");
        const std::string ms = entry.substr(0, colon), cs = entry.substr(colon + 1);
        std::uint64_t m = 0, count = 0;
        if (!parse_uint(ms, max_m, m))
            throw mlnc::error(where + ": multiplicity '" + ms + "' is not a positive integer");
        if (m < 1) throw mlnc::error(where + ": multiplicity must be at least 1");
        if (K && static_cast<std::int64_t>(m) > *K)
            throw mlnc::error(where + ": multiplicity " + ms + " exceeds K = " + std::to_string(*K));
        if (!cs.empty() && cs[0] == '-') throw mlnc::error(where + ": count is negative");
        if (!parse_uint(cs, max_count, count))
            throw mlnc::error(where + ": count '" + cs + "' is not a non-negative integer below 2^53");
        if (!seen.insert(m).second) throw mlnc::error(where + ": multiplicity " + ms + " is given twice");
        entries.emplace_back(m, count);
        if (comma == std::string::npos) break;
        pos = comma + 1;
    }
    std::uint64_t M = 0;
    for (const auto& e : entries) M = std::max(M, e.first);
    std::vector<double> n(static_cast<std::size_t>(M), 0.0);
    for (const auto& [m, count] : entries) n[static_cast<std::size_t>(m - 1)] = static_cast<double>(count);
    return n;
}

}  // namespace mlnc_cli
