#include <mlnc/optimum.hpp>
#include <mlnc/objective.hpp>

#include <catch2/catch.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <initializer_list>
#include <limits>
#include <random>
#include <string>
#include <vector>

using mlnc::index_t;
using mlnc::multiplicity_counts;
using mlnc::optimum_result;
using mlnc::optimum_status;
using mlnc::penalties;

namespace Catch {
template <>
struct StringMaker<multiplicity_counts> {
    static std::string convert(const multiplicity_counts& n) {
        std::string s = "{";
        for (const auto& [m, count] : n)
            s += (s.size() > 1 ? ", " : "") + std::to_string(m) + ": " + std::to_string(count);
        return s + "}";
    }
};
}  // namespace Catch

namespace {

double rel(double a, double b) { return std::abs(a - b) / std::max(std::abs(b), std::numeric_limits<double>::min()); }

// Exact C(K, m) as a double (small K only).
double binom(index_t K, index_t m) { return static_cast<double>(mlnc::binomial(K, m)); }

// The dense list n_1, n_2, ..., n_M as counts, zeros kept (the solvers ignore them).
multiplicity_counts dense(const std::vector<index_t>& n) {
    multiplicity_counts out;
    for (std::size_t j = 0; j < n.size(); ++j) out.insert_or_assign(static_cast<index_t>(j) + 1, n[j]);
    return out;
}
multiplicity_counts dense(std::initializer_list<index_t> n) { return dense(std::vector<index_t>(n)); }

// The collapse threshold on lW * lH, computed directly with exact binomials: the optimum is W = H = 0
// iff lW lH >= sum_m N_m m (K-m) / (4 N^2 K (K-1)) (theory.md; derived there from the subgradient
// of F at 0).
double collapse_threshold(index_t K, const multiplicity_counts& n) {
    double N = 0, S = 0;
    for (const auto& [m, nm] : n) {
        const double Nm = binom(K, m) * static_cast<double>(nm);
        N += Nm;
        S += Nm * static_cast<double>(m * (K - m));
    }
    const double Kd = static_cast<double>(K);
    return S / (4.0 * N * N * Kd * (Kd - 1.0));
}

// Penalties with lW lH = frac * threshold (lW / lH = ratio).
penalties at_fraction(index_t K, const multiplicity_counts& n, double frac, double ratio, double lb) {
    const double prod = frac * collapse_threshold(K, n);
    return {std::sqrt(prod * ratio), std::sqrt(prod / ratio), lb};
}

struct case_t {
    index_t K;
    multiplicity_counts n;
    index_t d;
    double frac, ratio, lb;
    std::optional<std::uint64_t> seed;
};

// Cases for the stationarity tests: M = K-1 with d = K-1, strong imbalance across multiplicities,
// a missing multiplicity, m = K present, lambda_b = 0, rotated and padded ETFs.
const std::vector<case_t>& stationarity_cases() {
    static const std::vector<case_t> cases = {
        {4, dense({100, 1, 1}), 3, 0.3, 5.0, 1e-2, std::nullopt},    // M = K-1, d = K-1, n_1 = 100 vs n_2 = 1
        {4, dense({100, 1}), 4, 0.05, 1.0, 0.5, std::uint64_t{3}},   // n_1 = 100, n_2 = 1
        {5, dense({3, 2}), 7, 0.5, 0.2, 0.0, std::uint64_t{11}},     // lambda_b = 0, d > K
        {3, dense({2, 1, 4}), 2, 0.2, 1.0, 1e-3, std::nullopt},      // m = K present
        {6, dense({1, 0, 2}), 12, 0.01, 3.0, 1e-1, std::uint64_t{7}},  // n_2 = 0: multiplicity 2 absent
        {8, dense({2, 1, 1}), 7, 0.7, 1.0, 1e-2, std::uint64_t{1}},
        {2, dense({5, 1}), 1, 0.4, 1.0, 1e-2, std::nullopt},         // K = 2: m = 1 and m = K, d = 1
        {7, dense({1, 1, 1, 1, 1, 1}), 6, 1e-3, 1.0, 1e-2, std::nullopt},  // M = K-1 = 6, far from the threshold
    };
    return cases;
}

struct grads {
    mlnc::matrix<double> dW, dH;
    mlnc::vector<double> db;
    double norm() const { return std::sqrt(dW.squaredNorm() + dH.squaredNorm() + db.squaredNorm()); }
};

}  // namespace

TEST_CASE("optimum: the gradient of f vanishes at the constructed (W*, H*, b*) and f = f*", "[optimum]") {
    double worst_grad = 0, worst_f = 0;
    for (const case_t& c : stationarity_cases()) {
        CAPTURE(c.K, c.n, c.d, c.frac, c.ratio, c.lb);
        const penalties lam = at_fraction(c.K, c.n, c.frac, c.ratio, c.lb);
        const optimum_result r = mlnc::global_optimum(c.K, c.n, lam);
        REQUIRE(r.status() == optimum_status::success);
        REQUIRE_FALSE(r->trivial);
        const mlnc::label_sets S = r.sample_labels();
        const auto pt = mlnc::optimum_point(r, S, c.d, c.seed);
        mlnc::pal_objective<double> obj(S, lam);
        grads g{mlnc::matrix<double>(c.K, c.d), mlnc::matrix<double>(c.d, S.size()), mlnc::vector<double>(c.K)};
        const auto val = obj.evaluate(pt.W, pt.H, pt.b, g.dW, g.dH, g.db);
        // The point is built from values exact to a few ulps (|W|, |H| = O(1..100)); the gradient
        // is a sum of O(K) such terms, so it is ~1e-14 at an exact stationary point, while a wrong
        // C_m, rho or Delta_m at the 1e-8 level already gives ~1e-9 (the bound). Measured:
        // 5e-16; we require 1e-12.
        CHECK(g.norm() < 1e-12);
        // f* and f(W*, H*, b*) are computed by different formulas (reduced F vs the PAL kernel):
        // they agree to rounding of O(N) summed terms, 1e-12 relative.
        CHECK(rel(val.total, r->f) < 1e-12);
        worst_grad = std::max(worst_grad, g.norm());
        worst_f = std::max(worst_f, rel(val.total, r->f));
        // The constructed classifier is the simplex ETF with ||W||_F^2 = rho.
        CHECK(rel(pt.W.squaredNorm(), r->rho) < 1e-13);
        CHECK(mlnc::etf_deviation(pt.W) < 1e-13);
        CHECK(pt.b.cwiseAbs().maxCoeff() == 0.0);
    }
    INFO("max gradient norm " << worst_grad << ", max relative |f(W*,H*,b*) - f*| " << worst_f);
    CHECK(worst_grad < 1e-12);
}

