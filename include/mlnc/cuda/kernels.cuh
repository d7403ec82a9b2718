#pragma once
// The CUDA kernels of the PAL-CE / PAL-N loss at the logits level (K x N, column i = sample i)
// and the helpers of the device objective. Device code throws nothing: a non-finite logit is
// recorded with atomicMin in a status word (cuda_plan::pack_position: the first in column order
// wins) and the column's outputs are left unspecified.
//
// The fused column (loss, per-sample loss and gradient of whole columns: the PAL front ends and
// the untiled objective) holds its column in registers when it fits (cuda_plan::fused_launch):
// L lanes of a warp, a block, or a cluster of blocks each holding a part, or (longer columns,
// aligned memory) a persistent pipelined block that stages its next column in shared memory while
// it works on the one in its registers; each thread loads its share once (16-byte vectors when
// aligned), the group reduces the max, then the sum of the exps
// kept in the registers (in T over a thread's share, in double over the group), reads the label
// logits and forms the loss before anything is written, and writes g = (m p - y) scale (PAL-N:
// (p - y/m) scale) from the registers: Z read once, G written once, in place or not.
//
// Longer columns and the class tiles of the objective take the streamed kernels: a warp for
// K <= cuda_plan::warp_max_rows (8 columns per block), a block of cuda_plan::block_threads above.
// Each thread sweeps its strided share of the column once with an online max and sum (the sum
// rescaled when the max grows), the group merges the pairs, the label logits are read (and the
// loss formed) before the gradient is written, and a second sweep writes the gradient; it
// re-reads the column, from L1/L2 when it is still there.
//
// Reductions use fixed shuffle trees and fixed orders: a run gives the same bits every time.

#if !defined(__CUDACC__)
#error "mlnc: <mlnc/cuda/*.cuh> holds CUDA kernels: compile this file with nvcc (a .cu source in a target linked to mlnc::cuda, configured with MLNC_ENABLE_CUDA=ON), or use mlnc::cpu"
#endif

#include <mlnc/cuda/plan.hpp>
#include <mlnc/cuda/runtime.hpp>
#include <mlnc/cuda/view.hpp>
#include <mlnc/types.hpp>

#include <cooperative_groups.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <map>
#include <mutex>
#include <type_traits>

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

// L lanes of a warp (L a power of two, at most 32) working on one column of the cached kernel:
// 32 / L columns a warp. The shuffles stay within the group (xor offsets below L) and name only
// its lanes, so a group may leave early on its own. Butterfly reductions: every lane gets the
// same bits (each step adds the same two values, in either order).
template <int L>
struct lane_group {
    int rank;       // lane % L
    unsigned mask;  // the group's lanes
    static constexpr int size = L;
    __device__ void sync() const { __syncwarp(mask); }
    __device__ bool any(bool b) const { return __any_sync(mask, b) != 0; }
    __device__ double sum(double v) const {
        for (int o = L / 2; o > 0; o /= 2) v += __shfl_xor_sync(mask, v, o);
        return v;
    }
    __device__ long long min(long long v) const {
        for (int o = L / 2; o > 0; o /= 2) {
            const long long w = __shfl_xor_sync(mask, v, o);
            v = w < v ? w : v;
        }
        return v;
    }
    template <class V>
    __device__ V max(V v) const {
        for (int o = L / 2; o > 0; o /= 2) {
            const V w = __shfl_xor_sync(mask, v, o);
            v = w > v ? w : v;
        }
        return v;
    }
};

// A block of blockDim.x threads (a multiple of 32, at most 1024) working on one column, for the
// cached kernel, whose block size is chosen at launch. Every thread combines the warps' partials
// itself, in warp order.
struct dyn_block_group {
    struct scratch {
        double d[32];
        long long i[32];
    };
    int rank;  // threadIdx.x
    int size;  // blockDim.x
    scratch* sh;

