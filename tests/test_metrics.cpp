#include <mlnc/metrics.hpp>

#include <catch2/catch.hpp>

#include "test_support.hpp"

#include <Eigen/Eigenvalues>
#include <Eigen/QR>
#include <Eigen/SVD>

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <numbers>
#include <optional>
#include <random>
#include <vector>

using mlnc::index_t;
using mlnc::label_sets;
using mlnc::label_t;
using Catch::Matchers::Contains;

using mlnc_test::gaussian;

namespace {

constexpr double pi = std::numbers::pi;

Eigen::MatrixXd random_orthogonal(index_t d, std::mt19937& rng) {
    const Eigen::HouseholderQR<Eigen::MatrixXd> qr(gaussian(d, d, rng));
    return qr.householderQ();
}

// A simplex ETF of K unit rows in R^d (d >= K-1), in a random orientation: an orthonormal basis
// of the complement of the all-ones vector (first K-1 columns of a QR of I - J/K), scaled so
// that W W^T = K/(K-1) (I - J/K), padded with zeros and rotated.
Eigen::MatrixXd simplex_etf(index_t K, index_t d, std::mt19937& rng) {
    const Eigen::MatrixXd M =
        Eigen::MatrixXd::Identity(K, K) - Eigen::MatrixXd::Constant(K, K, 1.0 / static_cast<double>(K));
    const Eigen::HouseholderQR<Eigen::MatrixXd> qr(M);
    const Eigen::MatrixXd Q = qr.householderQ() * Eigen::MatrixXd::Identity(K, K - 1);
    Eigen::MatrixXd W = Eigen::MatrixXd::Zero(K, d);
    W.leftCols(K - 1) = std::sqrt(static_cast<double>(K) / static_cast<double>(K - 1)) * Q;
    return W * random_orthogonal(d, rng);
}

// Samples listed as (label set, feature) pairs.
struct dataset {
    std::vector<std::vector<index_t>> sets;
    std::vector<Eigen::VectorXd> features;
    void add(std::vector<index_t> s, Eigen::VectorXd h) {
        sets.push_back(std::move(s));
        features.push_back(std::move(h));
    }
    label_sets labels(index_t K) const { return label_sets::from_lists(sets, K); }
    Eigen::MatrixXd H() const {
        Eigen::MatrixXd X(features.front().size(), static_cast<index_t>(features.size()));
        for (std::size_t i = 0; i < features.size(); ++i) X.col(static_cast<index_t>(i)) = features[i];
        return X;
    }
};

Eigen::VectorXd vec2(double x, double y) { return Eigen::Vector2d(x, y); }

// The definitions of docs/metrics.md evaluated literally: explicit d x d scatter matrices, an
// SVD-based pseudo-inverse, every angle through a clipped arccos.
namespace reference {

using set_key = std::vector<label_t>;

std::map<set_key, std::vector<index_t>> members(const label_sets& S) {
    std::map<set_key, std::vector<index_t>> m;
    for (index_t i = 0; i < S.size(); ++i) m[set_key(S[i].begin(), S[i].end())].push_back(i);
    return m;
}

Eigen::VectorXd mean_of(const Eigen::MatrixXd& H, const std::vector<index_t>& idx) {
    Eigen::VectorXd mu = Eigen::VectorXd::Zero(H.rows());
    for (index_t i : idx) mu += H.col(i);
    return mu / static_cast<double>(idx.size());
}

std::optional<double> nc1(const Eigen::MatrixXd& H, const label_sets& S, index_t m) {
    std::vector<Eigen::VectorXd> mus;
    std::vector<std::vector<index_t>> idx;
    for (const auto& [key, members_] : members(S))
        if (static_cast<index_t>(key.size()) == m) {
            mus.push_back(mean_of(H, members_));
            idx.push_back(members_);
        }
    const auto C = static_cast<index_t>(mus.size());
    if (C < 2) return std::nullopt;
    const index_t d = H.rows();
    Eigen::MatrixXd Sw = Eigen::MatrixXd::Zero(d, d), Sb = Eigen::MatrixXd::Zero(d, d);
    Eigen::VectorXd g = Eigen::VectorXd::Zero(d);
    for (const auto& mu : mus) g += mu / static_cast<double>(C);
    index_t n = 0;
    for (index_t c = 0; c < C; ++c) {
        Sb += (mus[c] - g) * (mus[c] - g).transpose() / static_cast<double>(C);
        for (index_t i : idx[c]) {
            Sw += (H.col(i) - mus[c]) * (H.col(i) - mus[c]).transpose();
            ++n;
        }
    }
    Sw /= static_cast<double>(n);
    const Eigen::JacobiSVD<Eigen::MatrixXd> svd(Sb, Eigen::ComputeFullU | Eigen::ComputeFullV);
    const Eigen::VectorXd sv = svd.singularValues();
    if (sv(0) == 0.0) return std::nullopt;
    Eigen::VectorXd inv = Eigen::VectorXd::Zero(d);
    for (index_t j = 0; j < d; ++j)
        if (sv(j) >= 1e-12 * sv(0)) inv(j) = 1.0 / sv(j);
    const Eigen::MatrixXd pinv = svd.matrixV() * inv.asDiagonal() * svd.matrixU().transpose();
    return (Sw * pinv).trace() / static_cast<double>(C);
}

double etf_dev(const Eigen::MatrixXd& A) {
    const index_t K = A.rows();
    const Eigen::MatrixXd T =
        (Eigen::MatrixXd::Identity(K, K) - Eigen::MatrixXd::Constant(K, K, 1.0 / static_cast<double>(K))) /
        std::sqrt(static_cast<double>(K - 1));
    return (A / A.norm() - T).norm();
}

Eigen::MatrixXd label_means(const Eigen::MatrixXd& H, const label_sets& S) {
    const auto mem = members(S);
    Eigen::MatrixXd mu(H.rows(), S.num_labels());
    for (index_t k = 0; k < S.num_labels(); ++k) mu.col(k) = mean_of(H, mem.at({static_cast<label_t>(k)}));
    return mu;
}

Eigen::MatrixXd centered_label_means(const Eigen::MatrixXd& H, const label_sets& S) {
    const Eigen::MatrixXd mu = label_means(H, S);
    Eigen::MatrixXd Mc(S.num_labels(), H.rows());
    for (index_t k = 0; k < S.num_labels(); ++k) Mc.row(k) = (mu.col(k) - mu.rowwise().mean()).transpose();
    return Mc;
}

double angle(const Eigen::VectorXd& a, const Eigen::VectorXd& b) {
    return std::acos(std::clamp(a.dot(b) / (a.norm() * b.norm()), -1.0, 1.0));
}

double nc_m(const Eigen::MatrixXd& H, const label_sets& S, index_t m, bool centred) {
    const Eigen::MatrixXd mu = label_means(H, S);
    const Eigen::VectorXd o = centred ? Eigen::VectorXd(mu.rowwise().mean()) : Eigen::VectorXd::Zero(H.rows());
    std::vector<Eigen::VectorXd> u, v;
    for (const auto& [key, mem] : members(S)) {
        if (static_cast<index_t>(key.size()) != m) continue;
        u.push_back(mean_of(H, mem) - o);
        Eigen::VectorXd s = Eigen::VectorXd::Zero(H.rows());
        for (label_t k : key) s += mu.col(k) - o;
        v.push_back(s);
    }
    double same = 0, all = 0;
    for (std::size_t a = 0; a < u.size(); ++a) {
        same += angle(u[a], v[a]);
        for (std::size_t b = 0; b < u.size(); ++b) all += angle(u[a], v[b]);
    }
    const auto F = static_cast<double>(u.size());
    return (same / F) / (all / (F * F));
}

}  // namespace reference

double value(const std::optional<double>& x) {
    REQUIRE(x.has_value());
    return *x;
}

}  // namespace

