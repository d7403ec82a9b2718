#pragma once
// The objective f(W, H, b) of objective.hpp on the GPU: pal_objective<T, cuda_backend>, over
// device views. The chunked algorithm of the CPU objective with cuBLAS (64-bit API) on the
// backend's stream:
//   for each chunk of c columns: Z_c = W H_c (GEMM); the column kernel adds b as it reads Z_c
//   and turns it into G_c in place (scaled by 1/N); dW (+)= G_c H_c^T, dH_c = W^T G_c (GEMMs),
//   db (+)= G_c 1 (GEMV with a vector of ones).
// When even cuda_plan::min_chunk columns of all K logits exceed the workspace, the classes are
// tiled: pass 1 computes each tile's logits and merges its (max, sum of exp) into the column's
// running pair, saving the label logits; pass 2 recomputes each tile's logits and writes its
// gradient from the merged pair. The penalty (sums of squares, in double) and its gradient
// 2 l X run on the device too; the one synchronisation is at the end, for the host value.
// Bad input (shapes, a non-finite entry of W, H or b) throws mlnc::error; logits that overflow T
// are reported in objective_value::status as on the CPU. The outputs are unspecified after a
// throw.

#include <mlnc/cuda/kernels.cuh>
#include <mlnc/cuda/plan.hpp>
#include <mlnc/cuda/runtime.hpp>
#include <mlnc/cuda/view.hpp>
#include <mlnc/objective.hpp>

#include <algorithm>
#include <cstddef>
#include <limits>
#include <string>
#include <utility>

namespace mlnc {
namespace detail {

inline cublasStatus_t gemm(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, index_t m, index_t n,
                           index_t k, float alpha, const float* A, index_t lda, const float* B, index_t ldb, float beta,
                           float* C, index_t ldc) {
    return cublasSgemm_64(h, ta, tb, m, n, k, &alpha, A, lda, B, ldb, &beta, C, ldc);
}
inline cublasStatus_t gemm(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, index_t m, index_t n,
                           index_t k, double alpha, const double* A, index_t lda, const double* B, index_t ldb,
                           double beta, double* C, index_t ldc) {
    return cublasDgemm_64(h, ta, tb, m, n, k, &alpha, A, lda, B, ldb, &beta, C, ldc);
}
inline cublasStatus_t gemv(cublasHandle_t h, index_t m, index_t n, float alpha, const float* A, index_t lda,
                           const float* x, float beta, float* y) {
    return cublasSgemv_64(h, CUBLAS_OP_N, m, n, &alpha, A, lda, x, 1, &beta, y, 1);
}
inline cublasStatus_t gemv(cublasHandle_t h, index_t m, index_t n, double alpha, const double* A, index_t lda,
                           const double* x, double beta, double* y) {
    return cublasDgemv_64(h, CUBLAS_OP_N, m, n, &alpha, A, lda, x, 1, &beta, y, 1);
}

template <class T>
void check_view_shape(device_matrix_view<T> v, index_t rows, index_t cols, const char* name, const char* what) {
    if (v.rows != rows || v.cols != cols)
        throw error(std::string(name) + ": expected " + std::to_string(rows) + " x " + std::to_string(cols) + " (" +
                    what + "), got " + std::to_string(v.rows) + " x " + std::to_string(v.cols));
    require(v.data != nullptr || v.empty(), name, "null device pointer");
}

}  // namespace detail

template <class T>
class pal_objective<T, cuda_backend> {
    static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>, "mlnc: PAL-CE is implemented for float and double");

public:
    using in_matrix = device_matrix_view<const T>;
    using in_vector = device_vector_view<const T>;
    using out_matrix = device_matrix_view<T>;  // a default view: this gradient is not wanted
    using out_vector = device_vector_view<T>;

