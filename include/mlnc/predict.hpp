#pragma once
// Multi-label predictors on (frozen) last-layer features, docs/predict.md:
//  - onn_predictor:   the nearest training label-set mean (one nearest neighbour over the means of
//                     every label set present in training, all multiplicities);
//  - tagwise_decoder: the nearest prototype p_S = C_m sum_{k in S} w_k over all S with |S| = m,
//                     m a key of C, decoded exactly for a simplex-ETF W in O(K d + K + M d) per
//                     sample, with a brute-force reference for small K;
//  - ova_classifier:  K independent logistic regressions (binary relevance), trained by L-BFGS.
// Features are d x N (column i = sample i) and W is K x d, float or double (any Eigen matrix, Map,
// Block or expression); every computation is in double.
// Each predictor takes a backend value as its optional first constructor argument (omitted:
// cpu{}); class template argument deduction gives the backend type, e.g.
//   mlnc::onn_predictor p(H, S);              // onn_predictor<cpu>
//   mlnc::onn_predictor q(mlnc::cpu{2}, H, S);  // the same, with a thread count
// A backend without predictors (backend_traits<B>::predictors) is a compile-time error.
// Predictions are label_sets (never an empty set). Ties between equally near candidates go to the
// lexicographically smallest label set: std::lexicographical_compare of the ascending index
// lists, so {0, 1} < {0, 2} < {1} and a set comes before its extensions ({0} < {0, 1}).
// Every predictor reports its prediction cost in floating-point operations per sample
// (additions, multiplications and comparisons; training excluded).

#include <mlnc/backend.hpp>
#include <mlnc/detail/exception_fence.hpp>
#include <mlnc/error.hpp>
#include <mlnc/labels.hpp>
#include <mlnc/metrics.hpp>
#include <mlnc/tagwise.hpp>
#include <mlnc/types.hpp>

#include <Eigen/Core>

#include <mlnc/detail/lbfgspp.hpp>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <iterator>
#include <limits>
#include <numeric>
#include <span>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

