#pragma once
// The pick-all-labels cross-entropy (PAL-CE) and Problem (4) of the UFM:
//   f(W, H, b) = (1/N) sum_i L_PAL(W h_i + b, S_i) + lW ||W||_F^2 + lH ||H||_F^2 + lb ||b||^2
// with W K x d, H d x N (column i = feature of sample i), b of size K.
// Gradients: G = dLoss/dZ with g_i = (m_i softmax(z_i) - y_i) / N, then
//   dW = G H^T + 2 lW W,  dH = W^T G + 2 lH H,  db = G 1 + 2 lb b.

#include <mlnc/backend.hpp>
#include <mlnc/cpu/pal_kernels.hpp>
#include <mlnc/error.hpp>
#include <mlnc/labels.hpp>
#include <mlnc/types.hpp>

#include <Eigen/Core>

#include <cmath>
#include <string>
#include <type_traits>

namespace mlnc {

namespace detail {

template <class B, class T>
constexpr void check_pal_backend() {
    check_backend<B>();
    static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>, "mlnc: PAL-CE is implemented for float and double");
    if constexpr (backend<B> && backend_traits<B>::compiled_in)
        static_assert(backend_traits<B>::pal_loss, "mlnc: this backend has no PAL-CE kernel (see backend_traits)");
}

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

template <class B, class T>
double pal_dispatch(const T* z, Eigen::Index ldz, Eigen::Index K, Eigen::Index N, const label_sets& S,
                    pal_variant v, T* per_sample, T* g, Eigen::Index ldg) {
    check_pal_backend<B, T>();
    if constexpr (std::is_same_v<B, cpu>) return cpu_kernels::pal_columns(z, ldz, K, N, S, v, per_sample, g, ldg);
}

template <class DZ>
void check_logits(const Eigen::MatrixBase<DZ>& Z, const label_sets& S) {
    if (S.empty()) throw error("labels: no samples");
    check_shape(Z, S.num_labels(), S.size(), "Z", "K labels x N samples");
}

}  // namespace detail

// Mean PAL loss of the logits Z (K x N, column-major with unit inner stride).
template <class B = cpu, class DZ>
typename DZ::Scalar pal_loss(const Eigen::MatrixBase<DZ>& Z, const label_sets& S, pal_variant v = pal_variant::pal) {
    using T = typename DZ::Scalar;
    detail::check_logits(Z, S);
    const Eigen::Ref<const matrix<T>> z(Z);
    return static_cast<T>(detail::pal_dispatch<B, T>(z.data(), z.outerStride(), z.rows(), z.cols(), S, v, nullptr,
                                                     nullptr, 0) /
                          static_cast<double>(S.size()));
}

// Mean PAL loss and per-sample losses (N entries), one pass.
template <class B = cpu, class DZ>
typename DZ::Scalar pal_sample_losses(const Eigen::MatrixBase<DZ>& Z, const label_sets& S,
                                      Eigen::Ref<vector<typename DZ::Scalar>> losses,
                                      pal_variant v = pal_variant::pal) {
    using T = typename DZ::Scalar;
    detail::check_logits(Z, S);
    detail::check_shape(losses, S.size(), 1, "losses", "one per sample");
    const Eigen::Ref<const matrix<T>> z(Z);
    return static_cast<T>(detail::pal_dispatch<B, T>(z.data(), z.outerStride(), z.rows(), z.cols(), S, v,
                                                     losses.data(), nullptr, 0) /
                          static_cast<double>(S.size()));
}

// Mean PAL loss and G = d(mean loss)/dZ (K x N), one pass.
template <class B = cpu, class DZ>
typename DZ::Scalar pal_loss_grad(const Eigen::MatrixBase<DZ>& Z, const label_sets& S,
                                  Eigen::Ref<matrix<typename DZ::Scalar>> G, pal_variant v = pal_variant::pal) {
    using T = typename DZ::Scalar;
    detail::check_logits(Z, S);
    detail::check_shape(G, Z.rows(), Z.cols(), "G", "same shape as Z");
    const Eigen::Ref<const matrix<T>> z(Z);
    return static_cast<T>(detail::pal_dispatch<B, T>(z.data(), z.outerStride(), z.rows(), z.cols(), S, v, nullptr,
                                                     G.data(), G.outerStride()) /
                          static_cast<double>(S.size()));
}

// Mean PAL loss; Z is overwritten by G = d(mean loss)/dZ (no second K x N buffer).
// If an exception is thrown (non-finite logit) the content of Z is unspecified.
template <class B = cpu, class DZ>
typename DZ::Scalar pal_loss_grad_inplace(Eigen::MatrixBase<DZ>& Z, const label_sets& S,
                                          pal_variant v = pal_variant::pal) {
    using T = typename DZ::Scalar;
    detail::check_logits(Z, S);
    Eigen::Ref<matrix<T>> z(Z.derived());  // binds without a copy, or fails to compile
    return static_cast<T>(detail::pal_dispatch<B, T>(z.data(), z.outerStride(), z.rows(), z.cols(), S, v, nullptr,
                                                     z.data(), z.outerStride()) /
                          static_cast<double>(S.size()));
}

