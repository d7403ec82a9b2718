// `mlnc objective` end to end: the built program against an independent reference written here
// with plain loops in long double, straight from the definition in theory.md.

#include <mlnc/io/npy.hpp>

#include <catch2/catch.hpp>

#include "test_support.hpp"
#include <nlohmann/json.hpp>

#ifndef MLNC_CLI_PATH

TEST_CASE("cli objective: the mlnc program was not built", "[cli][objective]") {
    WARN("MLNC_CLI_PATH is not defined (examples off): skipping the tests of `mlnc objective`");
}

#else

#include "cli_runner.hpp"

#include <sys/wait.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <numeric>
#include <random>
#include <sstream>
#include <string>
#include <vector>

namespace fs = std::filesystem;
using namespace std::string_literals;
using Catch::Matchers::Contains;
using Catch::Matchers::StartsWith;

using temp_dir = mlnc_test::scratch_dir;
using mlnc_test::read_bytes;
using mlnc_test::write_bytes;

namespace {

// p in single quotes for the shell (test paths hold no quote).
std::string q(const fs::path& p) {
    std::string s(1, '\'');
    s += p.string();
    s += '\'';
    return s;
}

struct cli_result {
    int code;
    std::string out, err;
};

// Runs `mlnc objective ARGS` with stdout and stderr captured in files of dir.
cli_result run_objective(const temp_dir& dir, const std::string& args) {
    const fs::path out = dir / "stdout.txt", err = dir / "stderr.txt";
    const std::string cmd = q(MLNC_CLI_PATH) + " objective " + args + " >" + q(out) + " 2>" + q(err);
    const int status = std::system(cmd.c_str());
    const int code = (status != -1 && WIFEXITED(status)) ? WEXITSTATUS(status) : -1;
    return {code, read_bytes(out), read_bytes(err)};
}

// A .npy file built by hand (version 1.0, unpadded header).
std::string npy_bytes(const std::string& descr, const std::string& shape, const std::string& data,
                      const std::string& fortran = "False") {
    const std::string h =
        "{'descr': '" + descr + "', 'fortran_order': " + fortran + ", 'shape': " + shape + ", }\n";
    std::string out = "\x93NUMPY\x01\x00"s;
    out += static_cast<char>(h.size() & 0xff);
    out += static_cast<char>(h.size() >> 8);
    return out + h + data;
}

template <class T>
std::string raw_bytes(const std::vector<T>& v) {
    return std::string(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(T));
}

// The problem in the files' layout: W[k * d + j] (K x d), H[i * d + j] (N x d), b[k].
struct problem {
    int K = 0, d = 0, N = 0;
    std::vector<double> W, H, b;
    std::vector<std::vector<int>> S;
    double lw = 0, lh = 0, lb = 0;
    bool normalized = false;
};

using ld = long double;

// f(W, H, b) from the definition: (1/N) sum_i sum_{k in S_i} -log softmax(z_i)_k (divided by
// |S_i| for PAL-N) plus the three penalties. Parameters in long double so that finite
// differences can perturb them.
struct reference {
    const problem& P;
    ld loss(const std::vector<ld>& W, const std::vector<ld>& H, const std::vector<ld>& b) const {
        ld total = 0;
        for (int i = 0; i < P.N; ++i) {
            std::vector<ld> z(static_cast<std::size_t>(P.K));
            for (int k = 0; k < P.K; ++k) {
                z[k] = b[k];
                for (int j = 0; j < P.d; ++j) z[k] += W[k * P.d + j] * H[i * P.d + j];
            }
            const ld mx = *std::max_element(z.begin(), z.end());
            ld se = 0;
            for (const ld zk : z) se += std::exp(zk - mx);
            const ld lse = mx + std::log(se);
            ld li = 0;
            for (const int k : P.S[i]) li += -(z[k] - lse);
            if (P.normalized) li /= static_cast<ld>(P.S[i].size());
            total += li;
        }
        return total / P.N;
    }
    ld objective(const std::vector<ld>& W, const std::vector<ld>& H, const std::vector<ld>& b) const {
        const auto sq = [](const std::vector<ld>& v) {
            ld s = 0;
            for (const ld x : v) s += x * x;
            return s;
        };
        return loss(W, H, b) + P.lw * sq(W) + P.lh * sq(H) + P.lb * sq(b);
    }
};

std::vector<ld> widen(const std::vector<double>& v) { return {v.begin(), v.end()}; }

// Analytic gradients written out independently of the library: dLoss/dz_k for sample i is
// (m p_k - [k in S]) / N for PAL and (p_k - [k in S] / m) / N for PAL-N, with p = softmax(z).
struct gradients {
    std::vector<ld> dW, dH, db;
};
gradients reference_gradients(const problem& P) {
    gradients g{std::vector<ld>(P.W.size()), std::vector<ld>(P.H.size()), std::vector<ld>(P.b.size())};
    for (int i = 0; i < P.N; ++i) {
        std::vector<ld> z(static_cast<std::size_t>(P.K));
        for (int k = 0; k < P.K; ++k) {
            z[k] = P.b[k];
            for (int j = 0; j < P.d; ++j) z[k] += static_cast<ld>(P.W[k * P.d + j]) * P.H[i * P.d + j];
        }
        const ld mx = *std::max_element(z.begin(), z.end());
        ld se = 0;
        for (const ld zk : z) se += std::exp(zk - mx);
        const ld m = static_cast<ld>(P.S[i].size());
        for (int k = 0; k < P.K; ++k) {
            const ld p = std::exp(z[k] - mx) / se;
            const bool in = std::find(P.S[i].begin(), P.S[i].end(), k) != P.S[i].end();
            const ld dz = (P.normalized ? p - (in ? 1 / m : 0) : m * p - (in ? 1 : 0)) / P.N;
            g.db[k] += dz;
            for (int j = 0; j < P.d; ++j) {
                g.dW[k * P.d + j] += dz * P.H[i * P.d + j];
                g.dH[i * P.d + j] += dz * P.W[k * P.d + j];
            }
        }
    }
    for (std::size_t t = 0; t < g.dW.size(); ++t) g.dW[t] += 2 * P.lw * static_cast<ld>(P.W[t]);
    for (std::size_t t = 0; t < g.dH.size(); ++t) g.dH[t] += 2 * P.lh * static_cast<ld>(P.H[t]);
    for (std::size_t t = 0; t < g.db.size(); ++t) g.db[t] += 2 * P.lb * static_cast<ld>(P.b[t]);
    return g;
}

// Central differences of the reference objective, one parameter at a time.
gradients finite_differences(const problem& P) {
    const reference ref{P};
    std::vector<ld> W = widen(P.W), H = widen(P.H), b = widen(P.b);
    const ld h = 1e-6L;
    const auto diff = [&](std::vector<ld>& x) {
        std::vector<ld> g(x.size());
        for (std::size_t t = 0; t < x.size(); ++t) {
            const ld x0 = x[t];
            x[t] = x0 + h;
            const ld fp = ref.objective(W, H, b);
            x[t] = x0 - h;
            const ld fm = ref.objective(W, H, b);
            x[t] = x0;
            g[t] = (fp - fm) / (2 * h);
        }
        return g;
    };
    gradients g;
    g.dW = diff(W);
    g.dH = diff(H);
    g.db = diff(b);
    return g;
}

problem random_problem(int K, int d, int N, double scale, std::uint64_t seed) {
    std::mt19937_64 rng(seed);
    std::normal_distribution<double> nd(0.0, scale);
    problem P;
    P.K = K;
    P.d = d;
    P.N = N;
    P.W.resize(static_cast<std::size_t>(K * d));
    P.H.resize(static_cast<std::size_t>(N * d));
    P.b.resize(static_cast<std::size_t>(K));
    for (auto* v : {&P.W, &P.H, &P.b})
        for (double& x : *v) x = nd(rng);
    // Every multiplicity 1..K (K included) appears; sets are random.
    for (int i = 0; i < N; ++i) {
        std::vector<int> all(static_cast<std::size_t>(K));
        std::iota(all.begin(), all.end(), 0);
        std::shuffle(all.begin(), all.end(), rng);
        all.resize(static_cast<std::size_t>(1 + i % K));
        P.S.push_back(all);
    }
    return P;
}

void write_text_labels(const fs::path& p, const std::vector<std::vector<int>>& S) {
    std::string s;
    for (const auto& set : S) {
        for (std::size_t j = 0; j < set.size(); ++j) {
            if (j > 0) s += ' ';
            s += std::to_string(set[j]);
        }
        s += '\n';
    }
    write_bytes(p, s);
}

void write_multi_hot(const fs::path& p, const std::vector<std::vector<int>>& S, int K) {
    std::vector<double> y(S.size() * static_cast<std::size_t>(K), 0.0);
    for (std::size_t i = 0; i < S.size(); ++i)
        for (const int k : S[i]) y[i * static_cast<std::size_t>(K) + static_cast<std::size_t>(k)] = 1.0;
    mlnc::io::write_npy(p, y.data(), {static_cast<std::int64_t>(S.size()), K});
}

std::string lambda_args(const problem& P) {
    const auto num = [](double v) {
        std::ostringstream s;
        s.precision(17);
        s << v;
        return s.str();
    };
    return " --lambda-w " + num(P.lw) + " --lambda-h " + num(P.lh) + " --lambda-b " + num(P.lb) +
           (P.normalized ? " --normalized" : "");
}

// |got - want| <= rel * (|want| + scale)
void check_close(const std::vector<double>& got, const std::vector<ld>& want, ld rel, const char* what) {
    REQUIRE(got.size() == want.size());
    ld scale = 0;
    for (const ld w : want) scale = std::max(scale, std::fabs(w));
    for (std::size_t t = 0; t < got.size(); ++t) {
        INFO(what << "[" << t << "]: got " << got[t] << ", want " << static_cast<double>(want[t]));
        CHECK(std::fabs(static_cast<ld>(got[t]) - want[t]) <= rel * (std::fabs(want[t]) + scale));
    }
}

enum class label_format { text, multi_hot };

// Writes the problem's files, runs the program with --json and --grad-out, and checks everything
// against the reference.
void check_against_reference(const problem& P, label_format fmt, bool with_b, bool h_as_float32) {
    temp_dir dir;
    mlnc::io::write_npy(dir / "W.npy", P.W.data(), {P.K, P.d});
    if (h_as_float32) {
        std::vector<float> h32(P.H.begin(), P.H.end());
        write_bytes(dir / "H.npy", npy_bytes("<f4", "(" + std::to_string(P.N) + ", " + std::to_string(P.d) + ")",
                                             raw_bytes(h32)));
    } else {
        mlnc::io::write_npy(dir / "H.npy", P.H.data(), {P.N, P.d});
    }
    mlnc::io::write_npy(dir / "b.npy", P.b.data(), {P.K});
    const fs::path labels = dir / (fmt == label_format::text ? "labels.txt" : "labels.npy");
    if (fmt == label_format::text) write_text_labels(labels, P.S);
    else write_multi_hot(labels, P.S, P.K);

    // What the program sees: b = 0 without --b, H rounded to float32 for a float32 file.
    problem R = P;
    if (!with_b) std::fill(R.b.begin(), R.b.end(), 0.0);
    if (h_as_float32)
        for (double& x : R.H) x = static_cast<double>(static_cast<float>(x));

    const fs::path grad = dir / "grad" / "nested";
    const cli_result r = run_objective(dir, "--W " + q(dir / "W.npy") + " --H " + q(dir / "H.npy") +
                                                (with_b ? " --b " + q(dir / "b.npy") : "") + " --labels " +
                                                q(labels) + lambda_args(P) + " --grad-out " + q(grad) + " --json");
    INFO("stderr: " << r.err);
    REQUIRE(r.code == 0);
    const nlohmann::json j = nlohmann::json::parse(r.out);
    CHECK(j.size() == 6);
    CHECK(j.at("dtype") == "float64");  // W (and b) are float64 files: computed in float64
    CHECK(j.at("n").get<int>() == P.N);
    CHECK(j.at("k").get<int>() == P.K);
    CHECK(j.at("d").get<int>() == P.d);
    REQUIRE(j.at("n").is_number_integer());

    const reference ref{R};
    const ld loss = ref.loss(widen(R.W), widen(R.H), widen(R.b));
    const ld objective = ref.objective(widen(R.W), widen(R.H), widen(R.b));
    const double got_loss = j.at("loss").get<double>(), got_objective = j.at("objective").get<double>();
    INFO("loss " << got_loss << " vs " << static_cast<double>(loss) << ", objective " << got_objective << " vs "
                 << static_cast<double>(objective));
    CHECK(std::fabs(got_loss - loss) <= 1e-12L * std::fabs(loss));
    CHECK(std::fabs(got_objective - objective) <= 1e-12L * std::fabs(objective));

    const mlnc::io::npy_array dW = mlnc::io::read_npy(grad / "dW.npy");
    const mlnc::io::npy_array dH = mlnc::io::read_npy(grad / "dH.npy");
    const mlnc::io::npy_array db = mlnc::io::read_npy(grad / "db.npy");
    CHECK(dW.dtype == "<f8");
    CHECK(dH.dtype == "<f8");
    CHECK(db.dtype == "<f8");
    CHECK(dW.shape == std::vector<std::int64_t>{P.K, P.d});
    CHECK(dH.shape == std::vector<std::int64_t>{P.N, P.d});
    CHECK(db.shape == std::vector<std::int64_t>{P.K});

    const gradients g = reference_gradients(R);
    check_close(dW.data, g.dW, 1e-12L, "dW");
    check_close(dH.data, g.dH, 1e-12L, "dH");
    check_close(db.data, g.db, 1e-12L, "db");
    const gradients fd = finite_differences(R);
    check_close(dW.data, fd.dW, 1e-8L, "dW (finite differences)");
    check_close(dH.data, fd.dH, 1e-8L, "dH (finite differences)");
    check_close(db.data, fd.db, 1e-8L, "db (finite differences)");
}

}  // namespace

