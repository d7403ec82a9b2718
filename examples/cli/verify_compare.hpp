#pragma once
// mlnc verify, part 2: the structure of the trained point (ETF error, tag-wise fit, NC metrics)
// and its comparison with Theorem 1's closed form: the verdict, the failures, and the notes that
// explain degenerate cases (the collapse to zero, a trainer stopped at the rounding floor).

#include "verify_train.hpp"

#include <mlnc/etf.hpp>
#include <mlnc/io/counts.hpp>
#include <mlnc/labels.hpp>
#include <mlnc/metrics.hpp>
#include <mlnc/optimum.hpp>
#include <mlnc/tagwise.hpp>
#include <mlnc/types.hpp>
#include <mlnc/ufm.hpp>

#include <algorithm>
#include <cmath>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace mlnc_cli::verify {

// Verdict tolerances, per dtype of the training.
// double: the objective gap is what the trainer reaches on such problems (1e-10 is its tested
// bound); the structural errors are first order in the distance to the minimiser, which is
// ~ gradient norm / smallest curvature (~1e-12 / 1e-3 here), so 1e-6 leaves three orders of
// magnitude of margin while still failing for any wrong geometry.
// float: f is computed to ~1e-7 relative (u = 6e-8, sums in double), so the trainer can drive the
// gradient to ~1e-5 |f| at best; the gap is then second order (~1e-8) but bounded by f's own
// rounding (1e-6 allows ~16 u), and the structure first order: ~1e-5 / 1e-3 = 1e-2 at the
// smallest curvatures verify meets, so 5e-2 still fails any wrong geometry (errors of order 1).
// rounding_gap: a gap at the rounding level of f, what a line search that can no longer
// decrease f leaves.
struct tolerances {
    const char* dtype;
    double gradient;      // the trainer's gradient tolerance (relative to max(1, |f|))
    double gap;           // relative objective gap
    double structure;     // rho, ETF error, tag-wise residuals and C_m
    double rounding_gap;
};
inline const tolerances& tolerances_for(const std::string& dtype) {
    static const tolerances in_double{"double", 1e-12, 1e-9, 1e-6, 1e-12};
    static const tolerances in_float{"float", 1e-5, 1e-6, 5e-2, 1e-6};
    return dtype == "float" ? in_float : in_double;
}
// A trained point whose size sqrt(||W||^2 + ||H||^2 / N) is below this is numerically zero: its
// directions (ETF error, tag-wise residuals, NC metrics) are rounding noise and are reported as
// undefined. At the trivial minimiser the trainer reaches ~1e-20; a non-trivial minimiser has
// size ~ sqrt(rho*), far above this unless the penalties sit within ~1e-16 of the threshold.
inline constexpr double zero_size = 1e-8;

struct structure {
    double rho = 0;     // ||W||_F^2
    double size = 0;    // sqrt(||W||_F^2 + ||H||_F^2 / N)
    bool zero = false;  // numerically zero: the metrics below are undefined
    std::optional<double> etf_error;
    mlnc::per_multiplicity<double> C, residual;  // tag-wise fit; empty when zero
    std::optional<mlnc::nc_metrics> nc;
    std::string nc_unavailable;  // why nc is empty, when it is not because of zero
};

inline structure analyse(const mlnc::ufm_result<double>& res, const mlnc::label_sets& S) {
    structure s;
    s.rho = res.W.squaredNorm();
    s.size = std::sqrt(s.rho + res.H.squaredNorm() / static_cast<double>(S.size()));
    s.zero = !(s.size > zero_size);
    if (s.zero) return s;
    s.etf_error = mlnc::etf_deviation(res.W);
    const auto tw = mlnc::fit_tagwise(res.H, S, res.W);
    s.C = tw.C;
    s.residual = tw.residual;
    const auto cm = mlnc::compute_class_means(res.H, S);
    if (cm.num_missing_labels() == 0)
        s.nc = mlnc::compute_nc_metrics(mlnc::cpu{}, res.H, S, res.W, {.nc_m_uncentered = false});
    else s.nc_unavailable = "some label has no multiplicity-1 sample, so mu_k is undefined";
    return s;
}

struct comparison {
    tolerances tol{};                            // the verdict's tolerances (per dtype)
    bool within = false;                         // inside the theorem's assumptions
    std::string outside;                         // why not, when not
    std::optional<mlnc::optimum_result> theory;  // the closed form, when within
    std::optional<double> gap;                   // relative objective gap
    mlnc::per_multiplicity<double> C_theory;
    bool verified = false;
    std::vector<std::string> failures;
    std::vector<std::string> notes;          // what a reader needs to interpret the result
    std::optional<double> suggested_lambda;  // lambda_w = lambda_h that shows the collapse
};

// The closed form, when the problem satisfies the theorem's assumptions.
inline std::optional<mlnc::optimum_result> closed_form(const mlnc::io::counted_samples& p, index_t K, index_t d,
                                                       const mlnc::penalties& lam) {
    if (!p.n || d < K - 1) return std::nullopt;
    return mlnc::global_optimum(K, *p.n, lam);
}

