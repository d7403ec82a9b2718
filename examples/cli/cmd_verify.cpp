// mlnc verify: train the UFM from a seeded random start and compare with Theorem 1's closed form
// (the main job; `make demo` runs it with its defaults). Contract: docs/cli.md.
//
// The command in four parts, one header each: the problem and training (verify_train.hpp), the
// trained structure and its comparison with the closed form (verify_compare.hpp), the run folder's
// CSV files and plots (verify_plot.hpp), and the table, verdict and JSON (verify_report.hpp).
// This file holds the options and runs the parts in order.

#include "command.hpp"
#include "verify_compare.hpp"
#include "verify_plot.hpp"
#include "verify_report.hpp"
#include "verify_train.hpp"

#include <mlnc/error.hpp>
#include <mlnc/types.hpp>
#include <mlnc/ufm.hpp>

#include <chrono>
#include <cstdint>
#if defined(__GLIBC__)
#include <malloc.h>
#endif
#include <filesystem>
#include <functional>
#include <iostream>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <system_error>

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

struct verify_args {
    index_t K = default_K;
    index_t d = 0;  // 0: d = K
    std::string n = default_n;
    std::string counts;
    double lambda_w = 5e-3, lambda_h = 5e-3, lambda_b = 1e-2;
    std::uint64_t seed = 1;
    std::string method = "lbfgs";
    int max_iter = 20000;
    int memory = mlnc::ufm_options{}.lbfgs_memory;
    int every = 10;
    std::string out = "mlnc-verify";
    std::string dtype = "double";
    std::string backend = "cpu";
    bool json = false;
};

// glibc serves blocks above 32 MB with a fresh mmap and returns them on free, so every such
// temporary (the NC metrics' class means and scatter blocks at K = 200: ~40 MB each, every
// --every iterations) pays its page faults again; on the development VM that tripled the
// metrics' time. verify keeps freed memory in its heap instead: its peak is its largest working
// set either way.
void keep_freed_memory() {
#if defined(__GLIBC__)
    mallopt(M_MMAP_MAX, 0);
    mallopt(M_TRIM_THRESHOLD, 1 << 30);
#endif
}

int run_verify(const verify_args& a) {
    const auto t0 = std::chrono::steady_clock::now();
    keep_freed_memory();
    const index_t K = a.K;
    if (K < 2) throw mlnc::error("--K: must be at least 2, got " + std::to_string(K));
    if (K > std::numeric_limits<mlnc::label_t>::max())
        throw mlnc::error("--K: must be below 2^31, got " + std::to_string(K));
    const index_t d = a.d == 0 ? K : a.d;
    if (d < 1) throw mlnc::error("--d: must be at least 1");
    const mlnc::penalties lam{checked_lambda(a.lambda_w, "--lambda-w"), checked_lambda(a.lambda_h, "--lambda-h"),
                              checked_lambda(a.lambda_b, "--lambda-b")};
    // Without both penalties Problem (4) has no minimiser: the trainer would drift forever.
    if (lam.lambda_w == 0.0) throw mlnc::error("--lambda-w: must be > 0 (with 0 the objective has no minimiser)");
    if (lam.lambda_h == 0.0) throw mlnc::error("--lambda-h: must be > 0 (with 0 the objective has no minimiser)");

    if (a.backend == "cuda") require_cuda_device();  // before anything is printed or made
    const mlnc::io::counted_samples p = verify::build_problem(K, a.n, a.counts);
    auto theory = verify::closed_form(p, K, d, lam);
    if (a.out.empty()) throw mlnc::error("--out: empty folder name");
    const fs::path out_dir(a.out);
    // The folder is made now (a bad --out fails before training) and removed again if the run
    // fails before writing into it.
    std::error_code ec;
    const bool existed = fs::exists(out_dir, ec);
    fs::create_directories(out_dir, ec);
    if (ec || !fs::is_directory(out_dir)) throw mlnc::error("--out: cannot create folder " + mlnc::detail::printable(a.out));
    struct remove_if_unused {
        const fs::path& dir;
        bool armed;
        ~remove_if_unused() {
            std::error_code e;
            if (armed && fs::is_empty(dir, e)) fs::remove(dir, e);
        }
    } guard{out_dir, !existed};

    std::ostream& human = a.json ? std::cerr : std::cout;
    human << "mlnc verify: K = " << K << ", d = " << d << ", N = " << p.S.size() << ", lambdas (W, H, b) = ("
          << lam.lambda_w << ", " << lam.lambda_h << ", " << lam.lambda_b << "), " << a.method
          << (a.method == "lbfgs" ? " (memory " + std::to_string(a.memory) + ")" : std::string()) << ", seed " << a.seed
          << ", " << a.dtype << (a.backend == "cpu" ? std::string() : ", backend " + a.backend) << "\n";

    mlnc::ufm_options opt;
    opt.method = a.method == "gd" ? mlnc::ufm_method::gd : mlnc::ufm_method::lbfgs;
    opt.max_iterations = a.max_iter;
    opt.lbfgs_memory = a.memory;
    opt.seed = a.seed;
    opt.history_every = a.every;
    const verify::tolerances& tol = verify::tolerances_for(a.dtype);
    opt.gradient_tolerance = tol.gradient;
    const verify::training t = a.dtype == "float" ? verify::train<float>(p.S, d, lam, opt, a.backend)
                                                  : verify::train<double>(p.S, d, lam, opt, a.backend);
    const verify::structure st = verify::analyse(t.res, p.S);
    const verify::comparison c = verify::compare(p, K, d, lam, std::move(theory), t.res, st, tol);
    guard.armed = false;
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const auto plots = verify::write_outputs(out_dir, t, p.S, K, d, human);
    verify::print_report(human, K, t, st, c, seconds, out_dir);
    if (a.json) print_json(verify::report_json(t, st, c, seconds, plots));
    return c.within && !c.verified ? exit_check_failed : exit_ok;
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
    app.add_option("--memory", a->memory, "L-BFGS correction pairs kept (lbfgs)")
        ->check(CLI::Range(1, 100))
        ->capture_default_str();
    app.add_option("--every", a->every, "History (and progress line) every this many iterations")
        ->check(CLI::PositiveNumber)
        ->capture_default_str();
    app.add_option("--out", a->out, "Output folder for history.csv and the SVG plots")->capture_default_str();
    app.add_option("--dtype", a->dtype, "Scalar type of the training: double or float (the verdict's tolerances follow it)")
        ->check(CLI::IsMember({"double", "float"}))
        ->capture_default_str();
    app.add_option("--backend", a->backend,
                   "cpu, or cuda: the objective on the GPU (needs a build with the CUDA backend); the NC metrics "
                   "stay on the CPU")
        ->check(CLI::IsMember({"cpu", "cuda"}))
        ->capture_default_str();
    add_json_flag(app, a->json);
    return [a] { return run_verify(*a); };
}

const registrar reg{{"verify", "Train the UFM and check Theorem 1 against the closed form (the main job)", 30, setup}};

}  // namespace
}  // namespace mlnc_cli
