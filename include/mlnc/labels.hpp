#pragma once
// Label sets of N samples over K labels, stored compactly (CSR of sorted, unique, 0-based
// indices), plus the combinatorics of m-subsets used by the theory (the paper's S_{m,k}).
//
// Subset ranks use unsigned 128-bit integers: C(K, m) is exact while it fits in 128 bits
// (e.g. K = 10^6 for every m <= 7); beyond that rank/unrank throw mlnc::error and only the
// log-space count log_binomial() is available.

#include <mlnc/error.hpp>

#include <Eigen/Core>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <numeric>
#include <span>
#include <string>
#include <utility>
#include <vector>

namespace mlnc {

using index_t = std::int64_t;
using label_t = std::int32_t;  // a label index; K < 2^31
using u128 = unsigned __int128;

class label_sets {
public:
    label_sets() = default;

    // From one list of label indices per sample. Each list is sorted; duplicates, empty lists,
    // indices outside [0, K) and K < 2 throw mlnc::error naming the sample.
    static label_sets from_lists(const std::vector<std::vector<index_t>>& sets, index_t K) {
        check_k(K);
        label_sets s;
        s.k_ = K;
        s.offsets_.reserve(sets.size() + 1);
        std::vector<index_t> row;
        for (std::size_t i = 0; i < sets.size(); ++i) {
            row = sets[i];
            std::sort(row.begin(), row.end());
            s.append_checked(row, static_cast<index_t>(i));
        }
        return s;
    }

    // From an N x K multi-hot matrix (row i = sample i) whose entries are exactly 0 or 1.
    template <class Derived>
    static label_sets from_multi_hot(const Eigen::DenseBase<Derived>& Y) {
        const index_t K = Y.cols();
        check_k(K);
        label_sets s;
        s.k_ = K;
        s.offsets_.reserve(static_cast<std::size_t>(Y.rows()) + 1);
        std::vector<index_t> row;
        for (index_t i = 0; i < Y.rows(); ++i) {
            row.clear();
            for (index_t k = 0; k < K; ++k) {
                const auto v = Y(i, k);
                if (v == 1) {
                    row.push_back(k);
                } else if (!(v == 0)) {
                    throw error("labels: sample " + std::to_string(i) + ", column " + std::to_string(k) +
                                ": multi-hot entry is neither 0 nor 1");
                }
            }
            s.append_checked(row, i);
        }
        return s;
    }

    // From CSR arrays: offsets has N+1 entries starting at 0, indices[offsets[i]:offsets[i+1]]
    // are sample i's labels (must already be strictly increasing). The arrays are validated where
    // they are and then adopted: no second copy.
    static label_sets from_csr(std::vector<index_t> offsets, std::vector<label_t> indices, index_t K) {
        check_k(K);
        if (offsets.empty() || offsets.front() != 0 ||
            offsets.back() != static_cast<index_t>(indices.size()))
            throw error("labels: CSR offsets must start at 0 and end at the number of indices");
        // All offsets are validated before any index is read: a decreasing pair would otherwise
        // make a range that runs past the end of the indices.
        for (std::size_t i = 0; i + 1 < offsets.size(); ++i)
            if (offsets[i + 1] < offsets[i])
                throw error("labels: CSR offsets decrease at sample " + std::to_string(i) + " (" +
                            std::to_string(offsets[i]) + " then " + std::to_string(offsets[i + 1]) + ")");
        for (std::size_t i = 0; i + 1 < offsets.size(); ++i) {
            const auto b = indices.begin() + offsets[i], e = indices.begin() + offsets[i + 1];
            const std::string where = "labels: sample " + std::to_string(i);
            if (!std::is_sorted(b, e)) throw error(where + ": CSR indices are not sorted");
            if (b == e) throw error(where + ": empty label set");
            if (*b < 0) throw error(where + ": negative label index " + std::to_string(*b));
            if (*(e - 1) >= K)
                throw error(where + ": label index " + std::to_string(*(e - 1)) + " out of range [0, " +
                            std::to_string(K) + ")");
            const auto dup = std::adjacent_find(b, e);
            if (dup != e) throw error(where + ": duplicate label index " + std::to_string(*dup));
        }
        label_sets s;
        s.k_ = K;
        s.offsets_ = std::move(offsets);
        s.indices_ = std::move(indices);
        return s;
    }

    index_t num_labels() const noexcept { return k_; }  // K
    index_t size() const noexcept { return static_cast<index_t>(offsets_.size()) - 1; }  // N
    bool empty() const noexcept { return size() == 0; }