TEST_CASE("optimum: moving along random directions increases f", "[optimum]") {
    std::mt19937_64 rng(2024);
    std::normal_distribution<double> nd;
    for (const case_t& c : stationarity_cases()) {
        CAPTURE(c.K, c.n, c.d);
        const penalties lam = at_fraction(c.K, c.n, c.frac, c.ratio, c.lb);
        const optimum_result r = mlnc::global_optimum(c.K, c.n, lam);
        REQUIRE(r.status() == optimum_status::success);
        const mlnc::label_sets S = r.sample_labels();
        const auto pt = mlnc::optimum_point(r, S, c.d, c.seed);
        mlnc::pal_objective<double> obj(S, lam);
        const double f0 = obj.value(pt.W, pt.H, pt.b);
        const double scale = std::sqrt(pt.W.squaredNorm() + pt.H.squaredNorm());
        for (int t = 0; t < 20; ++t) {
            mlnc::matrix<double> VW = mlnc::matrix<double>::NullaryExpr(c.K, c.d, [&] { return nd(rng); });
            mlnc::matrix<double> VH = mlnc::matrix<double>::NullaryExpr(c.d, S.size(), [&] { return nd(rng); });
            mlnc::vector<double> vb = mlnc::vector<double>::NullaryExpr(c.K, [&] { return nd(rng); });
            const double nv = std::sqrt(VW.squaredNorm() + VH.squaredNorm() + vb.squaredNorm());
            // A step of 1e-3 of the point's size: the second-order increase (>= ~1e-9 even from
            // the penalties alone) dwarfs the rounding of f (~1e-15), and a non-zero gradient of
            // the size the previous test excludes would make one of the two signs decrease f.
            const double eps = 1e-3 * scale / nv;
            for (double sgn : {1.0, -1.0}) {
                const double f1 = obj.value(pt.W + sgn * eps * VW, pt.H + sgn * eps * VH, pt.b + sgn * eps * vb);
                CHECK(f1 - f0 > 1e-13 * std::abs(f0));
            }
        }
    }
}

TEST_CASE("optimum: F(Delta) is the objective at the structured point with the best scale", "[optimum]") {
    // For ANY gaps Delta > 0 (not only the optimum), W the ETF with rho(Delta) = sqrt(lH (K-1)/(K lW)
    // sum_m N_m m (K-m) Delta_m^2) and h_i = C_m sum w_k with C_m = (K-1) Delta_m / rho gives
    // f = F(Delta): this checks the reduction itself against the PAL objective.
    std::mt19937_64 rng(7);
    std::uniform_real_distribution<double> ud(0.05, 4.0);
    const index_t K = 5;
    const multiplicity_counts n = dense({3, 1, 2, 0, 1});  // m = K present, m = 4 absent
    const penalties lam{2e-3, 5e-4, 0.1};
    const mlnc::label_sets S = mlnc::balanced_label_sets(K, n);
    mlnc::pal_objective<double> obj(S, lam);
    const double Kd = K;
    for (int t = 0; t < 10; ++t) {
        mlnc::optimum_solution sol;
        for (const index_t m : {1, 2, 3}) sol.delta.insert_or_assign(m, ud(rng));
        sol.delta.insert_or_assign(5, 0.0);
        double sum = 0;
        for (const index_t m : {1, 2, 3}) {
            const auto md = static_cast<double>(m);
            sum += binom(K, m) * static_cast<double>(n.at(m)) * md * (Kd - md) * sol.delta.at(m) * sol.delta.at(m);
        }
        sol.rho = std::sqrt(lam.lambda_h * (Kd - 1) / (Kd * lam.lambda_w) * sum);
        sol.w_norm = std::sqrt(sol.rho / Kd);
        sol.C = sol.delta.transform([&](double d) { return (Kd - 1) * d / sol.rho; });
        sol.c1 = sol.delta.transform([](double) { return 0.0; });
        optimum_result fake(K, n);
        fake.set_solution(sol);
        const auto pt = mlnc::optimum_point(fake, S, K + 1, std::uint64_t{5});
        // Rounding of O(N) terms in both: 1e-12 relative.
        CHECK(rel(obj.value(pt.W, pt.H, pt.b), mlnc::reduced_objective(K, n, lam, sol.delta)) < 1e-12);
    }
}

