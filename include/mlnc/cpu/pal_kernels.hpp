#pragma once
// CPU kernel of the PAL-CE / PAL-N loss at the logits level.
//
// One column (sample) at a time, in three sweeps that touch memory once: (1) max and the
// non-finite check together, reading the column into cache; (2) exp(z - max) summed, and
// written to the gradient column when a gradient is wanted (nothing of size K is written for the
// loss alone); (3) the scaling of that column in cache, and the labels' entries. So Z is read
// from memory once and G written once, in place or not. A large G written out of place
// (gradient_write_of) is streamed to memory instead, from the exps kept in a scratch column (or,
// for the longest columns, taken again), so that its lines are never read for ownership. The
// sweeps use Eigen's packet math (the instruction set the program is compiled for: SSE2, AVX2,
// AVX-512) with the sums accumulated in SIMD lanes of T over blocks of 16 packets and the block
// sums combined in double. For K <= 32 (contiguous columns: with AVX-512 up to 48 in float and 38
// in double, with AVX2 + FMA up to 38 in float) the columns go L at a time instead, max, exp, sum
// and log running across samples (below). With AVX-512 in float, columns past that up to K = 256
// go by panels of 16: each column swept as above, the reductions and logs of the 16 together
// (pal_panel).
//
// Threads (mlnc::openmp): the columns are split into pieces of about 65536 logits that threads
// take as they come free; each piece sums its columns in column order and the pieces' sums are
// added in piece order, so the loss is the same bit for bit run to run and at every thread count
// (pal_columns).
//
// The kernel throws nothing but std::bad_alloc (its K-entry scratch columns): a non-finite logit
// is reported in its result (the first one in column order, at its true position even when the
// gradient overwrites Z), and the front ends decide whether that is bad input (a Z the caller
// gave) or a numerical event (logits that overflowed inside the objective).

#include <mlnc/detail/threads.hpp>
#include <mlnc/labels.hpp>
#include <mlnc/types.hpp>

#include <Eigen/Core>

#include <algorithm>
#include <atomic>
#include <bit>
#include <cmath>
#include <concepts>
#include <cstdint>
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

// The instruction-set parts of the kernel's double exp (pexp_nonpositive): y 2^n, where n sits in
// the low bits of t = x / ln2 + 1.5 2^52 (t's bits = magic's bits + n, and magic's bits shifted
// left by 52 are 0 mod 2^64, so t's bits << 52 = n << 52), put into y's exponent field by an
// integer add; and y where lo <= x, else 0. `own` is false where Eigen's pexp is used.
// Keyed by the packet's size (a vector type as a template argument loses its attributes).
template <int L>
struct double_exp_isa {
    static constexpr bool own = false;
};
#if defined(EIGEN_VECTORIZE_AVX512)
template <>
struct double_exp_isa<8> {
    static constexpr bool own = true;
    static __m512d times_pow2(__m512d y, __m512d t) noexcept {
        return _mm512_castsi512_pd(_mm512_add_epi64(_mm512_castpd_si512(y), _mm512_slli_epi64(_mm512_castpd_si512(t), 52)));
    }
    static __m512d zero_below(__m512d lo, __m512d x, __m512d y) noexcept {
        return _mm512_maskz_mov_pd(_mm512_cmp_pd_mask(lo, x, _CMP_LE_OQ), y);
    }
};
#endif
#if defined(EIGEN_VECTORIZE_AVX2) && defined(EIGEN_VECTORIZE_FMA)
template <>
struct double_exp_isa<4> {
    static constexpr bool own = true;
    static __m256d times_pow2(__m256d y, __m256d t) noexcept {
        return _mm256_castsi256_pd(_mm256_add_epi64(_mm256_castpd_si256(y), _mm256_slli_epi64(_mm256_castpd_si256(t), 52)));
    }
    static __m256d zero_below(__m256d lo, __m256d x, __m256d y) noexcept {
        return _mm256_and_pd(_mm256_cmp_pd(lo, x, _CMP_LE_OQ), y);
    }
};
#endif

// exp(x) of a packet of x <= 0 (x - max of a column; never NaN here). For float, a cheaper form
// than Eigen's pexp, which handles every input: the reduction x = n ln2 + r with the rounding of
// n done by adding 1.5 2^23, a minimax polynomial for exp(r) on |r| <= ln2 / 2 (within 2 ulp of
// exp, tested), and 2^n put into the exponent field by an integer add instead of Eigen's general
// ldexp. Results below exp(-86.9) = 1.9e-38 (1.6 times the smallest normal float) are flushed to
// 0; Eigen would return them, or their subnormal neighbours, and against a column sum >= 1
// neither counts. Positive x up to 88 still give exp(x). double: mlnc's own with AVX-512 or
// AVX2 + FMA (below), else Eigen's pexp. Flush = false (mlnc's own exps only) skips the flush
// (two instructions of about 17): x below the bound then gives exp(bound) instead of 0, which no
// sum of exps that holds a 1 can see (K = 10^6 such terms are 2e-32 in float), so the sweeps
// that only sum use it; a gradient, which stores the exps, keeps the flush.
template <class Packet, bool Flush = true>
EIGEN_ALWAYS_INLINE Packet pexp_nonpositive(const Packet& x_in) noexcept {
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
        // exp(r) in [0.70, 1.42] by a polynomial of degree 6 in Horner form, 6 fused multiply-adds
        // (the kernel is bound by this arithmetic once its columns are in cache): 1 + r + c_2 r^2
        // + ... + c_6 r^6, c_2..c_6 minimising the relative error on |r| <= 0.34658 (Remez
        // exchange in 50 digits: 3.1e-9, 0.05 ulp; the float arithmetic adds the rest). Horner's
        // chain is kept here: the kernels overlap it with other columns' work, and the shorter
        // chains of Estrin's scheme (one multiply more) were no faster in them (double: below).
        static constexpr float c[] = {1.3814611469932583e-3f, 8.36871112451922e-3f, 4.16683874733987e-2f,
                                      1.6666520679148836e-1f, 4.9999993451027186e-1f, 1.0f, 1.0f};
        Packet y = ei::pset1<Packet>(c[0]);
        for (int i = 1; i < 7; ++i) y = ei::pmadd(y, r, ei::pset1<Packet>(c[i]));
        // n sits in the low bits of t's representation (t's bits = magic's bits + n), and magic's
        // bits shifted left by 23 are 0 (mod 2^32): so t's bits << 23 = n << 23, the exponent 2^n.
        y = ei::preinterpret<Packet>(
            ei::padd(ei::preinterpret<PacketI>(y), ei::plogical_shift_left<23>(ei::preinterpret<PacketI>(t))));
        if constexpr (Flush) y = ei::pand(y, ei::pcmp_le(lo, x_in));
        return y;
    } else if constexpr (std::is_same_v<T, double> && double_exp_isa<ei::unpacket_traits<Packet>::size>::own) {
        // double with AVX-512 or AVX2 + FMA: the same reduction (n rounded by adding 1.5 2^52; ln2
        // in two parts, the first with 29 significant bits so that n C1 is exact for |n| <= 2^24),
        // exp(r) on |r| <= ln2 / 2 by a polynomial of degree 11, where Eigen's pexp divides two
        // polynomials: 1 + r + c_2 r^2 + ... + c_11 r^11, c_2..c_11 minimising the relative error
        // on |r| <= 0.34658 (Remez exchange in 50 digits: 7.7e-18, 0.07 ulp). As in float,
        // u = c_2 + ... + c_11 r^9 by Estrin's scheme (pairs, then powers r^2 and r^4), then
        // 1 + r (1 + r u) in Horner form, so the terms of order 0 and 1 are still added last and
        // the error is Horner's (tests/test_pal.cpp). Horner's chain of 11 dependent fused
        // multiply-adds bounds this exp by their latency: the double kernels took 3-12% longer
        // with it on the AMD Zen 5 VM of docs/performance.md ("Shorter chains in double's exp,
        // and cheaper logs").
        // Flushed to 0 below exp(-708) = 3.3e-308 (n >= -1022: 2^n y stays normal).
        const Packet lo = ei::pset1<Packet>(-708.0);
        const Packet x = ei::pmax(x_in, lo);
        const Packet magic = ei::pset1<Packet>(6755399441055744.0);  // 1.5 2^52
        const Packet t = ei::pmadd(x, ei::pset1<Packet>(1.4426950408889634), magic);
        const Packet n = ei::psub(t, magic);
        Packet r = ei::pmadd(n, ei::pset1<Packet>(-0.6931471806019545), x);
        r = ei::pmadd(n, ei::pset1<Packet>(4.2009150726810846e-11), r);
        // c_11 down to c_0.
        static constexpr double c[] = {2.5110040441845758e-08, 2.7632643465014625e-07, 2.7557242361759715e-06,
                                       2.4801487358626297e-05, 1.984126988656883e-04,  1.3888888947792063e-03,
                                       8.333333333322215e-03,  4.1666666666522086e-02, 0.16666666666666674,
                                       0.500000000000001,      1.0,                    1.0};
        const auto cf = [](int i) { return ei::pset1<Packet>(c[11 - i]); };  // coefficient of r^i
        const auto pair = [&](int i) { return ei::pmadd(cf(i + 1), r, cf(i)); };  // c_i + c_{i+1} r
        const Packet r2 = ei::pmul(r, r);
        const Packet r4 = ei::pmul(r2, r2);
        const Packet low = ei::pmadd(pair(4), r2, pair(2));    // c_2 .. c_5
        const Packet mid = ei::pmadd(pair(8), r2, pair(6));    // c_6 .. c_9
        const Packet u = ei::pmadd(ei::pmadd(pair(10), r4, mid), r4, low);
        Packet y = ei::pmadd(ei::pmadd(u, r, cf(1)), r, cf(0));
        using isa = double_exp_isa<ei::unpacket_traits<Packet>::size>;
        y = isa::times_pow2(y, t);
        if constexpr (Flush) y = isa::zero_below(lo, x_in, y);
        return y;
    } else {
        return ei::pexp(x_in);
    }
}