TEST_CASE("the test's simplex ETF is one") {
    std::mt19937 rng(1);
    for (index_t K : {2, 3, 7}) {
        const Eigen::MatrixXd W = simplex_etf(K, K + 2, rng);
        const Eigen::MatrixXd expected =
            (static_cast<double>(K) / static_cast<double>(K - 1)) *
            (Eigen::MatrixXd::Identity(K, K) - Eigen::MatrixXd::Constant(K, K, 1.0 / static_cast<double>(K)));
        CHECK((W * W.transpose() - expected).norm() < 1e-13);
    }
}

TEST_CASE("exactly collapsed features give zero for every metric") {
    // h_i = C_m sum_{k in S_i} w_k for a simplex ETF W: M-lab neural collapse. Residuals h_i - mu_S
    // are rounding errors of the class means (a few ulps, ~1e-16 relative); NC1 squares them and
    // divides by eigenvalues of Sb of order 1, so it is ~1e-30: 1e-20 leaves ten orders of margin.
    // The ETF deviations and the angles are first-order in rounding: ~1e-15, checked at 1e-12
    // (an arccos of the rounded cosine would give ~1e-8 and fail this check on NC_m).
    std::mt19937 rng(7);
    const index_t K = 5, d = 8;
    const Eigen::MatrixXd W = simplex_etf(K, d, rng);
    const mlnc::per_multiplicity<double> C{{1, 2.0}, {2, 1.3}, {3, 0.7}};
    dataset ds;
    auto add = [&](std::vector<index_t> s, int copies) {
        Eigen::VectorXd h = Eigen::VectorXd::Zero(d);
        for (index_t k : s) h += W.row(k).transpose();
        h *= C.at(static_cast<index_t>(s.size()));
        for (int c = 0; c < copies; ++c) ds.add(s, h);
    };
    for (index_t a = 0; a < K; ++a) add({a}, 3);
    for (index_t a = 0; a < K; ++a)
        for (index_t b = a + 1; b < K; ++b) add({b, a}, 2);
    add({0, 1, 2}, 2);
    add({1, 3, 4}, 1);
    add({0, 2, 4}, 3);
    const Eigen::MatrixXd H = ds.H();
    const label_sets S = ds.labels(K);

    const auto r = mlnc::compute_nc_metrics(H, S, W);
    REQUIRE(r.nc1_by_multiplicity.multiplicities() == std::vector<index_t>{1, 2, 3});
    for (const auto& [m, v] : r.nc1_by_multiplicity) {
        INFO("m = " << m);
        CHECK(value(v) < 1e-20);
    }
    CHECK(value(r.nc1) == *r.nc1_by_multiplicity.at(1));
    CHECK(value(r.nc2_w) < 1e-12);
    CHECK(value(r.nc2_h) < 1e-12);
    CHECK(value(r.nc3) < 1e-12);
    REQUIRE(r.nc_m.multiplicities() == std::vector<index_t>{2, 3});
    for (const auto& [m, v] : r.nc_m) {
        INFO("m = " << m);
        CHECK(value(v) < 1e-12);
        // mu_G = 0 for an ETF, so both centrings agree.
        CHECK(value(r.nc_m_uncentered.at(m)) < 1e-12);
    }
}

