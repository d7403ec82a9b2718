#pragma once
// Multi-label evaluation scores of predicted label sets against the true ones, with
// scikit-learn's definitions (sklearn.metrics, multi-hot N x K indicator matrices):
//   f1_micro         f1_score(average="micro"):   2 TP / (2 TP + FP + FN), counts over all (i, k)
//   f1_macro         f1_score(average="macro"):   mean over ALL K labels of 2 TP_k / (2 TP_k + FP_k + FN_k);
//                    a label with no true and no predicted positive has 0/0 and counts 0
//                    (scikit-learn's default zero_division="warn" sets it to 0 and warns)
//   f1_samples       f1_score(average="samples"): mean over samples of 2 |Y & P| / (|Y| + |P|)
//   subset_accuracy  accuracy_score:              fraction of samples with P = Y
//   hamming_loss     hamming_loss:                wrong (i, k) entries / (N K)
//   jaccard_samples  jaccard_score(average="samples"): mean over samples of |Y & P| / |Y u P|
// label_sets never holds an empty set, so every per-sample denominator and the micro
// denominator are positive; only the per-label macro one can be 0.
// Per multiplicity: the same six scores over the samples whose TRUE set has m labels (still
// averaged over all K labels for f1_macro, as scikit-learn does on that subset of rows).

#include <mlnc/error.hpp>
#include <mlnc/labels.hpp>
#include <mlnc/types.hpp>

#include <algorithm>
#include <cstddef>
#include <iterator>
#include <optional>
#include <span>
#include <string>
#include <vector>

namespace mlnc {

struct multilabel_scores {
    index_t n = 0;  // samples scored
    double f1_micro = 0;
    double f1_macro = 0;
    double f1_samples = 0;
    double subset_accuracy = 0;
    double hamming_loss = 0;
    double jaccard_samples = 0;
    friend bool operator==(const multilabel_scores&, const multilabel_scores&) = default;
};

struct score_report {
    multilabel_scores overall;
    per_multiplicity<multilabel_scores> by_multiplicity;  // for each true multiplicity m present
};

namespace detail {

inline void check_score_inputs(const label_sets& truth, const label_sets& pred) {
    require(!truth.empty(), "truth", "no samples");
    require(pred.size() == truth.size(), "pred",
            "has " + std::to_string(pred.size()) + " samples, truth has " + std::to_string(truth.size()));
    require(pred.num_labels() == truth.num_labels(), "pred",
            "has K = " + std::to_string(pred.num_labels()) + " labels, truth has K = " +
                std::to_string(truth.num_labels()));
}

// |a & b| of two strictly increasing lists.
inline index_t intersection_size(std::span<const label_t> a, std::span<const label_t> b) {
    index_t n = 0;
    std::size_t i = 0, j = 0;
    while (i < a.size() && j < b.size()) {
        if (a[i] < b[j]) ++i;
        else if (b[j] < a[i]) ++j;
        else {
            ++n;
            ++i;
            ++j;
        }
    }
    return n;
}

// The labels that occur in truth or in the predictions, ascending: the only ones with per-label
// counts (a label in neither adds 0 to every sum). O(nnz), nothing of size K, which may come from
// the largest index in a file.
inline std::vector<label_t> labels_in_use(const label_sets& truth, const label_sets& pred) {
    const auto a = truth.distinct_labels(), b = pred.distinct_labels();
    std::vector<label_t> u;
    u.reserve(a.size() + b.size());
    std::set_union(a.begin(), a.end(), b.begin(), b.end(), std::back_inserter(u));
    return u;
}

// Accumulates the counts behind the six scores over a subset of the samples. `labels` (the
// labels in use, ascending) must outlive the counter.
class score_counter {
public:
    score_counter(index_t K, const std::vector<label_t>& labels)
        : k_(K), labels_(&labels), tp_(labels.size(), 0), fp_(labels.size(), 0), fn_(labels.size(), 0) {}

