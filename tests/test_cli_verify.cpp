// `mlnc verify` end to end: the embedded default verifies Theorem 1, --counts runs outside the
// assumptions, a starved optimiser fails the check (exit 1), bad input exits 2 with one line.

#include "cli_runner.hpp"

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <filesystem>

using mlnc_test::run_cli;
using mlnc_test::temp_dir;

TEST_CASE("verify: the default example is verified and writes history and plots") {
    const temp_dir dir("verify-default");
    const auto r = run_cli("verify --json --out '" + (dir / "out") + "'");
    INFO(r.err);
    REQUIRE(r.exit_code == 0);
    const auto j = nlohmann::json::parse(r.out);
    CHECK(j["verified"] == true);
    CHECK(j["within_assumptions"] == true);
    CHECK(j["trivial"] == false);
    CHECK(j["rel_gap"].get<double>() < 1e-9);
    CHECK(std::abs(j["rho_trained"].get<double>() / j["rho_theory"].get<double>() - 1) < 1e-6);
    CHECK(j["etf_error"].get<double>() < 1e-6);
    // Three multiplicities (1, 2 and K = 3) with a trained and a theoretical C_m each, matching;
    // the full label set has C_K = 0 (its features are 0).
    REQUIRE(j["C_theory"].size() == 3);
    for (const auto& m : {"1", "2"}) {
        CHECK(std::abs(j["C_trained"][m].get<double>() / j["C_theory"][m].get<double>() - 1) < 1e-6);
        CHECK(j["tagwise_residual"][m].get<double>() < 1e-6);
    }
    CHECK(j["C_theory"]["3"].get<double>() == 0.0);
    CHECK(j["tagwise_residual"]["3"].get<double>() < 1e-6);
    CHECK(j["nc1"].get<double>() < 1e-6);
    CHECK(j["nc2_w"].get<double>() < 1e-6);
    CHECK(j["nc_m"]["2"].get<double>() < 1e-3);
    const auto csv = mlnc_test::read_bytes(dir.path() / "out" / "history.csv");
    CHECK(csv.rfind("iteration,objective,gradient_norm,seconds,nc1,nc2_w,nc2_h,nc3,nc_m2,nc_m3\n", 0) == 0);
    CHECK(std::count(csv.begin(), csv.end(), '\n') > 3);
    if (std::system("gnuplot --version > /dev/null 2>&1") == 0) {
        for (const auto* svg : {"nc_metrics.svg", "features_2d.svg"}) {
            const auto text = mlnc_test::read_bytes(dir.path() / "out" / svg);
            CHECK(text.find("<svg") != std::string::npos);
        }
    } else {
        WARN("gnuplot not installed: plots not checked");
    }
}

TEST_CASE("verify: six labels, three imbalanced multiplicities, d = K-1; table and verdict on stdout") {
    const temp_dir dir("verify-human");
    const auto r = run_cli("verify --K 6 --d 5 --n 1:12,2:4,3:2 --out '" + (dir / "out") + "'");
    REQUIRE(r.exit_code == 0);
    CHECK(r.out.find("verdict: VERIFIED") != std::string::npos);
    CHECK(r.out.find("C_2") != std::string::npos);
}

TEST_CASE("verify: --counts outside the assumptions reports structure, no theory") {
    const temp_dir dir("verify-counts");
    {
        std::ofstream c(dir / "counts.txt");
        // K = 4: imbalance within multiplicity 1 and missing pairs.
        c << "10 0\n6 1\n6 2\n3 3\n2 0 1\n2 2 3\n";
    }
    const auto r = run_cli("verify --K 4 --counts '" + (dir / "counts.txt") + "' --json --out '" + (dir / "out") + "'");
    INFO(r.err);
    REQUIRE(r.exit_code == 0);
    const auto j = nlohmann::json::parse(r.out);
    CHECK(j["within_assumptions"] == false);
    CHECK(j["verified"] == false);
    CHECK(j["f_theory"].is_null());
    CHECK(j["nc1"].is_number());
    CHECK(j["tagwise_residual"].contains("2"));
}

