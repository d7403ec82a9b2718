// The UFM trainer: reaching the closed-form optimum f* of Theorem 1, the methods and their
// stopping rules, history and observer, determinism, the fixed-ETF mode, refusals.

#include <mlnc/etf.hpp>
#include <mlnc/optimum.hpp>
#include <mlnc/ufm.hpp>

#include "test_support.hpp"

#include <catch2/catch.hpp>

#include <cmath>
#include <limits>
#include <new>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

using namespace mlnc;

namespace {

// n_m for the test's dense lists n[m-1] (0 entries give no samples).
multiplicity_counts as_counts(const std::vector<int>& n) {
    multiplicity_counts c;
    for (std::size_t j = 0; j < n.size(); ++j) c[static_cast<index_t>(j) + 1] = n[j];
    return c;
}

// Every m-subset of {0..K-1} repeated n_m times: the balanced sets of Theorem 1.
label_sets balanced_labels(index_t K, const std::vector<int>& n) { return balanced_label_sets(K, as_counts(n)); }

double rel_gap(double f, double f_star) { return (f - f_star) / std::abs(f_star); }

// The optimum of Problem (4) with W fixed to a simplex ETF of row norm w (docs/ufm.md): b = 0 and
// h_i = C_m sum_{k in S_i} w_k, where the logit gap Delta_m solves
//   Delta (m e^Delta + K - m) = s,  s = K^2 w^2 / (2 N lH (K-1)),
// and f = lW K w^2 + (1/N) sum_m N_m [m log(m + (K-m) e^-Delta_m) + N lH (K-1) m (K-m) Delta_m^2 / (K w)^2].
// Derived independently of optimum.hpp; the left side is increasing, so bisection to the last bit.
double fixed_etf_optimum(index_t K, const std::vector<int>& n, const penalties& p, double w) {
    double N = 0;
    for (std::size_t j = 0; j < n.size(); ++j) N += static_cast<double>(binomial(K, static_cast<index_t>(j) + 1)) * n[j];
    const double Kd = static_cast<double>(K);
    const double s = Kd * Kd * w * w / (2 * N * p.lambda_h * (Kd - 1));
    double total = 0;
    for (std::size_t j = 0; j < n.size(); ++j) {
        const double m = static_cast<double>(j + 1);
        const double Nm = static_cast<double>(binomial(K, static_cast<index_t>(j) + 1)) * n[j];
        if (Nm == 0) continue;
        if (m == Kd) {
            total += Nm * m * std::log(m);
            continue;
        }
        double lo = 0, hi = std::min(s / (Kd - m), 700.0);
        for (int it = 0; it < 200; ++it) {
            const double mid = 0.5 * (lo + hi);
            (mid * (m * std::exp(mid) + Kd - m) < s ? lo : hi) = mid;
        }
        const double D = 0.5 * (lo + hi);
        total += Nm * (m * std::log(m + (Kd - m) * std::exp(-D)) +
                       N * p.lambda_h * (Kd - 1) * m * (Kd - m) * D * D / (Kd * Kd * w * w));
    }
    return p.lambda_w * Kd * w * w + total / N;
}

struct config {
    index_t K, d;
    std::vector<int> n;  // n[m-1] = samples per m-subset
    penalties lambdas;
};

// K = 4..10, M up to K-1, d in {K-1, K, 2K}, multiplicities of different sizes (and one absent).
const std::vector<config> configs = {
    {4, 3, {3, 2, 1}, {1e-3, 1e-3, 1e-3}},           // M = K-1, d = K-1
    {5, 5, {4, 1}, {2e-3, 1e-3, 1e-3}},              // d = K
    {6, 12, {1, 3, 0, 2}, {1e-3, 2e-3, 1e-3}},       // m = 3 absent, d = 2K
    {7, 14, {2, 1, 1, 0, 0, 1}, {1e-3, 1e-3, 5e-3}},  // M = K-1 = 6
    {8, 7, {5, 1, 2}, {1e-3, 3e-3, 1e-3}},           // d = K-1
    {9, 9, {6, 1}, {2e-3, 2e-3, 2e-3}},              // d = K
    {10, 9, {3, 1}, {5e-3, 1e-3, 1e-3}},             // K = 10, d = K-1
};

}  // namespace

TEST_CASE("ufm: L-BFGS reaches the closed-form optimum f* to a relative gap below 1e-10", "[ufm]") {
    for (const auto& c : configs) {
        const label_sets S = balanced_labels(c.K, c.n);
        const optimum_result opt = global_optimum(c.K, as_counts(c.n), c.lambdas);
        INFO("K = " << c.K << ", d = " << c.d << ", N = " << S.size() << ", f* = " << opt->f);
        REQUIRE_FALSE(opt->trivial);
        const ufm_result<double> r = train_ufm<double>(S, c.d, c.lambdas, ufm_options{});
        const double gap = rel_gap(r.objective, opt->f);
        INFO("gap = " << gap << ", iterations = " << r.iterations << ", |grad| = " << r.gradient_norm
                      << ", seconds = " << r.seconds);
        CHECK(r.status == ufm_status::converged_gradient);
        CHECK(r.gradient_norm <= 1e-12 * std::max(1.0, std::abs(r.objective)));
        CHECK(gap < 1e-10);
        // f* is a lower bound: the trained value can undercut it by rounding only (~u |f|).
        CHECK(gap > -1e-14);
        // Observed 170-240 iterations; the bound catches a line search that stalls into restarts.
        CHECK(r.iterations < 1000);
        CHECK(r.restarts == 0);
        // Structure of Theorem 1 at a point with ||grad|| <= 1e-12: the distance to the optimum is
        // about ||grad|| / (smallest curvature ~ 2 lambda ~ 2e-3), so 1e-6 is a wide margin.
        CHECK(r.b.norm() < 1e-6);
        CHECK(std::abs(r.W.squaredNorm() - opt->rho) < 1e-6 * opt->rho);
    }
}

