// mlnc verify: train the UFM from a seeded random start and compare with Theorem 1's closed form
// (the main job; `make demo` runs it with its defaults). Contract: shared/spec/cli.md.

#include "command.hpp"
#include "specs.hpp"

#include <mlnc/etf.hpp>
#include <mlnc/labels.hpp>
#include <mlnc/metrics.hpp>
#include <mlnc/optimum.hpp>
#include <mlnc/tagwise.hpp>
#include <mlnc/ufm.hpp>

#include <Eigen/SVD>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iomanip>
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

// The problem to train: its samples and, when it satisfies Theorem 1's assumptions, n_m.
struct problem {
    mlnc::label_sets S;
    std::optional<std::vector<double>> n;  // n[m-1] = n_m, set when balanced and complete
};

std::vector<std::vector<index_t>> balanced_samples(index_t K, const std::vector<double>& n) {
    std::vector<std::vector<index_t>> sets;
    double total = 0;
    for (std::size_t j = 0; j < n.size(); ++j)
        if (n[j] > 0) total += n[j] * std::exp(mlnc::log_binomial(K, static_cast<index_t>(j) + 1));
    if (!(total <= static_cast<double>(max_samples)))
        throw mlnc::error("--n: the balanced sample list would hold about " + std::to_string(static_cast<long long>(total)) +
                          " samples; verify trains on at most " + std::to_string(max_samples));
    for (std::size_t j = 0; j < n.size(); ++j) {
        const auto m = static_cast<index_t>(j) + 1;
        const auto reps = static_cast<index_t>(n[j]);
        if (static_cast<double>(reps) != n[j])
            throw mlnc::error("--n: verify needs whole sample counts, got n_" + std::to_string(m) + " = " + std::to_string(n[j]));
        if (reps == 0) continue;
        const auto total_m = static_cast<std::uint64_t>(mlnc::binomial(K, m));
        for (std::uint64_t r = 0; r < total_m; ++r) {
            const auto s = mlnc::subset_unrank(r, m, K);
            for (index_t t = 0; t < reps; ++t) sets.emplace_back(s.begin(), s.end());
        }
    }
    return sets;
}

// Lines "count i j k ...": `count` samples with label set {i, j, k, ...}.
problem read_counts(const std::string& path, index_t K) {
    std::error_code ec;
    if (!fs::is_regular_file(path, ec)) throw mlnc::error("--counts: " + path + " is not a readable regular file");
    std::ifstream in(path);
    if (!in) throw mlnc::error("--counts: cannot open " + path);
    std::vector<std::vector<index_t>> sets;
    std::map<std::vector<index_t>, long long> seen;
    std::string line;
    long long total = 0;
    for (int lineno = 1; std::getline(in, line); ++lineno) {
        if (!line.empty() && line.back() == '\r') line.pop_back();
        if (line.find_first_not_of(" \t") == std::string::npos) continue;
        const std::string where = "--counts: " + path + ":" + std::to_string(lineno) + ": ";
        std::istringstream ls(line);
        long long count = 0;
        if (!(ls >> count) || count < 0) throw mlnc::error(where + "expected a non-negative count first");
        std::vector<index_t> set;
        long long k = 0;
        while (ls >> k) {
            if (k < 0 || k >= K) throw mlnc::error(where + "label " + std::to_string(k) + " out of range [0, " + std::to_string(K) + ")");
            set.push_back(k);
        }
        if (!ls.eof()) throw mlnc::error(where + "labels must be integers");
        if (set.empty()) throw mlnc::error(where + "a label set needs at least one label");
        std::sort(set.begin(), set.end());
        if (std::adjacent_find(set.begin(), set.end()) != set.end()) throw mlnc::error(where + "duplicate label in the set");
        if (!seen.emplace(set, count).second) throw mlnc::error(where + "this label set was already given");
        if (count > max_samples - total)
            throw mlnc::error("--counts: more than " + std::to_string(max_samples) + " samples");
        total += count;
        for (long long c = 0; c < count; ++c) sets.push_back(set);
    }
    if (sets.empty()) throw mlnc::error("--counts: " + path + " gives no samples");

    problem p{mlnc::label_sets::from_lists(sets, K), std::nullopt};
    // Balanced and complete within each multiplicity present?
    std::map<index_t, std::pair<long long, std::uint64_t>> by_m;  // m -> (count, number of sets)
    bool balanced = true;
    for (const auto& [set, count] : seen) {
        if (count == 0) continue;
        const auto m = static_cast<index_t>(set.size());
        auto [it, fresh] = by_m.try_emplace(m, count, 0);
        if (!fresh && it->second.first != count) balanced = false;
        ++it->second.second;
    }
    for (const auto& [m, cs] : by_m) {
        mlnc::u128 all_sets = 0;  // C(K, m); beyond 2^128 the file cannot list them all
        if (!mlnc::detail::binomial_u128(K, m, all_sets) || static_cast<mlnc::u128>(cs.second) != all_sets) balanced = false;
    }
    if (balanced) {
        std::vector<double> n(static_cast<std::size_t>(by_m.rbegin()->first), 0.0);
        for (const auto& [m, cs] : by_m) n[static_cast<std::size_t>(m - 1)] = static_cast<double>(cs.first);
        p.n = n;
    }
    return p;
}

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

