// `mlnc verify` end to end: the embedded default verifies Theorem 1, --counts runs outside the
// assumptions, a starved optimiser fails the check (exit 1), bad input exits 2 with one line.

#include "cli_runner.hpp"

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

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
        "--counts '" + (dir / "missing.txt") + "'",
        "--K 4 --counts '" + (dir / "bad_counts.txt") + "'",
        "--n 1:2 --counts '" + (dir / "bad_counts.txt") + "'",
        "--max-iter 0",
        "--K 60 --n 1:1,2:1,3:1,4:1",
        "--K 2000 --n 1:1000000,1000:0",
        "--K 4 --counts '" + (dir / "overflow_counts.txt") + "'",
        "--counts /dev/zero",
        "--counts '" + dir.path().string() + "'",
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
