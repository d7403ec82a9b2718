#pragma once
// The host side of the CUDA backend: the error type of CUDA and cuBLAS failures, the owning
// device buffer (explicit upload from and download to Eigen), the backend object that carries
// the context (device, stream, cuBLAS handle, workspace, status words) and the label sets in
// device memory. Needs the CUDA runtime and cuBLAS headers (link mlnc::cuda), not nvcc: no kernel
// is defined here. Host Eigen code never touches a device pointer: data crosses only through
// upload/download.

#include <mlnc/backend.hpp>
#include <mlnc/cuda/plan.hpp>
#include <mlnc/cuda/view.hpp>
#include <mlnc/error.hpp>
#include <mlnc/labels.hpp>
#include <mlnc/types.hpp>

#include <Eigen/Core>

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>

namespace mlnc {

// A CUDA runtime or cuBLAS call failed: the call, its status code and the library's text for it.
// Not an mlnc::error (that is bad input): a failing device is propagated as its own type.
class cuda_error : public std::runtime_error {
public:
    cuda_error(std::string call, int status, std::string status_name, std::string description)
        : std::runtime_error(call + " failed: " + status_name + " (" + std::to_string(status) + "): " + description),
          call_(std::move(call)),
          status_(status),
          name_(std::move(status_name)) {}
    const std::string& call() const noexcept { return call_; }
    int status() const noexcept { return status_; }
    const std::string& status_name() const noexcept { return name_; }

private:
    std::string call_;
    int status_;
    std::string name_;
};

namespace detail {

inline void cuda_check(cudaError_t e, const char* call) {
    if (e != cudaSuccess) throw cuda_error(call, static_cast<int>(e), cudaGetErrorName(e), cudaGetErrorString(e));
}
inline void cublas_check(cublasStatus_t s, const char* call) {
    if (s != CUBLAS_STATUS_SUCCESS)
        throw cuda_error(call, static_cast<int>(s), cublasGetStatusName(s), cublasGetStatusString(s));
}

}  // namespace detail

// The number of usable CUDA devices; 0 when the runtime reports an error (no driver, a driver
// too old for this runtime, no device).
inline int cuda_device_count() noexcept {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
        (void)cudaGetLastError();  // clear the sticky error for later calls
        return 0;
    }
    return n;
}

// An owning array of device memory of rows x cols entries (column-major, ld = rows).
template <class T>
class device_buffer {
public:
    device_buffer() = default;
    device_buffer(index_t rows, index_t cols = 1) { resize(rows, cols); }
    ~device_buffer() { release(); }
    device_buffer(const device_buffer&) = delete;
    device_buffer& operator=(const device_buffer&) = delete;
    device_buffer(device_buffer&& o) noexcept
        : p_(std::exchange(o.p_, nullptr)), rows_(std::exchange(o.rows_, 0)), cols_(std::exchange(o.cols_, 0)),
          cap_(std::exchange(o.cap_, 0)) {}
    device_buffer& operator=(device_buffer&& o) noexcept {
        if (this != &o) {
            release();
            p_ = std::exchange(o.p_, nullptr);
            rows_ = std::exchange(o.rows_, 0);
            cols_ = std::exchange(o.cols_, 0);
            cap_ = std::exchange(o.cap_, 0);
        }
        return *this;
    }

    // New shape; the memory is reused when it is large enough (the contents are then unspecified).
    void resize(index_t rows, index_t cols = 1) {
        detail::require(rows >= 0 && cols >= 0, "device_buffer", "negative shape");
        const index_t n = rows * cols;
        if (n > cap_) {
            release();
            void* p = nullptr;
            detail::cuda_check(cudaMalloc(&p, static_cast<std::size_t>(n) * sizeof(T)), "cudaMalloc");
            p_ = static_cast<T*>(p);
            cap_ = n;
        }
        rows_ = rows;
        cols_ = cols;
    }

    T* data() noexcept { return p_; }
    const T* data() const noexcept { return p_; }
    index_t rows() const noexcept { return rows_; }
    index_t cols() const noexcept { return cols_; }
    index_t size() const noexcept { return rows_ * cols_; }
    device_matrix_view<T> view() noexcept { return {p_, rows_, cols_, rows_ > 0 ? rows_ : 1}; }
    device_matrix_view<const T> view() const noexcept { return {p_, rows_, cols_, rows_ > 0 ? rows_ : 1}; }
    device_vector_view<T> vector_view() noexcept { return {p_, size()}; }
    device_vector_view<const T> vector_view() const noexcept { return {p_, size()}; }

private:
    void release() noexcept {
        if (p_) (void)cudaFree(p_);  // a destructor cannot report; a failing device shows at the next call
        p_ = nullptr;
        cap_ = 0;
    }
    T* p_ = nullptr;
    index_t rows_ = 0, cols_ = 0, cap_ = 0;
};

