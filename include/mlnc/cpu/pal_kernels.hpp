#pragma once
// CPU kernel of the PAL-CE / PAL-N loss at the logits level.
//
// One column (sample) at a time, in three sweeps that touch memory once: (1) max and the
// non-finite check together, reading the column into cache; (2) exp(z - max) summed, and
// written to the gradient column when a gradient is wanted (nothing of size K is written for the
// loss alone); (3) the scaling of that column in cache, and the labels' entries. So Z is read
// from memory once and G written once, in place or not. The sweeps use Eigen's packet math (the
// instruction set the program is compiled for: SSE2, AVX2, AVX-512) with the sums accumulated in
// SIMD lanes of T over blocks of 16 packets and the block sums combined in double.
//
// Threads (mlnc::openmp): the columns are split into one contiguous range per thread; each thread
// sums its range in column order and the partial sums are added in thread order, so the loss is
// the same bit for bit run to run at a given thread count.
//
// The kernel throws nothing but std::bad_alloc (its K-entry scratch columns): a non-finite logit
// is reported in its result (the first one in column order, at its true position even when the
// gradient overwrites Z), and the front ends decide whether that is bad input (a Z the caller
// gave) or a numerical event (logits that overflowed inside the objective).

#include <mlnc/detail/threads.hpp>
#include <mlnc/labels.hpp>
#include <mlnc/types.hpp>

#include <Eigen/Core>

#include <cmath>
#include <cstddef>
#include <exception>
#include <limits>
#include <type_traits>
#include <vector>

namespace mlnc {

// A strided K x N view: entry (k, i) at data[k * inner + i * outer]. Column-major storage has
// inner = 1; a row-major K x N matrix has inner = N (its leading dimension), outer = 1.
template <class T>
struct strided_view {
    T* data = nullptr;
    Eigen::Index rows = 0, cols = 0;
    Eigen::Index inner = 1, outer = 0;
};

// What the kernel found: the sum of the per-sample losses (in double), or the position of the
// first non-finite logit (column order), in which case the outputs are unspecified.
struct pal_kernel_result {
    double sum = 0;
    Eigen::Index bad_row = -1;
    Eigen::Index bad_col = -1;
    bool finite() const noexcept { return bad_col < 0; }
};

namespace cpu_kernels {

template <class T>
Eigen::Index first_non_finite(const T* p, Eigen::Index n) noexcept {
    Eigen::Index k = 0;
    while (k + 1 < n && std::isfinite(p[k])) ++k;
    return k;
}

// exp(x) of a packet of x <= 0 (x - max of a column; never NaN here). For float, a cheaper form
// than Eigen's pexp, which handles every input: the reduction x = n ln2 + r with the rounding of
// n done by adding 1.5 2^23, the same minimax polynomial for exp(r) on |r| <= ln2 / 2 (within
// 2 ulp of exp, tested), and 2^n put into the exponent field by an integer add instead of
// Eigen's general ldexp. Results below exp(-86.9) = 1.9e-38 (1.6 times the smallest normal
// float) are flushed to 0; Eigen would return them, or their subnormal neighbours, and against
// a column sum >= 1 neither counts. Positive x up to 88 still give exp(x). double: Eigen's pexp.
template <class Packet>
Packet pexp_nonpositive(const Packet& x_in) noexcept {
    namespace ei = Eigen::internal;
    using T = typename ei::unpacket_traits<Packet>::type;
    if constexpr (std::is_same_v<T, float> && ei::unpacket_traits<Packet>::size > 1) {
        using PacketI = typename ei::unpacket_traits<Packet>::integer_packet;
        const Packet lo = ei::pset1<Packet>(-86.9f);  // n >= -125: 2^n y stays a normal float
        const Packet x = ei::pmax(x_in, lo);
        const Packet magic = ei::pset1<Packet>(12582912.0f);  // 1.5 2^23: its ulp is 1
        const Packet t = ei::pmadd(x, ei::pset1<Packet>(1.44269504088896341f), magic);
        const Packet n = ei::psub(t, magic);  // round(x / ln2), exactly
        // r = x - n ln2, ln2 in two parts (the first exact in 9 bits, so n C1 is exact).
        Packet r = ei::pmadd(n, ei::pset1<Packet>(-0.693359375f), x);
        r = ei::pmadd(n, ei::pset1<Packet>(2.12194440e-4f), r);
        const Packet r2 = ei::pmul(r, r);
        const Packet r3 = ei::pmul(r2, r);
        Packet y = ei::pmadd(ei::pset1<Packet>(1.9875691500e-4f), r, ei::pset1<Packet>(1.3981999507e-3f));
        Packet y1 = ei::pmadd(ei::pset1<Packet>(4.1665795894e-2f), r, ei::pset1<Packet>(1.6666665459e-1f));
        const Packet y2 = ei::padd(r, ei::pset1<Packet>(1.0f));
        y = ei::pmadd(y, r, ei::pset1<Packet>(8.3334519073e-3f));
        y1 = ei::pmadd(y1, r, ei::pset1<Packet>(5.0000001201e-1f));
        y = ei::pmadd(y, r3, y1);
        y = ei::pmadd(y, r2, y2);  // exp(r), in [0.70, 1.42]
        // n sits in the low bits of t's representation: t's bits - magic's bits = n.
        const PacketI ni = ei::psub(ei::preinterpret<PacketI>(t), ei::preinterpret<PacketI>(magic));
        y = ei::preinterpret<Packet>(ei::padd(ei::preinterpret<PacketI>(y), ei::plogical_shift_left<23>(ni)));
        return ei::pand(y, ei::pcmp_le(lo, x_in));
    } else {
        return ei::pexp(x_in);
    }
}

// The packet sweeps over one contiguous column of K entries.
template <class T>
struct column_sweeps {
    using packet = typename Eigen::internal::packet_traits<T>::type;
    static constexpr Eigen::Index L = Eigen::internal::unpacket_traits<packet>::size;
    static constexpr Eigen::Index block = 16 * L;  // entries summed in T before a flush to double

