#include <mlnc/etf.hpp>

#include <catch2/catch.hpp>

#include <cmath>
#include <limits>
#include <optional>
#include <vector>

using mlnc::index_t;

namespace {

// Largest deviation of W from the three defining identities of a simplex ETF with row norm w:
// W W^T = (rho/(K-1)) (I - J/K) with rho = K w^2, rows summing to 0, equal row norms w.
struct etf_errors {
    double gram = 0, row_sum = 0, norms = 0;
};

template <class T>
etf_errors identity_errors(const mlnc::matrix<T>& Wt, double w) {
    const Eigen::MatrixXd W = Wt.template cast<double>();
    const index_t K = W.rows();
    const double rho = static_cast<double>(K) * w * w;
    const Eigen::MatrixXd P = Eigen::MatrixXd::Identity(K, K) - Eigen::MatrixXd::Constant(K, K, 1.0 / static_cast<double>(K));
    etf_errors e;
    e.gram = (W * W.transpose() - rho / static_cast<double>(K - 1) * P).cwiseAbs().maxCoeff();
    e.row_sum = W.colwise().sum().cwiseAbs().maxCoeff();
    e.norms = (W.rowwise().norm().array() - w).abs().maxCoeff();
    return e;
}

}  // namespace

TEST_CASE("simplex_etf satisfies the ETF identities to 1e-13 in double", "[etf]") {
    // Each entry of W W^T is a sum of d products of entries of size <= w, rounded at ~eps each: the
    // error is a small multiple of d * eps * w^2 (~2e-14 for d = 74), well inside 1e-13 * max(1, w^2).
    for (index_t K : {2, 3, 5, 10, 37}) {
        for (index_t d : {K - 1, K, 2 * K}) {
            for (double w : {1.0, 2.5, 0.3}) {
                for (std::optional<std::uint64_t> seed : {std::optional<std::uint64_t>{}, std::optional<std::uint64_t>{42}}) {
                    CAPTURE(K, d, w, seed.has_value());
                    const Eigen::MatrixXd W = mlnc::simplex_etf(K, d, w, seed);
                    REQUIRE(W.rows() == K);
                    REQUIRE(W.cols() == d);
                    const etf_errors e = identity_errors(W, w);
                    CHECK(e.gram <= 1e-13 * std::max(1.0, w * w));
                    CHECK(e.row_sum <= 1e-13 * std::max(1.0, w));
                    CHECK(e.norms <= 1e-13 * std::max(1.0, w));
                    CHECK(mlnc::etf_deviation(W) <= 1e-13);
                }
            }
        }
    }
}

TEST_CASE("simplex_etf: pairwise cosines are exactly -1/(K-1)", "[etf]") {
    const index_t K = 7;
    const Eigen::MatrixXd W = mlnc::simplex_etf(K, 9, 1.7, std::uint64_t{3});
    for (index_t i = 0; i < K; ++i)
        for (index_t j = i + 1; j < K; ++j) {
            const double cosine = W.row(i).dot(W.row(j)) / (W.row(i).norm() * W.row(j).norm());
            CHECK(std::abs(cosine + 1.0 / static_cast<double>(K - 1)) <= 1e-14);
        }
}

TEST_CASE("simplex_etf rotation: seeded, reproducible, fills all d columns", "[etf]") {
    const index_t K = 6, d = 12;
    const Eigen::MatrixXd plain = mlnc::simplex_etf(K, d, 1.0);
    // Without rotation the columns beyond K-1 are exactly zero (Helmert basis padded with zeros).
    CHECK(plain.rightCols(d - (K - 1)).cwiseAbs().maxCoeff() == 0.0);
    const Eigen::MatrixXd a = mlnc::simplex_etf(K, d, 1.0, std::uint64_t{5});
    const Eigen::MatrixXd b = mlnc::simplex_etf(K, d, 1.0, std::uint64_t{5});
    const Eigen::MatrixXd c = mlnc::simplex_etf(K, d, 1.0, std::uint64_t{6});
    CHECK(a == b);
    CHECK((a - c).cwiseAbs().maxCoeff() > 0.1);
    // A Haar rotation moves mass into every column: none of the padding columns stays near zero.
    CHECK(a.rightCols(d - (K - 1)).colwise().norm().minCoeff() > 1e-3);
    // The seeded rotation is an orthogonal Q with a = plain * Q.
    const Eigen::MatrixXd Q = mlnc::detail::haar_orthogonal(d, 5);
    CHECK((Q.transpose() * Q - Eigen::MatrixXd::Identity(d, d)).cwiseAbs().maxCoeff() <= 1e-14);
    CHECK((plain * Q - a).cwiseAbs().maxCoeff() <= 1e-15);
}

TEST_CASE("haar_orthogonal: entries have the moments of a uniform rotation", "[etf]") {
    // For Haar Q in O(d) an entry q has E q = 0 and E q^4 = 3 / (d (d+2)) (= 0.0857 for d = 5, with
    // sd(q^4) ~ 0.15). Over 400 draws (10^4 entries, 2000 on the diagonal) the sample means have sd
    // ~ 0.0045 (q), ~ 0.0015 (q^4) and ~ 0.01 (diagonal q); we allow 5 sd. A QR without the sign fix
    // has diagonal entries -|g_j| / ||g|| < 0 on average (about -0.36) and fails the diagonal check.
    const index_t d = 5;
    double sum = 0, sum_4 = 0, diag = 0;
    const int draws = 400;
    for (int t = 0; t < draws; ++t) {
        const Eigen::MatrixXd Q = mlnc::detail::haar_orthogonal(d, static_cast<std::uint64_t>(1000 + t));
        sum += Q.sum();
        sum_4 += Q.array().pow(4).sum();
        diag += Q.diagonal().sum();
    }
    const double count = static_cast<double>(draws * d * d);
    CHECK(std::abs(sum / count) < 5 * 0.0045);
    CHECK(std::abs(sum_4 / count - 3.0 / static_cast<double>(d * (d + 2))) < 5 * 0.0015);
    CHECK(std::abs(diag / static_cast<double>(draws * d)) < 5 * 0.01);
}