TEST_CASE("ufm: every L-BFGS line search reaches f*; the approximate Wolfe one also the gradient tolerance",
          "[ufm]") {
    const config& c = configs[1];
    const label_sets S = balanced_labels(c.K, c.n);
    const double f_star = global_optimum(c.K, as_counts(c.n), c.lambdas)->f;
    for (auto ls : {ufm_line_search::approximate_wolfe, ufm_line_search::backtracking_armijo,
                    ufm_line_search::backtracking_strong_wolfe, ufm_line_search::nocedal_wright}) {
        ufm_options o;
        o.line_search = ls;
        const auto r = train_ufm<double>(S, c.d, c.lambdas, o);
        INFO("line search " << static_cast<int>(ls) << ": status " << to_string(r.status) << ", |grad| = "
                            << r.gradient_norm << ", restarts " << r.restarts);
        CHECK(rel_gap(r.objective, f_star) < 1e-10);
        CHECK(r.iterations < 2000);
        if (ls == ufm_line_search::approximate_wolfe) {
            CHECK(r.status == ufm_status::converged_gradient);
        } else {
            // LBFGSpp's searches test f alone, which stops resolving decreases at ||grad|| ~ 1e-9
            // here; they end at that rounding floor after a restart that cannot make progress.
            CHECK((r.status == ufm_status::converged_gradient || r.status == ufm_status::line_search_failed));
            CHECK(r.gradient_norm < 1e-6);
        }
    }
}

TEST_CASE("ufm: gradient descent with momentum decreases f monotonically and reaches f*", "[ufm]") {
    const config& c = configs[0];
    const label_sets S = balanced_labels(c.K, c.n);
    const double f_star = global_optimum(c.K, as_counts(c.n), c.lambdas)->f;
    ufm_options o;
    o.method = ufm_method::gd;
    o.gradient_tolerance = 1e-7;  // above GD's Armijo floor (~3e-9 here); gap ~ |grad|^2 / (2 mu) ~ 1e-11
    o.max_iterations = 20000;
    o.history_every = 1;
    const auto r = train_ufm<double>(S, c.d, c.lambdas, o);
    INFO("iterations " << r.iterations << ", gap " << rel_gap(r.objective, f_star));
    REQUIRE(r.status == ufm_status::converged_gradient);
    CHECK(rel_gap(r.objective, f_star) < 1e-9);
    CHECK(rel_gap(r.objective, f_star) > -1e-14);
    REQUIRE(r.history.size() == static_cast<std::size_t>(r.iterations) + 1);
    // Armijo with a descent direction: f_{k+1} <= f_k + c1 a g.d <= f_k, exactly, every step.
    for (std::size_t i = 1; i < r.history.size(); ++i) REQUIRE(r.history[i].objective <= r.history[i - 1].objective);

    // Momentum earns its place: without it the same tolerance takes several times the steps
    // (observed 198 vs 1761 iterations to ||grad|| <= 1e-7).
    o.momentum = 0;
    const auto plain = train_ufm<double>(S, c.d, c.lambdas, o);
    REQUIRE(plain.status == ufm_status::converged_gradient);
    CHECK(plain.iterations > 2 * r.iterations);
}

TEST_CASE("ufm: float reaches f* to the precision of float", "[ufm]") {
    for (const config& c : {configs[1], configs[4]}) {
        const label_sets S = balanced_labels(c.K, c.n);
        const double f_star = global_optimum(c.K, as_counts(c.n), c.lambdas)->f;
        ufm_options o;
        // The gradient's rounding floor in float is ~1e-6 (u = 6e-8 times O(10) terms per entry).
        o.gradient_tolerance = 1e-5;
        const auto r = train_ufm<float>(S, c.d, c.lambdas, o);
        INFO("K = " << c.K << ": gap " << rel_gap(r.objective, f_star) << ", iterations " << r.iterations);
        CHECK(r.status == ufm_status::converged_gradient);
        // At ||grad|| = 1e-5 the remaining gap is ~ ||grad||^2 / (2 mu) ~ 1e-10 / 2e-3 = 5e-8, and f
        // itself is rounded at ~u |f| = 6e-8 |f| per operation; observed |gap| <= 5e-8.
        CHECK(std::abs(rel_gap(r.objective, f_star)) < 1e-6);
    }
}