    // The max of z[0, K), or NaN when an entry is not finite (x - x is NaN exactly for +-Inf and
    // NaN, and accumulates in the same sweep as the max). The last K mod L entries go through one
    // packet padded with z[0], which changes neither the max nor the check.
    static T max_or_nan(const T* z, Eigen::Index K) noexcept {
        namespace ei = Eigen::internal;
        const Eigen::Index full = K - K % L;
        packet vmax = ei::pset1<packet>(z[0]);
        packet vbad = ei::psub(vmax, vmax);
        for (Eigen::Index k = 0; k < full; k += L) {
            const packet x = ei::ploadu<packet>(z + k);
            vmax = ei::pmax(vmax, x);
            vbad = ei::padd(vbad, ei::psub(x, x));
        }
        if (full < K) {
            alignas(64) T tail[L];
            for (Eigen::Index j = 0; j < L; ++j) tail[j] = full + j < K ? z[full + j] : z[0];
            const packet x = ei::pload<packet>(tail);
            vmax = ei::pmax(vmax, x);
            vbad = ei::padd(vbad, ei::psub(x, x));
        }
        return ei::predux(vbad) == T(0) ? ei::predux_max(vmax) : std::numeric_limits<T>::quiet_NaN();
    }

    // sum_k exp(z_k - mx) in double; e[k] = exp(z_k - mx) when e is not null (e may be z).
    // `next`, when not null, is the next column (K entries): its cache lines are prefetched as
    // this one is swept, so that its first sweep overlaps this column's arithmetic.
    static double exp_sum(const T* z, Eigen::Index K, T mx, T* e, const T* next = nullptr) noexcept {
        namespace ei = Eigen::internal;
        const packet vm = ei::pset1<packet>(mx);
        double sum = 0;
        Eigen::Index k = 0;
        for (; k + block <= K; k += block) {
            packet acc = ei::pzero(vm);
            for (Eigen::Index j = k; j < k + block; j += L) {
                if (next != nullptr) __builtin_prefetch(next + j);
                const packet x = pexp_nonpositive(ei::psub(ei::ploadu<packet>(z + j), vm));
                if (e) ei::pstoreu(e + j, x);
                acc = ei::padd(acc, x);
            }
            sum += static_cast<double>(ei::predux(acc));
        }
        if (k + L <= K) {
            packet acc = ei::pzero(vm);
            for (; k + L <= K; k += L) {
                if (next != nullptr) __builtin_prefetch(next + k);
                const packet x = pexp_nonpositive(ei::psub(ei::ploadu<packet>(z + k), vm));
                if (e) ei::pstoreu(e + k, x);
                acc = ei::padd(acc, x);
            }
            sum += static_cast<double>(ei::predux(acc));
        }
        if (k < K) {  // the last K mod L entries: one packet, padded with mx (its lanes are not used)
            alignas(64) T tail[L];
            for (Eigen::Index j = 0; j < L; ++j) tail[j] = k + j < K ? z[k + j] : mx;
            ei::pstore(tail, pexp_nonpositive(ei::psub(ei::pload<packet>(tail), vm)));
            for (Eigen::Index j = 0; k + j < K; ++j) {
                if (e) e[k + j] = tail[j];
                sum += static_cast<double>(tail[j]);
            }
        }
        return sum;
    }

