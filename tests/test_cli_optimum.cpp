// `mlnc optimum` end to end: the JSON of the built program against the library, and every kind of
// bad input (exit 2, one line on stderr naming the argument, nothing on stdout).

#include <mlnc/optimum.hpp>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#ifndef MLNC_CLI_PATH

TEST_CASE("cli optimum: the mlnc program was not built", "[cli][optimum]") {
    WARN("MLNC_CLI_PATH is not defined (examples off): skipping the tests of `mlnc optimum`");
}

#else

#include "cli_runner.hpp"

#include <cmath>
#include <iomanip>
#include <sstream>
#include <string>
#include <vector>

using Catch::Matchers::Contains;
using Catch::Matchers::StartsWith;
using mlnc_test::run_cli;

namespace {

// The JSON must carry the library's numbers exactly: nlohmann writes the shortest round-trip form.
// The values of a per-multiplicity result in ascending m: the order of "multiplicities".
std::vector<double> values(const mlnc::per_multiplicity<double>& x) {
    std::vector<double> v;
    for (const auto& [m, value] : x) v.push_back(value);
    return v;
}

void check_json_matches(const std::string& args, mlnc::index_t K, const mlnc::multiplicity_counts& n,
                        const mlnc::penalties& lam) {
    CAPTURE(args);
    const auto res = run_cli("optimum " + args + " --json");
    REQUIRE(res.exit_code == 0);
    CHECK(res.err.empty());
    const auto j = nlohmann::json::parse(res.out);
    const mlnc::optimum_result r = mlnc::global_optimum(K, n, lam);
    REQUIRE(r.status() == mlnc::optimum_status::success);
    CHECK(j.size() == 8);
    CHECK(j.at("trivial").get<bool>() == r->trivial);
    CHECK(j.at("f").get<double>() == r->f);
    CHECK(j.at("rho").get<double>() == r->rho);
    CHECK(j.at("w_norm").get<double>() == r->w_norm);
    CHECK(j.at("multiplicities").get<std::vector<mlnc::index_t>>() == r.multiplicities());
    CHECK(j.at("delta").get<std::vector<double>>() == values(r->delta));
    CHECK(j.at("C").get<std::vector<double>>() == values(r->C));
    const std::vector<double> c1 = values(r->c1);
    REQUIRE(j.at("c1").size() == c1.size());
    for (std::size_t i = 0; i < c1.size(); ++i) {
        if (std::isinf(c1[i])) CHECK(j.at("c1")[i].is_null());  // m = K
        else CHECK(j.at("c1")[i].get<double>() == c1[i]);
    }
}

}  // namespace

TEST_CASE("cli optimum: JSON equals the library's result", "[cli][optimum]") {
    check_json_matches("--K 10 --n 1:20,2:4,3:2 --lambda-w 1e-3 --lambda-h 1e-6", 10, {{1, 20}, {2, 4}, {3, 2}},
                       {1e-3, 1e-6, 0});
    // m = K present (c1 null), n_2 absent from the spec, lambda_b given.
    check_json_matches("--K 3 --n 3:2,1:20 --lambda-w 1e-3 --lambda-h 1e-6 --lambda-b 0.5", 3, {{1, 20}, {3, 2}},
                       {1e-3, 1e-6, 0.5});
    // A zero count is no multiplicity.
    check_json_matches("--K 4 --n 1:5,2:0,3:1 --lambda-w 1e-3 --lambda-h 1e-4", 4, {{1, 5}, {3, 1}}, {1e-3, 1e-4, 0});
    // The trivial optimum (usual penalties, K = 10^6: the H penalty grows with N).
    check_json_matches("--K 1000000 --n 1:1,8:1 --lambda-w 5e-4 --lambda-h 5e-4", 1000000, {{1, 1}, {8, 1}},
                       {5e-4, 5e-4, 0});
    const auto res = run_cli("optimum --K 1000000 --n 1:1,8:1 --lambda-w 5e-4 --lambda-h 5e-4 --json");
    CHECK(nlohmann::json::parse(res.out).at("trivial").get<bool>());
}

