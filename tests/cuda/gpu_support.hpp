#pragma once
// Helpers of the GPU parity tests: random problems, padded device copies (views with ld > rows)
// and the relative Frobenius distance the tolerances are stated in.

#include <mlnc/cuda/runtime.hpp>
#include <mlnc/labels.hpp>
#include <mlnc/types.hpp>

#include <Eigen/Core>

#include <algorithm>
#include <cstdint>
#include <random>
#include <vector>

namespace mlnc_gpu_test {

using mlnc::index_t;

// ||a - b||_F / ||b||_F must be below this: 1e-12 in double, 1e-5 in float.
template <class T>
constexpr double tolerance = sizeof(T) == 8 ? 1e-12 : 1e-5;

template <class A, class B>
double rel(const A& a, const B& b) {
    const double nb = b.template cast<double>().norm();
    const double d = (a.template cast<double>() - b.template cast<double>()).norm();
    return nb > 0 ? d / nb : d;
}

// Random label sets: multiplicities 1..max_m; sample 0 has all K labels, sample 1 the labels
// around the warp and tile boundaries (0, 31, 32, 33, 1023, 1024, 1025, K - 1 where < K).
inline mlnc::label_sets random_labels(index_t K, index_t N, index_t max_m, std::mt19937_64& rng) {
    std::vector<std::vector<index_t>> sets;
    for (index_t i = 0; i < N; ++i) {
        std::vector<index_t> s;
        if (i == 0) {
            for (index_t k = 0; k < K; ++k) s.push_back(k);
        } else if (i == 1) {
            for (index_t k : {index_t{0}, index_t{31}, index_t{32}, index_t{33}, index_t{1023}, index_t{1024},
                              index_t{1025}, K - 1})
                if (k < K && std::find(s.begin(), s.end(), k) == s.end()) s.push_back(k);
        } else {
            const index_t m = 1 + static_cast<index_t>(rng() % static_cast<std::uint64_t>(std::min(K, max_m)));
            while (static_cast<index_t>(s.size()) < m) {
                const auto k = static_cast<index_t>(rng() % static_cast<std::uint64_t>(K));
                if (std::find(s.begin(), s.end(), k) == s.end()) s.push_back(k);
            }
        }
        sets.push_back(s);
    }
    return mlnc::label_sets::from_lists(sets, K);
}

template <class T>
mlnc::matrix<T> random_matrix(index_t rows, index_t cols, double sd, std::mt19937_64& rng) {
    std::normal_distribution<double> nd(0.0, sd);
    mlnc::matrix<T> m(rows, cols);
    for (index_t j = 0; j < m.size(); ++j) m.data()[j] = static_cast<T>(nd(rng));
    return m;
}

// A device copy of x inside a buffer with `pad` extra rows: the view has ld = rows + pad.
template <class T>
struct padded {
    mlnc::device_buffer<T> buf;
    mlnc::device_matrix_view<T> view;
};
template <class T>
padded<T> upload_padded(mlnc::cuda_backend& gpu, const mlnc::matrix<T>& x, index_t pad) {
    mlnc::matrix<T> host = mlnc::matrix<T>::Constant(x.rows() + pad, x.cols(), T(-7));
    host.topRows(x.rows()) = x;
    padded<T> p{mlnc::upload(gpu, host), {}};
    p.view = mlnc::device_matrix_view<T>(p.buf.data(), x.rows(), x.cols(), x.rows() + pad);
    return p;
}

}  // namespace mlnc_gpu_test