    __device__ void sync() const { __syncthreads(); }
    __device__ bool any(bool b) const { return __syncthreads_or(b) != 0; }
    __device__ double sum(double v) const {
        v = warp_sum(v);
        __syncthreads();  // the scratch may still be read by the previous reduction
        if (rank % 32 == 0) sh->d[rank / 32] = v;
        __syncthreads();
        double r = 0;
        for (int w = 0; w < size / 32; ++w) r += sh->d[w];
        return r;
    }
    template <class V>
    __device__ V max(V v) const {  // V = float or double: exact through the double scratch
        for (int o = 16; o > 0; o /= 2) {
            const V w = __shfl_xor_sync(full_mask, v, o);
            v = w > v ? w : v;
        }
        __syncthreads();
        if (rank % 32 == 0) sh->d[rank / 32] = static_cast<double>(v);
        __syncthreads();
        double r = sh->d[0];
        for (int w = 1; w < size / 32; ++w) r = sh->d[w] > r ? sh->d[w] : r;
        return static_cast<V>(r);
    }
    __device__ long long min(long long v) const {
        v = warp_min(v);
        __syncthreads();
        if (rank % 32 == 0) sh->i[rank / 32] = v;
        __syncthreads();
        long long r = sh->i[0];
        for (int w = 1; w < size / 32; ++w) r = sh->i[w] < r ? sh->i[w] : r;
        return r;
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

// The fused column held in registers (cuda_plan::fused_launch): each thread of the group loads
// its share of column c once, R = cache_bytes_per_thread / sizeof(T) logits, as 16-byte vectors
// when `vec` (Z, G and the bias aligned to 16 bytes, leading dimensions multiples of the vector)
// or else as single logits strided by the group size; slots past K hold -inf. Then the group's
// max, the exps kept in the registers and their sum (in T over a thread's share, then in double
// over the group), the loss from the label logits (read from Z before anything is written), and
// the gradient written from the registers. Same results as pal_column to rounding.
template <class T>
struct vec16;
template <>
struct vec16<float> {
    using type = float4;
    static constexpr int width = 4;
    __device__ static void get(const type& q, float* v) {
        v[0] = q.x;
        v[1] = q.y;
        v[2] = q.z;
        v[3] = q.w;
    }
    __device__ static type make(const float* v) { return make_float4(v[0], v[1], v[2], v[3]); }
};
template <>
struct vec16<double> {
    using type = double2;
    static constexpr int width = 2;
    __device__ static void get(const type& q, double* v) {
        v[0] = q.x;
        v[1] = q.y;
    }
    __device__ static type make(const double* v) { return make_double2(v[0], v[1]); }
};

// The part of the column a group holds: a lane group or a block holds all of it (rows [0, K));
// a block of a cluster (compute capability 9.0) holds one of the cluster's equal parts, and the
// cluster's reductions and the loss's label loop span all of them (label_rank, label_stride).
struct part_range {
    index_t first, rows;
};
template <class T, class Group>
__device__ part_range column_part(const Group&, index_t K) {
    return {0, K};
}
template <class Group>
__device__ int label_rank(const Group& g) {
    return g.rank;
}
template <class Group>
__device__ int label_stride(const Group& g) {
    return g.size;
}

template <class T>
inline constexpr int cached_rows = cuda_plan::cache_bytes_per_thread / static_cast<int>(sizeof(T));

// The share of a thread of the group: rows [0, Kp) of zp (plus bp, the bias of those rows, when
// not null) into v, -inf past Kp. vec: 16-byte vectors, thread t holding vectors t, t + G, ...;
// else single entries t, t + G, ...
template <class T, class Group, int R>
__device__ void load_share(const Group& grp, const T* zp, const T* bp, index_t Kp, bool vec, T (&v)[R]) {
    using V = vec16<T>;
    constexpr int W = V::width;
    const index_t G = grp.size;
    const auto at = [&](index_t r) { return bp ? zp[r] + bp[r] : zp[r]; };
    if (vec) {
#pragma unroll
        for (int e = 0; e < R / W; ++e) {
            const index_t r0 = (static_cast<index_t>(e) * G + grp.rank) * W;
            if (r0 + W <= Kp) {
                V::get(*reinterpret_cast<const typename V::type*>(zp + r0), v + e * W);
                if (bp) {
                    T bb[W];
                    V::get(*reinterpret_cast<const typename V::type*>(bp + r0), bb);
#pragma unroll
                    for (int j = 0; j < W; ++j) v[e * W + j] += bb[j];
                }
            } else {
#pragma unroll
                for (int j = 0; j < W; ++j) v[e * W + j] = r0 + j < Kp ? at(r0 + j) : minus_infinity<T>();
            }
        }
    } else {
#pragma unroll
        for (int i = 0; i < R; ++i) {
            const index_t r = static_cast<index_t>(i) * G + grp.rank;
            v[i] = r < Kp ? at(r) : minus_infinity<T>();
        }
    }
}

// Column c from the group's shares in v (load_share of rows [row0, row0 + Kp) of the column):
// the non-finite check, the max, the exps kept in v and their sum, the loss from the label logits
// (read from Z before anything is written), and the gradient written from v.
template <class T, class Group, int R>
__device__ void finish_column(const Group& grp, const column_args<T>& a, index_t c, bool vec, index_t row0, index_t Kp,
                              T (&v)[R]) {
    using V = vec16<T>;
    constexpr int W = V::width;
    const index_t G = grp.size;
    const index_t K = a.z.rows;
    const T* zc = a.z.data + c * a.z.ld;
    // The row (within the part) of slot i of this thread.
    const auto row = [&](int i) -> index_t {
        return vec ? (static_cast<index_t>(i / W) * G + grp.rank) * W + i % W : static_cast<index_t>(i) * G + grp.rank;
    };
    bool bad = false;
#pragma unroll
    for (int i = 0; i < R; ++i) bad |= !isfinite(v[i]) && row(i) < Kp;
    const bool leader = label_rank(grp) == 0;
    if (grp.any(bad)) {  // rare: the first non-finite logit of the column, as column_pair finds it
        long long first = K;
#pragma unroll
        for (int i = 0; i < R; ++i)
            if (!isfinite(v[i]) && row(i) < Kp && row0 + row(i) < first) first = row0 + row(i);
        first = grp.min(first);
        if (leader) {
            atomicMin(a.status, static_cast<unsigned long long>(cuda_plan::pack_position(
                                    static_cast<std::uint64_t>(a.rows_offset + first), static_cast<std::uint64_t>(a.first + c))));
            a.col_loss[c] = static_cast<double>(NAN);
            if (a.per_sample) a.per_sample[c] = static_cast<T>(NAN);
        }
        return;
    }
    T mx = v[0];
#pragma unroll
    for (int i = 1; i < R; ++i) mx = v[i] > mx ? v[i] : mx;
    mx = grp.max(mx);
    T part = 0;
#pragma unroll
    for (int i = 0; i < R; ++i) {
        v[i] = exp(v[i] - mx);
        part += v[i];
    }
    const double s = grp.sum(static_cast<double>(part));

    const index_t o0 = a.S.offsets[a.first + c], o1 = a.S.offsets[a.first + c + 1];
    const double lse = log(s);  // s in [1, K]
    double acc = 0;
    for (index_t j = o0 + label_rank(grp); j < o1; j += label_stride(grp))
        acc += (static_cast<double>(mx) - static_cast<double>(logit(a, zc, a.S.indices[j] - a.rows_offset))) + lse;
    double loss = grp.sum(acc);  // also: every label logit is read before the gradient is written
    if (a.variant == pal_variant::pal_n) loss /= static_cast<double>(o1 - o0);
    if (leader) {
        a.col_loss[c] = loss;
        if (a.per_sample) a.per_sample[c] = static_cast<T>(loss);
    }
    if (!a.g.data) return;
    const double mult = static_cast<double>(o1 - o0);
    const bool pal = a.variant == pal_variant::pal;
    const T ps = static_cast<T>((pal ? mult : 1.0) * a.scale / s);
    const T yv = static_cast<T>((pal ? 1.0 : 1.0 / mult) * a.scale);
    T* gp = a.g.data + c * a.g.ld + row0;
#pragma unroll
    for (int i = 0; i < R; ++i) v[i] *= ps;
    if (vec) {
#pragma unroll
        for (int e = 0; e < R / W; ++e) {
            const index_t r0 = (static_cast<index_t>(e) * G + grp.rank) * W;
            if (r0 + W <= Kp) {
                *reinterpret_cast<typename V::type*>(gp + r0) = V::make(v + e * W);
            } else {
#pragma unroll
                for (int j = 0; j < W; ++j)
                    if (r0 + j < Kp) gp[r0 + j] = v[e * W + j];
            }
        }
    } else {
#pragma unroll
        for (int i = 0; i < R; ++i) {
            const index_t r = static_cast<index_t>(i) * G + grp.rank;
            if (r < Kp) gp[r] = v[i];
        }
    }
    grp.sync();  // the part's label entries below were written by other threads of its group
    for (index_t j = o0 + grp.rank; j < o1; j += G) {
        const index_t k = a.S.indices[j] - a.rows_offset - row0;
        if (k >= 0 && k < Kp) gp[k] -= yv;
    }
}

template <class T, class Group>
__device__ void cached_column(const Group& grp, const column_args<T>& a, index_t c, bool vec) {
    const part_range pr = column_part<T>(grp, a.z.rows);  // this group's rows: [first, first + rows)
    T v[cached_rows<T>];
    load_share(grp, a.z.data + c * a.z.ld + pr.first, a.bias ? a.bias + pr.first : nullptr, pr.rows, vec, v);
    finish_column(grp, a, c, vec, pr.first, pr.rows, v);
}

template <class T, int L>
__global__ void __launch_bounds__(cuda_plan::warp_block_threads, 3) cached_lane_columns(column_args<T> a, bool vec) {
    const index_t c = (static_cast<index_t>(blockIdx.x) * cuda_plan::warp_block_threads + threadIdx.x) / L;
    if (c >= a.z.cols) return;  // the whole group
    const unsigned lane = threadIdx.x % 32;
    const unsigned mask = L == 32 ? full_mask : ((1u << L) - 1u) << (lane & ~static_cast<unsigned>(L - 1));
    const lane_group<L> grp{static_cast<int>(lane % L), mask};
    cached_column(grp, a, c, vec);
}

template <class T>
__global__ void __launch_bounds__(cuda_plan::cached_block_max_threads, 1) cached_block_columns(column_args<T> a, bool vec) {
    __shared__ dyn_block_group::scratch sh;
    const dyn_block_group grp{static_cast<int>(threadIdx.x), static_cast<int>(blockDim.x), &sh};
    cached_column(grp, a, static_cast<index_t>(blockIdx.x), vec);
}

#if defined(_CG_HAS_CLUSTER_GROUP)
// A cluster of blocks (of at most cluster_max_threads) working on one column, each block on one
// of its equal parts (column_part below). A reduction combines the block's warps in
// shared memory, then every thread reads the blocks' results from the cluster's shared memory
// (each kind of reduction has its own slot, written once per column) and combines them in block
// order: the same result everywhere, run to run.
struct cluster_block_group {
    enum slot_kind { any_slot, max_slot, sum_slot, loss_slot, min_slot, slots };
    struct scratch {
        double d[cuda_plan::cluster_max_threads / 32];
        long long i[cuda_plan::cluster_max_threads / 32];
        double slot_d[slots];
        long long slot_i[slots];
    };
    int rank;    // threadIdx.x
    int size;    // blockDim.x
    int part;    // the block's rank in the cluster
    int parts;   // blocks in the cluster
    scratch* sh;

    __device__ void sync() const { __syncthreads(); }
    __device__ void cluster_sync() const { cooperative_groups::this_cluster().sync(); }
    __device__ const scratch& remote(int r) const { return *cooperative_groups::this_cluster().map_shared_rank(sh, r); }

    __device__ bool any(bool b) const {
        const int mine = __syncthreads_or(b);
        if (rank == 0) sh->slot_i[any_slot] = mine;
        cluster_sync();
        long long r = 0;
        for (int p = 0; p < parts; ++p) r |= remote(p).slot_i[any_slot];
        return r != 0;
    }
    __device__ double sum(double v) const {
        const slot_kind k = sum_done_ ? loss_slot : sum_slot;
        v = warp_sum(v);
        __syncthreads();
        if (rank % 32 == 0) sh->d[rank / 32] = v;
        __syncthreads();
        if (rank == 0) {
            double r = 0;
            for (int w = 0; w < size / 32; ++w) r += sh->d[w];
            sh->slot_d[k] = r;
        }
        cluster_sync();
        double r = 0;
        for (int p = 0; p < parts; ++p) r += remote(p).slot_d[k];
        sum_done_ = true;
        return r;
    }
    template <class V>
    __device__ V max(V v) const {
        for (int o = 16; o > 0; o /= 2) {
            const V w = __shfl_xor_sync(full_mask, v, o);
            v = w > v ? w : v;
        }
        __syncthreads();
        if (rank % 32 == 0) sh->d[rank / 32] = static_cast<double>(v);
        __syncthreads();
        if (rank == 0) {
            double r = sh->d[0];
            for (int w = 1; w < size / 32; ++w) r = sh->d[w] > r ? sh->d[w] : r;
            sh->slot_d[max_slot] = r;
        }
        cluster_sync();
        double r = remote(0).slot_d[max_slot];
        for (int p = 1; p < parts; ++p) r = remote(p).slot_d[max_slot] > r ? remote(p).slot_d[max_slot] : r;
        return static_cast<V>(r);
    }
    __device__ long long min(long long v) const {
        v = warp_min(v);
        __syncthreads();
        if (rank % 32 == 0) sh->i[rank / 32] = v;
        __syncthreads();
        if (rank == 0) {
            long long r = sh->i[0];
            for (int w = 1; w < size / 32; ++w) r = sh->i[w] < r ? sh->i[w] : r;
            sh->slot_i[min_slot] = r;
        }
        cluster_sync();
        long long r = remote(0).slot_i[min_slot];
        for (int p = 1; p < parts; ++p) r = remote(p).slot_i[min_slot] < r ? remote(p).slot_i[min_slot] : r;
        return r;
    }

    mutable bool sum_done_ = false;  // the column's first sum is the exps', the second the loss's
};
// Equal parts, each a multiple of the 16-byte vector (so every part starts aligned when the column
// does); the host's choice of the number of parts (cuda_plan::fused_launch) makes each fit its block.
template <class T>
__device__ part_range column_part(const cluster_block_group& g, index_t K) {
    constexpr index_t W = vec16<T>::width;
    const index_t P = ((K + g.parts - 1) / g.parts + W - 1) / W * W;
    const index_t first = static_cast<index_t>(g.part) * P;
    const index_t rows = K - first < P ? K - first : P;
    return {first, rows > 0 ? rows : 0};
}
__device__ inline int label_rank(const cluster_block_group& g) { return g.part * g.size + g.rank; }
__device__ inline int label_stride(const cluster_block_group& g) { return g.parts * g.size; }
#endif

// One column per cluster (grid: columns x cluster size). Launched only where clusters_usable().
template <class T>
__global__ void __launch_bounds__(cuda_plan::cluster_max_threads, 2) cluster_columns(column_args<T> a, bool vec) {
#if defined(_CG_HAS_CLUSTER_GROUP)
    __shared__ cluster_block_group::scratch sh;
    const auto cl = cooperative_groups::this_cluster();
    const auto parts = static_cast<int>(cl.num_blocks());
    const cluster_block_group grp{static_cast<int>(threadIdx.x), static_cast<int>(blockDim.x),
                                  static_cast<int>(cl.block_rank()), parts, &sh};
    cached_column(grp, a, static_cast<index_t>(blockIdx.x) / parts, vec);
    cl.sync();  // the other blocks may still read this block's slots
#else
    (void)a;
    (void)vec;
    __trap();  // not reached: clusters_usable() is false for code below compute capability 9.0
#endif
}

// Copies to shared memory that complete while the thread goes on (cp.async, compute capability
// 8.0 and above; below, plain loads and stores), and the wait for all of a thread's copies.
template <int Bytes>
__device__ void copy_async(void* dst_shared, const void* src) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
    const auto d = static_cast<unsigned>(__cvta_generic_to_shared(dst_shared));
    if constexpr (Bytes == 16)
        asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(d), "l"(src) : "memory");
    else
        asm volatile("cp.async.ca.shared.global [%0], [%1], %2;\n" ::"r"(d), "l"(src), "n"(Bytes) : "memory");
#else
    if constexpr (Bytes == 16) *static_cast<int4*>(dst_shared) = *static_cast<const int4*>(src);
    else if constexpr (Bytes == 8) *static_cast<long long*>(dst_shared) = *static_cast<const long long*>(src);
    else *static_cast<int*>(dst_shared) = *static_cast<const int*>(src);
#endif
}
__device__ inline void copy_async_wait_all() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
    asm volatile("cp.async.wait_all;\n" ::: "memory");
