#pragma once
// The unconstrained-features-model (UFM) trainer: full-batch minimisation of Problem (4),
//   f(W, H, b) = (1/N) sum_i L_PAL(W h_i + b, S_i) + lW ||W||_F^2 + lH ||H||_F^2 + lb ||b||^2,
// over W (K x d), H (d x N) and b (K) from a seeded random start or a given point (a warm start,
// a checkpoint), by L-BFGS (two passes over memory per iteration, detail/lbfgs.hpp) or by gradient descent with momentum and an Armijo
// line search, on the flat objective of objective.hpp. Optionally W is held fixed (at a simplex
// ETF) and only (H, b) are trained; dW is then never formed. The library never prints: progress
// goes to an optional observer, which can also stop the run (the result is kept). See docs/ufm.md.

#include <mlnc/detail/exception_fence.hpp>
#include <mlnc/detail/lbfgs.hpp>
#include <mlnc/detail/memory.hpp>
#include <mlnc/detail/random.hpp>
#include <mlnc/error.hpp>
#include <mlnc/etf.hpp>
#include <mlnc/labels.hpp>
#include <mlnc/objective.hpp>
#include <mlnc/types.hpp>

#include <Eigen/Core>

#include <mlnc/detail/lbfgspp.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace mlnc {

enum class ufm_method {
    lbfgs,  // L-BFGS (detail/lbfgs.hpp) with the line search of ufm_options::line_search
    gd,     // gradient descent with heavy-ball momentum and Armijo backtracking
};

// Line searches for L-BFGS. approximate_wolfe is mlnc's own; the others are LBFGSpp's.
enum class ufm_line_search {
    approximate_wolfe,          // strong Wolfe, with Hager-Zhang's approximate Wolfe test near rounding
    backtracking_armijo,        // LBFGSpp::LineSearchBacktracking, Armijo only
    backtracking_strong_wolfe,  // LBFGSpp::LineSearchBacktracking, strong Wolfe
    nocedal_wright,             // LBFGSpp::LineSearchNocedalWright (bracketing + zoom, strong Wolfe)
};

enum class ufm_status {
    converged_gradient,         // ||grad f|| <= gradient_tolerance * max(1, |f|)
    converged_relative_change,  // |f_k - f_{k-1}| <= relative_tolerance * max(1, |f_k|)
    max_iterations,             // max_iterations reached
    line_search_failed,         // no acceptable step even from a fresh restart (usually the rounding floor)
    non_finite,                 // the objective or its gradient is NaN/Inf at the starting point
    stopped_by_observer,        // the observer returned ufm_action::stop
};

inline const char* to_string(ufm_status s) noexcept {
    switch (s) {
        case ufm_status::converged_gradient: return "converged_gradient";
        case ufm_status::converged_relative_change: return "converged_relative_change";
        case ufm_status::max_iterations: return "max_iterations";
        case ufm_status::line_search_failed: return "line_search_failed";
        case ufm_status::non_finite: return "non_finite";
        case ufm_status::stopped_by_observer: return "stopped_by_observer";
    }
    return "unknown";
}

struct ufm_options {
    ufm_method method = ufm_method::lbfgs;
    int max_iterations = 10000;        // accepted iterates, over all restarts; 0 = evaluate the start only
    double gradient_tolerance = 1e-12;  // stop when ||grad f||_2 <= tol * max(1, |f|)
    double relative_tolerance = 0.0;   // stop when |f_k - f_{k-1}| <= tol * max(1, |f_k|); 0 = off
    int history_every = 10;            // history entry + observer call every this many iterations
    std::uint64_t seed = 0;            // seeds the random start (and the fixed ETF)
    double init_scale = 0.1;           // standard deviation of the Gaussian start entries
    // W held fixed, only H and b trained: at a simplex ETF with rows of norm etf_row_norm (random
    // start), or at the start's W (warm start).
    bool fix_classifier_to_etf = false;
    double etf_row_norm = 1.0;
    pal_variant variant = pal_variant::pal;

    // Line searches (both methods).
    int max_line_search = 40;  // objective evaluations per line search
    double armijo = 1e-4;      // sufficient-decrease constant c1, in (0, 1/2)
    // L-BFGS.
    // Correction pairs kept. Each iteration streams the 2 m stored vectors (each of x's size) twice;
    // on the UFM the iteration count did not fall with more pairs (mlnc verify at K = 200, seeds
    // 1-3, m = 2..5: 237-301 iterations without a trend, docs/performance.md), so few pairs.
    int lbfgs_memory = 3;
    ufm_line_search line_search = ufm_line_search::approximate_wolfe;
    double wolfe = 0.9;  // curvature constant c2, in (c1, 1)
    // Gradient descent.
    double learning_rate = 1.0;  // first trial step
    double momentum = 0.9;       // heavy-ball coefficient beta in [0, 1)
    double backtrack = 0.5;      // step shrink factor in (0, 1)
    double step_growth = 2.0;    // next trial step = step_growth * last accepted step, >= 1
};