// log(x) of a packet of finite x >= 1 (the sums of exps of the kernels, which hold exp(0) = 1:
// in [1, K], or [1, 2^1000) as the column paths pad their batches with 1). With AVX-512, mlnc's
// own: x = 2^e m with m in [sqrt(1/2), sqrt(2)) by getexp and getmant, f = m - 1 (exact),
// s = f / (2 + f) (|s| <= 0.1716), and log(m) = 2 atanh(s) = f - s (f - R) with R = 2 s^2 / 3 +
// 2 s^4 / 5 + ... (Taylor, 5 terms in float and 10 in double: the first term left out is below
// 1e-9 and 4e-18 of log(m)), so the exact f dominates and the rounded correction s (f - R) is at
// most 0.2 f; then e ln2 added with ln2 in two parts (e C1 exact). Within 0.9 ulp of log in
// float and 1.2 ulp in double, where Eigen's plog is within 0.9 and 1.3 with AVX-512 (1.1 and
// 1.4 with SSE2; tests/test_pal.cpp), and 0 exactly at x = 1. Eigen's plog handles every input (zero, negative, subnormal, infinite)
// and took 12-13% of the small-K blocks at K = 10 on the AMD Zen 5 VM of docs/performance.md
// ("Shorter chains in double's exp, and cheaper logs"). Elsewhere Eigen's plog.
template <class Packet>
EIGEN_ALWAYS_INLINE Packet plog_at_least_one(const Packet& x) noexcept {
    return Eigen::internal::plog(x);
}
#if defined(EIGEN_VECTORIZE_AVX512)
template <>
EIGEN_ALWAYS_INLINE __m512 plog_at_least_one<__m512>(const __m512& x) noexcept {
    const __m512 m0 = _mm512_getmant_ps(x, _MM_MANT_NORM_1_2, _MM_MANT_SIGN_src);  // [1, 2)
    const __mmask16 big = _mm512_cmp_ps_mask(m0, _mm512_set1_ps(1.41421356f), _CMP_GT_OQ);
    const __m512 m = _mm512_mask_mul_ps(m0, big, m0, _mm512_set1_ps(0.5f));
    const __m512 e = _mm512_mask_add_ps(_mm512_getexp_ps(x), big, _mm512_getexp_ps(x), _mm512_set1_ps(1.0f));
    const __m512 f = _mm512_sub_ps(m, _mm512_set1_ps(1.0f));
    const __m512 sv = _mm512_div_ps(f, _mm512_add_ps(f, _mm512_set1_ps(2.0f)));
    const __m512 z = _mm512_mul_ps(sv, sv);
    __m512 R = _mm512_set1_ps(2.0f / 11.0f);
    for (const float c : {2.0f / 9.0f, 2.0f / 7.0f, 2.0f / 5.0f, 2.0f / 3.0f}) R = _mm512_fmadd_ps(R, z, _mm512_set1_ps(c));
    R = _mm512_mul_ps(R, z);
    const __m512 logm = _mm512_fnmadd_ps(sv, _mm512_sub_ps(f, R), f);  // f - s (f - R)
    // ln2 = C1 - C2, C1 with 9 significant bits (e C1 exact).
    return _mm512_fmadd_ps(e, _mm512_set1_ps(0.693359375f), _mm512_fnmadd_ps(e, _mm512_set1_ps(2.12194440e-4f), logm));
}
template <>
EIGEN_ALWAYS_INLINE __m512d plog_at_least_one<__m512d>(const __m512d& x) noexcept {
    const __m512d m0 = _mm512_getmant_pd(x, _MM_MANT_NORM_1_2, _MM_MANT_SIGN_src);  // [1, 2)
    const __mmask8 big = _mm512_cmp_pd_mask(m0, _mm512_set1_pd(1.4142135623730951), _CMP_GT_OQ);
    const __m512d m = _mm512_mask_mul_pd(m0, big, m0, _mm512_set1_pd(0.5));
    const __m512d e = _mm512_mask_add_pd(_mm512_getexp_pd(x), big, _mm512_getexp_pd(x), _mm512_set1_pd(1.0));
    const __m512d f = _mm512_sub_pd(m, _mm512_set1_pd(1.0));
    const __m512d sv = _mm512_div_pd(f, _mm512_add_pd(f, _mm512_set1_pd(2.0)));
    const __m512d z = _mm512_mul_pd(sv, sv);
    // R / z = sum_{k=1..10} 2 z^(k-1) / (2k + 1): z^5 (terms 6..10) + terms 1..5, both by Horner.
    const auto horner = [&](int k0) {
        __m512d acc = _mm512_set1_pd(2.0 / (2 * (k0 + 4) + 1));
        for (int k = k0 + 3; k >= k0; --k) acc = _mm512_fmadd_pd(acc, z, _mm512_set1_pd(2.0 / (2 * k + 1)));
        return acc;
    };
    const __m512d z2 = _mm512_mul_pd(z, z);
    const __m512d R = _mm512_mul_pd(_mm512_fmadd_pd(horner(6), _mm512_mul_pd(z2, _mm512_mul_pd(z2, z)), horner(1)), z);
    const __m512d logm = _mm512_fnmadd_pd(sv, _mm512_sub_pd(f, R), f);
    // ln2 = C1 - C2, C1 with 29 significant bits (e C1 exact for |e| < 2^24), as in the exp.
    return _mm512_fmadd_pd(e, _mm512_set1_pd(0.6931471806019545),
                           _mm512_fnmadd_pd(e, _mm512_set1_pd(4.2009150726810846e-11), logm));
}
#endif

// A packet stored at p (aligned to its size) by the instruction set's non-temporal store; without
// one for the packet, an ordinary aligned store. Overloads on the packet type.
template <class T, class Packet>
void stream_store(T* p, const Packet& x) noexcept {
    Eigen::internal::pstore(p, x);
}
#if defined(EIGEN_VECTORIZE_AVX512)
inline void stream_store(float* p, const __m512& x) noexcept { _mm512_stream_ps(p, x); }
inline void stream_store(double* p, const __m512d& x) noexcept { _mm512_stream_pd(p, x); }
#endif
#if defined(EIGEN_VECTORIZE_AVX)
inline void stream_store(float* p, const __m256& x) noexcept { _mm256_stream_ps(p, x); }
inline void stream_store(double* p, const __m256d& x) noexcept { _mm256_stream_pd(p, x); }
#endif
#if defined(EIGEN_VECTORIZE_SSE2)
inline void stream_store(float* p, const __m128& x) noexcept { _mm_stream_ps(p, x); }
inline void stream_store(double* p, const __m128d& x) noexcept { _mm_stream_pd(p, x); }
#endif

// The packet sweeps over one contiguous column of K entries.
template <class T>
struct column_sweeps {
    using packet = typename Eigen::internal::packet_traits<T>::type;
    static constexpr Eigen::Index L = Eigen::internal::unpacket_traits<packet>::size;
    static constexpr Eigen::Index block = 16 * L;  // entries summed in T before a flush to double