TEST_CASE("hand-computed metrics for K = 3 in the plane") {
    dataset ds;
    // Multiplicity 1: means mu_0 = (2,0), mu_1 = (-2,0), mu_2 = (0,3); g = mu_G = (0,1).
    // Sb = (1/3) sum (mu_k - g)(mu_k - g)^T = diag(8/3, 2); residuals (+-1,0), (0,+-1), (+-1,0)
    // give Sw = (1/6) diag(4, 2) = diag(2/3, 1/3).
    // NC1_1 = tr(Sw Sb^+)/3 = ((2/3)(3/8) + (1/3)(1/2))/3 = (5/12)/3 = 5/36.  (d = 2 < C_1 = 3.)
    ds.add({0}, vec2(1, 0));
    ds.add({0}, vec2(3, 0));
    ds.add({1}, vec2(-2, 1));
    ds.add({1}, vec2(-2, -1));
    ds.add({2}, vec2(1, 3));
    ds.add({2}, vec2(-1, 3));
    // Multiplicity 2: mu_{01} = (1,0), mu_{02} = (-1,3); g_2 = (0,1.5), Sb = b b^T with
    // b = (1,-1.5), |b|^2 = 13/4; Sw = (1/4) diag(2,2) = I/2; tr(Sw Sb^+) = (1/2)/|b|^2 = 2/13;
    // NC1_2 = (2/13)/2 = 1/13.  (C_2 = 2 <= d: the other code path.)
    ds.add({0, 1}, vec2(1, 1));
    ds.add({1, 0}, vec2(1, -1));
    ds.add({0, 2}, vec2(-2, 3));
    ds.add({2, 0}, vec2(0, 3));
    // Multiplicity 3: one class, so NC1_3 is undefined.
    ds.add({0, 1, 2}, vec2(1, 2));
    const label_sets S = ds.labels(3);
    const Eigen::MatrixXd H = ds.H();
    Eigen::MatrixXd W(3, 2);
    W << 1, 0, -1, 0, 0, 1;

    const auto r = mlnc::compute_nc_metrics(H, S, W);
    CHECK(value(r.nc1) == Approx(5.0 / 36).epsilon(1e-13));
    CHECK(value(r.nc1_by_multiplicity.at(1)) == Approx(5.0 / 36).epsilon(1e-13));
    CHECK(value(r.nc1_by_multiplicity.at(2)) == Approx(1.0 / 13).epsilon(1e-13));
    CHECK_FALSE(r.nc1_by_multiplicity.at(3).has_value());

    // For a K x K matrix A with zero row sums, ||A/||A|| - T||^2 = 2 - 2 tr(A)/(||A|| sqrt(K-1))
    // since ||T|| = 1 and <A, I - J/K> = tr(A) - sum(A)/K.
    // Mc rows (2,-1), (-2,-1), (0,2): Mc Mc^T = [5 -3 -2; -3 5 -2; -2 -2 4], norm 10, trace 14.
    CHECK(value(r.nc2_h) == Approx(std::sqrt(2 - 7 * std::sqrt(2.0) / 5)).epsilon(1e-13));
    // W W^T = [1 -1 0; -1 1 0; 0 0 1]: norm sqrt(5), trace 3, sum 1: <A, I-J/3> = 8/3.
    CHECK(value(r.nc2_w) == Approx(std::sqrt(2 - 16 / (3 * std::sqrt(10.0)))).epsilon(1e-13));
    // W Mc^T = [2 -2 0; -2 2 0; -1 -1 2]: norm sqrt(22), trace 6, zero row sums.
    CHECK(value(r.nc3) == Approx(std::sqrt(2 - 6 / std::sqrt(11.0))).epsilon(1e-13));

    // NC_2 centred: u_{01} = (1,-1), v_{01} = c_0 + c_1 = (0,-2): pi/4; u_{02} = (-1,2),
    // v_{02} = c_0 + c_2 = (2,1): pi/2. Cross: acos(1/sqrt(10)) + acos(-2/sqrt(5)) = 5 pi/4.
    // NC_2 = (3 pi/8) / ((pi/4 + pi/2 + 5 pi/4)/4) = 3/4.
    CHECK(value(r.nc_m.at(2)) == Approx(0.75).epsilon(1e-13));
    // NC_3: the centred label means sum to zero, so v_{012} = 0 and the angle is undefined.
    CHECK_FALSE(r.nc_m.at(3).has_value());
    // Uncentred: v_{01} = mu_0 + mu_1 = 0: undefined; for {0,1,2} one set, a nonzero angle
    // between (1,2) and (0,3): the ratio of that angle to itself.
    CHECK_FALSE(r.nc_m_uncentered.at(2).has_value());
    CHECK(value(r.nc_m_uncentered.at(3)) == Approx(1.0).epsilon(1e-14));

    // The building blocks give the same values.
    const auto cm = mlnc::compute_class_means(H, S);
    CHECK(cm.global_mean().isApprox(vec2(0, 1)));
    CHECK(cm.counts == std::vector<index_t>{2, 2, 2, 2, 2, 1});
    const auto ranges = cm.groups_by_multiplicity();
    REQUIRE(ranges.multiplicities() == std::vector<index_t>{1, 2, 3});
    CHECK((ranges.at(1).begin == 0 && ranges.at(1).end == 3));
    CHECK((ranges.at(2).begin == 3 && ranges.at(2).end == 5));
    CHECK((ranges.at(3).begin == 5 && ranges.at(3).end == 6));
    CHECK(mlnc::nc1_by_multiplicity(H, cm) == r.nc1_by_multiplicity);
    CHECK(mlnc::nc2(W) == r.nc2_w);
    CHECK(mlnc::nc2_features(cm) == r.nc2_h);
    CHECK(mlnc::nc2(cm.centered_label_means(), "Mc") == r.nc2_h);
    CHECK(mlnc::nc3(W, cm) == r.nc3);
    CHECK(mlnc::nc_m(cm) == r.nc_m);
    CHECK(mlnc::nc_m(cm, mlnc::nc_m_origin::zero) == r.nc_m_uncentered);
    // What is not asked for is not computed.
    const auto q = mlnc::compute_nc_metrics(mlnc::cpu{1}, H, S, W, {.nc_m_uncentered = false});
    CHECK(q.nc_m_uncentered.empty());
    CHECK(q.nc_m == r.nc_m);
}

TEST_CASE("NC_m on threads: the same bits at every thread count") {
    // K = 20 labels, every pair (|F_2| = 190) and every triple (|F_3| = 1140: 3.9e6 angles, enough
    // work for several threads) with a noisy tag-wise mean.
    std::mt19937_64 rng(8);
    const index_t K = 20, d = 6;
    const label_sets S = mlnc::balanced_label_sets(K, {{1, 2}, {2, 1}, {3, 1}});
    Eigen::MatrixXd H(d, S.size());
    const Eigen::MatrixXd M = Eigen::MatrixXd::Random(d, K);
    std::normal_distribution<double> noise(0.0, 0.3);
    for (index_t i = 0; i < S.size(); ++i) {
        H.col(i).setZero();
        for (const auto k : S[i]) H.col(i) += M.col(k);
        for (index_t j = 0; j < d; ++j) H(j, i) += noise(rng);
    }
    const auto cm = mlnc::compute_class_means(H, S);
    const auto one = mlnc::nc_m(mlnc::cpu{1}, cm);
    REQUIRE(one.contains(2));
    REQUIRE(one.at(2).has_value());
    for (const int t : {0, 2, 3, 5}) {
        INFO("threads " << t);
        CHECK(mlnc::nc_m(mlnc::cpu{t}, cm) == one);
        CHECK(mlnc::nc_m(mlnc::cpu{t}, cm, mlnc::nc_m_origin::zero) == mlnc::nc_m(mlnc::cpu{1}, cm, mlnc::nc_m_origin::zero));
    }
    CHECK_THROWS_WITH(mlnc::nc_m(mlnc::cpu{-2}, cm), Catch::Matchers::Contains("cpu::threads"));
}

