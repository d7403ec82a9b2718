// Multi-label scores against values computed by hand from scikit-learn's definitions.
// Every expected value is a small rational number; the tolerance 1e-15 only absorbs the rounding
// of one division and of sums of at most a few terms.

#include <mlnc/scores.hpp>

#include <catch2/catch.hpp>

#include <vector>

using mlnc::label_sets;

namespace {

constexpr double tol = 1e-15;

void check_scores(const mlnc::multilabel_scores& s, mlnc::index_t n, double micro, double macro, double samples,
                  double subset, double hamming, double jaccard) {
    CHECK(s.n == n);
    CHECK(s.f1_micro == Approx(micro).margin(tol).epsilon(0));
    CHECK(s.f1_macro == Approx(macro).margin(tol).epsilon(0));
    CHECK(s.f1_samples == Approx(samples).margin(tol).epsilon(0));
    CHECK(s.subset_accuracy == Approx(subset).margin(tol).epsilon(0));
    CHECK(s.hamming_loss == Approx(hamming).margin(tol).epsilon(0));
    CHECK(s.jaccard_samples == Approx(jaccard).margin(tol).epsilon(0));
}

}  // namespace

// K = 4, three samples:
//   truth {0}    {1,2}  {0,3}
//   pred  {0}    {1}    {1,3}
// Per sample |Y&P|, |Y|, |P|: (1,1,1), (1,2,1), (1,2,2)
//   f1_samples = (2/2 + 2/3 + 2/4) / 3 = (1 + 2/3 + 1/2) / 3 = 13/18
//   jaccard    = (1/1 + 1/2 + 1/3) / 3 = 11/18
//   subset accuracy = 1/3
// Totals: TP = 3, FP = 1 (label 1 in sample 2), FN = 2 (label 2 in sample 1, label 0 in sample 2)
//   f1_micro = 2*3 / (6 + 1 + 2) = 2/3;  hamming = (1 + 2) / (3 * 4) = 1/4
// Per label (TP, FP, FN): 0: (1,0,1) -> 2/3;  1: (1,1,0) -> 2/3;  2: (0,0,1) -> 0;  3: (1,0,0) -> 1
//   f1_macro = (2/3 + 2/3 + 0 + 1) / 4 = 7/12
TEST_CASE("scores: a hand-checked example, overall") {
    const auto truth = label_sets::from_lists({{0}, {1, 2}, {0, 3}}, 4);
    const auto pred = label_sets::from_lists({{0}, {1}, {1, 3}}, 4);
    const mlnc::multilabel_scores s = mlnc::compute_multilabel_scores(truth, pred);
    check_scores(s, 3, 2.0 / 3, 7.0 / 12, 13.0 / 18, 1.0 / 3, 0.25, 11.0 / 18);
    CHECK(mlnc::f1_micro(truth, pred) == s.f1_micro);
    CHECK(mlnc::f1_macro(truth, pred) == s.f1_macro);
    CHECK(mlnc::f1_samples(truth, pred) == s.f1_samples);
    CHECK(mlnc::subset_accuracy(truth, pred) == s.subset_accuracy);
    CHECK(mlnc::hamming_loss(truth, pred) == s.hamming_loss);
    CHECK(mlnc::jaccard_samples(truth, pred) == s.jaccard_samples);
}

// The same example split by true multiplicity.
//  m = 1: sample 0 only, predicted exactly. Labels 1, 2, 3 have no true and no predicted positive
//         (0/0, counted 0), label 0 has f1 = 1: f1_macro = 1/4; everything else perfect.
//  m = 2: samples 1 and 2. TP = 2, FP = 1, FN = 2: f1_micro = 4/7; hamming = 3/8;
//         f1_samples = (2/3 + 1/2)/2 = 7/12; jaccard = (1/2 + 1/3)/2 = 5/12; subset 0;
//         per label: 0: (0,0,1) -> 0; 1: (1,1,0) -> 2/3; 2: (0,0,1) -> 0; 3: (1,0,0) -> 1;
//         f1_macro = (5/3)/4 = 5/12.
TEST_CASE("scores: a hand-checked example, by true multiplicity") {
    const auto truth = label_sets::from_lists({{0}, {1, 2}, {0, 3}}, 4);
    const auto pred = label_sets::from_lists({{0}, {1}, {1, 3}}, 4);
    const auto r = mlnc::compute_score_report(truth, pred);
    check_scores(r.overall, 3, 2.0 / 3, 7.0 / 12, 13.0 / 18, 1.0 / 3, 0.25, 11.0 / 18);
    CHECK(r.overall == mlnc::compute_multilabel_scores(truth, pred));
    REQUIRE(r.by_multiplicity.multiplicities() == std::vector<mlnc::index_t>{1, 2});
    check_scores(r.by_multiplicity.at(1), 1, 1.0, 0.25, 1.0, 1.0, 0.0, 1.0);
    check_scores(r.by_multiplicity.at(2), 2, 4.0 / 7, 5.0 / 12, 7.0 / 12, 0.0, 3.0 / 8, 5.0 / 12);
}