namespace mlnc {

namespace detail {

template <class B>
constexpr void check_predict_backend() {
    check_backend<B>();
    if constexpr (available_backend<B>)
        static_assert(backend_traits<std::remove_cvref_t<B>>::predictors,
                      "mlnc: this backend has no predictors (backend_traits<B>::predictors is false): use mlnc::cpu");
}

// The tie rule of every predictor.
inline bool lex_less(std::span<const label_t> a, std::span<const label_t> b) {
    return std::lexicographical_compare(a.begin(), a.end(), b.begin(), b.end());
}

// Columns per block so that a rows x block double workspace stays within 32 MiB; one block (one
// GEMM) for all usual test sets.
inline index_t column_block(index_t rows, index_t n) {
    constexpr index_t budget = index_t{1} << 22;
    return std::clamp<index_t>(budget / std::max<index_t>(rows, 1), 1, std::max<index_t>(n, 1));
}

template <class T>
void check_predict_features(const const_view<T>& H, index_t d, const char* name) {
    if (H.rows() != d)
        throw error(std::string(name) + ": feature dimension " + std::to_string(H.rows()) +
                    " differs from the predictor's d = " + std::to_string(d) + " (features are d x N)");
    if (H.cols() < 1) throw error(std::string(name) + ": no samples");
    check_finite(H, name);
}

// "3, 5, 9" for the first labels of a list of `count`, with "and N more" beyond those shown.
inline std::string label_list(const std::vector<index_t>& labels, index_t count = -1) {
    constexpr std::size_t shown = 10;
    if (count < 0) count = static_cast<index_t>(labels.size());
    std::string s;
    for (std::size_t j = 0; j < std::min(labels.size(), shown); ++j) s += (j ? ", " : "") + std::to_string(labels[j]);
    if (count > static_cast<index_t>(std::min(labels.size(), shown)))
        s += " and " + std::to_string(count - static_cast<index_t>(std::min(labels.size(), shown))) + " more";
    return s;
}

// label_sets from one sorted list per sample, built directly as CSR.
class label_sets_builder {
public:
    explicit label_sets_builder(index_t K) : k_(K) {}
    void push(std::span<const label_t> set) {
        indices_.insert(indices_.end(), set.begin(), set.end());
        offsets_.push_back(static_cast<index_t>(indices_.size()));
    }
    label_sets finish() { return label_sets::from_csr(std::move(offsets_), std::move(indices_), k_); }

private:
    index_t k_;
    std::vector<index_t> offsets_{0};
    std::vector<label_t> indices_;
};

// The threads a predictor's backend offers (cpu::threads; 1 otherwise).
template <class B>
int backend_threads(const B& be) {
    if constexpr (std::is_same_v<B, cpu>) return be.threads;
    else return 1;
}

// Prediction of n samples on up to `threads` threads: the samples are split into contiguous
// ranges, f(begin, end, out) predicts those of one range into its own builder (allocating its
// scratch once), and the ranges' label sets are joined in order: the result does not depend on
// the thread count. flops: the work per sample.
template <class F>
label_sets predict_in_ranges(int threads, index_t n, index_t K, double flops, F&& f) {
    const int nt = team_size(threads, flops * static_cast<double>(n), 1e6, n);
    std::vector<label_sets_builder> parts(static_cast<std::size_t>(nt), label_sets_builder(K));
    parallel_ranges(nt, n, 1, [&](int t, index_t begin, index_t end) { f(begin, end, parts[static_cast<std::size_t>(t)]); });
    if (nt == 1) return parts[0].finish();
    label_sets_builder out(K);
    for (label_sets_builder& part : parts) {
        const label_sets sets = part.finish();
        for (index_t i = 0; i < sets.size(); ++i) out.push(sets[i]);
    }
    return out.finish();
}

}  // namespace detail

// Throws mlnc::error naming the labels that `test` uses and no sample of `train` has (a
// predictor learned from train can never predict them), or when the two disagree on K.
inline void require_labels_seen(const label_sets& train, const label_sets& test, const std::string& test_name = "test labels") {
    detail::require(train.num_labels() == test.num_labels(), test_name,
                    "K = " + std::to_string(test.num_labels()) + " differs from the training labels' K = " +
                        std::to_string(train.num_labels()));
    const auto seen = train.distinct_labels();
    const auto used = test.distinct_labels();
    std::vector<index_t> missing;
    std::set_difference(used.begin(), used.end(), seen.begin(), seen.end(), std::back_inserter(missing));
    if (!missing.empty())
        throw error(test_name + ": label" + (missing.size() == 1 ? " " : "s ") + detail::label_list(missing) +
                    (missing.size() == 1 ? " does" : " do") + " not occur in the training labels");
}

// ---------------------------------------------------------------------------------------------
// ONN: argmin_S ||h - mu_S|| over the G label sets S present in training, computed for a block of
// samples as E = ||mu||^2 1^T - 2 M^T H (one GEMM; ||h||^2 is common to all S and dropped).
template <class B = cpu>
class onn_predictor {
public:
    // H_train is d x N, S_train its N label sets; the means are compute_class_means'. Throws
    // mlnc::error on a shape mismatch, NaN/Inf, or a bad backend value.
    template <class DH>
    onn_predictor(B be, const Eigen::MatrixBase<DH>& H_train, const label_sets& S_train) : be_(be) {
        detail::check_predict_backend<B>();
        detail::check_backend_value(be_);
        class_means cm = compute_class_means(H_train, S_train);
        means_ = std::move(cm.means);
        sets_ = std::move(cm.sets);
        norms_ = means_.colwise().squaredNorm().transpose();
        lex_order_.resize(static_cast<std::size_t>(sets_.size()));
        std::iota(lex_order_.begin(), lex_order_.end(), index_t{0});
        std::sort(lex_order_.begin(), lex_order_.end(),
                  [this](index_t a, index_t b) { return detail::lex_less(sets_[a], sets_[b]); });
    }
    template <class DH>
    onn_predictor(const Eigen::MatrixBase<DH>& H_train, const label_sets& S_train)
        : onn_predictor(B{}, H_train, S_train) {}

    const B& backend_value() const noexcept { return be_; }
    index_t dim() const noexcept { return means_.rows(); }
    index_t num_labels() const noexcept { return sets_.num_labels(); }
    index_t num_classes() const noexcept { return sets_.size(); }  // G
    const label_sets& classes() const noexcept { return sets_; }    // by multiplicity, then lexicographic
    const Eigen::MatrixXd& means() const noexcept { return means_; }  // d x G

