#pragma once
// Label sets of N samples over K labels, stored compactly (CSR of sorted, unique, 0-based
// indices), plus the combinatorics of m-subsets used by the theory (the paper's S_{m,k}).
//
// Subset ranks use unsigned 128-bit integers: C(K, m) is exact while it fits in 128 bits
// (e.g. K = 10^6 for every m <= 7); beyond that rank/unrank throw mlnc::error and only the
// log-space count log_binomial() is available.

#include <mlnc/detail/memory.hpp>
#include <mlnc/error.hpp>
#include <mlnc/types.hpp>

#include <Eigen/Core>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <numeric>
#include <ranges>
#include <type_traits>
#include <initializer_list>
#include <span>
#include <string>
#include <utility>
#include <vector>

namespace mlnc {

using u128 = unsigned __int128;

namespace detail {
// The integer types label indices may come in: those std::in_range compares safely (no bool,
// no character types).
template <class I>
concept label_integer = std::is_integral_v<I> && !std::is_same_v<I, bool> && !std::is_same_v<I, char> &&
                        !std::is_same_v<I, wchar_t> && !std::is_same_v<I, char8_t> && !std::is_same_v<I, char16_t> &&
                        !std::is_same_v<I, char32_t>;
}  // namespace detail

class label_sets {
public:
    label_sets() = default;

