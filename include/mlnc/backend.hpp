#pragma once
// Backends are tag types passed as a template parameter. Each has a row in the capability table
// (backend_traits); front-end functions check it at compile time, so asking for a backend that
// was not compiled in is a compile error with a readable message, never a run-time surprise.

#include <mlnc/config.hpp>

#include <concepts>
#include <string_view>

namespace mlnc {

struct cpu {};   // host kernels (Eigen + hand-written loops)
struct cuda {};  // device kernels; available only when built with nvcc and MLNC_WITH_CUDA

template <class B>
struct backend_traits {
    static constexpr bool is_backend = false;
};

template <>
struct backend_traits<cpu> {
    static constexpr bool is_backend = true;
    static constexpr std::string_view name = "cpu";
    static constexpr bool compiled_in = true;
    static constexpr bool supports_float = true;
    static constexpr bool supports_double = true;
    static constexpr bool pal_loss = true;   // logits-level PAL-CE / PAL-N kernels
    static constexpr bool objective = true;  // f(W, H, b) with gradients
};

template <>
struct backend_traits<cuda> {
    static constexpr bool is_backend = true;
    static constexpr std::string_view name = "cuda";
#if MLNC_WITH_CUDA && defined(__CUDACC__)
    static constexpr bool compiled_in = true;
#else
    static constexpr bool compiled_in = false;
#endif
    static constexpr bool supports_float = true;
    static constexpr bool supports_double = true;
    static constexpr bool pal_loss = false;  // kernels arrive with the CUDA issue
    static constexpr bool objective = false;
};

template <class B>
concept backend = backend_traits<B>::is_backend;

template <class B>
concept available_backend = backend<B> && backend_traits<B>::compiled_in;

namespace detail {

// Called first by every backend-templated front end. The messages are the whole diagnostic a
// user sees, so they say what to do.
template <class B>
constexpr void check_backend() {
    static_assert(backend<B>, "mlnc: the template argument is not an mlnc backend tag (use mlnc::cpu or mlnc::cuda)");
    if constexpr (backend<B>) {
        static_assert(backend_traits<B>::compiled_in,
                      "mlnc: backend mlnc::cuda was not compiled in: configure with MLNC_ENABLE_CUDA=ON "
                      "and compile this translation unit with nvcc, or use mlnc::cpu");
    }
}

}  // namespace detail
}  // namespace mlnc