TEST_CASE("ufm: history every k iterations, observer at the same iterates", "[ufm]") {
    const config& c = configs[2];
    const label_sets S = balanced_labels(c.K, c.n);
    ufm_options o;
    o.history_every = 7;
    o.max_iterations = 50;
    std::vector<int> seen;
    std::vector<double> seen_f;
    matrix<double> last_W, last_H;
    vector<double> last_b;
    pal_objective<double> f(S, c.lambdas);
    const auto observer = [&](const ufm_history_entry& e, const Eigen::Ref<const matrix<double>>& W,
                                              const Eigen::Ref<const matrix<double>>& H,
                                              const Eigen::Ref<const vector<double>>& b) {
        seen.push_back(e.iteration);
        seen_f.push_back(f.value(W, H, b));
        last_W = W;
        last_H = H;
        last_b = b;
    };
    const auto r = train_ufm<double>(S, c.d, c.lambdas, o, observer);
    REQUIRE(r.status == ufm_status::max_iterations);
    REQUIRE(r.iterations == 50);
    const std::vector<int> expected = {0, 7, 14, 21, 28, 35, 42, 49, 50};  // every 7, and the last
    REQUIRE(seen == expected);
    REQUIRE(r.history.size() == expected.size());
    for (std::size_t i = 0; i < expected.size(); ++i) {
        CHECK(r.history[i].iteration == expected[i]);
        // The observer sees the very iterate the entry describes.
        CHECK(seen_f[i] == Approx(r.history[i].objective).epsilon(1e-14));
        if (i > 0) {
            // Non-increasing up to the approximate Wolfe test's allowance of 16 u |f|.
            CHECK(r.history[i].objective <= r.history[i - 1].objective * (1 + 1e-14));
            CHECK(r.history[i].seconds >= r.history[i - 1].seconds);
        }
    }
    CHECK(r.history.back().objective == r.objective);
    CHECK(r.history.front().objective > r.objective);
    CHECK(last_W == r.W);
    CHECK(last_H == r.H);
    CHECK(last_b == r.b);
}

TEST_CASE("ufm: the same seed gives the same result bit for bit", "[ufm]") {
    const config& c = configs[0];
    const label_sets S = balanced_labels(c.K, c.n);
    ufm_options o;
    o.seed = 42;
    o.max_iterations = 60;
    const auto a = train_ufm<double>(S, c.d, c.lambdas, o);
    const auto b = train_ufm<double>(S, c.d, c.lambdas, o);
    CHECK(a.W == b.W);
    CHECK(a.H == b.H);
    CHECK(a.b == b.b);
    CHECK(a.objective == b.objective);
    CHECK(a.iterations == b.iterations);
    CHECK(a.function_evaluations == b.function_evaluations);

    o.seed = 43;
    const auto other = train_ufm<double>(S, c.d, c.lambdas, o);
    CHECK_FALSE(other.W == a.W);
    // The start: seed 0 and the default init_scale give N(0, 0.1^2) entries; over the 1324
    // entries of configs[4] the sample std is 0.1 within 2% (one sigma).
    ufm_options start;
    start.max_iterations = 0;
    const config& big = configs[4];
    const auto s0 = train_ufm<double>(balanced_labels(big.K, big.n), big.d, big.lambdas, start);
    CHECK(s0.iterations == 0);
    CHECK(s0.history.size() == 1);
    const double n_entries = static_cast<double>(s0.W.size() + s0.H.size() + s0.b.size());
    const double ss = s0.W.squaredNorm() + s0.H.squaredNorm() + s0.b.squaredNorm();
    CHECK(std::sqrt(ss / n_entries) == Approx(0.1).epsilon(0.1));
}

TEST_CASE("ufm: fixed-ETF classifier stays exactly the ETF and H, b reach their own optimum", "[ufm]") {
    const config& c = configs[4];  // K = 8, d = K-1
    const label_sets S = balanced_labels(c.K, c.n);
    const optimum_result opt = global_optimum(c.K, as_counts(c.n), c.lambdas);
    for (double w : {opt->w_norm, 0.5 * opt->w_norm, 2.0}) {
        ufm_options o;
        o.fix_classifier_to_etf = true;
        o.etf_row_norm = w;
        o.seed = 5;
        const auto r = train_ufm<double>(S, c.d, c.lambdas, o);
        INFO("row norm " << w << " (optimal " << opt->w_norm << "): status " << to_string(r.status));
        CHECK(r.W == simplex_etf<double>(c.K, c.d, w, o.seed));
        CHECK(r.status == ufm_status::converged_gradient);
        const double f_etf = fixed_etf_optimum(c.K, c.n, c.lambdas, w);
        CHECK(rel_gap(r.objective, f_etf) < 1e-10);
        CHECK(rel_gap(r.objective, f_etf) > -1e-14);
        CHECK(f_etf >= opt->f * (1 - 1e-14));
        // At the optimal row norm the restricted problem has the global optimum.
        if (w == opt->w_norm) CHECK(std::abs(rel_gap(r.objective, opt->f)) < 1e-10);
    }
    ufm_options o;
    o.fix_classifier_to_etf = true;
    o.max_iterations = 20;
    const auto rf = train_ufm<float>(S, c.d, c.lambdas, o);
    CHECK(rf.W == simplex_etf<float>(c.K, c.d, 1.0f, o.seed));
}