inline comparison compare(const mlnc::io::counted_samples& p, index_t K, index_t d, const mlnc::penalties& lam,
                          std::optional<mlnc::optimum_result> theory, const mlnc::ufm_result<double>& res,
                          const structure& st, const tolerances& tol) {
    comparison c;
    c.tol = tol;
    c.within = theory.has_value();
    if (!c.within) {
        c.outside = p.n ? "d = " + std::to_string(d) + " < K-1 = " + std::to_string(K - 1)
                        : "label sets missing or imbalanced within a multiplicity";
        return c;
    }
    c.theory = std::move(theory);
    const mlnc::optimum_result& th = *c.theory;
    const double threshold = th.collapse_threshold();
    const double sq = std::sqrt(lam.lambda_w) * std::sqrt(lam.lambda_h);
    if (!th.converged()) {
        c.failures.push_back("the closed-form solver did not converge (the optimum lies beyond the range of double "
                             "for these penalties), so there is nothing to compare with");
        if (threshold > 0 && sq < 1e-100 * threshold)
            c.notes.push_back("sqrt(lambda_w lambda_h) = " + fmt(sq, 3) + " is more than 1e100 times below the collapse "
                              "threshold " + fmt(threshold, 3) + "; raise the penalties");
        return c;
    }
    c.C_theory = th->C;
    c.gap = std::abs(res.objective - th->f) / std::max(1.0, std::abs(th->f));
    if (!(*c.gap <= tol.gap)) c.failures.push_back("objective gap " + fmt(*c.gap, 3) + " > " + fmt(tol.gap, 3));

    if (th->trivial && threshold == 0) {
        if (!st.zero)
            c.failures.push_back("theory predicts W = H = 0 but the trained size is " + fmt(st.size, 3));
        c.notes.push_back("every sample carries all K labels: the loss is K log K whatever W and H, so the global "
                          "minimiser is W = H = 0 for all penalties and no collapse geometry exists");
        c.notes.push_back("the structure metrics of a zero solution are undefined (reported as n/a, null in JSON)");
    } else if (th->trivial) {
        if (!st.zero)
            c.failures.push_back("theory predicts W = H = 0 but the trained size is " + fmt(st.size, 3));
        c.suggested_lambda = threshold / 10;
        c.notes.push_back("the global minimiser is W = H = 0, b = 0: sqrt(lambda_w lambda_h) = " + fmt(sq, 3) +
                          " is at or above the collapse threshold " + fmt(threshold, 6) + " for K = " +
                          std::to_string(K) + " and these n_m, so there is no collapse geometry to compare");
        c.notes.push_back("the structure metrics of a zero solution are undefined (reported as n/a, null in JSON)");
        c.notes.push_back("to see the collapse, lower the penalties below the threshold, e.g. --lambda-w " +
                          fmt(*c.suggested_lambda, 3) + " --lambda-h " + fmt(*c.suggested_lambda, 3));
    } else if (st.zero) {
        c.failures.push_back("the trained point is numerically zero (size " + fmt(st.size, 3) +
                             ") but the optimum has rho = " + fmt(th->rho, 3));
    } else {
        const double rho_err = std::abs(st.rho - th->rho) / th->rho;
        if (!(rho_err <= tol.structure)) c.failures.push_back("rho relative error " + fmt(rho_err, 3));
        if (!(*st.etf_error <= tol.structure)) c.failures.push_back("ETF error " + fmt(*st.etf_error, 3));
        for (const auto& [m, r] : st.residual) {
            if (m == K) continue;  // prototype 0: checked through the residual scale below
            if (!(r <= tol.structure))
                c.failures.push_back("tag-wise residual at m = " + std::to_string(m) + " is " + fmt(r, 3));
            const double c_err = std::abs(st.C.at(m) - c.C_theory.at(m)) / std::abs(c.C_theory.at(m));
            if (!(c_err <= tol.structure))
                c.failures.push_back("C_" + std::to_string(m) + " relative error " + fmt(c_err, 3));
        }
        if (st.residual.contains(K) && !(st.residual.at(K) <= tol.structure))
            c.failures.push_back("features of the full label set are not 0 (relative size " + fmt(st.residual.at(K), 3) +
                                 ")");
    }
    // Stops other than the gradient test, with the objective already at its rounding floor.
    if (res.status == mlnc::ufm_status::line_search_failed && *c.gap <= tol.rounding_gap)
        c.notes.push_back("the trainer stopped on line_search_failed with a gap of " + fmt(*c.gap, 2) +
                          ": no step decreases f by more than its rounding error, so the objective is at the floor "
                          "of " + std::string(tol.dtype) + " precision (this is convergence, not a failure)");
    if (res.status == mlnc::ufm_status::max_iterations && *c.gap <= tol.rounding_gap)
        c.notes.push_back("the trainer used its whole iteration budget, but the gap of " + fmt(*c.gap, 2) +
                          " is at the floor of " + std::string(tol.dtype) + " precision: more iterations cannot lower f (the gradient "
                          "norm " + fmt(res.gradient_norm, 2) + " stays above the gradient tolerance)");
    c.verified = c.failures.empty();
    return c;
}

}  // namespace mlnc_cli::verify