    // For each column of H (d x n), the index into classes() of the nearest mean.
    template <class DH>
    std::vector<index_t> nearest(const Eigen::MatrixBase<DH>& features) const {
        static_assert(detail::is_real_v<typename DH::Scalar>, "mlnc: features H must be float or double");
        const detail::const_view<typename DH::Scalar> H(features.derived());
        detail::check_predict_features(H, dim(), "H");
        const index_t n = H.cols(), G = num_classes();
        std::vector<index_t> out(static_cast<std::size_t>(n));
        // Contiguous ranges of samples on the backend's threads, each with its own scores block.
        const int nt = detail::team_size(detail::backend_threads(be_), flops_per_sample() * static_cast<double>(n), 1e6, n);
        detail::parallel_ranges(nt, n, 1, [&](int, index_t begin, index_t end) {
            const index_t block = detail::column_block(G, end - begin);
            Eigen::MatrixXd E(G, block);
            for (index_t j0 = begin; j0 < end; j0 += block) {
                const index_t nb = std::min(block, end - j0);
                auto Eb = E.leftCols(nb);
                Eb.noalias() = means_.transpose() * H.middleCols(j0, nb).template cast<double>();
                for (index_t j = 0; j < nb; ++j) {
                    index_t best = -1;
                    double best_e = std::numeric_limits<double>::infinity();
                    for (const index_t g : lex_order_) {  // strict < keeps the lexicographically first tie
                        const double e = norms_(g) - 2.0 * Eb(g, j);
                        if (e < best_e || best < 0) {
                            best_e = e;
                            best = g;
                        }
                    }
                    out[static_cast<std::size_t>(j0 + j)] = best;
                }
            }
        });
        return out;
    }

    template <class DH>
    label_sets predict(const Eigen::MatrixBase<DH>& H) const {
        detail::label_sets_builder b(num_labels());
        for (const index_t g : nearest(H)) b.push(sets_[g]);
        return b.finish();
    }

    // 2 d G for M^T h, G additions of ||mu||^2 and G comparisons.
    double flops_per_sample() const noexcept {
        const auto G = static_cast<double>(num_classes());
        return 2.0 * static_cast<double>(dim()) * G + 2.0 * G;
    }

private:
    B be_;
    Eigen::MatrixXd means_;
    label_sets sets_;
    Eigen::VectorXd norms_;
    std::vector<index_t> lex_order_;
};

template <class DH>
onn_predictor(const Eigen::MatrixBase<DH>&, const label_sets&) -> onn_predictor<cpu>;
template <backend B, class DH>
onn_predictor(B, const Eigen::MatrixBase<DH>&, const label_sets&) -> onn_predictor<B>;

// ---------------------------------------------------------------------------------------------
// Tag-wise decoder. For every m with a coefficient C_m (the entries of C), the prototypes are
// p_S = C_m v_S, v_S = sum_{k in S} w_k, |S| = m, and a sample gets the S of the nearest one:
//   ||h - C_m v_S||^2 = ||h||^2 - 2 C_m sum_{k in S} <h, w_k> + C_m^2 ||v_S||^2.
// For a simplex-ETF W, ||v_S||^2 = m (K - m) w^2 / (K - 1) is the same for every S of size m, so
// the nearest prototype of size m is the set of the m largest scores <h, w_k> when C_m > 0 (the m
// smallest when C_m < 0; every set is equally near when C_m = 0, and {0..m-1} is taken). The m
// candidates are then compared by their exact distances (||v_S||^2 computed, not assumed). Ties
// between scores go to the smaller label index, which yields the lexicographically smallest of
// the equally near sets. For a W that is not an exact simplex ETF the within-size step is a
// heuristic (||v_S||^2 then varies with S); predict_brute_force() is the exact reference.
template <class B = cpu>
class tagwise_decoder {
public:
    // W: K x d classifier; C: C_m for at least one multiplicity m <= K, finite, e.g. Theorem 1's
    // closed form (global_optimum(...)->C) or fit_tagwise_decoder() below.
    template <class DW>
    tagwise_decoder(B be, const Eigen::MatrixBase<DW>& W, per_multiplicity<double> C) : be_(be), c_(std::move(C)) {
        detail::check_predict_backend<B>();
        static_assert(detail::is_real_v<typename DW::Scalar>, "mlnc: classifier W must be float or double");
        detail::check_backend_value(be_);
        detail::require(W.rows() >= 2 && W.cols() >= 1, "W",
                        "expected K x d with K >= 2 labels and d >= 1, got " + std::to_string(W.rows()) + " x " +
                            std::to_string(W.cols()));
        wt_ = W.template cast<double>().transpose();
        detail::check_finite(wt_, "W");
        detail::require(!c_.empty(), "C", "needs a coefficient C_m for at least one multiplicity m");
        for (const auto& [m, c] : c_) {  // per_multiplicity holds only m >= 1
            detail::require(m <= num_labels(), "C",
                            "multiplicity " + std::to_string(m) + " is outside [1, K = " + std::to_string(num_labels()) + "]");
            detail::require(std::isfinite(c), "C", "C_" + std::to_string(m) + " is not finite");
            if (c > 0) top_ = std::max(top_, m);
            if (c < 0) bottom_ = std::max(bottom_, m);
        }
    }

