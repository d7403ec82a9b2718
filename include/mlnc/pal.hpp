#pragma once
// The pick-all-labels cross-entropy (PAL-CE) and Problem (4) of the UFM:
//   f(W, H, b) = (1/N) sum_i L_PAL(W h_i + b, S_i) + lW ||W||_F^2 + lH ||H||_F^2 + lb ||b||^2
// with W K x d, H d x N (column i = feature of sample i), b of size K.
// Gradients: G = dLoss/dZ with g_i = (m_i softmax(z_i) - y_i) / N, then
//   dW = G H^T + 2 lW W,  dH = W^T G + 2 lH H,  db = G 1 + 2 lb b.

#include <mlnc/backend.hpp>
#include <mlnc/cpu/pal_kernels.hpp>
#include <mlnc/detail/checks.hpp>
#include <mlnc/detail/memory.hpp>
#include <mlnc/error.hpp>
#include <mlnc/labels.hpp>
#include <mlnc/types.hpp>

#include <Eigen/Core>

#include <cmath>
#include <limits>
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

template <class B, class T>
pal_kernel_result pal_dispatch(strided_view<const T> z, const label_sets& S, pal_variant v, T* per_sample,
                               strided_view<T> g, double scale) {
    check_pal_backend<B, T>();
    if constexpr (std::is_same_v<B, cpu>) return cpu_kernels::pal_columns(z, S, v, per_sample, g, scale);
}

template <class DZ>
void check_logits(const Eigen::MatrixBase<DZ>& Z, const label_sets& S) {
    if (S.empty()) throw error("labels: no samples");
    check_shape(Z, S.num_labels(), S.size(), "Z", "K labels x N samples");
}

// The strided view of an Eigen object with direct access (a matrix of either storage order, a
// Map or Block with any strides): no copy.
template <class D>
constexpr bool has_direct_access = (int(Eigen::internal::traits<D>::Flags) & Eigen::DirectAccessBit) != 0;

template <class D>
auto view_of(const Eigen::DenseBase<D>& x) {
    using T = typename D::Scalar;
    return strided_view<const T>{x.derived().data(), x.rows(), x.cols(), x.derived().rowStride(),
                                 x.derived().colStride()};
}
template <class D>
auto mutable_view_of(Eigen::DenseBase<D>& x) {
    static_assert(has_direct_access<D> && (int(Eigen::internal::traits<D>::Flags) & Eigen::LvalueBit) != 0,
                  "mlnc: this output must be a writable matrix, Map or Block (an object with direct access)");
    using T = typename D::Scalar;
    D& d = x.derived();
    return strided_view<T>{d.data(), d.rows(), d.cols(), d.rowStride(), d.colStride()};
}

// An output argument: a non-const Eigen object, an lvalue or a temporary Block/Map of one.
template <class G>
constexpr bool writable_output = !std::is_const_v<std::remove_reference_t<G>> &&
                                 std::is_base_of_v<Eigen::DenseBase<std::decay_t<G>>, std::decay_t<G>>;

// Runs the kernel on Z as it is stored: in place when Z has direct access (any storage order
// or strides), else on the evaluated expression (an expression such as W * H has no storage).
template <class B, class DZ, class F>
auto with_logits_view(const Eigen::MatrixBase<DZ>& Z, F&& f) {
    using T = typename DZ::Scalar;
    if constexpr (has_direct_access<DZ>) {
        return f(view_of(Z));
    } else {
        const matrix<T> z = Z;
        return f(view_of(z));
    }
}

// A non-finite logit in a Z the caller passed is bad input.
inline void throw_if_non_finite(const pal_kernel_result& r, const char* name = "Z") {
    if (!r.finite())
        throw error(std::string(name) + ": non-finite logit at (" + std::to_string(r.bad_row) + ", " +
                    std::to_string(r.bad_col) + ")");
}

}  // namespace detail