TEST_CASE("optimum: F is minimised at Delta* and convex", "[optimum]") {
    std::mt19937_64 rng(11);
    std::normal_distribution<double> nd;
    const index_t K = 9;
    const multiplicity_counts n = dense({5, 0, 1, 2});
    const penalties lam = at_fraction(K, n, 0.2, 2.0, 0.0);
    const optimum_result r = mlnc::global_optimum(K, n, lam);
    REQUIRE(r.status() == optimum_status::success);
    const double F0 = mlnc::reduced_objective(K, n, lam, r->delta);
    CHECK(F0 == r->f);  // the same formula at the same Delta: bitwise equal
    for (int t = 0; t < 50; ++t) {
        auto a = r->delta, b = r->delta, mid = r->delta;
        for (const index_t m : r.multiplicities()) {
            a.at(m) += 1e-3 * nd(rng);
            b.at(m) += 0.5 * nd(rng);
            mid.at(m) = 0.5 * (a.at(m) + b.at(m));
        }
        // Second-order increase ~1e-7 against rounding ~1e-15.
        CHECK(mlnc::reduced_objective(K, n, lam, a) > F0 + 1e-12);
        const double Fa = mlnc::reduced_objective(K, n, lam, a), Fb = mlnc::reduced_objective(K, n, lam, b);
        CHECK(mlnc::reduced_objective(K, n, lam, mid) <= 0.5 * (Fa + Fb) + 1e-14);
    }
}

TEST_CASE("optimum: the collapse to zero is reported exactly at the threshold", "[optimum]") {
    const std::vector<case_t> cases = {
        {4, dense({100, 1, 1}), 3, 0, 5.0, 0, {}},
        {5, dense({3, 2}), 4, 0, 0.2, 0, {}},
        {3, dense({2, 1, 4}), 2, 0, 1.0, 0, {}},
        {10, dense({1, 1, 1}), 9, 0, 1.0, 0, {}},
        {2, dense({1}), 1, 0, 1.0, 0, {}},
    };
    for (const case_t& c : cases) {
        CAPTURE(c.K, c.n);
        // The library tests the same inequality in log space; the two computations differ by a few
        // ulps, so 1e-12 on either side is decided the same way by both.
        for (double frac : {1.0 - 1e-12, 1.0 - 1e-6, 0.9}) {
            CAPTURE(frac);
            const optimum_result r = mlnc::global_optimum(c.K, c.n, at_fraction(c.K, c.n, frac, c.ratio, 0.1));
            REQUIRE(r.status() == optimum_status::success);
            CHECK_FALSE(r->trivial);
            CHECK(r->rho > 0);
            for (const auto& [m, delta] : r->delta)
                if (m < c.K) CHECK(delta > 0);
        }
        for (double frac : {1.0 + 1e-12, 1.0 + 1e-6, 2.0, 1e6}) {
            CAPTURE(frac);
            const penalties lam = at_fraction(c.K, c.n, frac, c.ratio, 0.1);
            const optimum_result r = mlnc::global_optimum(c.K, c.n, lam);
            REQUIRE(r.status() == optimum_status::success);
            CHECK(r->trivial);
            CHECK(r->rho == 0);
            CHECK(r->w_norm == 0);
            const optimum_result r2 = mlnc::optimum_by_system44(c.K, c.n, lam);
            CHECK(r2->trivial);
            // f* = (1/N) sum_m N_m m log K.
            double N = 0, S = 0;
            for (const auto& [m, nm] : c.n) {
                N += binom(c.K, m) * static_cast<double>(nm);
                S += binom(c.K, m) * static_cast<double>(nm) * static_cast<double>(m);
            }
            CHECK(rel(r->f, S / N * std::log(static_cast<double>(c.K))) < 1e-14);
            // W = H = 0 is stationary, and a local minimum: random directions increase f. Just
            // below the threshold the ETF direction decreases f instead (checked further below).
            const mlnc::label_sets Sl = r.sample_labels();
            const auto pt = mlnc::optimum_point(r, Sl, c.d);
            mlnc::pal_objective<double> obj(Sl, lam);
            CHECK(rel(obj.value(pt.W, pt.H, pt.b), r->f) < 1e-14);
        }
        // Continuity: just below the threshold the optimum is barely below the trivial value and
        // the gaps are small; the ETF direction beats W = H = 0.
        const penalties lam = at_fraction(c.K, c.n, 0.98, c.ratio, 0.1);
        const optimum_result below = mlnc::global_optimum(c.K, c.n, lam);
        const optimum_result zero = mlnc::global_optimum(c.K, c.n, at_fraction(c.K, c.n, 1.5, c.ratio, 0.1));
        REQUIRE(below.status() == optimum_status::success);
        CHECK(below->f < zero->f);
        CHECK(below->f > zero->f - 0.05 * zero->f);
        const mlnc::label_sets Sl = below.sample_labels();
        mlnc::pal_objective<double> obj(Sl, lam);
        const auto pt = mlnc::optimum_point(below, Sl, c.d);
        CHECK(obj.value(pt.W, pt.H, pt.b) < obj.value(mlnc::matrix<double>::Zero(c.K, c.d).eval(),
                                                      mlnc::matrix<double>::Zero(c.d, Sl.size()).eval(),
                                                      mlnc::vector<double>::Zero(c.K).eval()));
    }
}

TEST_CASE("optimum: the trivial optimum is a minimum (random directions increase f)", "[optimum]") {
    std::mt19937_64 rng(5);
    std::normal_distribution<double> nd;
    const index_t K = 4, d = 4;
    const multiplicity_counts n = dense({3, 1});
    const penalties lam = at_fraction(K, n, 1.01, 1.0, 0.1);
    const optimum_result r = mlnc::global_optimum(K, n, lam);
    REQUIRE(r->trivial);
    const mlnc::label_sets S = r.sample_labels();
    mlnc::pal_objective<double> obj(S, lam);
    const auto pt = mlnc::optimum_point(r, S, d);
    const double f0 = obj.value(pt.W, pt.H, pt.b);
    for (int t = 0; t < 20; ++t) {
        const mlnc::matrix<double> VW = mlnc::matrix<double>::NullaryExpr(K, d, [&] { return nd(rng); });
        const mlnc::matrix<double> VH = mlnc::matrix<double>::NullaryExpr(d, S.size(), [&] { return nd(rng); });
        const mlnc::vector<double> vb = mlnc::vector<double>::NullaryExpr(K, [&] { return nd(rng); });
        for (double eps : {1e-2, -1e-2}) CHECK(obj.value((eps * VW).eval(), (eps * VH).eval(), (eps * vb).eval()) > f0);
    }
}