TEST_CASE("ufm: stopping rules", "[ufm]") {
    const config& c = configs[1];
    const label_sets S = balanced_labels(c.K, c.n);
    SECTION("max_iterations") {
        for (auto method : {ufm_method::lbfgs, ufm_method::gd}) {
            ufm_options o;
            o.method = method;
            o.max_iterations = 5;
            const auto r = train_ufm<double>(S, c.d, c.lambdas, o);
            CHECK(r.status == ufm_status::max_iterations);
            CHECK(r.iterations == 5);
            CHECK(r.function_evaluations >= 6);
        }
    }
    SECTION("relative change") {
        ufm_options o;
        o.relative_tolerance = 1e-6;
        o.history_every = 1;
        const auto r = train_ufm<double>(S, c.d, c.lambdas, o);
        REQUIRE(r.status == ufm_status::converged_relative_change);
        const auto& h = r.history;
        REQUIRE(h.size() >= 2);
        const double last_change = std::abs(h.back().objective - h[h.size() - 2].objective);
        CHECK(last_change <= 1e-6 * std::max(1.0, std::abs(h.back().objective)));
        for (std::size_t i = 1; i + 1 < h.size(); ++i)
            CHECK(std::abs(h[i].objective - h[i - 1].objective) > 1e-6 * std::max(1.0, std::abs(h[i].objective)));
        CHECK(r.iterations < train_ufm<double>(S, c.d, c.lambdas, ufm_options{}).iterations);
    }
    SECTION("gradient tolerance met at the start") {
        ufm_options o;
        o.gradient_tolerance = 1e6;
        const auto r = train_ufm<double>(S, c.d, c.lambdas, o);
        CHECK(r.status == ufm_status::converged_gradient);
        CHECK(r.iterations == 0);
        CHECK(r.function_evaluations == 1);
    }
    SECTION("non-finite start") {
        ufm_options o;
        o.init_scale = 1e200;  // logits ~ 1e400 overflow
        const auto r = train_ufm<double>(S, c.d, c.lambdas, o);
        CHECK(r.status == ufm_status::non_finite);
        CHECK(r.iterations == 0);
    }
}

TEST_CASE("ufm: the chosen loss variant is the objective minimised", "[ufm]") {
    const config& c = configs[0];
    const label_sets S = balanced_labels(c.K, c.n);
    ufm_options o;
    o.variant = pal_variant::pal_n;
    const auto r = train_ufm<double>(S, c.d, c.lambdas, o);
    CHECK(r.status == ufm_status::converged_gradient);
    pal_objective<double> f(S, c.lambdas, pal_variant::pal_n);
    matrix<double> dW(r.W.rows(), r.W.cols()), dH(r.H.rows(), r.H.cols());
    vector<double> db(r.b.size());
    const double value = f.evaluate(r.W, r.H, r.b, dW, dH, db).total;
    CHECK(value == Approx(r.objective).epsilon(1e-15));
    const double g = std::sqrt(dW.squaredNorm() + dH.squaredNorm() + db.squaredNorm());
    CHECK(g == Approx(r.gradient_norm).epsilon(1e-6).margin(1e-15));
    CHECK(value < pal_objective<double>(S, c.lambdas, pal_variant::pal).value(r.W, r.H, r.b));
}

TEST_CASE("ufm: refusals name the argument", "[ufm]") {
    const config& c = configs[0];
    const label_sets S = balanced_labels(c.K, c.n);
    const penalties& p = c.lambdas;
    using Catch::Matchers::Contains;
    const auto with = [](auto change) {
        ufm_options o;
        change(o);
        return o;
    };
    REQUIRE_THROWS_WITH(train_ufm<double>(S, 0, p, {}), Contains("d:"));
    REQUIRE_THROWS_WITH(train_ufm<double>(label_sets::from_lists({}, 4), 3, p, {}), Contains("labels"));
    REQUIRE_THROWS_WITH(train_ufm<double>(S, 3, penalties{-1, 0, 0}, {}), Contains("lambda_w"));
    REQUIRE_THROWS_WITH(train_ufm<double>(S, 3, p, with([](ufm_options& o) { o.max_iterations = -1; })),
                        Contains("max_iterations"));
    REQUIRE_THROWS_WITH(
        train_ufm<double>(S, 3, p, with([](ufm_options& o) { o.gradient_tolerance = std::nan(""); })),
        Contains("gradient_tolerance"));
    REQUIRE_THROWS_WITH(train_ufm<double>(S, 3, p, with([](ufm_options& o) { o.relative_tolerance = -1; })),
                        Contains("relative_tolerance"));
    REQUIRE_THROWS_WITH(train_ufm<double>(S, 3, p, with([](ufm_options& o) { o.history_every = 0; })),
                        Contains("history_every"));
    REQUIRE_THROWS_WITH(train_ufm<double>(S, 3, p, with([](ufm_options& o) { o.init_scale = 0; })),
                        Contains("init_scale"));
    REQUIRE_THROWS_WITH(train_ufm<double>(S, 3, p, with([](ufm_options& o) {
                                              o.fix_classifier_to_etf = true;
                                              o.etf_row_norm = 0;
                                          })),
                        Contains("etf_row_norm"));
    REQUIRE_THROWS_WITH(
        train_ufm<double>(S, 2, p, with([](ufm_options& o) { o.fix_classifier_to_etf = true; })), Contains("d:"));
    REQUIRE_THROWS_WITH(train_ufm<double>(S, 3, p, with([](ufm_options& o) { o.lbfgs_memory = 0; })),
                        Contains("lbfgs_memory"));
    REQUIRE_THROWS_WITH(train_ufm<double>(S, 3, p, with([](ufm_options& o) { o.max_line_search = 0; })),
                        Contains("max_line_search"));
    REQUIRE_THROWS_WITH(train_ufm<double>(S, 3, p, with([](ufm_options& o) { o.armijo = 0.5; })),
                        Contains("armijo"));
    REQUIRE_THROWS_WITH(train_ufm<double>(S, 3, p, with([](ufm_options& o) { o.wolfe = 1e-5; })),
                        Contains("wolfe"));
    const auto gd = [](auto change) {
        ufm_options o;
        o.method = ufm_method::gd;
        change(o);
        return o;
    };
    REQUIRE_THROWS_WITH(train_ufm<double>(S, 3, p, gd([](ufm_options& o) { o.learning_rate = 0; })),
                        Contains("learning_rate"));
    REQUIRE_THROWS_WITH(train_ufm<double>(S, 3, p, gd([](ufm_options& o) { o.momentum = 1; })),
                        Contains("momentum"));
    REQUIRE_THROWS_WITH(train_ufm<double>(S, 3, p, gd([](ufm_options& o) { o.backtrack = 1; })),
                        Contains("backtrack"));
    REQUIRE_THROWS_WITH(train_ufm<double>(S, 3, p, gd([](ufm_options& o) { o.step_growth = 0.5; })),
                        Contains("step_growth"));
    REQUIRE_THROWS_WITH(
        train_ufm<double>(S, 3, p, with([](ufm_options& o) { o.line_search = static_cast<ufm_line_search>(9); })),
        Contains("line_search"));
}