TEST_CASE("verify: a balanced --counts file is recognised as inside the assumptions") {
    const temp_dir dir("verify-counts-balanced");
    {
        std::ofstream c(dir / "counts.txt");
        c << "4 0\n4 1\n4 2\n1 0 1\n1 0 2\n1 1 2\n";
    }
    const auto r = run_cli("verify --K 3 --counts '" + (dir / "counts.txt") + "' --json --out '" + (dir / "out") + "'");
    INFO(r.err);
    REQUIRE(r.exit_code == 0);
    const auto j = nlohmann::json::parse(r.out);
    CHECK(j["within_assumptions"] == true);
    CHECK(j["verified"] == true);
}

TEST_CASE("verify: a starved optimiser fails the check with exit 1") {
    const temp_dir dir("verify-starved");
    const auto r = run_cli("verify --K 6 --n 1:12,2:4,3:2 --max-iter 3 --json --out '" + (dir / "out") + "'");
    REQUIRE(r.exit_code == 1);
    const auto j = nlohmann::json::parse(r.out);
    CHECK(j["verified"] == false);
    CHECK(j["failures"].size() > 0);
}

TEST_CASE("verify: --dtype float trains in float and judges with float's tolerances") {
    const temp_dir dir("verify-float");
    const auto r = run_cli("verify --K 6 --d 5 --n 1:12,2:4,3:2 --dtype float --json --out '" + (dir / "out") + "'");
    INFO(r.err);
    REQUIRE(r.exit_code == 0);
    const auto j = nlohmann::json::parse(r.out);
    CHECK(j["dtype"] == "float");
    CHECK(j["verified"] == true);
    // Float's rounding shows: the gap is far above double's ~1e-16 but within float's 1e-6, and
    // the structure is first order in the gradient the trainer reaches (~1e-5 |f|).
    const double gap = j["rel_gap"].get<double>();
    CHECK(gap > 1e-12);
    CHECK(gap < 1e-6);
    CHECK(j["etf_error"].get<double>() > 1e-9);
    CHECK(j["etf_error"].get<double>() < 5e-2);
    CHECK(r.err.find("trained in float") != std::string::npos);
    const auto d = run_cli("verify --K 6 --d 5 --n 1:12,2:4,3:2 --json --out '" + (dir / "out2") + "'");
    REQUIRE(d.exit_code == 0);
    CHECK(nlohmann::json::parse(d.out)["dtype"] == "double");
}

TEST_CASE("verify: bad input exits 2 with one line and writes nothing") {
    const temp_dir dir("verify-bad");
    {
        std::ofstream c(dir / "bad_counts.txt");
        c << "3 0 7\n";
        std::ofstream o(dir / "overflow_counts.txt");
        o << "1 0\n9223372036854775807 1\n";
    }
    const std::vector<std::string> bad{
        "--K 1",
        "--n 1:x",
        "--n 0:3",
        "--K 3 --n 4:1",
        "--lambda-w -1",
        "--lambda-w 0",
        "--lambda-h nan",
        "--method newton",
        "--dtype half",
        "--counts '" + (dir / "missing.txt") + "'",
        "--K 4 --counts '" + (dir / "bad_counts.txt") + "'",
        "--n 1:2 --counts '" + (dir / "bad_counts.txt") + "'",
        "--max-iter 0",
        "--K 60 --n 1:1,2:1,3:1,4:1",
        "--K 2000 --n 1:1000000,1000:0",
        "--K 4 --counts '" + (dir / "overflow_counts.txt") + "'",
        "--counts /dev/zero",
        "--counts '" + dir.path().string() + "'",
        "--backend tpu",
    };
    for (const auto& args : bad) {
        const auto out = dir / "out";
        const auto r = run_cli("verify " + args + " --out '" + out + "'");
        INFO(args << "\n" << r.err);
        CHECK(r.exit_code == 2);
        CHECK(r.err_lines() == 1);
        CHECK(r.out.empty());
        CHECK_FALSE(std::filesystem::exists(out));
    }
}