    // The backend is borrowed (it must outlive the objective); the labels are copied to the device.
    pal_objective(cuda_backend& gpu, const label_sets& S, penalties lambdas, pal_variant v = pal_variant::pal)
        : gpu_(&gpu), host_offsets_(S.offsets()), s_(gpu, S), lam_(lambdas), v_(v) {
        check_penalties(lam_);
        detail::require(v_ == pal_variant::pal || v_ == pal_variant::pal_n, "variant",
                        "unknown value " + std::to_string(static_cast<int>(v_)));
        if (S.empty()) throw error("labels: no samples");
    }

    cuda_backend& backend_value() const noexcept { return *gpu_; }
    std::size_t workspace_bytes() const noexcept { return workspace_bytes_; }
    void set_workspace_bytes(std::size_t bytes) {
        detail::require(bytes >= sizeof(T), "workspace_bytes", "must hold at least one logit");
        workspace_bytes_ = bytes;
    }
    const device_labels& labels() const noexcept { return s_; }
    const penalties& lambdas() const noexcept { return lam_; }
    pal_variant variant() const noexcept { return v_; }
    index_t num_labels() const noexcept { return s_.num_labels(); }
    index_t num_samples() const noexcept { return s_.size(); }
    cuda_plan::objective_plan plan() const {
        return cuda_plan::plan_objective(num_labels(), num_samples(), sizeof(T), workspace_bytes_);
    }

    // f at (W, H, b): W K x d, H d x N, b K entries, all device memory.
    objective_value<T> evaluate(in_matrix W, in_matrix H, in_vector b) { return evaluate(W, H, b, {}, {}, {}); }
    // f and the gradients that are wanted (a default view: not wanted), written, not accumulated.
    // They must not alias W, H or b.
    objective_value<T> evaluate(in_matrix W, in_matrix H, in_vector b, out_matrix dW, out_matrix dH, out_vector db);

private:
    void queue_backprop(in_matrix W, in_matrix Hc, index_t k0, index_t kt, index_t c0, out_matrix dW, out_matrix dH,
                        out_vector db);

    cuda_backend* gpu_;
    std::vector<index_t> host_offsets_;  // the chunks' label counts, for the tiled path
    device_labels s_;
    penalties lam_;
    pal_variant v_;
    std::size_t workspace_bytes_ = default_workspace_bytes;
    device_buffer<T> z_, ones_, acc_m_, label_z_;
    device_buffer<double> col_loss_, acc_s_, partial_, results_;
    device_buffer<unsigned long long> status_;
};

template <class T>
void pal_objective<T, cuda_backend>::queue_backprop(in_matrix W, in_matrix Hc, index_t k0, index_t kt, index_t c0,
                                                    out_matrix dW, out_matrix dH, out_vector db) {
    const cublasHandle_t h = gpu_->blas();
    const index_t d = W.cols, nc = Hc.cols;
    const T* G = z_.data();  // kt x nc, ld kt
    if (dW.data)
        detail::cublas_check(detail::gemm(h, CUBLAS_OP_N, CUBLAS_OP_T, kt, d, nc, T(1), G, kt, Hc.data, Hc.ld,
                                          T(c0 == 0 ? 0 : 1), dW.data + k0, dW.ld),
                             "cublasXgemm_64 (dW)");
    if (dH.data)
        detail::cublas_check(detail::gemm(h, CUBLAS_OP_T, CUBLAS_OP_N, d, nc, kt, T(1), W.data + k0, W.ld, G, kt,
                                          T(k0 == 0 ? 0 : 1), dH.data + c0 * dH.ld, dH.ld),
                             "cublasXgemm_64 (dH)");
    if (db.data)
        detail::cublas_check(detail::gemv(h, kt, nc, T(1), G, kt, ones_.data(), T(c0 == 0 ? 0 : 1), db.data + k0),
                             "cublasXgemv_64 (db)");
}