TEST_CASE("cli objective: value and gradients match an independent reference", "[cli][objective]") {
    problem P = random_problem(5, 4, 20, 1.0, 42);
    P.lw = 1e-3;
    P.lh = 2.5e-3;
    P.lb = 7e-3;
    SECTION("PAL-CE, text labels") { check_against_reference(P, label_format::text, true, false); }
    SECTION("PAL-N (--normalized)") {
        P.normalized = true;
        check_against_reference(P, label_format::text, true, false);
    }
    SECTION("no --b, multi-hot .npy labels, no penalties") {
        P.lw = P.lh = P.lb = 0;
        check_against_reference(P, label_format::multi_hot, false, false);
    }
    SECTION("float32 features") { check_against_reference(P, label_format::text, true, true); }
    SECTION("large logits") {
        problem Q = random_problem(6, 3, 18, 8.0, 7);
        Q.lh = 1e-4;
        check_against_reference(Q, label_format::text, true, false);
    }
}

TEST_CASE("cli objective: human-readable summary without --json", "[cli][objective]") {
    temp_dir dir;
    const problem P = random_problem(3, 2, 6, 1.0, 3);
    mlnc::io::write_npy(dir / "W.npy", P.W.data(), {P.K, P.d});
    mlnc::io::write_npy(dir / "H.npy", P.H.data(), {P.N, P.d});
    write_text_labels(dir / "l.txt", P.S);
    const cli_result r = run_objective(dir, "--W " + q(dir / "W.npy") + " --H " + q(dir / "H.npy") + " --labels " +
                                                q(dir / "l.txt"));
    REQUIRE(r.code == 0);
    CHECK(r.err.empty());
    CHECK_THAT(r.out, StartsWith("PAL-CE objective, N = 6 samples, K = 3 labels, d = 2, float64\n"));
    CHECK_THAT(r.out, Contains("  objective "));
    CHECK(std::count(r.out.begin(), r.out.end(), '\n') == 4);
}