    template <class DW>
    tagwise_decoder(const Eigen::MatrixBase<DW>& W, per_multiplicity<double> C)
        : tagwise_decoder(B{}, W, std::move(C)) {}

    const B& backend_value() const noexcept { return be_; }
    index_t num_labels() const noexcept { return wt_.cols(); }
    index_t dim() const noexcept { return wt_.rows(); }
    index_t max_multiplicity() const noexcept { return c_.max_multiplicity(); }
    const per_multiplicity<double>& C() const noexcept { return c_; }

    template <class DH>
    label_sets predict(const Eigen::MatrixBase<DH>& features) const {
        static_assert(detail::is_real_v<typename DH::Scalar>, "mlnc: features H must be float or double");
        const detail::const_view<typename DH::Scalar> H(features.derived());
        detail::check_predict_features(H, dim(), "H");
        const index_t n = H.cols(), K = num_labels();
        return detail::predict_in_ranges(detail::backend_threads(be_), n, K, flops_per_sample(),
                                         [&](index_t begin, index_t end, detail::label_sets_builder& out) {
                                             predict_range(H, begin, end, out);
                                         });
    }

    // The exact nearest prototype by enumerating every S with |S| = m for every m of C
    // (subset_unrank), sum_m C(K, m) prototypes compared by ||h - p_S||^2 directly. For small K:
    // throws mlnc::error when the prototypes would hold more than 2^24 numbers.
    template <class DH>
    label_sets predict_brute_force(const Eigen::MatrixBase<DH>& features) const {
        static_assert(detail::is_real_v<typename DH::Scalar>, "mlnc: features H must be float or double");
        const detail::const_view<typename DH::Scalar> H(features.derived());
        detail::check_predict_features(H, dim(), "H");
        const index_t K = num_labels(), d = dim();
        constexpr double max_entries = 16777216.0;  // 2^24 doubles = 128 MiB
        double total = 0;
        for (const auto& [m, c] : c_) total += std::exp(log_binomial(K, m));
        if (total * static_cast<double>(d) > max_entries)
            throw error("predict_brute_force: sum_m C(K, m) = " + std::to_string(total) +
                        " prototypes of dimension " + std::to_string(d) +
                        " exceed 2^24 numbers; brute force is the reference for small K only");
        std::vector<std::vector<label_t>> sets;
        std::vector<double> coef;
        for (const auto& [m, c] : c_) {
            const auto count = static_cast<std::uint64_t>(binomial(K, m));
            for (std::uint64_t r = 0; r < count; ++r) {
                sets.push_back(subset_unrank(r, m, K));
                coef.push_back(c);
            }
        }
        const auto T = static_cast<index_t>(sets.size());
        std::vector<index_t> order(static_cast<std::size_t>(T));
        std::iota(order.begin(), order.end(), index_t{0});
        std::sort(order.begin(), order.end(), [&](index_t a, index_t b) {
            return detail::lex_less(sets[static_cast<std::size_t>(a)], sets[static_cast<std::size_t>(b)]);
        });
        Eigen::MatrixXd P(d, T);  // prototypes in lexicographic order of their sets
        for (index_t t = 0; t < T; ++t) {
            const auto u = static_cast<std::size_t>(order[static_cast<std::size_t>(t)]);
            P.col(t).setZero();
            for (const label_t k : sets[u]) P.col(t) += wt_.col(k);
            P.col(t) *= coef[u];
        }
        detail::label_sets_builder out(K);
        for (index_t i = 0; i < H.cols(); ++i) {
            const Eigen::VectorXd h = H.col(i).template cast<double>();
            index_t best = 0;
            double best_e = (h - P.col(0)).squaredNorm();
            for (index_t t = 1; t < T; ++t) {
                const double e = (h - P.col(t)).squaredNorm();
                if (e < best_e) {
                    best_e = e;
                    best = t;
                }
            }
            out.push(sets[static_cast<std::size_t>(order[static_cast<std::size_t>(best)])]);
        }
        return out.finish();
    }

    // 2 K d for the scores W h; per selection (one for the positive C_m, one for the negative) 2K
    // comparisons (a linear-time selection) plus M log2 M to order the M chosen; per candidate
    // size 3d + 5 (extend v_S, ||v_S||^2, the distance, the comparison).
    double flops_per_sample() const noexcept {
        const auto K = static_cast<double>(num_labels()), d = static_cast<double>(dim());
        const auto sel = [K](index_t M) {
            if (M == 0) return 0.0;
            const auto m = static_cast<double>(M);
            return 2.0 * K + m * std::max(1.0, std::log2(m));
        };
        return 2.0 * K * d + sel(top_) + sel(bottom_) + static_cast<double>(c_.size()) * (3.0 * d + 5.0);
    }