TEST_CASE("optimum: M = 1 reproduces the single-label optimum", "[optimum]") {
    // Independent derivation for M = 1 (N = K n): with the ETF structure the objective is
    //   log(1 + (K-1) e^{-D}) + lW rho + lH N C^2 (rho/K),  D = C rho / (K-1).
    // Minimising over the scale at fixed D gives the penalty beta D with beta = 2 (K-1) sqrt(n lW lH);
    // then d/dD = 0 gives (K-1) e^{-D} / (1 + (K-1) e^{-D}) = beta, i.e.
    //   D* = log((K-1)(1 - beta) / beta),  f* = -log(1 - beta) + beta D*,
    //   rho* = (K-1) D* sqrt(lH n / lW),  C = sqrt(lW / (lH n)),  c1 = e^{D*} / (K-1) = (1-beta)/beta,
    // and the collapse to zero exactly when D* <= 0, i.e. beta >= (K-1)/K.
    for (index_t K : {2, 5, 100, 100000}) {
        for (const index_t count : {1, 7}) {
            const auto nn = static_cast<double>(count);
            const multiplicity_counts n{{1, count}};
            for (double t : {0.3, 0.9, 0.999}) {
                CAPTURE(K, nn, t);
                const double Kd = static_cast<double>(K);
                const double beta = t * (Kd - 1) / Kd;
                const double lw = 1e-3;
                const double lh = beta * beta / (4 * (Kd - 1) * (Kd - 1) * nn * lw);
                const optimum_result r = mlnc::global_optimum(K, n, {lw, lh, 0.01});
                REQUIRE(r.status() == optimum_status::success);
                REQUIRE_FALSE(r->trivial);
                const double D = std::log((Kd - 1) * (1 - beta) / beta);
                // The library sees beta through lW lH, i.e. with a relative perturbation delta of a
                // few ulps (say 16 eps). dD/dbeta = -1/(beta (1 - beta)), so D, rho (proportional to D)
                // and c1 = e^D/(K-1) carry relative errors delta / ((1 - beta) D) and delta / (1 - beta):
                // ~1e-12 for t = 0.999. f (df/dbeta = D) and C (independent of D) are well conditioned.
                const double delta = 16 * std::numeric_limits<double>::epsilon();
                const double tol_c1 = 1e-14 + delta / (1 - beta), tol_D = 1e-14 + delta / ((1 - beta) * D);
                CHECK(rel(r->delta.at(1), D) < tol_D);
                CHECK(rel(r->f, -std::log1p(-beta) + beta * D) < 1e-14);
                CHECK(rel(r->rho, (Kd - 1) * D * std::sqrt(lh * nn / lw)) < tol_D);
                CHECK(rel(r->C.at(1), std::sqrt(lw / (lh * nn))) < 1e-14);
                CHECK(rel(r->c1.at(1), (1 - beta) / beta) < tol_c1);
            }
            const double Kd = static_cast<double>(K);
            for (double t : {1.0 + 1e-9, 1.5}) {
                const double beta = t * (Kd - 1) / Kd;
                const double lh = beta * beta / (4 * (Kd - 1) * (Kd - 1) * nn * 1e-3);
                CHECK(mlnc::global_optimum(K, n, {1e-3, lh, 0.01})->trivial);
            }
        }
    }
}

TEST_CASE("optimum: route 1 (reduced problem) and route 2 (system 44) agree to 1e-10", "[optimum]") {
    struct rc {
        index_t K;
        multiplicity_counts n;
        double frac, ratio;
    };
    std::vector<rc> cases = {
        {4, dense({100, 1, 1}), 0.3, 5.0},   {5, dense({3, 2}), 0.5, 0.2},
        {3, dense({2, 1, 4}), 0.2, 1.0},     {6, dense({1, 0, 2}), 0.01, 3.0},
        {2, dense({5, 1}), 0.4, 1.0},        {20, dense({1, 3, 0, 2}), 1e-4, 1.0},
        {1000, dense({1, 1, 1}), 0.1, 1e3},  {50, dense({0, 0, 1}), 0.6, 1.0},
        {7, dense({1, 1, 1, 1, 1, 1, 1}), 1e-6, 1.0},
    };
    // Large K: the threshold through lgamma (enough to pick a fraction), counts spread widely.
    const auto big = [](index_t K, const multiplicity_counts& n, double frac) {
        std::vector<double> lN, lq;
        for (const auto& [m, nm] : n)
            if (nm > 0) lN.push_back(mlnc::log_binomial(K, m) + std::log(static_cast<double>(nm)));
        const double logN = mlnc::detail::log_sum_exp(lN);
        std::size_t j = 0;
        for (const auto& [m, nm] : n)
            if (nm > 0 && m < K)
                lq.push_back(lN[j++] - 2 * logN + std::log(static_cast<double>(m) * static_cast<double>(K - m)));
        const double Kd = static_cast<double>(K);
        const double prod = frac * std::exp(mlnc::detail::log_sum_exp(lq)) / (4 * Kd * (Kd - 1));
        return penalties{1e-2, prod / 1e-2, 0.0};
    };
    double worst = 0;
    const auto compare = [&](index_t K, const multiplicity_counts& n, const penalties& lam) {
        CAPTURE(K, n, lam.lambda_w, lam.lambda_h);
        const optimum_result a = mlnc::global_optimum(K, n, lam);
        const optimum_result b = mlnc::optimum_by_system44(K, n, lam);
        REQUIRE(a.status() == optimum_status::success);
        REQUIRE(b.status() == optimum_status::success);
        REQUIRE_FALSE(a->trivial);
        REQUIRE_FALSE(b->trivial);
        REQUIRE(a.multiplicities() == b.multiplicities());
        // Both solve to ~1e-15; the outputs pass through exp/log of O(10..100) numbers, so they
        // agree to ~1e-13. 1e-10 is the bound.
        std::vector<double> diffs{rel(a->f, b->f), rel(a->rho, b->rho), rel(a->w_norm, b->w_norm), rel(a->s, b->s)};
        for (const index_t m : a.multiplicities()) {
            if (m == K) {
                CHECK(a->delta.at(m) == 0.0);
                CHECK(b->delta.at(m) == 0.0);
                CHECK(a->C.at(m) == 0.0);
                CHECK(b->C.at(m) == 0.0);
                CHECK(std::isinf(a->c1.at(m)));
                CHECK(std::isinf(b->c1.at(m)));
                continue;
            }
            diffs.push_back(rel(a->delta.at(m), b->delta.at(m)));
            diffs.push_back(rel(a->C.at(m), b->C.at(m)));
            diffs.push_back(rel(a->c1.at(m), b->c1.at(m)));
        }
        for (double x : diffs) {
            CHECK(x < 1e-10);
            worst = std::max(worst, x);
        }
    };
    for (const rc& c : cases) compare(c.K, c.n, at_fraction(c.K, c.n, c.frac, c.ratio, 0.0));
    const multiplicity_counts eight = dense(std::vector<index_t>(8, 1));
    compare(1000000, eight, big(1000000, eight, 0.5));
    compare(1000000, eight, big(1000000, eight, 1e-20));
    const multiplicity_counts far_apart{{1, 1000000}, {8, 1}};
    compare(1000000, far_apart, big(1000000, far_apart, 1e-3));
    const multiplicity_counts rising = dense({1, 2, 3, 4, 5, 6, 7, 8});
    compare(100000, rising, big(100000, rising, 0.3));
    INFO("worst relative disagreement " << worst);
    CHECK(worst < 1e-10);
}

