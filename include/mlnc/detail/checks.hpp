#pragma once
// The argument checks every front end shares: shapes and finiteness, each throwing mlnc::error
// that names the argument. Kept apart from the loss so that metrics, predictors and the theory
// can check their inputs without including the kernels.

#include <mlnc/error.hpp>

#include <Eigen/Core>

#include <string>

namespace mlnc::detail {

template <class Derived>
void check_shape(const Eigen::EigenBase<Derived>& x, Eigen::Index rows, Eigen::Index cols, const char* name,
                 const char* what) {
    if (x.rows() != rows || x.cols() != cols)
        throw error(std::string(name) + ": expected " + std::to_string(rows) + " x " + std::to_string(cols) + " (" +
                    what + "), got " + std::to_string(x.rows()) + " x " + std::to_string(x.cols()));
}

template <class Derived>
void check_finite(const Eigen::DenseBase<Derived>& x, const char* name) {
    if (!x.derived().allFinite()) throw error(std::string(name) + ": contains NaN or Inf");
}

}  // namespace mlnc::detail