#endif
}

// A thread's copies of the K logits at zc (16-byte aligned) into the stage: 16-byte vectors
// t, t + G, ..., then the entries past the last whole vector one at a time.
template <class T>
__device__ void stage_column(T* stage, const T* zc, index_t K, int rank, int threads) {
    constexpr index_t W = vec16<T>::width;
    const index_t whole = K / W * W;
#pragma unroll 1
    for (index_t r = static_cast<index_t>(rank) * W; r < whole; r += static_cast<index_t>(threads) * W)
        copy_async<16>(stage + r, zc + r);
    for (index_t r = whole + rank; r < K; r += threads) copy_async<static_cast<int>(sizeof(T))>(stage + r, zc + r);
}

// The pipelined block (cuda_plan::fused_launch): a persistent block takes columns blockIdx.x,
// blockIdx.x + gridDim.x, ... Column c waits in the stage (dynamic shared memory, K entries),
// moves into the registers of the block's threads (the vector layout of load_share, the bias
// added), and the copies of the block's next column into the stage start before column c is
// reduced and its gradient written (finish_column). So each multiprocessor keeps a column's reads
// in flight through the reductions that stall the cached block. Z and G 16-byte aligned
// (vector_aligned). Reads Z column c + gridDim.x while writing G column c: distinct, also in place.
// The block size is a template argument, so that the strides of a thread's share are constants:
// with the block's size known only at run time, the kernel spilled more of its registers.
template <int Threads>
struct fixed_block_group : dyn_block_group {
    static constexpr int size = Threads;
};

