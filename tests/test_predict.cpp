// The predictors: ONN, the tag-wise decoder (against its brute-force reference) and OvA, their
// tie rule, their costs and their refusals.

#include <mlnc/etf.hpp>
#include <mlnc/predict.hpp>
#include <mlnc/scores.hpp>
#include <mlnc/synthetic.hpp>

#include <catch2/catch.hpp>

#include "test_support.hpp"

#include <chrono>
#include <cmath>
#include <random>
#include <set>
#include <type_traits>
#include <vector>

using mlnc::index_t;
using mlnc::label_sets;

using mlnc_test::gaussian;

namespace {

std::vector<mlnc::label_t> as_vector(std::span<const mlnc::label_t> s) { return {s.begin(), s.end()}; }

// Well separated data: the synthetic generator with little noise, train and test from two seeds.
struct split {
    mlnc::synthetic_data train, test;
};
split separated(double noise) {
    mlnc::synthetic_options o;
    o.K = 6;
    o.n = {{1, 6}, {2, 2}, {3, 1}};
    o.noise = noise;
    o.seed = 1;
    split s{mlnc::make_synthetic(o), {}};
    o.seed = 2;
    s.test = mlnc::make_synthetic(o);
    return s;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// ONN

TEST_CASE("onn: recovers every label set of well separated data") {
    const auto s = separated(0.05);
    const mlnc::onn_predictor onn(s.train.H, s.train.S);
    CHECK(onn.num_classes() == 6 + 15 + 20);
    CHECK(onn.predict(s.test.H) == s.test.S);
    // float features give the same answer (computed in double after the cast).
    const Eigen::MatrixXf Hf = s.test.H.cast<float>();
    CHECK(onn.predict(Hf) == s.test.S);
}

TEST_CASE("onn: the nearest mean, checked sample by sample") {
    std::mt19937_64 rng(3);
    const auto S = label_sets::from_lists({{0}, {1}, {2}, {0, 1}, {1, 2}, {0}, {2}, {0, 1, 2}}, 3);
    const Eigen::MatrixXd H = gaussian(4, S.size(), rng);
    const mlnc::onn_predictor onn(H, S);
    const Eigen::MatrixXd X = gaussian(4, 50, rng);
    const auto nearest = onn.nearest(X);
    for (index_t i = 0; i < X.cols(); ++i) {
        const index_t g = nearest[static_cast<std::size_t>(i)];
        for (index_t h = 0; h < onn.num_classes(); ++h)
            CHECK((X.col(i) - onn.means().col(g)).norm() <= (X.col(i) - onn.means().col(h)).norm() + 1e-12);
    }
}

// Means (1, 0) for {1}, (-1, 0) for {0, 1} and (0, -1) for {0}; every ||mu||^2 = 1, so the GEMM
// form ||mu||^2 - 2 mu.h is computed exactly for these points. At (0, 1): 1, 1, 3, a tie between
// {1} and {0, 1}. Groups are stored {0}, {1}, {0, 1} (by multiplicity), but the lexicographically
// smallest of the tied sets is {0, 1}, which must win. (0.5, 0) and (0, -0.5) have unique answers.
TEST_CASE("onn: ties go to the lexicographically smallest set") {
    const auto S = label_sets::from_lists({{1}, {0, 1}, {0}}, 2);
    Eigen::MatrixXd H(2, 3);
    H << 1, -1, 0,  //
        0, 0, -1;
    const mlnc::onn_predictor onn(H, S);
    REQUIRE(as_vector(onn.classes()[0]) == std::vector<mlnc::label_t>{0});
    REQUIRE(as_vector(onn.classes()[1]) == std::vector<mlnc::label_t>{1});
    Eigen::MatrixXd X(2, 3);
    X << 0, 0.5, 0,  //
        1, 0, -0.5;
    const auto P = onn.predict(X);
    CHECK(as_vector(P[0]) == std::vector<mlnc::label_t>{0, 1});  // tie {1} / {0, 1}
    CHECK(as_vector(P[1]) == std::vector<mlnc::label_t>{1});
    CHECK(as_vector(P[2]) == std::vector<mlnc::label_t>{0});
    // At (1, -1): -1 for {0} and {1}, 3 for {0, 1}: {0}. At (-1, -1): 3 for {1}, -1 for {0} and
    // {0, 1}: a set comes before its extension, {0}.
    Eigen::MatrixXd Y(2, 2);
    Y << 1, -1,  //
        -1, -1;
    const auto Q = onn.predict(Y);
    CHECK(as_vector(Q[0]) == std::vector<mlnc::label_t>{0});
    CHECK(as_vector(Q[1]) == std::vector<mlnc::label_t>{0});
}

TEST_CASE("onn: cost and refusals") {
    const auto s = separated(0.1);
    const mlnc::onn_predictor onn(s.train.H, s.train.S);
    // d = 6, G = 41: 2 d G + 2 G = 492 + 82.
    CHECK(onn.flops_per_sample() == 2.0 * 6 * 41 + 2.0 * 41);
    CHECK_THROWS_WITH(onn.predict(Eigen::MatrixXd::Zero(5, 3)),
                      Catch::StartsWith("H:") && Catch::Contains("dimension 5") && Catch::Contains("d = 6"));
    CHECK_THROWS_WITH(onn.predict(Eigen::MatrixXd::Zero(6, 0)), Catch::StartsWith("H:") && Catch::Contains("no samples"));
    Eigen::MatrixXd bad = s.test.H;
    bad(2, 3) = std::nan("");
    CHECK_THROWS_WITH(onn.predict(bad), Catch::StartsWith("H:") && Catch::Contains("NaN"));
    CHECK_THROWS_WITH(mlnc::onn_predictor(s.train.H.leftCols(10), s.train.S), Catch::StartsWith("H:"));
}

TEST_CASE("require_labels_seen: test labels must occur in training") {
    const auto train = label_sets::from_lists({{0}, {1, 2}}, 5);
    CHECK_NOTHROW(mlnc::require_labels_seen(train, label_sets::from_lists({{2}, {0, 1}}, 5)));
    CHECK_THROWS_WITH(mlnc::require_labels_seen(train, label_sets::from_lists({{3}, {0, 4}}, 5)),
                      Catch::StartsWith("test labels:") && Catch::Contains("labels 3, 4 do not occur"));
    CHECK_THROWS_WITH(mlnc::require_labels_seen(train, label_sets::from_lists({{0}}, 6), "B.txt"),
                      Catch::StartsWith("B.txt:") && Catch::Contains("K = 6"));
}

// ---------------------------------------------------------------------------------------------
// Tag-wise decoder

// The check: on exact simplex ETFs (rotated, d = K - 1 and d > K - 1) the O(K log K)
// decoder and the brute-force nearest prototype agree on every sample, for K up to 12 and M up
// to 4, with C_m of both signs (and 0), on features near the prototypes and on pure noise.
// Exact agreement is the claim; random continuous data has no exact ties (a near tie within
// rounding would need two distances equal to ~1e-15 relative, probability ~1e-12 per sample).
TEST_CASE("tagwise: the fast decoder equals brute force on exact ETFs") {
    std::mt19937_64 rng(11);
    std::uniform_real_distribution<double> unif(0.2, 2.0);
    std::set<index_t> sizes_seen;
    int samples = 0;
    for (index_t K = 3; K <= 12; ++K) {
        for (index_t M = 1; M <= std::min<index_t>(4, K); ++M) {
            for (const index_t extra : {index_t{0}, index_t{3}}) {
                const index_t d = K - 1 + extra;
                const auto W = mlnc::simplex_etf<double>(K, d, unif(rng), rng());
                mlnc::per_multiplicity<double> C;
                for (index_t m = 1; m <= M; ++m) {
                    const double u = unif(rng);
                    // Mostly positive (the theorem's case), sometimes negative or 0. C_m = 0 makes
                    // p_S = 0, and so does m = K (an ETF's rows sum to 0): with both, two zero
                    // prototypes tie in exact arithmetic and rounding picks, so 0 only when M < K.
                    const std::uint64_t kind = rng() % 8;
                    C[m] = kind == 0 ? -u : (kind == 1 && M > 1 && M < K ? 0.0 : u);
                }
                const mlnc::tagwise_decoder dec(W, C);
                // 30 samples near random prototypes, 30 of pure noise.
                Eigen::MatrixXd X = 0.3 * gaussian(d, 60, rng);
                for (index_t i = 0; i < 30; ++i) {
                    const index_t m = 1 + static_cast<index_t>(rng() % static_cast<std::uint64_t>(M));
                    std::vector<index_t> all(static_cast<std::size_t>(K));
                    std::iota(all.begin(), all.end(), index_t{0});
                    std::shuffle(all.begin(), all.end(), rng);
                    for (index_t t = 0; t < m; ++t) X.col(i) += C[m] * W.row(all[static_cast<std::size_t>(t)]).transpose();
                }
                const auto fast = dec.predict(X);
                const auto brute = dec.predict_brute_force(X);
                for (index_t i = 0; i < X.cols(); ++i) {
                    INFO("K = " << K << ", M = " << M << ", d = " << d << ", sample " << i);
                    REQUIRE(as_vector(fast[i]) == as_vector(brute[i]));
                    sizes_seen.insert(fast.multiplicity(i));
                }
                samples += static_cast<int>(X.cols());
            }
        }
    }
    CHECK(samples == 60 * 2 * (3 + 9 * 4));  // K = 3: M = 1..3; K = 4..12: M = 1..4; two d each
    // The comparison across sizes was exercised: every size 1..4 was predicted somewhere.
    CHECK(sizes_seen == std::set<index_t>{1, 2, 3, 4});
}

// W = I_4 (integer scores, exact arithmetic), h = (1, 2, 0, 0), C_1 = 2, C_2 = 1:
//   size 1: best {1}, ||h - 2 e_1||^2 - ||h||^2 = 4 - 2*2*2 = -4
//   size 2: best {0, 1}, ||h - (e_0 + e_1)||^2 - ||h||^2 = 2 - 2*1*3 = -4
// an exact tie between sizes, won by the lexicographically smaller {0, 1}. With h = (2, 1, 0, 0)
// the tie is between {0} and {0, 1}: {0} (a prefix comes first). With h = (0, 1, 1, 0) and C = {1: 1}
// the scores of labels 1 and 2 tie: {1}.
TEST_CASE("tagwise: ties go to the lexicographically smallest set") {
    const Eigen::MatrixXd W = Eigen::MatrixXd::Identity(4, 4);
    const mlnc::tagwise_decoder dec(W, {{1, 2.0}, {2, 1.0}});
    Eigen::MatrixXd X(4, 2);
    X << 1, 2,  //
        2, 1,   //
        0, 0,   //
        0, 0;
    for (const auto& P : {dec.predict(X), dec.predict_brute_force(X)}) {
        CHECK(as_vector(P[0]) == std::vector<mlnc::label_t>{0, 1});
        CHECK(as_vector(P[1]) == std::vector<mlnc::label_t>{0});
    }
    const mlnc::tagwise_decoder one(W, {{1, 1.0}});
    const Eigen::Vector4d h(0, 1, 1, 0);
    CHECK(as_vector(one.predict(h)[0]) == std::vector<mlnc::label_t>{1});
    CHECK(as_vector(one.predict_brute_force(h)[0]) == std::vector<mlnc::label_t>{1});
}

TEST_CASE("tagwise: C_m fitted from training means recovers the data's sets") {
    const auto s = separated(0.05);
    const auto dec = mlnc::fit_tagwise_decoder(s.train.W, s.train.H, s.train.S);
    REQUIRE(dec.C().size() == 3);
    for (index_t m = 1; m <= 3; ++m)
        CHECK(dec.C().at(m) == Approx(s.train.C.at(m)).epsilon(0.05));
    CHECK(dec.predict(s.test.H) == s.test.S);
    CHECK(dec.predict_brute_force(s.test.H) == s.test.S);
}

// K = 10^4 labels, M = 5: brute force would compare sum_{m<=5} C(10^4, m) ~ 8e17 prototypes.
// W has random unit rows in d = 256 (an ETF would need d >= 9999): off-set scores are sums of at
// most 5 inner products of std 1/16, far below the in-set ones (~1), so with C_m = 1 and no noise
// the decoder must return each sample's set. The time bound is ~100x what a Release build needs.
TEST_CASE("tagwise: K = 10^4, M = 5 decodes quickly") {
    const index_t K = 10000, d = 256, n = 100;
    std::mt19937_64 rng(5);
    Eigen::MatrixXd W = gaussian(K, d, rng);
    W.rowwise().normalize();
    mlnc::per_multiplicity<double> C;
    for (index_t m = 1; m <= 5; ++m) C[m] = 1.0;
    const mlnc::tagwise_decoder dec(W, C);
    std::vector<std::vector<index_t>> truth;
    Eigen::MatrixXd X = Eigen::MatrixXd::Zero(d, n);
    for (index_t i = 0; i < n; ++i) {
        const index_t m = 1 + i % 5;
        std::set<index_t> s;
        while (static_cast<index_t>(s.size()) < m) s.insert(static_cast<index_t>(rng() % K));
        truth.emplace_back(s.begin(), s.end());
        for (const index_t k : s) X.col(i) += W.row(k).transpose();
    }
    const auto t0 = std::chrono::steady_clock::now();
    const auto P = dec.predict(X);
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    CHECK(P == label_sets::from_lists(truth, K));
    CHECK(seconds < 20.0);
    // 2 K d + 2K + 5 log2 5 + 5 (3 d + 5)
    CHECK(dec.flops_per_sample() == Approx(2.0 * K * d + 2.0 * K + 5 * std::log2(5.0) + 5 * (3.0 * d + 5)).epsilon(1e-15));
    CHECK_THROWS_WITH(dec.predict_brute_force(X), Catch::Contains("small K only"));
}

TEST_CASE("tagwise: refusals name the argument") {
    const auto W = mlnc::simplex_etf<double>(4, 3);
    CHECK_THROWS_WITH(mlnc::tagwise_decoder(W, {}), Catch::StartsWith("C:"));
    // A multiplicity below 1 cannot even be put into a per_multiplicity.
    CHECK_THROWS_WITH(mlnc::tagwise_decoder(W, {{0, 1.0}}), Catch::Contains("multiplicity 0"));
    CHECK_THROWS_WITH(mlnc::tagwise_decoder(W, {{5, 1.0}}), Catch::StartsWith("C:") && Catch::Contains("K = 4"));
    CHECK_THROWS_WITH(mlnc::tagwise_decoder(W, {{1, std::nan("")}}), Catch::StartsWith("C:"));
    Eigen::MatrixXd Wbad = W;
    Wbad(0, 0) = INFINITY;
    CHECK_THROWS_WITH(mlnc::tagwise_decoder(Wbad, {{1, 1.0}}), Catch::StartsWith("W:"));
    CHECK_THROWS_WITH(mlnc::tagwise_decoder(Eigen::MatrixXd::Zero(1, 3), {{1, 1.0}}), Catch::StartsWith("W:"));
    const mlnc::tagwise_decoder dec(W, {{1, 1.0}});
    CHECK_THROWS_WITH(dec.predict(Eigen::MatrixXd::Zero(4, 2)), Catch::StartsWith("H:") && Catch::Contains("d = 3"));
    // fit: K of W and of the labels must agree
    const auto S = label_sets::from_lists({{0}, {1}, {2}}, 3);
    CHECK_THROWS_WITH(mlnc::fit_tagwise_decoder(W, Eigen::MatrixXd::Zero(3, 3), S), Catch::StartsWith("W:"));
}

// ---------------------------------------------------------------------------------------------
// OvA

// Separable training data: every regression reaches its gradient tolerance, the training set is
// classified exactly, and the mean training loss is near zero. At the optimum the loss's pull
// balances the penalty's, loss ~ l2 ||w|| / margin; here ||w|| ~ 31 and the loss is ~1.2e-4 for
// every label (measured), so the bound 1e-3 leaves a factor 8 and still fails for an untrained
// (log 2) or half-trained classifier.
TEST_CASE("ova: trains to near-zero loss on separable features and predicts them") {
    const auto s = separated(0.05);
    const mlnc::ova_classifier ova(s.train.H, s.train.S);
    REQUIRE(ova.fits().size() == 6);
    for (const auto& f : ova.fits()) {
        CHECK(f.status == mlnc::ova_status::converged);
        CHECK(f.loss < 1e-3);
        CHECK(f.iterations > 0);
    }
    CHECK(ova.converged());
    CHECK(ova.predict(s.train.H) == s.train.S);
    CHECK(ova.predict(s.test.H) == s.test.S);
    // d = 6, K = 6: 2 K d + 3 K
    CHECK(ova.flops_per_sample() == 2.0 * 6 * 6 + 3.0 * 6);
}

// The logits at h = 0 are the biases, all negative here (each label is absent from most samples),
// so the prediction is empty and falls back to the single arg-max label.
TEST_CASE("ova: an empty prediction becomes the arg-max label") {
    const auto s = separated(0.05);
    const mlnc::ova_classifier ova(s.train.H, s.train.S);
    const Eigen::VectorXd zero = Eigen::VectorXd::Zero(6);
    const Eigen::VectorXd z = ova.decision_function(zero);
    REQUIRE(z.maxCoeff() < 0);
    Eigen::Index arg = 0;
    z.maxCoeff(&arg);
    const auto P = ova.predict(zero);
    CHECK(as_vector(P[0]) == std::vector<mlnc::label_t>{static_cast<mlnc::label_t>(arg)});
}

// A budget of one iteration cannot reach the tolerance: reported as a status, not thrown.
TEST_CASE("ova: non-convergence is a status") {
    const auto s = separated(0.05);
    mlnc::ova_options o;
    o.max_iterations = 1;
    const mlnc::ova_classifier ova(s.train.H, s.train.S, o);
    CHECK_FALSE(ova.converged());
    for (const auto& f : ova.fits()) CHECK(f.status != mlnc::ova_status::converged);
}

TEST_CASE("ova: refusals name the argument") {
    const auto S = label_sets::from_lists({{0}, {1}, {0, 1}}, 4);
    const Eigen::MatrixXd H = Eigen::MatrixXd::Random(3, 3);
    CHECK_THROWS_WITH(mlnc::ova_classifier(H, S),
                      Catch::StartsWith("training labels:") && Catch::Contains("labels 2, 3 have no training sample"));
    const auto S3 = label_sets::from_lists({{0}, {1}, {2}}, 3);
    CHECK_THROWS_WITH(mlnc::ova_classifier(H.leftCols(2), S3), Catch::StartsWith("H:"));
    mlnc::ova_options o;
    o.l2 = 0;
    CHECK_THROWS_WITH(mlnc::ova_classifier(H, S3, o), Catch::StartsWith("l2:"));
    o = {};
    o.max_iterations = 0;
    CHECK_THROWS_WITH(mlnc::ova_classifier(H, S3, o), Catch::StartsWith("max_iterations:"));
    const mlnc::ova_classifier ova(H, S3);
    CHECK_THROWS_WITH(ova.predict(Eigen::MatrixXd::Zero(2, 1)), Catch::StartsWith("H:"));
}

// ---------------------------------------------------------------------------------------------
// All three on the same separable data score perfectly.

TEST_CASE("predictors: perfect scores on separable synthetic data") {
    const auto s = separated(0.05);
    const mlnc::onn_predictor onn(s.train.H, s.train.S);
    const auto tw = mlnc::fit_tagwise_decoder(s.train.W, s.train.H, s.train.S);
    const mlnc::ova_classifier ova(s.train.H, s.train.S);
    for (const auto& P : {onn.predict(s.test.H), tw.predict(s.test.H), ova.predict(s.test.H)}) {
        const auto r = mlnc::compute_score_report(s.test.S, P);
        CHECK(r.overall.subset_accuracy == 1.0);
        CHECK(r.overall.f1_micro == 1.0);
        CHECK(r.overall.hamming_loss == 0.0);
        CHECK(r.by_multiplicity.multiplicities() == std::vector<index_t>{1, 2, 3});
    }
}

// ---------------------------------------------------------------------------------------------
// Extreme but valid input

TEST_CASE("predictors: features of norm 1e150 give the answers of the unscaled features") {
    // Squared norms reach 1e300, near the top of double: every predictor must stay finite and
    // scale-invariant (ONN's nearest mean, the tag-wise decoder's scores, OvA's logistic fits).
    const auto s = separated(0.05);
    const double scale = 1e150 / s.train.H.colwise().norm().maxCoeff();
    const Eigen::MatrixXd Htr = s.train.H * scale, Hte = s.test.H * scale;
    const mlnc::onn_predictor onn(Htr, s.train.S);
    CHECK(onn.predict(Hte) == s.test.S);
    const auto tw = mlnc::fit_tagwise_decoder(s.train.W, Htr, s.train.S);
    CHECK(tw.predict(Hte) == s.test.S);
    const mlnc::ova_classifier ova(Htr, s.train.S);
    CHECK(ova.weights().allFinite());
    CHECK(ova.predict(Hte) == s.test.S);
}

TEST_CASE("predictors: a single training sample per label set and a single test sample") {
    const auto S = label_sets::from_lists({{0}, {1}, {0, 1}}, 2);
    Eigen::MatrixXd H(2, 3);
    H << 1, -1, 0.1, 0, 0, 2;
    const mlnc::onn_predictor onn(H, S);
    const Eigen::VectorXd h = H.col(2);
    CHECK(as_vector(onn.predict(h)[0]) == std::vector<mlnc::label_t>{0, 1});
    const mlnc::ova_classifier ova(H, S);
    CHECK(ova.predict(H.col(0)).size() == 1);
}

// ---------------------------------------------------------------------------------------------
// Scalars and views

// fit_tagwise and the three predictors with float features and classifiers, as Matrix, Map, Block
// and expression (compiling this test is the compile-level check that they are accepted). The
// data are rounded to float first, so a float input widened to double is exactly the double input
// and all arithmetic is in double: results can differ only by the order of double operations (a
// product over a view instead of a copy), a few ulps. Continuous noisy data have no near ties at
// that level, so the predicted sets are equal; numbers are compared at 1e-12 relative (10^4 ulps,
// and 10^5 times below what accumulating in float would give). OvA sees the same double matrix
// either way, so its L-BFGS runs are the same.
TEST_CASE("predictors: float and double inputs agree") {
    constexpr double tol = 1e-12;
    const auto s = separated(0.4);
    const Eigen::MatrixXf Htr_f = s.train.H.cast<float>(), Hte_f = s.test.H.cast<float>();
    const Eigen::MatrixXf W_f = s.train.W.cast<float>();
    const Eigen::MatrixXd Htr = Htr_f.cast<double>(), Hte = Hte_f.cast<double>(), W = W_f.cast<double>();
    const auto& S = s.train.S;
    const index_t d = Htr.rows(), n = Hte.cols();

    // The float views of the test features: a Map, the .npy layout (an n x d row-major buffer,
    // transposed), a Block with an outer stride, and an expression that is exact in float.
    const Eigen::Map<const Eigen::MatrixXf> map(Hte_f.data(), d, n);
    using row_major = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
    const row_major rows = Hte_f.transpose();
    const Eigen::Map<const row_major> npy(rows.data(), n, d);
    Eigen::MatrixXf padded = Eigen::MatrixXf::Zero(d + 2, n + 1);
    padded.block(1, 1, d, n) = Hte_f;
    const auto block = padded.block(1, 1, d, n);
    const auto expression = 0.5f * (Hte_f + Hte_f);

    const auto same_fit = [&](const mlnc::tagwise_fit& a, const mlnc::tagwise_fit& b) {
        REQUIRE(a.C.multiplicities() == b.C.multiplicities());
        for (const auto& [m, c] : a.C) {
            CHECK(c == Approx(b.C.at(m)).epsilon(tol));
            CHECK(a.residual.at(m) == Approx(b.residual.at(m)).epsilon(tol));
        }
    };
    const auto fit = mlnc::fit_tagwise(Htr, S, W);
    same_fit(mlnc::fit_tagwise(Htr_f, S, W_f), fit);
    const Eigen::Map<const Eigen::MatrixXf> train_map(Htr_f.data(), d, Htr.cols());
    same_fit(mlnc::fit_tagwise(train_map, S, W_f.leftCols(d)), fit);

    SECTION("onn") {
        const mlnc::onn_predictor onn(Htr, S);
        const mlnc::onn_predictor onn_f(Htr_f, S);
        CHECK(onn_f.means().isApprox(onn.means(), tol));
        const auto expected = onn.predict(Hte);
        for (const auto& P : {onn_f.predict(Hte_f), onn_f.predict(map), onn_f.predict(npy.transpose()),
                              onn_f.predict(block), onn_f.predict(expression), onn.predict(Hte_f)})
            CHECK(P == expected);
        CHECK(onn_f.nearest(block) == onn.nearest(Hte));
    }
    SECTION("tag-wise decoder") {
        const mlnc::tagwise_decoder dec(W, fit.C);
        const mlnc::tagwise_decoder dec_f(W_f, fit.C);
        const auto expected = dec.predict(Hte);
        for (const auto& P : {dec_f.predict(Hte_f), dec_f.predict(map), dec_f.predict(npy.transpose()),
                              dec_f.predict(block), dec_f.predict(expression), dec.predict(Hte_f)})
            CHECK(P == expected);
        CHECK(dec_f.predict_brute_force(block) == dec.predict_brute_force(Hte));
        const auto fitted_f = mlnc::fit_tagwise_decoder(W_f, Htr_f, S);
        for (const auto& [m, c] : fitted_f.C()) CHECK(c == Approx(fit.C.at(m)).epsilon(tol));
        CHECK(fitted_f.predict(Hte_f) == mlnc::fit_tagwise_decoder(W, Htr, S).predict(Hte));
    }
    SECTION("OvA") {
        const mlnc::ova_classifier ova(Htr, S);
        const mlnc::ova_classifier ova_f(Htr_f, S);
        CHECK(ova_f.weights().isApprox(ova.weights(), tol));
        CHECK(ova_f.bias().isApprox(ova.bias(), tol));
        const Eigen::MatrixXd Z = ova.decision_function(Hte);
        CHECK(ova_f.decision_function(Hte_f).isApprox(Z, tol));
        CHECK(ova_f.decision_function(npy.transpose()).isApprox(Z, tol));
        CHECK(ova_f.decision_function(expression).isApprox(Z, tol));
        const auto expected = ova.predict(Hte);
        for (const auto& P : {ova_f.predict(Hte_f), ova_f.predict(map), ova_f.predict(block), ova.predict(Hte_f)})
            CHECK(P == expected);
        CHECK(mlnc::ova_classifier(train_map, S).weights().isApprox(ova.weights(), tol));
    }
}

// ---------------------------------------------------------------------------------------------
// Backends

TEST_CASE("predictors: a backend value first, deduced without template arguments") {
    const auto s = separated(0.05);
    const auto& H = s.train.H;
    const auto& S = s.train.S;
    const auto& W = s.train.W;

    const mlnc::onn_predictor onn(mlnc::cpu{2}, H, S);
    const mlnc::onn_predictor onn_default(H, S);
    static_assert(std::is_same_v<decltype(onn), const mlnc::onn_predictor<mlnc::cpu>>);
    static_assert(std::is_same_v<decltype(onn_default), const mlnc::onn_predictor<mlnc::cpu>>);
    CHECK(onn.backend_value().threads == 2);
    CHECK(onn_default.backend_value().threads == 0);
    CHECK(onn.predict(s.test.H) == onn_default.predict(s.test.H));

    const mlnc::tagwise_decoder dec(mlnc::cpu{1}, W, {{1, 1.0}, {2, 0.5}});
    static_assert(std::is_same_v<decltype(dec), const mlnc::tagwise_decoder<mlnc::cpu>>);
    CHECK(dec.backend_value().threads == 1);
    const auto fitted = mlnc::fit_tagwise_decoder(mlnc::cpu{3}, W, H, S);
    CHECK(fitted.backend_value().threads == 3);
    CHECK(fitted.predict(s.test.H) == mlnc::fit_tagwise_decoder(W, H, S).predict(s.test.H));

    mlnc::ova_options o;
    o.max_iterations = 50;
    const mlnc::ova_classifier ova(mlnc::cpu{4}, H, S, o);
    const mlnc::ova_classifier ova_default(H, S, o);
    static_assert(std::is_same_v<decltype(ova), const mlnc::ova_classifier<mlnc::cpu>>);
    static_assert(std::is_same_v<decltype(ova_default), const mlnc::ova_classifier<mlnc::cpu>>);
    CHECK(ova.backend_value().threads == 4);
    CHECK(ova.weights() == ova_default.weights());

    static_assert(mlnc::backend_traits<mlnc::cpu>::predictors);
    // The value is checked at run time.
    CHECK_THROWS_WITH(mlnc::onn_predictor(mlnc::cpu{-1}, H, S), Catch::StartsWith("cpu::threads:"));
    CHECK_THROWS_WITH(mlnc::tagwise_decoder(mlnc::cpu{-1}, W, {{1, 1.0}}), Catch::StartsWith("cpu::threads:"));
    CHECK_THROWS_WITH(mlnc::fit_tagwise_decoder(mlnc::cpu{-1}, W, H, S), Catch::StartsWith("cpu::threads:"));
    CHECK_THROWS_WITH(mlnc::ova_classifier(mlnc::cpu{-1}, H, S), Catch::StartsWith("cpu::threads:"));
}

TEST_CASE("predictors: the same answers at every thread count", "[predict][threads]") {
    // K = 24 with every pair: 24 + 276 = 300 training sets, d = 24, and noisy test features (so
    // that the decoders do not all agree trivially). Enough work per sample for several threads:
    // prediction splits the test samples, OvA the labels (one solver per thread).
    mlnc::synthetic_options o;
    o.K = 24;
    o.n = {{1, 8}, {2, 2}};
    o.noise = 0.6;
    o.lambdas = {1e-4, 1e-4, 1e-4};  // below the collapse threshold at K = 24
    o.seed = 5;
    const auto train = mlnc::make_synthetic(o);
    o.seed = 6;
    const auto test = mlnc::make_synthetic(o);
    mlnc::ova_options opt;
    opt.max_iterations = 40;
    const mlnc::onn_predictor onn1(mlnc::cpu{1}, train.H, train.S);
    const auto tw1 = mlnc::fit_tagwise_decoder(mlnc::cpu{1}, train.W, train.H, train.S);
    const mlnc::ova_classifier ova1(mlnc::cpu{1}, train.H, train.S, opt);
    const auto onn_ref = onn1.predict(test.H), tw_ref = tw1.predict(test.H), ova_ref = ova1.predict(test.H);
    CHECK(onn_ref != tw_ref);  // the noise makes the decoders differ somewhere
    for (int threads : {2, 3}) {
        INFO(threads << " threads");
        const mlnc::onn_predictor onn(mlnc::cpu{threads}, train.H, train.S);
        CHECK(onn.predict(test.H) == onn_ref);
        CHECK(onn.nearest(test.H) == onn1.nearest(test.H));
        CHECK(mlnc::fit_tagwise_decoder(mlnc::cpu{threads}, train.W, train.H, train.S).predict(test.H) == tw_ref);
        const mlnc::ova_classifier ova(mlnc::cpu{threads}, train.H, train.S, opt);
        CHECK(ova.weights() == ova1.weights());
        CHECK(ova.bias() == ova1.bias());
        CHECK(ova.predict(test.H) == ova_ref);
        for (std::size_t k = 0; k < ova.fits().size(); ++k) CHECK(ova.fits()[k].iterations == ova1.fits()[k].iterations);
    }
}