TEST_CASE("NC_m from sampled pairs: within a few standard errors of the exact value, reproducible") {
    // Forced sampling (max_exact_pairs = 0) on a problem small enough to compute exactly too.
    std::mt19937_64 rng(9);
    const index_t K = 20, d = 6;
    const label_sets S = mlnc::balanced_label_sets(K, {{1, 2}, {2, 1}, {3, 1}});
    Eigen::MatrixXd H = Eigen::MatrixXd::Random(d, S.size());
    const auto cm = mlnc::compute_class_means(H, S);
    const auto exact = mlnc::nc_m(mlnc::cpu{1}, cm);
    mlnc::metric_by_multiplicity none;
    CHECK(mlnc::nc_m(mlnc::cpu{1}, cm, mlnc::nc_m_origin::global_mean, {}, &none) == exact);
    CHECK(none.empty());  // exact values have no standard error
    const mlnc::nc_m_sampling sampling{.max_exact_pairs = 0, .pairs = 1 << 16, .seed = 4};
    mlnc::metric_by_multiplicity se;
    const auto est = mlnc::nc_m(mlnc::cpu{1}, cm, mlnc::nc_m_origin::global_mean, sampling, &se);
    for (const index_t m : {2, 3}) {
        INFO("m = " << m);
        REQUIRE(exact.at(m).has_value());
        REQUIRE(est.at(m).has_value());
        REQUIRE(se.contains(m));
        const double e = *se.at(m);
        CHECK(e > 0);
        CHECK(e < 0.01 * *exact.at(m));  // 65 536 pairs: the estimate is good to ~0.1-1%
        // The estimator is unbiased in the cross mean; the ratio's delta-method bias is O(1/M).
        CHECK(std::abs(*est.at(m) - *exact.at(m)) <= 5 * e);
    }
    // The same seed, any thread count: the same bits.
    for (const int t : {0, 2, 3}) {
        mlnc::metric_by_multiplicity se_t;
        CHECK(mlnc::nc_m(mlnc::cpu{t}, cm, mlnc::nc_m_origin::global_mean, sampling, &se_t) == est);
        CHECK(se_t == se);
    }
    // Through compute_nc_metrics.
    const auto r = mlnc::compute_nc_metrics(mlnc::cpu{}, H, S, {.nc_m_uncentered = true, .sampling = sampling});
    CHECK(r.nc_m == est);
    CHECK(r.nc_m_standard_error == se);
    CHECK(r.nc_m_uncentered_standard_error.contains(2));
    CHECK_THROWS_WITH(mlnc::nc_m(mlnc::cpu{}, cm, mlnc::nc_m_origin::zero, {.max_exact_pairs = 0, .pairs = 0}),
                      Catch::Matchers::Contains("sampling.pairs"));
}

TEST_CASE("NC1 with an exactly known within-class scatter") {
    // Class means r w_k (simplex ETF, unit rows): Sb = (r^2/K) W^T W has K-1 eigenvalues
    // r^2/(K-1). Each class has the 2d samples mu_k +- delta e_j, so its mean is exact and
    // Sw = delta^2/d I. NC1 = tr(Sw Sb^+)/K = delta^2 (K-1)^2 / (d K r^2).
    std::mt19937 rng(3);
    const index_t K = 6;
    const double radius = 3.0, delta = 0.25;
    for (index_t d : {K - 1, K + 3}) {  // C = K > d (d x d path) and C <= d (Gram path)
        INFO("d = " << d);
        const Eigen::MatrixXd W = simplex_etf(K, d, rng);
        dataset ds;
        for (index_t k = 0; k < K; ++k)
            for (index_t j = 0; j < d; ++j)
                for (double sign : {1.0, -1.0})
                    ds.add({k}, radius * W.row(k).transpose() + sign * delta * Eigen::VectorXd::Unit(d, j));
        const double expected =
            delta * delta * static_cast<double>((K - 1) * (K - 1)) / (static_cast<double>(d * K) * radius * radius);
        const auto S = ds.labels(K);
        const auto r = mlnc::compute_nc_metrics(ds.H(), S);
        CHECK(value(r.nc1) == Approx(expected).epsilon(1e-12));
        CHECK(value(r.nc2_h) < 1e-12);  // the means are still an exact ETF
    }
}

TEST_CASE("NC1 of a multiplicity with one sample per label set is 0, as by the definition") {
    // The pairs of K = 5 with one sample each (as in `mlnc verify --n 1:10,2:1`): every residual
    // h_i - mu_S is 0, so Sw = 0 and NC1_2 = 0 exactly, found without decomposing Sb. One more
    // sample of one pair makes Sw nonzero: then the general route, against the definition.
    std::mt19937 rng(11);
    const index_t K = 5, d = 4;
    dataset ds;
    for (index_t k = 0; k < K; ++k)
        for (int i = 0; i < 3; ++i) ds.add({k}, gaussian(d, 1, rng));
    for (index_t a = 0; a < K; ++a)
        for (index_t b = a + 1; b < K; ++b) ds.add({a, b}, gaussian(d, 1, rng));
    {
        const auto S = ds.labels(K);
        const auto r = mlnc::compute_nc_metrics(ds.H(), S);
        CHECK(r.nc1_by_multiplicity.at(2) == std::optional<double>(0.0));
        CHECK(reference::nc1(ds.H(), S, 2) == std::optional<double>(0.0));
        CHECK(value(r.nc1) == Approx(value(reference::nc1(ds.H(), S, 1))).epsilon(1e-12));
    }
    ds.add({1, 3}, gaussian(d, 1, rng));
    const auto S = ds.labels(K);
    const auto r = mlnc::compute_nc_metrics(ds.H(), S);
    CHECK(value(r.nc1_by_multiplicity.at(2)) > 0);
    CHECK(value(r.nc1_by_multiplicity.at(2)) == Approx(value(reference::nc1(ds.H(), S, 2))).epsilon(1e-12));
}

