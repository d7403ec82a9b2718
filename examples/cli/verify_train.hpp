#pragma once
// mlnc verify, part 1: the problem and the training run. The problem is the training set, from a
// --n spec (Theorem 1's balanced set) or a --counts file, with n_m when it satisfies the theorem's
// assumptions; training runs the UFM trainer from a seeded random start and records the NC
// metrics of its iterates as history.csv, with a progress line on stderr.

#include "cuda_objective.hpp"

#include <mlnc/io/counts.hpp>
#include <mlnc/labels.hpp>
#include <mlnc/metrics.hpp>
#include <mlnc/types.hpp>
#include <mlnc/ufm.hpp>

#include <Eigen/Core>

#include <cmath>
#include <iomanip>
#include <iostream>
#include <optional>
#include <sstream>
#include <string>
#include <type_traits>
#include <utility>

namespace mlnc_cli::verify {

using mlnc::index_t;

// verify trains on at most this many samples.
inline constexpr index_t max_samples = 200000;

// A number as the verify outputs print it (messages, table, history.csv).
inline std::string fmt(double v, int prec = 6) {
    std::ostringstream s;
    s << std::setprecision(prec) << v;
    return s.str();
}

// Theorem 1's training set for a --n spec: every m-subset of the K labels n_m times. The size is
// checked here so that the message names --n and the cap of verify.
inline mlnc::label_sets balanced_samples(index_t K, const mlnc::multiplicity_counts& n) {
    double total = 0;
    for (const auto& [m, count] : n)
        if (count > 0) total += static_cast<double>(count) * std::exp(mlnc::log_binomial(K, m));
    if (!(total >= 0.5)) throw mlnc::error("--n: gives no samples");
    if (!(total <= static_cast<double>(max_samples)))
        throw mlnc::error("--n: the balanced sample list would hold about " + fmt(total, 3) +
                          " samples; verify trains on at most " + std::to_string(max_samples));
    return mlnc::balanced_label_sets(K, n, max_samples);
}

// The samples of --counts (n_m when the file is balanced and complete) or of --n.
inline mlnc::io::counted_samples build_problem(index_t K, const std::string& n_spec, const std::string& counts_file) {
    if (!counts_file.empty()) return mlnc::io::read_counts(counts_file, K, max_samples);
    mlnc::multiplicity_counts n = mlnc::io::parse_multiplicity_spec(n_spec, "--n", K);
    mlnc::label_sets S = balanced_samples(K, n);
    return {std::move(S), std::move(n)};
}

struct training {
    mlnc::ufm_result<double> res;  // in double whatever the computation's dtype
    std::string history_csv;       // iteration, objective, gradient norm, seconds and NC metrics
    std::string dtype = "double";  // the dtype the trainer computed in
};

// A float run's result in double, for the comparison (exact: every float is a double).
template <class T>
mlnc::ufm_result<double> in_double(mlnc::ufm_result<T>&& r) {
    if constexpr (std::is_same_v<T, double>) {
        return std::move(r);
    } else {
        mlnc::ufm_result<double> d;
        d.W = r.W.template cast<double>();
        d.H = r.H.template cast<double>();
        d.b = r.b.template cast<double>();
        d.status = r.status;
        d.iterations = r.iterations;
        d.objective = r.objective;
        d.gradient_norm = r.gradient_norm;
        d.history = std::move(r.history);
        d.seconds = r.seconds;
        d.function_evaluations = r.function_evaluations;
        d.restarts = r.restarts;
        return d;
    }
}

// The NC metrics of the history rows: NC_m without its uncentred variant, and past 2^24 pairs
// estimated from 2^16 sampled pairs (standard error below 1% of NC_m, docs/metrics.md) rather
// than the library's 2^20, so that they cost a fraction of the training they follow. The final
// table computes them with the defaults.
inline const mlnc::nc_metrics_options history_metrics{.nc_m_uncentered = false, .sampling = {.pairs = mlnc::index_t{1} << 16}};

// Trains in T (float or double) from opt's seeded start on the backend named by `backend` (cpu,
// or cuda: the objective on the GPU), recording the NC metrics every opt.history_every
// iterations (on the host, from the iterate the trainer hands its observer).
template <class T>
training train(const mlnc::label_sets& S, index_t d, const mlnc::penalties& lam, const mlnc::ufm_options& opt,
               const std::string& backend = "cpu") {
    std::ostringstream csv;
    csv << std::setprecision(17) << "iteration,objective,gradient_norm,seconds,nc1,nc2_w,nc2_h,nc3";
    const index_t M = S.max_multiplicity();
    for (index_t m = 2; m <= M; ++m) csv << ",nc_m" << m;
    csv << "\n";
    // Labels without a multiplicity-1 sample (possible with --counts) leave mu_k undefined: the
    // metrics that need it are then "nan" in every row, decided once here.
    const bool metrics_defined = mlnc::compute_class_means(Eigen::MatrixXd::Zero(1, S.size()), S).num_missing_labels() == 0;
    const auto na = [](const std::optional<double>& v) { return v ? fmt(*v, 17) : std::string("nan"); };
    using mat = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic>;
    using vec = Eigen::Matrix<T, Eigen::Dynamic, 1>;
    const mlnc::ufm_observer<T> observer = [&](const mlnc::ufm_history_entry& h, const Eigen::Ref<const mat>& W,
                                               const Eigen::Ref<const mat>& H, const Eigen::Ref<const vec>&) {
        std::optional<mlnc::nc_metrics> nc;
        if (metrics_defined) nc = mlnc::compute_nc_metrics(mlnc::cpu{}, H, S, W, history_metrics);
        csv << h.iteration << "," << fmt(h.objective, 17) << "," << fmt(h.gradient_norm, 17) << ","
            << fmt(h.seconds, 6) << "," << (nc ? na(nc->nc1) : "nan") << "," << (nc ? na(nc->nc2_w) : "nan") << ","
            << (nc ? na(nc->nc2_h) : "nan") << "," << (nc ? na(nc->nc3) : "nan");
        for (index_t m = 2; m <= M; ++m) csv << "," << (nc && nc->nc_m.contains(m) ? na(nc->nc_m.at(m)) : "nan");
        csv << "\n";
        std::cerr << "  iter " << std::setw(6) << h.iteration << "  f = " << std::setprecision(15) << h.objective
                  << "  |grad| = " << std::setprecision(3) << h.gradient_norm;
        if (nc && nc->nc1) std::cerr << "  NC1 = " << std::setprecision(3) << *nc->nc1;
        std::cerr << "\n";
        return mlnc::ufm_action::proceed;
    };
    training t{in_double(backend == "cuda" ? cuda_train<T>(S, d, lam, opt, observer)
                                           : mlnc::train_ufm<T>(S, d, lam, opt, observer)),
               {},
               std::is_same_v<T, float> ? "float" : "double"};
    t.history_csv = csv.str();
    return t;
}

}  // namespace mlnc_cli::verify
