// Theorem 1 through the library alone: the closed-form optimum for a balanced multi-label
// problem, a UFM trained from a random start, and the comparison of the two (what `mlnc verify`
// does, in a page). Exit 0 when the trained objective matches f* to 1e-9 relative.

#include <mlnc/mlnc.hpp>

#include <cmath>
#include <iostream>

int main() {
    const mlnc::index_t K = 5, d = 5;
    const mlnc::multiplicity_counts n{{1, 8}, {2, 2}, {3, 1}};  // 8 samples per label, 2 per pair, 1 per triple
    const mlnc::penalties lambdas{.lambda_w = 5e-3, .lambda_h = 5e-3, .lambda_b = 1e-2};

    const auto theory = mlnc::global_optimum(K, n, lambdas);
    // The solution exists only when the solver converged (theory-> throws otherwise).
    if (!theory.converged()) {
        std::cout << "the closed-form solver did not converge (" << theory.outer_iterations << " outer iterations)\n";
        return 1;
    }
    if (theory->trivial)
        std::cout << "the optimum is W = H = 0: sqrt(lambda_w lambda_h) is above the threshold "
                  << theory.collapse_threshold() << "\n";

    // The training set the optimum is for: every m-subset of the labels, n_m times.
    const mlnc::label_sets S = theory.sample_labels();
    const auto trained = mlnc::train_ufm<double>(S, d, lambdas, mlnc::ufm_options{});
    const auto nc = mlnc::compute_nc_metrics(trained.H, S, trained.W);
    const auto tw = mlnc::fit_tagwise(trained.H, S, trained.W);

    const double gap = std::abs(trained.objective - theory->f) / std::abs(theory->f);
    std::cout << "N = " << S.size() << " samples, K = " << K << ", d = " << d << "\n"
              << "f*      " << theory->f << "   trained " << trained.objective << "   gap " << gap << "\n"
              << "rho*    " << theory->rho << "   trained " << trained.W.squaredNorm() << "\n"
              << "ETF error of the trained W   " << mlnc::etf_deviation(trained.W) << "\n"
              << "NC1 " << nc.nc1.value_or(NAN) << "   NC3 " << nc.nc3.value_or(NAN) << "\n";
    for (const auto& [m, C] : theory->C)
        std::cout << "C_" << m << "  theory " << C << "   trained " << tw.C.at(m) << "   tag-wise residual "
                  << tw.residual.at(m) << "\n";
    return gap < 1e-9 ? 0 : 1;
}