    // The last n < L entries of a column as one packet, the other lanes `fill` (AVX-512 and AVX2:
    // a masked load, which does not touch the masked lanes' memory; else through a buffer, whose
    // scalar stores the vector load cannot take by store forwarding: ~75 ns per column at K = 100
    // on an AVX2 machine before its masked load), and back.
    static packet load_tail(const T* p, Eigen::Index n, T fill) noexcept {
#if defined(EIGEN_VECTORIZE_AVX512)
        if constexpr (L == 16 && std::is_same_v<T, float>) {
            return _mm512_mask_loadu_ps(_mm512_set1_ps(fill), static_cast<__mmask16>((1u << n) - 1), p);
        } else if constexpr (L == 8 && std::is_same_v<T, double>) {
            return _mm512_mask_loadu_pd(_mm512_set1_pd(fill), static_cast<__mmask8>((1u << n) - 1), p);
        }
#elif defined(EIGEN_VECTORIZE_AVX2)
        if constexpr (L == 8 && std::is_same_v<T, float>) {
            const __m256i lanes = _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(n)),
                                                     _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
            return _mm256_blendv_ps(_mm256_set1_ps(fill), _mm256_maskload_ps(p, lanes), _mm256_castsi256_ps(lanes));
        } else if constexpr (L == 4 && std::is_same_v<T, double>) {
            const __m256i lanes = _mm256_cmpgt_epi64(_mm256_set1_epi64x(n), _mm256_setr_epi64x(0, 1, 2, 3));
            return _mm256_blendv_pd(_mm256_set1_pd(fill), _mm256_maskload_pd(p, lanes), _mm256_castsi256_pd(lanes));
        }
#endif
        alignas(64) T tail[L];
        for (Eigen::Index j = 0; j < L; ++j) tail[j] = j < n ? p[j] : fill;
        return Eigen::internal::pload<packet>(tail);
    }
    // The stores stay scalar: in place, a masked 64-byte store at the end of a column and the next
    // column's first load of the same cache line defeat store forwarding (the kernel in place at
    // K = 100 ran 40% slower with masked tail stores).
    static void store_tail(T* p, const packet& x, Eigen::Index n) noexcept {
        alignas(64) T tail[L];
        Eigen::internal::pstore(tail, x);
        for (Eigen::Index j = 0; j < n; ++j) p[j] = tail[j];
    }

    // The max of z[0, K), or NaN when an entry is not finite (x - x is NaN exactly for +-Inf and
    // NaN, and accumulates in the same sweep as the max).
    static T max_or_nan(const T* z, Eigen::Index K) noexcept {
        namespace ei = Eigen::internal;
        packet vbad = ei::pzero(ei::pset1<packet>(z[0]));
        const packet vmax = max_packet(z, K, vbad);
        return ei::predux(vbad) == T(0) ? ei::predux_max(vmax) : std::numeric_limits<T>::quiet_NaN();
    }
    // The lanes' maxima of z[0, K) (their max is the column's), adding x - x of every entry x to
    // vbad. The last K mod L entries go through one packet padded with z[0], which changes
    // neither the max nor the check.
    static packet max_packet(const T* z, Eigen::Index K, packet& vbad) noexcept {
        namespace ei = Eigen::internal;
        const Eigen::Index full = K - K % L;
        // Two pairs of accumulators, two packets a step: each chain of max (or add) waits on its
        // own latency only every other packet.
        packet vmax = ei::pset1<packet>(z[0]);
        Eigen::Index k = 0;
        if (full >= 2 * L) {
            packet vmax2 = vmax, vbad2 = ei::pzero(vmax);
            for (; k + 2 * L <= full; k += 2 * L) {
                const packet x = ei::ploadu<packet>(z + k);
                const packet x2 = ei::ploadu<packet>(z + k + L);
                vmax = ei::pmax(vmax, x);
                vmax2 = ei::pmax(vmax2, x2);
                vbad = ei::padd(vbad, ei::psub(x, x));
                vbad2 = ei::padd(vbad2, ei::psub(x2, x2));
            }
            vmax = ei::pmax(vmax, vmax2);
            vbad = ei::padd(vbad, vbad2);
        }
        for (; k < full; k += L) {
            const packet x = ei::ploadu<packet>(z + k);
            vmax = ei::pmax(vmax, x);
            vbad = ei::padd(vbad, ei::psub(x, x));
        }
        if (full < K) {
            const packet x = load_tail(z + full, K - full, z[0]);
            vmax = ei::pmax(vmax, x);
            vbad = ei::padd(vbad, ei::psub(x, x));
        }
        return vmax;
    }

    // The lanes' sums of exp(z_k - mx) over z[0, K), K <= block (one packet of T holds them; the
    // last K mod L entries padded with -Inf), stored to e (the last ones by scalar stores, see
    // store_tail) when Store, flushed below the exp's bound when Flush. The lines of `next` at
    // the same offsets (a column of K entries, or null) are prefetched into L1.
    template <bool Store, bool Flush>
    static packet exp_packet_sum(const T* z, Eigen::Index K, const packet& vm, T* e, const T* next) noexcept {
        namespace ei = Eigen::internal;
        packet acc = ei::pzero(vm);
        Eigen::Index k = 0;
        for (; k + L <= K; k += L) {
            if (next != nullptr) __builtin_prefetch(next + k, 0, 3);
            const packet x = pexp_nonpositive<packet, Flush>(ei::psub(ei::ploadu<packet>(z + k), vm));
            if constexpr (Store) ei::pstoreu(e + k, x);
            acc = ei::padd(acc, x);
        }
        if (k < K) {
            if (next != nullptr) __builtin_prefetch(next + k, 0, 3);
            const packet x = pexp_nonpositive<packet, Flush>(
                ei::psub(load_tail(z + k, K - k, -std::numeric_limits<T>::infinity()), vm));
            if constexpr (Store) store_tail(e + k, x, K - k);
            acc = ei::padd(acc, x);
        }
        return acc;
    }

    // sum_k exp(z_k - mx) in double; e[k] = exp(z_k - mx) when e is not null (e may be z).
    // `next`, when not null, is the next column (K entries): its cache lines are prefetched as
    // this one is swept, so that its first sweep overlaps this column's arithmetic; into L1, or
    // into L2 when `next_to_l2` (a column too long for L1).
    static double exp_sum(const T* z, Eigen::Index K, T mx, T* e, const T* next = nullptr,
                          bool next_to_l2 = false) noexcept {
        if (next_to_l2)
            return e != nullptr ? exp_sum_impl<true, true, 2>(z, K, mx, e, next)
                                : exp_sum_impl<false, false, 2>(z, K, mx, nullptr, next);
        return e != nullptr ? exp_sum_impl<true, true, 3>(z, K, mx, e, next)
                            : exp_sum_impl<false, false, 3>(z, K, mx, nullptr, next);
    }
    // The same sum as exp_sum storing the exps (the exps flushed below their bound, so the same
    // bits), storing nothing: for a gradient written afterwards by exp_scale_stream.
    static double exp_sum_flushed(const T* z, Eigen::Index K, T mx, const T* next, bool next_to_l2) noexcept {
        return next_to_l2 ? exp_sum_impl<false, true, 2>(z, K, mx, nullptr, next)
                          : exp_sum_impl<false, true, 3>(z, K, mx, nullptr, next);
    }
    // Store: the exps go to e, else they are only summed. Flush: the exps below the exp's bound
    // are 0 (pexp_nonpositive). Locality: __builtin_prefetch's (3: into L1, 2: into L2).
    template <bool Store, bool Flush, int Locality>
    static double exp_sum_impl(const T* z, Eigen::Index K, T mx, T* e, const T* next) noexcept {
        namespace ei = Eigen::internal;
        const packet vm = ei::pset1<packet>(mx);
        double sum = 0;
        Eigen::Index k = 0;
        for (; k + block <= K; k += block) {
            packet acc = ei::pzero(vm);
            for (Eigen::Index j = k; j < k + block; j += L) {
                if (next != nullptr) __builtin_prefetch(next + j, 0, Locality);
                const packet x = pexp_nonpositive<packet, Flush>(ei::psub(ei::ploadu<packet>(z + j), vm));
                if constexpr (Store) ei::pstoreu(e + j, x);
                acc = ei::padd(acc, x);
            }
            sum += static_cast<double>(ei::predux(acc));
        }
        if (k + L <= K) {
            packet acc = ei::pzero(vm);
            for (; k + L <= K; k += L) {
                if (next != nullptr) __builtin_prefetch(next + k, 0, Locality);
                const packet x = pexp_nonpositive<packet, Flush>(ei::psub(ei::ploadu<packet>(z + k), vm));
                if constexpr (Store) ei::pstoreu(e + k, x);
                acc = ei::padd(acc, x);
            }
            sum += static_cast<double>(ei::predux(acc));
        }
        if (k < K) {  // the last K mod L entries: one packet, padded with -Inf (exp gives 0 there, or
                      // exp of its bound unflushed, or with Eigen's pexp in double a subnormal:
                      // nothing against a sum >= 1)
            const packet x = pexp_nonpositive<packet, Flush>(
                ei::psub(load_tail(z + k, K - k, -std::numeric_limits<T>::infinity()), vm));
            if constexpr (Store) store_tail(e + k, x, K - k);
            sum += static_cast<double>(ei::predux(x));
        }
        return sum;
    }

    // A packet stored by a non-temporal store at p (aligned to the packet's size): the line goes
    // to memory through the write-combining buffers without being read first (stream_store).
    static void stream(T* p, const packet& x) noexcept { stream_store(p, x); }
    // Orders this thread's streaming stores before its later stores (and so before whatever
    // synchronises with them: the end of a parallel region, a return to the caller).
    static void stream_fence() noexcept {
#if defined(EIGEN_VECTORIZE_SSE2)
        _mm_sfence();
#endif
    }

    // The gradient column e = exp(z - mx) s - y at the labels (sorted), written once by streaming
    // stores (stream): no line of e is read, or kept in cache. The same operations on each entry
    // as exp_sum storing the exps, then scale, then the labels' subtraction, so the same bits.
    // The first entries up to e's first packet-aligned address, and the last K mod L after it,
    // are computed in one padded packet each and stored by scalar stores.
    static void exp_scale_stream(const T* z, Eigen::Index K, T mx, T s, const label_t* lab, const label_t* lab_end,
                                 T y, T* e) noexcept {
        scale_stream_impl<true>(z, K, mx, s, lab, lab_end, y, e);
    }
    // The same from the exps already stored in x (K entries): e = x s - y at the labels.
    static void scale_stream(const T* x, Eigen::Index K, T s, const label_t* lab, const label_t* lab_end, T y,
                             T* e) noexcept {
        scale_stream_impl<false>(x, K, T(0), s, lab, lab_end, y, e);
    }
    template <bool Exp>
    static void scale_stream_impl(const T* z, Eigen::Index K, T mx, T s, const label_t* lab, const label_t* lab_end,
                                  T y, T* e) noexcept {
        namespace ei = Eigen::internal;
        const packet vm = ei::pset1<packet>(mx), vs = ei::pset1<packet>(s);
        const auto value = [&](const packet& v) {
            if constexpr (Exp)
                return ei::pmul(pexp_nonpositive<packet, true>(ei::psub(v, vm)), vs);
            else
                return ei::pmul(v, vs);
        };
        constexpr std::uintptr_t bytes = sizeof(packet);
        const auto misalign = reinterpret_cast<std::uintptr_t>(e) % bytes;
        const Eigen::Index head =
            std::min<Eigen::Index>(K, misalign == 0 ? 0 : static_cast<Eigen::Index>((bytes - misalign) / sizeof(T)));
        // Entries [k, k + n), n <= L, through a buffer: their exps scaled, labels subtracted.
        const auto part = [&](Eigen::Index k, Eigen::Index n) {
            alignas(64) T buf[L];
            ei::pstore(buf, value(load_tail(z + k, n, mx)));
            for (; lab != lab_end && *lab < k + n; ++lab) buf[*lab - k] -= y;
            for (Eigen::Index j = 0; j < n; ++j) e[k + j] = buf[j];
        };
        if (head > 0) part(0, head);
        Eigen::Index k = head;
        for (; k + L <= K; k += L) {
            packet x = value(ei::ploadu<packet>(z + k));
            if (lab != lab_end && *lab < k + L) {
                alignas(64) T buf[L];
                ei::pstore(buf, x);
                for (; lab != lab_end && *lab < k + L; ++lab) buf[*lab - k] -= y;
                x = ei::pload<packet>(buf);
            }
            stream(e + k, x);
        }
        if (k < K) part(k, K - k);
    }

    static void scale(T* e, Eigen::Index K, T s) noexcept {
        namespace ei = Eigen::internal;
        const packet vs = ei::pset1<packet>(s);
        Eigen::Index k = 0;
        for (; k + L <= K; k += L) ei::pstoreu(e + k, ei::pmul(ei::ploadu<packet>(e + k), vs));
        if (k < K) store_tail(e + k, ei::pmul(load_tail(e + k, K - k, T(0)), vs), K - k);
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
        ei::pstore(lse, plog_at_least_one(vsum));  // sum in [1, K]: its log to the precision of T
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

// The SIMD form of the block of L samples (AVX-512: 16 floats or 8 doubles; AVX2 + FMA: 8 or 4),
// for contiguous columns (leading dimension K, in Z and in G): pal_small_block_transposed.
#if defined(EIGEN_VECTORIZE_AVX512) || (defined(EIGEN_VECTORIZE_AVX2) && defined(EIGEN_VECTORIZE_FMA))
#define MLNC_DETAIL_SIMD_BLOCK 1
// Where the labels keep their sets as contiguous arrays (label_sets, and windows of one): the
// offsets from sample i on (offsets[0] = sample i's first label) and the labels they index; both
// null otherwise (a sample_subset), where the block reads the sets one by one.
struct csr_labels {
    const index_t* offsets = nullptr;
    const label_t* labels = nullptr;
};
template <class Labels>
csr_labels csr_of(const Labels& S, Eigen::Index i) noexcept {
    if constexpr (requires {
                      { S.offsets().data() } -> std::convertible_to<const index_t*>;
                      { S.indices().data() } -> std::convertible_to<const label_t*>;
                  })
        return {S.offsets().data() + i, S.indices().data()};
    else if constexpr (requires { csr_of(*S.S, S.offset); })  // detail::label_window
        return csr_of(*S.S, S.offset + i);
    else
        return {};
}

// The labels past the fourth of the sets whose lanes are set in `longer`, one by one, into their
// words of bits (label_bits_across, below).
inline void label_bits_rest(csr_labels l, unsigned longer, std::uint32_t* b0, std::uint32_t* b1) noexcept {
    const label_t* const lab = l.labels + l.offsets[0];
    for (; longer != 0; longer &= longer - 1) {
        const int j = std::countr_zero(longer);
        for (index_t q = l.offsets[j] - l.offsets[0] + 4; q < l.offsets[j + 1] - l.offsets[0]; ++q) {
            const label_t k = lab[q];
            (k < 32 ? b0 : b1)[j] |= 1u << (k & 31);
        }
    }
}

// What the block needs of the instruction set, for T:
// - packet, L: a register of L values of T;
// - lanes, first_lanes(n), load_lanes, store_lanes: the first n lanes (n in [1, L]); a row of the
//   block loaded from memory in them (the others 0, no fault past them) or stored there;
// - transpose(r): r[t] = entries 0 .. L - 1 of row t becomes r[j] = entry j of rows 0 .. L - 1;
// - label_bits, make_bits, label_mask, has_label(b, k): each lane's set as bits of a 32-bit
//   word (labels k < 32), and the lanes whose set holds label k;
// - add_masked(acc, m, x): acc + x in the lanes of m, acc elsewhere; keep_masked(x, m): x in the
//   lanes of m, 0 elsewhere;
// - counts(c): L 32-bit set sizes as a packet; mul_sub(a, b, c): a b - c with one rounding;
// - losses: the block's losses m log_sum - label_sum (/ m for PAL-N) in double, stored to `out`
//   (rounded to T) when it is not null; returns their sum (a fixed order of additions).
template <class T>
struct simd_block;

// Up to this K contiguous columns go through the SIMD block of L samples (past it, one at a time):
// the largest K at which the block was measured faster than the columns one at a time, on the
// AMD Zen 5 VM of docs/performance.md. AVX-512: float 48, double 38 (at K = 40 the columns, five
// whole packets, were faster). AVX2: float 38 (slower at 48), double 32 (slower at 33 and 38).
// MLNC_BLOCK_K_MAX sets it for both, for measurement (at most 64).
#if defined(MLNC_BLOCK_K_MAX)
template <class T>
inline constexpr Eigen::Index block_k_max = MLNC_BLOCK_K_MAX;
#elif defined(EIGEN_VECTORIZE_AVX512)
template <class T>
inline constexpr Eigen::Index block_k_max = sizeof(T) == 4 ? 48 : 38;
#else
template <class T>
inline constexpr Eigen::Index block_k_max = sizeof(T) == 4 ? 38 : 32;
#endif
// A set's labels as bits: label k is bit k % 32 of word k / 32 of its lane.
template <class T>
inline constexpr Eigen::Index block_label_words = (block_k_max<T> + 31) / 32;
static_assert(block_k_max<float> <= 64 && block_k_max<double> <= 64, "at most 64 labels in two words");

#if defined(EIGEN_VECTORIZE_AVX512)
// Up to K = block_group_k_max<T>, block_group blocks are taken together by one call (see
// pal_small_block_transposed): a block there is too short a chain for the processor to overlap
// with the next. MLNC_BLOCK_GROUP_K_MAX sets the limit, for measurement (0: no grouping;
// docs/performance.md, the bench SmallKLoss and SmallKLossGrad). 16 (10 before the labels' bits
// were made across the sets): at K = 12 and 16 the blocks taken together were 3-20% faster on the
// AMD Zen 5 VM of docs/performance.md; past 16 they lost with a gradient.
inline constexpr int block_group = 2;
#if defined(MLNC_BLOCK_GROUP_K_MAX)
template <class T>
inline constexpr Eigen::Index block_group_k_max = MLNC_BLOCK_GROUP_K_MAX;
#else
template <class T>
inline constexpr Eigen::Index block_group_k_max = 16;
#endif

template <>
struct simd_block<float> {
    using packet = __m512;
    static constexpr int L = 16;
    using lanes = __mmask16;
    static lanes first_lanes(Eigen::Index n) noexcept { return static_cast<lanes>((1u << n) - 1u); }
    static packet load_lanes(const float* p, lanes m) noexcept { return _mm512_maskz_loadu_ps(m, p); }
    static void store_lanes(float* p, lanes m, packet v) noexcept { _mm512_mask_storeu_ps(p, m, v); }
    // Pairs of rows interleaved by 32-bit lanes, then by pairs of lanes, then 128-bit quarters
    // taken from two registers, twice (64 shuffles).
    static void transpose(packet (&r)[L]) noexcept {
        packet a[L], b[L];
        for (int i = 0; i < L; i += 2) {
            a[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);  // rows i, i + 1: entries 0 1 | 4 5 | 8 9 | 12 13
            a[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);  // 2 3 | 6 7 | 10 11 | 14 15
        }
        const auto lo = [](packet x, packet y) {
            return _mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(x), _mm512_castps_pd(y)));
        };
        const auto hi = [](packet x, packet y) {
            return _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(x), _mm512_castps_pd(y)));
        };
        for (int g = 0; g < L; g += 4) {  // rows g .. g + 3: entries j, j + 4, j + 8, j + 12 in b[g + j]
            b[g] = lo(a[g], a[g + 2]);
            b[g + 1] = hi(a[g], a[g + 2]);
            b[g + 2] = lo(a[g + 1], a[g + 3]);
            b[g + 3] = hi(a[g + 1], a[g + 3]);
        }
        // Rows 8 h .. 8 h + 7: a[8 h + j] holds, by quarters, entries j, j + 8 of rows 8 h .. 8 h + 3,
        // then of rows 8 h + 4 .. 8 h + 7; a[8 h + 4 + j] entries j + 4, j + 12.
        for (int h = 0; h < 2; ++h)
            for (int j = 0; j < 4; ++j) {
                a[h * 8 + j] = _mm512_shuffle_f32x4(b[h * 8 + j], b[h * 8 + 4 + j], 0x88);
                a[h * 8 + 4 + j] = _mm512_shuffle_f32x4(b[h * 8 + j], b[h * 8 + 4 + j], 0xDD);
            }
        for (int j = 0; j < 4; ++j) {
            r[j] = _mm512_shuffle_f32x4(a[j], a[8 + j], 0x88);
            r[j + 8] = _mm512_shuffle_f32x4(a[j], a[8 + j], 0xDD);
            r[j + 4] = _mm512_shuffle_f32x4(a[4 + j], a[12 + j], 0x88);
            r[j + 12] = _mm512_shuffle_f32x4(a[4 + j], a[12 + j], 0xDD);
        }
    }
    // op over the lanes of L packets at once: the result's lane c is op over the lanes of
    // v[slot(c)] (op commutative and associative; a fixed tree of it, so lane c's value depends on
    // that packet only). Halves, quarters, pairs, then single lanes (30 shuffles, 15 ops).
    static constexpr int slot(int c) noexcept { return (c % 4) * 4 + c / 4; }
    template <class Op>
    static packet reduce_lanes(const packet (&v)[L], Op op) noexcept {
        packet s1[8], s2[4], s3[2];
        for (int i = 0; i < 8; ++i)  // quarters 0, 1: v[2 i] halved; 2, 3: v[2 i + 1]
            s1[i] = op(_mm512_shuffle_f32x4(v[2 * i], v[2 * i + 1], 0x44),
                       _mm512_shuffle_f32x4(v[2 * i], v[2 * i + 1], 0xEE));
        for (int i = 0; i < 4; ++i)  // quarter r: v[4 i + r] in 4 lanes
            s2[i] = op(_mm512_shuffle_f32x4(s1[2 * i], s1[2 * i + 1], 0x88),
                       _mm512_shuffle_f32x4(s1[2 * i], s1[2 * i + 1], 0xDD));
        for (int i = 0; i < 2; ++i)  // quarter r: v[8 i + r] in lanes 0, 1, v[8 i + 4 + r] in 2, 3
            s3[i] = op(_mm512_shuffle_ps(s2[2 * i], s2[2 * i + 1], 0x44), _mm512_shuffle_ps(s2[2 * i], s2[2 * i + 1], 0xEE));
        // quarter r, lane t: v[4 t + r], which is column 4 r + t by slot
        return op(_mm512_shuffle_ps(s3[0], s3[1], 0x88), _mm512_shuffle_ps(s3[0], s3[1], 0xDD));
    }
    using label_bits = __m512i;
    static label_bits make_bits(const std::uint32_t* v) noexcept { return _mm512_load_si512(v); }
    using label_mask = __mmask16;
    static label_mask has_label(label_bits b, Eigen::Index k) noexcept {
        return _mm512_test_epi32_mask(b, _mm512_set1_epi32(static_cast<int>(1u << k)));
    }
    static packet add_masked(packet acc, label_mask m, packet x) noexcept { return _mm512_mask_add_ps(acc, m, acc, x); }
    static packet keep_masked(packet x, label_mask m) noexcept { return _mm512_maskz_mov_ps(m, x); }
    static packet counts(const std::int32_t* c) noexcept { return _mm512_cvtepi32_ps(_mm512_load_si512(c)); }
    static packet mul_sub(packet a, packet b, packet c) noexcept { return _mm512_fmsub_ps(a, b, c); }
    static __m512d low(packet x) noexcept { return _mm512_cvtps_pd(_mm512_castps512_ps256(x)); }
    static __m512d high(packet x) noexcept {
        return _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(x), 1)));
    }
    static double losses(packet m, packet log_sum, packet label_sum, bool pal_n, float* out) noexcept {
        __m512d lo = _mm512_fmsub_pd(low(m), low(log_sum), low(label_sum));
        __m512d hi = _mm512_fmsub_pd(high(m), high(log_sum), high(label_sum));
        if (pal_n) {
            lo = _mm512_div_pd(lo, low(m));
            hi = _mm512_div_pd(hi, high(m));
        }
        if (out != nullptr) {
            _mm256_storeu_ps(out, _mm512_cvtpd_ps(lo));
            _mm256_storeu_ps(out + 8, _mm512_cvtpd_ps(hi));
        }
        return _mm512_reduce_add_pd(_mm512_add_pd(lo, hi));
    }
};