TEST_CASE("cli objective --backend cuda: the GPU's value, or exit 2 with one line saying why not", "[cli][objective]") {
    temp_dir dir;
    const problem P = random_problem(7, 3, 40, 1.0, 11);
    mlnc::io::write_npy(dir / "W.npy", P.W.data(), {P.K, P.d});
    mlnc::io::write_npy(dir / "H.npy", P.H.data(), {P.N, P.d});
    write_text_labels(dir / "l.txt", P.S);
    const std::string args = "--W " + q(dir / "W.npy") + " --H " + q(dir / "H.npy") + " --labels " + q(dir / "l.txt") +
                             " --lambda-w 0.001 --json";
    const cli_result cpu = run_objective(dir, args);
    REQUIRE(cpu.code == 0);
    const cli_result gpu = run_objective(dir, args + " --backend cuda");
    if (gpu.code == 0) {  // a build with CUDA on a machine with a GPU
        const double a = nlohmann::json::parse(gpu.out)["objective"].get<double>();
        const double b = nlohmann::json::parse(cpu.out)["objective"].get<double>();
        CHECK(std::abs(a - b) <= 1e-12 * std::abs(b));
    } else {  // no CUDA in this build, or no usable device
        CHECK(gpu.code == 2);
        CHECK(gpu.out.empty());
        CHECK_THAT(gpu.err, StartsWith("mlnc objective: --backend cuda: "));
        CHECK(std::count(gpu.err.begin(), gpu.err.end(), '\n') == 1);
    }
}

