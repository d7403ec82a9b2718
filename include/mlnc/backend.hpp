#pragma once
// Backends are values that carry their execution context: mlnc::cpu (thread count) and
// mlnc::cuda (device, stream). One calling convention everywhere (docs/api.md):
//  - free functions take the backend as their first argument; without it they run on cpu{}:
//      pal_loss(Z, S)            pal_loss(mlnc::cpu{4}, Z, S)
//  - classes take the backend as the first constructor argument (without it: cpu{}) and deduce
//    its type: predictors are templated on the backend alone; objectives on <scalar, backend>,
//    where class template argument deduction gives <double, the backend's type> and a float
//    object names its scalar (and then its backend type):
//      pal_objective f(mlnc::cpu{4}, S, lambdas)      // pal_objective<double, cpu>
//      pal_objective<float> g(S, lambdas)              // pal_objective<float, cpu>
// No free function needs an explicit template argument: the backend type follows from the value.
// Each backend has a row in the capability table (backend_traits); front ends check it at
// compile time, so a backend that was not compiled in is a compile error with a readable
// message, and the tests consult the same table to decide what to run.

#include <mlnc/config.hpp>
#include <mlnc/error.hpp>

#include <concepts>
#include <string>
#include <string_view>
#include <type_traits>

namespace mlnc {

// Host kernels (Eigen and mlnc's own loops).
struct cpu {
    // Threads the CPU kernels may use: 0 = all (OpenMP's default team size), 1 = serial. Honoured
    // in programs compiled with OpenMP (link mlnc::openmp); without it everything is serial.
    // Inside a parallel region of the caller the kernels run serially (no nested teams).
    int threads = 0;
};

// Device kernels (include/mlnc/cuda/, compiled by nvcc; programs link mlnc::cuda, which defines
// MLNC_WITH_CUDA=1 for all their translation units). This is the context's description; the
// object that holds it (a stream, a cuBLAS handle, a workspace) is mlnc::cuda_backend.
struct cuda {
    int device = 0;          // the CUDA device ordinal
    void* stream = nullptr;  // a cudaStream_t the backend borrows (null: it creates its own)
};
class cuda_backend;  // <mlnc/cuda/runtime.hpp>

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
    static constexpr bool pal_loss = true;    // logits-level PAL-CE / PAL-N kernels
    static constexpr bool objective = true;   // f(W, H, b) with gradients
    static constexpr bool training = true;    // train_ufm (L-BFGS and gradient descent)
    static constexpr bool predictors = true;  // ONN, tag-wise and OvA prediction
    static constexpr bool threads = true;     // honours cpu::threads (with OpenMP: mlnc::openmp)
    static constexpr bool host_memory = true;  // takes Eigen objects in host memory
    static constexpr bool tf32 = false;        // has a TF32 option for float GEMMs
};

template <>
struct backend_traits<cuda> {
    static constexpr bool is_backend = true;
    static constexpr std::string_view name = "cuda";
    // A property of the program, not of the translation unit (one meaning everywhere, no ODR
    // hazard): MLNC_WITH_CUDA comes from the build (mlnc::cuda) for every TU alike. Whether a TU
    // can compile the kernels is a separate, compile-time check in <mlnc/cuda/*.cuh>.
    static constexpr bool compiled_in = MLNC_WITH_CUDA != 0;
    static constexpr bool supports_float = true;
    static constexpr bool supports_double = true;
    static constexpr bool pal_loss = true;     // on device views (mlnc/cuda/pal.cuh)
    static constexpr bool objective = true;    // pal_objective<T, cuda_backend> (mlnc/cuda/objective.cuh)
    // train_ufm(mlnc::cuda{...}, ...) with <mlnc/cuda/ufm.cuh>: the objective on the device; L-BFGS
    // keeps its vectors on the host (x copied in, the gradient out, per evaluation), gradient
    // descent keeps all of its vectors on the device.
    static constexpr bool training = true;
    static constexpr bool predictors = false;
    static constexpr bool threads = false;
    static constexpr bool host_memory = false;  // takes views of device memory, never Eigen objects
    static constexpr bool tf32 = true;          // cuda_backend::set_tf32
};
// The object that carries the CUDA context has the same capabilities.
template <>
struct backend_traits<cuda_backend> : backend_traits<cuda> {};

// A backend type (cv-qualifiers and references removed).
template <class B>
concept backend = backend_traits<std::remove_cvref_t<B>>::is_backend;

template <class B>
concept available_backend = backend<B> && backend_traits<std::remove_cvref_t<B>>::compiled_in;

// The backend a call without one runs on.
inline constexpr cpu default_backend{};

namespace detail {

// Called first by every backend-templated front end. The messages are the whole diagnostic a
// user sees, so they say what to do.
template <class B>
constexpr void check_backend() {
    static_assert(backend<B>, "mlnc: the argument is not an mlnc backend (use mlnc::cpu{} or mlnc::cuda{})");
    if constexpr (backend<B>) {
        static_assert(backend_traits<std::remove_cvref_t<B>>::compiled_in,
                      "mlnc: backend mlnc::cuda was not compiled in: configure with MLNC_ENABLE_CUDA=ON "
                      "and compile this translation unit with nvcc, or use mlnc::cpu");
    }
}

// The Eigen front ends (pal.hpp, objective.hpp) take host memory.
template <class B>
constexpr void check_host_backend() {
    check_backend<B>();
    if constexpr (available_backend<B>) {
        static_assert(backend_traits<std::remove_cvref_t<B>>::host_memory,
                      "mlnc: backend mlnc::cuda takes device memory, not Eigen objects: include <mlnc/cuda/pal.cuh> "
                      "or <mlnc/cuda/objective.cuh> in a file compiled by nvcc and pass device views "
                      "(mlnc::device_matrix_view), or use mlnc::cpu");
    }
}

// The run-time half: the context a backend value carries must make sense.
inline void check_backend_value(const cpu& be) {
    require(be.threads >= 0, "cpu::threads", "must be >= 0 (0 = all hardware threads), got " + std::to_string(be.threads));
}
inline void check_backend_value(const cuda& be) {
    require(be.device >= 0, "cuda::device", "must be >= 0, got " + std::to_string(be.device));
}

}  // namespace detail
}  // namespace mlnc