template <>
struct simd_block<double> {
    using packet = __m512d;
    static constexpr int L = 8;
    using lanes = __mmask8;
    static lanes first_lanes(Eigen::Index n) noexcept { return static_cast<lanes>((1u << n) - 1u); }
    static packet load_lanes(const double* p, lanes m) noexcept { return _mm512_maskz_loadu_pd(m, p); }
    static void store_lanes(double* p, lanes m, packet v) noexcept { _mm512_mask_storeu_pd(p, m, v); }
    // As for float, one step fewer (24 shuffles).
    static void transpose(packet (&r)[L]) noexcept {
        packet a[L];
        for (int i = 0; i < L; i += 2) {
            a[i] = _mm512_unpacklo_pd(r[i], r[i + 1]);  // rows i, i + 1: entries 0 | 2 | 4 | 6
            a[i + 1] = _mm512_unpackhi_pd(r[i], r[i + 1]);  // 1 | 3 | 5 | 7
        }
        for (int g = 0; g < L; g += 4) {  // rows g .. g + 3: entries 0, 4 in r[g]; 2, 6; 1, 5; 3, 7
            r[g] = _mm512_shuffle_f64x2(a[g], a[g + 2], 0x88);
            r[g + 1] = _mm512_shuffle_f64x2(a[g], a[g + 2], 0xDD);
            r[g + 2] = _mm512_shuffle_f64x2(a[g + 1], a[g + 3], 0x88);
            r[g + 3] = _mm512_shuffle_f64x2(a[g + 1], a[g + 3], 0xDD);
        }
        a[0] = _mm512_shuffle_f64x2(r[0], r[4], 0x88);
        a[4] = _mm512_shuffle_f64x2(r[0], r[4], 0xDD);
        a[2] = _mm512_shuffle_f64x2(r[1], r[5], 0x88);
        a[6] = _mm512_shuffle_f64x2(r[1], r[5], 0xDD);
        a[1] = _mm512_shuffle_f64x2(r[2], r[6], 0x88);
        a[5] = _mm512_shuffle_f64x2(r[2], r[6], 0xDD);
        a[3] = _mm512_shuffle_f64x2(r[3], r[7], 0x88);
        a[7] = _mm512_shuffle_f64x2(r[3], r[7], 0xDD);
        for (int j = 0; j < L; ++j) r[j] = a[j];
    }
    using label_bits = __m512i;  // 64-bit lanes
    static label_bits make_bits(const std::uint32_t* v) noexcept {
        return _mm512_cvtepu32_epi64(_mm256_load_si256(reinterpret_cast<const __m256i*>(v)));
    }
    using label_mask = __mmask8;
    static label_mask has_label(label_bits b, Eigen::Index k) noexcept {
        return _mm512_test_epi64_mask(b, _mm512_set1_epi64(static_cast<long long>(1ull << k)));
    }
    static packet add_masked(packet acc, label_mask m, packet x) noexcept { return _mm512_mask_add_pd(acc, m, acc, x); }
    static packet keep_masked(packet x, label_mask m) noexcept { return _mm512_maskz_mov_pd(m, x); }
    static packet counts(const std::int32_t* c) noexcept {
        return _mm512_cvtepi32_pd(_mm256_load_si256(reinterpret_cast<const __m256i*>(c)));
    }
    static packet mul_sub(packet a, packet b, packet c) noexcept { return _mm512_fmsub_pd(a, b, c); }
    static double losses(packet m, packet log_sum, packet label_sum, bool pal_n, double* out) noexcept {
        packet l = _mm512_fmsub_pd(m, log_sum, label_sum);
        if (pal_n) l = _mm512_div_pd(l, m);
        if (out != nullptr) _mm512_storeu_pd(out, l);
        return _mm512_reduce_add_pd(l);
    }
};

// The sets of label_bits_lanes consecutive samples at most, as label_bits_across takes them.
inline constexpr int label_bits_lanes = 16;

// The sets of n <= 16 consecutive samples as bits (label k: bit k % 32 of b0[j] for k < 32, of
// b1[j] past that; K <= 64, b1 unused and may be null for K <= 32) and sizes, from their arrays
// (l.offsets[0] = the first sample's first label). Each set's first four labels are taken across
// the 16 sets at once: label min(q, m - 1) of each set for q = 0 .. 3, picked from the sets'
// labels held in four registers (up to 64 labels) or else gathered; a set's labels past its
// fourth go one by one. (Set by set, the scalar form was about a quarter of the block's time at
// K = 10 in float on the AMD Zen 5 VM of docs/performance.md.)
EIGEN_ALWAYS_INLINE void label_bits_across(csr_labels l, int n, std::uint32_t* b0, std::uint32_t* b1, std::int32_t* count) noexcept {
    const auto first = [](Eigen::Index m) -> unsigned {  // the first m lanes of 16, m clamped to [0, 16]
        return m <= 0 ? 0u : m >= 16 ? 0xFFFFu : (1u << m) - 1u;
    };
    const auto kn = static_cast<__mmask16>(first(n));
    const auto k_lo = static_cast<__mmask8>(kn & 0xFFu), k_hi = static_cast<__mmask8>(kn >> 8);
    const index_t* const off = l.offsets;
    // (A pointer past off[n] is not formed: the upper loads' addresses where their lanes are all masked.)
    const __m512i o_lo = _mm512_maskz_loadu_epi64(k_lo, off);
    const __m512i o_hi = _mm512_maskz_loadu_epi64(k_hi, off + std::min(8, n));
    const __m512i e_lo = _mm512_maskz_loadu_epi64(k_lo, off + 1);
    const __m512i e_hi = _mm512_maskz_loadu_epi64(k_hi, off + std::min(9, n));
    const auto narrow = [](__m512i lo, __m512i hi) {  // 16 int64 (small) as 16 int32
        return _mm512_inserti64x4(_mm512_castsi256_si512(_mm512_cvtepi64_epi32(lo)), _mm512_cvtepi64_epi32(hi), 1);
    };
    const __m512i base = _mm512_set1_epi64(off[0]);
    // Lanes past n: start 0, size 0 (their bits are computed and not stored).
    const __m512i start = _mm512_maskz_mov_epi32(kn, narrow(_mm512_sub_epi64(o_lo, base), _mm512_sub_epi64(o_hi, base)));
    const __m512i size = _mm512_maskz_mov_epi32(kn, narrow(_mm512_sub_epi64(e_lo, o_lo), _mm512_sub_epi64(e_hi, o_hi)));
    const Eigen::Index total = off[n] - off[0];
    const label_t* const lab = l.labels + off[0];
    const __m512i one = _mm512_set1_epi32(1), c32 = _mm512_set1_epi32(32);
    const __m512i last = _mm512_sub_epi32(size, one);
    __m512i w0 = _mm512_setzero_si512(), w1 = w0;
    // A label k sets bit k of w0 (a shift by 32 or more gives 0) and bit k - 32 of w1 (a negative
    // count, as unsigned, also gives 0).
    const auto put = [&](__m512i k) {
        w0 = _mm512_or_si512(w0, _mm512_sllv_epi32(one, k));
        w1 = _mm512_or_si512(w1, _mm512_sllv_epi32(one, _mm512_sub_epi32(k, c32)));
    };
    if (total <= 64) {
        // The labels [16 r, 16 r + 16) of the sets, masked to `total` (no load past the array).
        __m512i r[4];
        for (int q = 0; q < 4; ++q)
            r[q] = _mm512_maskz_loadu_epi32(static_cast<__mmask16>(first(total - 16 * q)),
                                            lab + std::min<Eigen::Index>(16 * q, total));
        for (int q = 0; q < 4; ++q) {
            const __m512i at = _mm512_add_epi32(start, _mm512_min_epi32(_mm512_set1_epi32(q), last));
            const __m512i lo = _mm512_permutex2var_epi32(r[0], at, r[1]), hi = _mm512_permutex2var_epi32(r[2], at, r[3]);
            put(_mm512_mask_blend_epi32(_mm512_test_epi32_mask(at, c32), lo, hi));
        }
    } else {
        for (int q = 0; q < 4; ++q) {
            const __m512i at = _mm512_add_epi32(start, _mm512_min_epi32(_mm512_set1_epi32(q), last));
            put(_mm512_mask_i32gather_epi32(_mm512_setzero_si512(), kn, at, lab, 4));
        }
    }
    _mm512_mask_storeu_epi32(b0, kn, w0);
    if (b1 != nullptr) _mm512_mask_storeu_epi32(b1, kn, w1);
    _mm512_mask_storeu_epi32(count, kn, size);
    label_bits_rest(l, _mm512_mask_cmpgt_epi32_mask(kn, size, _mm512_set1_epi32(4)), b0, b1);
}
#else
inline constexpr int block_group = 4;  // as with AVX-512; the blocks hold half as many samples
#if defined(MLNC_BLOCK_GROUP_K_MAX)
template <class T>
inline constexpr Eigen::Index block_group_k_max = MLNC_BLOCK_GROUP_K_MAX;
#else
template <class T>
inline constexpr Eigen::Index block_group_k_max = 16;  // float: 10 before, as with AVX-512
#endif

