#pragma once
// Small vocabulary types shared by the loss, the theory and the trainer: Eigen aliases and the
// penalty weights of Problem (4). Nothing here depends on a backend.

#include <mlnc/error.hpp>

#include <Eigen/Core>

#include <cmath>
#include <string>

namespace mlnc {

template <class T>
using matrix = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic>;
template <class T>
using vector = Eigen::Matrix<T, Eigen::Dynamic, 1>;

// Which PAL loss: the sum over the sample's labels, or its mean.
enum class pal_variant {
    pal,    // L = sum_{k in S} -log softmax(z)_k
    pal_n,  // the same divided by |S| (what the published code trains with)
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