namespace {

// f(x) = c + a/2 ||x||^2 with a counter, in LBFGSpp's functor form.
struct quadratic {
    double c, a;
    int evaluations = 0;
    double operator()(const Eigen::VectorXd& x, Eigen::VectorXd& g) {
        ++evaluations;
        g = a * x;
        return c + 0.5 * a * x.squaredNorm();
    }
};

}  // namespace

TEST_CASE("ufm: the approximate Wolfe line search", "[ufm][line_search]") {
    using search = detail::approximate_wolfe_line_search<double>;
    LBFGSpp::LBFGSParam<double> param;
    param.max_linesearch = 40;
    const Eigen::VectorXd xp = Eigen::VectorXd::Constant(3, 1.0);
    Eigen::VectorXd x, g;

    // From too long (10) and too short (1e-3) first steps along -grad to the minimiser a = 1/4:
    // a secant step on phi' is exact for a quadratic, so few evaluations suffice. c2 = 0.01 keeps
    // the looser steps (0.064, 0.256) out, so the step found must be the minimiser itself.
    param.wolfe = 0.01;
    for (double first : {10.0, 1e-3}) {
        quadratic f{2.0, 4.0};
        double fx = f(xp, g);
        const Eigen::VectorXd drt = -g;
        const double g0 = g.dot(drt);
        f.evaluations = 0;
        double step = first;
        search::LineSearch(f, fx, x, g, step, drt, xp, param);
        INFO("first step " << first << ": step " << step << ", evaluations " << f.evaluations);
        CHECK(std::abs(g.dot(drt)) <= param.wolfe * std::abs(g0));
        CHECK(fx <= 2.0 + 0.5 * 4.0 * 3.0 + param.ftol * step * g0);
        CHECK(step == Approx(0.25).epsilon(1e-12));
        // 10 -> secant; 1e-3 -> four 4x expansions to 0.256, then secant.
        CHECK(f.evaluations <= (first > 1 ? 2 : 7));
    }

    // Rounding noise: f = 1 + 1e-20 ||x||^2 / 2 is exactly 1 in double near xp, and every point
    // but the start reads 1e-15 (~5 ulps) higher, as rounding can make it. No Armijo decrease is
    // ever visible, so a value-only search fails; the derivative still locates the minimiser
    // (a = 1e20), where the approximate test (f within 16 u of f(0)) accepts it.
    {
        struct noisy_flat {
            Eigen::VectorXd start;
            double operator()(const Eigen::VectorXd& y, Eigen::VectorXd& grad) const {
                grad = 1e-20 * y;
                return 1.0 + 0.5e-20 * y.squaredNorm() + (y == start ? 0.0 : 1e-15);
            }
        } f{xp};
        LBFGSpp::LBFGSParam<double> tight = param;
        tight.wolfe = 0.1;
        tight.max_step = 1e30;
        double fx = f(xp, g);
        const Eigen::VectorXd drt = -g;
        double step = 1e18;
        search::LineSearch(f, fx, x, g, step, drt, xp, tight);
        CHECK(step == Approx(1e20).epsilon(1e-12));
        CHECK(x.norm() < 1e-12);
        CHECK(fx == 1.0 + 1e-15);

        fx = f(xp, g);
        step = 1e18;
        LBFGSpp::LBFGSParam<double> armijo;
        CHECK_THROWS_AS(LBFGSpp::LineSearchBacktracking<double>::LineSearch(f, fx, x, g, step, drt, xp, armijo),
                        std::runtime_error);
    }

    // An ascent direction is refused (the wrapper turns this into a restart or a status).
    {
        quadratic f{0.0, 1.0};
        double fx = f(xp, g);
        const Eigen::VectorXd drt = g;
        double step = 1.0;
        CHECK_THROWS_AS(search::LineSearch(f, fx, x, g, step, drt, xp, param), detail::line_search_failure);
    }
}