TEST_CASE("cli optimum: the readable table", "[cli][optimum]") {
    const auto res = run_cli("optimum --K 10 --n 1:20,2:4,3:2 --lambda-w 1e-3 --lambda-h 1e-6");
    REQUIRE(res.exit_code == 0);
    CHECK(res.err.empty());
    CHECK_THAT(res.out, Contains("K = 10") && Contains("N = 620") && Contains("collapse to zero"));
    const mlnc::optimum_result r = mlnc::global_optimum(10, {{1, 20}, {2, 4}, {3, 2}}, {1e-3, 1e-6, 0});
    // f* printed with 17 significant digits.
    std::ostringstream f;
    f << std::setprecision(17) << r->f;
    CHECK_THAT(res.out, Contains(f.str()));
}

TEST_CASE("cli optimum: bad input exits 2 with one line naming the argument", "[cli][optimum]") {
    struct bad {
        std::string args, names;
    };
    const std::string lam = " --lambda-w 1e-3 --lambda-h 1e-3";
    const std::vector<bad> cases = {
        {"--K 1 --n 1:1" + lam, "--K"},
        {"--K -5 --n 1:1" + lam, "--K"},
        {"--K abc --n 1:1" + lam, "--K"},
        {"--K 3 --n 1:1,4:1" + lam, "--n"},      // multiplicity > K
        {"--K 3 --n 1:1,1:2" + lam, "--n"},      // duplicate
        {"--K 3 --n 1:-1" + lam, "--n"},         // negative count
        {"--K 3 --n 1:nan" + lam, "--n"},        // NaN count
        {"--K 3 --n 0:1" + lam, "--n"},          // m < 1
        {"--K 3 --n 1:1,,2:1" + lam, "--n"},     // empty entry
        {"--K 3 --n 12" + lam, "--n"},           // no colon
        {"--K 3 --n 1:2:3" + lam, "--n"},        // two colons
        {"--K 3 --n 1:1.5" + lam, "--n"},        // not an integer
        {"--K 3 --n ''" + lam, "--n"},           // empty
        {"--K 3 --n 1:0,2:0" + lam, "--n"},      // all zero
        {"--K 3 --n 1:1 --lambda-w -1 --lambda-h 1e-3", "--lambda-w"},
        {"--K 3 --n 1:1 --lambda-w nan --lambda-h 1e-3", "--lambda-w"},
        {"--K 3 --n 1:1 --lambda-w 0 --lambda-h 1e-3", "--lambda-w"},
        {"--K 3 --n 1:1 --lambda-w 1e-3 --lambda-h -2", "--lambda-h"},
        {"--K 3 --n 1:1 --lambda-w 1e-3 --lambda-h nan", "--lambda-h"},
        {"--K 3 --n 1:1 --lambda-w 1e-3 --lambda-h 0", "--lambda-h"},
        {"--K 3 --n 1:1" + lam + " --lambda-b -1", "--lambda-b"},
        {"--K 3 --n 1:1" + lam + " --lambda-b nan", "--lambda-b"},
        {"--K 3 --n 1:1 --lambda-h 1e-3", "--lambda-w"},  // missing required option
    };
    for (const bad& c : cases) {
        for (const char* json : {"", " --json"}) {
            CAPTURE(c.args, json);
            const auto res = run_cli("optimum " + c.args + json);
            CHECK(res.exit_code == 2);
            CHECK(res.out.empty());
            CHECK(res.err_lines() == 1);
            CHECK_THAT(res.err, StartsWith("mlnc optimum: ") && Contains(c.names));
        }
    }
}

TEST_CASE("cli optimum: a solver failure exits 1 with a message", "[cli][optimum]") {
    // Penalties of 1e-300 put s* beyond e^650, outside the range the solver works in.
    const auto res = run_cli("optimum --K 4 --n 1:1,2:1 --lambda-w 1e-300 --lambda-h 1e-300 --json");
    CHECK(res.exit_code == 1);
    CHECK(res.out.empty());
    CHECK(res.err_lines() == 1);
    CHECK_THAT(res.err, Contains("did not converge"));
}

TEST_CASE("cli optimum: --help", "[cli][optimum]") {
    const auto res = run_cli("optimum --help");
    CHECK(res.exit_code == 0);
    CHECK_THAT(res.out, Contains("--lambda-w") && Contains("--n") && Contains("--json"));
}

#endif