TEST_CASE("cli objective: bad input exits 2 with one line on stderr and writes nothing", "[cli][objective]") {
    temp_dir dir;
    const problem P = random_problem(4, 3, 8, 1.0, 11);
    const fs::path W = dir / "W.npy", H = dir / "H.npy", b = dir / "b.npy", L = dir / "l.txt";
    mlnc::io::write_npy(W, P.W.data(), {P.K, P.d});
    mlnc::io::write_npy(H, P.H.data(), {P.N, P.d});
    mlnc::io::write_npy(b, P.b.data(), {P.K});
    write_text_labels(L, P.S);
    const std::string shape_W = "(" + std::to_string(P.K) + ", " + std::to_string(P.d) + ")";
    const std::string shape_H = "(" + std::to_string(P.N) + ", " + std::to_string(P.d) + ")";

    // Broken variants of the inputs.
    const fs::path bad = dir / "bad.npy", bad_labels = dir / "bad.txt";
    const std::string H_bytes = read_bytes(H);
    std::vector<double> H_nan = P.H;
    H_nan[5] = std::nan("");
    std::vector<int> W_int(P.W.size(), 1);
    std::vector<double> wide_H(static_cast<std::size_t>(P.N * (P.d + 1)), 0.5);
    std::vector<double> long_b(static_cast<std::size_t>(P.K + 1), 0.5);

    struct bad_case {
        std::string name;
        std::function<void()> prepare;
        std::string args;     // the arguments, with {W} {H} {b} {L} standing for the good files
        std::string mention;  // what stderr must mention
    };
    const std::string good = "--W {W} --H {H} --b {b} --labels {L}";
    const auto with = [&](const std::string& key, const fs::path& p) {
        std::string s = good;
        s.replace(s.find(key), key.size(), q(p));
        return s;
    };
    const std::vector<bad_case> cases{
        {"bad magic", [&] { write_bytes(bad, "this is not a numpy file"); }, with("{W}", bad), "bad magic"},
        {"truncated", [&] { write_bytes(bad, H_bytes.substr(0, H_bytes.size() - 5)); }, with("{H}", bad),
         "truncated data"},
        {"fortran order", [&] { write_bytes(bad, npy_bytes("<f8", shape_W, raw_bytes(P.W), "True")); },
         with("{W}", bad), "fortran_order"},
        {"big-endian", [&] { write_bytes(bad, npy_bytes(">f8", shape_H, raw_bytes(P.H))); }, with("{H}", bad),
         "big-endian"},
        {"integer W", [&] { write_bytes(bad, npy_bytes("<i4", shape_W, raw_bytes(W_int))); }, with("{W}", bad),
         "dtype '<i4'"},
        {"d mismatch",
         [&] { mlnc::io::write_npy(bad, wide_H.data(), {P.N, P.d + 1}); }, with("{H}", bad),
         "feature dimensions differ"},
        {"b size", [&] { mlnc::io::write_npy(bad, long_b.data(), {P.K + 1}); }, with("{b}", bad), "expected K = 4"},
        {"b 2-D", [&] { mlnc::io::write_npy(bad, P.b.data(), {2, 2}); }, with("{b}", bad), "1-D"},
        {"label out of range", [&] { write_bytes(bad_labels, "0\n1 4\n"); }, with("{L}", bad_labels),
         ":2: label index 4 out of range [0, 4)"},
        {"empty label line", [&] { write_bytes(bad_labels, "0\n\n1\n"); }, with("{L}", bad_labels), ":2: empty line"},
        {"label count", [&] { write_bytes(bad_labels, "0\n1\n"); }, with("{L}", bad_labels),
         "2 label sets but H has N = 8 samples"},
        {"multi-hot K", [&] { write_multi_hot(bad_labels, P.S, P.K + 1); }, with("{L}", bad_labels),
         "expected K = 4"},
        {"missing W", [] {}, with("{W}", dir / "nope.npy"), "no such file"},
        {"missing labels", [] {}, with("{L}", dir / "nope.txt"), "no such file"},
        {"NaN in H", [&] { mlnc::io::write_npy(bad, H_nan.data(), {P.N, P.d}); }, with("{H}", bad),
         "H contains NaN or Inf"},
        {"negative lambda", [] {}, good + " --lambda-h -1", "--lambda-h"},
        {"NaN lambda", [] {}, good + " --lambda-w nan", "--lambda-w"},
        {"non-numeric lambda", [] {}, good + " --lambda-b abc", "--lambda-b"},
        {"missing option", [] {}, "--W {W} --H {H}", "--labels"},
        {"unknown option", [] {}, good + " --frobnicate", "frobnicate"},
    };
    for (const auto& c : cases) {
        SECTION(c.name) {
            c.prepare();
            std::string args = c.args;
            for (const auto& [key, p] : {std::pair{"{W}"s, W}, {"{H}"s, H}, {"{b}"s, b}, {"{L}"s, L}})
                if (const auto at = args.find(key); at != std::string::npos) args.replace(at, key.size(), q(p));
            const fs::path grad = dir / "grad";
            const cli_result r = run_objective(dir, args + " --grad-out " + q(grad) + " --json");
            INFO("stderr: " << r.err);
            CHECK(r.code == 2);
            CHECK(r.out.empty());
            CHECK_THAT(r.err, StartsWith("mlnc objective: "));
            CHECK_THAT(r.err, Contains(c.mention));
            CHECK(std::count(r.err.begin(), r.err.end(), '\n') == 1);
            CHECK(r.err.back() == '\n');
            CHECK_FALSE(fs::exists(grad));
        }
    }
    SECTION("an existing --grad-out folder stays empty") {
        const fs::path grad = dir / "existing";
        fs::create_directory(grad);
        const cli_result r = run_objective(dir, "--W " + q(W) + " --H " + q(H) + " --labels " + q(L) +
                                                    " --lambda-w -0.5 --grad-out " + q(grad));
        CHECK(r.code == 2);
        CHECK(fs::is_empty(grad));
    }
    SECTION("--grad-out naming a file is refused and the file is untouched") {
        write_bytes(dir / "file", "keep");
        const cli_result r =
            run_objective(dir, "--W " + q(W) + " --H " + q(H) + " --labels " + q(L) + " --grad-out " + q(dir / "file"));
        CHECK(r.code == 2);
        CHECK_THAT(r.err, Contains("not a directory"));
        CHECK(read_bytes(dir / "file") == "keep");
    }
}