// The sum of a packet of 4 doubles, in a fixed order.
inline double reduce_add(__m256d x) noexcept {
    const __m128d s = _mm_add_pd(_mm256_castpd256_pd128(x), _mm256_extractf128_pd(x, 1));
    return _mm_cvtsd_f64(_mm_add_sd(s, _mm_unpackhi_pd(s, s)));
}

inline constexpr int label_bits_lanes = 8;

// As label_bits_across with AVX-512 (above), for n <= 8 sets: the first four labels of each set
// picked from the sets' labels in two registers (up to 16 labels) or four (up to 32), else
// gathered.
EIGEN_ALWAYS_INLINE void label_bits_across(csr_labels l, int n, std::uint32_t* b0, std::uint32_t* b1, std::int32_t* count) noexcept {
    const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    const __m256i kn = _mm256_cmpgt_epi32(_mm256_set1_epi32(n), lane);  // all ones in the first n lanes
    const __m256i k_lo = _mm256_cvtepi32_epi64(_mm256_castsi256_si128(kn));
    const __m256i k_hi = _mm256_cvtepi32_epi64(_mm256_extracti128_si256(kn, 1));
    const auto* const off = reinterpret_cast<const long long*>(l.offsets);
    // (No pointer past off[n] is formed: the upper loads' addresses where their lanes are all masked.)
    const __m256i o_lo = _mm256_maskload_epi64(off, k_lo);
    const __m256i o_hi = _mm256_maskload_epi64(off + std::min(4, n), k_hi);
    const __m256i e_lo = _mm256_maskload_epi64(off + 1, k_lo);
    const __m256i e_hi = _mm256_maskload_epi64(off + std::min(5, n), k_hi);
    const auto narrow = [](__m256i lo, __m256i hi) {  // 8 int64 (small) as 8 int32: their low halves
        const __m256i even = _mm256_setr_epi32(0, 2, 4, 6, 0, 2, 4, 6);
        return _mm256_blend_epi32(_mm256_permutevar8x32_epi32(lo, even), _mm256_permutevar8x32_epi32(hi, even), 0xF0);
    };
    const __m256i base = _mm256_set1_epi64x(l.offsets[0]);
    // Lanes past n: start 0, size 0 (their bits are computed and not stored).
    const __m256i start = _mm256_and_si256(kn, narrow(_mm256_sub_epi64(o_lo, base), _mm256_sub_epi64(o_hi, base)));
    const __m256i size = _mm256_and_si256(kn, narrow(_mm256_sub_epi64(e_lo, o_lo), _mm256_sub_epi64(e_hi, o_hi)));
    const label_t* const lab = l.labels + l.offsets[0];
    const __m256i one = _mm256_set1_epi32(1), c32 = _mm256_set1_epi32(32);
    const __m256i last = _mm256_sub_epi32(size, one);
    __m256i w0 = _mm256_setzero_si256(), w1 = w0;
    // Shifts by 32 or more (or by a negative count) give 0, as with AVX-512.
    const auto put = [&](__m256i k) {
        w0 = _mm256_or_si256(w0, _mm256_sllv_epi32(one, k));
        w1 = _mm256_or_si256(w1, _mm256_sllv_epi32(one, _mm256_sub_epi32(k, c32)));
    };
    const Eigen::Index total = l.offsets[n] - l.offsets[0];
    if (total <= 32) {
        // The labels [8 r, 8 r + 8) of the sets, masked to `total` (no load past the array); label
        // `at` is lane at % 8 of register at / 8, picked by permutes and blends on bits 3 and 4.
        __m256i r[4];
        for (int q = 0; q < 4; ++q)
            r[q] = _mm256_maskload_epi32(reinterpret_cast<const int*>(lab + std::min<Eigen::Index>(8 * q, total)),
                                         _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(total - 8 * q)), lane));
        const __m256i bit3 = _mm256_set1_epi32(8), bit4 = _mm256_set1_epi32(16);
        for (int q = 0; q < 4; ++q) {
            const __m256i at = _mm256_add_epi32(start, _mm256_min_epi32(_mm256_set1_epi32(q), last));
            const __m256 odd = _mm256_castsi256_ps(_mm256_cmpeq_epi32(_mm256_and_si256(at, bit3), bit3));
            const auto pick = [&](__m256i a, __m256i b) {
                return _mm256_castps_si256(_mm256_blendv_ps(_mm256_castsi256_ps(_mm256_permutevar8x32_epi32(a, at)),
                                                            _mm256_castsi256_ps(_mm256_permutevar8x32_epi32(b, at)), odd));
            };
            const __m256i lo = pick(r[0], r[1]);
            if (total <= 16) {
                put(lo);
            } else {
                const __m256 high = _mm256_castsi256_ps(_mm256_cmpeq_epi32(_mm256_and_si256(at, bit4), bit4));
                put(_mm256_castps_si256(_mm256_blendv_ps(_mm256_castsi256_ps(lo), _mm256_castsi256_ps(pick(r[2], r[3])), high)));
            }
        }
    } else {
        for (int q = 0; q < 4; ++q) {
            const __m256i at = _mm256_add_epi32(start, _mm256_min_epi32(_mm256_set1_epi32(q), last));
            put(_mm256_mask_i32gather_epi32(_mm256_setzero_si256(), reinterpret_cast<const int*>(lab), at, kn, 4));
        }
    }
    _mm256_maskstore_epi32(reinterpret_cast<int*>(b0), kn, w0);
    if (b1 != nullptr) _mm256_maskstore_epi32(reinterpret_cast<int*>(b1), kn, w1);
    _mm256_maskstore_epi32(count, kn, size);
    const __m256i longer = _mm256_and_si256(kn, _mm256_cmpgt_epi32(size, _mm256_set1_epi32(4)));
    label_bits_rest(l, static_cast<unsigned>(_mm256_movemask_ps(_mm256_castsi256_ps(longer))), b0, b1);
}

template <>
struct simd_block<float> {
    using packet = __m256;
    static constexpr int L = 8;
    using lanes = __m256i;  // all ones in the lanes
    static lanes first_lanes(Eigen::Index n) noexcept {
        return _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(n)), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
    }
    static packet load_lanes(const float* p, lanes m) noexcept { return _mm256_maskload_ps(p, m); }
    static void store_lanes(float* p, lanes m, packet v) noexcept { _mm256_maskstore_ps(p, m, v); }
    // Pairs of rows interleaved by 32-bit lanes, then pairs of lanes taken from two registers,
    // then 128-bit halves (24 shuffles).
    static void transpose(packet (&r)[L]) noexcept {
        packet a[L], b[L];
        for (int i = 0; i < L; i += 2) {
            a[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);  // rows i, i + 1: entries 0 1 | 4 5
            a[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);  // 2 3 | 6 7
        }
        for (int g = 0; g < L; g += 4) {  // rows g .. g + 3: entries j, j + 4 in b[g + j]
            b[g] = _mm256_shuffle_ps(a[g], a[g + 2], 0x44);
            b[g + 1] = _mm256_shuffle_ps(a[g], a[g + 2], 0xEE);
            b[g + 2] = _mm256_shuffle_ps(a[g + 1], a[g + 3], 0x44);
            b[g + 3] = _mm256_shuffle_ps(a[g + 1], a[g + 3], 0xEE);
        }
        for (int j = 0; j < 4; ++j) {
            r[j] = _mm256_permute2f128_ps(b[j], b[4 + j], 0x20);
            r[j + 4] = _mm256_permute2f128_ps(b[j], b[4 + j], 0x31);
        }
    }
    using label_bits = __m256i;
    static label_bits make_bits(const std::uint32_t* v) noexcept {
        return _mm256_load_si256(reinterpret_cast<const __m256i*>(v));
    }
    using label_mask = __m256i;  // all ones in the lanes
    static label_mask has_label(label_bits b, Eigen::Index k) noexcept {
        const __m256i bit = _mm256_set1_epi32(static_cast<int>(1u << k));
        return _mm256_cmpeq_epi32(_mm256_and_si256(b, bit), bit);
    }
    static packet add_masked(packet acc, label_mask m, packet x) noexcept {
        return _mm256_add_ps(acc, _mm256_and_ps(_mm256_castsi256_ps(m), x));
    }
    static packet keep_masked(packet x, label_mask m) noexcept { return _mm256_and_ps(_mm256_castsi256_ps(m), x); }
    static packet counts(const std::int32_t* c) noexcept {
        return _mm256_cvtepi32_ps(_mm256_load_si256(reinterpret_cast<const __m256i*>(c)));
    }
    static packet mul_sub(packet a, packet b, packet c) noexcept { return _mm256_fmsub_ps(a, b, c); }
    static __m256d low(packet x) noexcept { return _mm256_cvtps_pd(_mm256_castps256_ps128(x)); }
    static __m256d high(packet x) noexcept { return _mm256_cvtps_pd(_mm256_extractf128_ps(x, 1)); }
    static double losses(packet m, packet log_sum, packet label_sum, bool pal_n, float* out) noexcept {
        __m256d lo = _mm256_fmsub_pd(low(m), low(log_sum), low(label_sum));
        __m256d hi = _mm256_fmsub_pd(high(m), high(log_sum), high(label_sum));
        if (pal_n) {
            lo = _mm256_div_pd(lo, low(m));
            hi = _mm256_div_pd(hi, high(m));
        }
        if (out != nullptr) {
            _mm_storeu_ps(out, _mm256_cvtpd_ps(lo));
            _mm_storeu_ps(out + 4, _mm256_cvtpd_ps(hi));
        }
        return reduce_add(_mm256_add_pd(lo, hi));
    }
};

template <>
struct simd_block<double> {
    using packet = __m256d;
    static constexpr int L = 4;
    using lanes = __m256i;  // 64-bit lanes, all ones in the lanes
    static lanes first_lanes(Eigen::Index n) noexcept {
        return _mm256_cmpgt_epi64(_mm256_set1_epi64x(n), _mm256_setr_epi64x(0, 1, 2, 3));
    }
    static packet load_lanes(const double* p, lanes m) noexcept { return _mm256_maskload_pd(p, m); }
    static void store_lanes(double* p, lanes m, packet v) noexcept { _mm256_maskstore_pd(p, m, v); }
    // Pairs of rows interleaved by lanes, then 128-bit halves (8 shuffles).
    static void transpose(packet (&r)[L]) noexcept {
        const packet a0 = _mm256_unpacklo_pd(r[0], r[1]);  // entries 0 | 2 of rows 0, 1
        const packet a1 = _mm256_unpackhi_pd(r[0], r[1]);  // 1 | 3
        const packet a2 = _mm256_unpacklo_pd(r[2], r[3]);
        const packet a3 = _mm256_unpackhi_pd(r[2], r[3]);
        r[0] = _mm256_permute2f128_pd(a0, a2, 0x20);
        r[2] = _mm256_permute2f128_pd(a0, a2, 0x31);
        r[1] = _mm256_permute2f128_pd(a1, a3, 0x20);
        r[3] = _mm256_permute2f128_pd(a1, a3, 0x31);
    }
    using label_bits = __m256i;  // 64-bit lanes
    static label_bits make_bits(const std::uint32_t* v) noexcept {
        return _mm256_cvtepu32_epi64(_mm_load_si128(reinterpret_cast<const __m128i*>(v)));
    }
    using label_mask = __m256i;  // 64-bit lanes, all ones in the lanes
    static label_mask has_label(label_bits b, Eigen::Index k) noexcept {
        const __m256i bit = _mm256_set1_epi64x(static_cast<long long>(1ull << k));
        return _mm256_cmpeq_epi64(_mm256_and_si256(b, bit), bit);
    }
    static packet add_masked(packet acc, label_mask m, packet x) noexcept {
        return _mm256_add_pd(acc, _mm256_and_pd(_mm256_castsi256_pd(m), x));
    }
    static packet keep_masked(packet x, label_mask m) noexcept { return _mm256_and_pd(_mm256_castsi256_pd(m), x); }
    static packet counts(const std::int32_t* c) noexcept {
        return _mm256_cvtepi32_pd(_mm_load_si128(reinterpret_cast<const __m128i*>(c)));
    }
    static packet mul_sub(packet a, packet b, packet c) noexcept { return _mm256_fmsub_pd(a, b, c); }
    static double losses(packet m, packet log_sum, packet label_sum, bool pal_n, double* out) noexcept {
        packet l = _mm256_fmsub_pd(m, log_sum, label_sum);
        if (pal_n) l = _mm256_div_pd(l, m);
        if (out != nullptr) _mm256_storeu_pd(out, l);
        return reduce_add(l);
    }
};
#endif

