#pragma once
// Theorem 1 in closed form: the global optimum of Problem (4) when every m-subset of the K labels
// carries n_m samples (docs/theory.md derives everything used here).
//
// Under the optimum's structure (W a simplex ETF with ||W||_F^2 = rho, b = 0, h_i = C_m sum_{k in S_i}
// w_k) a sample of multiplicity m sees two logits with gap Delta_m = C_m rho / (K-1), and f reduces to
// the convex function of Delta = (Delta_m)
//   F(Delta) = sum_m p_m m log(m + (K-m) e^{-Delta_m}) + sqrt(A2 sum_m N_m m (K-m) Delta_m^2),
// p_m = N_m / N, N_m = C(K,m) n_m, A2 = 4 lW lH (K-1)/K. Its minimiser has one common s > 0 with
//   Delta_m (m e^{Delta_m} + K - m) = s (each m < K),   sum_m q_m (Delta_m / s)^2 = A2,
// q_m = N_m m (K-m) / N^2, unless sum_m q_m <= K^2 A2, when the optimum is W = H = 0.
//
// Two independent solvers:
//  - global_optimum (route 1): a safeguarded Newton method on the second equation in log s, with
//    every Delta_m(s) from a monotone Newton iteration;
//  - optimum_by_system44 (route 2): the first-order conditions of Problem (4) written in the
//    paper's constants c_{1,m} = (m/(K-m)) e^{Delta_m} and rho: a bracketing TOMS 748 root find
//    in rho (Boost.Math) around per-m Newton solves in c_{1,m} (Boost.Math).
// Every count enters through logarithms, so K = 10^6 with M = 8 (N ~ 10^43 n) is routine.
// The counts are a multiplicity_counts (m -> n_m); everything per multiplicity that comes back
// (Delta_m, C_m, c_{1,m}) is a per_multiplicity<double> over the same m.

#include <mlnc/detail/memory.hpp>
#include <mlnc/error.hpp>
#include <mlnc/etf.hpp>
#include <mlnc/labels.hpp>
#include <mlnc/types.hpp>

#include <boost/math/policies/error_handling.hpp>
#include <boost/math/tools/roots.hpp>
#include <boost/math/tools/toms748_solve.hpp>

#include <Eigen/Core>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

namespace mlnc {

enum class optimum_status {
    success,         // the result holds the optimum to machine precision
    no_convergence,  // an iteration budget ran out or the root left the range of double
};

// The closed-form optimum at a solver's success. delta, C and c1 hold exactly the multiplicities m
// with n_m > 0 (optimum_result::multiplicities()); read them with at(m) or iterate them.
// For m = K (every label) the loss is K log K whatever the logits, the optimal features are 0 and
// the logit gap does not exist; the entries are then delta = 0, C = 0 and c1 = +infinity (the
// out-of-set probability mass is 0, and c_{1,m} is the ratio in-set mass / out-of-set mass; the
// formula m log(m (1 + 1/c1)) for the loss still holds). JSON writers print that c1 as null.
// In the trivial case (W = H = 0): rho = w_norm = s = 0, delta = 0, C = 0 and c1 = m/(K-m), the
// mass ratio of equal logits.
struct optimum_solution {
    bool trivial = false;   // the optimum is the collapse to zero W = H = 0
    double f = 0;           // f* = min of Problem (4)
    double rho = 0;         // ||W*||_F^2
    double w_norm = 0;      // row norm of W*, sqrt(rho / K)
    double s = 0;           // the common value of Delta_m (m e^{Delta_m} + K - m) over m < K
    per_multiplicity<double> delta;  // logit gap z_in - z_out of a sample of multiplicity m
    per_multiplicity<double> C;      // h_i = C_m sum_{k in S_i} w_k
    per_multiplicity<double> c1;     // the paper's c_{1,m} = (m/(K-m)) e^{Delta_m}
};

namespace detail {
inline std::string multiplicity_list(const std::vector<index_t>& ms) {
    std::string s = "{";
    for (const index_t m : ms) s += (s.size() > 1 ? ", " : "") + std::to_string(m);
    return s + "}";
}
}  // namespace detail

// What a closed-form solver returns. The problem's data (K, the counts n_m > 0, the collapse
// threshold) and the iteration counts are always there; the solution exists only when the solver
// converged, and every access to it is checked: solution() (or ->) on a result that did not
// converge throws mlnc::error, and r->C.at(m) throws for an m without samples.
class optimum_result {
public:
    optimum_result() = default;
    // counts: n_m per m-subset; entries with n_m = 0 are dropped (they describe no sample).
    optimum_result(index_t K, const multiplicity_counts& counts,
                   double collapse_threshold = std::numeric_limits<double>::quiet_NaN())
        : K_(K), threshold_(collapse_threshold) {
        for (const auto& [m, count] : counts) {
            detail::require(count >= 0, "optimum_result: counts",
                            "n_" + std::to_string(m) + " = " + std::to_string(count) + " is negative");
            if (count > 0) n_.insert_or_assign(m, count);
        }
    }

