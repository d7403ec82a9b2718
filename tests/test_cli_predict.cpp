// `mlnc predict` end to end: one valid run per method, compared with the library's own answer,
// and bad input (exit 2, one line on stderr, nothing on stdout, no output file).

#include "cli_runner.hpp"

#include <mlnc/io/label_file.hpp>
#include <mlnc/io/npy.hpp>
#include <mlnc/predict.hpp>
#include <mlnc/scores.hpp>
#include <mlnc/synthetic.hpp>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>

using mlnc_test::run_cli;
using mlnc_test::temp_dir;

namespace {

// Noisy synthetic features (K = 5, d = 6) written as the CLI reads them.
struct files {
    temp_dir dir{"predict"};
    mlnc::synthetic_data train, test;
    files() {
        mlnc::synthetic_options o;
        o.K = 5;
        o.d = 6;
        o.n = {{1, 8}, {2, 2}};
        o.noise = 0.6;
        o.seed = 1;
        train = mlnc::make_synthetic(o);
        o.seed = 2;
        test = mlnc::make_synthetic(o);
        mlnc::io::write_features(dir / "A.npy", train.H);
        mlnc::io::write_features(dir / "B.npy", test.H);
        mlnc::io::write_labels(dir / "A.txt", train.S);
        mlnc::io::write_labels(dir / "B.txt", test.S);
        mlnc::io::write_matrix(dir / "W.npy", train.W);
    }
    std::string args(const std::string& method) const {
        return "predict --train-features '" + (dir / "A.npy") + "' --train-labels '" + (dir / "A.txt") +
               "' --test-features '" + (dir / "B.npy") + "' --test-labels '" + (dir / "B.txt") + "' --method " + method;
    }
    std::string classifier() const { return " --classifier '" + (dir / "W.npy") + "'"; }
};

// The JSON of a run equals the library's scores exactly (nlohmann prints doubles round-trip).
void check_json(const nlohmann::json& j, const std::string& method, const mlnc::label_sets& truth,
                const mlnc::label_sets& pred, double flops) {
    const auto r = mlnc::compute_score_report(truth, pred);
    const auto same = [](const nlohmann::json& o, const mlnc::multilabel_scores& s) {
        REQUIRE(o.size() == 6);
        CHECK(o["f1_micro"].get<double>() == s.f1_micro);
        CHECK(o["f1_macro"].get<double>() == s.f1_macro);
        CHECK(o["f1_samples"].get<double>() == s.f1_samples);
        CHECK(o["subset_accuracy"].get<double>() == s.subset_accuracy);
        CHECK(o["hamming_loss"].get<double>() == s.hamming_loss);
        CHECK(o["jaccard_samples"].get<double>() == s.jaccard_samples);
    };
    CHECK(j.size() == 10);
    CHECK(j["method"] == method);
    CHECK(j["n_test"] == truth.size());
    nlohmann::json overall = j;
    for (const char* k : {"method", "n_test", "by_multiplicity", "flops_per_sample"}) overall.erase(k);
    same(overall, r.overall);
    REQUIRE(static_cast<mlnc::index_t>(j["by_multiplicity"].size()) == r.by_multiplicity.size());
    for (const auto& [m, s] : r.by_multiplicity) same(j["by_multiplicity"][std::to_string(m)], s);
    CHECK(j["flops_per_sample"].get<double>() == flops);
}

}  // namespace

TEST_CASE("predict: onn, tagwise and ova give the library's predictions and scores") {
    const files f;
    SECTION("onn") {
        const auto r = run_cli(f.args("onn") + " --json --out '" + (f.dir / "P.txt") + "'");
        INFO(r.err);
        REQUIRE(r.exit_code == 0);
        const mlnc::onn_predictor onn(f.train.H, f.train.S);
        const auto pred = onn.predict(f.test.H);
        check_json(nlohmann::json::parse(r.out), "onn", f.test.S, pred, onn.flops_per_sample());
        CHECK(mlnc::io::read_labels(f.dir / "P.txt", 5) == pred);
    }
    SECTION("tagwise") {
        const auto r = run_cli(f.args("tagwise") + f.classifier() + " --json --out '" + (f.dir / "P.txt") + "'");
        INFO(r.err);
        REQUIRE(r.exit_code == 0);
        const auto dec = mlnc::fit_tagwise_decoder(f.train.W, f.train.H, f.train.S);
        const auto pred = dec.predict(f.test.H);
        check_json(nlohmann::json::parse(r.out), "tagwise", f.test.S, pred, dec.flops_per_sample());
        CHECK(mlnc::io::read_labels(f.dir / "P.txt", 5) == pred);
    }
    SECTION("ova") {
        const auto r = run_cli(f.args("ova") + " --json");
        INFO(r.err);
        REQUIRE(r.exit_code == 0);
        const mlnc::ova_classifier ova(f.train.H, f.train.S);
        check_json(nlohmann::json::parse(r.out), "ova", f.test.S, ova.predict(f.test.H), ova.flops_per_sample());
    }
    SECTION("human-readable table without --json") {
        const auto r = run_cli(f.args("onn"));
        REQUIRE(r.exit_code == 0);
        CHECK(r.out.find("f1_micro") != std::string::npos);
        CHECK(r.out.find("m = 2") != std::string::npos);
        CHECK(r.out.find("FLOPs per sample") != std::string::npos);
    }
}

