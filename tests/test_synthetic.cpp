// The synthetic feature generator: sizes, the ETF and tag-wise structure, the noise level,
// reproducibility and refusals.

#include <mlnc/etf.hpp>
#include <mlnc/synthetic.hpp>
#include <mlnc/tagwise.hpp>

#include <catch2/catch.hpp>

#include <cmath>
#include <limits>

using mlnc::index_t;
using mlnc::multiplicity_counts;

TEST_CASE("synthetic: sizes and sample counts per multiplicity") {
    mlnc::synthetic_options o;
    o.K = 6;
    o.d = 9;
    o.n = {{1, 4}, {2, 2}, {3, 1}};  // 6*4 + 15*2 + 20*1 = 74 samples
    const auto data = mlnc::make_synthetic(o);
    CHECK(data.H.rows() == 9);
    CHECK(data.H.cols() == 74);
    CHECK(data.W.rows() == 6);
    CHECK(data.W.cols() == 9);
    REQUIRE(data.S.size() == 74);
    CHECK(data.S.multiplicity_histogram() == std::vector<index_t>{0, 24, 30, 20});
    REQUIRE(data.C.multiplicities() == std::vector<index_t>{1, 2, 3});
    for (const auto& [m, c] : data.C) CHECK(c > 0);
}

// The samples are Theorem 1's balanced list, in its order; C_m is the closed form's for these
// counts (the same numbers, not recomputed).
TEST_CASE("synthetic: the labels are balanced_label_sets and C_m the closed-form optimum") {
    mlnc::synthetic_options o;
    o.K = 6;
    o.n = {{1, 3}, {2, 0}, {3, 2}, {6, 1}};  // n_2 = 0: no pairs; m = K present
    o.noise = 0;
    const auto data = mlnc::make_synthetic(o);
    CHECK(data.S == mlnc::balanced_label_sets(6, o.n));
    const auto opt = mlnc::global_optimum(6, o.n, o.lambdas);
    CHECK(data.C == opt->C);
    CHECK(data.C.multiplicities() == std::vector<index_t>{1, 3, 6});
    CHECK(data.W.row(0).norm() == Approx(opt->w_norm).epsilon(1e-14));
    // Without noise, h_i = C_m sum_{k in S_i} w_k sample by sample (the full set: sum w_k = 0).
    for (index_t i = 0; i < data.S.size(); ++i) {
        Eigen::VectorXd v = Eigen::VectorXd::Zero(data.W.cols());
        for (const auto k : data.S[i]) v += data.W.row(k).transpose();
        CHECK((data.H.col(i) - data.C.at(data.S.multiplicity(i)) * v).norm() < 1e-12);
    }
}

TEST_CASE("synthetic: the presets keep the imbalance of c10-L/M/S") {
    const auto L = mlnc::make_synthetic(mlnc::synthetic_preset(mlnc::synthetic_imbalance::large));
    const auto M = mlnc::make_synthetic(mlnc::synthetic_preset(mlnc::synthetic_imbalance::medium));
    const auto S = mlnc::make_synthetic(mlnc::synthetic_preset(mlnc::synthetic_imbalance::small));
    // 10 labels x 20 single-label samples, 45 pairs x 8 / 3 / 1.
    CHECK(L.S.multiplicity_histogram() == std::vector<mlnc::index_t>{0, 200, 360});
    CHECK(M.S.multiplicity_histogram() == std::vector<mlnc::index_t>{0, 200, 135});
    CHECK(S.S.multiplicity_histogram() == std::vector<mlnc::index_t>{0, 200, 45});
}

// Without noise the features are exactly C_m sum_{k in S} w_k with an ETF W: the least-squares
// C_m recovers the generator's and every residual is at rounding level (1e-12 allows ~1e3
// roundoffs of the O(1) entries).
TEST_CASE("synthetic: noise 0 gives the exact tag-wise structure on a simplex ETF") {
    mlnc::synthetic_options o;
    o.K = 5;
    o.n = {{1, 3}, {2, 2}, {3, 1}};
    o.noise = 0;
    const auto data = mlnc::make_synthetic(o);
    CHECK(mlnc::etf_deviation(data.W) < 1e-12);
    const auto fit = mlnc::fit_tagwise(data.H, data.S, data.W);
    for (const auto& [m, c] : data.C) {
        CHECK(fit.C.at(m) == Approx(c).epsilon(1e-12));
        CHECK(fit.residual.at(m) < 1e-12);
    }
}