    // 3 d per prototype (difference, square, sum) over sum_m C(K, m) prototypes.
    double brute_force_flops_per_sample() const {
        double total = 0;
        for (const auto& [m, c] : c_) total += std::exp(log_binomial(num_labels(), m));
        return 3.0 * static_cast<double>(dim()) * total;
    }

private:
    // Predicts the samples [begin, end) of checked features into out.
    template <class T>
    void predict_range(const detail::const_view<T>& H, index_t begin, index_t end, detail::label_sets_builder& out) const {
        const index_t K = num_labels(), d = dim();
        const index_t block = detail::column_block(K, end - begin);
        Eigen::MatrixXd scores(K, block);
        std::vector<label_t> top, bottom, best, cand;
        Eigen::VectorXd v_top(d), v_bottom(d);
        for (index_t j0 = begin; j0 < end; j0 += block) {
            const index_t nb = std::min(block, end - j0);
            auto Sc = scores.leftCols(nb);
            Sc.noalias() = wt_.transpose() * H.middleCols(j0, nb).template cast<double>();
            for (index_t j = 0; j < nb; ++j) {
                const double* s = Sc.col(j).data();
                select(s, top_, true, top);
                select(s, bottom_, false, bottom);
                // Running prototype sums along the two orders, extended as m grows.
                index_t len_top = 0, len_bottom = 0;
                double t_top = 0, t_bottom = 0;
                v_top.setZero();
                v_bottom.setZero();
                double best_e = 0;
                best.clear();
                for (const auto& [m, c] : c_) {
                    double e = 0;  // ||h - C_m v_S||^2 - ||h||^2
                    cand.resize(static_cast<std::size_t>(m));
                    if (c == 0) {
                        std::iota(cand.begin(), cand.end(), label_t{0});
                    } else {
                        const bool up = c > 0;
                        const auto& order = up ? top : bottom;
                        auto& len = up ? len_top : len_bottom;
                        auto& t = up ? t_top : t_bottom;
                        auto& v = up ? v_top : v_bottom;
                        for (; len < m; ++len) {
                            const label_t k = order[static_cast<std::size_t>(len)];
                            t += s[k];
                            v += wt_.col(k);
                        }
                        e = c * c * v.squaredNorm() - 2.0 * c * t;
                        std::copy(order.begin(), order.begin() + m, cand.begin());
                        std::sort(cand.begin(), cand.end());
                    }
                    if (best.empty() || e < best_e || (e == best_e && detail::lex_less(cand, best))) {
                        best_e = e;
                        best = cand;
                    }
                }
                out.push(best);
            }
        }
    }

    // The first M labels in the order (score descending, index ascending) when `largest`, or
    // (score ascending, index ascending) otherwise.
    void select(const double* s, index_t M, bool largest, std::vector<label_t>& idx) const {
        if (M == 0) return;
        const index_t K = num_labels();
        idx.resize(static_cast<std::size_t>(K));
        std::iota(idx.begin(), idx.end(), label_t{0});
        const auto before = [s, largest](label_t a, label_t b) {
            if (s[a] != s[b]) return largest ? s[a] > s[b] : s[a] < s[b];
            return a < b;
        };
        const auto mid = idx.begin() + M;
        if (M < K) std::nth_element(idx.begin(), mid, idx.end(), before);
        std::sort(idx.begin(), mid, before);
    }