    optimum_status status() const noexcept { return sol_ ? optimum_status::success : optimum_status::no_convergence; }
    bool converged() const noexcept { return sol_.has_value(); }
    explicit operator bool() const noexcept { return converged(); }

    index_t K() const noexcept { return K_; }
    // n_m of the multiplicities with samples (the counts solved for, without the zeros).
    const multiplicity_counts& counts() const noexcept { return n_; }
    std::vector<index_t> multiplicities() const { return n_.multiplicities(); }  // the m with n_m > 0, ascending
    // The largest sqrt(lambda_w lambda_h) for which the optimum is not W = H = 0 (theory.md):
    // sqrt(sum_{m<K} N_m m (K-m) / N^2 / (4 K (K-1))); 0 when only m = K is present.
    double collapse_threshold() const noexcept { return threshold_; }

    // The training set the optimum describes: every m-subset of the K labels n_m times, in the
    // order of balanced_label_sets (which it is). Known whatever the solver did. Its size is
    // sum_m C(K, m) n_m, which grows fast (K = 10^6, M = 8: 10^43): throws mlnc::error beyond
    // max_samples or the available memory.
    label_sets sample_labels(index_t max_samples = 100000000) const {
        double samples = 0, bytes = 0;
        for (const auto& [m, count] : n_) {
            const double Nm = static_cast<double>(count) * std::exp(log_binomial(K_, m));
            samples += Nm;
            // an offset per sample, and m label indices in an array that grows by doubling
            bytes += Nm * (sizeof(index_t) + 2.0 * static_cast<double>(m) * sizeof(label_t));
        }
        if (samples <= static_cast<double>(max_samples))  // beyond, balanced_label_sets names the count
            detail::require_memory(bytes, "optimum_result::sample_labels",
                                   "the label sets of " + detail::num(samples) + " samples");
        return balanced_label_sets(K_, n_, max_samples);
    }

    const optimum_solution& solution() const {
        if (!sol_)
            throw error("optimum_result: the closed-form solver did not converge (status no_convergence), so there "
                        "is no f*, rho, Delta_m or C_m; check status() or converged() first");
        return *sol_;
    }
    const optimum_solution* operator->() const { return &solution(); }

    // Marks the result converged with this solution; its delta, C and c1 must hold exactly the
    // multiplicities with samples.
    void set_solution(optimum_solution s) {
        const std::vector<index_t> ms = multiplicities();
        for (const auto* part : {&s.delta, &s.C, &s.c1})
            if (part->multiplicities() != ms)
                throw error("optimum_result: a solution needs delta, C and c1 for exactly the multiplicities " +
                            detail::multiplicity_list(ms) + ", got " +
                            detail::multiplicity_list(s.delta.multiplicities()) + ", " +
                            detail::multiplicity_list(s.C.multiplicities()) + " and " +
                            detail::multiplicity_list(s.c1.multiplicities()));
        sol_ = std::move(s);
    }

