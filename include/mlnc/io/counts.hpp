#pragma once
// The two compact ways to describe a training set by counts (cli.md):
//  - a multiplicity spec "1:20,2:4,3:2": n_m samples for each m-subset of the labels
//    (parse_multiplicity_spec), the assumptions of Theorem 1;
//  - a counts file of lines "count i j k ...": `count` samples with label set {i, j, k, ...}
//    (parse_counts / read_counts), any training set, balanced or not.
// Both refuse malformed text with an mlnc::error that names the argument (and the line) and
// quotes the offending text as printable characters. Sizes are bounded before anything of that
// size is allocated.

#include <mlnc/detail/memory.hpp>
#include <mlnc/error.hpp>
#include <mlnc/io/text.hpp>
#include <mlnc/labels.hpp>
#include <mlnc/types.hpp>

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace mlnc::io {

// `1:20,2:4,3:2` -> n_m for each multiplicity m listed (m = 1: 20, m = 2: 4, m = 3: 2); entries
// given with count 0 are kept, multiplicities not listed are absent. Entries are "m:count" with m
// a positive integer below 2^31 and count a non-negative integer up to 2^53 (exact as a double, the
// closed form's arithmetic), separated by commas, each m at most once. With K > 0, a multiplicity
// above K is refused. Errors name arg_name and the entry.
inline multiplicity_counts parse_multiplicity_spec(std::string_view spec, const std::string& arg_name, index_t K = 0) {
    const std::string& arg = arg_name;
    if (spec.empty()) throw error(arg + ": empty; expected entries m:count such as 1:20,2:4");
    // Digits only (no sign, space, exponent or decimal point); false when empty or above max.
    const auto parse_uint = [](std::string_view s, index_t max, index_t& out) {
        if (s.empty() || s.size() > 20) return false;
        index_t v = 0;
        for (char ch : s) {
            if (ch < '0' || ch > '9') return false;
            const index_t digit = ch - '0';
            if (v > (max - digit) / 10) return false;
            v = v * 10 + digit;
        }
        out = v;
        return true;
    };
    constexpr index_t max_m = std::numeric_limits<label_t>::max();
    constexpr index_t max_count = index_t{1} << 53;
    multiplicity_counts n;
    std::size_t pos = 0;
    while (true) {
        const std::size_t comma = spec.find(',', pos);
        const std::string_view entry = spec.substr(pos, comma == std::string_view::npos ? std::string_view::npos : comma - pos);
        const std::string where = arg + ": entry '" + mlnc::detail::printable(entry, 64) + "'";
        if (entry.empty())
            throw error(arg + ": empty entry in '" + mlnc::detail::printable(spec, 64) + "'; expected m:count,m:count,...");
        const std::size_t colon = entry.find(':');
        if (colon == std::string_view::npos || entry.find(':', colon + 1) != std::string_view::npos)
            throw error(where + ": expected m:count, e.g. 2:4");
        const std::string_view ms = entry.substr(0, colon), cs = entry.substr(colon + 1);
        index_t m = 0, count = 0;
        if (!parse_uint(ms, max_m, m))
            throw error(where + ": multiplicity '" + mlnc::detail::printable(ms, 32) + "' is not a positive integer below 2^31");
        if (m < 1) throw error(where + ": multiplicity must be at least 1");
        if (K > 0 && m > K) throw error(where + ": multiplicity " + std::to_string(m) + " exceeds K = " + std::to_string(K));
        if (!cs.empty() && cs[0] == '-') throw error(where + ": count is negative");
        if (!parse_uint(cs, max_count, count))
            throw error(where + ": count '" + mlnc::detail::printable(cs, 32) + "' is not a non-negative integer below 2^53");
        if (n.contains(m)) throw error(where + ": multiplicity " + std::to_string(m) + " is given twice");
        n.insert_or_assign(m, count);
        if (comma == std::string_view::npos) break;
        pos = comma + 1;
    }
    return n;
}

// A training set given by counts: the samples, and n_m when the file is balanced and complete
// within every multiplicity present (every m-subset listed, all with the same count), i.e. when
// Theorem 1's assumptions hold and the closed form applies.
struct counted_samples {
    label_sets S;
    std::optional<multiplicity_counts> n;  // the multiplicities with samples, and their n_m
};

// Parses the text of a counts file: lines "count i j k ..." (count >= 0, labels in [0, K),
// separated by spaces or tabs; blank lines and \r\n ends are fine). At most max_samples samples
// in all. `name` is the source in messages ("--counts file.txt").
inline counted_samples parse_counts(std::string_view text, index_t K, index_t max_samples, const std::string& name) {
    if (K < 2 || K > std::numeric_limits<label_t>::max())
        throw error(name + ": K must be in [2, 2^31 - 1], got " + std::to_string(K));
    if (max_samples < 1) throw error(name + ": max_samples must be at least 1");
    std::vector<index_t> offsets{0};
    std::vector<label_t> indices;
    std::map<std::vector<label_t>, index_t> seen;
    std::vector<label_t> set;
    std::vector<std::string_view> tokens;
    index_t total = 0;
    // The samples are capped, but a sample may carry many labels: the CSR arrays are checked
    // against the memory as they grow (twice their size, for the moment a vector doubles).
    mlnc::detail::growth_guard guard(name, "the label sets the counts expand to");
    detail::text_lines lines(text, name);
    for (std::string_view line; lines.next(line);) {
        tokens.clear();
        detail::line_tokens split(line);
        for (std::string_view tok; split.next(tok);) tokens.push_back(tok);
        if (tokens.empty()) continue;
        const auto integer = [&](std::string_view tok, const char* what) {
            const detail::integer_token v = detail::parse_integer(tok);
            if (!v.ok()) lines.fail(std::string(what) + " '" + detail::token_text(tok) + "' is not an integer");
            return v.value;
        };
        const std::int64_t count = integer(tokens[0], "count");
        if (count < 0) lines.fail("count " + std::to_string(count) + " is negative");
        set.clear();
        for (std::size_t t = 1; t < tokens.size(); ++t) {
            const std::int64_t k = integer(tokens[t], "label");
            if (k < 0 || k >= K) lines.fail("label " + std::to_string(k) + " out of range [0, " + std::to_string(K) + ")");
            set.push_back(static_cast<label_t>(k));
        }
        if (set.empty()) lines.fail("a label set needs at least one label after the count");
        std::sort(set.begin(), set.end());
        if (std::adjacent_find(set.begin(), set.end()) != set.end()) lines.fail("duplicate label in the set");
        if (!seen.emplace(set, count).second) lines.fail("this label set was already given");
        if (count > max_samples - total)
            throw error(name + ": more than " + std::to_string(max_samples) + " samples in all");
        total += count;
        guard.add(2.0 * static_cast<double>(count) *
                  (static_cast<double>(set.size()) * sizeof(label_t) + sizeof(index_t)));
        for (std::int64_t c = 0; c < count; ++c) {
            indices.insert(indices.end(), set.begin(), set.end());
            offsets.push_back(static_cast<index_t>(indices.size()));
        }
    }
    if (total == 0) throw error(name + ": gives no samples");

    counted_samples out{label_sets::from_csr(std::move(offsets), std::move(indices), K), std::nullopt};
    // Balanced and complete within each multiplicity present?
    multiplicity_counts n;                    // the count of each multiplicity present
    per_multiplicity<index_t> sets;           // how many label sets of that multiplicity were listed
    bool balanced = true;
    for (const auto& [s, count] : seen) {
        if (count == 0) continue;
        const auto m = static_cast<index_t>(s.size());
        if (!n.contains(m)) n[m] = count;
        else if (n.at(m) != count) balanced = false;
        ++sets[m];
    }
    for (const auto& [m, listed] : sets) {
        u128 all_sets = 0;  // C(K, m); beyond 2^128 the file cannot list them all
        if (!mlnc::detail::binomial_u128(K, m, all_sets) || static_cast<u128>(listed) != all_sets) balanced = false;
    }
    if (balanced) out.n = std::move(n);
    return out;
}

// A counts file; see parse_counts. The file must be a regular file of at most 1 GiB.
inline counted_samples read_counts(const std::filesystem::path& path, index_t K, index_t max_samples) {
    namespace fs = std::filesystem;
    const std::string name = mlnc::detail::printable(path.string());
    std::error_code ec;
    const fs::file_status st = fs::status(path, ec);
    if (st.type() == fs::file_type::not_found) throw error(name + ": no such file");
    if (st.type() != fs::file_type::regular) throw error(name + ": is not a regular file");
    const auto size = fs::file_size(path, ec);
    if (ec) throw error(name + ": cannot determine the file size");
    if (size > (std::uintmax_t{1} << 30)) throw error(name + ": larger than 1 GiB; not a counts file");
    std::ifstream in(path, std::ios::binary);
    if (!in) throw error(name + ": cannot open for reading");
    const std::string text{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
    if (in.bad()) throw error(name + ": read error");
    return parse_counts(text, K, max_samples, name);
}

}  // namespace mlnc::io