TEST_CASE("the pseudo-inverse drops eigenvalues of Sb below 1e-12 times the largest") {
    // Centred means (a, s), (-a, s), (0, -2s) with a^2 = 3/2: Sb = diag(1, 2 s^2). Residuals
    // +-delta e_j give Sw = delta^2/d I, so NC1 = (delta^2/d)(1 + [1/(2 s^2) if kept])/3.
    const double a = std::sqrt(1.5), delta = 0.1;
    for (index_t d : {2, 3}) {  // C = 3 > d and C <= d
        for (double small : {1e-10, 1e-14}) {
            INFO("d = " << d << ", small eigenvalue " << small);
            const double s = std::sqrt(small / 2);
            dataset ds;
            const std::vector<Eigen::VectorXd> mu{vec2(a, s), vec2(-a, s), vec2(0, -2 * s)};
            for (index_t k = 0; k < 3; ++k)
                for (index_t j = 0; j < d; ++j)
                    for (double sign : {1.0, -1.0}) {
                        Eigen::VectorXd h = Eigen::VectorXd::Zero(d);
                        h.head(2) = mu[static_cast<std::size_t>(k)];
                        h(j) += sign * delta;
                        ds.add({k}, h);
                    }
            const bool kept = small >= 1e-12;
            const double expected =
                delta * delta / static_cast<double>(d) * (1.0 + (kept ? 1.0 / small : 0.0)) / 3.0;
            const auto nc1 = mlnc::nc1_by_multiplicity(ds.H(), ds.labels(3));
            // Kept: the tiny eigenvalue carries ~1e-16 absolute error, 1e-6 relative.
            CHECK(value(nc1.at(1)) == Approx(expected).epsilon(kept ? 1e-5 : 1e-10));
        }
    }
}

TEST_CASE("NC_m with a known rotation angle, centred and uncentred") {
    // Singles at w_k (simplex ETF, unit rows, mu_G = 0); each pair S = {a,b} at
    // u_S = C_2 |v_S| (cos t v_S/|v_S| + sin t z), v_S = w_a + w_b, z a unit vector orthogonal
    // to every w_k. Then angle(u_S, v_S) = t and cos angle(u_S, v_T) = cos t rho(S,T) with
    // rho = (K-4)/(2(K-2)) for the 2(K-2) sets T sharing one label with S and -2/(K-2) for the
    // C(K-2, 2) disjoint ones. NC_2 = t / ((t + 2(K-2) acos(cos t rho1)
    //                                      + C(K-2,2) acos(cos t rho0)) / C(K,2)).
    std::mt19937 rng(11);
    const index_t K = 5, d = K + 1;
    const double t = 0.3, c2 = 0.8;
    Eigen::MatrixXd W0 = Eigen::MatrixXd::Zero(K, d);
    W0.leftCols(K) = simplex_etf(K, K, rng);  // the last coordinate stays free for z
    const Eigen::MatrixXd R = random_orthogonal(d, rng);
    const Eigen::MatrixXd W = W0 * R;
    const Eigen::VectorXd z = (Eigen::RowVectorXd::Unit(d, d - 1) * R).transpose();

    const double Kd = static_cast<double>(K);
    const double rho1 = (Kd - 4) / (2 * (Kd - 2)), rho0 = -2 / (Kd - 2);
    const double row = t + 2 * (Kd - 2) * std::acos(std::cos(t) * rho1) +
                       (Kd - 2) * (Kd - 3) / 2 * std::acos(std::cos(t) * rho0);
    const double expected = t / (row / (Kd * (Kd - 1) / 2));

    for (bool shifted : {false, true}) {
        INFO("shifted by a common offset: " << shifted);
        const Eigen::VectorXd offset = shifted ? Eigen::VectorXd(2.0 * gaussian(d, 1, rng)) : Eigen::VectorXd::Zero(d);
        dataset ds;
        for (index_t k = 0; k < K; ++k)
            for (int c = 0; c < 2; ++c) ds.add({k}, W.row(k).transpose() + offset);
        for (index_t a = 0; a < K; ++a)
            for (index_t b = a + 1; b < K; ++b) {
                const Eigen::VectorXd v = (W.row(a) + W.row(b)).transpose();
                const Eigen::VectorXd u = c2 * v.norm() * (std::cos(t) * v.normalized() + std::sin(t) * z);
                ds.add({a, b}, u + offset);
            }
        const auto S = ds.labels(K);
        const Eigen::MatrixXd H = ds.H();
        const auto r = mlnc::compute_nc_metrics(H, S);
        // The NC_m definition is translation invariant: the offset moves mu_G with the means.
        CHECK(value(r.nc_m.at(2)) == Approx(expected).epsilon(1e-12));
        const double uncentred = value(r.nc_m_uncentered.at(2));
        CHECK(uncentred == Approx(reference::nc_m(H, S, 2, false)).epsilon(1e-12));
        if (shifted) CHECK(std::abs(uncentred - expected) > 1e-2);
        else CHECK(uncentred == Approx(expected).epsilon(1e-12));
    }
}

TEST_CASE("the metrics agree with a literal evaluation of the definitions") {
    std::mt19937 rng(5);
    const index_t K = 4;
    const std::vector<std::vector<index_t>> candidates{{0}, {1}, {2}, {3}, {0, 1}, {0, 2}, {1, 3}, {2, 3},
                                                       {0, 3}, {0, 1, 2}, {1, 2, 3}, {0, 2, 3}};
    // d = 3 < C_1 and d = 7 > C_m exercise both eigen-decompositions; "low rank" puts the class
    // means in a 2-D subspace of R^7, so the pseudo-inverse must drop the rounding-level spectrum.
    for (auto [d, low_rank] : {std::pair<index_t, bool>{3, false}, {7, false}, {7, true}}) {
        INFO("d = " << d << (low_rank ? ", class means of rank 2" : ""));
        const Eigen::MatrixXd basis = gaussian(d, 2, rng);
        std::map<std::vector<index_t>, Eigen::VectorXd> centre;
        for (const auto& s : candidates)
            centre[s] = low_rank ? Eigen::VectorXd(basis * gaussian(2, 1, rng)) : Eigen::VectorXd(gaussian(d, 1, rng));
        std::uniform_int_distribution<std::size_t> pick(0, candidates.size() - 1);
        dataset ds;
        for (const auto& s : candidates) ds.add(s, centre[s] + 0.3 * gaussian(d, 1, rng));  // every set present
        for (int i = 0; i < 60; ++i) {
            const auto& s = candidates[pick(rng)];
            ds.add(s, centre[s] + 0.3 * gaussian(d, 1, rng));
        }
        const auto S = ds.labels(K);
        const Eigen::MatrixXd H = ds.H();
        const Eigen::MatrixXd W = gaussian(K, d, rng);
        const auto r = mlnc::compute_nc_metrics(H, S, W);

        for (index_t m = 1; m <= 3; ++m) {
            INFO("m = " << m);
            CHECK(value(r.nc1_by_multiplicity.at(m)) == Approx(value(reference::nc1(H, S, m))).epsilon(1e-9));
        }
        const Eigen::MatrixXd Mc = reference::centered_label_means(H, S);
        CHECK(value(r.nc2_w) == Approx(reference::etf_dev(W * W.transpose())).epsilon(1e-12));
        CHECK(value(r.nc2_h) == Approx(reference::etf_dev(Mc * Mc.transpose())).epsilon(1e-12));
        CHECK(value(r.nc3) == Approx(reference::etf_dev(W * Mc.transpose())).epsilon(1e-12));
        for (index_t m = 2; m <= 3; ++m) {
            INFO("m = " << m);
            CHECK(value(r.nc_m.at(m)) == Approx(reference::nc_m(H, S, m, true)).epsilon(1e-12));
            CHECK(value(r.nc_m_uncentered.at(m)) == Approx(reference::nc_m(H, S, m, false)).epsilon(1e-12));
        }
    }
}

