#pragma once
// CPU kernel of the PAL-CE / PAL-N loss at the logits level: one pass over the columns of Z,
// each column read once from memory (max, exp, sum and gradient stay in cache).

#include <mlnc/error.hpp>
#include <mlnc/labels.hpp>

#include <Eigen/Core>

#include <cmath>
#include <string>
#include <vector>

namespace mlnc {

enum class pal_variant {
    pal,    // L = sum_{k in S} -log softmax(z)_k
    pal_n,  // the same divided by |S| (what the published code trains with)
};

namespace cpu_kernels {

template <class Col>
[[noreturn]] void throw_non_finite(const Col& zc, Eigen::Index i) {
    Eigen::Index k = 0;
    while (k + 1 < zc.size() && std::isfinite(zc[k])) ++k;
    throw error("Z: non-finite logit at (" + std::to_string(k) + ", " + std::to_string(i) + ")");
}

// Z is K x N with leading dimension ldz. For each column i:
//   per_sample[i] (if not null) = loss of sample i,
//   G(:, i) (if not null, leading dimension ldg) = d(mean loss)/dz_i.
// G may alias Z (ldg == ldz, g == z): each column is read completely before it is written.
// Returns the sum of the per-sample losses, accumulated in double.
template <class T>
double pal_columns(const T* z, Eigen::Index ldz, Eigen::Index K, Eigen::Index N, const label_sets& S,
                   pal_variant variant, T* per_sample, T* g, Eigen::Index ldg) {
    using col_map = Eigen::Map<const Eigen::Array<T, Eigen::Dynamic, 1>>;
    using out_map = Eigen::Map<Eigen::Array<T, Eigen::Dynamic, 1>>;
    const double inv_n = 1.0 / static_cast<double>(N);
    double total = 0.0;
    // Logits of the sample's labels, saved before an in-place gradient overwrites them.
    std::vector<T> z_in;
    std::vector<T> scratch(g != nullptr ? 0 : static_cast<std::size_t>(K));
    for (Eigen::Index i = 0; i < N; ++i) {
        const T* zi = z + i * ldz;
        const col_map zc(zi, K);
        const auto set = S[i];
        const auto m = static_cast<double>(set.size());
        z_in.resize(set.size());
        for (std::size_t j = 0; j < set.size(); ++j) z_in[j] = zi[set[j]];

        const T mx = zc.maxCoeff();
        const T mn = zc.minCoeff();
        // exp(z - max) goes to the gradient column, or to a scratch column, in T (vectorised),
        // and is summed in double.
        out_map ec(g != nullptr ? g + i * ldg : scratch.data(), K);
        ec = (zc - mx).exp();
        const double sum_exp = ec.template cast<double>().sum();
        // A NaN anywhere makes sum_exp NaN and +-Inf shows in the max or the min, so finiteness
        // is checked without a separate pass over the column.
        if (!std::isfinite(mx) || !std::isfinite(mn) || !std::isfinite(sum_exp)) throw_non_finite(zc, i);
        // sum_exp >= 1 (the max contributes exp(0)), so its log is finite and >= 0, and every
        // term (mx - z_k) + log(sum_exp) is a non-negative number: no cancellation, no overflow
        // for finite logits of any magnitude the type holds.
        const double log_sum = std::log(sum_exp);
        double loss = 0.0;
        for (const T zk : z_in) loss += (static_cast<double>(mx) - static_cast<double>(zk)) + log_sum;
        if (variant == pal_variant::pal_n) loss /= m;
        total += loss;
        if (per_sample != nullptr) per_sample[i] = static_cast<T>(loss);

        if (g != nullptr) {
            auto& gc = ec;
            // PAL:   g = (m p - y) / N      PAL-N: g = (p - y / m) / N
            const double p_scale = (variant == pal_variant::pal ? m : 1.0) * inv_n / sum_exp;
            const double y_value = (variant == pal_variant::pal ? 1.0 : 1.0 / m) * inv_n;
            gc *= static_cast<T>(p_scale);
            for (const label_t k : set) gc[k] -= static_cast<T>(y_value);
        }
    }
    return total;
}

}  // namespace cpu_kernels
}  // namespace mlnc
