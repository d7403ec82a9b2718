// mlnc objective: evaluates Problem (4) (PAL-CE, or PAL-N with --normalized) at given W, H, b,
// and optionally writes its gradients (cli.md, "mlnc objective").

#include "command.hpp"
#include "cuda_objective.hpp"

#include <mlnc/io/atomic_write.hpp>
#include <mlnc/io/label_file.hpp>
#include <mlnc/io/npy.hpp>
#include <mlnc/objective.hpp>
#include <mlnc/pal.hpp>

#include <array>
#include <cmath>
#include <filesystem>
#include <functional>
#include <iomanip>
#include <iostream>
#include <memory>
#include <sstream>
#include <string>
#include <system_error>
#include <type_traits>
#include <utility>

namespace {

namespace fs = std::filesystem;

struct objective_options {
    std::string W, H, b, labels, grad_out;
    std::string dtype = "auto";
    std::string backend = "cpu";
    double lambda_w = 0.0, lambda_h = 0.0, lambda_b = 0.0;
    bool normalized = false;
    bool json = false;
};

// Runs read(), prefixing any error with the option it came from ("--H <path>: ...").
template <class Read>
auto from_option(const char* option, Read&& read) {
    try {
        return read();
    } catch (const mlnc::error& e) {
        throw mlnc::error(std::string(option) + " " + e.what());
    }
}

// Reads a float array as T: float32 files as float32, float64 files as float64; a float64 file
// read as float (only on --dtype float) is read in double and rounded, as asked.
template <class T, class Read>
auto read_as(const char* option, const std::string& path, Read&& read) {
    return from_option(option, [&] {
        if constexpr (std::is_same_v<T, float>) {
            if (mlnc::io::read_npy_dtype(path) == "<f8") {
                auto x = read(double{}).template cast<float>().eval();
                if (!x.allFinite())
                    throw mlnc::error(mlnc::detail::printable(path) +
                                      ": values beyond the range of float32; use --dtype double");
                return x;
            }
        }
        return read(T{});
    });
}

const char* dtype_name(float) { return "float32"; }
const char* dtype_name(double) { return "float64"; }

// The computation in T (the dtype of the inputs, or --dtype).
template <class T>
int run_objective_as(const objective_options& o, const mlnc::penalties& lam) {
    using mat = mlnc::matrix<T>;
    using vec = mlnc::vector<T>;
    mat W = read_as<T>("--W", o.W, [&](auto t) { return mlnc::io::read_matrix<decltype(t)>(o.W, "W"); });
    const Eigen::Index K = W.rows(), d = W.cols();
    if (K < 2)
        throw mlnc::error("--W " + mlnc::detail::printable(o.W) + ": W has " + std::to_string(K) + " row; need K >= 2 labels (W is K x d)");

    mat H = read_as<T>("--H", o.H, [&](auto t) { return mlnc::io::read_features<decltype(t)>(o.H, "H"); });
    const Eigen::Index N = H.cols();
    if (H.rows() != d)
        throw mlnc::error("--H " + mlnc::detail::printable(o.H) + ": H is " + std::to_string(N) + " x " + std::to_string(H.rows()) +
                          " (N x d) but W is " + std::to_string(K) + " x " + std::to_string(d) +
                          " (K x d): the feature dimensions differ");

    vec b = vec::Zero(K);
    if (!o.b.empty()) {
        b = read_as<T>("--b", o.b, [&](auto t) { return mlnc::io::read_vector<decltype(t)>(o.b, "b"); });
        if (b.size() != K)
            throw mlnc::error("--b " + mlnc::detail::printable(o.b) + ": b has " + std::to_string(b.size()) + " entries, expected K = " +
                              std::to_string(K) + " (rows of W)");
    }

    mlnc::label_sets S = from_option("--labels", [&] { return mlnc::io::read_labels(o.labels, K); });
    if (S.size() != N)
        throw mlnc::error("--labels " + mlnc::detail::printable(o.labels) + ": " + std::to_string(S.size()) + " label sets but H has N = " +
                          std::to_string(N) + " samples");

    mlnc::objective_value<T> v;
    mat dW, dH;
    vec db;
    const auto variant = o.normalized ? mlnc::pal_variant::pal_n : mlnc::pal_variant::pal;
    if (o.backend == "cuda") {
        const bool grad = !o.grad_out.empty();
        v = mlnc_cli::cuda_objective<T>(W, H, b, S, lam, variant, grad ? &dW : nullptr, grad ? &dH : nullptr,
                                        grad ? &db : nullptr);
    } else {
        mlnc::pal_objective<T> f(std::move(S), lam, variant);
        if (o.grad_out.empty()) {
            v = f.evaluate(W, H, b);
        } else {
            dW.resize(K, d);
            dH.resize(d, N);
            db.resize(K);
            v = f.evaluate(W, H, b, dW, dH, db);
        }
    }
    // The inputs are no longer needed: their memory goes back before the gradients are written
    // (each write holds a C-order copy of its array), which bounds the peak at large K.
    W.resize(0, 0);
    H.resize(0, 0);
    if (!v.ok())
        throw mlnc::error("the logits W H + b overflow " + std::string(dtype_name(T{})) + " at (label " +
                          std::to_string(v.overflow_row) + ", sample " + std::to_string(v.overflow_col) +
                          "): inputs too large" + (std::is_same_v<T, float> ? " (try --dtype double)" : ""));
    if (!std::isfinite(v.total) || !dW.allFinite() || !dH.allFinite() || !db.allFinite())
        throw mlnc::error("the objective or its gradient overflows " + std::string(dtype_name(T{})) +
                          " (inputs too large)" + (std::is_same_v<T, float> ? "; try --dtype double" : ""));

    if (!o.grad_out.empty()) {
        const fs::path dir(o.grad_out);
        std::error_code ec;
        fs::create_directories(dir, ec);
        if (ec) throw mlnc::error("--grad-out " + mlnc::detail::printable(o.grad_out) + ": cannot create the directory (" + ec.message() + ")");
        // All three are written under temporary names first and renamed only when every write
        // succeeded, so a failure never leaves a mix of new and old gradient files.
        const std::array<std::string, 3> names{"dW.npy", "dH.npy", "db.npy"};
        for (const auto& name : names)
            if (fs::is_directory(dir / name, ec))
                throw mlnc::error("--grad-out " + mlnc::detail::printable((dir / name).string()) + ": is a directory; cannot write the gradient there");
        mlnc::io::staged_files staged;
        mlnc::io::write_matrix(staged.stage(dir / names[0]), dW);
        mlnc::io::write_features(staged.stage(dir / names[1]), dH);
        mlnc::io::write_vector(staged.stage(dir / names[2]), db);
        staged.commit();
    }

    if (o.json) {
        mlnc_cli::print_json({{"n", N},
                              {"k", K},
                              {"d", d},
                              {"dtype", dtype_name(T{})},
                              {"loss", static_cast<double>(v.loss)},
                              {"objective", static_cast<double>(v.total)}});
    } else {
        // 15 significant digits for reading; --json gives the exact values.
        std::cout << std::setprecision(15)
                  << (o.normalized ? "PAL-N" : "PAL-CE") << " objective, N = " << N << " samples, K = " << K
                  << " labels, d = " << d << ", " << dtype_name(T{}) << "\n"
                  << "  loss      " << v.loss << "\n"
                  << "  penalty   " << v.penalty << "\n"
                  << "  objective " << v.total << "\n";
        if (!o.grad_out.empty())
            std::cout << "  gradients " << mlnc::detail::printable((fs::path(o.grad_out) / "{dW,dH,db}.npy").string())
                      << "\n";
        std::cout << std::flush;
    }
    return mlnc_cli::exit_ok;
}

int run_objective(const objective_options& o) {
    const mlnc::penalties lam{mlnc_cli::checked_lambda(o.lambda_w, "--lambda-w"),
                              mlnc_cli::checked_lambda(o.lambda_h, "--lambda-h"),
                              mlnc_cli::checked_lambda(o.lambda_b, "--lambda-b")};
    if (!o.grad_out.empty()) {
        std::error_code ec;
        if (fs::exists(o.grad_out, ec) && !fs::is_directory(o.grad_out, ec))
            throw mlnc::error("--grad-out " + mlnc::detail::printable(o.grad_out) + ": exists and is not a directory");
    }
    // auto: float32 when every float input is float32 (nothing is widened or narrowed), else float64.
    bool all_float32 = true;
    for (const auto& [option, path] : {std::pair<const char*, const std::string*>{"--W", &o.W}, {"--H", &o.H}, {"--b", &o.b}}) {
        if (path->empty()) continue;
        all_float32 = all_float32 && from_option(option, [&] { return mlnc::io::read_npy_dtype(*path); }) == "<f4";
    }
    const bool use_float = o.dtype == "float" || (o.dtype == "auto" && all_float32);
    return use_float ? run_objective_as<float>(o, lam) : run_objective_as<double>(o, lam);
}

const mlnc_cli::registrar reg{mlnc_cli::command{
    "objective", "Evaluate Problem (4) (PAL-CE or PAL-N) and its gradients at given W, H, b", 10,
    [](CLI::App& app) -> std::function<int()> {
        auto o = std::make_shared<objective_options>();
        app.add_option("--W", o->W, "Classifier W, K x d (.npy, float32/float64)")->required()->type_name("FILE");
        app.add_option("--H", o->H, "Features H, N x d, one row per sample (.npy, float32/float64)")
            ->required()
            ->type_name("FILE");
        app.add_option("--b", o->b, "Bias b, K entries (.npy); default 0")->type_name("FILE");
        app.add_option("--labels", o->labels, "Label sets: text (one line of indices per sample) or N x K multi-hot .npy")
            ->required()
            ->type_name("FILE");
        app.add_option("--lambda-w", o->lambda_w, "Penalty weight on ||W||_F^2")->capture_default_str()->type_name("X");
        app.add_option("--lambda-h", o->lambda_h, "Penalty weight on ||H||_F^2")->capture_default_str()->type_name("X");
        app.add_option("--lambda-b", o->lambda_b, "Penalty weight on ||b||^2")->capture_default_str()->type_name("X");
        app.add_flag("--normalized", o->normalized, "PAL-N: divide each sample's loss by its number of labels");
        app.add_option("--grad-out", o->grad_out, "Write DIR/dW.npy (K x d), DIR/dH.npy (N x d), DIR/db.npy (K)")
            ->type_name("DIR");
        app.add_option("--dtype", o->dtype,
                       "Compute in float, double, or auto: float when W, H (and b) are all float32 files, else double")
            ->check(CLI::IsMember({"auto", "float", "double"}))
            ->capture_default_str()
            ->type_name("T");
        app.add_option("--backend", o->backend, "cpu, or cuda (the GPU; needs a build with the CUDA backend)")
            ->check(CLI::IsMember({"cpu", "cuda"}))
            ->capture_default_str()
            ->type_name("B");
        mlnc_cli::add_json_flag(app, o->json);
        return [o] { return run_objective(*o); };
    }}};

}  // namespace
