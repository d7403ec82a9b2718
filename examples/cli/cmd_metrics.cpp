// mlnc metrics: the neural-collapse metrics of given features, labels and optionally a
// classifier (cli.md, "mlnc metrics"; definitions in docs/metrics.md).

#include "command.hpp"

#include <mlnc/io/label_file.hpp>
#include <mlnc/io/npy.hpp>
#include <mlnc/metrics.hpp>

#include <algorithm>
#include <cstdio>
#include <functional>
#include <iostream>
#include <memory>
#include <optional>
#include <string>

namespace {

struct metrics_options {
    std::string features, labels, classifier;
    bool json = false;
};

// Runs read(), prefixing any error with the option it came from; the io messages already start
// with the file's path ("--features <path>: ...").
template <class Read>
auto from_option(const std::string& option, Read&& read) {
    try {
        return read();
    } catch (const mlnc::error& e) {
        throw mlnc::error(option + " " + e.what());
    }
}

nlohmann::json to_json(const std::optional<double>& v) { return v ? nlohmann::json(*v) : nlohmann::json(nullptr); }

nlohmann::json to_json(const mlnc::metric_by_multiplicity& by_m) {
    nlohmann::json j = nlohmann::json::object();
    for (const auto& [m, v] : by_m) j[std::to_string(m)] = to_json(v);
    return j;
}

std::string to_text(const std::optional<double>& v, const char* why_not = "undefined for these data") {
    if (!v) return std::string("unavailable (") + why_not + ")";
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.6e", *v);
    return buf;
}

void print_table(const mlnc::nc_metrics& r, Eigen::Index N, Eigen::Index K, Eigen::Index d, bool have_w) {
    std::cout << "Neural-collapse metrics (0 under multi-label neural collapse): N = " << N << " samples, K = " << K
              << " labels, d = " << d << "\n";
    const auto line = [](const std::string& name, const std::string& value) {
        std::string padded = "  " + name;
        padded.resize(std::max<std::size_t>(padded.size() + 1, 30), ' ');
        std::cout << padded << value << "\n";
    };
    for (const auto& [m, v] : r.nc1_by_multiplicity)
        line("NC1, multiplicity " + std::to_string(m), to_text(v, "fewer than 2 classes or Sb = 0"));
    line("NC2 on W", have_w ? to_text(r.nc2_w, "W = 0") : "unavailable (no --classifier)");
    line("NC2 on feature means", to_text(r.nc2_h, "all mu_k equal"));
    line("NC3", have_w ? to_text(r.nc3, "W Mc^T = 0") : "unavailable (no --classifier)");
    // Past 2^24 pairs of label sets NC_m's cross mean is estimated from sampled pairs.
    const auto with_se = [](const std::optional<double>& v, const mlnc::metric_by_multiplicity& se, mlnc::index_t m) {
        std::string text = to_text(v, "a zero vector in an angle");
        if (v && se.contains(m) && se.at(m)) text += " +- " + to_text(se.at(m)) + " (estimated from sampled pairs)";
        return text;
    };
    for (const auto& [m, v] : r.nc_m) line("NC_m, m = " + std::to_string(m), with_se(v, r.nc_m_standard_error, m));
    for (const auto& [m, v] : r.nc_m_uncentered)
        line("NC_m uncentred, m = " + std::to_string(m), with_se(v, r.nc_m_uncentered_standard_error, m));
    std::cout << std::flush;
}

int run_metrics(const metrics_options& o) {
    const Eigen::MatrixXd H =
        from_option("--features", [&] { return mlnc::io::read_features(o.features, "H"); });
    const Eigen::Index d = H.rows(), N = H.cols();

    std::optional<Eigen::MatrixXd> W;
    if (!o.classifier.empty()) {
        W = from_option("--classifier", [&] { return mlnc::io::read_matrix(o.classifier, "W"); });
        if (W->rows() < 2)
            throw mlnc::error("--classifier " + mlnc::detail::printable(o.classifier) + ": W has " + std::to_string(W->rows()) +
                              " row; need K >= 2 labels (W is K x d)");
        if (W->cols() != d)
            throw mlnc::error("--classifier " + mlnc::detail::printable(o.classifier) + ": W is " + std::to_string(W->rows()) + " x " +
                              std::to_string(W->cols()) + " (K x d) but the features have d = " + std::to_string(d));
    }

    const mlnc::label_sets S = from_option("--labels", [&] {
        return mlnc::io::read_labels(o.labels, W ? W->rows() : 0);
    });
    if (S.size() != N)
        throw mlnc::error("--labels " + mlnc::detail::printable(o.labels) + ": " + std::to_string(S.size()) +
                          " label sets but the features have N = " + std::to_string(N) + " samples");
    const Eigen::Index K = S.num_labels();

    // Inputs are validated above; what remains is a label without a multiplicity-1 sample.
    const mlnc::nc_metrics r = from_option("--labels " + mlnc::detail::printable(o.labels) + ":", [&] {
        return W ? mlnc::compute_nc_metrics(H, S, *W) : mlnc::compute_nc_metrics(H, S);
    });

    if (o.json) {
        nlohmann::json j{{"n", N},
                         {"k", K},
                         {"d", d},
                         {"nc1", to_json(r.nc1)},
                         {"nc1_by_multiplicity", to_json(r.nc1_by_multiplicity)},
                         {"nc2_w", to_json(r.nc2_w)},
                         {"nc2_h", to_json(r.nc2_h)},
                         {"nc3", to_json(r.nc3)},
                         {"nc_m", to_json(r.nc_m)},
                         {"nc_m_uncentered", to_json(r.nc_m_uncentered)}};
        // Only where some NC_m was estimated from sampled pairs (more than 2^24 pairs of sets).
        if (!r.nc_m_standard_error.empty()) j["nc_m_standard_error"] = to_json(r.nc_m_standard_error);
        if (!r.nc_m_uncentered_standard_error.empty())
            j["nc_m_uncentered_standard_error"] = to_json(r.nc_m_uncentered_standard_error);
        mlnc_cli::print_json(j);
    } else {
        print_table(r, N, K, d, W.has_value());
    }
    return mlnc_cli::exit_ok;
}

const mlnc_cli::registrar reg{mlnc_cli::command{
    "metrics", "Neural-collapse metrics (NC1, NC2, NC3, NC_m) of given features and labels", 40,
    [](CLI::App& app) -> std::function<int()> {
        auto o = std::make_shared<metrics_options>();
        app.add_option("--features", o->features, "Features H, N x d, one row per sample (.npy, float32/float64)")
            ->required()
            ->type_name("FILE");
        app.add_option("--labels", o->labels,
                       "Label sets: text (one line of indices per sample) or N x K multi-hot .npy")
            ->required()
            ->type_name("FILE");
        app.add_option("--classifier", o->classifier,
                       "Classifier W, K x d (.npy); adds NC2 on W and NC3, and fixes K")
            ->type_name("FILE");
        mlnc_cli::add_json_flag(app, o->json);
        return [o] { return run_metrics(*o); };
    }}};

}  // namespace