template <class T, int Threads, int R>
__global__ void __launch_bounds__(Threads, 1) pipelined_block_columns(column_args<T> a) {
    extern __shared__ __align__(16) unsigned char stage_bytes[];
    T* const stage = reinterpret_cast<T*>(stage_bytes);
    __shared__ dyn_block_group::scratch sh;
    const fixed_block_group<Threads> grp{{static_cast<int>(threadIdx.x), Threads, &sh}};
    const index_t N = a.z.cols, K = a.z.rows, step = gridDim.x;
    index_t c = blockIdx.x;
    if (c < N) stage_column(stage, a.z.data + c * a.z.ld, K, grp.rank, grp.size);
    for (; c < N; c += step) {
        copy_async_wait_all();
        __syncthreads();  // every thread's copies of column c have landed
        T v[R];
        load_share(grp, static_cast<const T*>(stage), a.bias, K, true, v);  // the bias added
        __syncthreads();  // every thread has read the stage
        if (c + step < N) stage_column(stage, a.z.data + (c + step) * a.z.ld, K, grp.rank, grp.size);
        finish_column(grp, a, c, true, 0, K, v);
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

// Launches Op over the columns of a.z on `stream` with the streamed kernels (two sweeps of each
// column, an online max and sum), in the shape cuda_plan::column_launch picks.
template <class T, column_op Op>
void launch_streamed_columns(const column_args<T>& a, cudaStream_t stream) {
    if (a.z.cols == 0) return;
    const cuda_plan::launch_shape sh = cuda_plan::column_launch(a.z.rows, a.z.cols);
    if (sh.warp_per_column)
        warp_columns<T, Op><<<static_cast<unsigned>(sh.blocks), sh.threads, 0, stream>>>(a);
    else
        block_columns<T, Op><<<static_cast<unsigned>(sh.blocks), sh.threads, 0, stream>>>(a);
    detail::cuda_check(cudaGetLastError(), "kernel launch (PAL-CE columns)");
}

// Whether the cached kernel may read and write 16-byte vectors: every pointer it reads or writes
// through aligned, and the leading dimensions multiples of the vector.
template <class T>
bool vector_aligned(const column_args<T>& a) {
    constexpr auto W = static_cast<index_t>(vec16<T>::width);
    const auto aligned = [](const void* p) { return reinterpret_cast<std::uintptr_t>(p) % 16 == 0; };
    return aligned(a.z.data) && a.z.ld % W == 0 && (!a.g.data || (aligned(a.g.data) && a.g.ld % W == 0)) &&
           (!a.bias || aligned(a.bias));
}

// What the fused column's launch needs to know of a device, found once per device (a launch
// in the objective's chunk loop then costs one cudaGetDevice and a lookup):
//  - clusters[t] (t = 0 float, 1 double): whether cluster_columns<T> can run there: compute
//    capability 9.0 or above, and the kernel built for it (not from an older architecture's PTX);
//  - stage_bytes: the dynamic shared memory a block of pipelined_block_columns may take (the
//    device's opt-in limit less the kernel's static shared memory), set on both kernels;
//  - sms: its multiprocessors.
struct device_caps {
    bool clusters[2] = {false, false};
    std::size_t stage_bytes = 0;
    int sms = 1;
};

// The pipelined block's kernel: cuda_plan::pipelined_threads threads holding 2 cached_rows<T>
// each (the columns a cached block of 1024 threads holds). Built and chosen for doubles only (in
// float its 64 logits a thread spilled 760 bytes of registers, ptxas -v for sm_90).
inline constexpr auto pipelined_kernel =
    pipelined_block_columns<double, cuda_plan::pipelined_threads, 2 * cached_rows<double>>;

inline void stage_limit_on(int optin, device_caps& dc) {
    cudaFuncAttributes fa{};
    detail::cuda_check(cudaFuncGetAttributes(&fa, pipelined_kernel), "cudaFuncGetAttributes");
    const int dynamic_max = optin - static_cast<int>(fa.sharedSizeBytes);
    detail::cuda_check(cudaFuncSetAttribute(pipelined_kernel,
                                            cudaFuncAttributeMaxDynamicSharedMemorySize, dynamic_max),
                       "cudaFuncSetAttribute (pipelined block's stage)");
    dc.stage_bytes = dc.stage_bytes == 0 ? static_cast<std::size_t>(dynamic_max)
                                         : std::min(dc.stage_bytes, static_cast<std::size_t>(dynamic_max));
}

inline const device_caps& current_device_caps() {
    int dev = 0;
    detail::cuda_check(cudaGetDevice(&dev), "cudaGetDevice");
    static std::mutex mu;
    static std::map<int, device_caps> known;
    const std::lock_guard<std::mutex> lock(mu);
    if (const auto it = known.find(dev); it != known.end()) return it->second;
    device_caps dc;
    int major = 0, optin = 0;
    detail::cuda_check(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev), "cudaDeviceGetAttribute");
    detail::cuda_check(cudaDeviceGetAttribute(&dc.sms, cudaDevAttrMultiProcessorCount, dev), "cudaDeviceGetAttribute");
    detail::cuda_check(cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev),
                       "cudaDeviceGetAttribute");
    if (major >= 9) {
        cudaFuncAttributes fa{};
        detail::cuda_check(cudaFuncGetAttributes(&fa, cluster_columns<float>), "cudaFuncGetAttributes");
        dc.clusters[0] = fa.ptxVersion >= 90;
        detail::cuda_check(cudaFuncGetAttributes(&fa, cluster_columns<double>), "cudaFuncGetAttributes");
        dc.clusters[1] = fa.ptxVersion >= 90;
    }
    stage_limit_on(optin, dc);
    return known.emplace(dev, dc).first->second;
}