// As pal_small_block, for P consecutive blocks of L samples together (P L samples from i0), zb =
// their first logit and gb = their first gradient entry (null for no gradient; may equal zb), both
// with leading dimension K. Also returns false, having written nothing, when a label's logit lies
// further below its column's max than T can represent.
//
// A block, K x L in the columns' layout, is read as L rows of K logits, L x L at a time (the last
// tile's rows masked to its columns), and transposed in registers into K packets of one logit
// across the L samples; max, exps, sum and log then run across samples. Each set becomes the bits
// of a lane (one 32-bit word per 32 labels), so label k of the L samples is a mask: the labels
// cost no gather and no pass over K x L indicators, and each sample's labels are added in ascending order, its set's
// order. With a gradient, each exp is taken once and kept; G is formed across samples, m p - y
// (or p - y / m) by one fused multiply-subtract, and transposed back into rows by the same
// shuffles, stored masked to K. (An earlier form gathered logit k of the L samples from the
// columns and wrote G in their layout; gathers cost most on the AMD Zen 5 VM of
// docs/performance.md, and the transposed block was faster at every K there.)
//
// Each of the P blocks is computed exactly as it would be alone (the same operations on the same
// lanes, its losses added to `sum` in block order), so P changes no bit of the results. It only
// interleaves P independent chains: one block is a chain of dependent steps (loads, a max, the
// exps, a sum, a log, a division), too long for the processor to overlap with the next block.
template <int P, class T, class Labels>
bool pal_small_block_transposed(const T* zb, Eigen::Index K, const Labels& S, pal_variant variant, T* per_sample,
                                T* gb, double scale, Eigen::Index i0, double& sum) {
    namespace ei = Eigen::internal;
    using A = simd_block<T>;
    using packet = typename A::packet;
    using lanes = typename A::lanes;
    constexpr int L = A::L;
    static_assert(L == column_sweeps<T>::L, "the block's packet is Eigen's packet of T");
    static_assert(P >= 1);
    static_assert(32 % L == 0, "a tile's labels lie in one word of bits");
    const bool want_grad = gb != nullptr;
    const Eigen::Index KL = K * L;
    const Eigen::Index tiles = (K + L - 1) / L;
    const Eigen::Index KP = tiles * L;  // K padded to whole tiles: block p's logit k at zt + (p KP + k) L
    // The last tile's rows: its columns' lanes (masked loads and stores); the others whole (a
    // masked store cost more than a plain one on the AMD Zen 5 VM of docs/performance.md, in AVX2).
    const lanes last = A::first_lanes(K - (tiles - 1) * L);
    // bits[w][j]: word w of sample j's set.
    const Eigen::Index words = (K + 31) / 32;
    alignas(64) std::uint32_t bits[block_label_words<T>][P * L];
    alignas(64) std::int32_t count[P * L];
    // From the labels' arrays (label_sets and windows of one), across the sets (label_bits_across).
    // Else set by set: a set's first `unrolled` labels without a branch on its size (a loop over
    // the labels of sets of random sizes mispredicted about once a sample); a label repeated past
    // a set's size sets its bit again. Longer sets loop over the rest.
    constexpr std::int32_t unrolled = 4;
    if (const csr_labels l = csr_of(S, i0); l.offsets != nullptr) {
        for (int j = 0; j < P * L; j += label_bits_lanes)
            label_bits_across({l.offsets + j, l.labels}, std::min(label_bits_lanes, P * L - j), bits[0] + j,
                              words > 1 ? bits[words - 1] + j : nullptr, count + j);
    } else if (words == 1) {
        for (int j = 0; j < P * L; ++j) {
            const auto set = S[i0 + j];
            const label_t* const l = set.data();
            const auto m = static_cast<std::int32_t>(set.size());  // >= 1
            std::uint32_t b = 0;
            for (std::int32_t q = 0; q < unrolled; ++q) b |= 1u << l[std::min(q, m - 1)];
            for (std::int32_t q = unrolled; q < m; ++q) b |= 1u << l[q];
            bits[0][j] = b;
            count[j] = m;
        }
    } else {
        for (Eigen::Index w = 0; w < words; ++w) std::fill(bits[w], bits[w] + P * L, 0u);
        for (int j = 0; j < P * L; ++j) {
            const auto set = S[i0 + j];
            const label_t* const l = set.data();
            const auto m = static_cast<std::int32_t>(set.size());
            for (std::int32_t q = 0; q < unrolled; ++q) {
                const label_t k = l[std::min(q, m - 1)];
                bits[k >> 5][j] |= 1u << (k & 31);
            }
            for (std::int32_t q = unrolled; q < m; ++q) bits[l[q] >> 5][j] |= 1u << (l[q] & 31);
            count[j] = m;
        }
    }
    constexpr Eigen::Index kp_max = (block_k_max<T> + L - 1) / L * L;  // KP's largest
    alignas(64) T zt[P * kp_max * L];
    // max(-Inf, x) = x for every x but NaN, which the check finds: NaN or an infinity in a logit
    // makes x * 0 NaN, and so the block's check.
    packet vmax[P], vbad[P];
    for (int p = 0; p < P; ++p) {
        vmax[p] = ei::pset1<packet>(-std::numeric_limits<T>::infinity());
        vbad[p] = ei::pset1<packet>(T(0));
        for (Eigen::Index c = 0; c < tiles; ++c) {
            packet r[L];
            const T* const src = zb + p * KL + c * L;
            if (c + 1 < tiles)
                for (int t = 0; t < L; ++t) r[t] = ei::ploadu<packet>(src + t * K);
            else
                for (int t = 0; t < L; ++t) r[t] = A::load_lanes(src + t * K, last);
            A::transpose(r);
            for (int j = 0; j < L; ++j) ei::pstore(zt + (p * KP + c * L + j) * L, r[j]);
            const int used = static_cast<int>(std::min<Eigen::Index>(L, K - c * L));
            for (int j = 0; j < used; ++j) {
                vmax[p] = ei::pmax(vmax[p], r[j]);
                vbad[p] = ei::pmadd(r[j], ei::pzero(r[j]), vbad[p]);
            }
        }
    }
    packet bad = vbad[0];
    for (int p = 1; p < P; ++p) bad = ei::padd(bad, vbad[p]);
    if (!(ei::predux(bad) == T(0))) return false;
    const packet zero = ei::pzero(vmax[0]);
    typename A::label_bits vbits[P][block_label_words<T>] = {};  // words past `words` unused
    packet vm[P];
    for (int p = 0; p < P; ++p) {
        for (Eigen::Index w = 0; w < words; ++w) vbits[p][w] = A::make_bits(bits[w] + p * L);
        vm[p] = A::counts(count + p * L);
    }
    // sum over the labels of z_k - max (<= 0), only in the label lanes: 0 (-Inf) would be NaN where
    // a logit of another class lies more than the largest T below the max.
    packet vlab[P];
    for (int p = 0; p < P; ++p) vlab[p] = zero;
    // By words (an index into vbits per label would keep it in memory).
    for (Eigen::Index w = 0; w < words; ++w)
        for (Eigen::Index k = 32 * w; k < std::min(K, 32 * (w + 1)); ++k)
            for (int p = 0; p < P; ++p)
                vlab[p] = A::add_masked(vlab[p], A::has_label(vbits[p][w], k & 31),
                                        ei::psub(ei::pload<packet>(zt + (p * KP + k) * L), vmax[p]));
    // A label's z_k - max beyond the largest T (logits of opposite signs near the overflow): the
    // columns one at a time take their differences in double (nothing is written yet). vlab <= 0,
    // so a sum over the blocks is finite only when each is.
    packet lab = vlab[0];
    for (int p = 1; p < P; ++p) lab = ei::padd(lab, vlab[p]);
    if (!std::isfinite(ei::predux(lab))) return false;
    // sum_k exp(z_k - max) across samples; with a gradient, the exps flushed as G's and kept in zt.
    packet vsum[P];
    for (int p = 0; p < P; ++p) vsum[p] = zero;
    if (want_grad) {
        for (Eigen::Index k = 0; k < K; ++k)
            for (int p = 0; p < P; ++p) {
                T* const x = zt + (p * KP + k) * L;
                const packet e = pexp_nonpositive<packet, true>(ei::psub(ei::pload<packet>(x), vmax[p]));
                ei::pstore(x, e);
                vsum[p] = ei::padd(vsum[p], e);
            }
    } else {
        for (Eigen::Index k = 0; k < K; ++k)
            for (int p = 0; p < P; ++p)
                vsum[p] = ei::padd(vsum[p], pexp_nonpositive<packet, false>(
                                                ei::psub(ei::pload<packet>(zt + (p * KP + k) * L), vmax[p])));
    }
    // sum in [1, K]: its log to the precision of T. Loss = m log(sum) - sum_{k in S} (z_k - max),
    // two non-negative terms, in double; PAL-N divides by m.
    packet vlog[P];
    for (int p = 0; p < P; ++p) vlog[p] = plog_at_least_one(vsum[p]);
    for (int p = 0; p < P; ++p)
        sum += A::losses(vm[p], vlog[p], vlab[p], variant == pal_variant::pal_n,
                         per_sample == nullptr ? nullptr : per_sample + i0 + p * L);
    if (want_grad) {
        // PAL: g = (m p - y) scale; PAL-N: g = (p - y / m) scale; p = e / sum.
        const packet vscale = ei::pset1<packet>(static_cast<T>(scale));
        const packet one = ei::pset1<packet>(T(1));
        for (int p = 0; p < P; ++p) {
            const packet vp = ei::pdiv(ei::pmul(variant == pal_variant::pal ? vm[p] : one, vscale), vsum[p]);
            const packet vy = variant == pal_variant::pal ? vscale : ei::pdiv(vscale, vm[p]);
            for (Eigen::Index c = 0; c < tiles; ++c) {
                packet r[L];
                const int used = static_cast<int>(std::min<Eigen::Index>(L, K - c * L));
                const auto vb = vbits[p][c * L / 32];  // a tile lies in one word (L divides 32)
                for (int j = 0; j < L; ++j) {
                    if (j < used) {
                        const Eigen::Index k = c * L + j;
                        r[j] = A::mul_sub(ei::pload<packet>(zt + (p * KP + k) * L), vp,
                                          A::keep_masked(vy, A::has_label(vb, k & 31)));
                    } else {
                        r[j] = zero;
                    }
                }
                A::transpose(r);
                T* const dst = gb + p * KL + c * L;
                if (c + 1 < tiles)
                    for (int t = 0; t < L; ++t) ei::pstoreu(dst + t * K, r[t]);
                else
                    for (int t = 0; t < L; ++t) A::store_lanes(dst + t * K, last, r[t]);
            }
        }
    }
    return true;
}
#endif

// The largest K whose columns may go by blocks of L samples (small_k_max strided, block_k_max
// contiguous): pieces of columns hold whole groups of blocks up to it (piece_columns).
#if defined(MLNC_DETAIL_SIMD_BLOCK)
template <class T>
inline constexpr Eigen::Index blocked_k_max = std::max(small_k_max, block_k_max<T>);
#else
template <class T>
inline constexpr Eigen::Index blocked_k_max = small_k_max;
#endif

// The losses of the columns one at a time wait for their logs in batches of this many, which one
// packet log takes together (a scalar log per column was 15% of the kernel at K = 100 on AVX2).
inline constexpr int log_batch = 8;

// The loss of a column: sum_{k in S} (max - z_k) + m log(sum_exp), two non-negative terms (no
// cancellation), divided by m for PAL-N.
inline double column_loss(double label_term, double m, double log_sum, pal_variant variant) noexcept {
    const double loss = label_term + m * log_sum;
    return variant == pal_variant::pal_n ? loss / m : loss;
}

// out[j] = log(x[j]) for j < log_batch, x[j] in [1, 2^1000) (sums of exps, padded with 1).
inline void log_batch_of(const double* x, double* out) noexcept {
    namespace ei = Eigen::internal;
    using packet = typename ei::packet_traits<double>::type;
    constexpr int L = ei::packet_traits<double>::size;
    if constexpr (L > 1 && ei::packet_traits<double>::HasLog && log_batch % L == 0) {
        for (int j = 0; j < log_batch; j += L) ei::pstoreu(out + j, plog_at_least_one(ei::ploadu<packet>(x + j)));
    } else {
        for (int j = 0; j < log_batch; ++j) out[j] = std::log(x[j]);
    }
}

