#pragma once
// The one exception type of mlnc: bad input (shapes, labels, non-finite values, files).
// Numerical non-convergence is never an exception; solvers return a status instead.

#include <cstdio>
#include <cstdlib>
#include <stdexcept>
#include <string>

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

// Throws mlnc::error("<what>: <problem>") when cond is false.
inline void require(bool cond, const std::string& what, const std::string& problem) {
    if (!cond) throw error(what + ": " + problem);
}

}  // namespace detail
}  // namespace mlnc