TEST_CASE("float features are summed in double") {
    // A large common offset makes float accumulation lose ~1e-3 of the within-class scatter
    // (sums near 2e7 have an ulp of 2); summed in double, float input gives the metrics of the
    // same numbers widened to double.
    std::mt19937 rng(9);
    const index_t K = 3, d = 4, per_class = 20000;
    const Eigen::MatrixXd W = simplex_etf(K, d, rng);
    dataset ds;
    std::normal_distribution<double> n01;
    for (index_t k = 0; k < K; ++k)
        for (index_t i = 0; i < per_class; ++i) {
            Eigen::VectorXd h = 1000.0 * Eigen::VectorXd::Ones(d) + W.row(k).transpose();
            for (index_t j = 0; j < d; ++j) h(j) += 0.1 * n01(rng);
            ds.add({k}, h);
        }
    ds.add({0, 1}, Eigen::VectorXd::Constant(d, 1000.5));
    ds.add({1, 2}, Eigen::VectorXd::Constant(d, 999.5));
    const auto S = ds.labels(K);
    const Eigen::MatrixXf Hf = ds.H().cast<float>();
    const Eigen::MatrixXf Wf = W.cast<float>();
    const auto rf = mlnc::compute_nc_metrics(Hf, S, Wf);
    const auto rd = mlnc::compute_nc_metrics(Hf.cast<double>(), S, Wf.cast<double>());
    CHECK(value(rf.nc1) == Approx(value(rd.nc1)).epsilon(1e-12));
    CHECK(value(rf.nc2_w) == Approx(value(rd.nc2_w)).epsilon(1e-12));
    CHECK(value(rf.nc2_h) == Approx(value(rd.nc2_h)).epsilon(1e-12));
    CHECK(value(rf.nc3) == Approx(value(rd.nc3)).epsilon(1e-12));
    CHECK(value(rf.nc_m.at(2)) == Approx(value(rd.nc_m.at(2))).epsilon(1e-12));
    CHECK(value(rf.nc_m_uncentered.at(2)) == Approx(value(rd.nc_m_uncentered.at(2))).epsilon(1e-12));
    // A view of an N x d row-major buffer (the .npy layout) is accepted without a copy.
    const Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor> rows = Hf.transpose();
    CHECK(mlnc::compute_nc_metrics(rows.transpose(), S).nc1 == rf.nc1);
}

// Every entry point taking H or W, with float and double Matrix, Map, Block and expression inputs
// (compiling this test is the compile-level check that they are accepted). The data are rounded
// to float first, so float input widened to double is exactly the double input and every sum is
// taken in double: float and double results can differ only by the order of double operations (a
// product over a view instead of a copy), a few ulps per operation. 1e-12 relative leaves 10^4 ulps
// of margin, and is 10^5 times below the ~1e-7 that accumulating in float would give.
TEST_CASE("float and double inputs of every metric agree") {
    constexpr double tol = 1e-12;
    std::mt19937 rng(21);
    const index_t K = 4, d = 6;
    const std::vector<std::vector<index_t>> sets{{0}, {1}, {2}, {3}, {0, 1}, {1, 2},
                                                 {2, 3}, {0, 3}, {0, 1, 2}, {1, 2, 3}};
    dataset ds;
    for (const auto& s : sets) {
        const Eigen::VectorXd centre = 3.0 * gaussian(d, 1, rng);
        for (int c = 0; c < 4; ++c) ds.add(s, centre + 0.5 * gaussian(d, 1, rng));
    }
    const label_sets S = ds.labels(K);
    const index_t N = S.size();
    const Eigen::MatrixXf Hf = ds.H().cast<float>();
    const Eigen::MatrixXf Wf = gaussian(K, d, rng).cast<float>();
    const Eigen::MatrixXd H = Hf.cast<double>(), W = Wf.cast<double>();

    const auto same = [&](const std::optional<double>& a, const std::optional<double>& b) {
        REQUIRE(a.has_value() == b.has_value());
        if (a) CHECK(*a == Approx(*b).epsilon(tol));
    };
    const auto same_by_m = [&](const mlnc::metric_by_multiplicity& a, const mlnc::metric_by_multiplicity& b) {
        REQUIRE(a.multiplicities() == b.multiplicities());
        for (const auto& [m, v] : a) {
            INFO("m = " << m);
            same(v, b.at(m));
        }
    };
    const auto same_metrics = [&](const mlnc::nc_metrics& a, const mlnc::nc_metrics& b) {
        same(a.nc1, b.nc1);
        same_by_m(a.nc1_by_multiplicity, b.nc1_by_multiplicity);
        same(a.nc2_w, b.nc2_w);
        same(a.nc2_h, b.nc2_h);
        same(a.nc3, b.nc3);
        same_by_m(a.nc_m, b.nc_m);
        same_by_m(a.nc_m_uncentered, b.nc_m_uncentered);
    };

    const auto cm = mlnc::compute_class_means(H, S);
    const auto cmf = mlnc::compute_class_means(Hf, S);
    CHECK(cmf.means.isApprox(cm.means, tol));
    CHECK(cmf.counts == cm.counts);
    CHECK(cmf.group_of == cm.group_of);
    same_by_m(mlnc::nc1_by_multiplicity(Hf, S), mlnc::nc1_by_multiplicity(H, S));
    same_by_m(mlnc::nc1_by_multiplicity(Hf, cmf), mlnc::nc1_by_multiplicity(H, cm));
    same(mlnc::nc2(Wf), mlnc::nc2(W));
    same(mlnc::nc3(Wf, cmf), mlnc::nc3(W, cm));
    same_by_m(mlnc::nc_m(cmf), mlnc::nc_m(cm));
    const auto reference = mlnc::compute_nc_metrics(H, S, W);
    same_metrics(mlnc::compute_nc_metrics(Hf, S, Wf), reference);
    same_metrics(mlnc::compute_nc_metrics(Hf, S, W), reference);  // H and W need not share a scalar
    {
        const auto r = mlnc::compute_nc_metrics(Hf, S);
        same(r.nc1, reference.nc1);
        same_by_m(r.nc_m, reference.nc_m);
        CHECK_FALSE(r.nc2_w.has_value());
    }

    // Views of float storage: a Map, the .npy layout (an N x d row-major buffer, transposed),
    // Blocks with an outer stride, and expressions.
    const Eigen::Map<const Eigen::MatrixXf> map(Hf.data(), d, N);
    using row_major = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
    const row_major rows = Hf.transpose();
    const Eigen::Map<const row_major> npy(rows.data(), N, d);
    Eigen::MatrixXf padded = Eigen::MatrixXf::Zero(d + 3, N + 2);
    padded.block(2, 1, d, N) = Hf;
    Eigen::MatrixXf Wpadded = Eigen::MatrixXf::Zero(K + 1, d + 2);
    Wpadded.block(1, 2, K, d) = Wf;
    const auto block = padded.block(2, 1, d, N);
    const auto Wblock = Wpadded.block(1, 2, K, d);
    const Eigen::Map<const Eigen::MatrixXf> Wmap(Wf.data(), K, d);
    same_metrics(mlnc::compute_nc_metrics(map, S, Wmap), reference);
    same_metrics(mlnc::compute_nc_metrics(npy.transpose(), S, Wblock), reference);
    same_metrics(mlnc::compute_nc_metrics(block, S, Wf), reference);
    same_metrics(mlnc::compute_nc_metrics(0.5f * (Hf + Hf), S, 2.0f * Wf), reference);  // exact in float
    CHECK(mlnc::compute_class_means(block, S).means.isApprox(cm.means, tol));
    CHECK(mlnc::compute_class_means(npy.transpose(), S).means.isApprox(cm.means, tol));
    same_by_m(mlnc::nc1_by_multiplicity(map, cmf), mlnc::nc1_by_multiplicity(H, cm));
    same_by_m(mlnc::nc1_by_multiplicity(block, S), mlnc::nc1_by_multiplicity(H, S));
    same(mlnc::nc2(Wblock), mlnc::nc2(W));
    same(mlnc::nc3(Wmap, cmf), mlnc::nc3(W, cm));
    same(mlnc::nc3(Wf * 1.0f, cmf), mlnc::nc3(W, cm));
}