TEST_CASE("objective --grad-out: a failed write leaves no gradient file behind") {
    temp_dir dir;
    const Eigen::MatrixXd W = Eigen::MatrixXd::Ones(3, 2), H = Eigen::MatrixXd::Ones(2, 4);
    mlnc::io::write_matrix(dir / "W.npy", W);
    mlnc::io::write_features(dir / "H.npy", H);
    write_bytes(dir / "labels.txt", "0\n1 2\n2\n0 1 2\n");
    fs::create_directories(dir / "grad" / "dH.npy");  // a folder where a file must go
    const auto r = run_objective(dir, "--W " + q(dir / "W.npy") + " --H " + q(dir / "H.npy") + " --labels " +
                                          q(dir / "labels.txt") + " --grad-out " + q(dir / "grad"));
    CHECK(r.code == 2);
    CHECK(std::count(r.err.begin(), r.err.end(), '\n') == 1);
    CHECK_FALSE(fs::exists(dir / "grad" / "dW.npy"));
    CHECK_FALSE(fs::exists(dir / "grad" / "db.npy"));
    CHECK(std::distance(fs::directory_iterator(dir / "grad"), fs::directory_iterator{}) == 1);
}

TEST_CASE("objective: a device or FIFO as input is refused, not read forever") {
    temp_dir dir;
    mlnc::io::write_matrix(dir / "W.npy", Eigen::MatrixXd::Ones(3, 2));
    mlnc::io::write_features(dir / "H.npy", Eigen::MatrixXd::Ones(2, 1));
    for (const std::string& args : {"--W /dev/zero --H " + q(dir / "H.npy") + " --labels " + q(dir / "W.npy"),
                                   "--W " + q(dir / "W.npy") + " --H " + q(dir / "H.npy") + " --labels /dev/zero"}) {
        const auto r = run_objective(dir, args);
        INFO(args << "\n" << r.err);
        CHECK(r.code == 2);
        CHECK(r.err.find("not a regular file") != std::string::npos);
    }
}