TEST_CASE("verify --backend cuda: the CPU's verdict from the GPU, or exit 2 with one line saying why not") {
    const temp_dir dir("verify-cuda");
    const auto out = dir / "out";
    const auto r = run_cli("verify --backend cuda --json --out '" + out + "'");
    INFO(r.err);
    if (r.exit_code == 0) {  // a build with CUDA on a machine with a GPU
        const auto j = nlohmann::json::parse(r.out);
        CHECK(j["verified"] == true);
        CHECK(j["rel_gap"].get<double>() < 1e-9);
        CHECK(r.err.find("backend cuda") != std::string::npos);
        // Gradient descent keeps its vectors on the device; the history still comes from them.
        const auto gd = run_cli("verify --backend cuda --method gd --max-iter 200 --json --out '" + (dir / "gd") + "'");
        CHECK((gd.exit_code == 0 || gd.exit_code == 1));
        const auto csv = mlnc_test::read_bytes(dir.path() / "gd" / "history.csv");
        CHECK(std::count(csv.begin(), csv.end(), '\n') > 3);
    } else {  // no CUDA in this build, or no usable device: nothing printed or made but the reason
        CHECK(r.exit_code == 2);
        CHECK(r.out.empty());
        CHECK(r.err.rfind("mlnc verify: --backend cuda: ", 0) == 0);
        CHECK(r.err_lines() == 1);
        CHECK_FALSE(std::filesystem::exists(out));
    }
}

TEST_CASE("verify: without gnuplot it says so and still writes the CSV") {
    const temp_dir dir("verify-no-gnuplot");
    // An empty PATH hides gnuplot from the program's shell; the program itself is run by path.
    const std::string cmd = std::string("env PATH=/nonexistent '") + MLNC_CLI_PATH + "' verify --out '" + (dir / "out") +
                            "' > '" + (dir / "stdout") + "' 2> '" + (dir / "stderr") + "'";
    REQUIRE(std::system(cmd.c_str()) == 0);
    const auto out = mlnc_test::read_bytes(dir.path() / "stdout");
    CHECK(out.find("gnuplot not found") != std::string::npos);
    CHECK(out.find("verdict: VERIFIED") != std::string::npos);
    CHECK(std::filesystem::exists(dir.path() / "out" / "history.csv"));
    CHECK_FALSE(std::filesystem::exists(dir.path() / "out" / "nc_metrics.svg"));
}

namespace {
bool gnuplot_available() { return std::system("gnuplot --version > /dev/null 2>&1") == 0; }

// No file named INJECTED anywhere under dir.
bool injected(const std::filesystem::path& dir) {
    for (const auto& e : std::filesystem::recursive_directory_iterator(dir))
        if (e.path().filename() == "INJECTED") return true;
    return false;
}
}  // namespace

TEST_CASE("verify: hostile --out names reach no shell and no gnuplot script") {
    // Before: plots were drawn through std::system with the folder pasted into a shell line, and
    // --out "a'; touch INJECTED; echo '" created a file named INJECTED.
    const temp_dir dir("verify-hostile-out");
    for (const auto& name : mlnc_test::hostile_names()) {
        const auto r = mlnc_test::run_cli_argv({"verify", "--K", "3", "--n", "1:3,2:1", "--out=" + name}, dir.path());
        INFO("--out " << name << "\n" << r.err);
        CHECK(r.exit_code == 0);
        CHECK(std::filesystem::exists(dir.path() / name / "history.csv"));
        if (gnuplot_available()) {
            CHECK(mlnc_test::read_bytes(dir.path() / name / "nc_metrics.svg").find("<svg") != std::string::npos);
            CHECK(mlnc_test::read_bytes(dir.path() / name / "features_2d.svg").find("<svg") != std::string::npos);
        }
        // Nothing but the outputs: no scripts or temporary files are left in the folder.
        for (const auto& e : std::filesystem::directory_iterator(dir.path() / name)) {
            const auto ext = e.path().extension();
            CHECK((ext == ".csv" || ext == ".svg"));
        }
    }
    CHECK_FALSE(injected(dir.path()));
}

TEST_CASE("verify: hostile --counts names are read, and refused in one printable line") {
    const temp_dir dir("verify-hostile-counts");
    for (const auto& name : mlnc_test::hostile_names()) {
        {
            std::ofstream c(dir.path() / name);
            c << "3 0\n3 1\n3 2\n1 0 1\n1 0 2\n1 1 2\n";
        }
        const auto ok = mlnc_test::run_cli_argv(
            {"verify", "--K", "3", "--counts", (dir.path() / name).string(), "--json", "--out=out"}, dir.path());
        INFO("--counts " << name << "\n" << ok.err);
        CHECK(ok.exit_code == 0);
        CHECK(nlohmann::json::parse(ok.out)["within_assumptions"] == true);
        const auto bad = mlnc_test::run_cli_argv(
            {"verify", "--K", "3", "--counts", (dir.path() / (name + "-missing")).string(), "--out=out2"}, dir.path());
        CHECK(bad.exit_code == 2);
        CHECK(bad.err_lines() == 1);
        for (const char ch : bad.err.substr(0, bad.err.size() - 1)) CHECK((ch >= 0x20 && ch < 0x7f));
        CHECK_FALSE(std::filesystem::exists(dir.path() / "out2"));
    }
    CHECK_FALSE(injected(dir.path()));
}