TEST_CASE("predict: multi-hot .npy labels are read as well") {
    const files f;
    Eigen::MatrixXd Y = Eigen::MatrixXd::Zero(f.train.S.size(), 5);
    for (mlnc::index_t i = 0; i < f.train.S.size(); ++i) Y.row(i) = f.train.S.multi_hot(i).transpose();
    mlnc::io::write_matrix(f.dir / "A_hot.npy", Y);
    std::string args = f.args("onn") + " --json";
    args.replace(args.find("A.txt"), 5, "A_hot.npy");
    const auto r = run_cli(args);
    INFO(r.err);
    REQUIRE(r.exit_code == 0);
    const mlnc::onn_predictor onn(f.train.H, f.train.S);
    check_json(nlohmann::json::parse(r.out), "onn", f.test.S, onn.predict(f.test.H), onn.flops_per_sample());
}

TEST_CASE("predict: bad input exits 2 with one line and writes nothing") {
    const files f;
    const std::string out = f.dir / "P.txt";
    const auto bad = [&](const std::string& args, const std::string& expected) {
        const auto r = run_cli(args + " --out '" + out + "'");
        INFO(args);
        INFO(r.err);
        CHECK(r.exit_code == 2);
        CHECK(r.err_lines() == 1);
        CHECK(r.err.find(expected) != std::string::npos);
        CHECK(r.out.empty());
        CHECK_FALSE(std::filesystem::exists(out));
    };
    // tagwise needs W
    bad(f.args("tagwise"), "--classifier: required");
    // unknown method, missing option
    bad(f.args("knn"), "--method");
    bad("predict --train-features '" + (f.dir / "A.npy") + "' --method onn", "--train-labels");
    // a missing file
    bad(f.args("onn").replace(f.args("onn").find("B.npy"), 5, "nope.npy"), "nope.npy");

    // test features of another dimension
    mlnc::io::write_features(f.dir / "B5.npy", Eigen::MatrixXd::Ones(5, f.test.H.cols()));
    std::string a = f.args("onn");
    bad(a.replace(a.find("B.npy"), 5, "B5.npy"), "--test-features");
    // fewer training samples than training label sets
    mlnc::io::write_features(f.dir / "A_short.npy", f.train.H.leftCols(10));
    a = f.args("ova");
    bad(a.replace(a.find("A.npy"), 5, "A_short.npy"), "--train-features");
    // a classifier of the wrong width
    mlnc::io::write_matrix(f.dir / "W4.npy", Eigen::MatrixXd::Ones(5, 4));
    bad(f.args("tagwise") + " --classifier '" + (f.dir / "W4.npy") + "'", "--classifier");

    // test labels using a label the training labels never use (onn and ova): labels 0..3 only in
    // training, label 4 in the test file.
    {
        std::ofstream tr(f.dir / "A4.txt");
        for (mlnc::index_t i = 0; i < f.train.S.size(); ++i) tr << (i % 4) << "\n";
    }
    for (const char* m : {"onn", "ova"}) {
        a = f.args(m);
        bad(a.replace(a.find("A.txt"), 5, "A4.txt"), "label 4 does not occur in the training labels");
    }
    // a label index out of range of the classifier's K
    {
        std::ofstream te(f.dir / "B9.txt");
        for (mlnc::index_t i = 0; i < f.test.S.size(); ++i) te << (i == 3 ? 9 : 0) << "\n";
    }
    a = f.args("tagwise") + f.classifier();
    bad(a.replace(a.find("B.txt"), 5, "B9.txt"), "out of range");
    // multi-hot files disagreeing on K (5 and 7 columns)
    Eigen::MatrixXd Ytrain = Eigen::MatrixXd::Zero(f.train.S.size(), 5), Ytest = Eigen::MatrixXd::Zero(f.test.S.size(), 7);
    Ytrain.col(0).setOnes();
    Ytest.col(0).setOnes();
    mlnc::io::write_matrix(f.dir / "A_hot.npy", Ytrain);
    mlnc::io::write_matrix(f.dir / "B_hot.npy", Ytest);
    a = f.args("onn");
    a.replace(a.find("A.txt"), 5, "A_hot.npy");
    bad(a.replace(a.find("B.txt"), 5, "B_hot.npy"), "5 columns, expected K = 7");
}