// The context of the CUDA backend: a device, a stream (borrowed from the caller, or its own), a
// cuBLAS handle bound to that stream, a workspace and two status words in device memory (one for
// the calls that return host values, one sticky for the device-resident calls). Not copyable
// (it owns the handle); pass it by reference.
class cuda_backend {
public:
    // Its own stream on device 0.
    cuda_backend() : cuda_backend(cuda{}) {}
    // The device and stream of `ctx`; a null stream means its own (non-blocking) stream.
    explicit cuda_backend(cuda ctx) : device_(ctx.device) {
        detail::check_backend_value(ctx);
        detail::cuda_check(cudaSetDevice(device_), "cudaSetDevice");
        if (ctx.stream) {
            stream_ = static_cast<cudaStream_t>(ctx.stream);
        } else {
            detail::cuda_check(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking), "cudaStreamCreateWithFlags");
            own_stream_ = true;
        }
        try {
            detail::cublas_check(cublasCreate(&blas_), "cublasCreate");
            detail::cublas_check(cublasSetStream(blas_, stream_), "cublasSetStream");
            set_tf32(false);
            status_.resize(2);
            reset_status(host_slot);
            reset_status(device_slot);
        } catch (...) {
            release();
            throw;
        }
    }
    // Borrows `stream` (on the current device).
    explicit cuda_backend(cudaStream_t stream) : cuda_backend(cuda{current_device(), stream}) {}
    ~cuda_backend() { release(); }
    cuda_backend(const cuda_backend&) = delete;
    cuda_backend& operator=(const cuda_backend&) = delete;

    int device() const noexcept { return device_; }
    cudaStream_t stream() const noexcept { return stream_; }
    cublasHandle_t blas() const noexcept { return blas_; }
    bool tf32() const noexcept { return tf32_; }
    // TF32 tensor-core GEMMs for float (about 10 bits of mantissa in the products): off by
    // default, so float results match the CPU backend to ~1e-6; double is never affected.
    void set_tf32(bool on) {
        detail::cublas_check(cublasSetMathMode(blas_, on ? CUBLAS_TF32_TENSOR_OP_MATH : CUBLAS_DEFAULT_MATH),
                             "cublasSetMathMode");
        tf32_ = on;
    }

    void synchronize() const { detail::cuda_check(cudaStreamSynchronize(stream_), "cudaStreamSynchronize"); }

    // At least `bytes` of device scratch, valid until the next call that asks for more.
    void* workspace(std::size_t bytes) {
        const auto words = static_cast<index_t>((bytes + sizeof(double) - 1) / sizeof(double));
        if (words > workspace_.size()) {
            synchronize();  // work queued on the stream may still use the old block
            workspace_.resize(words);
        }
        return workspace_.data();
    }

    // The status words: host_slot is reset by each call that returns a host value; device_slot
    // collects the non-finite inputs of the device-resident calls until clear_non_finite().
    static constexpr int host_slot = 0;
    static constexpr int device_slot = 1;
    unsigned long long* status_word(int slot) noexcept {
        return status_.data() + slot;
    }
    void reset_status(int slot) {
        detail::cuda_check(cudaMemsetAsync(status_word(slot), 0xff, sizeof(unsigned long long), stream_),
                           "cudaMemsetAsync");
    }
    // The first non-finite input (row, column) a device-resident call met since the last
    // clear_non_finite() (the smallest in column order over those calls), if any. Synchronises.
    std::optional<std::pair<index_t, index_t>> non_finite() { return read_status(device_slot); }
    void clear_non_finite() { reset_status(device_slot); }

    std::optional<std::pair<index_t, index_t>> read_status(int slot) {
        unsigned long long w = 0;
        detail::cuda_check(cudaMemcpyAsync(&w, status_word(slot), sizeof w, cudaMemcpyDeviceToHost, stream_),
                           "cudaMemcpyAsync");
        synchronize();
        if (w == cuda_plan::no_position) return std::nullopt;
        return std::pair{cuda_plan::position_row(w), cuda_plan::position_col(w)};
    }

