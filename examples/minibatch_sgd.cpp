// Trains the UFM by minibatch SGD through ufm_objective's separable form (the batch terms f_B of
// a partition of the samples add up to f; N/|B| grad f_B estimates grad f) and reports how close
// it gets to the closed-form f*.
#include "optimisers.hpp"

#include <mlnc/mlnc.hpp>

#include <cstdio>

int main() {
    const mlnc::index_t K = 6, d = 6;
    const mlnc::multiplicity_counts n{{1, 10}, {2, 2}};
    const mlnc::penalties lambdas{5e-3, 5e-3, 1e-2};
    const mlnc::label_sets S = mlnc::balanced_label_sets(K, n);  // 60 + 30 samples
    const double f_star = mlnc::global_optimum(K, n, lambdas)->f;

    mlnc::ufm_objective f(S, d, lambdas);
    f.seed(1);
    mlnc::ufm_options o;
    o.max_iterations = 0;  // the trainer's seeded random start
    const auto start = mlnc::train_ufm(S, d, lambdas, o);
    Eigen::VectorXd x = f.pack(start.W, start.H, start.b);
    std::printf("start: f = %.6f   f* = %.6f\n", f.Evaluate(x), f_star);
    double f_last = 0;
    for (int round = 1; round <= 4; ++round) {
        const auto r = mlnc_examples::sgd_minimize(f, x, 500 * (round - 1), 500, 16, 0.5, 100.0);
        std::printf("after %4d epochs of batches of 16: f = %.9f   (f - f*)/f* = %.2e\n", 500 * round, r.f,
                    (r.f - f_star) / f_star);
        f_last = r.f;
    }
    return f_last - f_star <= 1e-4 * f_star ? 0 : 1;
}
