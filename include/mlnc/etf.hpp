#pragma once
// Simplex equiangular tight frames (ETF): the classifier geometry of neural collapse.
//
// A K-simplex ETF with row norm w is a K x d matrix W (d >= K-1) whose rows w_k satisfy
//   W W^T = (rho / (K-1)) (I_K - J_K / K),   rho = ||W||_F^2 = K w^2,
// i.e. equal norms, pairwise cosine -1/(K-1), and rows summing to zero.

#include <mlnc/detail/random.hpp>
#include <mlnc/error.hpp>
#include <mlnc/labels.hpp>
#include <mlnc/types.hpp>

#include <Eigen/Core>

#include <cmath>
#include <cstdint>
#include <optional>
#include <string>
#include <type_traits>

namespace mlnc {

namespace detail {

// d x d Haar-distributed orthogonal matrix: the Q of the QR factorisation of a standard Gaussian
// matrix G whose R has a positive diagonal (with any other sign convention Q is not uniformly
// distributed). Gram-Schmidt gives exactly that factor: column j of Q is column j of G minus its
// projections on the columns before, normalised. Orthogonalised twice ("twice is enough",
// Giraud et al. 2005), it is orthogonal to rounding for the well-conditioned G of this use; the
// plain loops also keep a Householder QR out of every program that builds an ETF. The Gaussians
// come from detail::gaussian_stream, so a seed gives the same rotation with every standard library.
template <class Real = double>
matrix<Real> haar_orthogonal(Eigen::Index d, std::uint64_t seed) {
    gaussian_stream gauss(seed);
    matrix<Real> Q(d, d);
    for (Eigen::Index i = 0; i < Q.size(); ++i) Q.data()[i] = static_cast<Real>(gauss());
    for (Eigen::Index j = 0; j < d; ++j) {
        auto q = Q.col(j);
        for (int pass = 0; pass < 2; ++pass)
            for (Eigen::Index k = 0; k < j; ++k) q -= Q.col(k).dot(q) * Q.col(k);
        q /= q.norm();
    }
    return Q;
}

}  // namespace detail

// The K x d simplex ETF with the given row norm (rows are the classifier vectors w_k), for any
// d >= K-1. Its first K-1 columns are the Helmert basis of the complement of the all-ones vector
// (column j holds 1 in rows 0..j and -(j+1) in row j+1, normalised), scaled so every row has
// norm row_norm; further columns are 0. With a rotation_seed, W is multiplied on the right by a
// seeded Haar-random d x d orthogonal matrix, which keeps W W^T and spreads W over all of R^d.
// Computed in double and then cast to T. T is chosen explicitly (simplex_etf<float>(...)), never
// deduced from the row_norm argument, so simplex_etf(K, d, 1) is a double ETF.
template <class T = double>
matrix<T> simplex_etf(index_t K, index_t d, std::type_identity_t<T> row_norm = T(1),
                      std::optional<std::uint64_t> rotation_seed = std::nullopt) {
    static_assert(std::is_floating_point_v<T>, "mlnc: simplex_etf needs a floating-point scalar");
    detail::require(K >= 2, "simplex_etf: K", "must be at least 2, got " + std::to_string(K));
    detail::require(d >= K - 1, "simplex_etf: d",
                    "must be at least K-1 = " + std::to_string(K - 1) + " for a simplex ETF, got " + std::to_string(d));
    detail::require(std::isfinite(static_cast<double>(row_norm)) && row_norm >= 0, "simplex_etf: row_norm",
                    "must be finite and >= 0");
    const double scale = static_cast<double>(row_norm) * std::sqrt(static_cast<double>(K) / static_cast<double>(K - 1));
    Eigen::MatrixXd W = Eigen::MatrixXd::Zero(K, d);
    for (index_t j = 0; j + 1 < K; ++j) {
        const double jp = static_cast<double>(j + 1);
        const double u = scale / std::sqrt(jp * (jp + 1.0));
        W.col(j).head(j + 1).setConstant(u);
        W(j + 1, j) = -jp * u;
    }
    if (rotation_seed) W = W * detail::haar_orthogonal(d, *rotation_seed);
    return W.cast<T>();
}

// || A / ||A||_F - (I_K - J_K/K) / sqrt(K-1) ||_F for a K x K matrix A: the NC2 distance of a Gram
// matrix from the simplex-ETF Gram matrix (metrics.md), between 0 and 2. Used with A = W W^T
// (NC2 on W), A = Mc Mc^T (NC2 on feature means) and A = W Mc^T (NC3). A must be square with
// K >= 2, finite and non-zero (the direction of the zero matrix is undefined).
template <class D>
double etf_gram_deviation(const Eigen::MatrixBase<D>& expr) {
    // An expression (W W^T, Mc Mc^T) is evaluated once here: read entry by entry, a product
    // expression would be evaluated again for every entry (K^2 products).
    const auto& A = expr.derived().eval();
    detail::require(A.rows() == A.cols(), "etf_gram_deviation: A",
                    "must be square, got " + std::to_string(A.rows()) + " x " + std::to_string(A.cols()));
    const index_t K = A.rows();
    detail::require(K >= 2, "etf_gram_deviation: A", "must be at least 2 x 2");
    detail::require(A.allFinite(), "etf_gram_deviation: A", "contains NaN or Inf");
    const double nA = static_cast<double>(A.norm());
    detail::require(nA > 0, "etf_gram_deviation: A", "is the zero matrix, whose direction is undefined");
    const double inv = 1.0 / nA;
    const double off = -1.0 / (static_cast<double>(K) * std::sqrt(static_cast<double>(K - 1)));
    const double diag = (1.0 - 1.0 / static_cast<double>(K)) / std::sqrt(static_cast<double>(K - 1));
    double sum = 0.0;  // the reference Gram matrix is formed entry by entry, never stored
    for (index_t j = 0; j < K; ++j)
        for (index_t i = 0; i < K; ++i) {
            const double e = static_cast<double>(A(i, j)) * inv - (i == j ? diag : off);
            sum += e * e;
        }
    return std::sqrt(sum);
}

// NC2 on a classifier: etf_gram_deviation(W W^T) for a K x d matrix W (computed in double).
template <class D>
double etf_deviation(const Eigen::MatrixBase<D>& W) {
    const Eigen::MatrixXd Wd = W.template cast<double>();
    Eigen::MatrixXd G(Wd.rows(), Wd.rows());
    G.noalias() = Wd * Wd.transpose();
    return etf_gram_deviation(G);
}

}  // namespace mlnc

// mlnc::precompiled: these instances are compiled once, into the library, and only declared here.
#if MLNC_PRECOMPILED
#if defined(MLNC_INSTANTIATE_ETF)
#define MLNC_INSTANCE template
#else
#define MLNC_INSTANCE extern template
#endif
namespace mlnc {
MLNC_INSTANCE matrix<float> simplex_etf<float>(index_t, index_t, float, std::optional<std::uint64_t>);
MLNC_INSTANCE matrix<double> simplex_etf<double>(index_t, index_t, double, std::optional<std::uint64_t>);
}  // namespace mlnc
#undef MLNC_INSTANCE
#endif