TEST_CASE("optimum: K = 10^6, M = 8 is fast and consistent", "[optimum][large]") {
    const index_t K = 1000000;
    const multiplicity_counts n = dense(std::vector<index_t>(8, 1));
    // For all n_m = 1 the collapse threshold on lW lH is ~ 2 / (N K) ~ 1e-50 (N ~ 2.5e43): the usual
    // penalties give the trivial optimum ...
    const optimum_result triv = mlnc::global_optimum(K, n, {5e-4, 5e-4, 5e-4});
    REQUIRE(triv.status() == optimum_status::success);
    CHECK(triv->trivial);
    CHECK(std::isfinite(triv->f));
    // f* = (1/N) sum_m N_m m log K, and N_8 dominates: f* ~ 8 log K.
    CHECK(triv->f > 7.99 * std::log(1e6));
    CHECK(triv->f <= 8 * std::log(1e6));
    // ... and a non-trivial one needs lW lH below it.
    const penalties lam{1e-3, 1e-48, 0.0};
    const auto t0 = std::chrono::steady_clock::now();
    const int reps = 20;
    optimum_result r;
    for (int i = 0; i < reps; ++i) r = mlnc::global_optimum(K, n, lam);
    const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count() / reps;
    INFO("global_optimum(K = 10^6, M = 8): " << ms << " ms per call");
    // The design target is < 1 ms (about 30 us measured in a Release build); 50 ms leaves room for
    // sanitizer and debug builds while still catching an O(K) or O(N) algorithm.
    CHECK(ms < 50.0);
    REQUIRE(r.status() == optimum_status::success);
    REQUIRE_FALSE(r->trivial);
    CHECK(std::isfinite(r->f));
    CHECK(std::isfinite(r->rho));
    REQUIRE(r->delta.size() == 8);
    for (index_t mi = 1; mi <= 8; ++mi) {
        const double delta = r->delta.at(mi);
        CHECK(std::isfinite(delta));
        CHECK(delta > 0);
        if (mi > 1) CHECK(delta < r->delta.at(mi - 1));  // Delta_m(s) decreases in m at fixed s
        // The per-m stationarity equation holds: Delta (m e^Delta + K - m) = s. Recomputing e^Delta
        // with Delta ~ 15 amplifies Delta's rounding 15-fold: ~5e-15 here, checked to 1e-13.
        const double m = static_cast<double>(mi);
        CHECK(rel(delta * (m * std::exp(delta) + 1e6 - m), r->s) < 1e-13);
        CHECK(rel(r->C.at(mi), (1e6 - 1) * delta / r->rho) < 1e-14);
        CHECK(rel(r->c1.at(mi), m / (1e6 - m) * std::exp(delta)) < 1e-13);
    }
    CHECK(r->f < triv->f);  // not collapsed, so strictly better than W = H = 0 for the same data
    CHECK(r->f == mlnc::reduced_objective(K, n, lam, r->delta));
    CHECK(r.outer_iterations <= 20);
}