TEST_CASE("undefined metrics are reported as unavailable, not NaN") {
    dataset ds;
    // Every feature is (1, 1): all means coincide exactly, so Sb = 0, Mc = 0 and every u_S = 0.
    for (std::vector<index_t> s : {std::vector<index_t>{0}, {1}, {2}, {0}, {0, 1}, {1, 2}}) ds.add(s, vec2(1, 1));
    const auto S = ds.labels(3);
    Eigen::MatrixXd W(3, 2);
    W << 1, 0, 0, 1, -1, -1;
    auto r = mlnc::compute_nc_metrics(ds.H(), S, W);
    CHECK_FALSE(r.nc1.has_value());
    CHECK_FALSE(r.nc1_by_multiplicity.at(2).has_value());
    CHECK_FALSE(r.nc2_h.has_value());
    CHECK_FALSE(r.nc3.has_value());
    CHECK_FALSE(r.nc_m.at(2).has_value());
    CHECK_FALSE(r.nc_m_uncentered.at(2).has_value());
    CHECK(r.nc2_w.has_value());

    r = mlnc::compute_nc_metrics(ds.H(), S, Eigen::MatrixXd::Zero(3, 2));
    CHECK_FALSE(r.nc2_w.has_value());
    CHECK_FALSE(r.nc3.has_value());
    CHECK_FALSE(mlnc::compute_nc_metrics(ds.H(), S).nc2_w.has_value());  // no W given

    // The same with means that differ only by rounding: (0.1 + 0.1 + 0.1)/3 != 0.1 = (0.1 + 0.1)/2.
    dataset near;
    for (auto [s, copies] : {std::pair<std::vector<index_t>, int>{{0}, 3}, {{1}, 2}, {{2}, 3}, {{0, 1}, 3}, {{1, 2}, 2}})
        for (int c = 0; c < copies; ++c) near.add(s, vec2(0.1, 0.7));
    const auto cm = mlnc::compute_class_means(near.H(), near.labels(3));
    REQUIRE(cm.means.col(0) != cm.means.col(1));
    r = mlnc::compute_nc_metrics(near.H(), near.labels(3), W);
    CHECK_FALSE(r.nc1.has_value());
    CHECK_FALSE(r.nc1_by_multiplicity.at(2).has_value());
    CHECK_FALSE(r.nc2_h.has_value());
    CHECK_FALSE(r.nc3.has_value());
    CHECK_FALSE(r.nc_m.at(2).has_value());
    CHECK_FALSE(r.nc_m_uncentered.at(2).has_value());  // every u_S parallel to every v_T

    // W orthogonal to the centred means: W Mc^T = 0.
    dataset line;
    line.add({0}, vec2(1, 0));
    line.add({1}, vec2(-1, 0));
    Eigen::MatrixXd Wy(2, 2);
    Wy << 0, 1, 0, -1;
    const auto q = mlnc::compute_nc_metrics(line.H(), line.labels(2), Wy);
    CHECK_FALSE(q.nc3.has_value());
    CHECK(value(q.nc2_h) < 1e-15);  // two opposite means are the K = 2 simplex
    CHECK(q.nc_m.empty());          // no multiplicity >= 2 present
}