struct ufm_history_entry {
    int iteration = 0;
    double objective = 0;
    double gradient_norm = 0;
    double seconds = 0;  // since the start of train_ufm, time spent in the observer excluded
};

template <class T>
struct ufm_result {
    matrix<T> W, H;
    vector<T> b;
    ufm_status status = ufm_status::max_iterations;
    int iterations = 0;     // accepted iterates
    double objective = 0;   // f at the returned point
    double gradient_norm = 0;  // ||grad f||_2 there (over the trained variables only)
    std::vector<ufm_history_entry> history;
    double seconds = 0;
    int function_evaluations = 0;  // objective + gradient evaluations, all included
    int restarts = 0;              // L-BFGS restarts after line-search failures
};

// What an observer tells the trainer.
enum class ufm_action { proceed, stop };

// Called at every history entry with the current iterate; W, H, b view the trainer's memory and
// are valid only during the call. Returning ufm_action::stop ends the run with status
// stopped_by_observer and this iterate as the result. train_ufm also accepts a callable that
// returns void (it never stops the run).
template <class T>
using ufm_observer = std::function<ufm_action(const ufm_history_entry&, const Eigen::Ref<const matrix<T>>& W,
                                              const Eigen::Ref<const matrix<T>>& H, const Eigen::Ref<const vector<T>>& b)>;

namespace detail {

// How the per-iteration hook ends a run (out of the line search and the solver's loop). It does
// not derive from std::exception, so nothing else catches it.
struct ufm_stop {
    ufm_status status;
};
// How mlnc's own line search says it found no acceptable step (a numerical outcome).
struct line_search_failure {
    const char* why;
};

inline void check_ufm_options(const ufm_options& o) {
    const auto fin = [](double v) { return std::isfinite(v); };
    const auto num = [](double v) { return std::to_string(v); };
    require(o.method == ufm_method::lbfgs || o.method == ufm_method::gd, "method",
            "unknown value " + std::to_string(static_cast<int>(o.method)));
    require(o.line_search >= ufm_line_search::approximate_wolfe && o.line_search <= ufm_line_search::nocedal_wright,
            "line_search", "unknown value " + std::to_string(static_cast<int>(o.line_search)));
    require(o.variant == pal_variant::pal || o.variant == pal_variant::pal_n, "variant",
            "unknown value " + std::to_string(static_cast<int>(o.variant)));
    require(o.max_iterations >= 0, "max_iterations", "must be >= 0, got " + std::to_string(o.max_iterations));
    require(fin(o.gradient_tolerance) && o.gradient_tolerance >= 0, "gradient_tolerance",
            "must be finite and >= 0, got " + num(o.gradient_tolerance));
    require(fin(o.relative_tolerance) && o.relative_tolerance >= 0, "relative_tolerance",
            "must be finite and >= 0, got " + num(o.relative_tolerance));
    require(o.history_every >= 1, "history_every", "must be >= 1, got " + std::to_string(o.history_every));
    require(fin(o.init_scale) && o.init_scale > 0, "init_scale", "must be finite and > 0, got " + num(o.init_scale));
    if (o.fix_classifier_to_etf)
        require(fin(o.etf_row_norm) && o.etf_row_norm > 0, "etf_row_norm",
                "must be finite and > 0, got " + num(o.etf_row_norm));
    require(o.max_line_search >= 1, "max_line_search", "must be >= 1, got " + std::to_string(o.max_line_search));
    require(o.armijo > 0 && o.armijo < 0.5, "armijo", "must be in (0, 0.5), got " + num(o.armijo));
    if (o.method == ufm_method::lbfgs) {
        require(o.lbfgs_memory >= 1, "lbfgs_memory", "must be >= 1, got " + std::to_string(o.lbfgs_memory));
        require(o.wolfe > o.armijo && o.wolfe < 1, "wolfe", "must be in (armijo, 1), got " + num(o.wolfe));
    } else {
        require(fin(o.learning_rate) && o.learning_rate > 0, "learning_rate",
                "must be finite and > 0, got " + num(o.learning_rate));
        require(o.momentum >= 0 && o.momentum < 1, "momentum", "must be in [0, 1), got " + num(o.momentum));
        require(o.backtrack > 0 && o.backtrack < 1, "backtrack", "must be in (0, 1), got " + num(o.backtrack));
        require(fin(o.step_growth) && o.step_growth >= 1, "step_growth",
                "must be finite and >= 1, got " + num(o.step_growth));
    }
}

// The flat objective (ufm_objective) plus the bookkeeping of a run: iteration count, history,
// observer calls and the stopping rules (checked at every accepted iterate), in the f(x, grad)
// form LBFGSpp expects.
template <class T, class B>
class ufm_problem {
public:
    using vec = vector<T>;

    ufm_problem(ufm_objective<T, B> objective, const ufm_options& o, ufm_observer<T> obs)
        : obj_(std::move(objective)), opt_(o), observer_(std::move(obs)), start_(std::chrono::steady_clock::now()) {}

