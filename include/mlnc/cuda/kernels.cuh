#pragma once
// The CUDA kernels of the PAL-CE / PAL-N loss at the logits level (K x N, column i = sample i)
// and the helpers of the device objective. Device code throws nothing: a non-finite logit is
// recorded with atomicMin in a status word (cuda_plan::pack_position: the first in column order
// wins) and the column's outputs are left unspecified.
//
// One group of threads per column: a warp for K <= cuda_plan::warp_max_rows (8 columns per
// block), a block of cuda_plan::block_threads above. Each thread sweeps its strided share of
// the column once with an online max and sum (the sum rescaled when the max grows), the group
// merges the pairs, the label logits are read (and the loss formed) before the gradient is
// written, and a second sweep writes g = (m p - y) scale (PAL-N: (p - y/m) scale). The second
// sweep re-reads the column, which is then in L1/L2: Z is read from memory once and G written
// once, in place or not. Reductions use fixed shuffle trees and fixed orders: a run gives the
// same bits every time.

#if !defined(__CUDACC__)
#error "mlnc: <mlnc/cuda/*.cuh> holds CUDA kernels: compile this file with nvcc (a .cu source in a target linked to mlnc::cuda, configured with MLNC_ENABLE_CUDA=ON), or use mlnc::cpu"
#endif

#include <mlnc/cuda/plan.hpp>
#include <mlnc/cuda/runtime.hpp>
#include <mlnc/cuda/view.hpp>
#include <mlnc/types.hpp>

#include <cuda_runtime.h>

#include <cstdint>

namespace mlnc::cuda_kernels {

inline constexpr unsigned full_mask = 0xffffffffu;

template <class T>
__device__ T minus_infinity() {
    return -static_cast<T>(INFINITY);
}

// The (max, sum of exp(z - max)) pair of a set of logits; s == 0: the empty set.
template <class T>
__device__ void merge_pair(T& m, double& s, T m2, double s2) {
    if (s2 == 0) return;
    if (s == 0) {
        m = m2;
        s = s2;
    } else if (m2 > m) {
        s = s * exp(static_cast<double>(m) - static_cast<double>(m2)) + s2;
        m = m2;
    } else {
        s += s2 * exp(static_cast<double>(m2) - static_cast<double>(m));
    }
}

// One logit into the pair: exp in T as the CPU kernel, summed in double.
template <class T>
__device__ void add_logit(T& m, double& s, T x) {
    if (x > m) {
        s = s * exp(static_cast<double>(m) - static_cast<double>(x)) + 1.0;
        m = x;
    } else {
        s += static_cast<double>(exp(x - m));
    }
}

template <class V>
__device__ V warp_sum(V v) {
    for (int o = 16; o > 0; o /= 2) v += __shfl_xor_sync(full_mask, v, o);
    return v;
}
__device__ inline long long warp_min(long long v) {
    for (int o = 16; o > 0; o /= 2) v = min(v, __shfl_xor_sync(full_mask, v, o));
    return v;
}
template <class T>
__device__ void warp_merge(T& m, double& s) {
    for (int o = 16; o > 0; o /= 2) {
        const T m2 = __shfl_xor_sync(full_mask, m, o);
        const double s2 = __shfl_xor_sync(full_mask, s, o);
        merge_pair(m, s, m2, s2);
    }
}

// A warp working on one column: all 32 lanes take part (whole warps leave together).
struct warp_group {
    int rank;  // lane
    static constexpr int size = 32;
    __device__ void sync() const { __syncwarp(full_mask); }
    __device__ double sum(double v) const { return warp_sum(v); }
    __device__ long long min(long long v) const { return warp_min(v); }
    template <class T>
    __device__ void merge(T& m, double& s) const {
        warp_merge(m, s);
    }
};

// A block of Threads working on one column. Every thread combines the warps' partials itself,
// in warp order: the same result everywhere without a broadcast step.
template <class T, int Threads>
struct block_group {
    static constexpr int size = Threads;
    static constexpr int warps = Threads / 32;
    struct scratch {
        double d[warps];
        T m[warps];
        long long i[warps];
    };
    int rank;  // threadIdx.x
    scratch* sh;

