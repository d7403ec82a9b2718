// The "research program" of the compile-time budget: what a user writes in a first session with
// mlnc, against today's API. bench/compile_time.sh times its compilation next to the same program
// written against commit 517fa28 (research_517fa28.cpp); the two must stay the same program.
//
// A penalty sweep for K = 6 labels on Theorem 1's balanced training set (every label n_1 times,
// every pair n_2 times): for each penalty, the closed-form optimum, the trainer from a random
// start, and the collapse metrics of the trained features, one line each; then one evaluation of
// the objective with its gradients at the last trained point.
//
// It includes the narrow headers it uses, not <mlnc/mlnc.hpp>, as docs/api.md recommends.

#include <mlnc/metrics.hpp>
#include <mlnc/objective.hpp>
#include <mlnc/optimum.hpp>
#include <mlnc/ufm.hpp>

#include <cmath>
#include <cstdio>
#include <optional>
#include <vector>

namespace {

double or_nan(const std::optional<double>& v) { return v ? *v : std::nan(""); }

}  // namespace

int main() {
    constexpr mlnc::index_t K = 6;  // labels
    constexpr mlnc::index_t d = 6;  // feature dimension
    const mlnc::multiplicity_counts n{{1, 4}, {2, 1}};  // n_1 = 4 per label, n_2 = 1 per pair
    const mlnc::label_sets S = mlnc::balanced_label_sets(K, n);  // 6*4 + 15*1 = 39 samples

    mlnc::ufm_options options;
    options.max_iterations = 3000;
    options.gradient_tolerance = 1e-10;
    options.seed = 1;

    const std::vector<double> sweep{1e-4, 3e-4, 1e-3, 3e-3, 1e-2};
    std::printf("K = %lld, d = %lld, N = %lld\n", static_cast<long long>(K), static_cast<long long>(d),
                static_cast<long long>(S.size()));
    std::printf("%10s %14s %14s %10s %10s %10s %10s %10s %10s\n", "lambda", "f*", "f(trained)", "rel.gap",
                "C_1", "C_2", "NC1_1", "NC1_2", "NC3");

    mlnc::penalties last{};
    mlnc::ufm_result<double> trained;
    int failures = 0;
    for (const double lambda : sweep) {
        const mlnc::penalties lambdas{lambda, lambda, 1e-2};

        // Theorem 1 in closed form.
        const mlnc::optimum_result opt = mlnc::global_optimum(K, n, lambdas);
        if (!opt.converged()) {
            std::printf("%10.1e closed form did not converge\n", lambda);
            ++failures;
            continue;
        }

        // The trainer from a seeded random start.
        trained = mlnc::train_ufm(S, d, lambdas, options);

        // Collapse of the trained features.
        const mlnc::nc_metrics m = mlnc::compute_nc_metrics(trained.H, S, trained.W);

        const double gap = (trained.objective - opt->f) / opt->f;
        std::printf("%10.1e %14.8f %14.8f %10.2e %10.4f %10.4f %10.2e %10.2e %10.2e\n", lambda, opt->f,
                    trained.objective, gap, opt->C.at(1), opt->C.at(2), or_nan(m.nc1_by_multiplicity.at(1)),
                    or_nan(m.nc1_by_multiplicity.at(2)), or_nan(m.nc3));
        if (!(std::abs(gap) < 1e-6)) ++failures;
        last = lambdas;
    }

    // One evaluation of the objective with its gradients, at the last trained point.
    mlnc::pal_objective f(S, last);
    Eigen::MatrixXd dW(trained.W.rows(), trained.W.cols()), dH(trained.H.rows(), trained.H.cols());
    Eigen::VectorXd db(trained.b.size());
    const auto v = f.evaluate(trained.W, trained.H, trained.b, dW, dH, db);
    const double grad_norm = std::sqrt(dW.squaredNorm() + dH.squaredNorm() + db.squaredNorm());
    std::printf("f = %.12f (loss %.12f + penalty %.12f), ||grad f|| = %.3e\n", v.total, v.loss, v.penalty,
                grad_norm);

    return failures == 0 ? 0 : 1;
}
