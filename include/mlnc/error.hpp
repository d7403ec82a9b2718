#pragma once
// The error model of mlnc.
//  - Bad input (shapes, labels, non-finite values, files, sizes that cannot be honoured) throws
//    mlnc::error, whose message names the argument and the problem on one line of printable text.
//  - Numerical outcomes (a solver that did not converge, logits that overflow during a line-search
//    trial) are returned as statuses, never thrown. Kernels report them and throw nothing, so they
//    can run inside parallel regions.
//  - Everything else (std::bad_alloc, a failing device, a bug) propagates unchanged: no mlnc
//    function turns a foreign exception into a status.

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <stdexcept>
#include <string>
#include <string_view>

namespace mlnc {

class error : public std::invalid_argument {
public:
    using std::invalid_argument::invalid_argument;
};

namespace detail {

// A number as it should appear in an error message: shortest round-trip form (-1, 1e-300).
inline std::string num(double v) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.17g", v);
    // Prefer the shortest representation that reads back to the same double.
    for (int prec = 1; prec <= 17; ++prec) {
        char b[32];
        std::snprintf(b, sizeof b, "%.*g", prec, v);
        if (std::strtod(b, nullptr) == v || v != v) return b;
    }
    return buf;
}

// Text taken from input (a path, a token, a command-line value) as it may appear inside a one-line
// message: printable ASCII is kept, a backslash and every other byte (newlines, escape sequences,
// UTF-8) become \\ and \xNN. Longer text is cut at max_bytes with "...".
inline std::string printable(std::string_view text, std::size_t max_bytes = 256) {
    static constexpr char hex[] = "0123456789abcdef";
    std::string s;
    s.reserve(std::min(text.size(), max_bytes) + 8);
    for (std::size_t i = 0; i < text.size() && i < max_bytes; ++i) {
        const auto c = static_cast<unsigned char>(text[i]);
        if (c == '\\') {
            s += "\\\\";
        } else if (c >= 0x20 && c < 0x7f) {
            s += static_cast<char>(c);
        } else {
            s += "\\x";
            s += hex[c >> 4];
            s += hex[c & 0xf];
        }
    }
    if (text.size() > max_bytes) s += "...";
    return s;
}

// Throws mlnc::error("<what>: <problem>") when cond is false.
inline void require(bool cond, const std::string& what, const std::string& problem) {
    if (!cond) throw error(what + ": " + problem);
}

}  // namespace detail
}  // namespace mlnc
