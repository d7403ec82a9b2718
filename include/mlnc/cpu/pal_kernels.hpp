#pragma once
// CPU kernel of the PAL-CE / PAL-N loss at the logits level: one pass over the columns of Z,
// each column read once from memory (max, exp, sum and gradient stay in cache).
//
// The kernel throws nothing: a non-finite logit is reported in its result (the first one in
// column order, at its true position even when the gradient overwrites Z), and the front ends
// decide whether that is bad input (a Z the caller gave) or a numerical event (logits that
// overflowed inside the objective).

#include <mlnc/labels.hpp>
#include <mlnc/types.hpp>

#include <Eigen/Core>

#include <cmath>
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

template <class T>
Eigen::Index first_nan(const T* p, Eigen::Index n) noexcept {
    Eigen::Index k = 0;
    while (k + 1 < n && !std::isnan(p[k])) ++k;
    return k;
}

// For each column i of Z (K x N):
//   per_sample[i] (if not null) = loss of sample i,
//   G(:, i) (if g.data is not null) = d(sum of losses)/dz_i * scale (1/N for a mean over N samples;
//   the same 1/N for a minibatch of them, so that batch gradients add up to the full one).
// G may alias Z (same data and strides): each column is read completely before it is written.
// Columns with a non-unit inner stride go through a K-entry scratch column (no K x N copy).
// Stops at the first column holding a non-finite logit and reports it. Throws nothing, except
// std::bad_alloc when its scratch columns (K entries each) cannot be allocated.
// S is a label_sets or a sample_subset: sample i's labels are S[i].
template <class T, class Labels>
pal_kernel_result pal_columns(strided_view<const T> z, const Labels& S, pal_variant variant, T* per_sample,
                              strided_view<T> g, double scale) {
    using col_map = Eigen::Map<const Eigen::Array<T, Eigen::Dynamic, 1>>;
    using out_map = Eigen::Map<Eigen::Array<T, Eigen::Dynamic, 1>>;
    const Eigen::Index K = z.rows, N = z.cols;
    const bool want_grad = g.data != nullptr;
    pal_kernel_result result;
    // Logits of the sample's labels, saved before an in-place gradient overwrites them.
    std::vector<T> z_in;
    std::vector<T> z_buf(z.inner != 1 ? static_cast<std::size_t>(K) : 0);
    std::vector<T> scratch(!want_grad || g.inner != 1 ? static_cast<std::size_t>(K) : 0);
    for (Eigen::Index i = 0; i < N; ++i) {
        const T* zi = z.data + i * z.outer;
        if (z.inner != 1) {
            for (Eigen::Index k = 0; k < K; ++k) z_buf[static_cast<std::size_t>(k)] = zi[k * z.inner];
            zi = z_buf.data();
        }
        const col_map zc(zi, K);
        const auto set = S[i];
        const auto m = static_cast<double>(set.size());
        z_in.resize(set.size());
        for (std::size_t j = 0; j < set.size(); ++j) z_in[j] = zi[set[j]];

        // With PropagateNaN a NaN anywhere makes the max NaN, and +-Inf shows in the max or the
        // min (the default PropagateFast may drop both a NaN and an Inf of one column), so every
        // non-finite column is found, and its first bad entry located, before anything is written.
        const T mx = zc.template maxCoeff<Eigen::PropagateNaN>();
        const T mn = zc.template minCoeff<Eigen::PropagateNaN>();
        if (!std::isfinite(mx) || !std::isfinite(mn)) {
            result.bad_row = first_non_finite(zi, K);
            result.bad_col = i;
            return result;
        }
        // exp(z - max) goes to the gradient column, or to a scratch column, in T (vectorised),
        // and is summed in double.
        T* e = want_grad && g.inner == 1 ? g.data + i * g.outer : scratch.data();
        out_map ec(e, K);
        ec = (zc - mx).exp();
        const double sum_exp = ec.template cast<double>().sum();
        // Defensive: unreachable with finite max and min (each term lies in [0, 1], the sum in
        // [1, K]). Should it happen, exp(z - max) is NaN exactly where z is.
        if (!std::isfinite(sum_exp)) {
            result.bad_row = first_nan(e, K);
            result.bad_col = i;
            return result;
        }
        // sum_exp >= 1 (the max contributes exp(0)), so its log is finite and >= 0, and every
        // term (mx - z_k) + log(sum_exp) is a non-negative number: no cancellation, and no
        // overflow unless the loss itself exceeds the largest double (logits of opposite signs
        // near +-1.8e308 in double; never for float), when it is +Inf as it should be.
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
            ec *= static_cast<T>(p_scale);
            for (const label_t k : set) e[k] -= static_cast<T>(y_value);
            if (g.inner != 1) {
                T* gi = g.data + i * g.outer;
                for (Eigen::Index k = 0; k < K; ++k) gi[k * g.inner] = e[k];
            }
        }
    }
    return result;
}

}  // namespace cpu_kernels
}  // namespace mlnc
