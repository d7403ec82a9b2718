// Drives Problem (4) with optimisers that are not mlnc's: LBFGSpp's L-BFGS and a hand-written
// Nesterov method (examples/optimisers.hpp) on mlnc::ufm_objective, and compares both with the
// closed-form f* of Theorem 1.
#include "optimisers.hpp"

#include <mlnc/mlnc.hpp>

#include <cmath>
#include <cstdio>

int main() {
    const mlnc::index_t K = 4, d = 4;
    const mlnc::multiplicity_counts n{{1, 3}, {2, 1}};  // 3 samples per label, 1 per pair
    const mlnc::penalties lambdas{5e-3, 5e-3, 1e-2};
    const mlnc::label_sets S = mlnc::balanced_label_sets(K, n);
    const double f_star = mlnc::global_optimum(K, n, lambdas)->f;

    mlnc::ufm_objective f(S, d, lambdas);  // x = [vec(W); vec(H); b]
    const auto start = mlnc::train_ufm(S, d, lambdas, [] {
        mlnc::ufm_options o;
        o.max_iterations = 0;  // the trainer's seeded random start, not trained
        return o;
    }());
    const Eigen::VectorXd x0 = f.pack(start.W, start.H, start.b);

    Eigen::VectorXd x = x0;
    const auto lbfgs = mlnc_examples::lbfgspp_minimize(f, x);
    std::printf("LBFGSpp:  %6d evaluations f = %.15f  |grad| = %.1e  (f - f*)/f* = %.1e\n", lbfgs.iterations,
                lbfgs.f, lbfgs.gradient_norm, (lbfgs.f - f_star) / f_star);
    x = x0;
    const auto nesterov = mlnc_examples::nesterov_minimize(f, x);
    std::printf("Nesterov: %6d iterations  f = %.15f  |grad| = %.1e  (f - f*)/f* = %.1e\n", nesterov.iterations,
                nesterov.f, nesterov.gradient_norm, (nesterov.f - f_star) / f_star);
    std::printf("f* (closed form)            = %.15f\n", f_star);
    const bool ok = std::abs(lbfgs.f - f_star) <= 1e-9 * f_star && std::abs(nesterov.f - f_star) <= 1e-9 * f_star;
    return ok ? 0 : 1;
}
