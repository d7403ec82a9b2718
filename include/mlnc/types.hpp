#pragma once
// The vocabulary shared by every part of mlnc (docs/api.md):
//  - index_t: every index, size and count (samples, labels, n_m, iterations of a sample list);
//    label_t: one label index as stored in label sets (K < 2^31);
//  - matrix<T>, vector<T>: the Eigen types of results;
//  - per_multiplicity<V>: a value for each multiplicity m present (n_m, C_m, Delta_m, NC1 by m,
//    scores by m), the one representation of anything indexed by m;
//  - penalties: the weights of Problem (4).
// Nothing here depends on a backend.

#include <mlnc/config.hpp>
#include <mlnc/error.hpp>

#include <Eigen/Core>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <initializer_list>
#include <string>
#include <utility>
#include <vector>

namespace mlnc {

using index_t = std::int64_t;
using label_t = std::int32_t;  // a label index; K < 2^31

template <class T>
using matrix = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic>;
template <class T>
using vector = Eigen::Matrix<T, Eigen::Dynamic, 1>;

// Which PAL loss: the sum over the sample's labels, or its mean.
enum class pal_variant {
    pal,    // L = sum_{k in S} -log softmax(z)_k
    pal_n,  // the same divided by |S| (what the published code trains with)
};

// A value for each multiplicity m >= 1 present, in ascending m: a sorted flat map. Iterates like
// std::map (`for (const auto& [m, v] : x)`, read-only, so the order cannot be broken); at(m)
// throws mlnc::error when m is absent, operator[] inserts a value-initialised entry as std::map does.
template <class V>
class per_multiplicity {
public:
    using value_type = std::pair<index_t, V>;
    using const_iterator = typename std::vector<value_type>::const_iterator;

    per_multiplicity() = default;
    // From (m, value) pairs in any order; each m >= 1 at most once.
    per_multiplicity(std::initializer_list<value_type> entries) {
        for (const auto& [m, v] : entries) {
            detail::require(!contains(m), "multiplicity " + std::to_string(m), "given twice");
            insert_or_assign(m, v);
        }
    }

    index_t size() const noexcept { return static_cast<index_t>(e_.size()); }
    bool empty() const noexcept { return e_.empty(); }
    const_iterator begin() const noexcept { return e_.begin(); }
    const_iterator end() const noexcept { return e_.end(); }
    const value_type& front() const { return e_.front(); }
    const value_type& back() const { return e_.back(); }

    bool contains(index_t m) const noexcept {
        const auto it = lower(m);
        return it != e_.end() && it->first == m;
    }
    const V& at(index_t m) const {
        const auto it = lower(m);
        if (it == e_.end() || it->first != m) throw error("multiplicity " + std::to_string(m) + ": not present");
        return it->second;
    }
    V& at(index_t m) { return const_cast<V&>(std::as_const(*this).at(m)); }
    V& operator[](index_t m) {
        check_m(m);
        auto it = lower(m);
        if (it == e_.end() || it->first != m) it = e_.insert(it, value_type{m, V{}});
        return it->second;
    }
    void insert_or_assign(index_t m, V v) { (*this)[m] = std::move(v); }

    // The multiplicities present, ascending; the smallest and largest.
    std::vector<index_t> multiplicities() const {
        std::vector<index_t> ms;
        ms.reserve(e_.size());
        for (const auto& e : e_) ms.push_back(e.first);
        return ms;
    }
    index_t min_multiplicity() const { return nonempty().front().first; }
    index_t max_multiplicity() const { return nonempty().back().first; }

    // The same multiplicities with f(v) as values.
    template <class F>
    auto transform(F&& f) const {
        per_multiplicity<std::decay_t<decltype(f(std::declval<const V&>()))>> out;
        for (const auto& [m, v] : e_) out.insert_or_assign(m, f(v));
        return out;
    }

    friend bool operator==(const per_multiplicity&, const per_multiplicity&) = default;

private:
    static void check_m(index_t m) {
        detail::require(m >= 1, "multiplicity " + std::to_string(m), "must be at least 1");
    }
    auto lower(index_t m) const {
        return std::lower_bound(e_.begin(), e_.end(), m, [](const value_type& e, index_t k) { return e.first < k; });
    }
    auto lower(index_t m) {
        return std::lower_bound(e_.begin(), e_.end(), m, [](const value_type& e, index_t k) { return e.first < k; });
    }
    const std::vector<value_type>& nonempty() const {
        if (e_.empty()) throw error("per_multiplicity: no multiplicity present");
        return e_;
    }

    std::vector<value_type> e_;
};

// n_m: samples per m-subset of the labels (Theorem 1's balanced training set).
using multiplicity_counts = per_multiplicity<index_t>;

// A point (W, H, b) of Problem (4): a start, a checkpoint, an optimiser.
template <class T = double>
struct ufm_point {
    matrix<T> W;  // K x d
    matrix<T> H;  // d x N
    vector<T> b;  // K
};

// The three penalty weights of Problem (4) (no factor 1/2).
struct penalties {
    double lambda_w = 0.0;
    double lambda_h = 0.0;
    double lambda_b = 0.0;
};

inline void check_penalties(const penalties& p) {
    const auto ok = [](double v) { return std::isfinite(v) && v >= 0.0; };
    detail::require(ok(p.lambda_w), "lambda_w", "must be finite and >= 0, got " + detail::num(p.lambda_w));
    detail::require(ok(p.lambda_h), "lambda_h", "must be finite and >= 0, got " + detail::num(p.lambda_h));
    detail::require(ok(p.lambda_b), "lambda_b", "must be finite and >= 0, got " + detail::num(p.lambda_b));
}

}  // namespace mlnc

// A program compiled with MLNC_PRECOMPILED=1 (linked to mlnc::precompiled) must be compiled with
// the library's Eigen alignment: Eigen assumes its matrices are aligned to EIGEN_MAX_ALIGN_BYTES,
// which depends on the instruction set (16 for SSE2, 32 for AVX, 64 for AVX-512), and matrices
// allocated on one side are used on the other. The library defines one symbol named after its
// alignment; every program references the one named after its own, so a mismatch (e.g. a
// program built with -march=native against a library built without) fails to link, naming both
// values, instead of crashing at run time.
#if MLNC_PRECOMPILED
#define MLNC_ALIGN_SYMBOL_2(n) precompiled_library_has_eigen_max_align_bytes_##n
#define MLNC_ALIGN_SYMBOL(n) MLNC_ALIGN_SYMBOL_2(n)
namespace mlnc::detail {
extern const int MLNC_ALIGN_SYMBOL(EIGEN_MAX_ALIGN_BYTES);
#if defined(MLNC_INSTANTIATE_TYPES)
const int MLNC_ALIGN_SYMBOL(EIGEN_MAX_ALIGN_BYTES) = EIGEN_MAX_ALIGN_BYTES;
#else
namespace {
[[gnu::used]] const int* const precompiled_alignment_check = &MLNC_ALIGN_SYMBOL(EIGEN_MAX_ALIGN_BYTES);
}  // namespace
#endif
}  // namespace mlnc::detail
#undef MLNC_ALIGN_SYMBOL
#undef MLNC_ALIGN_SYMBOL_2
#endif