    std::span<const label_t> operator[](index_t i) const noexcept {
        return {indices_.data() + offsets_[static_cast<std::size_t>(i)],
                static_cast<std::size_t>(offsets_[static_cast<std::size_t>(i) + 1] - offsets_[static_cast<std::size_t>(i)])};
    }
    index_t multiplicity(index_t i) const noexcept {
        return offsets_[static_cast<std::size_t>(i) + 1] - offsets_[static_cast<std::size_t>(i)];
    }
    index_t max_multiplicity() const noexcept {
        index_t m = 0;
        for (index_t i = 0; i < size(); ++i) m = std::max(m, multiplicity(i));
        return m;
    }
    // hist[m] = number of samples with |S| = m, for m = 0..max_multiplicity() (hist[0] = 0).
    std::vector<index_t> multiplicity_histogram() const {
        std::vector<index_t> h(static_cast<std::size_t>(max_multiplicity()) + 1, 0);
        for (index_t i = 0; i < size(); ++i) ++h[static_cast<std::size_t>(multiplicity(i))];
        return h;
    }

    // The labels that occur in some sample, ascending. O(nnz log nnz) time and O(nnz) memory,
    // nothing of size K (K may be far larger than the data when it comes from an index in a file).
    std::vector<label_t> distinct_labels() const {
        std::vector<label_t> v = indices_;
        std::sort(v.begin(), v.end());
        v.erase(std::unique(v.begin(), v.end()), v.end());
        return v;
    }

    // The first `limit` labels in [0, K) that occur in no sample, ascending, and their number.
    std::pair<std::vector<index_t>, index_t> absent_labels(std::size_t limit = 10) const {
        const std::vector<label_t> present = distinct_labels();
        std::vector<index_t> first;
        index_t k = 0;
        for (std::size_t j = 0; j <= present.size() && first.size() < limit; ++j) {
            const index_t next = j < present.size() ? static_cast<index_t>(present[j]) : k_;
            for (; k < next && first.size() < limit; ++k) first.push_back(k);
            k = next + 1;
        }
        return {std::move(first), k_ - static_cast<index_t>(present.size())};
    }

    const std::vector<index_t>& offsets() const noexcept { return offsets_; }
    const std::vector<label_t>& indices() const noexcept { return indices_; }

    // Row i as a multi-hot column (K entries).
    Eigen::VectorXd multi_hot(index_t i) const {
        Eigen::VectorXd y = Eigen::VectorXd::Zero(k_);
        for (label_t k : (*this)[i]) y[k] = 1.0;
        return y;
    }

    friend bool operator==(const label_sets&, const label_sets&) = default;

private:
    static void check_k(index_t K) {
        if (K < 2) throw error("labels: K must be at least 2, got " + std::to_string(K));
        if (K > std::numeric_limits<label_t>::max())
            throw error("labels: K = " + std::to_string(K) + " exceeds the supported 2^31 - 1");
    }
    // row must be sorted.
    void append_checked(const std::vector<index_t>& row, index_t i) {
        const std::string where = "labels: sample " + std::to_string(i);
        if (row.empty()) throw error(where + ": empty label set");
        if (row.front() < 0) throw error(where + ": negative label index " + std::to_string(row.front()));
        if (row.back() >= k_)
            throw error(where + ": label index " + std::to_string(row.back()) + " out of range [0, " +
                        std::to_string(k_) + ")");
        for (std::size_t j = 1; j < row.size(); ++j)
            if (row[j] == row[j - 1]) throw error(where + ": duplicate label index " + std::to_string(row[j]));
        for (index_t v : row) indices_.push_back(static_cast<label_t>(v));
        offsets_.push_back(static_cast<index_t>(indices_.size()));
    }

