// `mlnc metrics` end to end: the built program's JSON against the library on the same data, the
// readable table, and one-line refusals with exit code 2.

#include <mlnc/io/label_file.hpp>
#include <mlnc/io/npy.hpp>
#include <mlnc/metrics.hpp>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#ifndef MLNC_CLI_PATH

TEST_CASE("cli metrics: the mlnc program was not built", "[cli][metrics]") {
    WARN("MLNC_CLI_PATH is not defined (examples off): skipping the tests of `mlnc metrics`");
}

#else

#include <cstdlib>
#include <limits>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "cli_runner.hpp"

using Catch::Matchers::Contains;
using Catch::Matchers::StartsWith;
using mlnc::index_t;
using nlohmann::json;

namespace {

// Near-collapsed data: h_i = C_m sum_{k in S_i} w_k + small noise, W a simplex ETF (rows of
// I - J/K scaled to unit norm, zero-padded to d). The noise keeps every metric nonzero, so the
// comparison with the library is not between zeros.
struct problem {
    static constexpr index_t K = 4, d = 6;
    Eigen::MatrixXd W, H;
    mlnc::label_sets S;
    problem() {
        W = Eigen::MatrixXd::Zero(K, d);
        W.leftCols(K) = std::sqrt(double(K) / double(K - 1)) *
                        (Eigen::MatrixXd::Identity(K, K) - Eigen::MatrixXd::Constant(K, K, 1.0 / double(K)));
        std::vector<std::vector<index_t>> sets;
        for (index_t k = 0; k < K; ++k)
            for (int c = 0; c < 3; ++c) sets.push_back({k});
        for (std::vector<index_t> s : {std::vector<index_t>{0, 1}, {1, 2}, {2, 3}, {0, 3}})
            for (int c = 0; c < 2; ++c) sets.push_back(s);
        sets.push_back({0, 1, 2});
        S = mlnc::label_sets::from_lists(sets, K);
        std::mt19937 rng(42);
        std::normal_distribution<double> noise(0.0, 1e-2);
        const double C[] = {0.0, 2.0, 1.2, 0.9};
        H.resize(d, S.size());
        for (index_t i = 0; i < S.size(); ++i) {
            H.col(i).setZero();
            for (auto k : S[i]) H.col(i) += C[S.multiplicity(i)] * W.row(k).transpose();
            for (index_t j = 0; j < d; ++j) H(j, i) += noise(rng);
        }
    }
};

std::string q(const std::string& path) { return "'" + path + "'"; }

void check_matches(const json& j, const std::optional<double>& v) {
    if (v) {
        REQUIRE(j.is_number());
        CHECK(j.get<double>() == Approx(*v).epsilon(1e-14));
    } else {
        CHECK(j.is_null());
    }
}

void check_matches(const json& j, const mlnc::metric_by_multiplicity& by_m) {
    REQUIRE(j.is_object());
    REQUIRE(static_cast<index_t>(j.size()) == by_m.size());
    for (const auto& [m, v] : by_m) {
        INFO("multiplicity " << m);
        REQUIRE(j.contains(std::to_string(m)));
        check_matches(j.at(std::to_string(m)), v);
    }
}

void check_refusal(const mlnc_test::cli_result& r, const std::string& needle) {
    INFO("stderr: " << r.err);
    CHECK(r.exit_code == 2);
    CHECK(r.out.empty());
    CHECK(r.err_lines() == 1);
    CHECK_THAT(r.err, StartsWith("mlnc metrics: ") && Contains(needle));
}

}  // namespace

TEST_CASE("cli metrics: JSON equals the library's metrics", "[cli][metrics]") {
    const problem p;
    const mlnc_test::temp_dir dir("metrics");
    mlnc::io::write_features(dir / "H.npy", p.H);
    mlnc::io::write_matrix(dir / "W.npy", p.W);
    mlnc::io::write_labels(dir / "labels.txt", p.S);
    Eigen::MatrixXd Y(p.S.size(), problem::K);
    for (index_t i = 0; i < p.S.size(); ++i) Y.row(i) = p.S.multi_hot(i).transpose();
    mlnc::io::write_matrix(dir / "labels.npy", Y);

    SECTION("with the classifier") {
        const auto r = mlnc_test::run_cli("metrics --features " + q(dir / "H.npy") + " --labels " +
                                          q(dir / "labels.txt") + " --classifier " + q(dir / "W.npy") + " --json");
        INFO("stderr: " << r.err);
        REQUIRE(r.exit_code == 0);
        CHECK(r.err.empty());
        const json j = json::parse(r.out);
        std::set<std::string> keys;
        for (const auto& [key, value] : j.items()) keys.insert(key);
        CHECK(keys == std::set<std::string>{"n", "k", "d", "nc1", "nc1_by_multiplicity", "nc2_w", "nc2_h", "nc3",
                                            "nc_m", "nc_m_uncentered"});
        CHECK(j.at("n") == p.S.size());
        CHECK(j.at("k") == problem::K);
        CHECK(j.at("d") == problem::d);
        const auto lib = mlnc::compute_nc_metrics(p.H, p.S, p.W);
        check_matches(j.at("nc1"), lib.nc1);
        check_matches(j.at("nc1_by_multiplicity"), lib.nc1_by_multiplicity);
        check_matches(j.at("nc2_w"), lib.nc2_w);
        check_matches(j.at("nc2_h"), lib.nc2_h);
        check_matches(j.at("nc3"), lib.nc3);
        check_matches(j.at("nc_m"), lib.nc_m);
        check_matches(j.at("nc_m_uncentered"), lib.nc_m_uncentered);
        // The data: near collapse, and a single class of multiplicity 3 (NC1_3 undefined).
        CHECK(j.at("nc1").get<double>() < 1e-3);
        CHECK(j.at("nc2_w").get<double>() < 1e-12);
        CHECK(j.at("nc1_by_multiplicity").at("3").is_null());
    }
    SECTION("without the classifier, K from the labels; text and multi-hot labels agree") {
        const auto txt = mlnc_test::run_cli("metrics --json --features " + q(dir / "H.npy") + " --labels " +
                                            q(dir / "labels.txt"));
        const auto npy = mlnc_test::run_cli("metrics --json --features " + q(dir / "H.npy") + " --labels " +
                                            q(dir / "labels.npy"));
        REQUIRE(txt.exit_code == 0);
        REQUIRE(npy.exit_code == 0);
        const json j = json::parse(txt.out);
        CHECK(j == json::parse(npy.out));
        CHECK(j.at("k") == problem::K);
        CHECK(j.at("nc2_w").is_null());
        CHECK(j.at("nc3").is_null());
        const auto lib = mlnc::compute_nc_metrics(p.H, p.S);
        check_matches(j.at("nc2_h"), lib.nc2_h);
        check_matches(j.at("nc_m"), lib.nc_m);
    }
    SECTION("readable table") {
        const auto r = mlnc_test::run_cli("metrics --features " + q(dir / "H.npy") + " --labels " +
                                          q(dir / "labels.txt"));
        REQUIRE(r.exit_code == 0);
        CHECK(r.err.empty());
        CHECK_THAT(r.out, Contains("N = 21 samples, K = 4 labels, d = 6") && Contains("NC1, multiplicity 2") &&
                              Contains("NC2 on W") && Contains("unavailable (no --classifier)") &&
                              Contains("NC_m uncentred, m = 3"));
    }
}