#if defined(EIGEN_VECTORIZE_AVX512)
#define MLNC_DETAIL_PANELS 1
// Panels (AVX-512, float): past the blocks' K and up to panel_k_max (256: a column's exps summed
// in one packet), columns whose gradient, if any, goes through the cache run L = 16 at a time,
// each still by packets down its column, but with the steps that wait on a whole column taken
// for the 16 together: the lanes' max and the lanes' sum of each column reduced by one tree of
// shuffles for all 16 (simd_block<float>::reduce_lanes; one column at a time, each is a chain of
// 4 shuffles that the column's next sweep waits for), and their logs by packets. A column's bits
// do not depend on the other columns of its panel (the tree's lanes are independent), nor so on
// where pieces of columns end. On the AMD Zen 5 VM of docs/performance.md this was faster at
// every K from 49 to 256 with Z in cache; out of it (25 MB and more), in its first form, from 6%
// faster to 7% slower. A form that also took double and AVX2 was not faster there (faster or slower
// by K and size in double, slower with AVX2), so neither takes panels. MLNC_PANEL_K_MAX sets the
// limit, for measurement (0: no panels).
#if defined(MLNC_PANEL_K_MAX)
inline constexpr Eigen::Index panel_float_k_max = MLNC_PANEL_K_MAX;
#else
inline constexpr Eigen::Index panel_float_k_max = column_sweeps<float>::block;
#endif
static_assert(panel_float_k_max <= column_sweeps<float>::block, "a panel's column sums its exps in one packet");
template <class T>
inline constexpr Eigen::Index panel_k_max = std::is_same_v<T, float> ? panel_float_k_max : 0;

// The lanes' maxima of a panel's columns (acc[slot(c)] for column c; the unused slots copy column
// 0's) and the sum of their x - x (NaN when a logit is not finite).
template <class T>
struct panel_maxima {
    using packet = typename simd_block<T>::packet;
    packet acc[simd_block<T>::L];
    packet bad;
};

template <class T>
void take_panel_column_max(const T* zc, Eigen::Index K, int c, panel_maxima<T>& pm) noexcept {
    auto vbad = Eigen::internal::pset1<typename panel_maxima<T>::packet>(T(0));  // a chain per column, added once
    pm.acc[simd_block<T>::slot(c)] = column_sweeps<T>::max_packet(zc, K, vbad);
    pm.bad = Eigen::internal::padd(pm.bad, vbad);
}

// The columns [i0, i0 + n), n <= L, of Z (unit inner stride; G's too, or no G), whose maxima `cur`
// holds: adds their losses to `sum` in column order and writes their gradient (exps stored to G's
// column, then scaled there: G may be Z); returns false, having written nothing, when one of them
// holds a non-finite logit (the caller then runs them one at a time, which reports it). The next
// panel's maxima (next_n columns from i0 + n, into `next`) are taken as this one's exps are, so
// that the processor overlaps the one's loads and maxima with the other's arithmetic; the lines of
// the panel after (columns before `end`) are prefetched into L1.
template <class T, class Labels>
bool pal_panel(strided_view<const T> z, const Labels& S, pal_variant variant, T* per_sample, strided_view<T> g,
               double scale, Eigen::Index i0, Eigen::Index n, panel_maxima<T>& cur, Eigen::Index next_n,
               panel_maxima<T>& next, Eigen::Index end, double& sum) {
    namespace ei = Eigen::internal;
    using sweeps = column_sweeps<T>;
    using A = simd_block<T>;
    using packet = typename A::packet;
    constexpr int L = A::L;
    const Eigen::Index K = z.rows;
    const bool want_grad = g.data != nullptr;
    const auto column = [&](Eigen::Index c) { return z.data + (i0 + c) * z.outer; };
    if (!(ei::predux(cur.bad) == T(0))) return false;
    for (int c = static_cast<int>(n); c < L; ++c) cur.acc[A::slot(c)] = cur.acc[A::slot(0)];
    alignas(64) T mx[L];
    ei::pstore(mx, A::reduce_lanes(cur.acc, [](const packet& a, const packet& b) { return ei::pmax(a, b); }));
    // sum over the labels of max - z_k in double, taken before an in-place gradient overwrites the
    // logits.
    double label[L];
    for (int c = 0; c < n; ++c) {
        const T* const zc = column(c);
        double t = 0.0;
        for (const label_t k : S[i0 + c]) t += static_cast<double>(mx[c]) - static_cast<double>(zc[k]);
        label[c] = t;
    }
    next.bad = ei::pset1<packet>(T(0));
    packet acc[L];
    for (int c = 0; c < n; ++c) {
        const Eigen::Index after = i0 + n + L + c;  // the panel after the next
        const T* const pf = after < end ? z.data + after * z.outer : nullptr;
        const packet vm = ei::pset1<packet>(mx[c]);
        acc[A::slot(c)] = want_grad
                              ? sweeps::template exp_packet_sum<true, true>(column(c), K, vm, g.data + (i0 + c) * g.outer, pf)
                              : sweeps::template exp_packet_sum<false, false>(column(c), K, vm, nullptr, pf);
        if (c < next_n) take_panel_column_max(column(n + c), K, c, next);
    }
    for (int c = static_cast<int>(n); c < L; ++c) acc[A::slot(c)] = acc[A::slot(0)];
    alignas(64) T se[L];
    ei::pstore(se, A::reduce_lanes(acc, [](const packet& a, const packet& b) { return ei::padd(a, b); }));
    // sum_exp in [1, K]; its log in double, log_batch at a time (unused entries 1).
    constexpr int LB = L > log_batch ? L : log_batch;
    static_assert(LB % log_batch == 0);
    double sums[LB], logs[LB];
    for (int c = 0; c < LB; ++c) sums[c] = c < n ? static_cast<double>(se[c]) : 1.0;
    for (int c = 0; c < LB; c += log_batch) log_batch_of(sums + c, logs + c);
    for (int c = 0; c < n; ++c) {
        const Eigen::Index i = i0 + c;
        const auto set = S[i];
        const auto m = static_cast<double>(set.size());
        const double loss = column_loss(label[c], m, logs[c], variant);
        sum += loss;
        if (per_sample != nullptr) per_sample[i] = static_cast<T>(loss);
        if (want_grad) {
            // PAL:   g = (m p - y) scale      PAL-N: g = (p - y / m) scale
            T* const e = g.data + i * g.outer;
            sweeps::scale(e, K, static_cast<T>((variant == pal_variant::pal ? m : 1.0) * scale / sums[c]));
            const auto y_value = static_cast<T>((variant == pal_variant::pal ? 1.0 : 1.0 / m) * scale);
            for (const label_t k : set) e[k] -= y_value;
        }
    }
    return true;
}
#endif

// Columns up to this size prefetch their successor into L1 (exp_sum).
inline constexpr Eigen::Index prefetch_max_bytes = 16 * 1024;

// A gradient written out of place is streamed to memory (no read for ownership of its lines, and
// none kept in cache) when the whole of it exceeds stream_l2_multiple times L2 as Eigen knows it
// (Eigen::l2CacheSize()): a size that would have left the caches near the core before its reader
// came to it. On the AVX-512 VM of docs/performance.md ("Out of place, G streamed"; L2 2 MB), the
// bench StoreThenRead (a write, then a read of what was written) was slower streamed at 8 MB,
// even at 16 MB and faster from 32 MB, while the kernel out of place with 16.4 MB of G ran
// 1.2x faster streamed: hence 6 x L2.
// Only columns longer than stream_min_column_bytes are streamed: a column's first and last cache
// lines, shared with its neighbours, take ordinary stores, and at K = 33 .. 256 (float) the
// streamed form was up to 1.35x slower (docs/performance.md). MLNC_STREAM_GRADIENT=0 turns
// streaming off, for measurement.
inline constexpr double stream_l2_multiple = 6;
inline constexpr Eigen::Index stream_min_column_bytes = 2048;
#if defined(MLNC_STREAM_GRADIENT) && MLNC_STREAM_GRADIENT == 0
inline constexpr bool stream_gradient_enabled = false;
#else
inline constexpr bool stream_gradient_enabled = true;
#endif

// How the gradient's columns are written: not at all (the loss alone); through the cache (the exps
// stored into G's column, then scaled there: in place, with a stride via a scratch column, or out
// of place below the streaming size); streamed from a K-entry scratch column holding the exps
// (column_sweeps::scale_stream); or streamed from the exps taken again from the logits
// (exp_scale_stream) for long columns where the scratch column, this one and the next would not
// fit in L2 together: taking the exps again then costs less than giving up the L2 prefetch of the
// next column (prefetch_into_l2), or than the scratch column's trips past L2.
enum class gradient_write { none, cached, streamed_from_scratch, streamed_recomputed };

template <class T>
gradient_write gradient_write_of(strided_view<const T> z, strided_view<T> g) {
    if (g.data == nullptr) return gradient_write::none;
    const double column_bytes = static_cast<double>(z.rows) * static_cast<double>(sizeof(T));
    // A G not aligned to its scalar (a Map over bytes) could never reach a packet boundary.
    if (!stream_gradient_enabled || g.data == z.data || g.inner != 1 || z.inner != 1 ||
        reinterpret_cast<std::uintptr_t>(g.data) % sizeof(T) != 0 ||
        column_bytes <= static_cast<double>(stream_min_column_bytes) ||
        column_bytes * static_cast<double>(g.cols) <= stream_l2_multiple * static_cast<double>(Eigen::l2CacheSize()))
        return gradient_write::cached;
    return column_bytes > static_cast<double>(prefetch_max_bytes) &&
                   3 * column_bytes > static_cast<double>(Eigen::l2CacheSize())
               ? gradient_write::streamed_recomputed
               : gradient_write::streamed_from_scratch;
}

// Longer columns prefetch their successor into L2 while the columns live at once (this one, the
// next, and the gradient's or its scratch column unless it is written in place, streamed from
// exps taken again, or not at all) fit in L2 as Eigen knows it (Eigen::l2CacheSize(): by cpuid,
// or Eigen::setCpuCacheSizes): from the first sweep of a column on, the exps and the scaling of
// the column before then overlap the memory's latency.
// Past that, the prefetched lines would evict the column still being swept, and the columns go
// unprefetched; so do columns read through a scratch column (z.inner != 1), and those whose
// gradient is written with a stride (g.inner != 1: a cache line of G per entry stays live).
// MLNC_PREFETCH_L2=0 turns this off, for measurement (docs/performance.md, the bench LargeK*).
#if defined(MLNC_PREFETCH_L2) && MLNC_PREFETCH_L2 == 0
inline constexpr bool l2_prefetch_enabled = false;
#else
inline constexpr bool l2_prefetch_enabled = true;
#endif

template <class T>
bool prefetch_into_l2(strided_view<const T> z, strided_view<T> g) {
    if (!l2_prefetch_enabled || z.inner != 1 || (g.data != nullptr && g.inner != 1)) return false;
    const double column_bytes = static_cast<double>(z.rows) * static_cast<double>(sizeof(T));
    const int live = g.data != nullptr && g.data != z.data &&
                             gradient_write_of(z, g) != gradient_write::streamed_recomputed
                         ? 3
                         : 2;
    return column_bytes > static_cast<double>(prefetch_max_bytes) &&
           column_bytes * live <= static_cast<double>(Eigen::l2CacheSize());
}

// What a thread of the kernel keeps from one piece of columns to the next (pal_columns): its
// K-entry scratch columns, sized at first use.
template <class T>
struct column_workspace {
    std::vector<T> z_buf, scratch;
};