template <class T>
objective_value<T> pal_objective<T, cuda_backend>::evaluate(in_matrix W, in_matrix H, in_vector b, out_matrix dW,
                                                            out_matrix dH, out_vector db) {
    namespace ck = cuda_kernels;
    const index_t K = num_labels(), N = num_samples(), d = W.cols;
    detail::check_view_shape(W, K, W.cols, "W", "K x d, one row per label");
    detail::require(d >= 1, "W", "needs at least one column");
    detail::check_view_shape(H, d, N, "H", "d x N, d = columns of W");
    detail::require(b.size == K && b.data != nullptr, "b", "expected a device vector of " + std::to_string(K) + " entries");
    if (dW.data) detail::check_view_shape(dW, K, d, "dW", "same shape as W");
    if (dH.data) detail::check_view_shape(dH, d, N, "dH", "same shape as H");
    if (db.data) detail::require(db.size == K, "db", "expected a device vector of " + std::to_string(K) + " entries");
    const bool grad = dW.data || dH.data || db.data;
    const cudaStream_t st = gpu_->stream();
    const cublasHandle_t h = gpu_->blas();

    // Status words: W, H, b, logits. Results: loss, ||W||^2, ||H||^2, ||b||^2.
    status_.resize(4);
    detail::cuda_check(cudaMemsetAsync(status_.data(), 0xff, 4 * sizeof(unsigned long long), st), "cudaMemsetAsync");
    results_.resize(4);
    partial_.resize(ck::sumsq_blocks, 3);
    const in_matrix bm(b.data, K, 1);
    const in_matrix inputs[3] = {W, H, bm};
    for (int j = 0; j < 3; ++j)
        ck::sum_squares<T><<<ck::sumsq_blocks, ck::sumsq_threads, 0, st>>>(inputs[j], partial_.data() + j * ck::sumsq_blocks,
                                                                           status_.data() + j);
    detail::cuda_check(cudaGetLastError(), "kernel launch (sum of squares)");

    const cuda_plan::objective_plan p = plan();
    const bool tiled = p.tiled(K);
    z_.resize(p.tile, p.chunk);
    col_loss_.resize(N);
    if (db.data && ones_.size() < p.chunk) {
        ones_.resize(p.chunk);
        ck::launch_axpy_or_fill<T>(T(0), {}, ones_.view(), T(1), st);
    }
    if (tiled) {
        acc_m_.resize(p.chunk);
        acc_s_.resize(p.chunk);
        index_t most = 1;
        for (index_t c0 = 0; c0 < N; c0 += p.chunk) {
            const auto e = static_cast<std::size_t>(std::min(N, c0 + p.chunk));
            most = std::max(most, host_offsets_[e] - host_offsets_[static_cast<std::size_t>(c0)]);
        }
        label_z_.resize(most);
    }

    ck::column_args<T> a;
    a.S = s_.view();
    a.variant = v_;
    a.scale = 1.0 / static_cast<double>(N);
    a.status = status_.data() + 3;
    a.acc_m = acc_m_.data();
    a.acc_s = acc_s_.data();
    a.label_z = label_z_.data();
    for (index_t c0 = 0; c0 < N; c0 += p.chunk) {
        const index_t nc = std::min(p.chunk, N - c0);
        const in_matrix Hc = H.middle_cols(c0, nc);
        a.first = c0;
        a.col_loss = col_loss_.data() + c0;
        // Z_t = W(k0 : k0 + kt, :) H_c, the tile's logits without b (the kernels add it).
        const auto logits = [&](index_t k0, index_t kt) {
            detail::cublas_check(detail::gemm(h, CUBLAS_OP_N, CUBLAS_OP_N, kt, nc, d, T(1), W.data + k0, W.ld, Hc.data,
                                              Hc.ld, T(0), z_.data(), kt),
                                 "cublasXgemm_64 (logits)");
            a.z = in_matrix(z_.data(), kt, nc, kt);
            a.bias = b.data + k0;
            a.rows_offset = k0;
        };
        if (!tiled) {
            logits(0, K);
            a.g = grad ? out_matrix(z_.data(), K, nc, K) : out_matrix{};
            ck::launch_columns<T, ck::column_op::fused>(a, st);
            if (grad) queue_backprop(W, Hc, 0, K, c0, dW, dH, db);
            continue;
        }
        for (index_t k0 = 0; k0 < K; k0 += p.tile) {
            const index_t kt = std::min(p.tile, K - k0);
            logits(k0, kt);
            a.first_tile = k0 == 0;
            ck::launch_columns<T, ck::column_op::tile_stats>(a, st);
        }
        ck::tile_losses<T><<<static_cast<unsigned>((nc + 127) / 128), 128, 0, st>>>(a, nc);
        detail::cuda_check(cudaGetLastError(), "kernel launch (tile losses)");
        if (!grad) continue;
        for (index_t k0 = 0; k0 < K; k0 += p.tile) {
            const index_t kt = std::min(p.tile, K - k0);
            logits(k0, kt);
            a.g = out_matrix(z_.data(), kt, nc, kt);
            ck::launch_columns<T, ck::column_op::tile_gradient>(a, st);
            queue_backprop(W, Hc, k0, kt, c0, dW, dH, db);
        }
    }
    ck::sum_rows<T><<<1, ck::sum_threads, 0, st>>>(col_loss_.data(), N, a.scale, results_.data(), nullptr);
    ck::sum_rows<T><<<3, ck::sum_threads, 0, st>>>(partial_.data(), ck::sumsq_blocks, 1.0, results_.data() + 1, nullptr);
    detail::cuda_check(cudaGetLastError(), "kernel launch (sums)");
    if (dW.data) ck::launch_axpy_or_fill<T>(T(2 * lam_.lambda_w), W, dW, T(0), st);
    if (dH.data) ck::launch_axpy_or_fill<T>(T(2 * lam_.lambda_h), H, dH, T(0), st);
    if (db.data) ck::launch_axpy_or_fill<T>(T(2 * lam_.lambda_b), bm, out_matrix(db.data, K, 1), T(0), st);

    double res[4];
    unsigned long long status[4];
    detail::cuda_check(cudaMemcpyAsync(res, results_.data(), sizeof res, cudaMemcpyDeviceToHost, st), "cudaMemcpyAsync");
    detail::cuda_check(cudaMemcpyAsync(status, status_.data(), sizeof status, cudaMemcpyDeviceToHost, st),
                       "cudaMemcpyAsync");
    gpu_->synchronize();
    const char* names[3] = {"W", "H", "b"};
    for (int j = 0; j < 3; ++j)
        if (status[j] != cuda_plan::no_position)
            throw error(std::string(names[j]) + ": contains NaN or Inf (first at (" +
                        std::to_string(cuda_plan::position_row(status[j])) + ", " +
                        std::to_string(cuda_plan::position_col(status[j])) + "))");
    objective_value<T> v;
    if (status[3] != cuda_plan::no_position) {
        constexpr T nan = std::numeric_limits<T>::quiet_NaN();
        if (dW.data) ck::launch_axpy_or_fill<T>(T(0), {}, dW, nan, st);
        if (dH.data) ck::launch_axpy_or_fill<T>(T(0), {}, dH, nan, st);
        if (db.data) ck::launch_axpy_or_fill<T>(T(0), {}, out_matrix(db.data, K, 1), nan, st);
        gpu_->synchronize();
        v.loss = v.total = std::numeric_limits<T>::infinity();
        v.status = objective_status::overflow;
        v.overflow_row = cuda_plan::position_row(status[3]);
        v.overflow_col = cuda_plan::position_col(status[3]);
        return v;
    }
    const double pen = lam_.lambda_w * res[1] + lam_.lambda_h * res[2] + lam_.lambda_b * res[3];
    v.loss = static_cast<T>(res[0]);
    v.penalty = static_cast<T>(pen);
    v.total = static_cast<T>(res[0] + pen);
    return v;
}

}  // namespace mlnc