    Eigen::Index size() const noexcept { return obj_.size(); }
    ufm_line_search line_search() const noexcept { return opt_.line_search; }
    // Threads of the optimiser's host vector operations: the CPU backend's; all of them (0) when
    // the objective runs on a device and only the optimiser's vectors are on the host.
    int threads() const noexcept {
        if constexpr (std::is_same_v<B, cpu>) return obj_.objective().backend_value().threads;
        else return 0;
    }

    Eigen::Map<const matrix<T>> W(const vec& x) const { return obj_.W(x); }
    Eigen::Map<const matrix<T>> H(const vec& x) const { return obj_.H(x); }
    Eigen::Map<const vector<T>> b(const vec& x) const { return obj_.b(x); }

    // f(x) and its gradient. A trial point that left the range of T, or whose logits overflow,
    // gets f = +inf and a NaN gradient (ufm_objective): every line search treats that as a step
    // too long. Any exception (std::bad_alloc, a device failure, a bug) passes the solver's
    // handlers through the fence and is rethrown by train_ufm.
    T operator()(const vec& x, vec& grad) {
        return fence_([&]() -> T {
            ++evaluations_;
            return obj_(x, grad);
        });
    }

    // An evaluation by other means (a method that keeps its vectors on the device calls the
    // objective's device form through this): counted and fenced as operator() is.
    template <class F>
    T evaluate_with(F&& f) {
        return fence_([&]() -> T {
            ++evaluations_;
            return f(obj_);
        });
    }

    const exception_fence& fence() const noexcept { return fence_; }
    ufm_objective<T, B>& function() noexcept { return obj_; }

    // The starting point (iteration 0): records it and applies the stopping rules.
    void start(const vec& x, T fx, const vec& grad) {
        accept([&]() -> const vec& { return x; }, fx, parallel_norm(threads(), grad), false);
    }

    // Called after every accepted step with ||grad||. Throws ufm_stop when a stopping rule fires.
    void on_iteration(const vec& x, T fx, double grad_norm) {
        on_iteration_from([&]() -> const vec& { return x; }, fx, grad_norm);
    }
    // The same for an iterate held elsewhere (device memory): host_x() returns it in host memory
    // and is called only when an observer is to see it.
    template <class HostX>
    void on_iteration_from(HostX&& host_x, T fx, double grad_norm) {
        ++iterations_;
        ++since_restart_;
        accept(host_x, fx, grad_norm, true);
    }

    void restarted() noexcept { since_restart_ = 0; }
    int since_restart() const noexcept { return since_restart_; }

    // The final history entry and observer call, unless the last iterate was already recorded.
    void finish(const vec& x) {
        if (history_.empty() || history_.back().iteration != iterations_) (void)record([&]() -> const vec& { return x; });
    }

    int iterations() const noexcept { return iterations_; }
    int evaluations() const noexcept { return evaluations_; }
    double objective() const noexcept { return f_; }
    double gradient_norm() const noexcept { return gnorm_; }
    double seconds() const {
        return std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count() - observer_seconds_;
    }
    std::vector<ufm_history_entry>& history() noexcept { return history_; }

private:
    template <class HostX>
    void accept(HostX&& host_x, T fx, double grad_norm, bool is_step) {
        const double f_prev = f_;
        f_ = static_cast<double>(fx);
        gnorm_ = grad_norm;
        if (iterations_ % opt_.history_every == 0 && record(host_x) == ufm_action::stop)
            throw ufm_stop{ufm_status::stopped_by_observer};
        if (!std::isfinite(f_) || !std::isfinite(gnorm_)) throw ufm_stop{ufm_status::non_finite};
        const double scale = std::max(1.0, std::abs(f_));
        if (gnorm_ <= opt_.gradient_tolerance * scale) throw ufm_stop{ufm_status::converged_gradient};
        if (is_step && opt_.relative_tolerance > 0 && std::abs(f_ - f_prev) <= opt_.relative_tolerance * scale)
            throw ufm_stop{ufm_status::converged_relative_change};
        if (iterations_ >= opt_.max_iterations) throw ufm_stop{ufm_status::max_iterations};
    }

    template <class HostX>
    ufm_action record(HostX&& host_x) {
        history_.push_back({iterations_, f_, gnorm_, seconds()});
        if (!observer_) return ufm_action::proceed;
        const vec& x = host_x();
        const auto t0 = std::chrono::steady_clock::now();
        const ufm_action a = observer_(history_.back(), W(x), H(x), b(x));
        observer_seconds_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        return a;
    }