    index_t k_ = 0;
    std::vector<index_t> offsets_{0};
    std::vector<label_t> indices_;
};

// Samples grouped by their label set. Groups are ordered by multiplicity, then
// lexicographically; sets is a label_sets with one row per distinct set.
struct label_set_groups {
    label_sets sets;                          // distinct label sets (G rows)
    std::vector<index_t> group_of;            // N entries: the group of each sample
    std::vector<std::vector<index_t>> members;  // G entries: sample indices, ascending
    index_t size() const noexcept { return sets.size(); }
};

inline label_set_groups group_by_label_set(const label_sets& s) {
    auto key_less = [](std::span<const label_t> a, std::span<const label_t> b) {
        if (a.size() != b.size()) return a.size() < b.size();
        return std::lexicographical_compare(a.begin(), a.end(), b.begin(), b.end());
    };
    std::vector<index_t> order(static_cast<std::size_t>(s.size()));
    std::iota(order.begin(), order.end(), index_t{0});
    std::stable_sort(order.begin(), order.end(), [&](index_t a, index_t b) { return key_less(s[a], s[b]); });

    label_set_groups g;
    g.group_of.assign(order.size(), -1);
    std::vector<std::vector<index_t>> lists;
    for (std::size_t r = 0; r < order.size(); ++r) {
        const index_t i = order[r];
        if (r == 0 || key_less(s[order[r - 1]], s[i])) {
            lists.emplace_back(s[i].begin(), s[i].end());
            g.members.emplace_back();
        }
        g.group_of[static_cast<std::size_t>(i)] = static_cast<index_t>(g.members.size()) - 1;
        g.members.back().push_back(i);
    }
    if (!lists.empty()) g.sets = label_sets::from_lists(lists, s.num_labels());
    else g.sets = label_sets::from_lists({}, s.num_labels());
    return g;
}

// ---------------------------------------------------------------------------------------------
// Combinatorics of m-subsets of {0..K-1}.

// log C(n, k). For min(k, n-k) <= 256 a sum of log((n-k+i)/i), accurate to a few ulps of the
// result (K = 10^6, m = 7: 4e-15 relative); beyond, lgamma differences, whose absolute error is
// ~1e-16 x lgamma(n) (1e-9 at n = 10^6), since the large terms cancel.
inline double log_binomial(index_t n, index_t k) {
    if (k < 0 || k > n) return -std::numeric_limits<double>::infinity();
    k = std::min(k, n - k);
    if (k <= 256) {
        double s = 0.0;
        for (index_t i = 1; i <= k; ++i) s += std::log(static_cast<double>(n - k + i) / static_cast<double>(i));
        return s;
    }
    return std::lgamma(static_cast<double>(n) + 1.0) - std::lgamma(static_cast<double>(k) + 1.0) -
           std::lgamma(static_cast<double>(n - k) + 1.0);
}

namespace detail {
inline u128 gcd_u128(u128 a, u128 b) {
    while (b != 0) {
        const u128 t = a % b;
        a = b;
        b = t;
    }
    return a;
}
// C(n, k) exactly, or false when it does not fit in 128 bits.
inline bool binomial_u128(index_t n, index_t k, u128& out) {
    if (k < 0 || n < 0 || k > n) {
        out = 0;
        return true;
    }
    k = std::min(k, n - k);
    u128 r = 1;
    for (index_t i = 1; i <= k; ++i) {
        // r * (n - k + i) / i is exact; divide out common factors first to delay overflow.
        u128 num = static_cast<u128>(n - k + i);
        u128 den = static_cast<u128>(i);
        const u128 g = gcd_u128(r, den);
        r /= g;
        den /= g;
        num /= den;  // den divides num once r and den are coprime
        if (num != 0 && r > (~u128{0}) / num) return false;
        r *= num;
    }
    out = r;
    return true;
}
}  // namespace detail

// C(n, k) as an exact 128-bit count; throws mlnc::error when it does not fit.
inline u128 binomial(index_t n, index_t k) {
    u128 r;
    if (!detail::binomial_u128(n, k, r))
        throw error("binomial: C(" + std::to_string(n) + ", " + std::to_string(k) + ") exceeds 2^128");
    return r;
}

inline std::string to_string(u128 v) {
    if (v == 0) return "0";
    std::string s;
    while (v != 0) {
        s.push_back(static_cast<char>('0' + static_cast<int>(v % 10)));
        v /= 10;
    }
    return {s.rbegin(), s.rend()};
}

// Lexicographic rank of a strictly increasing m-subset of {0..K-1} among all m-subsets.
// O(m) binomials via the combinatorial number system on the reversed indices.
inline u128 subset_rank(std::span<const label_t> subset, index_t K) {
    const auto m = static_cast<index_t>(subset.size());
    if (m < 1 || m > K) throw error("subset_rank: subset size must be in [1, K]");
    const u128 total = binomial(K, m);
    u128 colex = 0;
    for (index_t i = 0; i < m; ++i) {
        const index_t s = subset[static_cast<std::size_t>(i)];
        if (s < 0 || s >= K || (i > 0 && s <= subset[static_cast<std::size_t>(i - 1)]))
            throw error("subset_rank: subset must be strictly increasing within [0, K)");
        colex += binomial(K - 1 - s, m - i);
    }
    return total - 1 - colex;
}

// Inverse of subset_rank: the m-subset of {0..K-1} with the given lexicographic rank.
inline std::vector<label_t> subset_unrank(u128 rank, index_t m, index_t K) {
    if (m < 1 || m > K) throw error("subset_unrank: subset size must be in [1, K]");
    const u128 total = binomial(K, m);
    if (rank >= total) throw error("subset_unrank: rank " + to_string(rank) + " >= C(K, m) = " + to_string(total));
    u128 r = total - 1 - rank;
    std::vector<label_t> out(static_cast<std::size_t>(m));
    index_t hi = K - 1;  // c_i < c_{i-1}, c_0 <= K-1
    for (index_t i = 0; i < m; ++i) {
        const index_t j = m - i;
        // largest c in [j-1, hi] with C(c, j) <= r (C(j-1, j) = 0 always qualifies)
        index_t lo = j - 1, up = hi;
        while (lo < up) {
            const index_t mid = lo + (up - lo + 1) / 2;
            if (binomial(mid, j) <= r) lo = mid;
            else up = mid - 1;
        }
        r -= binomial(lo, j);
        out[static_cast<std::size_t>(i)] = static_cast<label_t>(K - 1 - lo);
        hi = lo - 1;
    }
    return out;
}

}  // namespace mlnc
