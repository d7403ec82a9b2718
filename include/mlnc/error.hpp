#pragma once
// The one exception type of mlnc: bad input (shapes, labels, non-finite values, files).
// Numerical non-convergence is never an exception; solvers return a status instead.

#include <stdexcept>
#include <string>

namespace mlnc {

class error : public std::invalid_argument {
public:
    using std::invalid_argument::invalid_argument;
};

namespace detail {

// Throws mlnc::error("<what>: <problem>") when cond is false.
inline void require(bool cond, const std::string& what, const std::string& problem) {
    if (!cond) throw error(what + ": " + problem);
}

}  // namespace detail
}  // namespace mlnc