// Mean PAL loss of the logits Z (K x N). Z may be any Eigen matrix, Map or Block (column- or
// row-major, any strides; never copied) or an expression (evaluated once). A non-finite logit
// throws mlnc::error naming its position.
template <class B = cpu, class DZ>
typename DZ::Scalar pal_loss(const Eigen::MatrixBase<DZ>& Z, const label_sets& S, pal_variant v = pal_variant::pal) {
    using T = typename DZ::Scalar;
    detail::check_logits(Z, S);
    const double inv_n = 1.0 / static_cast<double>(S.size());
    const auto r = detail::with_logits_view<B>(
        Z, [&](strided_view<const T> z) { return detail::pal_dispatch<B, T>(z, S, v, nullptr, {}, inv_n); });
    detail::throw_if_non_finite(r);
    return static_cast<T>(r.sum * inv_n);
}

// Mean PAL loss and per-sample losses (N entries), one pass.
template <class B = cpu, class DZ>
typename DZ::Scalar pal_sample_losses(const Eigen::MatrixBase<DZ>& Z, const label_sets& S,
                                      Eigen::Ref<vector<typename DZ::Scalar>> losses,
                                      pal_variant v = pal_variant::pal) {
    using T = typename DZ::Scalar;
    detail::check_logits(Z, S);
    detail::check_shape(losses, S.size(), 1, "losses", "one per sample");
    const double inv_n = 1.0 / static_cast<double>(S.size());
    const auto r = detail::with_logits_view<B>(Z, [&](strided_view<const T> z) {
        return detail::pal_dispatch<B, T>(z, S, v, losses.data(), {}, inv_n);
    });
    detail::throw_if_non_finite(r);
    return static_cast<T>(r.sum * inv_n);
}

// Mean PAL loss and G = d(mean loss)/dZ (K x N), one pass. G is any writable matrix, Map or
// Block of Z's shape (either storage order, any strides), written in place.
template <class B = cpu, class DZ, class DG>
typename DZ::Scalar pal_loss_grad(const Eigen::MatrixBase<DZ>& Z, const label_sets& S, DG&& G,
                                  pal_variant v = pal_variant::pal) {
    using T = typename DZ::Scalar;
    static_assert(detail::writable_output<DG>, "mlnc: G must be a non-const Eigen matrix, Map or Block");
    static_assert(std::is_same_v<typename std::decay_t<DG>::Scalar, T>, "mlnc: G must have the scalar type of Z");
    detail::check_logits(Z, S);
    detail::check_shape(G, Z.rows(), Z.cols(), "G", "same shape as Z");
    const double inv_n = 1.0 / static_cast<double>(S.size());
    const auto r = detail::with_logits_view<B>(Z, [&](strided_view<const T> z) {
        return detail::pal_dispatch<B, T>(z, S, v, nullptr, detail::mutable_view_of(G), inv_n);
    });
    detail::throw_if_non_finite(r);
    return static_cast<T>(r.sum * inv_n);
}

// Mean PAL loss; Z is overwritten by G = d(mean loss)/dZ (no second K x N buffer). Z is any
// writable matrix, Map or Block (either storage order, any strides; a temporary Block such as
// Z.leftCols(n) too). A non-finite logit throws mlnc::error naming its position in the input; the
// content of Z is then unspecified.
template <class B = cpu, class DZ>
typename std::decay_t<DZ>::Scalar pal_loss_grad_inplace(DZ&& Z, const label_sets& S, pal_variant v = pal_variant::pal) {
    static_assert(detail::writable_output<DZ>, "mlnc: Z must be a non-const Eigen matrix, Map or Block");
    using T = typename std::decay_t<DZ>::Scalar;
    detail::check_logits(Z, S);
    const strided_view<T> z = detail::mutable_view_of(Z);
    const double inv_n = 1.0 / static_cast<double>(S.size());
    const auto r = detail::pal_dispatch<B, T>(strided_view<const T>{z.data, z.rows, z.cols, z.inner, z.outer}, S, v,
                                              nullptr, z, inv_n);
    detail::throw_if_non_finite(r);
    return static_cast<T>(r.sum * inv_n);
}