namespace {
// A quadratic problem whose evaluation number `throw_at` throws `what`, with the trainer's
// per-iteration hook, wrapped in the exception fence as detail::ufm_problem does.
template <class E>
struct failing_problem {
    failing_problem(int at, E e) : throw_at(at), what(std::move(e)) {}
    int throw_at;
    E what;
    int evaluations = 0;
    int iterations = 0;
    detail::exception_fence fence;
    double operator()(const Eigen::VectorXd& x, Eigen::VectorXd& grad) {
        return fence([&] {
            if (++evaluations == throw_at) throw what;
            grad = 2.0 * x;
            return x.squaredNorm();
        });
    }
    void on_iteration(const Eigen::VectorXd&, double, double) {
        if (++iterations == 50) throw detail::ufm_stop{ufm_status::max_iterations};
    }
    static ufm_line_search line_search() { return ufm_line_search::approximate_wolfe; }
};

// Runs the trainer's L-BFGS iterations from x = (1, 2, 3, 4); the exception the objective threw
// is rethrown, as train_ufm does. true when a line search failed (the iterations returned).
template <class P>
bool minimise(P& f, Eigen::VectorXd& x) {
    LBFGSpp::LBFGSParam<double> param;
    detail::lbfgs_memory<double> memory(x.size(), 5, 1);
    Eigen::VectorXd g(x.size()), xp(x.size()), gp(x.size()), d(x.size());
    try {
        double fx = f(x, g);
        detail::lbfgs_iterate(f, x, fx, g, param, memory, xp, gp, d);
        return true;
    } catch (const detail::solver_aborted&) {
        f.fence.rethrow();
    } catch (const detail::ufm_stop&) {
    }
    return false;
}
template <class E>
void minimise(failing_problem<E>& f) {
    Eigen::VectorXd x = Eigen::VectorXd::LinSpaced(4, 1.0, 4.0);
    (void)minimise(f, x);
}
}  // namespace

TEST_CASE("ufm: an exception from the objective inside a line search propagates unchanged", "[ufm][errors]") {
    // Before the fence, the hooked line search caught std::runtime_error and std::logic_error
    // (so mlnc::error too) from the objective and reported line_search_failed.
    {
        failing_problem<std::runtime_error> f{3, std::runtime_error("device lost")};
        CHECK_THROWS_WITH(minimise(f), "device lost");
        CHECK(f.evaluations == 3);
    }
    {
        failing_problem<mlnc::error> f{2, mlnc::error("a bug")};
        CHECK_THROWS_AS(minimise(f), mlnc::error);
    }
    {
        failing_problem<std::bad_alloc> f{2, std::bad_alloc()};
        CHECK_THROWS_AS(minimise(f), std::bad_alloc);
    }
    // The failure of the line search itself (here: no descent along a NaN direction) ends the
    // iterations with the start point back in x: the trainer's line_search_failed status.
    {
        struct nan_problem {
            detail::exception_fence fence;
            int iterations = 0;
            double operator()(const Eigen::VectorXd& x, Eigen::VectorXd& grad) {
                grad = Eigen::VectorXd::Constant(x.size(), std::numeric_limits<double>::quiet_NaN());
                return 1.0;
            }
            void on_iteration(const Eigen::VectorXd&, double, double) { ++iterations; }
            static ufm_line_search line_search() { return ufm_line_search::approximate_wolfe; }
        } f;
        Eigen::VectorXd x = Eigen::VectorXd::Ones(3);
        CHECK(minimise(f, x));
        CHECK(f.iterations == 0);
        CHECK(x == Eigen::VectorXd::Ones(3));
    }
}

TEST_CASE("ufm: the two-pass L-BFGS memory gives the two-loop recursion's direction", "[ufm][lbfgs]") {
    // Random pairs with positive curvature (y = A s, A symmetric positive definite) pushed through
    // a memory of 3: after each push, the direction equals the textbook two-loop recursion over
    // the kept pairs (newest first), computed here on the vectors themselves. More pairs than the
    // memory holds exercise the ring; a pair with s'y <= 0 must be refused (it was written over
    // the oldest pair, which a full memory then loses).
    const Eigen::Index n = 5000;  // several blocks of the passes
    std::mt19937_64 rng(7);
    std::normal_distribution<double> normal;
    const auto random_vector = [&] { return Eigen::VectorXd(Eigen::VectorXd::NullaryExpr(n, [&] { return normal(rng); })); };
    const Eigen::VectorXd diag = (random_vector().array().abs() + 0.5).matrix();
    for (int threads : {1, 2}) {
        detail::lbfgs_memory<double> memory(n, 3, threads);
        std::vector<std::pair<Eigen::VectorXd, Eigen::VectorXd>> kept;  // newest last
        Eigen::VectorXd x = random_vector(), g = random_vector(), d;
        for (int step = 0; step < 7; ++step) {
            const Eigen::VectorXd xp = x, gp = g;
            x = xp + random_vector();
            const bool bad = step == 4;  // negative curvature: y = -s
            g = bad ? Eigen::VectorXd(gp - (x - xp)) : Eigen::VectorXd(gp + diag.cwiseProduct(x - xp));
            CHECK(memory.push(x, xp, g, gp) == !bad);
            if (!bad) {
                kept.emplace_back(x - xp, g - gp);
                if (kept.size() > 3) kept.erase(kept.begin());
            } else if (kept.size() == 3) {
                kept.erase(kept.begin());  // the refused pair was written over the oldest
            }
            REQUIRE(memory.size() == static_cast<int>(kept.size()));
            const double gd = memory.direction(g, d);
            // Two-loop recursion.
            Eigen::VectorXd q = g;
            std::vector<double> alpha(kept.size());
            for (std::size_t k = kept.size(); k-- > 0;) {
                alpha[k] = kept[k].first.dot(q) / kept[k].first.dot(kept[k].second);
                q -= alpha[k] * kept[k].second;
            }
            const auto& newest = kept.back();
            q *= newest.first.dot(newest.second) / newest.second.squaredNorm();
            for (std::size_t k = 0; k < kept.size(); ++k) {
                const double beta = kept[k].second.dot(q) / kept[k].first.dot(kept[k].second);
                q += (alpha[k] - beta) * kept[k].first;
            }
            const Eigen::VectorXd expected = -q;
            INFO("threads " << threads << ", step " << step);
            // Both are sums of O(m) terms of the size of the result: a few ulps of it.
            CHECK((d - expected).norm() <= 1e-13 * expected.norm());
            // g.d and ||g||^2 from the inner products the passes computed.
            CHECK(std::abs(gd - g.dot(expected)) <= 1e-12 * g.norm() * expected.norm());
            CHECK(memory.gradient_squared_norm() == Approx(g.squaredNorm()).epsilon(1e-14));
        }
    }
}