// The columns [begin, end) of Z, serially: see pal_columns. `after` is the column this thread
// takes next (its last column prefetches it as it would its own next one), or -1.
template <class T, class Labels>
pal_kernel_result pal_column_range(strided_view<const T> z, const Labels& S, pal_variant variant, T* per_sample,
                                   strided_view<T> g, double scale, Eigen::Index begin, Eigen::Index end,
                                   column_workspace<T>& ws, Eigen::Index after = -1) {
    using sweeps = column_sweeps<T>;
    const Eigen::Index K = z.rows;
    const bool want_grad = g.data != nullptr;
    pal_kernel_result result;
    // Columns done one at a time whose loss waits for the log of its sum (log_batch_of): their
    // index, sum of exps (1 in the unused entries), sum over the labels of max - z_k (taken before
    // an in-place gradient overwrites the logits) and m. Added to the sum in column order.
    double pend_sum[log_batch], pend_label[log_batch], pend_m[log_batch], pend_log[log_batch];
    Eigen::Index pend_col[log_batch];
    int pending = 0;
    std::fill(pend_sum, pend_sum + log_batch, 1.0);
    const auto flush = [&] {
        log_batch_of(pend_sum, pend_log);
        for (int j = 0; j < pending; ++j) {
            const double loss = column_loss(pend_label[j], pend_m[j], pend_log[j], variant);
            result.sum += loss;
            if (per_sample != nullptr) per_sample[pend_col[j]] = static_cast<T>(loss);
            pend_sum[j] = 1.0;
        }
        pending = 0;
    };
    if (z.inner != 1) ws.z_buf.resize(static_cast<std::size_t>(K));
    const gradient_write write = gradient_write_of(z, g);
    const bool via_scratch = want_grad && (g.inner != 1 || write == gradient_write::streamed_from_scratch);
    if (via_scratch) ws.scratch.resize(static_cast<std::size_t>(K));
    std::vector<T>& z_buf = ws.z_buf;
    std::vector<T>& scratch = ws.scratch;
    const bool streamed =
        write == gradient_write::streamed_from_scratch || write == gradient_write::streamed_recomputed;
    // Blocks start at multiples of L (and the pieces too), so a column goes by the same block, or
    // alone, and gives the same bits, whatever the pieces (a block gives the same bits in a group or
    // alone, and where a range ends decides only that).
    constexpr Eigen::Index L = sweeps::L;
    const bool unit = L > 1 && z.inner == 1 && (!want_grad || g.inner == 1);
#if defined(MLNC_DETAIL_SIMD_BLOCK)
    const bool contiguous = unit && K <= block_k_max<T> && z.outer == K && (!want_grad || g.outer == K);
    const bool small = contiguous || (unit && K <= small_k_max);
#else
    const bool small = unit && K <= small_k_max;
#endif
    const Eigen::Index column_bytes = K * static_cast<Eigen::Index>(sizeof(T));
    const bool next_to_l2 = prefetch_into_l2(z, g);
#if defined(MLNC_DETAIL_PANELS)
    // Every column of such a K goes by a panel (of fewer than L columns where a range ends), so it
    // gets the same bits whatever the pieces; one at a time only when its panel fails.
    const bool by_panels = unit && !small && K <= panel_k_max<T> &&
                           (write == gradient_write::none || write == gradient_write::cached);
    panel_maxima<T> maxima[2];  // this panel's (maxima[now]), the next one's (taken with this one's exps)
    int now = 0;
    bool have_maxima = false;
#endif
    Eigen::Index block_end = begin;  // columns before it were done by a block or a panel
    for (Eigen::Index i = begin; i < end; ++i) {
#if defined(MLNC_DETAIL_PANELS)
        if constexpr (panel_k_max<T> > 0) {
            if (by_panels && i >= block_end) {
                if (pending > 0) flush();  // the sum in column order
                const Eigen::Index n = std::min<Eigen::Index>(L, end - i);
                if (!have_maxima) {
                    maxima[now].bad = Eigen::internal::pset1<typename simd_block<T>::packet>(T(0));
                    for (int c = 0; c < n; ++c) take_panel_column_max(z.data + (i + c) * z.outer, K, c, maxima[now]);
                }
                const Eigen::Index next_n = std::min<Eigen::Index>(L, end - i - n);
                if (pal_panel(z, S, variant, per_sample, g, scale, i, n, maxima[now], next_n, maxima[1 - now], end,
                              result.sum)) {
                    now = 1 - now;
                    have_maxima = next_n > 0;
                    i += n - 1;
                    continue;
                }
                have_maxima = false;
                block_end = i + n;  // a non-finite logit in this panel: its columns one at a time
            }
        }
#endif
        if (small && i >= block_end && i % L == 0 && i + L <= end) {
            if (pending > 0) flush();  // the sum in column order
#if defined(MLNC_DETAIL_SIMD_BLOCK)
            bool done;
            if (contiguous) {
                // block_group blocks together where they fit (the same bits as one at a time). When a
                // group fails, its first block goes alone, and the groups resume after it: so only a
                // failing block's columns go one at a time.
                const T* const zi = z.data + i * K;
                T* const gi = want_grad ? g.data + i * K : nullptr;
                const bool grouped = K <= block_group_k_max<T> && i + block_group * L <= end;
                // The lines of this call's blocks two calls ahead are prefetched into L1 here: the
                // hardware's prefetchers did not run far enough ahead of the blocks on an AMD Zen 5
                // VM (up to 3x at double K = 32 for the gathering block there; still 1.4x at float
                // K = 32 for the transposed one, docs/performance.md). A prefetch past the end of Z
                // is ignored (its address is formed as an integer: no pointer leaves the array).
                const auto bytes = static_cast<std::uintptr_t>((grouped ? block_group : 1) * L * column_bytes);
                const std::uintptr_t ahead = reinterpret_cast<std::uintptr_t>(zi) + 2 * bytes;
                for (std::uintptr_t b = 0; b < bytes; b += 64)
                    __builtin_prefetch(reinterpret_cast<const void*>(ahead + b), 0, 3);
                if (grouped && pal_small_block_transposed<block_group>(zi, K, S, variant, per_sample, gi, scale, i,
                                                                       result.sum)) {
                    i += block_group * L - 1;
                    continue;
                }
                done = pal_small_block_transposed<1>(zi, K, S, variant, per_sample, gi, scale, i, result.sum);
            } else {
                done = pal_small_block(z, S, variant, per_sample, g, scale, i, result.sum);
            }
#else
            const bool done = pal_small_block(z, S, variant, per_sample, g, scale, i, result.sum);
#endif
            if (done) {
                i += L - 1;
                continue;
            }
            block_end = i + L;  // a non-finite logit (or an extreme one) in this block: its columns one at a time
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
            if (streamed) sweeps::stream_fence();
            return result;
        }
        const auto set = S[i];
        const auto m = static_cast<double>(set.size());
        double label_term = 0.0;
        for (const label_t k : set) label_term += static_cast<double>(mx) - static_cast<double>(zi[k]);

        T* e = !want_grad ? nullptr : via_scratch ? scratch.data() : g.data + i * g.outer;
        // sum_exp lies in [1, K]: the max contributes exp(0) = 1 and every term is in [0, 1].
        // Prefetch the next column while this one is in cache: into L1 for columns that fit there,
        // into L2 for longer ones where the live columns fit in L2 (prefetch_into_l2); none past
        // that, where the next column would evict this one's lines.
        const Eigen::Index next_col = i + 1 < end ? i + 1 : after;
        const T* next = z.inner == 1 && next_col >= 0 && (column_bytes <= prefetch_max_bytes || next_to_l2)
                            ? z.data + next_col * z.outer
                            : nullptr;
        const double sum_exp = write == gradient_write::streamed_recomputed
                                   ? sweeps::exp_sum_flushed(zi, K, mx, next, next_to_l2)
                                   : sweeps::exp_sum(zi, K, mx, e, next, next_to_l2);
        // log(sum_exp) is finite and >= 0, and label_term a sum of non-negative numbers: no
        // cancellation, and no overflow unless the loss itself exceeds the largest double (logits
        // of opposite signs near +-1.8e308 in double; never for float), when it is +Inf as it
        // should be.
        pend_sum[pending] = sum_exp;
        pend_label[pending] = label_term;
        pend_m[pending] = m;
        pend_col[pending] = i;
        if (++pending == log_batch) flush();

        if (want_grad) {
            // PAL:   g = (m p - y) scale      PAL-N: g = (p - y / m) scale
            const double p_scale = (variant == pal_variant::pal ? m : 1.0) * scale / sum_exp;
            const double y_value = (variant == pal_variant::pal ? 1.0 : 1.0 / m) * scale;
            T* const gi = g.data + i * g.outer;
            const label_t* const lab = set.data();
            if (write == gradient_write::streamed_recomputed) {
                sweeps::exp_scale_stream(zi, K, mx, static_cast<T>(p_scale), lab, lab + set.size(),
                                         static_cast<T>(y_value), gi);
            } else if (write == gradient_write::streamed_from_scratch) {
                sweeps::scale_stream(e, K, static_cast<T>(p_scale), lab, lab + set.size(), static_cast<T>(y_value),
                                     gi);
            } else {
                sweeps::scale(e, K, static_cast<T>(p_scale));
                for (const label_t k : set) e[k] -= static_cast<T>(y_value);
                if (g.inner != 1)
                    for (Eigen::Index k = 0; k < K; ++k) gi[k * g.inner] = e[k];
            }
        }
    }
    if (pending > 0) flush();
    if (streamed) sweeps::stream_fence();
    return result;
}

// Threads take the columns by pieces of about piece_logits logits (at least one column; whole
// groups of small-K blocks), claimed in order as threads come free (detail::parallel_pieces): on a
// machine that slows one core at times, the others take more pieces instead of waiting for it.
// Each piece sums its columns in column order and the pieces' sums are added in piece order. The
// pieces depend on K and N only, so the loss is the same bit for bit run to run and at every
// thread count. Where columns prefetch their successor into L2 (prefetch_into_l2), a thread
// claims its next piece when it starts one, so that the last column of a piece prefetches the
// first of the next as within a piece (pieces of 8 columns without that lost 14.0 -> 15.9 ms at
// K = 10^5 in double on one thread in one run, docs/performance.md); shorter columns need no such
// claim, which would leave a descheduled thread holding a second piece. A piece costs a call (its
// log batch) and a claim; 65536 logits make that small and still give two threads 16 pieces at
// K = 10, N = 10^5.
inline constexpr double piece_logits = 65536;

template <class T>
Eigen::Index piece_columns(Eigen::Index K) {
    constexpr Eigen::Index L = column_sweeps<T>::L;
#if defined(MLNC_DETAIL_SIMD_BLOCK)
    constexpr Eigen::Index group = L * block_group;
#else
    constexpr Eigen::Index group = L;
#endif
    const Eigen::Index grain = K <= blocked_k_max<T> ? group : 1;
    const auto c = std::max(Eigen::Index{1}, static_cast<Eigen::Index>(std::ceil(
                                                 piece_logits / static_cast<double>(std::max<Eigen::Index>(K, 1)))));
    return (c + grain - 1) / grain * grain;
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
    const Eigen::Index width = piece_columns<T>(z.rows);
    const Eigen::Index np = (N + width - 1) / width;
    // Below ~32k logits per thread the threads cost more than they save.
    const int nt = detail::team_size(threads, static_cast<double>(z.rows) * static_cast<double>(N), 32768.0,
                                     static_cast<index_t>(np));
    column_workspace<T> serial_ws;  // on the stack: a small call allocates nothing it did not need
    if (np <= 1) return pal_column_range(z, S, variant, per_sample, g, scale, 0, N, serial_ws);
    std::vector<column_workspace<T>> team_ws(nt > 1 ? static_cast<std::size_t>(nt) : 0);
    std::vector<pal_kernel_result> part(static_cast<std::size_t>(np));
    // The pieces after one holding a non-finite logit are not needed: they are skipped once it is
    // known (the outputs are then unspecified).
    std::atomic<Eigen::Index> first_bad{np};
    const auto piece = [&](int t, Eigen::Index p, Eigen::Index q) {
        if (p > first_bad.load(std::memory_order_relaxed)) return;
        pal_kernel_result& r = part[static_cast<std::size_t>(p)];
        r = pal_column_range(z, S, variant, per_sample, g, scale, p * width, std::min(N, (p + 1) * width),
                             nt > 1 ? team_ws[static_cast<std::size_t>(t)] : serial_ws,
                             q >= 0 && q < np ? q * width : -1);
        if (r.finite()) return;
        Eigen::Index seen = first_bad.load(std::memory_order_relaxed);
        while (p < seen && !first_bad.compare_exchange_weak(seen, p, std::memory_order_relaxed)) {
        }
    };
    if (nt <= 1) {
        for (Eigen::Index p = 0; p < np; ++p) piece(0, p, p + 1);
    } else {
        detail::parallel_pieces(nt, static_cast<index_t>(np), prefetch_into_l2(z, g), piece);
    }
    pal_kernel_result r;
    for (const pal_kernel_result& p : part) {
        if (!p.finite()) return p;  // the pieces are in column order: the first bad one is the first
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

// The loss of column i from its merged state: pal_column_range's formula (column_loss), its log by
// std::log here (pal_column_range takes its logs by a packet log: the two may differ in the last bit).
template <class T>
double loss_from_lse(const lse_column<T>& st, const T* label_z, std::size_t m, pal_variant variant) {
    double label_term = 0.0;
    for (std::size_t j = 0; j < m; ++j) label_term += static_cast<double>(st.max) - static_cast<double>(label_z[j]);
    return column_loss(label_term, static_cast<double>(m), std::log(st.sum), variant);
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

#undef MLNC_DETAIL_SIMD_BLOCK