    ufm_objective<T, B> obj_;
    const ufm_options& opt_;
    ufm_observer<T> observer_;
    std::chrono::steady_clock::time_point start_;
    double observer_seconds_ = 0;
    std::vector<ufm_history_entry> history_;
    exception_fence fence_;
    int iterations_ = 0, since_restart_ = 0, evaluations_ = 0;
    double f_ = 0, gnorm_ = 0;
};

// Line search for L-BFGS in LBFGSpp's interface. Accepts a step a along drt from xp when
//   |phi'(a)| <= c2 |phi'(0)|                (strong Wolfe curvature), and
//   phi(a) <= phi(0) + c1 a phi'(0)          (Armijo), or, where that demanded decrease
//                                            c1 a |phi'(0)| is below 100 eps_f, the approximate
//   phi(a) <= phi(0) + eps_f                 test, eps_f = 16 u max(1, |phi(0)|).
// Near a minimiser f changes by less than its rounding error while the gradient is still far
// from its own rounding floor; Armijo tests on f then fail at random and stall L-BFGS around
// ||grad|| ~ sqrt(u |f| mu). The approximate test (Hager and Zhang, 2005) trusts the derivative
// there, which lets L-BFGS drive the gradient down to its own rounding level.
// The bracket [lo, hi] is found by 4x expansion and shrunk by secant steps on phi' (exact for
// quadratics), with bisection whenever a secant step fails to shrink it by 30%.
// The threads a function object offers for vector operations (its threads(), else 1).
template <class F>
int threads_of(const F& f) {
    if constexpr (requires { f.threads(); }) return f.threads();
    else return 1;
}

template <class Scalar>
class approximate_wolfe_line_search {
    using Vector = Eigen::Matrix<Scalar, Eigen::Dynamic, 1>;

public:
    template <class Foo>
    static void LineSearch(Foo& f, Scalar& fx, Vector& x, Vector& grad, Scalar& step, const Vector& drt,
                           const Vector& xp, const LBFGSpp::LBFGSParam<Scalar>& param) {
        search(f, fx, x, grad, step, drt, xp, param, static_cast<Scalar>(parallel_dot(threads_of(f), grad, drt)));
    }