TEST_CASE("optimum: iteration counts are bounded over a sweep", "[optimum]") {
    // Random K (2..10^6), M <= min(K, 8), counts over 6 decades, lW lH from 1e-12 to 0.999 of the
    // threshold. Bracketing costs at most ~log2(|log s|) ~ 10 evaluations and Newton then converges
    // in ~5 (measured: at most 12 evaluations); each Delta_m solve is a monotone Newton from a tight
    // upper bound (measured: at most 7.8 steps on average per solve).
    std::mt19937_64 rng(99);
    std::uniform_real_distribution<double> u01;
    int max_outer = 0;
    double max_per_solve = 0;
    for (int t = 0; t < 300; ++t) {
        const auto K = static_cast<index_t>(std::exp(u01(rng) * std::log(1e6))) + 2;
        const index_t M = 1 + static_cast<index_t>(u01(rng) * static_cast<double>(std::min<index_t>(K, 8)));
        std::vector<index_t> list(static_cast<std::size_t>(M));
        for (auto& v : list)
            v = u01(rng) < 0.2 ? 0 : static_cast<index_t>(std::round(std::exp(u01(rng) * std::log(1e6))));
        if (std::all_of(list.begin(), list.end(), [](index_t v) { return v == 0; })) list[0] = 1;
        const multiplicity_counts n = dense(list);
        const double frac = std::exp(std::log(1e-12) * u01(rng)) * 0.999;
        std::vector<double> lN, lq;
        for (const auto& [m, nm] : n)
            if (nm > 0) lN.push_back(mlnc::log_binomial(K, m) + std::log(static_cast<double>(nm)));
        const double logN = mlnc::detail::log_sum_exp(lN);
        std::size_t j = 0;
        for (const auto& [m, nm] : n)
            if (nm > 0) {
                if (m < K)
                    lq.push_back(lN[j] - 2 * logN + std::log(static_cast<double>(m) * static_cast<double>(K - m)));
                ++j;
            }
        if (lq.empty()) continue;
        const double Kd = static_cast<double>(K);
        const double prod = frac * std::exp(mlnc::detail::log_sum_exp(lq)) / (4 * Kd * (Kd - 1));
        const double ratio = std::exp(std::log(1e4) * (u01(rng) - 0.5));
        const penalties lam{std::sqrt(prod * ratio), std::sqrt(prod / ratio), 0.0};
        CAPTURE(K, n, lam.lambda_w, lam.lambda_h);
        const optimum_result r = mlnc::global_optimum(K, n, lam);
        REQUIRE(r.status() == optimum_status::success);
        REQUIRE_FALSE(r->trivial);
        std::size_t solves_per_eval = 0;
        for (index_t m : r.multiplicities()) solves_per_eval += m < K ? 1 : 0;
        CHECK(r.outer_iterations <= 20);
        const double per_solve =
            static_cast<double>(r.newton_iterations) / static_cast<double>(r.outer_iterations * static_cast<int>(solves_per_eval));
        CHECK(per_solve <= 10);
        max_outer = std::max(max_outer, r.outer_iterations);
        max_per_solve = std::max(max_per_solve, per_solve);
        // Route 2 converges too, to the same rho (looser near the threshold, where Delta -> 0 makes
        // route 2's Delta = log((K-m) c / m) a cancellation; frac <= 0.999 keeps Delta >~ 1e-3).
        const optimum_result r2 = mlnc::optimum_by_system44(K, n, lam);
        REQUIRE(r2.status() == optimum_status::success);
        CHECK(rel(r2->rho, r->rho) < 1e-9);
        CHECK(rel(r2->f, r->f) < 1e-12);
    }
    INFO("max outer iterations " << max_outer << ", max Newton steps per scalar solve " << max_per_solve);
    CHECK(max_outer <= 20);
}

TEST_CASE("optimum: an exhausted budget is a status, not an exception", "[optimum]") {
    const multiplicity_counts n = dense({100, 1, 1});
    const penalties lam = at_fraction(4, n, 0.3, 5.0, 0.0);
    mlnc::optimum_options tight;
    tight.max_outer_iterations = 2;
    CHECK(mlnc::global_optimum(4, n, lam, tight).status() == optimum_status::no_convergence);
    CHECK(mlnc::optimum_by_system44(4, n, lam, tight).status() == optimum_status::no_convergence);
    mlnc::optimum_options one_step;
    one_step.max_newton_iterations = 1;
    CHECK(mlnc::global_optimum(4, n, lam, one_step).status() == optimum_status::no_convergence);
    CHECK(mlnc::optimum_by_system44(4, n, lam, one_step).status() == optimum_status::no_convergence);
    // Penalties so small that s* is beyond e^650: the root leaves the range of double.
    const optimum_result far = mlnc::global_optimum(4, {{1, 1}, {2, 1}}, {1e-300, 1e-300, 0.0});
    CHECK(far.status() == optimum_status::no_convergence);
    CHECK_THROWS_AS(mlnc::optimum_point(far, far.sample_labels(), 3), mlnc::error);
}

TEST_CASE("optimum: a result without a solution cannot be read as one", "[optimum]") {
    // mlnc verify --lambda-w 1e-300 --lambda-h 1e-300 read C, delta and c1 of such a result by
    // index (empty vectors) and crashed. The solution is now behind a checked accessor.
    const multiplicity_counts n{{1, 30}, {2, 10}, {3, 3}};
    for (const auto& r : {mlnc::global_optimum(3, n, {1e-300, 1e-300, 0.0}),
                          mlnc::optimum_by_system44(3, n, {1e-300, 1e-300, 0.0})}) {
        REQUIRE_FALSE(r.converged());
        CHECK_FALSE(static_cast<bool>(r));
        CHECK(r.status() == optimum_status::no_convergence);
        CHECK(r.K() == 3);
        CHECK(r.multiplicities() == std::vector<index_t>{1, 2, 3});
        CHECK(r.counts() == n);
        CHECK_THROWS_WITH(r.solution(), Catch::Contains("did not converge"));
        CHECK_THROWS_AS(r->f, mlnc::error);
        CHECK_THROWS_AS(r->C.at(1), mlnc::error);
        // The threshold needs no solve: it is known whatever the penalties.
        CHECK(rel(r.collapse_threshold(), std::sqrt(collapse_threshold(3, n))) < 1e-14);
    }
    // A solution must have exactly the multiplicities of the counts.
    optimum_result r(4, {{1, 1}, {2, 1}, {3, 0}});
    CHECK(r.multiplicities() == std::vector<index_t>{1, 2});
    mlnc::optimum_solution bad;
    bad.delta = {{1, 1.0}};
    bad.C = {{1, 1.0}};
    bad.c1 = {{1, 1.0}};
    CHECK_THROWS_WITH(r.set_solution(bad), Catch::Contains("{1, 2}") && Catch::Contains("got {1}"));
    for (const index_t m : {2, 3}) {
        bad.delta.insert_or_assign(m, 1.0);
        bad.C.insert_or_assign(m, 1.0);
        bad.c1.insert_or_assign(m, 1.0);
    }
    CHECK_THROWS_AS(r.set_solution(bad), mlnc::error);  // m = 3 has no samples
    CHECK_FALSE(r.converged());
    CHECK_THROWS_WITH(optimum_result(4, {{1, -1}}), Catch::Contains("n_1 = -1"));
}

