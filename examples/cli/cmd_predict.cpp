// mlnc predict: predict the test label sets from frozen features with ONN, the tag-wise decoder or
// the OvA baseline, and score them (docs/cli.md, docs/predict.md).

#include "command.hpp"

#include <mlnc/io/label_file.hpp>
#include <mlnc/io/npy.hpp>
#include <mlnc/labels.hpp>
#include <mlnc/predict.hpp>
#include <mlnc/scores.hpp>

#include <iomanip>
#include <memory>
#include <optional>
#include <sstream>
#include <string>

namespace mlnc_cli {
namespace {

using mlnc::index_t;

struct predict_args {
    std::string train_features, train_labels, test_features, test_labels;
    std::string method;
    std::string classifier;
    std::string out;
    bool json = false;
};

// Both label files with one K: the classifier's when given, else the larger of the two inferred
// ones (a text file only knows its largest index; a .npy file's column count must then agree).
std::pair<mlnc::label_sets, mlnc::label_sets> read_label_files(const predict_args& a, index_t K) {
    auto train = mlnc::io::read_labels(a.train_labels, K);
    auto test = mlnc::io::read_labels(a.test_labels, K);
    if (K == 0 && train.num_labels() != test.num_labels()) {
        const index_t k = std::max(train.num_labels(), test.num_labels());
        train = mlnc::io::read_labels(a.train_labels, k);
        test = mlnc::io::read_labels(a.test_labels, k);
    }
    return {std::move(train), std::move(test)};
}

nlohmann::json scores_json(const mlnc::multilabel_scores& s) {
    return {{"f1_micro", s.f1_micro},         {"f1_macro", s.f1_macro},
            {"f1_samples", s.f1_samples},     {"subset_accuracy", s.subset_accuracy},
            {"hamming_loss", s.hamming_loss}, {"jaccard_samples", s.jaccard_samples}};
}

std::string scores_row(const std::string& name, const mlnc::multilabel_scores& s) {
    std::ostringstream o;
    o << std::left << std::setw(14) << name << std::right << std::fixed << std::setprecision(4);
    for (const double v : {s.f1_micro, s.f1_macro, s.f1_samples, s.subset_accuracy, s.hamming_loss, s.jaccard_samples})
        o << std::setw(11) << v;
    o << std::setw(9) << s.n << "\n";
    return o.str();
}

std::function<int()> setup(CLI::App& app) {
    auto a = std::make_shared<predict_args>();
    app.add_option("--train-features", a->train_features, "Training features, N x d .npy")->required();
    app.add_option("--train-labels", a->train_labels, "Training label sets (text or N x K multi-hot .npy)")->required();
    app.add_option("--test-features", a->test_features, "Test features, N x d .npy")->required();
    app.add_option("--test-labels", a->test_labels, "Test label sets (text or N x K multi-hot .npy)")->required();
    app.add_option("--method", a->method, "onn, tagwise or ova")
        ->required()
        ->check(CLI::IsMember({"onn", "tagwise", "ova"}));
    app.add_option("--classifier", a->classifier, "Classifier W, K x d .npy (required by tagwise)");
    app.add_option("--out", a->out, "Write the predicted label sets here (text format)");
    add_json_flag(app, a->json);

    return [a]() -> int {
        if (a->method == "tagwise" && a->classifier.empty())
            throw mlnc::error("--classifier: required for --method tagwise (the decoder needs W)");

        std::optional<Eigen::MatrixXd> W;
        if (!a->classifier.empty()) W = mlnc::io::read_matrix(a->classifier, "W");
        const index_t K = W ? W->rows() : 0;
        if (W && K < 2) throw mlnc::error("--classifier: " + mlnc::detail::printable(a->classifier) + ": W needs K >= 2 rows (one per label)");
        const auto [train_S, test_S] = read_label_files(*a, K);
        const Eigen::MatrixXd H_train = mlnc::io::read_features(a->train_features, "features");
        const Eigen::MatrixXd H_test = mlnc::io::read_features(a->test_features, "features");

        const auto count_check = [](const Eigen::MatrixXd& H, const mlnc::label_sets& S, const std::string& fopt,
                                    const std::string& fpath, const std::string& lpath) {
            if (H.cols() != S.size())
                throw mlnc::error(fopt + ": " + mlnc::detail::printable(fpath) + " has " + std::to_string(H.cols()) +
                                  " samples but " + mlnc::detail::printable(lpath) + " has " +
                                  std::to_string(S.size()) + " label sets");
        };
        count_check(H_train, train_S, "--train-features", a->train_features, a->train_labels);
        count_check(H_test, test_S, "--test-features", a->test_features, a->test_labels);
        const index_t d = H_train.rows();
        if (H_test.rows() != d)
            throw mlnc::error("--test-features: " + mlnc::detail::printable(a->test_features) + " has d = " + std::to_string(H_test.rows()) +
                              " features per sample, the training features have d = " + std::to_string(d));
        if (W && W->cols() != d)
            throw mlnc::error("--classifier: " + mlnc::detail::printable(a->classifier) + " has " + std::to_string(W->cols()) +
                              " columns, the features have d = " + std::to_string(d));

        mlnc::label_sets pred;
        double flops = 0;
        std::string note;
        if (a->method == "onn") {
            mlnc::require_labels_seen(train_S, test_S, "--test-labels: " + mlnc::detail::printable(a->test_labels));
            const mlnc::onn_predictor onn(H_train, train_S);
            pred = onn.predict(H_test);
            flops = onn.flops_per_sample();
            note = std::to_string(onn.num_classes()) + " training label sets";
        } else if (a->method == "tagwise") {
            const auto dec = mlnc::fit_tagwise_decoder(*W, H_train, train_S);
            pred = dec.predict(H_test);
            flops = dec.flops_per_sample();
            std::ostringstream o;
            o << "C_m fitted from the training means:";
            for (const auto& [m, c] : dec.C()) o << " C_" << m << " = " << std::setprecision(6) << c;
            note = o.str();
        } else {
            mlnc::require_labels_seen(train_S, test_S, "--test-labels: " + mlnc::detail::printable(a->test_labels));
            std::optional<mlnc::ova_classifier<>> ova;
            try {
                ova.emplace(H_train, train_S);
            } catch (const mlnc::error& e) {
                throw mlnc::error("--train-labels: " + mlnc::detail::printable(a->train_labels) + ": " + e.what());
            }
            pred = ova->predict(H_test);
            flops = ova->flops_per_sample();
            int converged = 0;
            for (const auto& f : ova->fits()) converged += f.status == mlnc::ova_status::converged;
            note = std::to_string(converged) + " of " + std::to_string(ova->fits().size()) +
                   " logistic regressions converged";
        }
        const mlnc::score_report r = mlnc::compute_score_report(test_S, pred);
        if (!a->out.empty()) mlnc::io::write_labels(a->out, pred);

        if (a->json) {
            nlohmann::json by_m = nlohmann::json::object();
            for (const auto& [m, s] : r.by_multiplicity) by_m[std::to_string(m)] = scores_json(s);
            nlohmann::json j = {{"method", a->method}, {"n_test", test_S.size()}};
            j.update(scores_json(r.overall));
            j["by_multiplicity"] = by_m;
            j["flops_per_sample"] = flops;
            std::cerr << "mlnc predict: " << note << "\n";
            print_json(j);
        } else {
            std::cout << "mlnc predict: method " << a->method << ", " << test_S.size() << " test samples, K = "
                      << test_S.num_labels() << ", d = " << d << "; " << note << "\n"
                      << "              f1_micro   f1_macro f1_samples subset_acc    hamming    jaccard        n\n"
                      << scores_row("overall", r.overall);
            for (const auto& [m, s] : r.by_multiplicity) std::cout << scores_row("m = " + std::to_string(m), s);
            std::cout << "FLOPs per sample: " << std::setprecision(6) << flops << "\n";
            if (!a->out.empty()) std::cout << "predictions written to " << mlnc::detail::printable(a->out) << "\n";
        }
        return exit_ok;
    };
}

const registrar reg{{"predict", "Predict test label sets (ONN, tag-wise decoder, OvA) and score them", 50, setup}};

}  // namespace
}  // namespace mlnc_cli