// What an evaluation of f found. overflow: the logits W H + b of finite W, H, b are not all
// finite (they overflowed T); loss and total are then +Inf and any gradient is NaN. Trainers take
// that as "step too long"; it is a numerical outcome, not an error.
enum class objective_status { ok, overflow };

template <class T>
struct objective_value {
    T loss = 0;     // data term (1/N) sum_i L(z_i, S_i)
    T penalty = 0;  // lW ||W||^2 + lH ||H||^2 + lb ||b||^2
    T total = 0;    // loss + penalty
    objective_status status = objective_status::ok;
    Eigen::Index overflow_row = -1;  // with status overflow: the first non-finite logit (k, i)
    Eigen::Index overflow_col = -1;
    bool ok() const noexcept { return status == objective_status::ok; }
};

// f(W, H, b) of Problem (4) for fixed labels and penalties, with analytic gradients. Holds one
// K x N workspace for the logits (the only K x N object ever formed; the gradient G overwrites it).
// Bad input (shapes, NaN/Inf in W, H or b) throws mlnc::error; logits that overflow T are reported
// in objective_value::status (total = +Inf), not thrown.
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
        const auto r = detail::pal_dispatch<B, T>(detail::view_of(z_), s_, v_, nullptr, {}, inv_n());
        return finish(r, W, H, b);
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
        const auto r = detail::pal_dispatch<B, T>(detail::view_of(z_), s_, v_, nullptr, detail::mutable_view_of(z_),
                                                  inv_n());
        if (!r.finite()) {
            dW.setConstant(std::numeric_limits<T>::quiet_NaN());
            dH.setConstant(std::numeric_limits<T>::quiet_NaN());
            db.setConstant(std::numeric_limits<T>::quiet_NaN());
            return finish(r, W, H, b);
        }
        const auto& G = z_;
        dW.noalias() = G * H.transpose();
        dW += T(2 * lam_.lambda_w) * W;
        dH.noalias() = W.transpose() * G;
        dH += T(2 * lam_.lambda_h) * H;
        db = G.rowwise().sum();
        db += T(2 * lam_.lambda_b) * b;
        return finish(r, W, H, b);
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
        if (z_.rows() != K || z_.cols() != N) {
            detail::require_memory(static_cast<double>(K) * static_cast<double>(N) * sizeof(T), "logits",
                                   "the K x N logits workspace, K = " + std::to_string(K) + ", N = " +
                                       std::to_string(N));
            z_.resize(K, N);
        }
        z_.noalias() = W * H;
        z_.colwise() += b.derived().reshaped();
    }

    template <class DW, class DH, class Db>
    objective_value<T> finish(const pal_kernel_result& r, const Eigen::MatrixBase<DW>& W,
                              const Eigen::MatrixBase<DH>& H, const Eigen::MatrixBase<Db>& b) const {
        const double pen = lam_.lambda_w * W.template cast<double>().squaredNorm() +
                           lam_.lambda_h * H.template cast<double>().squaredNorm() +
                           lam_.lambda_b * b.template cast<double>().squaredNorm();
        if (!r.finite()) {
            constexpr T inf = std::numeric_limits<T>::infinity();
            return {inf, static_cast<T>(pen), inf, objective_status::overflow, r.bad_row, r.bad_col};
        }
        const double loss = r.sum * inv_n();
        return {static_cast<T>(loss), static_cast<T>(pen), static_cast<T>(loss + pen)};
    }

    double inv_n() const noexcept { return 1.0 / static_cast<double>(s_.size()); }

    label_sets s_;
    penalties lam_;
    pal_variant v_;
    matrix<T> z_;
};

}  // namespace mlnc