    B be_;
    Eigen::MatrixXd wt_;  // d x K: column k is w_k
    per_multiplicity<double> c_;
    index_t top_ = 0;     // largest m with C_m > 0 (0: none)
    index_t bottom_ = 0;  // largest m with C_m < 0 (0: none)
};

template <class DW>
tagwise_decoder(const Eigen::MatrixBase<DW>&, per_multiplicity<double>) -> tagwise_decoder<cpu>;

// A tag-wise decoder whose C_m are fitted by least squares over the training label-set means of
// size m (fit_tagwise, tagwise.hpp), for every multiplicity present in S_train. H_train is d x N.
template <backend B, class DW, class DH>
tagwise_decoder<B> fit_tagwise_decoder(const B& be, const Eigen::MatrixBase<DW>& W, const Eigen::MatrixBase<DH>& H_train,
                                       const label_sets& S_train) {
    detail::check_predict_backend<B>();
    detail::check_backend_value(be);  // before the fit, not after it
    detail::require(!S_train.empty(), "training labels", "no samples");
    return tagwise_decoder<B>(be, W, fit_tagwise(H_train, S_train, W).C);
}
template <class DW, class DH>
tagwise_decoder<cpu> fit_tagwise_decoder(const Eigen::MatrixBase<DW>& W, const Eigen::MatrixBase<DH>& H_train,
                                         const label_sets& S_train) {
    return fit_tagwise_decoder(default_backend, W, H_train, S_train);
}
template <backend B, class DW>
tagwise_decoder(B, const Eigen::MatrixBase<DW>&, per_multiplicity<double>) -> tagwise_decoder<B>;

// ---------------------------------------------------------------------------------------------
// OvA (binary relevance): for each label k, a logistic regression with bias on the frozen
// features, minimising
//   f_k(w, b) = (1/N) sum_i log(1 + exp(-y_ik (w.h_i + b))) + (l2/2) (||w||^2 + b^2),  y_ik = +-1.
// On separable data the unpenalised loss has no minimiser (it tends to 0 as ||w|| grows); the small
// l2 gives a unique finite one whose training loss is near zero. Label k is predicted when
// sigmoid(w.h + b) > 1/2, i.e. w.h + b > 0; a sample with no label predicted gets the single
// label of largest w.h + b (the smallest index among equal ones).

enum class ova_status {
    converged,           // ||grad f_k|| <= gradient_tolerance * max_i ||(h_i, 1)||
    max_iterations,      // the budget ran out first
    line_search_failed,  // no further decrease found (the best point found is kept)
};

inline const char* to_string(ova_status s) noexcept {
    switch (s) {
        case ova_status::converged: return "converged";
        case ova_status::max_iterations: return "max_iterations";
        case ova_status::line_search_failed: return "line_search_failed";
    }
    return "unknown";
}

struct ova_options {
    double l2 = 1e-6;                   // penalty on ||w||^2 + b^2 (times 1/2), > 0
    double gradient_tolerance = 1e-8;   // relative to the feature scale max_i ||(h_i, 1)||
    int max_iterations = 2000;          // L-BFGS iterations per label
    int memory = 10;                    // L-BFGS correction pairs
};

struct ova_label_fit {
    ova_status status = ova_status::max_iterations;
    int iterations = 0;        // L-BFGS iterations (0 when a failed line search ended the run)
    double loss = 0;           // the mean logistic loss (data term) at the solution
    double objective = 0;      // loss + penalty
    double gradient_norm = 0;  // ||grad f_k|| at the solution
    index_t positives = 0;     // training samples with label k
};

namespace detail {

// f_k and its gradient in LBFGSpp's f(x, grad) form; x = (w, b). Keeps the best point evaluated,
// which is what a failed line search falls back to. (A template, Real = double, so that it is
// compiled only where the OvA baseline is used.)
template <class Real = double>
class logistic_problem {
    using mat = matrix<Real>;
    using vec = vector<Real>;

public:
    logistic_problem(const mat& H, vec y, double l2)
        : h_(H), y_(std::move(y)), l2_(l2), z_(H.cols()), r_(H.cols()) {}

    double operator()(const vec& x, vec& grad) {
        const index_t d = h_.rows();
        const double n = static_cast<double>(h_.cols());
        z_.noalias() = h_.transpose() * x.head(d);
        z_.array() += x(d);
        double loss = 0;
        for (index_t i = 0; i < z_.size(); ++i) {
            const double t = -y_(i) * z_(i);  // loss_i = softplus(t), d loss_i / d z_i = -y_i sigmoid(t)
            const double e = std::exp(-std::abs(t));
            loss += std::max(t, 0.0) + std::log1p(e);
            const double sig = t >= 0 ? 1.0 / (1.0 + e) : e / (1.0 + e);
            r_(i) = -y_(i) * sig / n;
        }
        loss /= n;
        grad.resize(d + 1);
        grad.head(d).noalias() = h_ * r_;
        grad(d) = r_.sum();
        grad += l2_ * x;
        const double f = loss + 0.5 * l2_ * x.squaredNorm();
        if (f < best_f_) {  // a NaN objective never becomes the best point
            best_f_ = f;
            best_x_ = x;
            best_loss_ = loss;
            best_gnorm_ = grad.norm();
        }
        return f;
    }