    // The same with phi'(0) = g0 given (L-BFGS knows it from its inner products); grad is only
    // written (the gradient at the returned x), its contents on entry are not used.
    template <class Foo>
    static void search(Foo& f, Scalar& fx, Vector& x, Vector& grad, Scalar& step, const Vector& drt, const Vector& xp,
                       const LBFGSpp::LBFGSParam<Scalar>& param, const Scalar g0) {
        const int nt = threads_of(f);
        const Scalar f0 = fx;
        if (!(g0 < 0)) throw line_search_failure{"the search direction is not a descent direction"};
        if (!(step > 0)) throw line_search_failure{"the initial step must be positive"};
        const Scalar u = std::numeric_limits<Scalar>::epsilon();
        const Scalar eps_f = Scalar(16) * u * std::max(Scalar(1), std::abs(f0));
        const Scalar c1 = param.ftol, c2 = param.wolfe;

        // Armijo, or the approximate test where Armijo's demand is at the rounding level of f.
        const auto low_enough = [&](Scalar a, Scalar fa) {
            const Scalar wanted = c1 * a * g0;  // <= 0
            return fa <= f0 + wanted || (-wanted <= Scalar(100) * eps_f && fa <= f0 + eps_f);
        };

        Scalar lo = 0, g_lo = g0;
        Scalar hi = std::numeric_limits<Scalar>::infinity(), g_hi = 0;
        Scalar last_width = std::numeric_limits<Scalar>::infinity();
        Scalar a = std::min(step, param.max_step);
        for (int it = 0; it < param.max_linesearch; ++it) {
            parallel_step(nt, x, xp, a, drt);
            fx = f(x, grad);
            const auto ga = static_cast<Scalar>(parallel_dot(nt, grad, drt));
            const bool usable = std::isfinite(fx) && std::isfinite(ga) && low_enough(a, fx);
            if (usable && std::abs(ga) <= -c2 * g0) {
                step = a;
                return;
            }
            // lo: low enough and still descending (a minimiser lies beyond it); hi: past one.
            if (usable && ga < 0) {
                lo = a;
                g_lo = ga;
            } else {
                hi = a;
                g_hi = std::isfinite(ga) ? ga : Scalar(-1);  // g_hi <= 0: bisect, not secant
            }
            if (std::isinf(hi)) {
                if (a >= param.max_step) throw line_search_failure{"the line search step reached max_step"};
                a = std::min(Scalar(4) * a, param.max_step);
                continue;
            }
            const Scalar width = hi - lo;
            if (width <= u * hi || hi < param.min_step)
                throw line_search_failure{"the line search bracket collapsed (rounding floor)"};
            // Secant on phi' while it shrinks the bracket well; otherwise one bisection, so the
            // width at least halves every two steps.
            Scalar next = lo + width / 2;
            if (g_hi > 0 && width < Scalar(0.7) * last_width) {
                const Scalar secant = lo - g_lo * width / (g_hi - g_lo);
                next = std::clamp(secant, lo + width / 100, hi - width / 100);
            }
            last_width = width;
            a = next;
        }
        throw line_search_failure{"the line search reached max_line_search evaluations"};
    }
};

// One line search of the kind chosen in ufm_options (read from the problem at run time) along
// drt from xp, where f = fx, the gradient is gp and its slope along drt is g0. true when it found
// a step that does not raise f (x, fx, grad: the new iterate); false when it failed (x, fx, grad:
// garbage). grad's contents on entry are not used. Exceptions from the objective cannot arrive
// here: its fence turns them into solver_aborted.
template <class Problem, class T>
bool line_search_step(Problem& f, T& fx, vector<T>& x, vector<T>& grad, const vector<T>& gp, T& step,
                      const vector<T>& drt, const vector<T>& xp, const LBFGSpp::LBFGSParam<T>& param, T g0) {
    const T f0 = fx;
    try {
        if (f.line_search() != ufm_line_search::approximate_wolfe)  // LBFGSpp's read the gradient in grad
            parallel_step(threads_of(f), grad, gp, T(0), gp);
        switch (f.line_search()) {
            case ufm_line_search::approximate_wolfe:
                approximate_wolfe_line_search<T>::search(f, fx, x, grad, step, drt, xp, param, g0);
                break;
            case ufm_line_search::backtracking_armijo:  // param.linesearch says which test
            case ufm_line_search::backtracking_strong_wolfe:
                LBFGSpp::LineSearchBacktracking<T>::LineSearch(f, fx, x, grad, step, drt, xp, param);
                break;
            case ufm_line_search::nocedal_wright:
                LBFGSpp::LineSearchNocedalWright<T>::LineSearch(f, fx, x, grad, step, drt, xp, param);
                break;
        }
    } catch (const line_search_failure&) {
        return false;
    } catch (const std::runtime_error&) {  // LBFGSpp's searches report their failures so
        return false;
    } catch (const std::logic_error&) {
        return false;
    }
    // LBFGSpp's searches demand a decrease (Armijo), but 0.1.0's Nocedal-Wright search returns its
    // last trial, whatever it is, when it runs out of evaluations: accept only a decrease from
    // them. mlnc's own search may accept f within its rounding (16 u |f|) of f0, trusting phi'.
    if (!std::isfinite(fx)) return false;
    if (f.line_search() != ufm_line_search::approximate_wolfe) return fx < f0;
    return fx <= f0 + T(16) * std::numeric_limits<T>::epsilon() * std::max(T(1), std::abs(f0));
}

// L-BFGS iterations from the evaluated point (x, fx, grad) with an empty memory (the first step
// along -grad, of length 1), reporting every accepted iterate to f.on_iteration, which ends the
// run by throwing (ufm_stop). Returns when a line search fails, with (x, fx, grad) the last
// accepted iterate. xp, gp and d are work vectors.
template <class Problem, class T>
void lbfgs_iterate(Problem& f, vector<T>& x, T& fx, vector<T>& grad, const LBFGSpp::LBFGSParam<T>& param,
                   lbfgs_memory<T>& memory, vector<T>& xp, vector<T>& gp, vector<T>& d) {
    const int nt = threads_of(f);
    T g0 = 0;  // grad.d: the slope of the next line search at its start
    const auto steepest = [&] {
        parallel_step(nt, d, grad, T(-2), grad);  // d = -grad
        const double norm = parallel_norm(nt, d);
        g0 = static_cast<T>(-norm * norm);
        return static_cast<T>(1 / norm);
    };
    memory.clear();
    T step = steepest();
    for (;;) {
        x.swap(xp);
        grad.swap(gp);  // gp: the gradient at xp; grad: where the search writes the next one
        const T fp = fx;
        if (!line_search_step(f, fx, x, grad, gp, step, d, xp, param, g0)) {
            x.swap(xp);
            grad.swap(gp);
            fx = fp;
            return;
        }
        // The memory's pass also gives ||grad||; a refused pair leaves the memory usable.
        const bool kept = memory.push(x, xp, grad, gp);
        const double gnorm = std::sqrt(memory.gradient_squared_norm());
        if (!std::isfinite(gnorm)) {  // a NaN gradient with a finite f: nothing to follow
            x.swap(xp);
            grad.swap(gp);
            fx = fp;
            return;  // the restart clears the memory
        }
        f.on_iteration(x, fx, gnorm);
        if (kept || memory.size() > 0) {
            g0 = static_cast<T>(memory.direction(grad, d));
            step = T(1);
        } else {
            step = steepest();
        }
    }
}

// L-BFGS (detail/lbfgs.hpp for the memory, LBFGSpp's parameters and line searches); the problem's
// hook decides when to stop. After a line-search failure the run restarts from the last accepted
// iterate with an empty memory (a steepest-descent step): a stale curvature pair is the usual
// cause far from the solution. The run ends (line_search_failed) when a failure comes before the
// objective has decreased by more than 16 roundoffs since the last (re)start.
template <class T, class B>
ufm_status run_lbfgs(ufm_problem<T, B>& problem, vector<T>& x, T fx, vector<T>& grad, const ufm_options& o,
                     int& restarts) {
    LBFGSpp::LBFGSParam<T> param;
    param.m = o.lbfgs_memory;
    param.linesearch = o.line_search == ufm_line_search::backtracking_armijo
                           ? LBFGSpp::LBFGS_LINESEARCH_BACKTRACKING_ARMIJO
                           : LBFGSpp::LBFGS_LINESEARCH_BACKTRACKING_STRONG_WOLFE;
    param.max_linesearch = o.max_line_search;
    param.ftol = static_cast<T>(o.armijo);
    param.wolfe = static_cast<T>(o.wolfe);
    const index_t n = x.size();
    lbfgs_memory<T> memory(n, o.lbfgs_memory, problem.threads());
    vector<T> xp(n), gp(n), d(n);
    for (;;) {
        problem.restarted();
        const double f_start = problem.objective();
        try {
            lbfgs_iterate(problem, x, fx, grad, param, memory, xp, gp, d);
        } catch (const ufm_stop& s) {
            return s.status;
        }
        // Restart only after real progress: a run of steps that gained no more than the
        // rounding of f would just repeat at the floor.
        const double floor = 16 * std::numeric_limits<T>::epsilon() * std::max(1.0, std::abs(f_start));
        if (problem.since_restart() == 0 || !(problem.objective() < f_start - floor))
            return ufm_status::line_search_failed;
        ++restarts;
    }
}

// Gradient descent with heavy-ball momentum: direction d_k = -g_k + beta d_{k-1} (reset to -g_k
// when it is not a descent direction), step by Armijo backtracking from step_growth times the
// last accepted step. No accepted step increases f: the Armijo bound f + c1 a g.d is <= f as computed.
template <class T, class B>
ufm_status run_gd(ufm_problem<T, B>& problem, vector<T>& x, T fx, vector<T>& g, const ufm_options& o) {
    const Eigen::Index n = x.size();
    vector<T> dir(n), x_new(n), g_new(n);
    double step = o.learning_rate;
    // Armijo backtracking along dir from the trial step; true (and x_new, g_new, fx, step
    // updated) when a step is accepted.
    const auto search = [&](T gd) {
        double a = step;
        for (int it = 0; it < o.max_line_search; ++it, a *= o.backtrack) {
            x_new.noalias() = x + static_cast<T>(a) * dir;
            const T f_new = problem(x_new, g_new);
            if (std::isfinite(f_new) && f_new <= fx + static_cast<T>(o.armijo * a) * gd) {
                step = a * o.step_growth;
                fx = f_new;
                return true;
            }
        }
        return false;
    };
    bool momentum = false;  // the first direction is -g
    try {
        for (;;) {
            if (momentum) dir = -g + static_cast<T>(o.momentum) * dir;
            else dir = -g;
            T gd = g.dot(dir);
            if (momentum && !(gd < 0)) {
                dir = -g;
                gd = -g.squaredNorm();
                momentum = false;
            }
            bool accepted = search(gd);
            if (!accepted && momentum) {  // the momentum direction failed: retry along -g alone
                dir = -g;
                accepted = search(-g.squaredNorm());
            }
            if (!accepted) return ufm_status::line_search_failed;
            x.swap(x_new);
            g.swap(g_new);
            problem.on_iteration(x, fx, parallel_norm(problem.threads(), g));
            momentum = o.momentum > 0;
        }
    } catch (const ufm_stop& s) {
        return s.status;
    }
}

template <class T, class B>
ufm_result<T> unpack(ufm_problem<T, B>& problem, const vector<T>& x, ufm_status status, int restarts) {
    problem.finish(x);
    ufm_result<T> r;
    r.W = problem.W(x);
    r.H = problem.H(x);
    r.b = problem.b(x);
    r.status = status;
    r.iterations = problem.iterations();
    r.objective = problem.objective();
    r.gradient_norm = problem.gradient_norm();
    r.history = std::move(problem.history());
    r.seconds = problem.seconds();
    r.function_evaluations = problem.evaluations();
    r.restarts = restarts;
    return r;
}

// How gradient descent runs on backend B: over host vectors (run_gd), unless the backend keeps the
// method's vectors in its own memory (<mlnc/cuda/ufm.cuh> specialises this for mlnc::cuda).
template <class T, class B>
struct gd_method {
    static ufm_status run(ufm_problem<T, B>& problem, vector<T>& x, T fx, vector<T>& g, const ufm_options& o) {
        return run_gd(problem, x, fx, g, o);
    }
};

// Whether train_ufm can run on backend B in this translation unit: a host backend always; the
// CUDA backend where <mlnc/cuda/ufm.cuh> is included (it specialises this for mlnc::cuda).
template <class B>
struct trains_here : std::bool_constant<backend_traits<B>::host_memory> {};

// The run from the evaluated start x: the stopping rules at iteration 0, then the method.
template <class T, class B>
ufm_result<T> run_from_start(ufm_problem<T, B>& problem, vector<T>& x, vector<T>& grad, const ufm_options& options) {
    const T f0 = problem(x, grad);
    int restarts = 0;
    try {
        problem.start(x, f0, grad);
    } catch (const ufm_stop& s) {
        return unpack(problem, x, s.status, restarts);
    }

    ufm_status status = ufm_status::line_search_failed;
    if (options.method == ufm_method::gd) status = gd_method<T, B>::run(problem, x, f0, grad, options);
    else status = run_lbfgs(problem, x, f0, grad, options, restarts);
    return unpack(problem, x, status, restarts);
}

}  // namespace detail