    static void scale(T* e, Eigen::Index K, T s) noexcept {
        namespace ei = Eigen::internal;
        const packet vs = ei::pset1<packet>(s);
        Eigen::Index k = 0;
        for (; k + L <= K; k += L) ei::pstoreu(e + k, ei::pmul(ei::ploadu<packet>(e + k), vs));
        for (; k < K; ++k) e[k] *= s;
    }
};

// Small K: a column of K <= small_k_max logits does not fill the SIMD registers for long, and the
// per-column costs (three sweeps, one log) dominate. So L columns at a time (L samples per
// register): the block is transposed into a K x L buffer whose row k holds logit k of the L
// samples, and max, exp, sum and log run across samples, one packet per label.
inline constexpr Eigen::Index small_k_max = 32;

// The block of columns [i0, i0 + L): adds its losses to `sum` (in column order) and writes its
// gradient; returns false, having written nothing, when the block holds a non-finite logit (the
// caller then runs the columns one at a time, which reports it).
template <class T, class Labels>
bool pal_small_block(strided_view<const T> z, const Labels& S, pal_variant variant, T* per_sample, strided_view<T> g,
                     double scale, Eigen::Index i0, double& sum) {
    namespace ei = Eigen::internal;
    using packet = typename column_sweeps<T>::packet;
    constexpr Eigen::Index L = column_sweeps<T>::L;
    const Eigen::Index K = z.rows;
    const bool want_grad = g.data != nullptr;
    alignas(64) T zt[small_k_max * L];
    for (Eigen::Index j = 0; j < L; ++j) {
        const T* zc = z.data + (i0 + j) * z.outer;
        zt[j] = zc[0];  // row 0 outside the loop: K >= 1 is then visible to the compiler's warnings
        for (Eigen::Index k = 1; k < K; ++k) zt[k * L + j] = zc[k];
    }
    packet vmax = ei::pload<packet>(zt);
    packet vbad = ei::psub(vmax, vmax);
    for (Eigen::Index k = 1; k < K; ++k) {
        const packet x = ei::pload<packet>(zt + k * L);
        vmax = ei::pmax(vmax, x);
        vbad = ei::padd(vbad, ei::psub(x, x));
    }
    if (!(ei::predux(vbad) == T(0))) return false;
    packet vsum = ei::pzero(vmax);
    for (Eigen::Index k = 0; k < K; ++k) {
        const packet e = pexp_nonpositive(ei::psub(ei::pload<packet>(zt + k * L), vmax));
        if (want_grad) ei::pstore(zt + k * L, e);
        vsum = ei::padd(vsum, e);
    }
    alignas(64) T mx[L], se[L], lse[L];
    ei::pstore(mx, vmax);
    ei::pstore(se, vsum);
    if constexpr (ei::packet_traits<T>::HasLog) {
        ei::pstore(lse, ei::plog(vsum));  // sum in [1, K]: its log to the precision of T
    } else {
        for (Eigen::Index j = 0; j < L; ++j) lse[j] = std::log(se[j]);
    }
    for (Eigen::Index j = 0; j < L; ++j) {
        const Eigen::Index i = i0 + j;
        const T* zc = z.data + i * z.outer;  // still the logits: column i is written only below
        const auto set = S[i];
        const auto m = static_cast<double>(set.size());
        double loss = 0.0;
        for (const label_t k : set) loss += (static_cast<double>(mx[j]) - static_cast<double>(zc[k])) + lse[j];
        if (variant == pal_variant::pal_n) loss /= m;
        sum += loss;
        if (per_sample != nullptr) per_sample[i] = static_cast<T>(loss);
        if (want_grad) {
            const auto p_scale =
                static_cast<T>((variant == pal_variant::pal ? m : 1.0) * scale / static_cast<double>(se[j]));
            const auto y_value = static_cast<T>((variant == pal_variant::pal ? 1.0 : 1.0 / m) * scale);
            T* gc = g.data + i * g.outer;
            for (Eigen::Index k = 0; k < K; ++k) gc[k] = zt[k * L + j] * p_scale;
            for (const label_t k : set) gc[k] -= y_value;
        }
    }
    return true;
}

// Columns up to this size prefetch their successor (exp_sum).
inline constexpr Eigen::Index prefetch_max_bytes = 16 * 1024;

// The columns [begin, end) of Z, serially: see pal_columns.
template <class T, class Labels>
pal_kernel_result pal_column_range(strided_view<const T> z, const Labels& S, pal_variant variant, T* per_sample,
                                   strided_view<T> g, double scale, Eigen::Index begin, Eigen::Index end) {
    using sweeps = column_sweeps<T>;
    const Eigen::Index K = z.rows;
    const bool want_grad = g.data != nullptr;
    pal_kernel_result result;
    // Logits of the sample's labels, saved before an in-place gradient overwrites them.
    std::vector<T> z_in;
    std::vector<T> z_buf(z.inner != 1 ? static_cast<std::size_t>(K) : 0);
    std::vector<T> scratch(want_grad && g.inner != 1 ? static_cast<std::size_t>(K) : 0);
    // Blocks start at multiples of L (and the threads' ranges too), so a column takes the same
    // path, and gives the same bits, whatever the thread count.
    constexpr Eigen::Index L = sweeps::L;
    const bool small = L > 1 && K <= small_k_max && z.inner == 1 && (!want_grad || g.inner == 1);
    Eigen::Index block_end = begin;  // columns before it were done by a block
    for (Eigen::Index i = begin; i < end; ++i) {
        if (small && i >= block_end && i % L == 0 && i + L <= end) {
            if (pal_small_block(z, S, variant, per_sample, g, scale, i, result.sum)) {
                i += L - 1;
                continue;
            }
            block_end = i + L;  // a non-finite logit in this block: its columns one at a time
        }
        const T* zi = z.data + i * z.outer;
        if (z.inner != 1) {
            for (Eigen::Index k = 0; k < K; ++k) z_buf[static_cast<std::size_t>(k)] = zi[k * z.inner];
            zi = z_buf.data();
        }
        // A NaN anywhere, or an infinity, makes the max NaN: every non-finite column is found, and
        // its first bad entry located, before anything of it is written.
        const T mx = sweeps::max_or_nan(zi, K);
        if (std::isnan(mx)) {
            result.bad_row = first_non_finite(zi, K);
            result.bad_col = i;
            return result;
        }
        const auto set = S[i];
        const auto m = static_cast<double>(set.size());
        z_in.resize(set.size());
        for (std::size_t j = 0; j < set.size(); ++j) z_in[j] = zi[set[j]];

        T* e = !want_grad ? nullptr : g.inner == 1 ? g.data + i * g.outer : scratch.data();
        // sum_exp lies in [1, K]: the max contributes exp(0) = 1 and every term is in [0, 1].
        // Prefetch the next column while this one is in cache (columns that fit in L1 at most:
        // a longer column would evict its own lines).
        const T* next = z.inner == 1 && i + 1 < end && K * static_cast<Eigen::Index>(sizeof(T)) <= prefetch_max_bytes
                            ? z.data + (i + 1) * z.outer
                            : nullptr;
        const double sum_exp = sweeps::exp_sum(zi, K, mx, e, next);
        // log(sum_exp) is finite and >= 0, and every term (mx - z_k) + log(sum_exp) is a
        // non-negative number: no cancellation, and no overflow unless the loss itself exceeds
        // the largest double (logits of opposite signs near +-1.8e308 in double; never for
        // float), when it is +Inf as it should be.
        const double log_sum = std::log(sum_exp);
        double loss = 0.0;
        for (const T zk : z_in) loss += (static_cast<double>(mx) - static_cast<double>(zk)) + log_sum;
        if (variant == pal_variant::pal_n) loss /= m;
        result.sum += loss;
        if (per_sample != nullptr) per_sample[i] = static_cast<T>(loss);

        if (want_grad) {
            // PAL:   g = (m p - y) scale      PAL-N: g = (p - y / m) scale
            const double p_scale = (variant == pal_variant::pal ? m : 1.0) * scale / sum_exp;
            const double y_value = (variant == pal_variant::pal ? 1.0 : 1.0 / m) * scale;
            sweeps::scale(e, K, static_cast<T>(p_scale));
            for (const label_t k : set) e[k] -= static_cast<T>(y_value);
            if (g.inner != 1) {
                T* gi = g.data + i * g.outer;
                for (Eigen::Index k = 0; k < K; ++k) gi[k * g.inner] = e[k];
            }
        }
    }
    return result;
}

// For each column i of Z (K x N):
//   per_sample[i] (if not null) = loss of sample i,
//   G(:, i) (if g.data is not null) = d(sum of losses)/dz_i * scale (1/N for a mean over N samples;
//   the same 1/N for a minibatch of them, so that batch gradients add up to the full one).
// G may alias Z (same data and strides): each column is read completely before it is written.
// Columns with a non-unit inner stride go through a K-entry scratch column (no K x N copy).
// Reports the first column (in column order) holding a non-finite logit. threads: as cpu::threads
// (0 = all, 1 = serial; serial without OpenMP or inside a parallel region of the caller). Throws
// nothing, except std::bad_alloc when its scratch columns (K entries each) cannot be allocated.
// S is a label_sets or a sample_subset: sample i's labels are S[i].
template <class T, class Labels>
pal_kernel_result pal_columns(strided_view<const T> z, const Labels& S, pal_variant variant, T* per_sample,
                              strided_view<T> g, double scale, int threads = 1) {
    const Eigen::Index N = z.cols;
    // Below ~32k logits per thread the threads cost more than they save.
    const int nt = detail::team_size(threads, static_cast<double>(z.rows) * static_cast<double>(N), 32768.0,
                                     static_cast<index_t>(N));
    if (nt <= 1) return pal_column_range(z, S, variant, per_sample, g, scale, 0, N);
    std::vector<pal_kernel_result> part(static_cast<std::size_t>(nt));
    detail::parallel_ranges(nt, N, column_sweeps<T>::L, [&](int t, Eigen::Index begin, Eigen::Index end) {
        part[static_cast<std::size_t>(t)] = pal_column_range(z, S, variant, per_sample, g, scale, begin, end);
    });
    pal_kernel_result r;
    for (const pal_kernel_result& p : part) {
        if (!p.finite()) return p;  // the ranges are in column order: the first bad one is the first
        r.sum += p.sum;
    }
    return r;
}

// Class tiles: when a column of K logits is too long for the workspace, the logits of a chunk of
// samples are formed R rows (classes) at a time, twice. Pass 1 merges each tile into a running
// log-sum-exp per column (lse_tile); pass 2 turns each tile into its rows of G from the merged
// state (gradient_from_lse).

// The running log-sum-exp of one column: sum_k exp(z_k - max) over the rows seen so far, the
// logits of the sample's labels as their tiles pass, and the first non-finite logit.
template <class T>
struct lse_column {
    T max = -std::numeric_limits<T>::infinity();
    double sum = 0;
    Eigen::Index bad_row = -1;
};

// Pass 1 for the columns [begin, end) of a tile: z holds rows [r0, r0 + z.rows) of those columns
// (contiguous columns). state[i] is column i's running log-sum-exp; label_z[first[i] + j] receives
// the logit of the j-th label of S[i] when it lies in the tile.
template <class T, class Labels>
void lse_tile(strided_view<const T> z, Eigen::Index r0, const Labels& S, lse_column<T>* state, T* label_z,
              const index_t* first, Eigen::Index begin, Eigen::Index end) {
    using sweeps = column_sweeps<T>;
    const Eigen::Index R = z.rows;
    for (Eigen::Index i = begin; i < end; ++i) {
        lse_column<T>& st = state[i];
        if (st.bad_row >= 0) continue;
        const T* zi = z.data + i * z.outer;
        const T mx = sweeps::max_or_nan(zi, R);
        if (std::isnan(mx)) {
            st.bad_row = r0 + first_non_finite(zi, R);
            continue;
        }
        const double s = sweeps::exp_sum(zi, R, mx, nullptr);
        // Merge (max, sum) pairs: rescale the smaller max's sum (exp of a non-positive number).
        if (mx > st.max) {
            st.sum = st.sum * std::exp(static_cast<double>(st.max) - static_cast<double>(mx)) + s;
            st.max = mx;
        } else {
            st.sum += s * std::exp(static_cast<double>(mx) - static_cast<double>(st.max));
        }
        const auto set = S[i];
        for (std::size_t j = 0; j < set.size(); ++j) {
            const auto k = static_cast<Eigen::Index>(set[j]);
            if (k >= r0 && k < r0 + R) label_z[first[i] + static_cast<index_t>(j)] = zi[k - r0];
        }
    }
}

// The loss of column i from its merged state (as pal_column_range computes it).
template <class T>
double loss_from_lse(const lse_column<T>& st, const T* label_z, std::size_t m, pal_variant variant) {
    const double log_sum = std::log(st.sum);
    double loss = 0.0;
    for (std::size_t j = 0; j < m; ++j) loss += (static_cast<double>(st.max) - static_cast<double>(label_z[j])) + log_sum;
    return variant == pal_variant::pal_n ? loss / static_cast<double>(m) : loss;
}

// Pass 2 for the columns [begin, end) of a tile, in place: rows [r0, r0 + z.rows) of G, i.e.
// (m exp(z - max) / sum - y) scale (PAL) or (exp(z - max) / sum - y / m) scale (PAL-N).
template <class T, class Labels>
void gradient_from_lse(strided_view<T> z, Eigen::Index r0, const Labels& S, const lse_column<T>* state,
                       pal_variant variant, double scale, Eigen::Index begin, Eigen::Index end) {
    using sweeps = column_sweeps<T>;
    const Eigen::Index R = z.rows;
    for (Eigen::Index i = begin; i < end; ++i) {
        T* zi = z.data + i * z.outer;
        const auto set = S[i];
        const auto m = static_cast<double>(set.size());
        (void)sweeps::exp_sum(zi, R, state[i].max, zi);
        const double p_scale = (variant == pal_variant::pal ? m : 1.0) * scale / state[i].sum;
        const double y_value = (variant == pal_variant::pal ? 1.0 : 1.0 / m) * scale;
        sweeps::scale(zi, R, static_cast<T>(p_scale));
        for (const label_t k : set)
            if (k >= r0 && k < r0 + R) zi[k - r0] -= static_cast<T>(y_value);
    }
}

}  // namespace cpu_kernels
}  // namespace mlnc
