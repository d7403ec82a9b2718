// mlnc optimum: the closed-form global optimum of Problem (4) under Theorem 1's assumptions
// (cli.md, "mlnc optimum"; docs/theory.md).

#include "command.hpp"
#include <mlnc/io/counts.hpp>

#include <mlnc/labels.hpp>
#include <mlnc/optimum.hpp>

#include <algorithm>
#include <cmath>
#include <functional>
#include <iomanip>
#include <iostream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

namespace {

using mlnc::index_t;

struct optimum_options {
    index_t K = 0;
    std::string n;
    double lambda_w = 0.0, lambda_h = 0.0, lambda_b = 0.0;
    bool json = false;
};

// Finite numbers as JSON numbers; c_{1,K} = +infinity (no out-of-set mass) as null.
nlohmann::json number_or_null(double v) { return std::isfinite(v) ? nlohmann::json(v) : nlohmann::json(nullptr); }

std::string fmt(double v, int digits = 12) {
    if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
    std::ostringstream s;
    s << std::setprecision(digits) << v;
    return s.str();
}

int run_optimum(const optimum_options& o) {
    if (o.K < 2) throw mlnc::error("--K: must be at least 2, got " + std::to_string(o.K));
    const mlnc::multiplicity_counts n = mlnc::io::parse_multiplicity_spec(o.n, "--n", o.K);
    mlnc_cli::checked_lambda(o.lambda_w, "--lambda-w");
    mlnc_cli::checked_lambda(o.lambda_h, "--lambda-h");
    mlnc_cli::checked_lambda(o.lambda_b, "--lambda-b");
    if (!(o.lambda_w > 0)) throw mlnc::error("--lambda-w: must be > 0 (with 0 the objective has no minimiser)");
    if (!(o.lambda_h > 0)) throw mlnc::error("--lambda-h: must be > 0 (with 0 the objective has no minimiser)");
    if (std::none_of(n.begin(), n.end(), [](const auto& e) { return e.second > 0; }))
        throw mlnc::error("--n: all counts are zero; at least one multiplicity needs samples");

    const mlnc::optimum_result r = mlnc::global_optimum(o.K, n, {o.lambda_w, o.lambda_h, o.lambda_b});
    if (r.status() != mlnc::optimum_status::success) {
        std::cerr << "mlnc optimum: the solver did not converge (" << r.outer_iterations << " outer iterations, "
                  << r.newton_iterations << " Newton steps): the optimum lies beyond the range of double or the "
                  << "iteration budget ran out" << std::endl;
        return mlnc_cli::exit_check_failed;
    }

    if (o.json) {
        // Arrays in the order of "multiplicities".
        nlohmann::json delta = nlohmann::json::array(), C = nlohmann::json::array(), c1 = nlohmann::json::array();
        for (const index_t m : r.multiplicities()) {
            delta.push_back(r->delta.at(m));
            C.push_back(r->C.at(m));
            c1.push_back(number_or_null(r->c1.at(m)));
        }
        mlnc_cli::print_json({{"trivial", r->trivial},
                              {"f", r->f},
                              {"rho", r->rho},
                              {"w_norm", r->w_norm},
                              {"multiplicities", r.multiplicities()},
                              {"delta", delta},
                              {"C", C},
                              {"c1", c1}});
        return mlnc_cli::exit_ok;
    }

    std::vector<double> logN;  // log N_m = log C(K, m) + log n_m: N may be far beyond 2^64
    for (const auto& [m, count] : r.counts())
        logN.push_back(mlnc::log_binomial(o.K, m) + std::log(static_cast<double>(count)));
    std::cout << "Global optimum of Problem (4) (Theorem 1): K = " << o.K << ", N = "
              << fmt(std::exp(mlnc::detail::log_sum_exp(logN)), 6) << " samples, lambda_w = " << fmt(o.lambda_w)
              << ", lambda_h = " << fmt(o.lambda_h) << ", lambda_b = " << fmt(o.lambda_b) << "\n"
              << "  collapse to zero (W* = H* = 0)  " << (r->trivial ? "yes" : "no") << "\n"
              << "  f*                              " << fmt(r->f, 17) << "\n"
              << "  rho* = ||W*||_F^2               " << fmt(r->rho, 17) << "\n"
              << "  row norm of W*                  " << fmt(r->w_norm, 17) << "\n"
              << "  b* = 0 and h_i = C_m * (sum of w_k over the labels of sample i)\n\n"
              << std::setw(8) << "m" << std::setw(14) << "n_m" << std::setw(24) << "Delta_m" << std::setw(24) << "C_m"
              << std::setw(24) << "c_{1,m}" << "\n";
    for (const auto& [m, count] : r.counts())
        std::cout << std::setw(8) << m << std::setw(14) << fmt(static_cast<double>(count)) << std::setw(24)
                  << fmt(r->delta.at(m), 17) << std::setw(24) << fmt(r->C.at(m), 17) << std::setw(24)
                  << fmt(r->c1.at(m), 17) << "\n";
    if (r.counts().max_multiplicity() == o.K)
        std::cout << "  (m = K: every label; its features are 0 and c_{1,K} is infinite)\n";
    std::cout << std::flush;
    return mlnc_cli::exit_ok;
}

const mlnc_cli::registrar reg{mlnc_cli::command{
    "optimum", "The closed-form global optimum of Problem (4) for balanced multiplicities (Theorem 1)", 20,
    [](CLI::App& app) -> std::function<int()> {
        auto o = std::make_shared<optimum_options>();
        app.add_option("--K", o->K, "Number of labels (>= 2)")->required()->type_name("K");
        app.add_option("--n", o->n, "Samples per m-subset: m:count,... e.g. 1:20,2:4,3:2")->required()->type_name("SPEC");
        app.add_option("--lambda-w", o->lambda_w, "Penalty weight on ||W||_F^2 (> 0)")->required()->type_name("X");
        app.add_option("--lambda-h", o->lambda_h, "Penalty weight on ||H||_F^2 (> 0)")->required()->type_name("X");
        app.add_option("--lambda-b", o->lambda_b, "Penalty weight on ||b||^2 (b* = 0 for any value)")
            ->capture_default_str()
            ->type_name("X");
        mlnc_cli::add_json_flag(app, o->json);
        return [o] { return run_optimum(*o); };
    }}};

}  // namespace