    void add(std::span<const label_t> y, std::span<const label_t> p) {
        const index_t inter = intersection_size(y, p);
        const auto ny = static_cast<index_t>(y.size()), np = static_cast<index_t>(p.size());
        ++n_;
        tp_all_ += inter;
        fp_all_ += np - inter;
        fn_all_ += ny - inter;
        f1_sum_ += 2.0 * static_cast<double>(inter) / static_cast<double>(ny + np);
        jaccard_sum_ += static_cast<double>(inter) / static_cast<double>(ny + np - inter);
        if (inter == ny && inter == np) ++exact_;
        // Per-label counts by a merge of the two sorted lists.
        std::size_t i = 0, j = 0;
        while (i < y.size() || j < p.size()) {
            if (j == p.size() || (i < y.size() && y[i] < p[j])) ++fn_[slot(y[i++])];
            else if (i == y.size() || p[j] < y[i]) ++fp_[slot(p[j++])];
            else {
                ++tp_[slot(y[i])];
                ++i;
                ++j;
            }
        }
    }

    multilabel_scores scores() const {
        multilabel_scores s;
        s.n = n_;
        if (n_ == 0) return s;
        const double n = static_cast<double>(n_);
        s.f1_micro = 2.0 * static_cast<double>(tp_all_) / static_cast<double>(2 * tp_all_ + fp_all_ + fn_all_);
        double macro = 0;
        for (std::size_t k = 0; k < tp_.size(); ++k) {
            const index_t den = 2 * tp_[k] + fp_[k] + fn_[k];
            if (den > 0) macro += 2.0 * static_cast<double>(tp_[k]) / static_cast<double>(den);
        }
        s.f1_macro = macro / static_cast<double>(k_);
        s.f1_samples = f1_sum_ / n;
        s.subset_accuracy = static_cast<double>(exact_) / n;
        s.hamming_loss = static_cast<double>(fp_all_ + fn_all_) / (n * static_cast<double>(k_));
        s.jaccard_samples = jaccard_sum_ / n;
        return s;
    }

private:
    std::size_t slot(label_t k) const {
        return static_cast<std::size_t>(std::lower_bound(labels_->begin(), labels_->end(), k) - labels_->begin());
    }

    index_t k_;
    const std::vector<label_t>* labels_;
    std::vector<index_t> tp_, fp_, fn_;
    index_t n_ = 0, tp_all_ = 0, fp_all_ = 0, fn_all_ = 0, exact_ = 0;
    double f1_sum_ = 0, jaccard_sum_ = 0;
};

}  // namespace detail

// The six scores over all samples. Throws mlnc::error when truth is empty or the two differ in
// N or K.
inline multilabel_scores compute_multilabel_scores(const label_sets& truth, const label_sets& pred) {
    detail::check_score_inputs(truth, pred);
    const auto labels = detail::labels_in_use(truth, pred);
    detail::score_counter c(truth.num_labels(), labels);
    for (index_t i = 0; i < truth.size(); ++i) c.add(truth[i], pred[i]);
    return c.scores();
}

// The six scores overall and for each true multiplicity present.
inline score_report compute_score_report(const label_sets& truth, const label_sets& pred) {
    detail::check_score_inputs(truth, pred);
    const index_t K = truth.num_labels();
    const auto labels = detail::labels_in_use(truth, pred);
    detail::score_counter all(K, labels);
    per_multiplicity<std::optional<detail::score_counter>> by_m;  // a counter needs K and the labels
    for (index_t i = 0; i < truth.size(); ++i) {
        all.add(truth[i], pred[i]);
        auto& c = by_m[truth.multiplicity(i)];
        if (!c) c.emplace(K, labels);
        c->add(truth[i], pred[i]);
    }
    score_report r;
    r.overall = all.scores();
    r.by_multiplicity = by_m.transform([](const std::optional<detail::score_counter>& c) { return c->scores(); });
    return r;
}

inline double f1_micro(const label_sets& truth, const label_sets& pred) {
    return compute_multilabel_scores(truth, pred).f1_micro;
}
inline double f1_macro(const label_sets& truth, const label_sets& pred) {
    return compute_multilabel_scores(truth, pred).f1_macro;
}
inline double f1_samples(const label_sets& truth, const label_sets& pred) {
    return compute_multilabel_scores(truth, pred).f1_samples;
}
inline double subset_accuracy(const label_sets& truth, const label_sets& pred) {
    return compute_multilabel_scores(truth, pred).subset_accuracy;
}
inline double hamming_loss(const label_sets& truth, const label_sets& pred) {
    return compute_multilabel_scores(truth, pred).hamming_loss;
}
inline double jaccard_samples(const label_sets& truth, const label_sets& pred) {
    return compute_multilabel_scores(truth, pred).jaccard_samples;
}

}  // namespace mlnc