TEST_CASE("bad input is refused with a message naming the argument") {
    dataset ds;
    ds.add({0}, vec2(1, 0));
    ds.add({1}, vec2(0, 1));
    ds.add({0, 2}, vec2(1, 1));
    ds.add({1, 3}, vec2(0, 2));
    const Eigen::MatrixXd H = ds.H();
    const auto S = ds.labels(4);

    SECTION("labels without a multiplicity-1 sample") {
        CHECK_THROWS_WITH(mlnc::compute_nc_metrics(H, S), Contains("labels 2, 3 have no multiplicity-1 sample"));
        const auto S1 = label_sets::from_lists({{0}, {1}, {0, 2}, {2, 1}}, 3);
        CHECK_THROWS_WITH(mlnc::compute_nc_metrics(H, S1), Contains("label 2 has no multiplicity-1 sample"));
        const auto cm = mlnc::compute_class_means(H, S);
        CHECK(cm.missing_labels() == std::vector<index_t>{2, 3});
        CHECK_THROWS_WITH(mlnc::nc_m(cm), Contains("labels 2, 3"));
        CHECK_THROWS_WITH(mlnc::nc2_features(cm), Contains("labels 2, 3"));
        // NC1 needs only the class means, so it is still available.
        const auto nc1 = mlnc::nc1_by_multiplicity(H, S);
        CHECK(nc1.at(1).has_value());
        CHECK(nc1.at(2).has_value());
    }
    SECTION("shapes") {
        CHECK_THROWS_WITH(mlnc::compute_nc_metrics(H.leftCols(3), S), Contains("H:") && Contains("N = 4"));
        CHECK_THROWS_WITH(mlnc::compute_nc_metrics(Eigen::MatrixXd(0, 4), S), Contains("H: feature dimension"));
        CHECK_THROWS_WITH(mlnc::compute_nc_metrics(H, S, Eigen::MatrixXd::Ones(3, 2)),
                          Contains("W: expected 4 x 2"));
        CHECK_THROWS_WITH(mlnc::compute_nc_metrics(H, S, Eigen::MatrixXd::Ones(4, 3)),
                          Contains("W: expected 4 x 2"));
        CHECK_THROWS_WITH(mlnc::compute_nc_metrics(H, label_sets::from_lists({}, 4)), Contains("labels: no samples"));
        const auto cm = mlnc::compute_class_means(H, S);
        CHECK_THROWS_WITH(mlnc::nc1_by_multiplicity(Eigen::MatrixXd::Ones(3, 4), cm), Contains("H:"));
        CHECK_THROWS_WITH(mlnc::nc2(Eigen::MatrixXd::Ones(1, 3)), Contains("W:") && Contains("K >= 2"));
        CHECK_THROWS_AS(mlnc::nc3(Eigen::MatrixXd::Ones(4, 5), cm), mlnc::error);
    }
    SECTION("non-finite values") {
        Eigen::MatrixXd bad = H;
        bad(1, 2) = std::nan("");
        CHECK_THROWS_WITH(mlnc::compute_nc_metrics(bad, S), Contains("H: contains NaN or Inf"));
        CHECK_THROWS_WITH(mlnc::compute_class_means(bad, S), Contains("H: contains NaN or Inf"));
        Eigen::MatrixXf W = Eigen::MatrixXf::Ones(4, 2);
        W(3, 0) = std::numeric_limits<float>::infinity();
        CHECK_THROWS_WITH(mlnc::compute_nc_metrics(H, S, W), Contains("W: contains NaN or Inf"));
        CHECK_THROWS_WITH(mlnc::nc2(W), Contains("W: contains NaN or Inf"));
    }
}

TEST_CASE("a K far beyond the data is refused before anything of size K is allocated", "[metrics]") {
    // Labels 0..3 and 2147483646: K = 2^31 - 1 as a label file with K inferred gives. Before,
    // compute_class_means built a K-entry table (16 GB) and the process was killed.
    const auto S = mlnc::label_sets::from_lists({{0}, {1}, {2}, {3}, {0, 2147483646}}, 2147483647);
    const Eigen::MatrixXd H = Eigen::MatrixXd::Random(3, 5);
    const auto cm = mlnc::compute_class_means(H, S);
    CHECK(cm.num_singletons == 4);
    CHECK(cm.num_missing_labels() == 2147483647 - 4);
    CHECK(cm.missing_labels(3) == std::vector<index_t>{4, 5, 6});
    CHECK(cm.singleton_group(2) == 2);
    CHECK(cm.singleton_group(2147483646) == -1);
    const auto msg = mlnc_test::error_of([&] { mlnc::compute_nc_metrics(H, S); });
    CHECK_THAT(msg, Catch::Contains("labels 4, 5, 6, 7, 8, 9, 10, 11, 12, 13 and 2147483633 more have no multiplicity-1"));
    // NC1 needs no label means and still works.
    CHECK(mlnc::nc1_by_multiplicity(H, S).contains(1));
}

TEST_CASE("metrics: the tridiagonal QL eigensolver behind NC1 agrees with Eigen's", "[metrics][eigen]") {
    std::mt19937_64 rng(2024);
    std::normal_distribution<double> n01;
    // Symmetric matrices of several sizes, and rank-deficient Gram matrices like the between-class
    // scatter (B^T B with fewer rows than columns), whose zero eigenvalues must come out at the
    // rounding level so that the pseudo-inverse cutoff drops them.
    for (const Eigen::Index n : {1, 2, 3, 7, 20, 45, 256}) {
        for (const bool gram : {false, true}) {
            CAPTURE(n, gram);
            Eigen::MatrixXd A(n, n);
            if (gram) {
                Eigen::MatrixXd B(std::max<Eigen::Index>(1, n / 3), n);
                for (Eigen::Index i = 0; i < B.size(); ++i) B.data()[i] = n01(rng);
                A = B.transpose() * B;
            } else {
                for (Eigen::Index i = 0; i < A.size(); ++i) A.data()[i] = n01(rng);
                A = (A + A.transpose()).eval();
            }
            Eigen::VectorXd w;
            Eigen::MatrixXd V;
            REQUIRE(mlnc::detail::symmetric_eigen(Eigen::MatrixXd(A), w, V));
            const Eigen::SelfAdjointEigenSolver<Eigen::MatrixXd> ref(A);
            const double scale = A.norm();
            // Both are backward stable: eigenvalues within a few hundred eps ||A|| of each other.
            CHECK((w - ref.eigenvalues()).cwiseAbs().maxCoeff() <= 256 * 2.2e-16 * scale);
            CHECK((A * V - V * w.asDiagonal()).norm() <= 256 * 2.2e-16 * scale);
            CHECK((V.transpose() * V - Eigen::MatrixXd::Identity(n, n)).cwiseAbs().maxCoeff() <= 1e-13);
            for (Eigen::Index j = 1; j < n; ++j) CHECK(w(j - 1) <= w(j));
        }
    }
}