// K = 5, label 4 never occurs: perfect predictions still average f1_macro over all 5 labels,
// with 0 for label 4 (scikit-learn's zero_division default), so f1_macro = 4/5.
TEST_CASE("scores: a label with no true and no predicted positive counts 0 in f1_macro") {
    const auto truth = label_sets::from_lists({{0, 1}, {2}, {3}}, 5);
    check_scores(mlnc::compute_multilabel_scores(truth, truth), 3, 1.0, 0.8, 1.0, 1.0, 0.0, 1.0);
}

// Predictions disjoint from the truth: every count of agreement is 0.
// truth {0} {1}, pred {1} {0}, K = 2: TP = 0, FP = 2, FN = 2; hamming = 4/4 = 1;
// per label (TP, FP, FN) = (0, 1, 1): f1 = 0.
TEST_CASE("scores: entirely wrong predictions") {
    const auto truth = label_sets::from_lists({{0}, {1}}, 2);
    const auto pred = label_sets::from_lists({{1}, {0}}, 2);
    check_scores(mlnc::compute_multilabel_scores(truth, pred), 2, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0);
}

// A superset prediction: truth {0}, pred {0, 1, 2}, K = 3: f1 = 2/4 = 1/2, jaccard = 1/3,
// hamming = 2/3, f1_micro = 2/(2 + 2) = 1/2; per label: 0 -> 1, 1 and 2: (0,1,0) -> 0, macro 1/3.
TEST_CASE("scores: over-prediction") {
    const auto truth = label_sets::from_lists({{0}}, 3);
    const auto pred = label_sets::from_lists({{0, 1, 2}}, 3);
    check_scores(mlnc::compute_multilabel_scores(truth, pred), 1, 0.5, 1.0 / 3, 0.5, 0.0, 2.0 / 3, 1.0 / 3);
}

TEST_CASE("scores: inconsistent inputs are refused naming the argument") {
    const auto truth = label_sets::from_lists({{0}, {1}}, 3);
    CHECK_THROWS_WITH(mlnc::compute_multilabel_scores(truth, label_sets::from_lists({{0}}, 3)),
                      Catch::Contains("pred") && Catch::Contains("1 samples") && Catch::Contains("truth has 2"));
    CHECK_THROWS_WITH(mlnc::compute_score_report(truth, label_sets::from_lists({{0}, {1}}, 4)),
                      Catch::Contains("pred") && Catch::Contains("K = 4"));
    CHECK_THROWS_WITH(mlnc::compute_multilabel_scores(label_sets::from_lists({}, 3), label_sets::from_lists({}, 3)),
                      Catch::Contains("truth") && Catch::Contains("no samples"));
    CHECK_THROWS_AS(mlnc::f1_micro(truth, label_sets::from_lists({{0}}, 3)), mlnc::error);
}

// K = 2^31 - 1 as a label file with K inferred can give: per-label counts of size K would be
// 48 GB. Only the labels in use are counted; the scores divide by K as the definitions say.
TEST_CASE("scores: a K far beyond the labels in use costs nothing of size K") {
    const mlnc::index_t K = 2147483647;
    const auto truth = label_sets::from_lists({{0}, {2147483646}}, K);
    const auto pred = label_sets::from_lists({{0}, {5}}, K);
    const auto r = mlnc::compute_score_report(truth, pred);
    // Labels 0 (f1 1), 5 (0) and 2147483646 (0): f1_macro = 1/K; hamming = 2 / (2 K).
    CHECK(r.overall.f1_macro == Approx(1.0 / static_cast<double>(K)).epsilon(1e-15));
    CHECK(r.overall.hamming_loss == Approx(1.0 / static_cast<double>(K)).epsilon(1e-15));
    CHECK(r.overall.subset_accuracy == 0.5);
}