TEST_CASE("simplex_etf in float", "[etf]") {
    // Built in double, rounded once to float: errors are a few float ulps (~1e-7 relative).
    for (index_t K : {3, 8}) {
        const mlnc::matrix<float> W = mlnc::simplex_etf<float>(K, K + 2, 2.0f, std::uint64_t{9});
        const etf_errors e = identity_errors(W, 2.0);
        CHECK(e.gram <= 1e-5);
        CHECK(e.row_sum <= 1e-5);
        CHECK(e.norms <= 1e-5);
    }
}

TEST_CASE("simplex_etf refuses what is not a simplex ETF", "[etf]") {
    CHECK_THROWS_AS(mlnc::simplex_etf(1, 3), mlnc::error);
    CHECK_THROWS_AS(mlnc::simplex_etf(0, 3), mlnc::error);
    CHECK_THROWS_AS(mlnc::simplex_etf(5, 3), mlnc::error);
    CHECK_THROWS_AS(mlnc::simplex_etf(5, -1), mlnc::error);
    CHECK_THROWS_AS(mlnc::simplex_etf(5, 4, -1.0), mlnc::error);
    CHECK_THROWS_AS(mlnc::simplex_etf(5, 4, std::numeric_limits<double>::quiet_NaN()), mlnc::error);
    CHECK_THROWS_WITH(mlnc::simplex_etf(5, 3), Catch::Contains("d") && Catch::Contains("K-1 = 4"));
    CHECK_NOTHROW(mlnc::simplex_etf(5, 4));
    // Row norm 0 is the (degenerate) zero classifier, used for the trivial optimum.
    CHECK(mlnc::simplex_etf(5, 4, 0.0).cwiseAbs().maxCoeff() == 0.0);
}

TEST_CASE("etf_gram_deviation: exact values", "[etf]") {
    for (index_t K : {2, 4, 9}) {
        CAPTURE(K);
        const double Kd = static_cast<double>(K);
        const Eigen::MatrixXd I = Eigen::MatrixXd::Identity(K, K);
        const Eigen::MatrixXd J = Eigen::MatrixXd::Ones(K, K);
        const Eigen::MatrixXd P = I - J / Kd;
        CHECK(mlnc::etf_gram_deviation(3.5 * P) <= 1e-15);
        // -P points the opposite way: distance 2 between unit vectors.
        CHECK(mlnc::etf_gram_deviation(-P) == Approx(2.0).epsilon(1e-14));
        // J / ||J|| = J / K is orthogonal to P (trace(P J) = 0): distance sqrt(2).
        CHECK(mlnc::etf_gram_deviation(J) == Approx(std::sqrt(2.0)).epsilon(1e-14));
        // I / sqrt(K) against P / sqrt(K-1): <I, P> / (sqrt(K) sqrt(K-1)) = (K-1) / sqrt(K (K-1)),
        // so the distance is sqrt(2 - 2 sqrt((K-1)/K)).
        CHECK(mlnc::etf_gram_deviation(I) == Approx(std::sqrt(2.0 - 2.0 * std::sqrt((Kd - 1.0) / Kd))).epsilon(1e-12));
    }
}

TEST_CASE("etf_deviation grows with a perturbation and ignores scale", "[etf]") {
    const Eigen::MatrixXd W = mlnc::simplex_etf(6, 8, 1.0, std::uint64_t{1});
    Eigen::MatrixXd E = Eigen::MatrixXd::Zero(6, 8);
    E(0, 0) = 1e-3;
    const double small = mlnc::etf_deviation(W + E);
    const double large = mlnc::etf_deviation(W + 100.0 * E);
    CHECK(small > 1e-5);
    CHECK(large > 10 * small);
    CHECK(mlnc::etf_deviation(7.0 * (W + E)) == Approx(small).epsilon(1e-10));
    const Eigen::MatrixXf Wf = W.cast<float>();
    CHECK(mlnc::etf_deviation(Wf) <= 1e-6);
}

TEST_CASE("etf_gram_deviation refuses bad matrices", "[etf]") {
    CHECK_THROWS_AS(mlnc::etf_gram_deviation(Eigen::MatrixXd::Ones(3, 4)), mlnc::error);
    CHECK_THROWS_AS(mlnc::etf_gram_deviation(Eigen::MatrixXd::Ones(1, 1)), mlnc::error);
    CHECK_THROWS_AS(mlnc::etf_gram_deviation(Eigen::MatrixXd::Zero(3, 3)), mlnc::error);
    Eigen::MatrixXd A = Eigen::MatrixXd::Identity(3, 3);
    A(1, 2) = std::numeric_limits<double>::quiet_NaN();
    CHECK_THROWS_AS(mlnc::etf_gram_deviation(A), mlnc::error);
    CHECK_THROWS_AS(mlnc::etf_deviation(Eigen::MatrixXd::Zero(4, 3)), mlnc::error);
}