namespace detail {

// Any callable observer as a ufm_observer: one that returns void never stops the run.
template <class T, class Obs>
ufm_observer<T> as_observer(Obs&& obs) {
    using W = const Eigen::Ref<const matrix<T>>&;
    using V = const Eigen::Ref<const vector<T>>&;
    if constexpr (std::is_same_v<std::remove_cvref_t<Obs>, ufm_observer<T>>) {
        return std::forward<Obs>(obs);
    } else if constexpr (std::is_same_v<std::remove_cvref_t<Obs>, std::nullptr_t>) {
        return {};
    } else {
        static_assert(std::is_invocable_v<Obs&, const ufm_history_entry&, W, W, V>,
                      "mlnc: an observer is called as obs(const ufm_history_entry&, W, H, b)");
        using R = std::invoke_result_t<Obs&, const ufm_history_entry&, W, W, V>;
        static_assert(std::is_void_v<R> || std::is_same_v<R, ufm_action>,
                      "mlnc: an observer returns void or mlnc::ufm_action");
        if constexpr (std::is_void_v<R>)
            return [o = std::forward<Obs>(obs)](const ufm_history_entry& e, W w, W h, V b) mutable {
                o(e, w, h, b);
                return ufm_action::proceed;
            };
        else
            return ufm_observer<T>(std::forward<Obs>(obs));
    }
}

template <class T, class B>
void check_training(const B& be, const label_sets& S, const penalties& lambdas, const ufm_options& options) {
    static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>, "mlnc: train_ufm is for float and double");
    check_backend<B>();
    if constexpr (available_backend<B>) {
        static_assert(trains_here<std::remove_cvref_t<B>>::value,
                      "mlnc: train_ufm on the CUDA backend takes the context value mlnc::cuda{device, stream} and "
                      "needs <mlnc/cuda/ufm.cuh>, included in a file compiled by nvcc; or use mlnc::cpu");
        if constexpr (backend_traits<std::remove_cvref_t<B>>::host_memory) check_pal_backend<B, T>();
    }
    check_backend_value(be);
    require(!S.empty(), "labels", "no samples");
    check_penalties(lambdas);
    check_ufm_options(options);
}

