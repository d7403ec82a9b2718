#pragma once
// Carrying an exception across a third-party solver. LBFGSpp reports a failed line search with
// std::runtime_error or std::logic_error, so a caller that wants to treat that failure as a status
// must catch those types; an exception raised by the objective itself (std::bad_alloc, a device
// failure, an mlnc::error that is a bug) must not be caught with them. The fence stores such an
// exception and throws a solver_aborted, which derives from nothing and so passes every handler of
// the solver and of the caller's status logic; the caller then rethrows the original.

#include <exception>
#include <utility>

namespace mlnc::detail {

struct solver_aborted {};

class exception_fence {
public:
    // Runs f(); any exception it throws is stored and replaced by solver_aborted.
    template <class F>
    decltype(auto) operator()(F&& f) {
        try {
            return std::forward<F>(f)();
        } catch (...) {
            stored_ = std::current_exception();
            throw solver_aborted{};
        }
    }

    // After catching solver_aborted: the original exception.
    [[noreturn]] void rethrow() const { std::rethrow_exception(stored_); }

private:
    std::exception_ptr stored_;
};

}  // namespace mlnc::detail