TEST_CASE("optimum: the collapse threshold on sqrt(lambda_w lambda_h) is the exact one", "[optimum]") {
    for (const auto& [K, n] : std::vector<std::pair<index_t, multiplicity_counts>>{
             {3, dense({30, 10, 3})}, {50, dense({20, 1})}, {8, dense({10, 3, 1})}, {6, {{6, 2}}},
             {1000000, dense({1, 1})}}) {
        const auto r = mlnc::global_optimum(K, n, {1e-3, 1e-3, 0.0});
        REQUIRE(r.converged());
        const double tau = std::sqrt(collapse_threshold(K, n));
        INFO("K = " << K);
        CHECK(rel(r.collapse_threshold(), tau) < 1e-14);
        if (tau == 0) continue;  // only m = K: always trivial
        // Just above and below it the optimum switches between W = H = 0 and a collapse.
        CHECK(mlnc::global_optimum(K, n, {tau * 1.001, tau * 1.001, 0.0})->trivial);
        CHECK_FALSE(mlnc::global_optimum(K, n, {tau * 0.999, tau * 0.999, 0.0})->trivial);
        CHECK_FALSE(mlnc::global_optimum(K, n, {tau * 0.1, tau * 10 * 0.999, 0.0})->trivial);
    }
}

TEST_CASE("optimum: lambda_b does not change the optimum (b* = 0 also for lambda_b = 0)", "[optimum]") {
    const index_t K = 5;
    const multiplicity_counts n = dense({3, 2});
    penalties lam = at_fraction(K, n, 0.5, 0.2, 0.0);
    const optimum_result r0 = mlnc::global_optimum(K, n, lam);
    lam.lambda_b = 10.0;
    const optimum_result r1 = mlnc::global_optimum(K, n, lam);
    CHECK(r0->f == r1->f);
    CHECK(r0->rho == r1->rho);
    CHECK(r0->delta == r1->delta);
    // With lambda_b = 0, f is invariant under b -> b + c 1 (softmax is): b* is unique only up to
    // that shift, and b = 0 is one of the minimisers.
    const mlnc::label_sets S = r0.sample_labels();
    lam.lambda_b = 0.0;
    mlnc::pal_objective<double> obj(S, lam);
    const auto pt = mlnc::optimum_point(r0, S, K);
    CHECK(rel(obj.value(pt.W, pt.H, (pt.b.array() + 3.0).matrix().eval()), r0->f) < 1e-13);
}

TEST_CASE("optimum: bad input throws mlnc::error", "[optimum]") {
    const penalties ok{1e-3, 1e-3, 0.0};
    const double nan = std::numeric_limits<double>::quiet_NaN();
    const multiplicity_counts one{{1, 1}};
    CHECK_THROWS_AS(mlnc::global_optimum(1, one, ok), mlnc::error);
    CHECK_THROWS_WITH(mlnc::global_optimum(3, {}, ok), Catch::StartsWith("n:"));
    CHECK_THROWS_WITH(mlnc::global_optimum(3, dense({1, 1, 1, 1}), ok), Catch::Contains("> K = 3"));
    CHECK_THROWS_WITH(mlnc::global_optimum(3, dense({1, -1}), ok), Catch::StartsWith("n:") && Catch::Contains("n_2"));
    CHECK_THROWS_WITH(mlnc::global_optimum(3, dense({0, 0}), ok), Catch::Contains("all counts are zero"));
    CHECK_THROWS_WITH(mlnc::global_optimum(3, one, {0.0, 1e-3, 0.0}), Catch::Contains("lambda_w"));
    CHECK_THROWS_WITH(mlnc::global_optimum(3, one, {1e-3, 0.0, 0.0}), Catch::Contains("lambda_h"));
    CHECK_THROWS_WITH(mlnc::global_optimum(3, one, {1e-3, 1e-3, -1.0}), Catch::Contains("lambda_b"));
    CHECK_THROWS_WITH(mlnc::global_optimum(3, one, {1e-3, 1e-3, nan}), Catch::Contains("lambda_b"));
    CHECK_THROWS_WITH(mlnc::global_optimum(3, one, {nan, 1e-3, 0.0}), Catch::Contains("lambda_w"));
    CHECK_THROWS_AS(mlnc::optimum_by_system44(1, one, ok), mlnc::error);
    CHECK_THROWS_AS(mlnc::optimum_by_system44(3, dense({1, -1}), ok), mlnc::error);
    // reduced_objective: Delta for exactly the multiplicities with samples, finite.
    CHECK_THROWS_WITH(mlnc::reduced_objective(3, dense({1, 1}), ok, {{1, 1.0}}), Catch::StartsWith("delta:"));
    CHECK_THROWS_WITH(mlnc::reduced_objective(3, dense({1, 0}), ok, {{1, 1.0}, {2, 1.0}}), Catch::StartsWith("delta:"));
    CHECK_THROWS_WITH(mlnc::reduced_objective(3, dense({1, 1}), ok, {{1, 1.0}, {2, nan}}), Catch::Contains("NaN"));
    // optimum_point: labels over another K, or a multiplicity the result does not have.
    const multiplicity_counts n = dense({1, 1});
    const optimum_result r = mlnc::global_optimum(4, n, at_fraction(4, n, 0.5, 1.0, 0.0));
    REQUIRE(r.status() == optimum_status::success);
    CHECK_THROWS_AS(mlnc::optimum_point(r, mlnc::balanced_label_sets(5, one), 4), mlnc::error);
    CHECK_THROWS_WITH(mlnc::optimum_point(r, mlnc::balanced_label_sets(4, dense({1, 1, 1})), 4),
                      Catch::Contains("multiplicity 3"));
    CHECK_THROWS_AS(mlnc::optimum_point(r, r.sample_labels(), 2), mlnc::error);  // d < K-1
}