template <class T>
bool clusters_usable() {
    return current_device_caps().clusters[sizeof(T) == 8 ? 1 : 0];
}

// The stage the pipelined block may use for these arguments: 0 where the memory is not aligned
// for its 16-byte copies.
template <class T>
std::size_t stage_bytes_for(const column_args<T>& a) {
    return vector_aligned(a) ? current_device_caps().stage_bytes : 0;
}

// Launches the fused column over a.z in the shape sh (cuda_plan::fused_launch's, or another of the
// same kinds for the benchmark's comparisons).
template <class T>
void launch_fused(const column_args<T>& a, const cuda_plan::fused_shape& sh, cudaStream_t stream) {
    if (a.z.cols == 0) return;
    const bool vec = vector_aligned(a);
    const auto grid = static_cast<unsigned>(sh.blocks);
    switch (sh.kind) {
        case cuda_plan::fused_kernel::cached_lanes:
            switch (sh.lanes) {
                case 1: cached_lane_columns<T, 1><<<grid, sh.threads, 0, stream>>>(a, vec); break;
                case 2: cached_lane_columns<T, 2><<<grid, sh.threads, 0, stream>>>(a, vec); break;
                case 4: cached_lane_columns<T, 4><<<grid, sh.threads, 0, stream>>>(a, vec); break;
                case 8: cached_lane_columns<T, 8><<<grid, sh.threads, 0, stream>>>(a, vec); break;
                case 16: cached_lane_columns<T, 16><<<grid, sh.threads, 0, stream>>>(a, vec); break;
                default: cached_lane_columns<T, 32><<<grid, sh.threads, 0, stream>>>(a, vec); break;
            }
            break;
        case cuda_plan::fused_kernel::cached_block:
            cached_block_columns<T><<<grid, sh.threads, 0, stream>>>(a, vec);
            break;
        case cuda_plan::fused_kernel::cached_cluster: {
            cudaLaunchConfig_t cfg{};
            cfg.gridDim = dim3(grid);
            cfg.blockDim = dim3(static_cast<unsigned>(sh.threads));
            cfg.stream = stream;
            cudaLaunchAttribute attr{};
            attr.id = cudaLaunchAttributeClusterDimension;
            attr.val.clusterDim.x = static_cast<unsigned>(sh.cluster);
            attr.val.clusterDim.y = 1;
            attr.val.clusterDim.z = 1;
            cfg.attrs = &attr;
            cfg.numAttrs = 1;
            detail::cuda_check(cudaLaunchKernelEx(&cfg, cluster_columns<T>, a, vec),
                               "cudaLaunchKernelEx (PAL-CE columns, cluster)");
            break;
        }
        case cuda_plan::fused_kernel::pipelined_block: {
            // Doubles with aligned memory (its 16-byte copies) only: fused_launch never picks it
            // otherwise, and there is no float kernel.
            if constexpr (std::is_same_v<T, double>) {
                if (vec) {
                    const std::size_t smem = (static_cast<std::size_t>(a.z.rows) * sizeof(T) + 15) / 16 * 16;
                    int per_sm = 0;
                    detail::cuda_check(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, pipelined_kernel,
                                                                                     cuda_plan::pipelined_threads, smem),
                                       "cudaOccupancyMaxActiveBlocksPerMultiprocessor");
                    const index_t resident = static_cast<index_t>(per_sm > 0 ? per_sm : 1) * current_device_caps().sms;
                    const auto blocks = static_cast<unsigned>(sh.blocks < resident ? sh.blocks : resident);
                    pipelined_kernel<<<blocks, cuda_plan::pipelined_threads, smem, stream>>>(a);
                    break;
                }
            }
            launch_streamed_columns<T, column_op::fused>(a, stream);
            return;
        }
        case cuda_plan::fused_kernel::streamed:
            launch_streamed_columns<T, column_op::fused>(a, stream);
            return;
    }
    detail::cuda_check(cudaGetLastError(), "kernel launch (PAL-CE columns, cached)");
}

// Launches Op over the columns of a.z on `stream`: the fused column in the shape
// cuda_plan::fused_launch picks (held in registers when it fits), the class tiles' passes streamed.
template <class T, column_op Op>
void launch_columns(const column_args<T>& a, cudaStream_t stream) {
    if (a.z.cols == 0) return;
    if constexpr (Op == column_op::fused)
        launch_fused(a, cuda_plan::fused_launch(a.z.rows, a.z.cols, sizeof(T), clusters_usable<T>(), stage_bytes_for(a)),
                     stream);
    else
        launch_streamed_columns<T, Op>(a, stream);
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
