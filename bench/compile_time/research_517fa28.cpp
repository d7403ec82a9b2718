// The "research program" of the compile-time budget against the API of commit 517fa28: the same
// program as research.cpp, written the way a user of that commit had to. bench/compile_time.sh
// compiles it against a checkout of 517fa28's include/ (it does not compile against today's).
//
// Then: n_m was a std::vector<double> n[m-1], Theorem 1's balanced training set had to be built
// by hand from subset_unrank, the optimum's arrays were indexed by position, train_ufm needed its
// scalar spelled out, and only <mlnc/mlnc.hpp> was documented, so that is what this includes.

#include <mlnc/mlnc.hpp>

#include <cmath>
#include <cstdio>
#include <optional>
#include <vector>

namespace {

double or_nan(const std::optional<double>& v) { return v ? *v : std::nan(""); }

// Every m-subset of the K labels n[m-1] times, m = 1..n.size().
mlnc::label_sets balanced(mlnc::index_t K, const std::vector<double>& n) {
    std::vector<std::vector<mlnc::index_t>> lists;
    for (mlnc::index_t m = 1; m <= static_cast<mlnc::index_t>(n.size()); ++m) {
        const mlnc::u128 subsets = mlnc::binomial(K, m);
        for (mlnc::u128 r = 0; r < subsets; ++r) {
            const std::vector<mlnc::label_t> s = mlnc::subset_unrank(r, m, K);
            for (int copy = 0; copy < static_cast<int>(n[static_cast<std::size_t>(m - 1)]); ++copy)
                lists.emplace_back(s.begin(), s.end());
        }
    }
    return mlnc::label_sets::from_lists(lists, K);
}

}  // namespace

int main() {
    constexpr mlnc::index_t K = 6;  // labels
    constexpr mlnc::index_t d = 6;  // feature dimension
    const std::vector<double> n{4, 1};  // n_1 = 4 per label, n_2 = 1 per pair
    const mlnc::label_sets S = balanced(K, n);  // 6*4 + 15*1 = 39 samples

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
        if (opt.status != mlnc::optimum_status::success) {
            std::printf("%10.1e closed form did not converge\n", lambda);
            ++failures;
            continue;
        }

        // The trainer from a seeded random start.
        trained = mlnc::train_ufm<double>(S, d, lambdas, options);

        // Collapse of the trained features.
        const mlnc::nc_metrics m = mlnc::compute_nc_metrics(trained.H, S, trained.W);

        const double gap = (trained.objective - opt.f) / opt.f;
        std::printf("%10.1e %14.8f %14.8f %10.2e %10.4f %10.4f %10.2e %10.2e %10.2e\n", lambda, opt.f,
                    trained.objective, gap, opt.C[0], opt.C[1], or_nan(m.nc1_by_multiplicity.at(1)),
                    or_nan(m.nc1_by_multiplicity.at(2)), or_nan(m.nc3));
        if (!(std::abs(gap) < 1e-6)) ++failures;
        last = lambdas;
    }

    // One evaluation of the objective with its gradients, at the last trained point.
    mlnc::pal_objective<double> f(S, last);
    Eigen::MatrixXd dW(trained.W.rows(), trained.W.cols()), dH(trained.H.rows(), trained.H.cols());
    Eigen::VectorXd db(trained.b.size());
    const auto v = f.evaluate(trained.W, trained.H, trained.b, dW, dH, db);
    const double grad_norm = std::sqrt(dW.squaredNorm() + dH.squaredNorm() + db.squaredNorm());
    std::printf("f = %.12f (loss %.12f + penalty %.12f), ||grad f|| = %.3e\n", v.total, v.loss, v.penalty,
                grad_norm);

    return failures == 0 ? 0 : 1;
}