// What a run holds in host memory: the objective's logits workspace (chunked: at most its byte
// budget, one column always), the parameters and the vectors of the method (L-BFGS: 2 m
// correction vectors and about 8 more of the parameters' size), W once more for the result (twice
// in fixed mode: the fixed W and the result's copy), and the objective's copy of the labels. A
// device backend holds the logits on the device, and its gradient descent all of its vectors
// but x and the gradient.
template <class T, class B>
void require_training_memory(const label_sets& S, index_t d, const ufm_options& options) {
    constexpr bool host = backend_traits<B>::host_memory;
    const double N = static_cast<double>(S.size()), K = static_cast<double>(S.num_labels()), dd = static_cast<double>(d);
    const double params = (options.fix_classifier_to_etf ? 0.0 : K * dd) + dd * N + K;
    const double vectors = options.method == ufm_method::lbfgs ? 2.0 * options.lbfgs_memory + 8.0 : (host ? 8.0 : 2.0);
    const double logits = host ? std::min(K * N, std::max(K, static_cast<double>(default_workspace_bytes / sizeof(T)))) : 0.0;
    const double extra_w = (options.fix_classifier_to_etf ? 2.0 : 1.0) * K * dd;
    const double labels = (N + 1) * sizeof(index_t) + static_cast<double>(S.indices().size()) * sizeof(label_t);
    require_memory(sizeof(T) * (logits + extra_w + vectors * params) + labels, "train_ufm",
                   "K = " + std::to_string(S.num_labels()) + ", d = " + std::to_string(d) + ", N = " +
                       std::to_string(S.size()) + ": logits, parameters and the optimiser's vectors");
}

template <class T, class B>
ufm_result<T> run_training(ufm_objective<T, B> objective, vector<T> x, const ufm_options& options,
                           ufm_observer<T> observer) {
    ufm_problem<T, B> problem(std::move(objective), options, std::move(observer));
    vector<T> grad(x.size());
    try {
        return run_from_start(problem, x, grad, options);
    } catch (const solver_aborted&) {
        problem.fence().rethrow();
    }
}

}  // namespace detail