    double best_f() const noexcept { return best_f_; }
    double best_loss() const noexcept { return best_loss_; }
    double best_gradient_norm() const noexcept { return best_gnorm_; }
    const vec& best_x() const noexcept { return best_x_; }

private:
    const mat& h_;
    vec y_;
    double l2_;
    vec z_, r_;
    double best_f_ = std::numeric_limits<double>::infinity();
    double best_loss_ = 0, best_gnorm_ = 0;
    vec best_x_;
};

inline void check_ova_options(const ova_options& o) {
    require(std::isfinite(o.l2) && o.l2 > 0, "l2", "must be finite and > 0 (it makes the optimum finite)");
    require(std::isfinite(o.gradient_tolerance) && o.gradient_tolerance > 0, "gradient_tolerance",
            "must be finite and > 0");
    require(o.max_iterations >= 1, "max_iterations", "must be at least 1");
    require(o.memory >= 1, "memory", "must be at least 1");
}

}  // namespace detail

template <class B = cpu>
class ova_classifier {
public:
    // Trains K logistic regressions on H_train (d x N) with labels S_train. Throws mlnc::error on a
    // shape mismatch, NaN/Inf, bad options, a bad backend value, or a label without a positive
    // training sample. Non-convergence is reported per label in fits(), not thrown.
    template <class DH>
    ova_classifier(B be, const Eigen::MatrixBase<DH>& H_train, const label_sets& S_train,
                   const ova_options& options = {})
        : be_(be) {
        detail::check_predict_backend<B>();
        static_assert(detail::is_real_v<typename DH::Scalar>, "mlnc: features H must be float or double");
        detail::check_backend_value(be_);
        detail::check_ova_options(options);
        detail::require(!S_train.empty(), "training labels", "no samples");
        const Eigen::MatrixXd H = H_train.template cast<double>();  // the regressions' GEMMs run in double
        detail::check_features(H, S_train.size());
        const index_t K = S_train.num_labels(), d = H.rows(), N = H.cols();
        // Checked before anything of size K exists: K may come from a large index in a file.
        if (const auto [missing, count] = S_train.absent_labels(); count > 0)
            throw error(std::string("training labels: label") + (count == 1 ? " " : "s ") +
                        detail::label_list(missing, count) + (count == 1 ? " has" : " have") +
                        " no training sample, so its one-vs-all classifier cannot be learned");
        std::vector<index_t> positives(static_cast<std::size_t>(K), 0);
        for (const label_t k : S_train.indices()) ++positives[static_cast<std::size_t>(k)];

        const double scale = std::sqrt(H.colwise().squaredNorm().maxCoeff() + 1.0);
        LBFGSpp::LBFGSParam<double> param;
        param.m = options.memory;
        param.epsilon = options.gradient_tolerance * scale;
        param.epsilon_rel = 0;
        param.max_iterations = options.max_iterations;
        param.linesearch = LBFGSpp::LBFGS_LINESEARCH_BACKTRACKING_STRONG_WOLFE;
        w_.resize(K, d);
        b_.resize(K);
        fits_.resize(static_cast<std::size_t>(K));
        // One solver per thread, the labels split into contiguous ranges; each label's fit is
        // independent of the others, so the result does not depend on the thread count.
        const int nt = detail::team_size(detail::backend_threads(be_), static_cast<double>(K) * static_cast<double>(N) *
                                                                          static_cast<double>(d), 1e6, K);
        detail::parallel_ranges(nt, K, 1, [&](int, index_t first, index_t last) {
            LBFGSpp::LBFGSSolver<double> solver(param);
            Eigen::VectorXd y(N);
            for (index_t k = first; k < last; ++k) {
                y.setConstant(-1.0);
                for (index_t i = 0; i < N; ++i) {
                    const auto s = S_train[i];
                    if (std::binary_search(s.begin(), s.end(), static_cast<label_t>(k))) y(i) = 1.0;
                }
                detail::logistic_problem<> f(H, y, options.l2);
                Eigen::VectorXd x = Eigen::VectorXd::Zero(d + 1);
                double fx = 0;
                ova_label_fit& fit = fits_[static_cast<std::size_t>(k)];
                fit.positives = positives[static_cast<std::size_t>(k)];
                bool search_failed = false;
                // LBFGSpp reports a failed line search with std::runtime_error or std::logic_error
                // ("the moving direction increases ..." from rounding): a status. Anything the
                // objective throws passes those handlers through the fence and propagates unchanged.
                detail::exception_fence fence;
                auto fenced = [&](const Eigen::VectorXd& xv, Eigen::VectorXd& gv) { return fence([&] { return f(xv, gv); }); };
                try {
                    fit.iterations = solver.minimize(fenced, x, fx);
                } catch (const detail::solver_aborted&) {
                    fence.rethrow();
                } catch (const std::runtime_error&) {
                    search_failed = true;
                } catch (const std::logic_error&) {
                    search_failed = true;
                }
                const Eigen::VectorXd& xb = f.best_x();
                w_.row(k) = xb.head(d).transpose();
                b_(k) = xb(d);
                fit.loss = f.best_loss();
                fit.objective = f.best_f();
                fit.gradient_norm = f.best_gradient_norm();
                if (fit.gradient_norm <= param.epsilon) fit.status = ova_status::converged;
                else if (search_failed) fit.status = ova_status::line_search_failed;
                else fit.status = ova_status::max_iterations;
            }
        });
    }