    __device__ void sync() const { __syncthreads(); }
    __device__ double sum(double v) const {
        v = warp_sum(v);
        __syncthreads();  // the scratch may still be read by the previous reduction
        if (rank % 32 == 0) sh->d[rank / 32] = v;
        __syncthreads();
        double r = 0;
        for (int w = 0; w < warps; ++w) r += sh->d[w];
        return r;
    }
    __device__ long long min(long long v) const {
        v = warp_min(v);
        __syncthreads();
        if (rank % 32 == 0) sh->i[rank / 32] = v;
        __syncthreads();
        long long r = sh->i[0];
        for (int w = 1; w < warps; ++w) r = r < sh->i[w] ? r : sh->i[w];
        return r;
    }
    __device__ void merge(T& m, double& s) const {
        warp_merge(m, s);
        __syncthreads();
        if (rank % 32 == 0) {
            sh->m[rank / 32] = m;
            sh->d[rank / 32] = s;
        }
        __syncthreads();
        m = minus_infinity<T>();
        s = 0;
        for (int w = 0; w < warps; ++w) merge_pair(m, s, sh->m[w], sh->d[w]);
    }
};

// What a column kernel reads and writes. Column c of z is sample `first + c` of the labels (a
// chunk of the objective starts at first = c0); per_sample and col_loss are indexed by c.
// bias (K entries, may be null) is added to every column of z as it is read. rows_offset: the
// first row of z among the K classes (a class tile), for the labels and the status word.
template <class T>
struct column_args {
    device_matrix_view<const T> z;
    const T* bias = nullptr;
    device_label_view S;
    index_t first = 0;
    index_t rows_offset = 0;
    pal_variant variant = pal_variant::pal;
    double scale = 1;
    T* per_sample = nullptr;   // may be null
    double* col_loss = nullptr;
    device_matrix_view<T> g;   // data null: no gradient; may alias z
    unsigned long long* status = nullptr;
    // Class tiling (objective): the per-column running (max, sum) and the label logits.
    T* acc_m = nullptr;
    double* acc_s = nullptr;
    T* label_z = nullptr;      // one entry per label of the chunk, at offsets[first + c] - offsets[first]
    bool first_tile = true;
};

template <class T>
__device__ T logit(const column_args<T>& a, const T* zc, index_t k) {
    const T x = zc[k];
    return a.bias ? x + a.bias[k] : x;
}

// Pass 1 of a column: its (max, sum) pair over the group, or false (status recorded) when a logit
// is not finite.
template <class T, class Group>
__device__ bool column_pair(const Group& grp, const column_args<T>& a, index_t c, T& m, double& s) {
    const index_t K = a.z.rows;
    const T* zc = a.z.data + c * a.z.ld;
    m = minus_infinity<T>();
    s = 0;
    long long bad = K;
    for (index_t k = grp.rank; k < K; k += Group::size) {
        const T x = logit(a, zc, k);
        if (!isfinite(x)) {
            if (bad == K) bad = k;
            continue;
        }
        add_logit(m, s, x);
    }
    bad = grp.min(bad);
    if (bad < K) {
        if (grp.rank == 0)
            atomicMin(a.status, static_cast<unsigned long long>(cuda_plan::pack_position(
                                    static_cast<std::uint64_t>(a.rows_offset + bad), static_cast<std::uint64_t>(a.first + c))));
        return false;
    }
    grp.merge(m, s);
    return true;
}

// The gradient sweep of column c from its final (max, sum): g = exp(z - max) ps, then -yv at the
// labels in rows [rows_offset, rows_offset + rows).
template <class T, class Group>
__device__ void column_gradient(const Group& grp, const column_args<T>& a, index_t c, T m, double s) {
    const index_t K = a.z.rows;
    const T* zc = a.z.data + c * a.z.ld;
    T* gc = a.g.data + c * a.g.ld;
    const index_t o0 = a.S.offsets[a.first + c], o1 = a.S.offsets[a.first + c + 1];
    const double mult = static_cast<double>(o1 - o0);
    const bool pal = a.variant == pal_variant::pal;
    const T ps = static_cast<T>((pal ? mult : 1.0) * a.scale / s);
    const T yv = static_cast<T>((pal ? 1.0 : 1.0 / mult) * a.scale);
    for (index_t k = grp.rank; k < K; k += Group::size) gc[k] = exp(logit(a, zc, k) - m) * ps;
    grp.sync();  // the label entries below were written by other threads
    for (index_t j = o0 + grp.rank; j < o1; j += Group::size) {
        const index_t k = a.S.indices[j] - a.rows_offset;
        if (k >= 0 && k < K) gc[k] -= yv;
    }
}

// The fused column: loss, per-sample loss and (optionally) gradient of column c.
template <class T, class Group>
__device__ void pal_column(const Group& grp, const column_args<T>& a, index_t c) {
    T m;
    double s;
    if (!column_pair(grp, a, c, m, s)) {
        if (grp.rank == 0) {
            a.col_loss[c] = static_cast<double>(NAN);
            if (a.per_sample) a.per_sample[c] = static_cast<T>(NAN);
        }
        return;
    }
    const T* zc = a.z.data + c * a.z.ld;
    const index_t o0 = a.S.offsets[a.first + c], o1 = a.S.offsets[a.first + c + 1];
    const double lse = log(s);  // s in [1, K]: finite and >= 0; every loss term is >= 0
    double acc = 0;
    for (index_t j = o0 + grp.rank; j < o1; j += Group::size)
        acc += (static_cast<double>(m) - static_cast<double>(logit(a, zc, a.S.indices[j]))) + lse;
    double loss = grp.sum(acc);
    if (a.variant == pal_variant::pal_n) loss /= static_cast<double>(o1 - o0);
    if (grp.rank == 0) {
        a.col_loss[c] = loss;
        if (a.per_sample) a.per_sample[c] = static_cast<T>(loss);
    }
    if (a.g.data) {
        grp.sync();  // every label logit is read before an in-place gradient overwrites it
        column_gradient(grp, a, c, m, s);
    }
}

// Pass 1 of a class tile: merges the tile's pair into the column's running one and saves the
// logits of the labels that fall in the tile.
template <class T, class Group>
__device__ void tile_stats_column(const Group& grp, const column_args<T>& a, index_t c) {
    T m;
    double s;
    if (!column_pair(grp, a, c, m, s)) return;
    const T* zc = a.z.data + c * a.z.ld;
    const index_t base = a.S.offsets[a.first];
    const index_t o0 = a.S.offsets[a.first + c], o1 = a.S.offsets[a.first + c + 1];
    for (index_t j = o0 + grp.rank; j < o1; j += Group::size) {
        const index_t k = a.S.indices[j] - a.rows_offset;
        if (k >= 0 && k < a.z.rows) a.label_z[j - base] = logit(a, zc, k);
    }
    if (grp.rank == 0) {
        if (a.first_tile) {
            a.acc_m[c] = m;
            a.acc_s[c] = s;
        } else {
            T am = a.acc_m[c];
            double as = a.acc_s[c];
            merge_pair(am, as, m, s);
            a.acc_m[c] = am;
            a.acc_s[c] = as;
        }
    }
}

template <class T, class Group>
__device__ void tile_gradient_column(const Group& grp, const column_args<T>& a, index_t c) {
    column_gradient(grp, a, c, a.acc_m[c], a.acc_s[c]);
}

enum class column_op { fused, tile_stats, tile_gradient };

template <class T, column_op Op, class Group>
__device__ void run_column(const Group& grp, const column_args<T>& a, index_t c) {
    if constexpr (Op == column_op::fused) pal_column(grp, a, c);
    else if constexpr (Op == column_op::tile_stats) tile_stats_column(grp, a, c);
    else tile_gradient_column(grp, a, c);
}

template <class T, column_op Op>
__global__ void __launch_bounds__(cuda_plan::warp_block_threads) warp_columns(column_args<T> a) {
    const index_t c = static_cast<index_t>(blockIdx.x) * cuda_plan::columns_per_warp_block + threadIdx.x / 32;
    if (c >= a.z.cols) return;  // the whole warp
    const warp_group grp{static_cast<int>(threadIdx.x % 32)};
    run_column<T, Op>(grp, a, c);
}

template <class T, column_op Op>
__global__ void __launch_bounds__(cuda_plan::block_threads) block_columns(column_args<T> a) {
    using group = block_group<T, cuda_plan::block_threads>;
    __shared__ typename group::scratch sh;
    const group grp{static_cast<int>(threadIdx.x), &sh};
    run_column<T, Op>(grp, a, static_cast<index_t>(blockIdx.x));
}

// Launches Op over the columns of a.z on `stream` with the shape cuda_plan::column_launch picks.
template <class T, column_op Op>
void launch_columns(const column_args<T>& a, cudaStream_t stream) {
    if (a.z.cols == 0) return;
    const cuda_plan::launch_shape sh = cuda_plan::column_launch(a.z.rows, a.z.cols);
    if (sh.warp_per_column)
        warp_columns<T, Op><<<static_cast<unsigned>(sh.blocks), sh.threads, 0, stream>>>(a);
    else
        block_columns<T, Op><<<static_cast<unsigned>(sh.blocks), sh.threads, 0, stream>>>(a);
    detail::cuda_check(cudaGetLastError(), "kernel launch (PAL-CE columns)");
}

// The losses of a tiled chunk from the merged pairs and the saved label logits, as the CPU
// kernel forms them: sum over the labels of (max - z_k) + log(sum). One thread per column.
template <class T>
__global__ void tile_losses(column_args<T> a, index_t n) {
    const index_t c = static_cast<index_t>(blockIdx.x) * blockDim.x + threadIdx.x;
    if (c >= n) return;
    const index_t base = a.S.offsets[a.first];
    const index_t o0 = a.S.offsets[a.first + c], o1 = a.S.offsets[a.first + c + 1];
    const double m = static_cast<double>(a.acc_m[c]);
    const double lse = log(a.acc_s[c]);
    double loss = 0;
    for (index_t j = o0; j < o1; ++j) loss += (m - static_cast<double>(a.label_z[j - base])) + lse;
    if (a.variant == pal_variant::pal_n) loss /= static_cast<double>(o1 - o0);
    a.col_loss[c] = loss;
}

// out[r] = scale * sum of x[r n .. r n + n), one block per r, in a fixed order; also written,
// cast, to out_t[r] when out_t is not null.
inline constexpr int sum_threads = 1024;
template <class T>
__global__ void __launch_bounds__(sum_threads) sum_rows(const double* x, index_t n, double scale, double* out, T* out_t) {
    using group = block_group<double, sum_threads>;
    __shared__ group::scratch sh;
    const group grp{static_cast<int>(threadIdx.x), &sh};
    const double* xr = x + static_cast<index_t>(blockIdx.x) * n;
    double acc = 0;
    for (index_t i = threadIdx.x; i < n; i += sum_threads) acc += xr[i];
    const double r = grp.sum(acc) * scale;
    if (threadIdx.x == 0) {
        out[blockIdx.x] = r;
        if (out_t) out_t[blockIdx.x] = static_cast<T>(r);
    }
}

// Partial sums of squares of a matrix (grid-stride, one partial per block, in double) and its
// first non-finite entry in the status word.
inline constexpr int sumsq_threads = 256;
inline constexpr int sumsq_blocks = 256;
template <class T>
__global__ void __launch_bounds__(sumsq_threads) sum_squares(device_matrix_view<const T> x, double* partial,
                                                            unsigned long long* status) {
    using group = block_group<double, sumsq_threads>;
    __shared__ group::scratch sh;
    const group grp{static_cast<int>(threadIdx.x), &sh};
    const index_t n = x.rows * x.cols;
    double acc = 0;
    for (index_t e = static_cast<index_t>(blockIdx.x) * sumsq_threads + threadIdx.x; e < n;
         e += static_cast<index_t>(gridDim.x) * sumsq_threads) {
        const index_t r = e % x.rows, c = e / x.rows;
        const T v = x.data[r + c * x.ld];
        if (!isfinite(v))
            atomicMin(status, static_cast<unsigned long long>(cuda_plan::pack_position(
                                  static_cast<std::uint64_t>(r), static_cast<std::uint64_t>(c))));
        acc += static_cast<double>(v) * static_cast<double>(v);
    }
    const double s = grp.sum(acc);
    if (threadIdx.x == 0) partial[blockIdx.x] = s;
}

// y += alpha x (same shape), or y = value when x is null.
template <class T>
__global__ void axpy_or_fill(T alpha, device_matrix_view<const T> x, device_matrix_view<T> y, T value) {
    const index_t n = y.rows * y.cols;
    for (index_t e = static_cast<index_t>(blockIdx.x) * blockDim.x + threadIdx.x; e < n;
         e += static_cast<index_t>(gridDim.x) * blockDim.x) {
        const index_t r = e % y.rows, c = e / y.rows;
        T& out = y.data[r + c * y.ld];
        out = x.data ? out + alpha * x.data[r + c * x.ld] : value;
    }
}

template <class T>
void launch_axpy_or_fill(T alpha, device_matrix_view<const T> x, device_matrix_view<T> y, T value, cudaStream_t stream) {
    if (y.empty()) return;
    const index_t n = y.rows * y.cols;
    const auto blocks = static_cast<unsigned>(n / 256 + 1 < 4096 ? n / 256 + 1 : 4096);
    axpy_or_fill<T><<<blocks, 256, 0, stream>>>(alpha, x, y, value);
    detail::cuda_check(cudaGetLastError(), "kernel launch (axpy)");
}

}  // namespace mlnc::cuda_kernels
