#pragma once
// Three ways to drive mlnc::ufm_objective with an optimiser of one's own (examples/optimisers.cpp
// runs them; tests/test_objective.cpp checks that they reach f*):
//  - lbfgspp_minimize: LBFGSpp's L-BFGS on the objective as it is (its f(x, grad) form);
//  - nesterov_minimize: Nesterov's accelerated gradient, hand-written, with a backtracking
//    estimate of the Lipschitz constant and O'Donoghue and Candes's function-value restart;
//  - sgd_minimize: minibatch SGD over the samples (ensmallen's separable-function form).
// Each works on any function object with the same members, not only on mlnc's.

#include <mlnc/objective.hpp>

#include <Eigen/Core>

#include <mlnc/detail/lbfgspp.hpp>  // <LBFGS.h> with its own warnings silenced

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>

namespace mlnc_examples {

struct run_summary {
    int iterations = 0;
    double f = 0;              // objective at the returned point
    double gradient_norm = 0;  // ||grad f|| there (NaN for SGD, which never forms the full gradient)
};

// LBFGSpp's solver until ||grad f|| <= tol (LBFGSpp's own test). Its line search throws
// an exception when it can make no more progress at the rounding floor of f; x is then the
// last accepted iterate, as good as double allows, so the example keeps it. iterations counts
// the evaluations of f (LBFGSpp 0.1 does not report its iteration count when it throws).
template <class F>
run_summary lbfgspp_minimize(F& f, Eigen::VectorXd& x, double tol = 1e-8, int max_iterations = 10000) {
    LBFGSpp::LBFGSParam<double> param;
    param.epsilon = tol;
    param.epsilon_rel = 0;
    param.max_iterations = max_iterations;
    // The strong Wolfe conditions keep every curvature pair positive (s'y > 0), which the
    // nonconvex f needs: with Armijo alone LBFGSpp may build an ascent direction and give up.
    param.linesearch = LBFGSpp::LBFGS_LINESEARCH_BACKTRACKING_STRONG_WOLFE;
    LBFGSpp::LBFGSSolver<double> solver(param);
    run_summary s;
    auto counted = [&](const Eigen::VectorXd& z, Eigen::VectorXd& g) {
        ++s.iterations;
        return f(z, g);
    };
    double fx = 0;
    try {
        solver.minimize(counted, x, fx);
    } catch (const std::exception&) {  // std::runtime_error or std::logic_error, by LBFGSpp's version
    }
    Eigen::VectorXd g;
    s.f = f(x, g);
    s.gradient_norm = g.norm();
    return s;
}

// Nesterov's method for a smooth f: from the extrapolated point y, a gradient step of length 1/L,
// with L doubled until the step decreases f by at least ||g||^2 / (2L) (up to the rounding of f)
// and relaxed by 10% after each step; the momentum restarts whenever f goes up (beyond rounding).
template <class F>
run_summary nesterov_minimize(F& f, Eigen::VectorXd& x, double tol = 1e-8, int max_iterations = 200000) {
    const double eps = std::numeric_limits<double>::epsilon();
    Eigen::VectorXd y = x, g, x_new;
    double L = 1.0, t = 1.0;
    double fx = f.Evaluate(x);
    run_summary s;
    for (s.iterations = 0; s.iterations < max_iterations; ++s.iterations) {
        const double fy = f.EvaluateWithGradient(y, g);
        const double g2 = g.squaredNorm();
        if (std::sqrt(g2) <= tol) break;
        double f_new = 0;
        for (int tries = 0; tries < 60; ++tries, L *= 2) {
            x_new = y - g / L;
            f_new = f.Evaluate(x_new);
            if (f_new <= fy - g2 / (2 * L) + 16 * eps * std::abs(fy)) break;
        }
        // Restart (forget the momentum, take a plain step from x next) when f goes up by more than
        // its rounding: the same 16 eps |f| that the step test grants. A plain step from y = x passes
        // that test, so it is never refused twice in a row: at the rounding floor of f, where f_new
        // and fx differ by noise alone, a strict f_new > fx would refuse the same step forever.
        if (f_new > fx + 16 * eps * std::abs(fx)) {
            y = x;
            t = 1.0;
            continue;
        }
        const double t_new = 0.5 * (1.0 + std::sqrt(1.0 + 4.0 * t * t));
        y = x_new + ((t - 1.0) / t_new) * (x_new - x);
        x.swap(x_new);
        fx = f_new;
        t = t_new;
        L *= 0.9;
    }
    s.f = f.EvaluateWithGradient(x, g);
    s.gradient_norm = g.norm();
    return s;
}

// Minibatch SGD: each epoch shuffles the samples and visits them in batches of batch_size; a step
// is x -= lr (N / |B|) grad f_B (an unbiased estimate of grad f), with lr = lr0 / (1 + epoch / decay);
// epochs first_epoch, ..., first_epoch + epochs - 1 are run (to continue a schedule).
template <class F>
run_summary sgd_minimize(F& f, Eigen::VectorXd& x, int first_epoch, int epochs, Eigen::Index batch_size, double lr0,
                         double decay) {
    const Eigen::Index N = f.NumFunctions();
    Eigen::VectorXd g;
    run_summary s;
    for (int epoch = first_epoch; epoch < first_epoch + epochs; ++epoch) {
        f.Shuffle();
        const double lr = lr0 / (1.0 + epoch / decay);
        for (Eigen::Index begin = 0; begin < N; begin += batch_size) {
            const Eigen::Index n = std::min(batch_size, N - begin);
            f.EvaluateWithGradient(x, begin, g, n);
            x -= (lr * static_cast<double>(N) / static_cast<double>(n)) * g;
            ++s.iterations;
        }
    }
    s.f = f.Evaluate(x);
    s.gradient_norm = std::numeric_limits<double>::quiet_NaN();
    return s;
}

}  // namespace mlnc_examples
