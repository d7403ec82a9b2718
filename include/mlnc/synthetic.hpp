#pragma once
// Synthetic multi-label features with neural-collapse structure plus noise:
//   h_i = C_m sum_{k in S_i} w_k + sigma g_i,   m = |S_i|,  g_i ~ N(0, I_d / d),
// W a K x d simplex ETF (etf.hpp), every m-subset S carrying n_m samples (balanced_label_sets:
// balanced within each multiplicity, imbalanced between them, as in the paper's c10-L/M/S
// settings). By default W's row norm and C_m are Theorem 1's optimum for these counts
// (optimum.hpp), i.e. the features are the UFM optimum plus noise; both can be given instead.
// The noise level is relative: sigma = noise * max_m ||C_m v_S|| (v_S = sum_{k in S} w_k), so
// noise = 0.5 puts the noise norm at half the largest prototype norm. Seeded by std::mt19937_64 with mlnc's own Box-Muller, so a
// seed gives the same data with every standard library. W depends on rotation_seed only: a training
// and a test split are two calls that differ in seed.

#include <mlnc/detail/random.hpp>
#include <mlnc/error.hpp>
#include <mlnc/etf.hpp>
#include <mlnc/labels.hpp>
#include <mlnc/optimum.hpp>
#include <mlnc/types.hpp>

#include <Eigen/Core>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <optional>
#include <string>
#include <type_traits>
#include <vector>

namespace mlnc {

struct synthetic_options {
    index_t K = 10;
    index_t d = 0;                           // feature dimension; 0 means K (d >= K - 1 is required)
    multiplicity_counts n{{1, 20}, {2, 3}};  // n_m samples for every label set of size m
    double noise = 0.3;                      // relative noise level (see above), >= 0
    std::uint64_t seed = 0;                  // the noise
    std::uint64_t rotation_seed = 1;         // the Haar rotation of W; keep it to share W between splits
    per_multiplicity<double> C;              // C_m for exactly the m with n_m > 0; empty: Theorem 1's optimum
    double w_norm = 0;                       // row norm of W; 0: Theorem 1's (or 1 when C is given)
    penalties lambdas{5e-3, 5e-3, 1e-2};     // the penalties of the optimum used by default
    index_t max_samples = 10000000;          // refuse larger data sets
};

// The paper's CIFAR-10 settings c10-L/M/S differ in how many multiplicity-2 samples there are
// next to the single-label ones; these presets keep that shape (K = 10, 20 samples per label,
// 8 / 3 / 1 per pair, so multiplicity 2 is 64% / 40% / 18% of the samples). The counts are
// mlnc's, not the paper's.
enum class synthetic_imbalance { large, medium, small };

inline synthetic_options synthetic_preset(synthetic_imbalance level, double noise = 0.3, std::uint64_t seed = 0) {
    synthetic_options o;
    o.K = 10;
    o.n = {{1, 20}, {2, level == synthetic_imbalance::large ? 8 : level == synthetic_imbalance::medium ? 3 : 1}};
    o.noise = noise;
    o.seed = seed;
    return o;
}

struct synthetic_data {
    matrix<double> H;            // d x N features
    label_sets S;                // balanced_label_sets(K, n): by multiplicity, then lexicographic, n_m times each
    matrix<double> W;            // K x d simplex ETF
    per_multiplicity<double> C;  // C_m for the m with n_m > 0
};

template <class Real = double>  // a template only so that it is compiled where it is used
synthetic_data make_synthetic(const synthetic_options& o) {
    static_assert(std::is_same_v<Real, double>, "mlnc: synthetic data are generated in double");
    const index_t K = o.K;
    detail::require(K >= 2, "K", "must be at least 2, got " + std::to_string(K));
    const index_t d = o.d == 0 ? K : o.d;
    detail::require(d >= K - 1, "d", "must be at least K - 1 = " + std::to_string(K - 1) + ", got " + std::to_string(d));
    detail::require(std::isfinite(o.noise) && o.noise >= 0, "noise", "must be finite and >= 0");

    synthetic_data out;
    // First: it validates n and bounds the size before the optimum is solved for it.
    out.S = balanced_label_sets(K, o.n, o.max_samples);
    double w_norm = o.w_norm;
    if (o.C.empty()) {
        const optimum_result opt = global_optimum(K, o.n, o.lambdas);
        detail::require(opt.status() == optimum_status::success, "lambdas", "the closed-form optimum did not converge");
        detail::require(!opt->trivial, "lambdas",
                        "the optimum for these counts and penalties is W = H = 0; lower the penalties");
        out.C = opt->C;
        if (w_norm == 0) w_norm = opt->w_norm;
    } else {
        std::vector<index_t> present;
        for (const auto& [m, count] : o.n)
            if (count > 0) present.push_back(m);
        detail::require(o.C.multiplicities() == present, "C",
                        "needs exactly the multiplicities with n_m > 0 " + detail::multiplicity_list(present) +
                            ", got " + detail::multiplicity_list(o.C.multiplicities()));
        detail::require(detail::all_finite(o.C), "C", "contains NaN or Inf");
        out.C = o.C;
        if (w_norm == 0) w_norm = 1;
    }
    detail::require(std::isfinite(w_norm) && w_norm > 0, "w_norm", "must be finite and > 0");
    out.W = simplex_etf<double>(K, d, w_norm, o.rotation_seed);

    double largest = 0;  // max_m ||C_m v_S||, with ||v_S||^2 = m (K - m) w^2 / (K - 1) for the ETF
    for (const auto& [m, c] : out.C) {
        const double km = static_cast<double>(K), mm = static_cast<double>(m);
        largest = std::max(largest, std::abs(c) * w_norm * std::sqrt(mm * (km - mm) / (km - 1)));
    }

    const index_t N = out.S.size();
    const double sigma = o.noise * largest / std::sqrt(static_cast<double>(d));
    detail::gaussian_stream gauss(o.seed);
    out.H.resize(d, N);
    for (index_t j = 0; j < out.H.size(); ++j) out.H.data()[j] = sigma * gauss();
    for (index_t i = 0; i < N; ++i) {
        const double c = out.C.at(out.S.multiplicity(i));
        for (const label_t k : out.S[i]) out.H.col(i) += c * out.W.row(k).transpose();
    }
    return out;
}

}  // namespace mlnc

// mlnc::precompiled: these instances are compiled once, into the library, and only declared here.
#if MLNC_PRECOMPILED
#if defined(MLNC_INSTANTIATE_SYNTHETIC)
#define MLNC_INSTANCE template
#else
#define MLNC_INSTANCE extern template
#endif
namespace mlnc {
MLNC_INSTANCE synthetic_data make_synthetic<double>(const synthetic_options&);
}  // namespace mlnc
#undef MLNC_INSTANCE
#endif