    template <class DH>
    ova_classifier(const Eigen::MatrixBase<DH>& H_train, const label_sets& S_train, const ova_options& options = {})
        : ova_classifier(B{}, H_train, S_train, options) {}

    const B& backend_value() const noexcept { return be_; }
    index_t num_labels() const noexcept { return w_.rows(); }
    index_t dim() const noexcept { return w_.cols(); }
    const Eigen::MatrixXd& weights() const noexcept { return w_; }  // K x d
    const Eigen::VectorXd& bias() const noexcept { return b_; }     // K
    const std::vector<ova_label_fit>& fits() const noexcept { return fits_; }
    bool converged() const noexcept {
        return std::all_of(fits_.begin(), fits_.end(), [](const ova_label_fit& f) { return f.status == ova_status::converged; });
    }

    // The logits W h + b (K x n) of the columns of H (d x n).
    template <class DH>
    Eigen::MatrixXd decision_function(const Eigen::MatrixBase<DH>& features) const {
        static_assert(detail::is_real_v<typename DH::Scalar>, "mlnc: features H must be float or double");
        const detail::const_view<typename DH::Scalar> H(features.derived());
        detail::check_predict_features(H, dim(), "H");
        return logits(H);
    }

    template <class DH>
    label_sets predict(const Eigen::MatrixBase<DH>& features) const {
        static_assert(detail::is_real_v<typename DH::Scalar>, "mlnc: features H must be float or double");
        const detail::const_view<typename DH::Scalar> H(features.derived());
        detail::check_predict_features(H, dim(), "H");
        const index_t n = H.cols(), K = num_labels();
        return detail::predict_in_ranges(detail::backend_threads(be_), n, K, flops_per_sample(),
                                         [&](index_t begin, index_t end, detail::label_sets_builder& out) {
                                             predict_range(H, begin, end, out);
                                         });
    }

    // 2 K d for W h, K bias additions, K threshold comparisons, and (at most) K comparisons of
    // the arg-max fallback.
    double flops_per_sample() const noexcept {
        const auto K = static_cast<double>(num_labels());
        return 2.0 * K * static_cast<double>(dim()) + 3.0 * K;
    }

private:
    // Predicts the samples [begin, end) of checked features into out.
    template <class T>
    void predict_range(const detail::const_view<T>& H, index_t begin, index_t end, detail::label_sets_builder& out) const {
        const index_t K = num_labels();
        const index_t block = detail::column_block(K, end - begin);
        std::vector<label_t> set;
        for (index_t j0 = begin; j0 < end; j0 += block) {
            const Eigen::MatrixXd Z = logits(H.middleCols(j0, std::min(block, end - j0)));
            for (index_t j = 0; j < Z.cols(); ++j) {
                set.clear();
                for (index_t k = 0; k < K; ++k)
                    if (Z(k, j) > 0) set.push_back(static_cast<label_t>(k));
                if (set.empty()) {
                    Eigen::Index arg = 0;
                    Z.col(j).maxCoeff(&arg);  // first index of the maximum
                    set.push_back(static_cast<label_t>(arg));
                }
                out.push(set);
            }
        }
    }
    // W H + b of checked features.
    template <class DH>
    Eigen::MatrixXd logits(const Eigen::MatrixBase<DH>& H) const {
        Eigen::MatrixXd Z(num_labels(), H.cols());
        Z.noalias() = w_ * H.template cast<double>();
        Z.colwise() += b_;
        return Z;
    }

    B be_;
    Eigen::MatrixXd w_;
    Eigen::VectorXd b_;
    std::vector<ova_label_fit> fits_;
};

template <class DH>
ova_classifier(const Eigen::MatrixBase<DH>&, const label_sets&, const ova_options& = {}) -> ova_classifier<cpu>;
template <backend B, class DH>
ova_classifier(B, const Eigen::MatrixBase<DH>&, const label_sets&, const ova_options& = {}) -> ova_classifier<B>;

}  // namespace mlnc
