#pragma once
// Neural-collapse metrics of features H (d x N, column i = sample i) with label sets S and,
// optionally, a classifier W (K x d). Definitions: docs/metrics.md. Every metric is 0 under
// multi-label neural collapse. Inputs may be float or double; every sum is taken in double.
//
// "Class" means a distinct label set present in the data; mu_S is its mean feature,
// mu_k = mu_{{k}} the mean of the samples labelled exactly {k}, mu_G = (1/K) sum_k mu_k.
// A metric that is undefined for the data at hand (fewer than two classes, zero scatter, a
// zero vector inside an angle) is returned as std::nullopt, never as NaN. A centred quantity
// counts as zero when it is within rounding of zero: ||y - o|| <= 16 eps n (||y|| + ||o||), with
// n the number of terms that formed it; its direction is then rounding noise.

#include <mlnc/backend.hpp>
#include <mlnc/detail/checks.hpp>
#include <mlnc/detail/threads.hpp>
#include <mlnc/error.hpp>
#include <mlnc/etf.hpp>
#include <mlnc/labels.hpp>
#include <mlnc/types.hpp>

#include <Eigen/Core>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <memory>
#include <numeric>
#include <optional>
#include <random>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

namespace mlnc {

// A metric per multiplicity m present (ascending); nullopt where it is undefined.
using metric_by_multiplicity = per_multiplicity<std::optional<double>>;

// Groups [begin, end) of class_means::sets; the groups of one multiplicity are contiguous.
struct group_range {
    index_t begin = 0;
    index_t end = 0;
    index_t size() const noexcept { return end - begin; }
};

// The per-label-set means of the features and what the metrics derive from them.
struct class_means {
    label_sets sets;                 // G distinct label sets: by multiplicity, then lexicographic
    Eigen::MatrixXd means;           // d x G: column g is mu_S for S = sets[g]
    std::vector<index_t> counts;     // G: number of samples with that set
    std::vector<index_t> group_of;   // N: the group (column of means) of each sample
    // Groups 0 .. num_singletons-1 are the sets {k} present, by ascending k (sets are ordered by
    // multiplicity, then lexicographically). Nothing here is of size K: K may be as large as a
    // label index in the input allows, while the means need a sample for every label.
    index_t num_singletons = 0;

    index_t dim() const noexcept { return means.rows(); }
    index_t num_groups() const noexcept { return sets.size(); }
    index_t num_labels() const noexcept { return sets.num_labels(); }
    index_t num_samples() const noexcept { return static_cast<index_t>(group_of.size()); }

    // Multiplicity m -> its groups, for every multiplicity present.
    per_multiplicity<group_range> groups_by_multiplicity() const {
        per_multiplicity<group_range> r;
        for (index_t g = 0; g < num_groups(); ++g) {
            group_range& range = r[sets.multiplicity(g)];
            if (range.size() == 0) range.begin = g;  // first group of its multiplicity
            range.end = g + 1;
        }
        return r;
    }

    // The group of {k}, or -1 when no sample is labelled exactly {k}. O(log K).
    index_t singleton_group(index_t k) const {
        index_t lo = 0, hi = num_singletons;
        while (lo < hi) {
            const index_t mid = lo + (hi - lo) / 2;
            if (sets[mid][0] < k) lo = mid + 1;
            else hi = mid;
        }
        return lo < num_singletons && sets[lo][0] == k ? lo : -1;
    }

    // Number of labels with no sample labelled exactly {k}.
    index_t num_missing_labels() const noexcept { return num_labels() - num_singletons; }

    // The first (at most `limit`) labels k with no sample labelled exactly {k}, ascending.
    // O(num_singletons + limit), whatever K is.
    std::vector<index_t> missing_labels(std::size_t limit = std::numeric_limits<std::size_t>::max()) const {
        std::vector<index_t> missing;
        index_t k = 0;
        for (index_t g = 0; g <= num_singletons && missing.size() < limit; ++g) {
            const index_t next = g < num_singletons ? static_cast<index_t>(sets[g][0]) : num_labels();
            for (; k < next && missing.size() < limit; ++k) missing.push_back(k);
            k = next + 1;
        }
        return missing;
    }

    // Throws mlnc::error naming the labels without a multiplicity-1 sample, if any.
    void require_label_means() const {
        const index_t count = num_missing_labels();
        if (count == 0) return;
        constexpr std::size_t shown = 10;
        const auto missing = missing_labels(shown);
        std::string list;
        for (std::size_t j = 0; j < missing.size(); ++j) list += (j ? ", " : "") + std::to_string(missing[j]);
        if (count > static_cast<index_t>(shown)) list += " and " + std::to_string(count - static_cast<index_t>(shown)) + " more";
        throw error(std::string(count == 1 ? "labels: label " : "labels: labels ") + list +
                    (count == 1 ? " has" : " have") +
                    " no multiplicity-1 sample, so mu_k and mu_G are undefined (NC2 on features, NC3 and "
                    "NC_m need a sample labelled with just k for every label k)");
    }

    // mu_k as the columns of a d x K matrix. (Member templates, Real = double, here and below:
    // Eigen code in a header is compiled only where it is used.)
    template <class Real = double>
    matrix<Real> label_means() const {
        require_label_means();
        matrix<Real> mu(dim(), num_labels());
        for (index_t k = 0; k < num_labels(); ++k) mu.col(k) = means.col(k);  // group k is {k} when none is missing
        return mu;
    }

