// Fuzz target: the label_sets constructors (from_csr, from_lists, from_multi_hot) on arrays
// decoded from the bytes, and what is computed from a label_sets (groups, histogram, distinct
// and absent labels).
#include "fuzz_support.hpp"

#include <mlnc/labels.hpp>

#include <Eigen/Core>

#include <vector>

namespace {

// Little-endian integers from the bytes, consumed front to back; 0 when they run out.
class reader {
public:
    reader(const std::uint8_t* d, std::size_t n) : d_(d), n_(n) {}
    std::int64_t next(int bytes) {
        std::uint64_t v = 0;
        for (int b = 0; b < bytes; ++b) v |= static_cast<std::uint64_t>(pos_ < n_ ? d_[pos_++] : 0) << (8 * b);
        // Sign-extend so that negative values are reached too.
        const int shift = 64 - 8 * bytes;
        return static_cast<std::int64_t>(v << shift) >> shift;
    }
    bool done() const { return pos_ >= n_; }

private:
    const std::uint8_t* d_;
    std::size_t n_, pos_ = 0;
};

void exercise(const mlnc::label_sets& S) {
    const auto g = mlnc::group_by_label_set(S);
    if (static_cast<mlnc::index_t>(g.group_of.size()) != S.size()) std::abort();
    const auto h = S.multiplicity_histogram();
    mlnc::index_t total = 0;
    for (const auto c : h) total += c;
    if (total != S.size()) std::abort();
    const auto [first, count] = S.absent_labels(5);
    if (count + static_cast<mlnc::index_t>(S.distinct_labels().size()) != S.num_labels()) std::abort();
    (void)first;
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
    mlnc_fuzz::limit_memory();
    return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size < 2) return 0;
    const int which = data[0] % 3;
    reader r(data + 1, size - 1);
    // K of 1..4 bytes: small values and values near 2^31 are both reached.
    const mlnc::index_t K = r.next(1 + static_cast<int>(data[1] % 4));
    if (which == 0) {
        const auto n_off = static_cast<std::size_t>(r.next(1) & 0x3f);
        std::vector<mlnc::index_t> offsets;
        for (std::size_t i = 0; i < n_off; ++i) offsets.push_back(r.next(2));
        std::vector<mlnc::label_t> indices;
        while (!r.done() && indices.size() < 4096) indices.push_back(static_cast<mlnc::label_t>(r.next(2)));
        mlnc_fuzz::expect_refusal_or_success(
            [&] { exercise(mlnc::label_sets::from_csr(std::move(offsets), std::move(indices), K)); });
    } else if (which == 1) {
        std::vector<std::vector<mlnc::index_t>> lists;
        while (!r.done() && lists.size() < 256) {
            const auto len = static_cast<std::size_t>(r.next(1) & 0x0f);
            std::vector<mlnc::index_t> set;
            for (std::size_t j = 0; j < len; ++j) set.push_back(r.next(3));
            lists.push_back(std::move(set));
        }
        mlnc_fuzz::expect_refusal_or_success([&] { exercise(mlnc::label_sets::from_lists(lists, K)); });
    } else {
        const auto rows = static_cast<Eigen::Index>(r.next(1) & 0x1f);
        const auto cols = static_cast<Eigen::Index>(r.next(1) & 0x1f);
        Eigen::MatrixXd Y(rows, cols);
        for (Eigen::Index i = 0; i < rows; ++i)
            for (Eigen::Index k = 0; k < cols; ++k) Y(i, k) = static_cast<double>(r.next(1) % 3);
        mlnc_fuzz::expect_refusal_or_success([&] { exercise(mlnc::label_sets::from_multi_hot(Y)); });
    }
    return 0;
}