// E||noise||^2 = (noise * max_m ||C_m v_S||)^2. The mean of N d squared N(0, sigma^2/d) draws has
// relative standard deviation sqrt(2 / (N d)) = sqrt(2 / 3350) = 0.024 here; 0.1 is four of them.
TEST_CASE("synthetic: the noise has the documented relative level") {
    mlnc::synthetic_options o;  // K = 10, n = {20, 3}: N = 335, d = 10
    o.noise = 0.5;
    const auto noisy = mlnc::make_synthetic(o);
    o.noise = 0;
    const auto clean = mlnc::make_synthetic(o);
    double largest = 0;
    const double K = 10, w2 = clean.W.row(0).squaredNorm();
    for (const auto& [m, c] : clean.C) {
        const auto md = static_cast<double>(m);
        largest = std::max(largest, std::abs(c) * std::sqrt(md * (K - md) / (K - 1) * w2));
    }
    const double mean_sq = (noisy.H - clean.H).colwise().squaredNorm().mean();
    CHECK(mean_sq / (0.25 * largest * largest) == Approx(1.0).epsilon(0.1));
}

TEST_CASE("synthetic: a seed reproduces the data, another seed changes the noise only") {
    mlnc::synthetic_options o;
    o.K = 4;
    o.n = {{1, 5}, {2, 2}};
    o.seed = 7;
    const auto a = mlnc::make_synthetic(o), b = mlnc::make_synthetic(o);
    CHECK(a.H == b.H);
    CHECK(a.W == b.W);
    CHECK(a.S == b.S);
    o.seed = 8;  // another split of the same problem: same W, other noise
    const auto c = mlnc::make_synthetic(o);
    CHECK(c.S == a.S);
    CHECK(c.W == a.W);
    CHECK((c.H - a.H).norm() > 0.1 * a.H.norm());
    o.rotation_seed = 2;
    CHECK((mlnc::make_synthetic(o).W - a.W).norm() > 0.1 * a.W.norm());
}

TEST_CASE("synthetic: given C and row norm are used as they are") {
    mlnc::synthetic_options o;
    o.K = 4;
    o.n = {{1, 1}, {2, 1}};
    o.C = {{1, 2.0}, {2, -0.5}};
    o.w_norm = 3.0;
    o.noise = 0;
    const auto data = mlnc::make_synthetic(o);
    CHECK(data.C == o.C);
    CHECK(data.W.rowwise().norm().minCoeff() == Approx(3.0).epsilon(1e-14));
    // Sample 0 is {0}: h = 2 w_0.  Sample 4 is {0, 1}: h = -0.5 (w_0 + w_1).
    CHECK((data.H.col(0) - 2.0 * data.W.row(0).transpose()).norm() < 1e-13);
    CHECK((data.H.col(4) + 0.5 * (data.W.row(0) + data.W.row(1)).transpose()).norm() < 1e-13);
}

TEST_CASE("synthetic: bad options are refused naming the option") {
    mlnc::synthetic_options o;
    o.K = 1;
    CHECK_THROWS_WITH(mlnc::make_synthetic(o), Catch::StartsWith("K:"));
    o = {};
    o.d = 3;
    CHECK_THROWS_WITH(mlnc::make_synthetic(o), Catch::StartsWith("d:"));
    o = {};
    o.n = {};
    CHECK_THROWS_WITH(mlnc::make_synthetic(o), Catch::StartsWith("n:"));
    o = {};
    o.n = {{1, 0}, {2, 0}};
    CHECK_THROWS_WITH(mlnc::make_synthetic(o), Catch::StartsWith("n:") && Catch::Contains("no samples"));
    o = {};
    o.n = {{1, -1}};
    CHECK_THROWS_WITH(mlnc::make_synthetic(o), Catch::StartsWith("n:"));
    o = {};
    o.n = {{11, 1}};  // m > K = 10
    CHECK_THROWS_WITH(mlnc::make_synthetic(o), Catch::StartsWith("n:") && Catch::Contains("exceeds K"));
    o = {};
    o.noise = -1;
    CHECK_THROWS_WITH(mlnc::make_synthetic(o), Catch::StartsWith("noise:"));
    o = {};
    o.C = {{1, 1.0}};  // n has multiplicities 1 and 2
    CHECK_THROWS_WITH(mlnc::make_synthetic(o), Catch::StartsWith("C:"));
    o = {};
    o.n = {{1, 1}, {2, 0}};
    o.C = {{1, 1.0}, {2, 1.0}};  // n_2 = 0: no C_2
    CHECK_THROWS_WITH(mlnc::make_synthetic(o), Catch::StartsWith("C:"));
    o = {};
    o.C = {{1, 1.0}, {2, std::numeric_limits<double>::quiet_NaN()}};
    CHECK_THROWS_WITH(mlnc::make_synthetic(o), Catch::StartsWith("C:"));
    o = {};
    o.K = 200;
    o.n = {{1, 1}, {2, 1}, {3, 1}, {4, 1}, {5, 1}};  // C(200, 5) ~ 2.5e9 samples
    CHECK_THROWS_WITH(mlnc::make_synthetic(o), Catch::StartsWith("n:") && Catch::Contains("max_samples"));
    o = {};
    o.lambdas = {10.0, 10.0, 0.0};  // the optimum collapses to zero
    CHECK_THROWS_WITH(mlnc::make_synthetic(o), Catch::StartsWith("lambdas:"));
}