TEST_CASE("objective: hostile --grad-out and input names are written and quoted safely") {
    temp_dir dir;
    mlnc::io::write_matrix(dir / "W.npy", Eigen::MatrixXd::Ones(3, 2));
    mlnc::io::write_features(dir / "H.npy", Eigen::MatrixXd::Ones(2, 2));
    write_bytes(dir / "labels.txt", "0\n1 2\n");
    for (const auto& name : mlnc_test::hostile_names()) {
        const auto r = mlnc_test::run_cli_argv({"objective", "--W", (dir / "W.npy").string(), "--H",
                                                (dir / "H.npy").string(), "--labels", (dir / "labels.txt").string(),
                                                "--grad-out=" + name},
                                               dir.path);
        INFO(name << "\n" << r.err);
        CHECK(r.exit_code == 0);
        for (const auto* f : {"dW.npy", "dH.npy", "db.npy"}) CHECK(fs::is_regular_file(dir.path / name / f));
        // The same name as a missing input: one printable line.
        const auto bad = mlnc_test::run_cli_argv({"objective", "--W", (dir / name).string() + ".npy", "--H",
                                                  (dir / "H.npy").string(), "--labels", (dir / "labels.txt").string()},
                                                 dir.path);
        CHECK(bad.exit_code == 2);
        CHECK(bad.err_lines() == 1);
        for (const char ch : bad.err.substr(0, bad.err.size() - 1)) CHECK((ch >= 0x20 && ch < 0x7f));
    }
    CHECK_FALSE(fs::exists(dir / "INJECTED"));
}