    // From one list of label indices per sample: any range of ranges of integers (e.g.
    // std::vector<std::vector<int>>, of std::uint16_t, std::vector<std::array<long, 2>>). Each list is
    // sorted; duplicates, empty lists, indices outside [0, K) and K < 2 throw mlnc::error naming
    // the sample.
    template <class Sets>
    static label_sets from_lists(const Sets& sets, index_t K) {
        check_k(K);
        label_sets s;
        s.k_ = K;
        if constexpr (std::ranges::sized_range<Sets>) s.offsets_.reserve(std::ranges::size(sets) + 1);
        std::vector<index_t> row;
        index_t i = 0;
        for (const auto& set : sets) {
            row.clear();
            for (const auto v : set) {
                static_assert(detail::label_integer<std::remove_cvref_t<decltype(v)>>,
                              "mlnc: label indices must be of a signed or unsigned integer type (not bool or a character type)");
                row.push_back(checked_index(v, i));
            }
            std::sort(row.begin(), row.end());
            s.append_checked(row, i++);
        }
        return s;
    }
    static label_sets from_lists(std::initializer_list<std::initializer_list<index_t>> sets, index_t K) {
        return from_lists<std::initializer_list<std::initializer_list<index_t>>>(sets, K);
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
        return from_csr_checked(std::move(offsets), std::move(indices), K);
    }
    // The same from arrays of any integer types (copied into index_t / label_t, range-checked).
    template <std::ranges::input_range Offsets, std::ranges::input_range Indices>
        requires(detail::label_integer<std::ranges::range_value_t<Offsets>> &&
                 detail::label_integer<std::ranges::range_value_t<Indices>>)
    static label_sets from_csr(const Offsets& offsets, const Indices& indices, index_t K) {
        check_k(K);
        std::vector<index_t> off;
        for (const auto o : offsets) {
            if (!std::in_range<index_t>(o)) throw error("labels: CSR offset " + std::to_string(o) + " out of range");
            off.push_back(static_cast<index_t>(o));
        }
        std::vector<label_t> idx;
        for (const auto v : indices) {
            if (!std::in_range<label_t>(v) || static_cast<index_t>(v) >= K)
                throw error("labels: CSR label index " + std::to_string(v) + " out of range [0, " + std::to_string(K) + ")");
            idx.push_back(static_cast<label_t>(v));
        }
        return from_csr_checked(std::move(off), std::move(idx), K);
    }

private:
    static label_sets from_csr_checked(std::vector<index_t> offsets, std::vector<label_t> indices, index_t K) {
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

public:
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
    // A label index of any integer type as index_t; outside the range of index_t it is an error.
    template <class I>
    static index_t checked_index(I v, index_t sample) {
        if (!std::in_range<index_t>(v))
            throw error("labels: sample " + std::to_string(sample) + ": label index " + std::to_string(v) +
                        " out of range");
        return static_cast<index_t>(v);
    }
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

// ---------------------------------------------------------------------------------------------
// Theorem 1's training set: every m-subset of the K labels carries n_m samples. Samples are ordered
// by multiplicity, then by the lexicographic rank of their set, each set repeated n_m times (the
// order of make_synthetic and of optimum_result::sample_labels()). Entries with n_m = 0 add
// nothing. Throws mlnc::error when a count is negative, m > K, or the list would exceed
// max_samples (C(K, m) n_m grows fast: K = 100, m = 3 is 161700 sets).
inline label_sets balanced_label_sets(index_t K, const multiplicity_counts& n, index_t max_samples = 100000000) {
    detail::require(K >= 2 && K <= std::numeric_limits<label_t>::max(), "K",
                    "must be in [2, 2^31 - 1], got " + std::to_string(K));
    // The exact number of samples and label entries (C(K, m) in 128 bits), compared with the cap
    // before anything is allocated.
    u128 total = 0, entries = 0;
    const u128 cap = static_cast<u128>(std::max<index_t>(max_samples, 0));
    for (const auto& [m, count] : n) {
        detail::require(m <= K, "n", "multiplicity " + std::to_string(m) + " exceeds K = " + std::to_string(K));
        detail::require(count >= 0, "n", "n_" + std::to_string(m) + " = " + std::to_string(count) + " is negative");
        if (count == 0) continue;
        u128 sets = 0;
        const bool fits = detail::binomial_u128(K, m, sets);
        if (!fits || sets > cap / static_cast<u128>(count) || total + sets * static_cast<u128>(count) > cap) {
            const std::string here = fits && sets <= (~u128{0}) / static_cast<u128>(count)
                                         ? to_string(sets * static_cast<u128>(count))
                                         : "about " + detail::num(static_cast<double>(count) * std::exp(log_binomial(K, m)));
            const std::string before = total > 0 ? " (plus " + to_string(total) + " before)" : std::string();
            throw error("n: C(K, m) n_m = " + here + " samples at multiplicity " + std::to_string(m) + before +
                        ", more than max_samples = " + std::to_string(max_samples));
        }
        total += sets * static_cast<u128>(count);
        entries += sets * static_cast<u128>(count) * static_cast<u128>(m);
    }
    detail::require(total >= 1, "n", "gives no samples");
    detail::require_memory(static_cast<double>(total) * sizeof(index_t) + static_cast<double>(entries) * sizeof(label_t),
                           "n", "the " + to_string(total) + " label sets of the balanced training set");
    std::vector<index_t> offsets{0};
    std::vector<label_t> indices;
    offsets.reserve(static_cast<std::size_t>(total) + 1);
    indices.reserve(static_cast<std::size_t>(entries));
    for (const auto& [m, count] : n) {
        if (count == 0) continue;
        const auto sets = static_cast<std::uint64_t>(binomial(K, m));
        for (std::uint64_t r = 0; r < sets; ++r) {
            const std::vector<label_t> set = subset_unrank(r, m, K);
            for (index_t t = 0; t < count; ++t) {
                indices.insert(indices.end(), set.begin(), set.end());
                offsets.push_back(static_cast<index_t>(indices.size()));
            }
        }
    }
    return label_sets::from_csr(std::move(offsets), std::move(indices), K);
}

// A subset of the samples of a label_sets, by index: a minibatch. A view: it holds the indices and
// a pointer to S, which must outlive it. Sample j of the subset is sample indices()[j] of S; the
// matching feature columns are columns(H) (an Eigen indexed view, writable when H is). Indices
// may repeat and come in any order.
class sample_subset {
public:
    // A view of a temporary would dangle at the end of the statement.
    sample_subset(const label_sets&& S, std::vector<index_t> indices) = delete;
    static sample_subset range(const label_sets&& S, index_t begin, index_t count) = delete;

    sample_subset(const label_sets& S, std::vector<index_t> indices) : s_(&S), idx_(std::move(indices)) {
        for (std::size_t j = 0; j < idx_.size(); ++j)
            if (idx_[j] < 0 || idx_[j] >= S.size())
                throw error("sample_subset: index " + std::to_string(idx_[j]) + " (entry " + std::to_string(j) +
                            ") out of range [0, " + std::to_string(S.size()) + ")");
    }
    // Samples begin, ..., begin + count - 1 of S.
    static sample_subset range(const label_sets& S, index_t begin, index_t count) {
        if (begin < 0 || count < 0 || begin > S.size() - count)
            throw error("sample_subset: range [" + std::to_string(begin) + ", " + std::to_string(begin) + " + " +
                        std::to_string(count) + ") is not inside [0, " + std::to_string(S.size()) + ")");
        std::vector<index_t> idx(static_cast<std::size_t>(count));
        std::iota(idx.begin(), idx.end(), begin);
        return {S, std::move(idx)};
    }

    index_t size() const noexcept { return static_cast<index_t>(idx_.size()); }  // samples in the subset
    bool empty() const noexcept { return idx_.empty(); }
    index_t num_labels() const noexcept { return s_->num_labels(); }              // K
    index_t total_samples() const noexcept { return s_->size(); }                 // N of the whole set
    const label_sets& parent() const noexcept { return *s_; }
    const std::vector<index_t>& indices() const noexcept { return idx_; }
    std::span<const label_t> operator[](index_t j) const noexcept { return (*s_)[idx_[static_cast<std::size_t>(j)]]; }
    index_t multiplicity(index_t j) const noexcept { return s_->multiplicity(idx_[static_cast<std::size_t>(j)]); }

    // The columns of H (d x N) that belong to the subset, as an Eigen indexed view (no copy).
    template <class DH>
    auto columns(DH&& H) const {
        if (H.cols() != s_->size())
            throw error("H: expected " + std::to_string(s_->size()) + " columns (one per sample), got " +
                        std::to_string(H.cols()));
        return std::forward<DH>(H)(Eigen::all, idx_);
    }

    // The subset as label sets of its own (a copy).
    label_sets to_label_sets() const {
        std::vector<index_t> offsets{0};
        std::vector<label_t> indices;
        offsets.reserve(idx_.size() + 1);
        for (index_t j = 0; j < size(); ++j) {
            const auto set = (*this)[j];
            indices.insert(indices.end(), set.begin(), set.end());
            offsets.push_back(static_cast<index_t>(indices.size()));
        }
        return label_sets::from_csr(std::move(offsets), std::move(indices), num_labels());
    }

private:
    const label_sets* s_;
    std::vector<index_t> idx_;
};

}  // namespace mlnc