// Minimises Problem (4) for the label sets S in feature dimension d from a random start: W, H, b
// with i.i.d. N(0, init_scale^2) entries drawn in that order (column-major) from
// mt19937_64(seed); with fix_classifier_to_etf, W = simplex_etf(K, d, etf_row_norm, seed) instead
// and is never changed. The scalar T is the first template argument (default double); the
// backend is the first argument (omitted: cpu{}).
// Non-convergence is reported in the status, never thrown; bad arguments throw mlnc::error; any
// other exception (from the objective, the observer or an allocation) propagates unchanged.
template <class T = double, backend B, class Obs = std::nullptr_t>
ufm_result<T> train_ufm(const B& be, const label_sets& S, index_t d, const penalties& lambdas,
                        const ufm_options& options, Obs&& observer = nullptr) {
    detail::check_training<T>(be, S, lambdas, options);
    detail::require(d >= 1, "d", "feature dimension must be >= 1, got " + std::to_string(d));
    const index_t K = S.num_labels();
    if (options.fix_classifier_to_etf)
        detail::require(d >= K - 1, "d",
                        "a fixed simplex-ETF classifier needs d >= K - 1 = " + std::to_string(K - 1) + ", got " +
                            std::to_string(d));
    detail::require_training_memory<T, B>(S, d, options);

    auto objective = options.fix_classifier_to_etf
                         ? ufm_objective<T, B>(be, S, simplex_etf<T>(K, d, static_cast<T>(options.etf_row_norm), options.seed),
                                               lambdas, options.variant)
                         : ufm_objective<T, B>(be, S, d, lambdas, options.variant);
    // W's draws are made (and discarded in fixed-ETF mode) so that a seed gives the same H and b
    // in both modes.
    detail::gaussian_stream gauss(options.seed);
    vector<T> x(objective.size());
    Eigen::Index pos = 0;
    for (index_t j = 0; j < K * d; ++j) {
        const T v = static_cast<T>(options.init_scale * gauss());
        if (!options.fix_classifier_to_etf) x[pos++] = v;
    }
    for (; pos < x.size(); ++pos) x[pos] = static_cast<T>(options.init_scale * gauss());
    return detail::run_training(std::move(objective), std::move(x), options,
                                detail::as_observer<T>(std::forward<Obs>(observer)));
}
template <class T = double, class Obs = std::nullptr_t>
ufm_result<T> train_ufm(const label_sets& S, index_t d, const penalties& lambdas, const ufm_options& options,
                        Obs&& observer = nullptr) {
    return train_ufm<T>(default_backend, S, d, lambdas, options, std::forward<Obs>(observer));
}

// The same from a given point (a warm start, a checkpoint, a perturbed optimum): d = start.W.cols().
// With fix_classifier_to_etf, W is held fixed at start.W (pass simplex_etf(...) or the W of a
// fixed-classifier checkpoint) and only H and b are trained. seed and init_scale are not used.
template <backend B, class T, class Obs = std::nullptr_t>
ufm_result<T> train_ufm(const B& be, const label_sets& S, const penalties& lambdas, const ufm_point<T>& start,
                        const ufm_options& options, Obs&& observer = nullptr) {
    detail::check_training<T>(be, S, lambdas, options);
    const index_t K = S.num_labels(), d = start.W.cols();
    detail::require(d >= 1, "start.W", "needs at least one column (the feature dimension d)");
    detail::check_shape(start.W, K, d, "start.W", "K x d");
    detail::check_shape(start.H, d, S.size(), "start.H", "d x N, d = columns of start.W");
    detail::require(start.b.size() == K, "start.b", "expected " + std::to_string(K) + " entries, got " +
                                                       std::to_string(start.b.size()));
    detail::check_finite(start.W, "start.W");
    detail::check_finite(start.H, "start.H");
    detail::check_finite(start.b, "start.b");
    detail::require_training_memory<T, B>(S, d, options);
    auto objective = options.fix_classifier_to_etf ? ufm_objective<T, B>(be, S, start.W, lambdas, options.variant)
                                                   : ufm_objective<T, B>(be, S, d, lambdas, options.variant);
    vector<T> x = objective.pack(start);
    return detail::run_training(std::move(objective), std::move(x), options,
                                detail::as_observer<T>(std::forward<Obs>(observer)));
}
template <class T, class Obs = std::nullptr_t>
ufm_result<T> train_ufm(const label_sets& S, const penalties& lambdas, const ufm_point<T>& start,
                        const ufm_options& options, Obs&& observer = nullptr) {
    return train_ufm(default_backend, S, lambdas, start, options, std::forward<Obs>(observer));
}

}  // namespace mlnc

// mlnc::precompiled: these instances are compiled once, into the library, and only declared here.
#if MLNC_PRECOMPILED
#if defined(MLNC_INSTANTIATE_UFM)
#define MLNC_INSTANCE template
#else
#define MLNC_INSTANCE extern template
#endif
namespace mlnc::detail {
MLNC_INSTANCE ufm_result<float> run_training(ufm_objective<float, cpu>, vector<float>, const ufm_options&,
                                             ufm_observer<float>);
MLNC_INSTANCE ufm_result<double> run_training(ufm_objective<double, cpu>, vector<double>, const ufm_options&,
                                              ufm_observer<double>);
}  // namespace mlnc::detail
#undef MLNC_INSTANCE
#endif
