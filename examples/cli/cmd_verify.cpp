// mlnc verify: train the UFM from a seeded random start and compare with Theorem 1's closed form
// (the main job; `make demo` runs it with its defaults). Contract: docs/cli.md.
//
// The command in four parts: the problem (samples and, inside the assumptions, n_m), training
// (with a history of NC metrics), the comparison with the closed form (the verdict and the notes
// that explain degenerate cases), and the outputs (history.csv, projection CSVs, SVG plots, the
// table and the JSON object).

#include "command.hpp"
#include "plot.hpp"

#include <mlnc/etf.hpp>
#include <mlnc/io/counts.hpp>
#include <mlnc/io/npy.hpp>
#include <mlnc/labels.hpp>
#include <mlnc/metrics.hpp>
#include <mlnc/optimum.hpp>
#include <mlnc/tagwise.hpp>
#include <mlnc/ufm.hpp>

#include <Eigen/SVD>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <iomanip>
#include <limits>
#include <map>
#include <optional>
#include <sstream>

namespace mlnc_cli {
namespace {

using mlnc::index_t;
namespace fs = std::filesystem;

// The embedded default: inside the theorem's assumptions (every m-subset present, balanced within
// each multiplicity), three multiplicities with imbalance between them (30 samples per label,
// 10 per pair, 3 with all labels: N = 90 + 30 + 3), d = K, and penalties for which the optimum is
// not the collapse to zero. K = 3 because then the features span exactly two dimensions and the
// projection plot is the paper's Figure 1 (for K > 3 the top two singular directions of a
// collapsed configuration are not unique); --K 8 --n 1:10,2:3,3:1 is a larger check.
// L-BFGS reaches f* to ~1e-16 relative in well under a second.
constexpr index_t default_K = 3;
constexpr const char* default_n = "1:30,2:10,3:3";

// Verdict tolerances. The objective gap is what the trainer reaches on such problems (1e-10 is
// its tested bound); the structural errors are first order in the distance to the minimiser,
// which is ~ gradient norm / smallest curvature (~1e-12 / 1e-3 here), so 1e-6 leaves three orders
// of magnitude of margin while still failing for any wrong geometry.
constexpr double tol_gap = 1e-9;
constexpr double tol_structure = 1e-6;
// A trained point whose size sqrt(||W||^2 + ||H||^2 / N) is below this is numerically zero: its
// directions (ETF error, tag-wise residuals, NC metrics) are rounding noise and are reported as
// undefined. At the trivial minimiser the trainer reaches ~1e-20; a non-trivial minimiser has
// size ~ sqrt(rho*), far above this unless the penalties sit within ~1e-16 of the threshold.
constexpr double zero_size = 1e-8;
// A gap at the rounding level of f: what a line search that can no longer decrease f leaves.
constexpr double rounding_gap = 1e-12;

constexpr index_t max_samples = 200000;

struct verify_args {
    index_t K = default_K;
    index_t d = 0;  // 0: d = K
    std::string n = default_n;
    std::string counts;
    double lambda_w = 5e-3, lambda_h = 5e-3, lambda_b = 1e-2;
    std::uint64_t seed = 1;
    std::string method = "lbfgs";
    int max_iter = 20000;
    int every = 10;
    std::string out = "mlnc-verify";
    bool json = false;
};

std::string fmt(double v, int prec = 6) {
    std::ostringstream s;
    s << std::setprecision(prec) << v;
    return s.str();
}

nlohmann::json opt_json(const std::optional<double>& v) { return v ? nlohmann::json(*v) : nlohmann::json(nullptr); }

nlohmann::json by_m_json(const mlnc::metric_by_multiplicity& m) {
    nlohmann::json j = nlohmann::json::object();
    for (const auto& [k, v] : m) j[std::to_string(k)] = opt_json(v);
    return j;
}

nlohmann::json by_m_json(const std::map<index_t, double>& m) {
    nlohmann::json j = nlohmann::json::object();
    for (const auto& [k, v] : m) j[std::to_string(k)] = v;
    return j;
}

// ---------------------------------------------------------------------------------------------
// Part 1: the problem.

std::vector<std::vector<index_t>> balanced_samples(index_t K, const std::vector<double>& n) {
    std::vector<std::vector<index_t>> sets;
    double total = 0;
    for (std::size_t j = 0; j < n.size(); ++j)
        if (n[j] > 0) total += n[j] * std::exp(mlnc::log_binomial(K, static_cast<index_t>(j) + 1));
    if (!(total <= static_cast<double>(max_samples)))
        throw mlnc::error("--n: the balanced sample list would hold about " + fmt(total, 3) +
                          " samples; verify trains on at most " + std::to_string(max_samples));
    for (std::size_t j = 0; j < n.size(); ++j) {
        const auto m = static_cast<index_t>(j) + 1;
        const auto reps = static_cast<index_t>(n[j]);
        if (reps == 0) continue;
        const auto total_m = static_cast<std::uint64_t>(mlnc::binomial(K, m));
        for (std::uint64_t r = 0; r < total_m; ++r) {
            const auto s = mlnc::subset_unrank(r, m, K);
            for (index_t t = 0; t < reps; ++t) sets.emplace_back(s.begin(), s.end());
        }
    }
    return sets;
}

mlnc::io::counted_samples build_problem(const verify_args& a, index_t K) {
    if (!a.counts.empty())
        return mlnc::io::read_counts(a.counts, K, max_samples);
    const auto n = mlnc::io::parse_multiplicity_spec(a.n, "--n", K);
    mlnc::io::counted_samples p{mlnc::label_sets::from_lists(balanced_samples(K, n), K), n};
    if (p.S.empty()) throw mlnc::error("--n: gives no samples");
    return p;
}

// ---------------------------------------------------------------------------------------------
// Part 2: training, with the NC metrics of the iterates in history.csv and a progress line.

struct training {
    mlnc::ufm_result<double> res;
    std::string history_csv;
};

training train(const verify_args& a, const mlnc::label_sets& S, index_t d, const mlnc::penalties& lam) {
    std::ostringstream csv;
    csv << std::setprecision(17) << "iteration,objective,gradient_norm,seconds,nc1,nc2_w,nc2_h,nc3";
    const index_t M = S.max_multiplicity();
    for (index_t m = 2; m <= M; ++m) csv << ",nc_m" << m;
    csv << "\n";
    // Labels without a multiplicity-1 sample (possible with --counts) leave mu_k undefined: the
    // metrics that need it are then "nan" in every row, decided once here.
    const bool metrics_defined = mlnc::compute_class_means(Eigen::MatrixXd::Zero(1, S.size()), S).num_missing_labels() == 0;
    const auto na = [](const std::optional<double>& v) { return v ? fmt(*v, 17) : std::string("nan"); };
    auto observer = [&](const mlnc::ufm_history_entry& h, const Eigen::Ref<const Eigen::MatrixXd>& W,
                        const Eigen::Ref<const Eigen::MatrixXd>& H, const Eigen::Ref<const Eigen::VectorXd>&) {
        std::optional<mlnc::nc_metrics> nc;
        if (metrics_defined) nc = mlnc::compute_nc_metrics(H, S, W);
        csv << h.iteration << "," << fmt(h.objective, 17) << "," << fmt(h.gradient_norm, 17) << ","
            << fmt(h.seconds, 6) << "," << (nc ? na(nc->nc1) : "nan") << "," << (nc ? na(nc->nc2_w) : "nan") << ","
            << (nc ? na(nc->nc2_h) : "nan") << "," << (nc ? na(nc->nc3) : "nan");
        for (index_t m = 2; m <= M; ++m) {
            const auto it = nc ? nc->nc_m.find(m) : decltype(nc->nc_m.end()){};
            csv << "," << (nc && it != nc->nc_m.end() ? na(it->second) : "nan");
        }
        csv << "\n";
        std::cerr << "  iter " << std::setw(6) << h.iteration << "  f = " << std::setprecision(15) << h.objective
                  << "  |grad| = " << std::setprecision(3) << h.gradient_norm;
        if (nc && nc->nc1) std::cerr << "  NC1 = " << std::setprecision(3) << *nc->nc1;
        std::cerr << "\n";
    };

    mlnc::ufm_options opt;
    opt.method = a.method == "gd" ? mlnc::ufm_method::gd : mlnc::ufm_method::lbfgs;
    opt.max_iterations = a.max_iter;
    opt.seed = a.seed;
    opt.history_every = a.every;
    training t{mlnc::train_ufm<double>(S, d, lam, opt, observer), {}};
    t.history_csv = csv.str();
    return t;
}

// ---------------------------------------------------------------------------------------------
// Part 3: the trained structure and the comparison with the closed form.

struct structure {
    double rho = 0;   // ||W||_F^2
    double size = 0;  // sqrt(||W||_F^2 + ||H||_F^2 / N)
    bool zero = false;  // numerically zero: the metrics below are undefined
    std::optional<double> etf_error;
    std::map<index_t, double> C, residual;  // tag-wise fit; empty when zero
    std::optional<mlnc::nc_metrics> nc;
    std::string nc_unavailable;  // why nc is empty, when it is not because of zero
};

structure analyse(const mlnc::ufm_result<double>& res, const mlnc::label_sets& S) {
    structure s;
    s.rho = res.W.squaredNorm();
    s.size = std::sqrt(s.rho + res.H.squaredNorm() / static_cast<double>(S.size()));
    s.zero = !(s.size > zero_size);
    if (s.zero) return s;
    s.etf_error = mlnc::etf_deviation(res.W);
    const auto tw = mlnc::fit_tagwise(res.H, S, res.W);
    s.C = tw.C;
    s.residual = tw.residual;
    const auto cm = mlnc::compute_class_means(res.H, S);
    if (cm.num_missing_labels() == 0) s.nc = mlnc::compute_nc_metrics(res.H, S, res.W);
    else s.nc_unavailable = "some label has no multiplicity-1 sample, so mu_k is undefined";
    return s;
}

struct comparison {
    bool within = false;                       // inside the theorem's assumptions
    std::string outside;                       // why not, when not
    std::optional<mlnc::optimum_result> theory;  // the closed form, when within
    std::optional<double> gap;                 // relative objective gap
    std::map<index_t, double> C_theory;
    bool verified = false;
    std::vector<std::string> failures;
    std::vector<std::string> notes;  // what a reader needs to interpret the result
    std::optional<double> suggested_lambda;  // lambda_w = lambda_h that shows the collapse
};

// The closed form, when the problem satisfies the theorem's assumptions.
std::optional<mlnc::optimum_result> closed_form(const mlnc::io::counted_samples& p, index_t K, index_t d,
                                                const mlnc::penalties& lam) {
    if (!p.n || d < K - 1) return std::nullopt;
    return mlnc::global_optimum(K, *p.n, lam);
}

comparison compare(const mlnc::io::counted_samples& p, index_t K, index_t d, const mlnc::penalties& lam,
                   std::optional<mlnc::optimum_result> theory, const mlnc::ufm_result<double>& res,
                   const structure& st) {
    comparison c;
    c.within = theory.has_value();
    if (!c.within) {
        c.outside = p.n ? "d = " + std::to_string(d) + " < K-1 = " + std::to_string(K - 1)
                        : "label sets missing or imbalanced within a multiplicity";
        return c;
    }
    c.theory = std::move(theory);
    const mlnc::optimum_result& th = *c.theory;
    const double threshold = th.collapse_threshold();
    if (!th.converged()) {
        c.failures.push_back("the closed-form solver did not converge (the optimum lies beyond the range of double "
                             "for these penalties), so there is nothing to compare with");
        if (threshold > 0 && (std::sqrt(lam.lambda_w) * std::sqrt(lam.lambda_h)) < 1e-100 * threshold)
            c.notes.push_back("sqrt(lambda_w lambda_h) = " + fmt((std::sqrt(lam.lambda_w) * std::sqrt(lam.lambda_h)), 3) +
                              " is more than 1e100 times below the collapse threshold " + fmt(threshold, 3) +
                              "; raise the penalties");
        return c;
    }
    for (std::size_t t = 0; t < th.multiplicities().size(); ++t) c.C_theory[th.multiplicities()[t]] = th->C[t];
    const double f_tr = res.objective;
    c.gap = std::abs(f_tr - th->f) / std::max(1.0, std::abs(th->f));
    if (!(*c.gap <= tol_gap)) c.failures.push_back("objective gap " + fmt(*c.gap, 3) + " > " + fmt(tol_gap, 3));

    const double sq = (std::sqrt(lam.lambda_w) * std::sqrt(lam.lambda_h));
    if (th->trivial && threshold == 0) {
        if (!st.zero)
            c.failures.push_back("theory predicts W = H = 0 but the trained size is " + fmt(st.size, 3));
        c.notes.push_back("every sample carries all K labels: the loss is K log K whatever W and H, so the global "
                          "minimiser is W = H = 0 for all penalties and no collapse geometry exists");
        c.notes.push_back("the structure metrics of a zero solution are undefined (reported as n/a, null in JSON)");
    } else if (th->trivial) {
        if (!st.zero)
            c.failures.push_back("theory predicts W = H = 0 but the trained size is " + fmt(st.size, 3));
        c.suggested_lambda = threshold / 10;
        c.notes.push_back("the global minimiser is W = H = 0, b = 0: sqrt(lambda_w lambda_h) = " + fmt(sq, 3) +
                          " is at or above the collapse threshold " + fmt(threshold, 6) + " for K = " +
                          std::to_string(K) + " and these n_m, so there is no collapse geometry to compare");
        c.notes.push_back("the structure metrics of a zero solution are undefined (reported as n/a, null in JSON)");
        c.notes.push_back("to see the collapse, lower the penalties below the threshold, e.g. --lambda-w " +
                          fmt(*c.suggested_lambda, 3) + " --lambda-h " + fmt(*c.suggested_lambda, 3));
    } else if (st.zero) {
        c.failures.push_back("the trained point is numerically zero (size " + fmt(st.size, 3) +
                             ") but the optimum has rho = " + fmt(th->rho, 3));
    } else {
        const double rho_err = std::abs(st.rho - th->rho) / th->rho;
        if (!(rho_err <= tol_structure)) c.failures.push_back("rho relative error " + fmt(rho_err, 3));
        if (!(*st.etf_error <= tol_structure)) c.failures.push_back("ETF error " + fmt(*st.etf_error, 3));
        for (const auto& [m, r] : st.residual) {
            if (m == K) continue;  // prototype 0: checked through the residual scale below
            if (!(r <= tol_structure))
                c.failures.push_back("tag-wise residual at m = " + std::to_string(m) + " is " + fmt(r, 3));
            const double c_err = std::abs(st.C.at(m) - c.C_theory.at(m)) / std::abs(c.C_theory.at(m));
            if (!(c_err <= tol_structure))
                c.failures.push_back("C_" + std::to_string(m) + " relative error " + fmt(c_err, 3));
        }
        if (st.residual.count(K) && !(st.residual.at(K) <= tol_structure))
            c.failures.push_back("features of the full label set are not 0 (relative size " + fmt(st.residual.at(K), 3) +
                                 ")");
    }
    // Stops other than the gradient test, with the objective already at its rounding floor.
    if (res.status == mlnc::ufm_status::line_search_failed && *c.gap <= rounding_gap)
        c.notes.push_back("the trainer stopped on line_search_failed with a gap of " + fmt(*c.gap, 2) +
                          ": no step decreases f by more than its rounding error, so the objective is at the floor "
                          "of double precision (this is convergence, not a failure)");
    if (res.status == mlnc::ufm_status::max_iterations && *c.gap <= rounding_gap)
        c.notes.push_back("the trainer used its whole iteration budget, but the gap of " + fmt(*c.gap, 2) +
                          " is at the floor of double precision: more iterations cannot lower f (the gradient "
                          "norm " + fmt(res.gradient_norm, 2) + " stays above the gradient tolerance)");
    c.verified = c.failures.empty();
    return c;
}

// ---------------------------------------------------------------------------------------------
// Part 4: outputs.

// history.csv, the projection data and, where gnuplot runs, the two SVG plots. Returns the plots
// written.
std::vector<std::string> write_outputs(const fs::path& out_dir, const training& t, const mlnc::label_sets& S,
                                       index_t K, index_t d, std::ostream& human) {
    const auto write = [&](const fs::path& path, const std::string& content) {
        mlnc::io::detail::atomic_write(path, [&](std::ostream& o) {
            o.write(content.data(), static_cast<std::streamsize>(content.size()));
        });
    };
    write(out_dir / "history.csv", t.history_csv);

    // Features on their top two right singular vectors (of the N x d feature matrix), and the
    // label-set means, as the paper's Figure 1 (bottom row) shows them.
    const Eigen::MatrixXd& H = t.res.H;
    Eigen::JacobiSVD<Eigen::MatrixXd> svd(H.transpose(), Eigen::ComputeThinV);
    const Eigen::MatrixXd V2 = svd.matrixV().leftCols(std::min<index_t>(2, svd.matrixV().cols()));
    Eigen::MatrixXd P = H.transpose() * V2;
    if (P.cols() < 2) P.conservativeResize(Eigen::NoChange, 2), P.col(1).setZero();
    std::ostringstream pts, means;
    pts << std::setprecision(9) << "x,y,multiplicity\n";
    means << std::setprecision(9) << "x,y,multiplicity,label_set\n";
    for (index_t i = 0; i < S.size(); ++i) pts << P(i, 0) << "," << P(i, 1) << "," << S.multiplicity(i) << "\n";
    const auto groups = mlnc::group_by_label_set(S);
    for (index_t g = 0; g < groups.size(); ++g) {
        Eigen::Vector2d mu = Eigen::Vector2d::Zero();
        for (index_t i : groups.members[static_cast<std::size_t>(g)]) mu += P.row(i).transpose();
        mu /= static_cast<double>(groups.members[static_cast<std::size_t>(g)].size());
        std::string name = "{";
        for (auto k : groups.sets[g]) {
            if (name.size() > 1) name += ',';
            name += std::to_string(k);
        }
        means << mu.x() << "," << mu.y() << "," << groups.sets.multiplicity(g) << ",\"" << name << "}\"\n";
    }
    write(out_dir / "features_2d.csv", pts.str());
    write(out_dir / "means_2d.csv", means.str());

    std::vector<std::string> plots;
    if (!have_gnuplot()) {
        human << "note: gnuplot not found (apt-get install gnuplot-nox): no plots, history.csv is written\n";
        return plots;
    }
    // The scripts hold fixed text and numbers only, and name only the files of plot_svg's folder.
    const index_t M = S.max_multiplicity();
    std::ostringstream s1;
    s1 << "set terminal svg size 900,600 dynamic enhanced font 'sans,12'\n"
       << "set output 'plot.svg'\nset datafile separator ','\nset datafile missing 'nan'\n"
       << "set logscale y\nset format y '10^{%L}'\nset xlabel 'iteration'\nset ylabel 'metric'\n"
       << "set title 'Neural-collapse metrics during training (K = " << K << ", d = " << d << ")'\n"
       << "set key outside right\nset grid\n"
       << "f(x) = (x > 1e-300 ? x : 1e-300)\n"
       << "plot 'history.csv' using 1:(f($5)) with lines lw 2 title 'NC1', "
       << "'' using 1:(f($6)) with lines lw 2 title 'NC2 (W)', '' using 1:(f($7)) with lines lw 2 title 'NC2 (H)', "
       << "'' using 1:(f($8)) with lines lw 2 title 'NC3'";
    for (index_t m = 2; m <= M; ++m) s1 << ", '' using 1:(f($" << 7 + m << ")) with lines lw 2 title 'NC_m, m = " << m << "'";
    s1 << ", '' using 1:(f($3)) with lines dt 2 lc rgb 'gray40' title '|grad f|'\n";
    if (plot_svg({{"history.csv", t.history_csv}}, s1.str(), out_dir / "nc_metrics.svg"))
        plots.push_back((out_dir / "nc_metrics.svg").string());
    std::ostringstream s2;
    s2 << "set terminal svg size 800,800 dynamic enhanced font 'sans,11'\n"
       << "set output 'plot.svg'\nset datafile separator ','\n"
       << "set title 'Trained features on their top two singular directions; label-set means marked'\n"
       << "set size ratio -1\nset key outside bottom center horizontal\nset grid\n"
       << "plot ";
    for (index_t m = 1; m <= M; ++m)
        s2 << "'features_2d.csv' every ::1 using 1:($3 == " << m << " ? $2 : NaN) with points pt 7 ps 0.6 title 'samples, m = "
           << m << "', ";
    s2 << "'means_2d.csv' every ::1 using 1:2 with points pt 6 ps 2.5 lw 2 lc rgb 'black' title 'label-set mean', "
       << "'means_2d.csv' every ::1 using 1:2:4 with labels noenhanced offset 0,1.3 font 'sans,8' notitle\n";
    if (plot_svg({{"features_2d.csv", pts.str()}, {"means_2d.csv", means.str()}}, s2.str(), out_dir / "features_2d.svg"))
        plots.push_back((out_dir / "features_2d.svg").string());
    if (plots.size() < 2) human << "note: gnuplot failed on some plots; the CSV files are written\n";
    return plots;
}

void print_report(std::ostream& human, index_t K, const training& t, const structure& st, const comparison& c,
                  double seconds, const fs::path& out_dir) {
    const auto row = [&](const std::string& name, const std::string& th, const std::string& tr) {
        human << "  " << std::left << std::setw(28) << name << std::setw(24) << th << tr << "\n" << std::right;
    };
    const bool have_theory = c.theory && c.theory->converged();
    const std::string undefined = "n/a (zero solution)";
    human << "\n";
    row("quantity", "theory", "trained");
    row("objective f", have_theory ? fmt((*c.theory)->f, 15) : "-", fmt(t.res.objective, 15));
    row("relative gap", "", c.gap ? fmt(*c.gap, 3) : "-");
    row("rho = ||W||_F^2", have_theory ? fmt((*c.theory)->rho, 10) : "-", fmt(st.rho, 10));
    row("ETF error (NC2 on W)", "0", st.etf_error ? fmt(*st.etf_error, 3) : undefined);
    if (st.zero) {
        for (const auto& [m, cth] : c.C_theory) row("C_" + std::to_string(m), fmt(cth, 10), undefined);
    } else {
        for (const auto& [m, cm] : st.C) {
            row("C_" + std::to_string(m), c.C_theory.count(m) ? fmt(c.C_theory.at(m), 10) : "-", fmt(cm, 10));
            row("  tag-wise residual, m = " + std::to_string(m), "0", fmt(st.residual.at(m), 3));
        }
    }
    if (st.nc) {
        row("NC1", "0", st.nc->nc1 ? fmt(*st.nc->nc1, 3) : "n/a");
        row("NC2 (feature means)", "0", st.nc->nc2_h ? fmt(*st.nc->nc2_h, 3) : "n/a");
        row("NC3", "0", st.nc->nc3 ? fmt(*st.nc->nc3, 3) : "n/a");
        // The centred NC_K is never defined (the centred label means sum to 0): not listed.
        for (const auto& [m, v] : st.nc->nc_m)
            if (m < K) row("NC_m, m = " + std::to_string(m), "0", v ? fmt(*v, 3) : "n/a");
    } else {
        row("NC metrics", "0", st.zero ? undefined : "n/a (" + st.nc_unavailable + ")");
    }
    if (have_theory) row("collapse threshold", fmt(c.theory->collapse_threshold(), 6), "(on sqrt(lambda_w lambda_h))");
    human << "  iterations " << t.res.iterations << " (" << mlnc::to_string(t.res.status) << "), " << fmt(seconds, 3)
          << " s; output in " << mlnc::detail::printable(out_dir.string()) << "\n\n";
    for (const auto& note : c.notes) human << "note: " << note << "\n";
    if (!c.within) {
        human << "verdict: OUTSIDE the theorem's assumptions (" << c.outside
              << "): no closed form to compare; structure reported above\n";
    } else if (c.verified) {
        human << "verdict: VERIFIED: trained UFM matches Theorem 1 (gap " << fmt(*c.gap, 2)
              << ((*c.theory)->trivial ? ", both at W = H = 0" : ", structure within " + fmt(tol_structure, 1)) << ")\n";
    } else {
        human << "verdict: NOT VERIFIED: ";
        for (std::size_t i = 0; i < c.failures.size(); ++i) human << (i ? "; " : "") << c.failures[i];
        human << "\n";
    }
}

nlohmann::json report_json(const training& t, const structure& st, const comparison& c, double seconds,
                           const std::vector<std::string>& plots) {
    const bool have_theory = c.theory && c.theory->converged();
    const auto null = nlohmann::json(nullptr);
    nlohmann::json j;
    j["verified"] = c.verified;
    j["within_assumptions"] = c.within;
    j["f_trained"] = t.res.objective;
    j["f_theory"] = have_theory ? nlohmann::json((*c.theory)->f) : null;
    j["rel_gap"] = c.gap ? nlohmann::json(*c.gap) : null;
    j["rho_trained"] = st.rho;
    j["rho_theory"] = have_theory ? nlohmann::json((*c.theory)->rho) : null;
    j["trivial"] = have_theory ? nlohmann::json((*c.theory)->trivial) : null;
    j["collapse_threshold"] = c.theory ? nlohmann::json(c.theory->collapse_threshold()) : null;
    j["suggested_lambda"] = c.suggested_lambda ? nlohmann::json(*c.suggested_lambda) : null;
    j["trained_size"] = st.size;
    j["trained_zero"] = st.zero;
    j["etf_error"] = opt_json(st.etf_error);
    j["tagwise_residual"] = st.zero ? null : by_m_json(st.residual);
    j["C_trained"] = st.zero ? null : by_m_json(st.C);
    j["C_theory"] = have_theory ? by_m_json(c.C_theory) : null;
    j["nc1"] = st.nc ? opt_json(st.nc->nc1) : null;
    j["nc2_w"] = st.nc ? opt_json(st.nc->nc2_w) : null;
    j["nc2_h"] = st.nc ? opt_json(st.nc->nc2_h) : null;
    j["nc3"] = st.nc ? opt_json(st.nc->nc3) : null;
    j["nc_m"] = st.nc ? by_m_json(st.nc->nc_m) : nlohmann::json::object();
    j["iterations"] = t.res.iterations;
    j["status"] = mlnc::to_string(t.res.status);
    j["seconds"] = seconds;
    j["failures"] = c.failures;
    j["notes"] = c.notes;
    j["plots"] = plots;
    return j;
}

std::function<int()> setup(CLI::App& app) {
    auto a = std::make_shared<verify_args>();
    app.add_option("--K", a->K, "Number of labels")->capture_default_str();
    app.add_option("--d", a->d, "Feature dimension (default: K)");
    auto* n_opt = app.add_option("--n", a->n, "Samples per label set of each multiplicity, e.g. 1:12,2:4,3:2")->capture_default_str();
    app.add_option("--counts", a->counts, "File of lines 'count i j k': a count per label set (outside the assumptions)")
        ->excludes(n_opt);
    app.add_option("--lambda-w", a->lambda_w, "Penalty on ||W||_F^2")->capture_default_str();
    app.add_option("--lambda-h", a->lambda_h, "Penalty on ||H||_F^2")->capture_default_str();
    app.add_option("--lambda-b", a->lambda_b, "Penalty on ||b||^2")->capture_default_str();
    app.add_option("--seed", a->seed, "Seed of the random start")->capture_default_str();
    app.add_option("--method", a->method, "lbfgs or gd")->check(CLI::IsMember({"lbfgs", "gd"}))->capture_default_str();
    app.add_option("--max-iter", a->max_iter, "Iteration budget")->check(CLI::PositiveNumber)->capture_default_str();
    app.add_option("--every", a->every, "History (and progress line) every this many iterations")
        ->check(CLI::PositiveNumber)
        ->capture_default_str();
    app.add_option("--out", a->out, "Output folder for history.csv and the SVG plots")->capture_default_str();
    add_json_flag(app, a->json);

    return [a]() -> int {
        const auto t0 = std::chrono::steady_clock::now();
        const index_t K = a->K;
        if (K < 2) throw mlnc::error("--K: must be at least 2, got " + std::to_string(K));
        if (K > std::numeric_limits<mlnc::label_t>::max())
            throw mlnc::error("--K: must be below 2^31, got " + std::to_string(K));
        const index_t d = a->d == 0 ? K : a->d;
        if (d < 1) throw mlnc::error("--d: must be at least 1");
        const mlnc::penalties lam{checked_lambda(a->lambda_w, "--lambda-w"), checked_lambda(a->lambda_h, "--lambda-h"),
                                  checked_lambda(a->lambda_b, "--lambda-b")};
        // Without both penalties Problem (4) has no minimiser: the trainer would drift forever.
        if (lam.lambda_w == 0.0) throw mlnc::error("--lambda-w: must be > 0 (with 0 the objective has no minimiser)");
        if (lam.lambda_h == 0.0) throw mlnc::error("--lambda-h: must be > 0 (with 0 the objective has no minimiser)");

        const mlnc::io::counted_samples p = build_problem(*a, K);
        auto theory = closed_form(p, K, d, lam);
        if (a->out.empty()) throw mlnc::error("--out: empty folder name");
        const fs::path out_dir(a->out);
        // The folder is made now (a bad --out fails before training) and removed again if the run
        // fails before writing into it.
        std::error_code ec;
        const bool existed = fs::exists(out_dir, ec);
        fs::create_directories(out_dir, ec);
        if (ec || !fs::is_directory(out_dir))
            throw mlnc::error("--out: cannot create folder " + mlnc::detail::printable(a->out));
        struct remove_if_unused {
            const fs::path& dir;
            bool armed;
            ~remove_if_unused() {
                std::error_code e;
                if (armed && fs::is_empty(dir, e)) fs::remove(dir, e);
            }
        } guard{out_dir, !existed};

        std::ostream& human = a->json ? std::cerr : std::cout;
        human << "mlnc verify: K = " << K << ", d = " << d << ", N = " << p.S.size() << ", lambdas (W, H, b) = ("
              << lam.lambda_w << ", " << lam.lambda_h << ", " << lam.lambda_b << "), " << a->method << ", seed "
              << a->seed << "\n";

        const training t = train(*a, p.S, d, lam);
        const structure st = analyse(t.res, p.S);
        const comparison c = compare(p, K, d, lam, std::move(theory), t.res, st);
        guard.armed = false;
        const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        const auto plots = write_outputs(out_dir, t, p.S, K, d, human);
        print_report(human, K, t, st, c, seconds, out_dir);
        if (a->json) print_json(report_json(t, st, c, seconds, plots));
        return c.within && !c.verified ? exit_check_failed : exit_ok;
    };
}

const registrar reg{{"verify", "Train the UFM and check Theorem 1 against the closed form (the main job)", 30, setup}};

}  // namespace
}  // namespace mlnc_cli