    // mu_G = (1/K) sum_k mu_k.
    template <class Real = double>
    vector<Real> global_mean() const {
        return label_means<Real>().rowwise().mean();
    }

    // Mc: the K x d matrix of rows (mu_k - mu_G)^T.
    template <class Real = double>
    matrix<Real> centered_label_means() const {
        const matrix<Real> mu = label_means<Real>();
        return (mu.colwise() - mu.rowwise().mean()).transpose();
    }
};

namespace detail {

// The scalars of features and classifiers; every computation is carried out in double.
template <class T>
inline constexpr bool is_real_v = std::is_same_v<T, float> || std::is_same_v<T, double>;

// A read-only view of a float or double matrix. A Matrix, Map, Block or other column-major
// expression with storage and unit inner stride is viewed where it is; anything else (a product,
// a cast, a row-major matrix) is evaluated once, in its own scalar, into storage the view owns,
// so the loops over columns below never re-evaluate an expression. Never copy an owning view
// into one that outlives it: Eigen's copy of a Ref points at the original's storage.
template <class T>
using const_view = Eigen::Ref<const matrix<T>, 0, Eigen::OuterStride<>>;

// True when a vector of norm `norm`, formed from `terms` terms whose norms sum to `scale`, is
// zero up to the rounding of forming it.
inline bool negligible(double norm, double scale, index_t terms) {
    constexpr double slack = 16 * std::numeric_limits<double>::epsilon();
    return norm <= slack * static_cast<double>(terms) * scale;
}

template <class DH>
void check_features(const Eigen::MatrixBase<DH>& H, index_t N) {
    static_assert(is_real_v<typename DH::Scalar>, "mlnc: features H must be float or double");
    if (H.cols() != N)
        throw error("H: expected d x N with one column per sample (N = " + std::to_string(N) + "), got " +
                    std::to_string(H.rows()) + " x " + std::to_string(H.cols()));
    if (H.rows() < 1) throw error("H: feature dimension d must be at least 1");
    check_finite(H, "H");
}

template <class DW>
void check_classifier(const Eigen::MatrixBase<DW>& W, index_t K, index_t d) {
    static_assert(is_real_v<typename DW::Scalar>, "mlnc: classifier W must be float or double");
    check_shape(W, K, d, "W", "K x d: one row per label, as many columns as the features have rows");
    check_finite(W, "W");
}

// X / max|X_ij| in double. The ETF deviations and the angles are scale-invariant; scaling first
// keeps Gram matrices and norms clear of overflow and underflow.
template <class D>
Eigen::MatrixXd scaled_copy(const Eigen::MatrixBase<D>& X) {
    Eigen::MatrixXd Y = X.template cast<double>();
    const double s = Y.size() ? Y.cwiseAbs().maxCoeff() : 0.0;
    if (s > 0) Y /= s;
    return Y;
}

// Mc (rows mu_k - mu_G), or nullopt when every row is zero up to rounding (all mu_k equal).
template <class Real = double>
std::optional<matrix<Real>> significant_centered_label_means(const class_means& cm) {
    const matrix<Real> mu = cm.label_means<Real>();
    const vector<Real> g = mu.rowwise().mean();
    matrix<Real> Mc = (mu.colwise() - g).transpose();
    const double scale = mu.colwise().norm().maxCoeff() + g.norm();
    if (negligible(Mc.rowwise().norm().maxCoeff(), scale, cm.num_labels() + 1)) return std::nullopt;
    return Mc;
}

// The ETF deviation of a K x K Gram-like matrix, or nullopt when A = 0 (no direction to compare).
template <class D>
std::optional<double> etf_gram_deviation_if_defined(const Eigen::MatrixBase<D>& A) {
    if (A.squaredNorm() == 0.0) return std::nullopt;
    return mlnc::etf_gram_deviation(A);
}

// The eigenpairs of a symmetric matrix A: A = V diag(w) V^T with w ascending and V orthogonal.
// Householder reflections bring A to tridiagonal form T = Q^T A Q (4/3 n^3 flops, in rank-2
// updates), then the implicit QL method with Wilkinson shifts diagonalises T, its plane rotations
// applied to the columns of Q (Golub and Van Loan, sections 8.3 and 8.3.5). Both steps are
// backward stable: eigenvalues within a small multiple of eps ||A||. Written out in plain loops
// and column operations rather than Eigen's SelfAdjointEigenSolver, which costs seconds of
// compilation in every program that computes NC1. false when QL does not converge (60 sweeps
// for one eigenvalue; it takes about 2).
template <class Real>
bool symmetric_eigen(matrix<Real> A, vector<Real>& w, matrix<Real>& V) {
    using std::abs;
    const index_t n = A.rows();
    // Householder: step k maps A(k+1:, k) to (alpha, 0, ..., 0); its vector is kept in A(k+1:, k).
    vector<Real> beta = vector<Real>::Zero(n), p(n), diag(n), off = vector<Real>::Zero(n);
    for (index_t k = 0; k + 2 < n; ++k) {
        const index_t m = n - k - 1;
        auto x = A.col(k).tail(m);
        const Real xnorm = x.norm();
        if (xnorm == 0) continue;
        const Real alpha = x(0) > 0 ? -xnorm : xnorm;
        x(0) -= alpha;  // v = x - alpha e1, H = I - beta v v^T with beta = 2 / v^T v
        const Real b = 2 / x.squaredNorm();
        beta(k) = b;
        auto As = A.bottomRightCorner(m, m);
        auto pk = p.head(m);
        pk.noalias() = b * (As * x);
        pk -= (b / 2 * pk.dot(x)) * x;  // w = p - (beta/2)(p^T v) v; As -= v w^T + w v^T
        As.noalias() -= x * pk.transpose() + pk * x.transpose();
        off(k) = alpha;
    }
    for (index_t k = 0; k < n; ++k) diag(k) = A(k, k);
    if (n >= 2) off(n - 2) = A(n - 1, n - 2);
    // Q = H_0 H_1 ... H_{n-3}, accumulated from the last reflection.
    V = matrix<Real>::Identity(n, n);
    for (index_t k = n - 3; k >= 0; --k) {
        if (beta(k) == 0) continue;
        const index_t m = n - k - 1;
        const auto v = A.col(k).tail(m);
        auto Vs = V.bottomRightCorner(m, m);
        auto pk = p.head(m);
        pk.noalias() = Vs.transpose() * v;
        Vs.noalias() -= (beta(k) * v) * pk.transpose();
    }
    // Implicit QL on (diag, off), off(i) = T(i + 1, i), off(n - 1) = 0. An off-diagonal entry below
    // eps ||T|| is negligible (as in EISPACK's tql2): a test relative to its own diagonal entries
    // would never pass among the rounding-level eigenvalues of a rank-deficient scatter.
    const Real eps = std::numeric_limits<Real>::epsilon();
    const Real small = eps * (diag.cwiseAbs() + off.cwiseAbs()).maxCoeff();
    for (index_t l = 0; l < n; ++l) {
        for (int iter = 0;; ++iter) {
            index_t m = l;
            while (m + 1 < n && abs(off(m)) > small) ++m;
            if (m == l) break;
            if (iter == 60) return false;
            Real g = (diag(l + 1) - diag(l)) / (2 * off(l));
            Real r = std::hypot(g, Real(1));
            g = diag(m) - diag(l) + off(l) / (g + (g >= 0 ? r : -r));
            Real s = 1, c = 1, shift = 0;
            bool deflated = false;
            for (index_t i = m - 1; i >= l; --i) {
                const Real f = s * off(i), bb = c * off(i);
                r = std::hypot(f, g);
                off(i + 1) = r;
                if (r == 0) {  // T split: restart the sweep on the shorter problem
                    diag(i + 1) -= shift;
                    off(m) = 0;
                    deflated = true;
                    break;
                }
                s = f / r;
                c = g / r;
                g = diag(i + 1) - shift;
                r = (diag(i) - g) * s + 2 * c * bb;
                shift = s * r;
                diag(i + 1) = g + shift;
                g = c * r - bb;
                auto vi = V.col(i), vi1 = V.col(i + 1);
                p.noalias() = vi1;
                vi1 = s * vi + c * p;
                vi = c * vi - s * p;
            }
            if (deflated) continue;
            diag(l) -= shift;
            off(l) = g;
            off(m) = 0;
        }
    }
    std::vector<index_t> order(static_cast<std::size_t>(n));
    std::iota(order.begin(), order.end(), index_t{0});
    std::sort(order.begin(), order.end(), [&](index_t a, index_t b) { return diag(a) < diag(b); });
    w.resize(n);
    matrix<Real> sorted(n, n);
    for (index_t j = 0; j < n; ++j) {
        w(j) = diag(order[static_cast<std::size_t>(j)]);
        sorted.col(j) = V.col(order[static_cast<std::size_t>(j)]);
    }
    V.swap(sorted);
    return true;
}

// P = Lambda^{-1/2} U^T over the eigenpairs (lambda, u) of Sb = B B^T / C that the pseudo-inverse
// keeps (lambda >= 1e-12 lambda_max), so that tr(Sw Sb^+) = ||P E||_F^2 / N_m for the residuals E.
// B = M - g 1^T: the C means M (d x C) centred at g. B B^T (d x d) and B^T B (C x C) share their
// nonzero eigenvalues, so the smaller one is decomposed; with B^T B = C V Lambda V^T,
// u_j = B v_j / sqrt(C lambda_j). B must not be 0; nullopt when the eigensolver fails.
template <class Real = double>
std::optional<matrix<Real>> between_scatter_pinv_factor(const Eigen::Ref<const matrix<Real>>& M, const vector<Real>& g,
                                                        int threads = 1) {
    constexpr double rel_cutoff = 1e-12;
    const index_t d = M.rows(), C = M.cols();
    const double c = static_cast<double>(C);
    const bool via_gram = C <= d;
    matrix<Real> S(via_gram ? C : d, via_gram ? C : d);
    matrix<Real> B;  // formed only when it is small (C <= d)
    if (via_gram) {
        B = M.colwise() - g;
        S.noalias() = B.transpose() * B;
    } else {
        // B B^T over a long inner dimension, B never formed: partial products of centred blocks
        // of columns, one range of columns per thread, added in order.
        constexpr index_t block = 256;
        const int nt = team_size(threads, static_cast<double>(d) * static_cast<double>(d) * c, double(1 << 22), C / block);
        std::vector<matrix<Real>> part(static_cast<std::size_t>(nt));
        parallel_ranges(nt, C, block, [&](int t, index_t begin, index_t end) {
            matrix<Real>& P = part[static_cast<std::size_t>(t)];
            P.setZero(d, d);
            matrix<Real> Bt(d, block);
            for (index_t j = begin; j < end; j += block) {
                const index_t nb = std::min(block, end - j);
                Bt.leftCols(nb) = M.middleCols(j, nb).colwise() - g;
                P.noalias() += Bt.leftCols(nb) * Bt.leftCols(nb).transpose();  // serial in the team
            }
        });
        S = part[0];
        for (std::size_t t = 1; t < part.size(); ++t) S += part[t];
    }
    S /= static_cast<Real>(c);
    vector<Real> lam;  // ascending
    matrix<Real> vectors;
    if (!symmetric_eigen(std::move(S), lam, vectors)) return std::nullopt;
    const index_t n = lam.size();
    const double cutoff = rel_cutoff * lam(n - 1);
    index_t first = n - 1;
    while (first > 0 && lam(first - 1) >= cutoff) --first;
    const index_t r = n - first;
    const auto V = vectors.rightCols(r);
    const Eigen::Array<Real, Eigen::Dynamic, 1> kept = lam.tail(r).array();
    if (via_gram) {
        // row j: v_j^T B^T / (sqrt(C) lambda_j)
        return matrix<Real>(((B * V).array().rowwise() / (std::sqrt(c) * kept).transpose()).matrix().transpose());
    }
    return matrix<Real>((V.array().rowwise() / kept.sqrt().transpose()).matrix().transpose());
}

// ||P (h_i - mu_{S_i})||^2 summed over the samples whose group lies in r, in blocks of columns,
// the samples split over threads in contiguous ranges (serial products, sums added in order).
template <class T>
double projected_within_scatter(const const_view<T>& H, const class_means& cm, group_range r,
                                const Eigen::MatrixXd& P, int threads = 1) {
    constexpr index_t block = 256;
    const index_t N = cm.num_samples();
    const int nt = team_size(threads, static_cast<double>(P.size()) * static_cast<double>(N), double(1 << 22), N / block);
    std::vector<double> part(static_cast<std::size_t>(nt), 0.0);
    parallel_ranges(nt, N, 1, [&](int t, index_t begin, index_t end) {
        Eigen::MatrixXd E(cm.dim(), block);
        index_t filled = 0;
        double acc = 0.0;
        const auto flush = [&] {
            acc += (P * E.leftCols(filled)).squaredNorm();
            filled = 0;
        };
        for (index_t i = begin; i < end; ++i) {
            const index_t g = cm.group_of[static_cast<std::size_t>(i)];
            if (g < r.begin || g >= r.end) continue;
            E.col(filled++) = H.col(i).template cast<double>() - cm.means.col(g);
            if (filled == block) flush();
        }
        if (filled > 0) flush();
        part[static_cast<std::size_t>(t)] = acc;
    });
    double acc = 0.0;
    for (double a : part) acc += a;
    return acc;
}

template <class T>
metric_by_multiplicity nc1_unchecked(const const_view<T>& H, const class_means& cm, int threads = 1) {
    metric_by_multiplicity out;
    for (const auto& [m, r] : cm.groups_by_multiplicity()) {
        const index_t C = r.size();
        if (C < 2) {
            out[m] = std::nullopt;
            continue;
        }
        const auto M = cm.means.middleCols(r.begin, C);
        const Eigen::VectorXd g = M.rowwise().mean();
        if (negligible((M.colwise() - g).colwise().norm().maxCoeff(), M.colwise().norm().maxCoeff() + g.norm(), C + 1)) {
            out[m] = std::nullopt;  // Sb = 0
            continue;
        }
        // One sample per label set (the pairs of the verify case, say): every residual is 0, so
        // Sw = 0 and tr(Sw Sb^+) = 0 exactly, the value the decomposition would lead to.
        bool singletons = true;
        for (index_t grp = r.begin; grp < r.end && singletons; ++grp) singletons = cm.counts[static_cast<std::size_t>(grp)] == 1;
        if (singletons) {
            out[m] = 0.0;
            continue;
        }
        const auto P = between_scatter_pinv_factor<double>(M, g, threads);
        if (!P) {
            out[m] = std::nullopt;
            continue;
        }
        index_t n_m = 0;
        for (index_t grp = r.begin; grp < r.end; ++grp) n_m += cm.counts[static_cast<std::size_t>(grp)];
        out[m] = projected_within_scatter<T>(H, cm, r, *P, threads) / static_cast<double>(n_m) / static_cast<double>(C);
    }
    return out;
}

// The angle between unit vectors a and b as 2 atan2(|a - b|, |a + b|): equal to arccos(a.b) but
// accurate near 0 and pi, where arccos of a rounded cosine loses half the digits.
template <class Da, class Db>
double unit_angle(const Eigen::MatrixBase<Da>& a, const Eigen::MatrixBase<Db>& b) {
    return 2.0 * std::atan2((a - b).norm(), (a + b).norm());
}

// The one place where features are averaged per label set: every mean of mlnc (the metrics, ONN,
// the tag-wise fit) comes from here. H must already be checked (d x N, finite).
template <class T>
class_means class_means_of(const const_view<T>& H, const label_sets& S, int threads = 1) {
    auto groups = group_by_label_set(S);
    class_means cm;
    const index_t G = groups.size();
    cm.means.resize(H.rows(), G);  // every column is assigned below (every group has a member)
    cm.counts.resize(static_cast<std::size_t>(G));
    const int nt = team_size(threads, static_cast<double>(H.rows()) * static_cast<double>(S.size()), double(1 << 20), G);
    parallel_ranges(nt, G, 1, [&](int, index_t begin, index_t end) {
        for (index_t g = begin; g < end; ++g) {
            const auto& members = groups.members[static_cast<std::size_t>(g)];
            auto mean = cm.means.col(g);
            mean = H.col(members.front()).template cast<double>();
            for (std::size_t j = 1; j < members.size(); ++j) mean += H.col(members[j]).template cast<double>();
            cm.counts[static_cast<std::size_t>(g)] = static_cast<index_t>(members.size());
            cm.means.col(g) /= static_cast<double>(members.size());
        }
    });
    cm.group_of = std::move(groups.group_of);
    cm.sets = std::move(groups.sets);
    while (cm.num_singletons < G && cm.sets.multiplicity(cm.num_singletons) == 1) ++cm.num_singletons;
    return cm;
}

template <class T>
void check_samples_and_features(const const_view<T>& H, const label_sets& S) {
    if (S.empty()) throw error("labels: no samples");
    check_features(H, S.size());
}

}  // namespace detail

// Groups the samples by label set and averages their features in double. H is d x N, float or
// double. Throws mlnc::error when S is empty, H is not d x N, or H holds NaN/Inf.
template <class DH>
class_means compute_class_means(const Eigen::MatrixBase<DH>& H, const label_sets& S) {
    static_assert(detail::is_real_v<typename DH::Scalar>, "mlnc: features H must be float or double");
    const detail::const_view<typename DH::Scalar> Hv(H.derived());
    detail::check_samples_and_features(Hv, S);
    return detail::class_means_of(Hv, S);
}

// NC1_m = tr(Sw Sb^+) / C_m for every multiplicity m present, with Sw the within-class and Sb the
// between-class scatter of the C_m classes of size m. nullopt where C_m < 2 or Sb = 0.
// cm must be compute_class_means(H, S) for this H.
template <class DH>
metric_by_multiplicity nc1_by_multiplicity(const Eigen::MatrixBase<DH>& H, const class_means& cm) {
    static_assert(detail::is_real_v<typename DH::Scalar>, "mlnc: features H must be float or double");
    const detail::const_view<typename DH::Scalar> Hv(H.derived());
    detail::check_features(Hv, cm.num_samples());
    if (Hv.rows() != cm.dim())
        throw error("H: has " + std::to_string(Hv.rows()) + " rows but the class means have " +
                    std::to_string(cm.dim()) + " (cm must come from this H)");
    return detail::nc1_unchecked(Hv, cm);
}

template <class DH>
metric_by_multiplicity nc1_by_multiplicity(const Eigen::MatrixBase<DH>& H, const label_sets& S) {
    static_assert(detail::is_real_v<typename DH::Scalar>, "mlnc: features H must be float or double");
    const detail::const_view<typename DH::Scalar> Hv(H.derived());
    detail::check_samples_and_features(Hv, S);
    return detail::nc1_unchecked(Hv, detail::class_means_of(Hv, S));
}

// NC2 of the K rows of M: || M M^T / ||M M^T||_F - (I_K - J/K) / sqrt(K-1) ||_F.
// M is the classifier W, or class_means::centered_label_means() for NC2 on the features.
// nullopt when M = 0. `name` is the argument named in error messages.
template <class DM>
std::optional<double> nc2(const Eigen::MatrixBase<DM>& M, const char* name = "W") {
    static_assert(detail::is_real_v<typename DM::Scalar>, "mlnc: nc2 needs a float or double matrix");
    if (M.rows() < 2 || M.cols() < 1)
        throw error(std::string(name) + ": expected K x d with K >= 2 and d >= 1, got " + std::to_string(M.rows()) +
                    " x " + std::to_string(M.cols()));
    detail::check_finite(M, name);
    const Eigen::MatrixXd X = detail::scaled_copy(M);
    return detail::etf_gram_deviation_if_defined(X * X.transpose());
}

// NC2 on the features: nc2 of Mc (rows mu_k - mu_G); nullopt when all mu_k are equal.
// Throws when some mu_k is undefined.
template <class Real = double>
std::optional<double> nc2_features(const class_means& cm) {
    const auto Mc = detail::significant_centered_label_means<Real>(cm);
    if (!Mc) return std::nullopt;
    const matrix<Real> X = detail::scaled_copy(*Mc);
    return detail::etf_gram_deviation_if_defined(X * X.transpose());
}

// NC3: the ETF deviation of W Mc^T (K x K). nullopt when W Mc^T = 0 or all mu_k are equal.
// Throws when W is not K x d or not finite, or when some mu_k is undefined.
template <class DW>
std::optional<double> nc3(const Eigen::MatrixBase<DW>& W, const class_means& cm) {
    detail::check_classifier(W, cm.num_labels(), cm.dim());
    const auto Mc = detail::significant_centered_label_means(cm);
    if (!Mc) return std::nullopt;
    const Eigen::MatrixXd Ws = detail::scaled_copy(W);
    return detail::etf_gram_deviation_if_defined(Ws * detail::scaled_copy(*Mc).transpose());
}

// Where NC_m measures angles from: mu_G (the definition) or the origin (the published code).
enum class nc_m_origin { global_mean, zero };

// NC_m's denominator is a mean over |F_m|^2 pairs of sets. Up to max_exact_pairs pairs it is
// computed exactly; past that, its off-diagonal part (pairs S != T) is estimated from `pairs`
// pairs drawn uniformly (with replacement, mt19937_64(seed + m)), and the standard error of the
// resulting NC_m (delta method) is reported beside it. The diagonal mean is always exact.
struct nc_m_sampling {
    index_t max_exact_pairs = index_t{1} << 24;  // 16.8 M pairs: |F_m| up to 4096
    index_t pairs = index_t{1} << 20;            // ~1 M sampled pairs: NC_m to ~1e-3 relative
    std::uint64_t seed = 0;
};

// NC_m for every multiplicity m >= 2 present, over the sets F_m of size m:
//   u_S = mu_S - o, v_T = sum_{k in T} (mu_k - o), o = mu_G (or 0),
//   NC_m = mean_{S} angle(u_S, v_S) / mean_{S, T} angle(u_S, v_T), angles in radians.
// nullopt where some u_S or v_T is zero (always so for m = K centred: the c_k sum to 0), or
// where every angle is 0 (the mean angle is below 16 sqrt(eps) ~ 2.4e-7 rad, about ten times the
// resolution of an arccos of a rounded cosine). Throws when some mu_k is undefined.
// Cost O(|F_m| K d + |F_m|^2 m): the cross inner products come from Mc^T U, not from U^T V. The
// |F_m|^2 angles are shared among be.threads threads by rows s; the row sums are added in row
// order, so the result is the same bit for bit at any thread count. Past sampling.max_exact_pairs
// pairs the cross mean is estimated (see nc_m_sampling); the standard error of each estimated
// NC_m goes to *standard_error when it is not null (exact values have no entry there).
template <class Real = double>
metric_by_multiplicity nc_m(const cpu& be, const class_means& cm, nc_m_origin origin = nc_m_origin::global_mean,
                            const nc_m_sampling& sampling = {}, metric_by_multiplicity* standard_error = nullptr) {
    detail::check_backend_value(be);
    detail::require(sampling.max_exact_pairs >= 0, "sampling.max_exact_pairs", "must be >= 0");
    detail::require(sampling.pairs >= 1, "sampling.pairs", "must be >= 1");
    using mat = matrix<Real>;
    using vec = vector<Real>;
    cm.require_label_means();
    metric_by_multiplicity out;
    const auto ranges = cm.groups_by_multiplicity();
    if (ranges.empty() || ranges.max_multiplicity() < 2) return out;

    const double scale = cm.means.cwiseAbs().maxCoeff();
    const double inv_scale = scale > 0 ? 1.0 / scale : 1.0;
    const mat mu = cm.label_means<Real>() * inv_scale;  // d x K
    const vec o =
        origin == nc_m_origin::global_mean ? vec(mu.rowwise().mean()) : vec::Zero(cm.dim());
    const mat Cm = mu.colwise() - o;  // column k: mu_k - o
    const index_t K = cm.num_labels();

    for (const auto& [m, r] : ranges) {
        if (m < 2) continue;
        const index_t F = r.size();
        const auto Mu = cm.means.middleCols(r.begin, F);
        const double f = static_cast<double>(F);
        const bool exact = f * f <= static_cast<double>(sampling.max_exact_pairs) || F < 2;
        // u_S = mu_S - o and v_S = sum_{k in S} c_k are formed one sample at a time (no d x F
        // matrices: at F = 20 000 and d = 256 each is 40 MB, whose page faults alone cost more
        // than the angles); the exact route also keeps U for CU = C^T U (F <= 4096 there).
        const double o_norm = o.norm();
        vec mu_norm(K);
        for (index_t k = 0; k < K; ++k) mu_norm(k) = mu.col(k).norm();
        const auto u_of = [&](index_t s, vec& u) { u.noalias() = Mu.col(s) * inv_scale - o; };
        const auto v_of = [&](index_t t, vec& v) {
            v.setZero();
            for (label_t k : cm.sets[r.begin + t]) v += Cm.col(k);
        };
        vec nu(F), nv(F);
        std::vector<double> same(static_cast<std::size_t>(F)), row(static_cast<std::size_t>(F));
        const int nt_vec = detail::team_size(be.threads, f * static_cast<double>(m + 2) * static_cast<double>(cm.dim()),
                                             1e5, F);
        std::vector<char> zero(static_cast<std::size_t>(nt_vec), 0);
        detail::parallel_ranges(nt_vec, F, 1, [&](int th, index_t begin, index_t end) {
            vec u(cm.dim()), v(cm.dim());
            for (index_t t = begin; t < end; ++t) {
                u_of(t, u);
                v_of(t, v);
                double terms = 0.0;
                for (label_t k : cm.sets[r.begin + t]) terms += mu_norm(k) + o_norm;
                nu(t) = u.norm();
                nv(t) = v.norm();
                if (detail::negligible(nv(t), terms, K + m) ||
                    detail::negligible(nu(t), Mu.col(t).norm() * inv_scale + o_norm, K + 1)) {
                    zero[static_cast<std::size_t>(th)] = 1;
                    continue;
                }
                same[static_cast<std::size_t>(t)] = detail::unit_angle(u / nu(t), v / nv(t));
            }
        });
        if (std::find(zero.begin(), zero.end(), 1) != zero.end()) {
            out[m] = std::nullopt;
            continue;
        }
        // angle(u_S, v_T), S != T, from u_S . v_T = sum_{k in T} c_k . u_S: read from CU (exact)
        // or computed with u_S at hand (sampled pairs come grouped by S).
        const mat CU = exact ? mat(Cm.transpose() * ((Mu * inv_scale).colwise() - o)) : mat();
        const auto angle_of = [&](index_t s, index_t t, double dot) {
            return std::acos(std::clamp(dot / (nu(s) * nv(t)), -1.0, 1.0));
        };
        if (exact) {
            detail::parallel_ranges(detail::team_size(be.threads, f * f * static_cast<double>(m), 1e5, F), F, 1,
                                    [&](int, index_t begin, index_t end) {
                                        for (index_t s = begin; s < end; ++s) {
                                            double sum = 0.0;
                                            for (index_t t = 0; t < F; ++t) {
                                                if (t == s) continue;
                                                double dot = 0.0;
                                                for (label_t k : cm.sets[r.begin + t]) dot += CU(k, s);
                                                sum += angle_of(s, t, dot);
                                            }
                                            row[static_cast<std::size_t>(s)] = sum;
                                        }
                                    });
        }
        double matched = 0.0, off = 0.0;
        for (index_t s = 0; s < F; ++s) {
            matched += same[static_cast<std::size_t>(s)];
            off += row[static_cast<std::size_t>(s)];
        }
        // mean_all = (sum of the diagonal + sum off it) / F^2; estimated: the off-diagonal mean
        // from sampled pairs, with its standard error.
        double mean_off = exact && F > 1 ? off / (f * (f - 1)) : 0.0, se_off = 0.0;
        if (!exact) {
            const index_t M = sampling.pairs;
            // The pairs, grouped by s (a counting sort, stable) so that consecutive pairs share
            // u_S: a fixed order, the same at every thread count. The stream is drawn twice (to
            // count, then to place) rather than stored, and the buffers are not zeroed first.
            const auto draw = [&, F](std::mt19937_64& rng) {  // s uniform, t uniform among the F - 1 others
                const auto a = static_cast<index_t>(rng() % static_cast<std::uint64_t>(F));
                auto b = static_cast<index_t>(rng() % static_cast<std::uint64_t>(F - 1));
                if (b >= a) ++b;
                return std::pair<index_t, index_t>{a, b};
            };
            std::vector<index_t> first(static_cast<std::size_t>(F) + 1, 0);
            std::mt19937_64 rng(sampling.seed + static_cast<std::uint64_t>(m));
            for (index_t j = 0; j < M; ++j) ++first[static_cast<std::size_t>(draw(rng).first) + 1];
            for (std::size_t s = 0; s < static_cast<std::size_t>(F); ++s) first[s + 1] += first[s];
            const auto pair_s = std::make_unique_for_overwrite<index_t[]>(static_cast<std::size_t>(M));
            const auto pair_t = std::make_unique_for_overwrite<index_t[]>(static_cast<std::size_t>(M));
            rng.seed(sampling.seed + static_cast<std::uint64_t>(m));
            for (index_t j = 0; j < M; ++j) {
                const auto [a, b] = draw(rng);
                const auto at = static_cast<std::size_t>(first[static_cast<std::size_t>(a)]++);
                pair_s[at] = a;
                pair_t[at] = b;
            }
            const auto angle = std::make_unique_for_overwrite<double[]>(static_cast<std::size_t>(M));
            detail::parallel_ranges(
                detail::team_size(be.threads, static_cast<double>(M) * m * static_cast<double>(cm.dim()), 1e5, M), M, 1,
                [&](int, index_t begin, index_t end) {
                    vec u(cm.dim());
                    index_t current = -1;
                    for (index_t j = begin; j < end; ++j) {
                        const index_t a = pair_s[static_cast<std::size_t>(j)], b = pair_t[static_cast<std::size_t>(j)];
                        if (a != current) u_of(current = a, u);
                        double dot = 0.0;
                        for (label_t k : cm.sets[r.begin + b]) dot += Cm.col(k).dot(u);
                        angle[static_cast<std::size_t>(j)] = angle_of(a, b, dot);
                    }
                });
            double sum = 0.0;
            for (index_t j = 0; j < M; ++j) sum += angle[static_cast<std::size_t>(j)];
            mean_off = sum / static_cast<double>(M);
            double ss = 0.0;
            for (index_t j = 0; j < M; ++j) {
                const double e = angle[static_cast<std::size_t>(j)] - mean_off;
                ss += e * e;
            }
            se_off = M > 1 ? std::sqrt(ss / static_cast<double>(M - 1) / static_cast<double>(M)) : 0.0;
        }
        const double mean_same = matched / f;
        const double mean_all = mean_same / f + mean_off * (f - 1) / f;
        if (mean_all <= 16 * std::sqrt(std::numeric_limits<double>::epsilon())) {
            out[m] = std::nullopt;  // 0/0: every u_S is parallel to every v_T
            continue;
        }
        out[m] = mean_same / mean_all;
        if (!exact && standard_error != nullptr)
            (*standard_error)[m] = mean_same * ((f - 1) / f) * se_off / (mean_all * mean_all);
    }
    return out;
}

template <class Real = double>
metric_by_multiplicity nc_m(const class_means& cm, nc_m_origin origin = nc_m_origin::global_mean) {
    return nc_m<Real>(cpu{}, cm, origin);
}

// What compute_nc_metrics computes besides the metrics that are always computed.
struct nc_metrics_options {
    bool nc_m_uncentered = true;  // NC_m centred at 0 as well (the published code's variant)
    nc_m_sampling sampling{};     // when NC_m is estimated rather than computed exactly
};

// All metrics of docs/metrics.md; the W-dependent ones are nullopt here.
struct nc_metrics {
    std::optional<double> nc1;                 // NC1_1
    metric_by_multiplicity nc1_by_multiplicity;  // every multiplicity present
    std::optional<double> nc2_w;               // NC2 on the classifier (needs W)
    std::optional<double> nc2_h;               // NC2 on the feature means
    std::optional<double> nc3;                 // needs W
    metric_by_multiplicity nc_m;               // m >= 2, centred at mu_G
    metric_by_multiplicity nc_m_uncentered;    // m >= 2, centred at 0
    // The standard errors of the NC_m values that were estimated from sampled pairs
    // (nc_m_sampling); no entry where NC_m is exact.
    metric_by_multiplicity nc_m_standard_error;
    metric_by_multiplicity nc_m_uncentered_standard_error;
};

namespace detail {
template <class T>
nc_metrics nc_metrics_from_means(const cpu& be, const const_view<T>& H, const class_means& cm,
                                 const nc_metrics_options& opt) {
    cm.require_label_means();
    nc_metrics r;
    r.nc1_by_multiplicity = nc1_unchecked(H, cm, be.threads);
    r.nc1 = r.nc1_by_multiplicity.at(1);
    r.nc2_h = nc2_features(cm);
    r.nc_m = nc_m(be, cm, nc_m_origin::global_mean, opt.sampling, &r.nc_m_standard_error);
    if (opt.nc_m_uncentered)
        r.nc_m_uncentered = nc_m(be, cm, nc_m_origin::zero, opt.sampling, &r.nc_m_uncentered_standard_error);
    return r;
}
}  // namespace detail

// NC1 (all multiplicities), NC2 on the features and NC_m (both centrings, unless opt says
// otherwise) of H (d x N) with S; NC_m's angles on be.threads threads.
// Throws mlnc::error on a shape mismatch, NaN/Inf, or a label without a multiplicity-1 sample.
template <class DH>
nc_metrics compute_nc_metrics(const cpu& be, const Eigen::MatrixBase<DH>& H, const label_sets& S,
                              const nc_metrics_options& opt = {}) {
    static_assert(detail::is_real_v<typename DH::Scalar>, "mlnc: features H must be float or double");
    const detail::const_view<typename DH::Scalar> Hv(H.derived());
    detail::check_samples_and_features(Hv, S);
    return detail::nc_metrics_from_means(be, Hv, detail::class_means_of(Hv, S, be.threads), opt);
}
template <class DH>
nc_metrics compute_nc_metrics(const Eigen::MatrixBase<DH>& H, const label_sets& S) {
    return compute_nc_metrics(cpu{}, H, S);
}

// The same plus NC2 on W and NC3; W is K x d (float or double, independently of H).
template <class DH, class DW>
nc_metrics compute_nc_metrics(const cpu& be, const Eigen::MatrixBase<DH>& H, const label_sets& S,
                              const Eigen::MatrixBase<DW>& W, const nc_metrics_options& opt = {}) {
    static_assert(detail::is_real_v<typename DH::Scalar>, "mlnc: features H must be float or double");
    const detail::const_view<typename DH::Scalar> Hv(H.derived());
    detail::check_samples_and_features(Hv, S);
    detail::check_classifier(W, S.num_labels(), Hv.rows());
    const class_means cm = detail::class_means_of(Hv, S, be.threads);
    nc_metrics r = detail::nc_metrics_from_means(be, Hv, cm, opt);
    r.nc2_w = nc2(W, "W");
    r.nc3 = nc3(W, cm);
    return r;
}
template <class DH, class DW>
nc_metrics compute_nc_metrics(const Eigen::MatrixBase<DH>& H, const label_sets& S, const Eigen::MatrixBase<DW>& W) {
    return compute_nc_metrics(cpu{}, H, S, W);
}

}  // namespace mlnc

// mlnc::precompiled: these instances are compiled once, into the library, and only declared here.
#if MLNC_PRECOMPILED
#if defined(MLNC_INSTANTIATE_METRICS)
#define MLNC_INSTANCE template
#else
#define MLNC_INSTANCE extern template
#endif
namespace mlnc::detail {
MLNC_INSTANCE class_means class_means_of(const const_view<float>&, const label_sets&, int);
MLNC_INSTANCE class_means class_means_of(const const_view<double>&, const label_sets&, int);
MLNC_INSTANCE nc_metrics nc_metrics_from_means(const cpu&, const const_view<float>&, const class_means&,
                                               const nc_metrics_options&);
MLNC_INSTANCE nc_metrics nc_metrics_from_means(const cpu&, const const_view<double>&, const class_means&,
                                               const nc_metrics_options&);
}  // namespace mlnc::detail
#undef MLNC_INSTANCE
#endif