template <class T>
struct objective_value {
    T loss = 0;     // data term (1/N) sum_i L(z_i, S_i)
    T penalty = 0;  // lW ||W||^2 + lH ||H||^2 + lb ||b||^2
    T total = 0;    // loss + penalty
};

// f(W, H, b) of Problem (4) for fixed labels and penalties, with analytic gradients. Holds one
// K x N workspace for the logits (the only K x N object ever formed; the gradient G overwrites it).
template <class T, class B = cpu>
class pal_objective {
public:
    pal_objective(label_sets S, penalties lambdas, pal_variant v = pal_variant::pal)
        : s_(std::move(S)), lam_(lambdas), v_(v) {
        detail::check_pal_backend<B, T>();
        check_penalties(lam_);
        if (s_.empty()) throw error("labels: no samples");
    }

    const label_sets& labels() const noexcept { return s_; }
    const penalties& lambdas() const noexcept { return lam_; }
    pal_variant variant() const noexcept { return v_; }
    Eigen::Index num_labels() const noexcept { return s_.num_labels(); }
    Eigen::Index num_samples() const noexcept { return s_.size(); }

    template <class DW, class DH, class Db>
    objective_value<T> evaluate(const Eigen::MatrixBase<DW>& W, const Eigen::MatrixBase<DH>& H,
                                const Eigen::MatrixBase<Db>& b) {
        logits(W, H, b);
        const double sum = detail::pal_dispatch<B, T>(z_.data(), z_.outerStride(), z_.rows(), z_.cols(), s_, v_,
                                                      nullptr, nullptr, 0);
        return finish(sum, W, H, b);
    }

    template <class DW, class DH, class Db>
    T value(const Eigen::MatrixBase<DW>& W, const Eigen::MatrixBase<DH>& H, const Eigen::MatrixBase<Db>& b) {
        return evaluate(W, H, b).total;
    }

    // Objective and its gradients; dW (K x d), dH (d x N), db (K) must be sized by the caller.
    template <class DW, class DH, class Db>
    objective_value<T> evaluate(const Eigen::MatrixBase<DW>& W, const Eigen::MatrixBase<DH>& H,
                                const Eigen::MatrixBase<Db>& b, Eigen::Ref<matrix<T>> dW, Eigen::Ref<matrix<T>> dH,
                                Eigen::Ref<vector<T>> db) {
        logits(W, H, b);
        detail::check_shape(dW, W.rows(), W.cols(), "dW", "same shape as W");
        detail::check_shape(dH, H.rows(), H.cols(), "dH", "same shape as H");
        detail::check_shape(db, b.size(), 1, "db", "same size as b");
        const double sum = detail::pal_dispatch<B, T>(z_.data(), z_.outerStride(), z_.rows(), z_.cols(), s_, v_,
                                                      nullptr, z_.data(), z_.outerStride());
        const auto& G = z_;
        dW.noalias() = G * H.transpose();
        dW += T(2 * lam_.lambda_w) * W;
        dH.noalias() = W.transpose() * G;
        dH += T(2 * lam_.lambda_h) * H;
        db = G.rowwise().sum();
        db += T(2 * lam_.lambda_b) * b;
        return finish(sum, W, H, b);
    }

private:
    template <class DW, class DH, class Db>
    void logits(const Eigen::MatrixBase<DW>& W, const Eigen::MatrixBase<DH>& H, const Eigen::MatrixBase<Db>& b) {
        static_assert(std::is_same_v<typename DW::Scalar, T> && std::is_same_v<typename DH::Scalar, T> &&
                          std::is_same_v<typename Db::Scalar, T>,
                      "mlnc: W, H and b must have the objective's scalar type");
        const Eigen::Index K = s_.num_labels(), N = s_.size();
        if (W.rows() != K)
            throw error("W: expected " + std::to_string(K) + " rows (one per label), got " + std::to_string(W.rows()));
        detail::check_shape(H, W.cols(), N, "H", "d x N, d = columns of W, N = number of samples");
        if (b.size() != K || (b.rows() != 1 && b.cols() != 1))
            throw error("b: expected a vector of " + std::to_string(K) + " entries, got " + std::to_string(b.rows()) +
                        " x " + std::to_string(b.cols()));
        detail::check_finite(W, "W");
        detail::check_finite(H, "H");
        detail::check_finite(b, "b");
        z_.resize(K, N);
        z_.noalias() = W * H;
        z_.colwise() += b.derived().reshaped();
    }

    template <class DW, class DH, class Db>
    objective_value<T> finish(double sum, const Eigen::MatrixBase<DW>& W, const Eigen::MatrixBase<DH>& H,
                              const Eigen::MatrixBase<Db>& b) const {
        const double loss = sum / static_cast<double>(s_.size());
        const double pen = lam_.lambda_w * W.template cast<double>().squaredNorm() +
                           lam_.lambda_h * H.template cast<double>().squaredNorm() +
                           lam_.lambda_b * b.template cast<double>().squaredNorm();
        return {static_cast<T>(loss), static_cast<T>(pen), static_cast<T>(loss + pen)};
    }

    label_sets s_;
    penalties lam_;
    pal_variant v_;
    matrix<T> z_;
};

}  // namespace mlnc