TEST_CASE("cli metrics: bad input exits 2 with one line naming the problem", "[cli][metrics]") {
    const problem p;
    const mlnc_test::temp_dir dir("metrics-bad");
    const std::string H = dir / "H.npy", W = dir / "W.npy", L = dir / "labels.txt";
    mlnc::io::write_features(H, p.H);
    mlnc::io::write_matrix(W, p.W);
    mlnc::io::write_labels(L, p.S);
    const auto run = [](const std::string& args) { return mlnc_test::run_cli("metrics --json " + args); };

    check_refusal(run("--features " + q(dir / "missing.npy") + " --labels " + q(L)), "--features");

    mlnc::io::write_labels(dir / "short.txt", mlnc::label_sets::from_lists({{0}, {1}}, problem::K));
    check_refusal(run("--features " + q(H) + " --labels " + q(dir / "short.txt")),
                  "2 label sets but the features have N = 21");

    mlnc::io::write_matrix(dir / "W5.npy", Eigen::MatrixXd::Ones(problem::K, problem::d - 1));
    check_refusal(run("--features " + q(H) + " --labels " + q(L) + " --classifier " + q(dir / "W5.npy")),
                  "--classifier");

    // Labels use index 3 but W has only 3 rows.
    mlnc::io::write_matrix(dir / "W3.npy", p.W.topRows(3));
    check_refusal(run("--features " + q(H) + " --labels " + q(L) + " --classifier " + q(dir / "W3.npy")), "--labels");

    // Label 3 occurs only in pairs.
    std::vector<std::vector<index_t>> sets;
    for (index_t i = 0; i < p.S.size(); ++i) sets.push_back(p.S[i][0] == 3 && p.S.multiplicity(i) == 1
                                                                 ? std::vector<index_t>{2, 3}
                                                                 : std::vector<index_t>(p.S[i].begin(), p.S[i].end()));
    mlnc::io::write_labels(dir / "no3.txt", mlnc::label_sets::from_lists(sets, problem::K));
    check_refusal(run("--features " + q(H) + " --labels " + q(dir / "no3.txt")),
                  "label 3 has no multiplicity-1 sample");

    Eigen::MatrixXd bad = p.H;
    bad(2, 5) = std::numeric_limits<double>::quiet_NaN();
    mlnc::io::write_features(dir / "nan.npy", bad);
    check_refusal(run("--features " + q(dir / "nan.npy") + " --labels " + q(L)), "NaN");

    check_refusal(run("--features " + q(H)), "--labels");

    // A label file naming label 2147483646 (K inferred): before, O(K) tables were allocated first
    // and the process was killed (exit 137). Now the missing labels are found in O(N log N).
    mlnc::io::write_features(dir / "H2.npy", Eigen::MatrixXd::Ones(2, 2));
    mlnc_test::write_bytes(dir / "big.txt", "0\n2147483646\n");
    check_refusal(run("--features " + q(dir / "H2.npy") + " --labels " + q(dir / "big.txt")),
                  "labels 1, 2, 3, 4, 5, 6, 7, 8, 9, 10 and 2147483635 more have no multiplicity-1 sample");
}

TEST_CASE("cli metrics: hostile file names appear as one printable line", "[cli][metrics]") {
    const mlnc_test::temp_dir dir("metrics-hostile");
    for (const auto& name : mlnc_test::hostile_names()) {
        mlnc_test::write_bytes(dir.path() / name, "not an npy file");
        const auto r = mlnc_test::run_cli_argv({"metrics", "--features", (dir.path() / name).string(), "--labels",
                                                (dir.path() / name).string()},
                                               dir.path());
        INFO(name << "\n" << r.err);
        CHECK(r.exit_code == 2);
        CHECK(r.err_lines() == 1);
        CHECK(r.err.find("bad magic") != std::string::npos);
        for (const char ch : r.err.substr(0, r.err.size() - 1)) CHECK((ch >= 0x20 && ch < 0x7f));
    }
}

#endif