TEST_CASE("ufm: a non-finite gradient pushed into the L-BFGS memory does not outlive clear()", "[ufm][lbfgs]") {
    // The trainer pushes before it checks ||g|| (the push's pass computes it); a NaN gradient is
    // refused, the run restarts from a cleared memory, and the next directions must be finite.
    const Eigen::Index n = 3000;
    detail::lbfgs_memory<double> memory(n, 3, 2);
    Eigen::VectorXd x = Eigen::VectorXd::LinSpaced(n, -1.0, 1.0), g = 2.0 * x, d;
    const auto step = [&](const Eigen::VectorXd& g_new, const Eigen::VectorXd& x_new) {
        const bool kept = memory.push(x_new, x, g_new, g);
        x = x_new;
        g = g_new;
        return kept;
    };
    for (int k = 0; k < 2; ++k) CHECK(step(Eigen::VectorXd(g * 0.5), Eigen::VectorXd(x * 0.5)));
    Eigen::VectorXd bad = g;
    bad(17) = std::numeric_limits<double>::quiet_NaN();
    CHECK_FALSE(step(bad, Eigen::VectorXd(x * 0.5)));
    CHECK(std::isnan(memory.gradient_squared_norm()));
    memory.clear();
    g = 2.0 * x;  // the restart's evaluated point
    for (int k = 0; k < 3; ++k) {
        CHECK(step(Eigen::VectorXd(g * 0.5), Eigen::VectorXd(x * 0.5)));
        const double gd = memory.direction(g, d);
        CHECK(d.allFinite());
        CHECK(std::isfinite(gd));
        CHECK(gd < 0);
    }
}

TEST_CASE("ufm: an observer's exception propagates out of train_ufm", "[ufm][errors]") {
    const auto S = label_sets::from_lists({{0}, {1}, {2}, {0, 1}}, 3);
    ufm_options o;
    o.history_every = 1;
    int calls = 0;
    const mlnc::ufm_observer<double> observer = [&](const mlnc::ufm_history_entry&, const auto&, const auto&, const auto&) {
        if (++calls == 3) throw std::runtime_error("observer gave up");
        return mlnc::ufm_action::proceed;
    };
    CHECK_THROWS_WITH(mlnc::train_ufm<double>(S, 3, {1e-3, 1e-3, 1e-3}, o, observer), "observer gave up");
}

TEST_CASE("ufm: logits that overflow during training are a step too long, not an error", "[ufm][errors]") {
    // float with a start of scale 1e9: logits ~ 1e18, squares of trial steps overflow float.
    const auto S = label_sets::from_lists({{0}, {1}, {2}, {0, 1}, {1, 2}}, 3);
    ufm_options o;
    o.init_scale = 1e9;
    o.max_iterations = 200;
    const auto r = mlnc::train_ufm<float>(S, 3, {1e-3, 1e-3, 1e-3}, o);
    CHECK(std::isfinite(r.objective));
    CHECK(r.W.allFinite());
    CHECK(r.iterations > 0);
}

TEST_CASE("ufm: a problem that cannot fit in memory is refused before anything is allocated", "[ufm][errors]") {
    // K = 2^31 - 1 labels and d = 1000: W alone is 17 TB.
    const auto S = label_sets::from_lists({{0}, {2147483646}}, 2147483647);
    const auto msg = mlnc_test::error_of([&] { mlnc::train_ufm<double>(S, 1000, {1e-3, 1e-3, 0}, ufm_options{}); });
    CHECK_THAT(msg, Catch::Contains("train_ufm") && Catch::Contains("memory"));
}