TEST_CASE("optimum: only m = K present is always trivial", "[optimum]") {
    const multiplicity_counts n{{4, 3}};
    const optimum_result r = mlnc::global_optimum(4, n, {1e-9, 1e-9, 0.0});
    REQUIRE(r.status() == optimum_status::success);
    CHECK(r->trivial);
    CHECK(rel(r->f, 4 * std::log(4.0)) < 1e-15);
    REQUIRE(r->c1.size() == 1);
    CHECK(std::isinf(r->c1.at(4)));
    CHECK(mlnc::optimum_by_system44(4, n, {1e-9, 1e-9, 0.0})->trivial);
}

TEST_CASE("optimum: one large multiplicity needs no table up to it", "[optimum]") {
    // Counts are sparse: m = 500000 next to m = 1 costs a walk of the binomial product, no array
    // of half a million entries. N_{500000} ~ e^693000 exists only in log space.
    const index_t K = 1000000;
    const multiplicity_counts n{{1, 2}, {500000, 1}};
    const optimum_result r = mlnc::global_optimum(K, n, {1e-3, 1e-3, 0.0});
    REQUIRE(r.converged());
    CHECK(r.multiplicities() == std::vector<index_t>{1, 500000});
    CHECK(std::isfinite(r->f));
    CHECK(std::isfinite(r.collapse_threshold()));
    CHECK(mlnc::optimum_by_system44(K, n, {1e-3, 1e-3, 0.0}).converged());
}

TEST_CASE("optimum: sample_labels() is the balanced training set the optimum describes", "[optimum]") {
    const index_t K = 5;
    const multiplicity_counts n{{1, 3}, {2, 0}, {3, 2}};
    const penalties lam = at_fraction(K, n, 0.5, 2.0, 0.1);
    const optimum_result r = mlnc::global_optimum(K, n, lam);
    CHECK(r.counts() == multiplicity_counts{{1, 3}, {3, 2}});  // n_2 = 0 describes no sample
    const mlnc::label_sets S = r.sample_labels();
    CHECK(S == mlnc::balanced_label_sets(K, n));
    CHECK(S.multiplicity_histogram() == std::vector<index_t>{0, 15, 0, 20});
    // Training-free: f* is the PAL objective at the optimum point for these labels.
    REQUIRE(r.converged());
    REQUIRE_FALSE(r->trivial);
    const auto pt = mlnc::optimum_point(r, S, K);
    CHECK(rel(mlnc::pal_objective<double>(S, lam).value(pt.W, pt.H, pt.b), r->f) < 1e-12);

    // Known without a solution.
    const optimum_result far = mlnc::global_optimum(4, {{1, 1}, {2, 1}}, {1e-300, 1e-300, 0.0});
    REQUIRE_FALSE(far.converged());
    CHECK(far.sample_labels() == mlnc::balanced_label_sets(4, {{1, 1}, {2, 1}}));
    // Bounded: K = 10^6 with M = 8 describes 10^43 samples; C(1000, 3) = 1.7e8 is above the default
    // cap of 10^8 and fits under a larger one unless the memory is short.
    const optimum_result huge = mlnc::global_optimum(1000000, dense(std::vector<index_t>(8, 1)), {5e-4, 5e-4, 0.0});
    CHECK_THROWS_WITH(huge.sample_labels(), Catch::Contains("max_samples"));
    const optimum_result triples = mlnc::global_optimum(1000, {{3, 1}}, {5e-4, 5e-4, 0.0});
    CHECK_THROWS_WITH(triples.sample_labels(), Catch::Contains("max_samples"));
    setenv("MLNC_MEMORY_LIMIT", "1000000", 1);
    const std::string msg = [&] {
        try {
            triples.sample_labels(200000000);
        } catch (const mlnc::error& e) {
            return std::string(e.what());
        }
        return std::string("no error");
    }();
    unsetenv("MLNC_MEMORY_LIMIT");
    CHECK_THAT(msg, Catch::StartsWith("optimum_result::sample_labels:") && Catch::Contains("memory"));
}

TEST_CASE("optimum: log-space binomials are exact to a few ulps", "[optimum]") {
    // Against exact 128-bit binomials: the product recursion keeps the absolute error of log C at a
    // few ulps of its size (lgamma differences lose ~ log(K!) eps, ~1e-9 at K = 10^6).
    for (index_t K : {2, 10, 1000, 1000000}) {
        std::vector<index_t> ms;
        for (index_t m = 0; m <= std::min<index_t>(K, 7); ++m) ms.push_back(m);
        const auto row = mlnc::detail::log_binomials(K, ms);
        for (index_t m = 0; m <= std::min<index_t>(K, 7); ++m) {
            const long double exact = std::log(static_cast<long double>(mlnc::binomial(K, m)));
            CHECK(std::abs(static_cast<long double>(row[static_cast<std::size_t>(m)]) - exact) <=
                  8 * std::numeric_limits<double>::epsilon() * std::max(1.0L, exact));
        }
    }
}