private:
    static int current_device() {
        int d = 0;
        detail::cuda_check(cudaGetDevice(&d), "cudaGetDevice");
        return d;
    }
    void release() noexcept {
        if (blas_) (void)cublasDestroy(blas_);
        if (own_stream_ && stream_) (void)cudaStreamDestroy(stream_);
        blas_ = nullptr;
        stream_ = nullptr;
    }

    int device_ = 0;
    cudaStream_t stream_ = nullptr;
    bool own_stream_ = false;
    cublasHandle_t blas_ = nullptr;
    bool tf32_ = false;
    device_buffer<double> workspace_;
    device_buffer<unsigned long long> status_;
};

// Copies host data into a device buffer (column-major, ld = rows) on the backend's stream and
// waits for the copy.
template <class D>
device_buffer<typename D::Scalar> upload(cuda_backend& gpu, const Eigen::MatrixBase<D>& x) {
    using T = typename D::Scalar;
    const matrix<T> host = x;  // evaluated, column-major and contiguous
    device_buffer<T> d(host.rows(), host.cols());
    detail::cuda_check(cudaMemcpyAsync(d.data(), host.data(), static_cast<std::size_t>(host.size()) * sizeof(T),
                                       cudaMemcpyHostToDevice, gpu.stream()),
                       "cudaMemcpyAsync");
    gpu.synchronize();
    return d;
}

// Copies a device matrix (any leading dimension) to the host, after the work queued before it on
// the backend's stream.
template <class T>
matrix<std::remove_const_t<T>> download(cuda_backend& gpu, device_matrix_view<T> v) {
    using U = std::remove_const_t<T>;
    matrix<U> host(v.rows, v.cols);
    if (!v.empty())
        detail::cuda_check(cudaMemcpy2DAsync(host.data(), static_cast<std::size_t>(v.rows) * sizeof(U), v.data,
                                             static_cast<std::size_t>(v.ld) * sizeof(U),
                                             static_cast<std::size_t>(v.rows) * sizeof(U),
                                             static_cast<std::size_t>(v.cols), cudaMemcpyDeviceToHost, gpu.stream()),
                           "cudaMemcpy2DAsync");
    gpu.synchronize();
    return host;
}
template <class T>
vector<std::remove_const_t<T>> download(cuda_backend& gpu, device_vector_view<T> v) {
    vector<std::remove_const_t<T>> host(v.size);
    if (v.size > 0)
        detail::cuda_check(cudaMemcpyAsync(host.data(), v.data, static_cast<std::size_t>(v.size) * sizeof(T),
                                           cudaMemcpyDeviceToHost, gpu.stream()),
                           "cudaMemcpyAsync");
    gpu.synchronize();
    return host;
}

// What the kernels read of label sets: CSR arrays in device memory. Sample i's labels are
// indices[offsets[i] .. offsets[i + 1]), strictly increasing, in [0, K).
struct device_label_view {
    const index_t* offsets = nullptr;  // N + 1 entries
    const label_t* indices = nullptr;
    index_t K = 0, N = 0;
};

// Label sets in device memory: the label_sets' own CSR arrays, copied as they are.
class device_labels {
public:
    device_labels(cuda_backend& gpu, const label_sets& S) : K_(S.num_labels()), N_(S.size()) {
        offsets_.resize(static_cast<index_t>(S.offsets().size()));
        indices_.resize(static_cast<index_t>(S.indices().size()));
        detail::cuda_check(cudaMemcpyAsync(offsets_.data(), S.offsets().data(), S.offsets().size() * sizeof(index_t),
                                           cudaMemcpyHostToDevice, gpu.stream()),
                           "cudaMemcpyAsync");
        if (!S.indices().empty())
            detail::cuda_check(cudaMemcpyAsync(indices_.data(), S.indices().data(),
                                               S.indices().size() * sizeof(label_t), cudaMemcpyHostToDevice,
                                               gpu.stream()),
                               "cudaMemcpyAsync");
        gpu.synchronize();
    }
    index_t num_labels() const noexcept { return K_; }
    index_t size() const noexcept { return N_; }
    device_label_view view() const noexcept { return {offsets_.data(), indices_.data(), K_, N_}; }

private:
    index_t K_, N_;
    device_buffer<index_t> offsets_;
    device_buffer<label_t> indices_;
};

inline device_labels to_device(const label_sets& S, cuda_backend& gpu) { return device_labels(gpu, S); }

}  // namespace mlnc