TEST_CASE("ufm: a single sample, and a sample carrying every label, train without trouble", "[ufm]") {
    // One sample with label set {1} of K = 3: the optimum is closed form (n_1 = 1 for label 1
    // only is outside the assumptions, so only finiteness and the gradient test are checked).
    for (const auto& sets : std::vector<std::vector<std::vector<index_t>>>{{{1}}, {{0, 1, 2}}, {{0}, {0, 1, 2}}}) {
        const auto S = label_sets::from_lists(sets, 3);
        const auto r = train_ufm<double>(S, 2, {1e-3, 1e-3, 1e-3}, ufm_options{});
        INFO("N = " << S.size() << ", status " << to_string(r.status));
        CHECK(std::isfinite(r.objective));
        CHECK(r.status == ufm_status::converged_gradient);
    }
}

TEST_CASE("ufm: the observer stops the run by its return value and the result is kept", "[ufm][control]") {
    const auto S = balanced_labels(4, {2, 1});
    const penalties p{5e-3, 5e-3, 1e-2};
    ufm_options o;
    o.history_every = 3;
    matrix<double> seen_W, seen_H;
    vector<double> seen_b;
    int calls = 0;
    const auto r = train_ufm(S, 4, p, o, [&](const ufm_history_entry& e, const auto& W, const auto& H, const auto& b) {
        seen_W = W;
        seen_H = H;
        seen_b = b;
        return ++calls == 4 && e.iteration == 9 ? ufm_action::stop : ufm_action::proceed;
    });
    CHECK(r.status == ufm_status::stopped_by_observer);
    CHECK(std::string(to_string(r.status)) == "stopped_by_observer");
    CHECK(calls == 4);  // no call after the stop
    CHECK(r.iterations == 9);
    CHECK(r.W == seen_W);
    CHECK(r.H == seen_H);
    CHECK(r.b == seen_b);
    CHECK(r.history.back().iteration == 9);
    CHECK(r.objective == Approx(pal_objective(S, p).value(r.W, r.H, r.b)).epsilon(1e-15));
    // Stopping at the start (iteration 0) returns the start.
    const auto r0 = train_ufm(S, 4, p, o, [](const ufm_history_entry&, const auto&, const auto&, const auto&) {
        return ufm_action::stop;
    });
    CHECK(r0.status == ufm_status::stopped_by_observer);
    CHECK(r0.iterations == 0);
}

TEST_CASE("ufm: a warm start continues from the given point", "[ufm][control]") {
    const auto S = balanced_labels(4, {2, 1});
    const penalties p{5e-3, 5e-3, 1e-2};
    const double f_star = global_optimum(4, as_counts({2, 1}), p)->f;
    ufm_options o;
    o.max_iterations = 15;
    const auto first = train_ufm(S, 4, p, o);
    REQUIRE(first.status == ufm_status::max_iterations);
    // The start is exactly the given point: iteration 0 of the continued run has its f.
    o.max_iterations = 10000;
    const ufm_point<double> checkpoint{first.W, first.H, first.b};
    const auto second = train_ufm(S, p, checkpoint, o);
    REQUIRE_FALSE(second.history.empty());
    CHECK(second.history.front().objective == first.objective);
    CHECK(second.status == ufm_status::converged_gradient);
    CHECK(std::abs(rel_gap(second.objective, f_star)) < 1e-10);
    // From the optimum found, a warm start stops at once.
    const auto third = train_ufm(S, p, ufm_point<double>{second.W, second.H, second.b}, o);
    CHECK(third.status == ufm_status::converged_gradient);
    CHECK(third.iterations == 0);
    CHECK(third.W == second.W);
    // float, from a float checkpoint, on an explicit backend.
    const ufm_point<float> cf{first.W.cast<float>(), first.H.cast<float>(), first.b.cast<float>()};
    const auto rf = train_ufm(cpu{1}, S, p, cf, o);
    CHECK(std::abs(rel_gap(rf.objective, f_star)) < 1e-5);

    // Bad starts name the part.
    ufm_point<double> bad = checkpoint;
    bad.H.conservativeResize(Eigen::NoChange, S.size() - 1);
    CHECK_THROWS_WITH(train_ufm(S, p, bad, o), Catch::Contains("start.H"));
    bad = checkpoint;
    bad.b(1) = std::nan("");
    CHECK_THROWS_WITH(train_ufm(S, p, bad, o), Catch::Contains("start.b"));
    bad = checkpoint;
    bad.W.conservativeResize(3, Eigen::NoChange);
    CHECK_THROWS_WITH(train_ufm(S, p, bad, o), Catch::Contains("start.W"));
}

TEST_CASE("ufm: fixed classifier from a warm start holds the start's W", "[ufm][control]") {
    const auto S = balanced_labels(4, {2, 1});
    const penalties p{5e-3, 5e-3, 1e-2};
    ufm_options o;
    o.fix_classifier_to_etf = true;
    const matrix<double> W = simplex_etf<double>(4, 5, 1.3, 2);
    ufm_point<double> start{W, matrix<double>::Zero(5, S.size()), vector<double>::Zero(4)};
    const auto r = train_ufm(S, p, start, o);
    CHECK(r.W == W);
    CHECK(r.status == ufm_status::converged_gradient);
    CHECK(rel_gap(r.objective, fixed_etf_optimum(4, {2, 1}, p, 1.3)) < 1e-10);
    // The same problem as the random-start fixed-ETF mode with that seed and norm.
    o.seed = 2;
    o.etf_row_norm = 1.3;
    const auto q = train_ufm(S, 5, p, o);
    CHECK(q.W == W);
    CHECK(q.objective == Approx(r.objective).epsilon(1e-12));
}