#endif  // MLNC_CLI_PATH

TEST_CASE("mlnc objective computes in the dtype of its inputs, or in --dtype") {
    // All of W, H, b float32: computed and written in float32; --dtype double widens; --dtype float
    // rounds float64 files. The reference runs in long double on the values the program computes
    // with (rounded to float32 where it reads float32).
    problem P = random_problem(7, 4, 25, 2.0, 11);
    problem R = P;
    for (auto* v : {&R.W, &R.H, &R.b})
        for (double& x : *v) x = static_cast<double>(static_cast<float>(x));
    const reference ref{R};
    const ld loss = ref.loss(widen(R.W), widen(R.H), widen(R.b));
    const gradients g = reference_gradients(R);

    temp_dir dir;
    const auto f32 = [](const std::vector<double>& v) { return std::vector<float>(v.begin(), v.end()); };
    const std::vector<float> W32 = f32(P.W), H32 = f32(P.H), b32 = f32(P.b);
    mlnc::io::write_npy(dir / "W32.npy", W32.data(), {P.K, P.d});
    mlnc::io::write_npy(dir / "H32.npy", H32.data(), {P.N, P.d});
    mlnc::io::write_npy(dir / "b32.npy", b32.data(), {P.K});
    mlnc::io::write_npy(dir / "W64.npy", R.W.data(), {P.K, P.d});
    mlnc::io::write_npy(dir / "H64.npy", R.H.data(), {P.N, P.d});
    mlnc::io::write_npy(dir / "b64.npy", R.b.data(), {P.K});
    const fs::path labels = dir / "labels.txt";
    write_text_labels(labels, P.S);

    struct run_case {
        const char* files;
        const char* dtype_arg;
        const char* dtype;
        const char* npy;
        ld tol;  // relative: float32 arithmetic on K = 7, d = 4 (a few ulp of the largest term) or float64
    };
    for (const run_case c : {run_case{"32", "", "float32", "<f4", 2e-6L}, run_case{"32", " --dtype double", "float64", "<f8", 1e-12L},
                             run_case{"64", " --dtype float", "float32", "<f4", 2e-6L}, run_case{"64", "", "float64", "<f8", 1e-12L}}) {
        INFO("files float" << c.files << c.dtype_arg);
        const std::string sfx = std::string(c.files) + ".npy";
        const fs::path grad = dir / (std::string("grad") + c.files + c.dtype);
        const cli_result r = run_objective(dir, "--W " + q(dir / ("W" + sfx)) + " --H " + q(dir / ("H" + sfx)) + " --b " +
                                                    q(dir / ("b" + sfx)) + " --labels " + q(labels) + lambda_args(P) +
                                                    " --grad-out " + q(grad) + " --json" + c.dtype_arg);
        INFO("stderr: " << r.err);
        REQUIRE(r.code == 0);
        const nlohmann::json j = nlohmann::json::parse(r.out);
        CHECK(j.at("dtype") == c.dtype);
        CHECK(std::fabs(j.at("loss").get<double>() - loss) <= c.tol * std::fabs(loss));
        const mlnc::io::npy_array dW = mlnc::io::read_npy(grad / "dW.npy");
        const mlnc::io::npy_array dH = mlnc::io::read_npy(grad / "dH.npy");
        CHECK(dW.dtype == c.npy);
        CHECK(dH.dtype == c.npy);
        check_close(dW.data, g.dW, c.tol, "dW");
        check_close(dH.data, g.dH, c.tol, "dH");
    }
    const cli_result bad = run_objective(dir, "--W " + q(dir / "W32.npy") + " --H " + q(dir / "H32.npy") + " --labels " +
                                                  q(labels) + " --dtype half");
    CHECK(bad.code == 2);
}