    int outer_iterations = 0;   // evaluations of the outer (common-factor) equation
    int newton_iterations = 0;  // Newton steps of all the per-m solves together

private:
    index_t K_ = 0;
    multiplicity_counts n_;
    double threshold_ = std::numeric_limits<double>::quiet_NaN();
    std::optional<optimum_solution> sol_;
};

// Iteration budgets; tolerances are fixed at machine precision.
struct optimum_options {
    int max_outer_iterations = 200;   // outer equation: bracket search plus safeguarded Newton steps
    int max_newton_iterations = 100;  // per scalar solve for one Delta_m (or c_{1,m})
};

namespace detail {

inline double log_sum_exp(const std::vector<double>& x) {
    double mx = -std::numeric_limits<double>::infinity();
    for (double v : x) mx = std::max(mx, v);
    if (!std::isfinite(mx)) return mx;
    double sum = 0.0;
    for (double v : x) sum += std::exp(v - mx);
    return mx + std::log(sum);
}

// log C(n, j) for each j of js (ascending, each in [0, n]) by the product
// C(n, j+1) = C(n, j) (n-j)/(j+1), with a compensated sum: absolute error a few ulps of the result,
// where lgamma differences lose ~ log(n!) * eps (1e-9 at n = 10^6). O(max j) time; memory only
// for the results, so one large multiplicity costs no table up to it.
inline std::vector<double> log_binomials(index_t n, const std::vector<index_t>& js) {
    std::vector<double> out;
    out.reserve(js.size());
    double sum = 0.0, comp = 0.0;
    index_t j = 0;
    for (const index_t want : js) {
        for (; j < want; ++j) {
            const double t = std::log(static_cast<double>(n - j) / static_cast<double>(j + 1));
            const double y = sum + t;  // Neumaier's compensated summation
            comp += std::abs(sum) >= std::abs(t) ? (sum - y) + t : (t - y) + sum;
            sum = y;
        }
        out.push_back(sum + comp);
    }
    return out;
}

// The validated problem in log space. Only multiplicities with n_m > 0 are kept.
struct optimum_problem {
    index_t K = 0;
    double lw = 0, lh = 0;
    multiplicity_counts n;        // the counts n_m > 0
    std::vector<index_t> m;       // their multiplicities, ascending; the vectors below follow them
    std::vector<double> log_n;    // log n_m
    std::vector<double> log_Nm;   // log N_m = log C(K, m) + log n_m
    double log_N = 0;             // log N
    double log_A2 = 0;            // log(4 lW lH (K-1)/K)
};

inline void check_optimum_options(const optimum_options& o) {
    require(o.max_outer_iterations >= 1, "max_outer_iterations", "must be at least 1");
    require(o.max_newton_iterations >= 1, "max_newton_iterations", "must be at least 1");
}

inline optimum_problem make_optimum_problem(index_t K, const multiplicity_counts& n, const penalties& lam) {
    require(K >= 2, "K", "must be at least 2, got " + std::to_string(K));
    require(!n.empty(), "n", "needs at least one multiplicity");
    require(n.max_multiplicity() <= K, "n",
            "has multiplicity " + std::to_string(n.max_multiplicity()) + " > K = " + std::to_string(K));
    check_penalties(lam);
    require(lam.lambda_w > 0, "lambda_w", "must be > 0 (with lambda_w = 0 the objective has no minimiser)");
    require(lam.lambda_h > 0, "lambda_h", "must be > 0 (with lambda_h = 0 the objective has no minimiser)");
    optimum_problem p;
    p.K = K;
    p.lw = lam.lambda_w;
    p.lh = lam.lambda_h;
    for (const auto& [m, count] : n) {
        require(count >= 0, "n", "count n_" + std::to_string(m) + " must be >= 0, got " + std::to_string(count));
        if (count == 0) continue;
        p.n.insert_or_assign(m, count);
        p.m.push_back(m);
        p.log_n.push_back(std::log(static_cast<double>(count)));
    }
    require(!p.m.empty(), "n", "all counts are zero");
    const std::vector<double> lb = log_binomials(K, p.m);
    for (std::size_t j = 0; j < p.m.size(); ++j) p.log_Nm.push_back(lb[j] + p.log_n[j]);
    p.log_N = log_sum_exp(p.log_Nm);
    const double Kd = static_cast<double>(K);
    p.log_A2 = std::log(4.0 * p.lw) + std::log(p.lh) + std::log(Kd - 1.0) - std::log(Kd);
    return p;
}

inline double log_mk(index_t m, index_t K) {  // log(m (K - m)), m < K
    return std::log(static_cast<double>(m)) + std::log(static_cast<double>(K - m));
}

// Route 1, inner: the Delta > 0 with Delta (K + m expm1(Delta)) = s, for 1 <= m < K and s > 0.
// phi(Delta) = Delta (m e^Delta + K - m) - s is increasing and convex on Delta >= 0, so Newton's method
// started to the right of the root decreases monotonically onto it. The start is the smaller of two
// upper bounds: e^D >= 1 + D gives D (K + m D) <= s, and D m e^D <= s gives D <= W(s/m) <= log1p(s/m).
// Returns false when the budget runs out.
inline bool solve_delta(index_t m, index_t K, double s, int budget, double& delta, int& iterations) {
    const double md = static_cast<double>(m), Kd = static_cast<double>(K);
    double x = std::min(2.0 * s / (Kd + std::sqrt(Kd * Kd + 4.0 * md * s)), std::log1p(s / md));
    for (int it = 0; it < budget; ++it) {
        const double em1 = std::expm1(x);
        const double phi = x * (Kd + md * em1) - s;
        if (phi <= 0) {  // on the root up to rounding: a step to the left can only add error
            delta = x;
            return true;
        }
        const double step = phi / (Kd + md * em1 + md * x * (em1 + 1.0));
        ++iterations;
        x -= step;
        if (step <= 2.0 * std::numeric_limits<double>::epsilon() * x) {
            delta = x;
            return true;
        }
    }
    return false;
}

inline optimum_solution trivial_solution(const optimum_problem& p) {
    const double Kd = static_cast<double>(p.K);
    optimum_solution r;
    r.trivial = true;
    double loss = 0;
    for (std::size_t j = 0; j < p.m.size(); ++j) {
        const index_t m = p.m[j];
        loss += std::exp(p.log_Nm[j] - p.log_N) * static_cast<double>(m);
        r.delta.insert_or_assign(m, 0.0);
        r.C.insert_or_assign(m, 0.0);
        r.c1.insert_or_assign(m, m < p.K ? static_cast<double>(m) / static_cast<double>(p.K - m)
                                         : std::numeric_limits<double>::infinity());
    }
    r.f = loss * std::log(Kd);
    return r;
}

// sqrt(sum_{m<K} q_m / (4 K (K-1))), q_m = N_m m (K-m) / N^2, in log space; 0 with only m = K.
inline double collapse_threshold(const optimum_problem& p) {
    std::vector<double> lq;
    for (std::size_t j = 0; j < p.m.size(); ++j)
        if (p.m[j] < p.K) lq.push_back(p.log_Nm[j] - 2.0 * p.log_N + log_mk(p.m[j], p.K));
    if (lq.empty()) return 0.0;
    const double Kd = static_cast<double>(p.K);
    return std::exp(0.5 * (log_sum_exp(lq) - std::log(4.0) - std::log(Kd) - std::log(Kd - 1.0)));
}

inline optimum_result begin_result(const optimum_problem& p) { return {p.K, p.n, collapse_threshold(p)}; }

// The exact collapse test in log space: sum_m q_m <= K^2 A2 (theory.md), i.e. the subgradient of F at
// Delta = 0 contains 0. Only m < K contribute; with only m = K present the optimum is always trivial.
inline bool collapses_to_zero(const optimum_problem& p) {
    std::vector<double> lq;
    for (std::size_t j = 0; j < p.m.size(); ++j)
        if (p.m[j] < p.K) lq.push_back(p.log_Nm[j] - 2.0 * p.log_N + log_mk(p.m[j], p.K));
    if (lq.empty()) return true;
    return log_sum_exp(lq) - 2.0 * std::log(static_cast<double>(p.K)) <= p.log_A2;
}

// F(Delta) for Delta given per present multiplicity, in the order of p.m (entries for m = K are ignored).
inline double reduced_objective_value(const optimum_problem& p, const std::vector<double>& delta) {
    double loss = 0;
    std::vector<double> lpen;
    for (std::size_t j = 0; j < p.m.size(); ++j) {
        const index_t m = p.m[j];
        const double md = static_cast<double>(m);
        const double pm = std::exp(p.log_Nm[j] - p.log_N);
        if (m == p.K) {
            loss += pm * md * std::log(md);
            continue;
        }
        const double d = delta[j];
        // log(m + (K-m) e^{-d}) = log m + log1p(((K-m)/m) e^{-d}): accurate for small and large d.
        loss += pm * md * (std::log(md) + std::log1p(static_cast<double>(p.K - m) / md * std::exp(-d)));
        if (d != 0) lpen.push_back(p.log_Nm[j] + log_mk(m, p.K) + 2.0 * std::log(std::abs(d)));
    }
    const double pen = lpen.empty() ? 0.0 : std::exp(0.5 * (p.log_A2 + log_sum_exp(lpen)));
    return loss + pen;
}

inline bool all_finite(const per_multiplicity<double>& x) {
    return std::all_of(x.begin(), x.end(), [](const auto& e) { return std::isfinite(e.second); });
}

}  // namespace detail

// F(Delta), the objective reduced to the logit gaps (theory.md): f at the structured point whose
// gaps are Delta with the best W scale. delta holds exactly the multiplicities with n_m > 0 (those of
// optimum_result::delta); the entry for m = K is ignored. Throws mlnc::error on bad input.
inline double reduced_objective(index_t K, const multiplicity_counts& n, const penalties& lambdas,
                                const per_multiplicity<double>& delta) {
    const detail::optimum_problem p = detail::make_optimum_problem(K, n, lambdas);
    detail::require(delta.multiplicities() == p.m, "delta",
                    "needs exactly the multiplicities with n_m > 0 " + detail::multiplicity_list(p.m) + ", got " +
                        detail::multiplicity_list(delta.multiplicities()));
    detail::require(detail::all_finite(delta), "delta", "contains NaN or Inf");
    std::vector<double> d;
    for (const auto& [m, v] : delta) d.push_back(v);
    return detail::reduced_objective_value(p, d);
}

// Route 1: the global optimum of Problem (4) for K labels, n_m samples per m-subset (every m <= K,
// n_m >= 0, entries with n_m = 0 ignored, at least one n_m > 0) and the penalties (lambda_w,
// lambda_h > 0; lambda_b >= 0 only matters through b* = 0). Bad input throws mlnc::error; a budget
// that runs out gives status no_convergence.
template <class Real = double>  // a template only so that it is compiled where it is used
optimum_result global_optimum(index_t K, const multiplicity_counts& n, const penalties& lambdas,
                              const optimum_options& opt = {}) {
    static_assert(std::is_same_v<Real, double>, "mlnc: the closed form is computed in double");
    const detail::optimum_problem p = detail::make_optimum_problem(K, n, lambdas);
    detail::check_optimum_options(opt);
    optimum_result r = detail::begin_result(p);
    if (detail::collapses_to_zero(p)) {
        r.set_solution(detail::trivial_solution(p));
        return r;
    }
    const double Kd = static_cast<double>(K);
    std::vector<std::size_t> idx;  // the present m < K
    std::vector<double> log_q;
    for (std::size_t j = 0; j < p.m.size(); ++j)
        if (p.m[j] < K) {
            idx.push_back(j);
            log_q.push_back(p.log_Nm[j] - 2.0 * p.log_N + detail::log_mk(p.m[j], K));
        }
    std::vector<double> delta(p.m.size(), 0.0), x(idx.size()), slope(idx.size());

    // psi(u) = log(sum_m q_m r_m^2) - log A2 with r_m = Delta_m / s = 1/(K + m expm1(Delta_m)), s = e^u.
    // psi decreases from log(sum q / K^2) - log A2 > 0 (not trivial) to -infinity; d log r_m / du
    // = -m Delta e^Delta / (K + m expm1(Delta) + m Delta e^Delta) lies in (-1, 0).
    double psi = 0, dpsi = 0;
    bool inner_ok = true;
    const auto evaluate = [&](double u) {
        ++r.outer_iterations;
        const double s = std::exp(u);
        for (std::size_t t = 0; t < idx.size(); ++t) {
            const index_t m = p.m[idx[t]];
            const double md = static_cast<double>(m);
            double d = 0;
            if (!detail::solve_delta(m, K, s, opt.max_newton_iterations, d, r.newton_iterations)) {
                inner_ok = false;
                return;
            }
            delta[idx[t]] = d;
            const double E = Kd + md * std::expm1(d);
            const double g = md * d * std::exp(d);
            x[t] = log_q[t] - 2.0 * std::log(E);
            slope[t] = -2.0 * g / (E + g);
        }
        const double lse = detail::log_sum_exp(x);
        psi = lse - p.log_A2;
        dpsi = 0;
        for (std::size_t t = 0; t < idx.size(); ++t) dpsi += std::exp(x[t] - lse) * slope[t];
    };

    // s lives in [e^-650, e^650]: beyond, m e^Delta or the weights leave the range of double.
    constexpr double u_min = -650.0, u_max = 650.0;
    const double eps = std::numeric_limits<double>::epsilon();
    double u = std::log(Kd);  // s = K: Delta_m of order 1 when m << K
    evaluate(u);
    if (!inner_ok) return r;
    double lo = u_min, hi = u_max;
    // Bracket: walk with doubling steps until psi changes sign.
    {
        const double dir = psi > 0 ? 1.0 : -1.0;
        double step = 1.0;
        double prev = u;
        while (psi != 0 && (psi > 0) == (dir > 0)) {
            if (r.outer_iterations >= opt.max_outer_iterations) return r;
            prev = u;
            u = std::clamp(u + dir * step, u_min, u_max);
            if (u == prev) return r;  // the root lies beyond the range of double
            step *= 2.0;
            evaluate(u);
            if (!inner_ok) return r;
        }
        lo = dir > 0 ? prev : u;
        hi = dir > 0 ? u : prev;
    }
    // Safeguarded Newton: a Newton step that leaves (lo, hi) or fails to halve the step before last is
    // replaced by bisection; every evaluation shrinks the bracket.
    double du_old = hi - lo, du = du_old;
    while (psi != 0) {
        const double tol = 2.0 * eps * std::max(1.0, std::abs(u));
        if (hi - lo <= tol) break;
        if (r.outer_iterations >= opt.max_outer_iterations) return r;
        double next = dpsi < 0 ? u - psi / dpsi : lo - 1.0;
        if (!(next > lo && next < hi) || std::abs(next - u) > 0.5 * std::abs(du_old)) next = 0.5 * (lo + hi);
        du_old = du;
        du = next - u;
        u = next;
        evaluate(u);
        if (!inner_ok) return r;
        if (psi > 0) lo = u;
        else hi = u;
        if (std::abs(du) <= tol) break;
    }

    const double s = std::exp(u);
    std::vector<double> lrho;
    for (std::size_t t = 0; t < idx.size(); ++t) {
        const std::size_t j = idx[t];
        lrho.push_back(p.log_Nm[j] + detail::log_mk(p.m[j], K) + 2.0 * std::log(delta[j]));
    }
    // rho = K t* with t* = sqrt(B / (lW K)), B = lH (K-1)/K^2 sum_m N_m m (K-m) Delta_m^2.
    const double rho = std::exp(0.5 * (std::log(p.lh) + std::log(Kd - 1.0) - std::log(Kd) - std::log(p.lw) +
                                       detail::log_sum_exp(lrho)));
    const double f = detail::reduced_objective_value(p, delta);
    if (!std::isfinite(rho) || !(rho > 0) || !std::isfinite(f)) return r;
    optimum_solution sol;
    sol.s = s;
    sol.rho = rho;
    sol.w_norm = std::sqrt(rho / Kd);
    sol.f = f;
    for (std::size_t j = 0; j < p.m.size(); ++j) {
        const index_t m = p.m[j];
        if (m == K) {
            sol.delta.insert_or_assign(m, 0.0);
            sol.C.insert_or_assign(m, 0.0);
            sol.c1.insert_or_assign(m, std::numeric_limits<double>::infinity());
            continue;
        }
        sol.delta.insert_or_assign(m, delta[j]);
        sol.C.insert_or_assign(m, (Kd - 1.0) * delta[j] / rho);
        sol.c1.insert_or_assign(
            m, std::exp(std::log(static_cast<double>(m)) - std::log(static_cast<double>(K - m)) + delta[j]));
    }
    if (!std::isfinite(sol.w_norm) || !(sol.w_norm > 0)) return r;
    if (!detail::all_finite(sol.C) || !detail::all_finite(sol.delta)) return r;
    r.set_solution(std::move(sol));
    return r;
}

// Route 2: the first-order conditions of Problem (4) at the tag-wise point, in the paper's unknowns
// c_{1,m} and rho (theory.md, "system (44)"):
//   (K-m)(1 + c) log((K-m) c / m) = s(rho) = K rho / (2 lH N (K-1))        for each m < K,
//   lH sum_m n_m C(K-2, m-1) C_m^2 = lW,   C_m = K / (2 lH N (K-m)(1 + c_{1,m})).
// The second equation is solved for rho by TOMS 748 after a multiplicative bracket search; each
// evaluation solves the first for every c_{1,m} by Boost's safeguarded Newton iteration. Outputs are
// formed from (c_{1,m}, rho) by the paper's formulas, independently of route 1. Near the collapse
// threshold (Delta -> 0) this route loses accuracy: Delta = log((K-m) c / m) is a difference there.
template <class Real = double>  // a template only so that Boost's solvers are compiled where used
optimum_result optimum_by_system44(index_t K, const multiplicity_counts& n, const penalties& lambdas,
                                   const optimum_options& opt = {}) {
    static_assert(std::is_same_v<Real, double>, "mlnc: the closed form is computed in double");
    const detail::optimum_problem p = detail::make_optimum_problem(K, n, lambdas);
    detail::check_optimum_options(opt);
    optimum_result r = detail::begin_result(p);
    const double Kd = static_cast<double>(K);
    // N and the weights from C(K-2, m-1) = C(K, m) m (K-m) / (K (K-1)), not from route 1's C(K, m).
    std::vector<index_t> below_K;  // m - 1 for the present m < K
    for (const index_t m : p.m)
        if (m < K) below_K.push_back(m - 1);
    const std::vector<double> lb2 = detail::log_binomials(K - 2, below_K);
    std::vector<double> log_w(p.m.size()), log_Nm(p.m.size());
    for (std::size_t j = 0; j < p.m.size(); ++j) {
        const index_t m = p.m[j];
        if (m == K) {
            log_w[j] = -std::numeric_limits<double>::infinity();
            log_Nm[j] = p.log_n[j];
        } else {
            log_w[j] = p.log_n[j] + lb2[j];  // the m < K come first
            log_Nm[j] = log_w[j] + std::log(Kd) + std::log(Kd - 1.0) - detail::log_mk(m, K);
        }
    }
    const double log_N = detail::log_sum_exp(log_Nm);
    std::vector<std::size_t> idx;
    for (std::size_t j = 0; j < p.m.size(); ++j)
        if (p.m[j] < K) idx.push_back(j);

    // log C_m + log(1 + c) = log K - log 2 - log lH - log N - log(K - m)
    const auto log_C_base = [&](index_t m) {
        return std::log(Kd) - std::log(2.0 * p.lh) - log_N - std::log(static_cast<double>(K - m));
    };
    // Trivial when the closure residual is <= 0 at rho -> 0 (c -> m/(K-m), 1 + c -> K/(K-m)).
    {
        std::vector<double> x;
        for (std::size_t j : idx) x.push_back(log_w[j] + 2.0 * (log_C_base(p.m[j]) - std::log(Kd / static_cast<double>(K - p.m[j]))));
        if (x.empty() || detail::log_sum_exp(x) + std::log(p.lh) - std::log(p.lw) <= 0) {
            r.set_solution(detail::trivial_solution(p));
            return r;
        }
    }

    std::vector<double> c(p.m.size(), std::numeric_limits<double>::infinity());
    bool inner_ok = true;
    const int digits = std::numeric_limits<double>::digits;
    const auto solve_c = [&](double s) {
        for (std::size_t j : idx) {
            const double Km = static_cast<double>(K - p.m[j]), md = static_cast<double>(p.m[j]);
            const double c_lo = md / Km, c_hi = (md + s) / Km;  // chi(c_lo) = -s < 0 <= chi(c_hi)
            const auto chi = [&](double cc) {
                const double L = std::log(Km * cc / md);
                return std::make_tuple(Km * (1.0 + cc) * L - s, Km * (L + (1.0 + cc) / cc));
            };
            std::uintmax_t it = static_cast<std::uintmax_t>(opt.max_newton_iterations);
            c[j] = boost::math::tools::newton_raphson_iterate(chi, c_hi, c_lo, c_hi, digits, it);
            r.newton_iterations += static_cast<int>(it);
            if (it >= static_cast<std::uintmax_t>(opt.max_newton_iterations)) inner_ok = false;
        }
    };
    const double log_s_of_rho = std::log(Kd) - std::log(2.0 * p.lh) - log_N - std::log(Kd - 1.0);
    std::vector<double> x(idx.size());
    const auto closure = [&](double rho) {
        solve_c(std::exp(log_s_of_rho + std::log(rho)));
        for (std::size_t t = 0; t < idx.size(); ++t) {
            const std::size_t j = idx[t];
            x[t] = log_w[j] + 2.0 * (log_C_base(p.m[j]) - std::log1p(c[j]));
        }
        return detail::log_sum_exp(x) + std::log(p.lh) - std::log(p.lw);  // decreasing in rho
    };

    double rho = 0;
    try {
        std::uintmax_t it = static_cast<std::uintmax_t>(opt.max_outer_iterations);
        const double guess = std::exp(std::log(Kd) - log_s_of_rho);  // s = K
        const auto ab = boost::math::tools::bracket_and_solve_root(
            closure, guess, 8.0, false, boost::math::tools::eps_tolerance<double>(digits), it);
        r.outer_iterations = static_cast<int>(it);
        if (it >= static_cast<std::uintmax_t>(opt.max_outer_iterations) || !inner_ok) return r;
        rho = 0.5 * (ab.first + ab.second);
        closure(rho);  // c at the final rho
    } catch (const boost::math::evaluation_error&) {
        return r;
    }
    if (!inner_ok || !std::isfinite(rho) || !(rho > 0)) return r;

    double loss = 0;
    std::vector<double> lh2;
    optimum_solution sol;
    for (std::size_t j = 0; j < p.m.size(); ++j) {
        const index_t m = p.m[j];
        const double md = static_cast<double>(m);
        const double pm = std::exp(log_Nm[j] - log_N);
        if (m == K) {
            loss += pm * md * std::log(md);  // m log(m (1 + 1/c)) with c = infinity
            sol.delta.insert_or_assign(m, 0.0);
            sol.C.insert_or_assign(m, 0.0);
            sol.c1.insert_or_assign(m, std::numeric_limits<double>::infinity());
            continue;
        }
        const double Km = static_cast<double>(K - m);
        // loss m log(m + (K-m) e^{-Delta}) = m log(m (1 + 1/c)); ||h||^2 = C^2 (rho/K) m (K-m)/(K-1)
        loss += pm * md * (std::log(md) + std::log1p(1.0 / c[j]));
        const double logC = log_C_base(m) - std::log1p(c[j]);
        lh2.push_back(log_Nm[j] + 2.0 * logC + std::log(rho) - std::log(Kd) + detail::log_mk(m, K) - std::log(Kd - 1.0));
        sol.delta.insert_or_assign(m, std::log(Km * c[j] / md));
        sol.C.insert_or_assign(m, std::exp(logC));
        sol.c1.insert_or_assign(m, c[j]);
    }
    sol.f = loss + p.lw * rho + p.lh * std::exp(detail::log_sum_exp(lh2));
    sol.rho = rho;
    sol.w_norm = std::sqrt(rho / Kd);
    sol.s = std::exp(log_s_of_rho + std::log(rho));
    if (!std::isfinite(sol.f) || !std::isfinite(sol.w_norm) || !(sol.w_norm > 0)) return r;
    if (!detail::all_finite(sol.C) || !detail::all_finite(sol.delta)) return r;
    r.set_solution(std::move(sol));
    return r;
}

// The optimiser (W*, H*, b*) for the sample list S: W* the simplex ETF with row norm w_norm (K x d,
// d >= K-1, optionally rotated by a seeded Haar-random orthogonal matrix), h_i = C_m sum_{k in S_i} w_k,
// b* = 0, in the scalar T (default double). S should hold n_m samples of every m-subset (res.sample_labels()) for the result to be the
// optimum of f on S; every multiplicity in S must be one of res.multiplicities().
template <class T = double>
ufm_point<T> optimum_point(const optimum_result& res, const label_sets& S, index_t d,
                           std::optional<std::uint64_t> rotation_seed = std::nullopt) {
    detail::require(res.converged(), "optimum_point: result", "the closed-form solver did not converge");
    detail::require(S.num_labels() == res.K(), "optimum_point: labels",
                    "K = " + std::to_string(S.num_labels()) + " differs from the result's K = " + std::to_string(res.K()));
    detail::require(!S.empty(), "optimum_point: labels", "no samples");
    const per_multiplicity<double>& C = res->C;
    ufm_point<T> pt;
    pt.W = simplex_etf<T>(res.K(), d, static_cast<T>(res->w_norm), rotation_seed);
    pt.H.resize(d, S.size());
    pt.b = vector<T>::Zero(res.K());
    for (index_t i = 0; i < S.size(); ++i) {
        const index_t m = S.multiplicity(i);
        detail::require(C.contains(m), "optimum_point: labels",
                        "sample " + std::to_string(i) + " has multiplicity " + std::to_string(m) +
                            ", which has no samples (n_m = 0) in the result");
        auto h = pt.H.col(i);
        h.setZero();
        for (label_t k : S[i]) h += pt.W.row(k).transpose();
        h *= static_cast<T>(C.at(m));
    }
    return pt;
}

}  // namespace mlnc

// mlnc::precompiled: these instances are compiled once, into the library, and only declared here.
#if MLNC_PRECOMPILED
#if defined(MLNC_INSTANTIATE_OPTIMUM)
#define MLNC_INSTANCE template
#else
#define MLNC_INSTANCE extern template
#endif
namespace mlnc {
MLNC_INSTANCE optimum_result global_optimum<double>(index_t, const multiplicity_counts&, const penalties&,
                                                   const optimum_options&);
MLNC_INSTANCE optimum_result optimum_by_system44<double>(index_t, const multiplicity_counts&, const penalties&,
                                                        const optimum_options&);
MLNC_INSTANCE ufm_point<float> optimum_point<float>(const optimum_result&, const label_sets&, index_t,
                                                   std::optional<std::uint64_t>);
MLNC_INSTANCE ufm_point<double> optimum_point<double>(const optimum_result&, const label_sets&, index_t,
                                                     std::optional<std::uint64_t>);
}  // namespace mlnc
#undef MLNC_INSTANCE
#endif