TEST_CASE("verify: above the collapse threshold it says why the optimum is zero and what to change") {
    // Before: an ETF error of 1.04 and tag-wise residuals of 0.95 were printed for W, H ~ 1e-20,
    // next to a bare VERIFIED.
    const temp_dir dir("verify-trivial");
    const auto r = run_cli("verify --K 50 --d 64 --n 1:20,2:1 --json --out '" + (dir / "out") + "'");
    INFO(r.err);
    REQUIRE(r.exit_code == 0);
    const auto j = nlohmann::json::parse(r.out);
    CHECK(j["verified"] == true);
    CHECK(j["trivial"] == true);
    CHECK(j["trained_zero"] == true);
    CHECK(j["trained_size"].get<double>() < 1e-8);
    // Undefined at zero: null, not numbers.
    for (const auto* key : {"etf_error", "tagwise_residual", "C_trained", "nc1", "nc2_w", "nc2_h", "nc3"})
        CHECK(j[key].is_null());
    // sqrt(sum_m N_m m (K-m) / N^2 / (4 K (K-1))) for K = 50, n = (20, 1): N_1 = 1000, N_2 = 1225.
    const double N = 2225, q = (1000.0 * 49 + 1225.0 * 2 * 48) / (N * N);
    const double tau = std::sqrt(q / (4.0 * 50 * 49));
    CHECK(std::abs(j["collapse_threshold"].get<double>() / tau - 1) < 1e-12);
    CHECK(j["suggested_lambda"].get<double>() < tau);
    const auto notes = j["notes"].dump();
    CHECK(notes.find("collapse threshold") != std::string::npos);
    CHECK(notes.find("--lambda-w") != std::string::npos);
    const auto text = run_cli("verify --K 50 --d 64 --n 1:20,2:1 --out '" + (dir / "out2") + "'");
    CHECK(text.out.find("n/a (zero solution)") != std::string::npos);
    CHECK(text.out.find("both at W = H = 0") != std::string::npos);
    // Only m = K: the threshold is 0, no penalties show a collapse, and none are suggested.
    const auto all = run_cli("verify --K 3 --n 3:4 --json --out '" + (dir / "out3") + "'");
    INFO(all.err);
    REQUIRE(all.exit_code == 0);
    const auto ja = nlohmann::json::parse(all.out);
    CHECK(ja["trivial"] == true);
    CHECK(ja["collapse_threshold"].get<double>() == 0.0);
    CHECK(ja["suggested_lambda"].is_null());
    CHECK(ja["notes"].dump().find("for all penalties") != std::string::npos);
}

TEST_CASE("verify: a closed form beyond the range of double is reported, not read") {
    // Before: a segmentation fault (exit 139) after training.
    const temp_dir dir("verify-tiny-lambdas");
    const auto r = run_cli("verify --lambda-w 1e-300 --lambda-h 1e-300 --json --out '" + (dir / "out") + "'");
    INFO(r.err);
    CHECK(r.exit_code == 1);
    const auto j = nlohmann::json::parse(r.out);
    CHECK(j["verified"] == false);
    CHECK(j["f_theory"].is_null());
    CHECK(j["failures"].dump().find("did not converge") != std::string::npos);
    CHECK(j["collapse_threshold"].get<double>() > 0);
}

TEST_CASE("verify: a run that ends at the rounding floor says so") {
    // Gradient descent reaches f* to ~1e-16 within a few hundred iterations, and then cannot
    // bring the gradient to 1e-12: it stops on its budget with the gap at the floor.
    const temp_dir dir("verify-floor");
    const auto r = run_cli("verify --method gd --max-iter 500 --json --out '" + (dir / "out") + "'");
    INFO(r.err);
    REQUIRE(r.exit_code == 0);
    const auto j = nlohmann::json::parse(r.out);
    CHECK(j["status"] == "max_iterations");
    CHECK(j["verified"] == true);
    CHECK(j["notes"].dump().find("floor of double precision") != std::string::npos);
}