// Writes a file through a temporary name, so a reader never sees a partial file.
void write_atomically(const fs::path& path, const std::string& content) {
    const fs::path tmp = path.string() + ".tmp";
    {
        std::ofstream o(tmp, std::ios::binary | std::ios::trunc);
        if (!o) throw mlnc::error("--out: cannot write " + tmp.string());
        o << content;
        if (!o.flush()) throw mlnc::error("--out: cannot write " + tmp.string());
    }
    fs::rename(tmp, path);
}

bool have_gnuplot() { return std::system("gnuplot --version > /dev/null 2>&1") == 0; }

// Runs a gnuplot script; returns false (and leaves no output file) when gnuplot fails.
bool run_gnuplot(const fs::path& dir, const std::string& script, const fs::path& svg) {
    const fs::path gp = dir / (svg.stem().string() + ".gp");
    write_atomically(gp, script);
    const fs::path tmp_svg = svg.string() + ".tmp";
    const std::string cmd = "cd '" + dir.string() + "' && gnuplot '" + gp.filename().string() + "' > /dev/null 2>&1";
    if (std::system(cmd.c_str()) != 0 || !fs::exists(tmp_svg)) {
        fs::remove(tmp_svg);
        return false;
    }
    fs::rename(tmp_svg, svg);
    return true;
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
        const index_t d = a->d == 0 ? K : a->d;
        if (d < 1) throw mlnc::error("--d: must be at least 1");
        const mlnc::penalties lam{checked_lambda(a->lambda_w, "--lambda-w"), checked_lambda(a->lambda_h, "--lambda-h"),
                                  checked_lambda(a->lambda_b, "--lambda-b")};
        // Without both penalties Problem (4) has no minimiser: the trainer would drift forever.
        if (lam.lambda_w == 0.0) throw mlnc::error("--lambda-w: must be > 0 (with 0 the objective has no minimiser)");
        if (lam.lambda_h == 0.0) throw mlnc::error("--lambda-h: must be > 0 (with 0 the objective has no minimiser)");

        problem p;
        if (!a->counts.empty()) {
            p = read_counts(a->counts, K);
        } else {
            const auto n = parse_n_spec(a->n, "--n", K);
            p.S = mlnc::label_sets::from_lists(balanced_samples(K, n), K);
            if (p.S.empty()) throw mlnc::error("--n: gives no samples");
            p.n = n;
        }
        const bool within = p.n.has_value() && d >= K - 1;
        std::optional<mlnc::optimum_result> theory;
        if (within) theory = mlnc::global_optimum(K, *p.n, lam);

        const fs::path out_dir(a->out);
        std::error_code ec;
        fs::create_directories(out_dir, ec);
        if (ec || !fs::is_directory(out_dir)) throw mlnc::error("--out: cannot create folder " + a->out);

        std::ostream& human = a->json ? std::cerr : std::cout;
        human << "mlnc verify: K = " << K << ", d = " << d << ", N = " << p.S.size() << ", lambdas (W, H, b) = ("
              << lam.lambda_w << ", " << lam.lambda_h << ", " << lam.lambda_b << "), " << a->method << ", seed "
              << a->seed << "\n";

        // History with NC metrics every `every` iterations (the observer), and a progress line.
        std::ostringstream csv;
        csv << std::setprecision(17) << "iteration,objective,gradient_norm,seconds,nc1,nc2_w,nc2_h,nc3";
        const index_t M = p.S.max_multiplicity();
        for (index_t m = 2; m <= M; ++m) csv << ",nc_m" << m;
        csv << "\n";
        const auto na = [](const std::optional<double>& v) { return v ? fmt(*v, 17) : std::string("nan"); };
        auto observer = [&](const mlnc::ufm_history_entry& h, const Eigen::Ref<const Eigen::MatrixXd>& W,
                            const Eigen::Ref<const Eigen::MatrixXd>& H, const Eigen::Ref<const Eigen::VectorXd>&) {
            mlnc::nc_metrics nc;
            bool have = true;
            try {
                nc = mlnc::compute_nc_metrics(H, p.S, W);
            } catch (const mlnc::error&) {
                have = false;  // e.g. a label without a multiplicity-1 sample (--counts)
            }
            csv << h.iteration << "," << fmt(h.objective, 17) << "," << fmt(h.gradient_norm, 17) << ","
                << fmt(h.seconds, 6) << "," << (have ? na(nc.nc1) : "nan") << "," << (have ? na(nc.nc2_w) : "nan")
                << "," << (have ? na(nc.nc2_h) : "nan") << "," << (have ? na(nc.nc3) : "nan");
            for (index_t m = 2; m <= M; ++m) {
                const auto it = nc.nc_m.find(m);
                csv << "," << (have && it != nc.nc_m.end() ? na(it->second) : "nan");
            }
            csv << "\n";
            std::cerr << "  iter " << std::setw(6) << h.iteration << "  f = " << std::setprecision(15) << h.objective
                      << "  |grad| = " << std::setprecision(3) << h.gradient_norm;
            if (have && nc.nc1) std::cerr << "  NC1 = " << std::setprecision(3) << *nc.nc1;
            std::cerr << "\n";
        };

        mlnc::ufm_options opt;
        opt.method = a->method == "gd" ? mlnc::ufm_method::gd : mlnc::ufm_method::lbfgs;
        opt.max_iterations = a->max_iter;
        opt.seed = a->seed;
        opt.history_every = a->every;
        const auto res = mlnc::train_ufm<double>(p.S, d, lam, opt, observer);

        // The trained structure.
        const double rho_tr = res.W.squaredNorm();
        const double f_tr = res.objective;
        std::optional<mlnc::nc_metrics> nc;
        try {
            nc = mlnc::compute_nc_metrics(res.H, p.S, res.W);
        } catch (const mlnc::error& e) {
            human << "note: NC metrics unavailable: " << e.what() << "\n";
        }
        const auto tw = mlnc::fit_tagwise(res.H, p.S, res.W);
        const double etf_err = mlnc::etf_deviation(res.W);

        // Theory and verdict.
        nlohmann::json j;
        std::map<index_t, double> C_th;
        std::optional<double> gap;
        bool verified = false;
        std::vector<std::string> failures;
        if (theory) {
            if (theory->status != mlnc::optimum_status::success) {
                failures.push_back("the closed-form solver did not converge");
            }
            for (std::size_t t = 0; t < theory->multiplicities.size(); ++t) C_th[theory->multiplicities[t]] = theory->C[t];
            gap = std::abs(f_tr - theory->f) / std::max(1.0, std::abs(theory->f));
            if (!(*gap <= tol_gap)) failures.push_back("objective gap " + fmt(*gap, 3) + " > " + fmt(tol_gap, 3));
            if (theory->trivial) {
                const double size = std::sqrt(rho_tr + res.H.squaredNorm() / static_cast<double>(p.S.size()));
                if (!(size <= tol_structure)) failures.push_back("theory predicts W = H = 0 but the trained size is " + fmt(size, 3));
            } else {
                const double rho_err = std::abs(rho_tr - theory->rho) / theory->rho;
                if (!(rho_err <= tol_structure)) failures.push_back("rho relative error " + fmt(rho_err, 3));
                if (!(etf_err <= tol_structure)) failures.push_back("ETF error " + fmt(etf_err, 3));
                for (const auto& [m, r] : tw.residual) {
                    if (m == K) continue;  // prototype 0: checked through the residual scale below
                    if (!(r <= tol_structure)) failures.push_back("tag-wise residual at m = " + std::to_string(m) + " is " + fmt(r, 3));
                    const double c_err = std::abs(tw.C.at(m) - C_th.at(m)) / std::abs(C_th.at(m));
                    if (!(c_err <= tol_structure))
                        failures.push_back("C_" + std::to_string(m) + " relative error " + fmt(c_err, 3));
                }
                if (tw.residual.count(K) && !(tw.residual.at(K) <= tol_structure))
                    failures.push_back("features of the full label set are not 0 (relative size " + fmt(tw.residual.at(K), 3) + ")");
            }
            verified = failures.empty();
        }
        const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

        // Outputs: history.csv, the projection data and the plots.
        write_atomically(out_dir / "history.csv", csv.str());
        {
            // Features on their top two right singular vectors (of the N x d feature matrix), and
            // the label-set means, as the paper's Figure 1 (bottom row) shows them.
            Eigen::JacobiSVD<Eigen::MatrixXd> svd(res.H.transpose(), Eigen::ComputeThinV);
            const Eigen::MatrixXd V2 = svd.matrixV().leftCols(std::min<index_t>(2, svd.matrixV().cols()));
            Eigen::MatrixXd P = res.H.transpose() * V2;
            if (P.cols() < 2) P.conservativeResize(Eigen::NoChange, 2), P.col(1).setZero();
            std::ostringstream pts, means;
            pts << std::setprecision(9) << "x,y,multiplicity\n";
            means << std::setprecision(9) << "x,y,multiplicity,label_set\n";
            for (index_t i = 0; i < p.S.size(); ++i) pts << P(i, 0) << "," << P(i, 1) << "," << p.S.multiplicity(i) << "\n";
            const auto groups = mlnc::group_by_label_set(p.S);
            for (index_t g = 0; g < groups.size(); ++g) {
                Eigen::Vector2d mu = Eigen::Vector2d::Zero();
                for (index_t i : groups.members[static_cast<std::size_t>(g)]) mu += P.row(i).transpose();
                mu /= static_cast<double>(groups.members[static_cast<std::size_t>(g)].size());
                std::string name = "{";
                for (auto k : groups.sets[g]) name += (name.size() > 1 ? "," : "") + std::to_string(k);
                means << mu.x() << "," << mu.y() << "," << groups.sets.multiplicity(g) << ",\"" << name << "}\"\n";
            }
            write_atomically(out_dir / "features_2d.csv", pts.str());
            write_atomically(out_dir / "means_2d.csv", means.str());
        }
        std::vector<std::string> plots;
        if (have_gnuplot()) {
            std::ostringstream s1;
            s1 << "set terminal svg size 900,600 dynamic enhanced font 'sans,12'\n"
               << "set output 'nc_metrics.svg.tmp'\nset datafile separator ','\nset datafile missing 'nan'\n"
               << "set logscale y\nset format y '10^{%L}'\nset xlabel 'iteration'\nset ylabel 'metric'\n"
               << "set title 'Neural-collapse metrics during training (K = " << K << ", d = " << d << ")'\n"
               << "set key outside right\nset grid\n"
               << "f(x) = (x > 1e-300 ? x : 1e-300)\n"
               << "plot 'history.csv' using 1:(f($5)) with lines lw 2 title 'NC1', "
               << "'' using 1:(f($6)) with lines lw 2 title 'NC2 (W)', '' using 1:(f($7)) with lines lw 2 title 'NC2 (H)', "
               << "'' using 1:(f($8)) with lines lw 2 title 'NC3'";
            for (index_t m = 2; m <= M; ++m) s1 << ", '' using 1:(f($" << 7 + m << ")) with lines lw 2 title 'NC_m, m = " << m << "'";
            s1 << ", '' using 1:(f($3)) with lines dt 2 lc rgb 'gray40' title '|grad f|'\n";
            if (run_gnuplot(out_dir, s1.str(), out_dir / "nc_metrics.svg")) plots.push_back((out_dir / "nc_metrics.svg").string());
            std::ostringstream s2;
            s2 << "set terminal svg size 800,800 dynamic enhanced font 'sans,11'\n"
               << "set output 'features_2d.svg.tmp'\nset datafile separator ','\n"
               << "set title 'Trained features on their top two singular directions; label-set means marked'\n"
               << "set size ratio -1\nset key outside bottom center horizontal\nset grid\n"
               << "plot ";
            for (index_t m = 1; m <= M; ++m)
                s2 << "'features_2d.csv' every ::1 using 1:($3 == " << m << " ? $2 : NaN) with points pt 7 ps 0.6 title 'samples, m = "
                   << m << "', ";
            s2 << "'means_2d.csv' every ::1 using 1:2 with points pt 6 ps 2.5 lw 2 lc rgb 'black' title 'label-set mean', "
               << "'means_2d.csv' every ::1 using 1:2:4 with labels noenhanced offset 0,1.3 font 'sans,8' notitle\n";
            if (run_gnuplot(out_dir, s2.str(), out_dir / "features_2d.svg")) plots.push_back((out_dir / "features_2d.svg").string());
            if (plots.size() < 2) human << "note: gnuplot failed on some plots; the CSV files are written\n";
        } else {
            human << "note: gnuplot not found (apt-get install gnuplot-nox): no plots, " << (out_dir / "history.csv").string()
                  << " is written\n";
        }

        // The table.
        const auto row = [&](const std::string& name, const std::string& th, const std::string& tr) {
            human << "  " << std::left << std::setw(28) << name << std::setw(24) << th << tr << "\n" << std::right;
        };
        human << "\n";
        row("quantity", "theory", "trained");
        row("objective f", theory ? fmt(theory->f, 15) : "-", fmt(f_tr, 15));
        row("relative gap", "", gap ? fmt(*gap, 3) : "-");
        row("rho = ||W||_F^2", theory ? fmt(theory->rho, 10) : "-", fmt(rho_tr, 10));
        row("ETF error (NC2 on W)", "0", fmt(etf_err, 3));
        for (const auto& [m, c] : tw.C) {
            row("C_" + std::to_string(m), C_th.count(m) ? fmt(C_th.at(m), 10) : "-", fmt(c, 10));
            row("  tag-wise residual, m = " + std::to_string(m), "0", fmt(tw.residual.at(m), 3));
        }
        if (nc) {
            row("NC1", "0", nc->nc1 ? fmt(*nc->nc1, 3) : "n/a");
            row("NC2 (feature means)", "0", nc->nc2_h ? fmt(*nc->nc2_h, 3) : "n/a");
            row("NC3", "0", nc->nc3 ? fmt(*nc->nc3, 3) : "n/a");
            // The centred NC_K is never defined (the centred label means sum to 0): not listed.
            for (const auto& [m, v] : nc->nc_m)
                if (m < K) row("NC_m, m = " + std::to_string(m), "0", v ? fmt(*v, 3) : "n/a");
        }
        human << "  iterations " << res.iterations << " (" << mlnc::to_string(res.status) << "), " << fmt(seconds, 3)
              << " s; output in " << out_dir.string() << "\n\n";
        if (!theory) {
            human << "verdict: OUTSIDE the theorem's assumptions ("
                  << (p.n ? "d < K-1" : "label sets missing or imbalanced within a multiplicity")
                  << "): no closed form to compare; structure reported above\n";
        } else if (verified) {
            human << "verdict: VERIFIED: trained UFM matches Theorem 1 (gap " << fmt(*gap, 2) << ", structure within "
                  << fmt(tol_structure, 1) << ")\n";
        } else {
            human << "verdict: NOT VERIFIED: ";
            for (std::size_t t = 0; t < failures.size(); ++t) human << (t ? "; " : "") << failures[t];
            human << "\n";
        }

        if (a->json) {
            j["verified"] = verified;
            j["within_assumptions"] = within;
            j["f_trained"] = f_tr;
            j["f_theory"] = theory ? nlohmann::json(theory->f) : nlohmann::json(nullptr);
            j["rel_gap"] = gap ? nlohmann::json(*gap) : nlohmann::json(nullptr);
            j["rho_trained"] = rho_tr;
            j["rho_theory"] = theory ? nlohmann::json(theory->rho) : nlohmann::json(nullptr);
            j["trivial"] = theory ? nlohmann::json(theory->trivial) : nlohmann::json(nullptr);
            j["etf_error"] = etf_err;
            j["tagwise_residual"] = by_m_json(tw.residual);
            j["C_trained"] = by_m_json(tw.C);
            j["C_theory"] = theory ? by_m_json(C_th) : nlohmann::json(nullptr);
            j["nc1"] = nc ? opt_json(nc->nc1) : nlohmann::json(nullptr);
            j["nc2_w"] = nc ? opt_json(nc->nc2_w) : nlohmann::json(nullptr);
            j["nc2_h"] = nc ? opt_json(nc->nc2_h) : nlohmann::json(nullptr);
            j["nc3"] = nc ? opt_json(nc->nc3) : nlohmann::json(nullptr);
            j["nc_m"] = nc ? by_m_json(nc->nc_m) : nlohmann::json::object();
            j["iterations"] = res.iterations;
            j["status"] = mlnc::to_string(res.status);
            j["seconds"] = seconds;
            j["failures"] = failures;
            j["plots"] = plots;
            print_json(j);
        }
        return theory && !verified ? exit_check_failed : exit_ok;
    };
}

const registrar reg{{"verify", "Train the UFM and check Theorem 1 against the closed form (the main job)", 30, setup}};

}  // namespace
}  // namespace mlnc_cli
