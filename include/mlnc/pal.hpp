#pragma once
// The pick-all-labels cross-entropy (PAL-CE) at the level of the logits Z (K x N, column i =
// logits of sample i): the mean loss (1/N) sum_i L(z_i, S_i) and G = d(mean loss)/dZ with
// g_i = (m_i softmax(z_i) - y_i) / N (PAL-N: (softmax(z_i) - y_i / m_i) / N). The objective
// f(W, H, b) of Problem (4) built on it is in objective.hpp.
// Every function takes a backend value first (omitted: cpu{}); S is a label_sets or a
// sample_subset (a minibatch: the mean is then over the subset).

#include <mlnc/backend.hpp>
#include <mlnc/cpu/pal_kernels.hpp>
#include <mlnc/detail/checks.hpp>
#include <mlnc/detail/memory.hpp>
#include <mlnc/error.hpp>
#include <mlnc/labels.hpp>
#include <mlnc/types.hpp>

#include <Eigen/Core>

#include <cmath>
#include <concepts>
#include <limits>
#include <string>
#include <type_traits>

namespace mlnc {

// What the loss kernels accept as labels: label_sets, or a sample_subset of one.
template <class L>
concept label_source = std::same_as<L, label_sets> || std::same_as<L, sample_subset>;

namespace detail {

template <class B, class T>
constexpr void check_pal_backend() {
    check_host_backend<B>();
    static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>, "mlnc: PAL-CE is implemented for float and double");
    if constexpr (available_backend<B>)
        static_assert(backend_traits<std::remove_cvref_t<B>>::pal_loss,
                      "mlnc: this backend has no PAL-CE kernel (see backend_traits)");
}

template <class B, class T, class L>
pal_kernel_result pal_dispatch(const B& be, strided_view<const T> z, const L& S, pal_variant v, T* per_sample,
                               strided_view<T> g, double scale) {
    check_pal_backend<B, T>();
    if constexpr (std::is_same_v<std::remove_cvref_t<B>, cpu>) {
        return cpu_kernels::pal_columns(z, S, v, per_sample, g, scale, be.threads);
    }
}

template <class DZ, class L>
void check_logits(const Eigen::MatrixBase<DZ>& Z, const L& S) {
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
template <class DZ, class F>
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
template <backend B, class DZ, label_source L>
typename DZ::Scalar pal_loss(const B& be, const Eigen::MatrixBase<DZ>& Z, const L& S, pal_variant v = pal_variant::pal) {
    using T = typename DZ::Scalar;
    detail::check_pal_backend<B, T>();
    detail::check_backend_value(be);
    detail::check_logits(Z, S);
    const double inv_n = 1.0 / static_cast<double>(S.size());
    const auto r = detail::with_logits_view(
        Z, [&](strided_view<const T> z) { return detail::pal_dispatch(be, z, S, v, static_cast<T*>(nullptr), {}, inv_n); });
    detail::throw_if_non_finite(r);
    return static_cast<T>(r.sum * inv_n);
}
template <class DZ, label_source L>
typename DZ::Scalar pal_loss(const Eigen::MatrixBase<DZ>& Z, const L& S, pal_variant v = pal_variant::pal) {
    return pal_loss(default_backend, Z, S, v);
}

// Mean PAL loss and per-sample losses (N entries), one pass.
template <backend B, class DZ, label_source L>
typename DZ::Scalar pal_sample_losses(const B& be, const Eigen::MatrixBase<DZ>& Z, const L& S,
                                      Eigen::Ref<vector<typename DZ::Scalar>> losses,
                                      pal_variant v = pal_variant::pal) {
    using T = typename DZ::Scalar;
    detail::check_pal_backend<B, T>();
    detail::check_backend_value(be);
    detail::check_logits(Z, S);
    detail::check_shape(losses, S.size(), 1, "losses", "one per sample");
    const double inv_n = 1.0 / static_cast<double>(S.size());
    const auto r = detail::with_logits_view(
        Z, [&](strided_view<const T> z) { return detail::pal_dispatch(be, z, S, v, losses.data(), {}, inv_n); });
    detail::throw_if_non_finite(r);
    return static_cast<T>(r.sum * inv_n);
}
template <class DZ, label_source L>
typename DZ::Scalar pal_sample_losses(const Eigen::MatrixBase<DZ>& Z, const L& S,
                                      Eigen::Ref<vector<typename DZ::Scalar>> losses,
                                      pal_variant v = pal_variant::pal) {
    return pal_sample_losses(default_backend, Z, S, losses, v);
}

// Mean PAL loss and G = d(mean loss)/dZ (K x N), one pass. G is any writable matrix, Map or
// Block of Z's shape (either storage order, any strides), written in place.
template <backend B, class DZ, label_source L, class DG>
typename DZ::Scalar pal_loss_grad(const B& be, const Eigen::MatrixBase<DZ>& Z, const L& S, DG&& G,
                                  pal_variant v = pal_variant::pal) {
    using T = typename DZ::Scalar;
    static_assert(detail::writable_output<DG>, "mlnc: G must be a non-const Eigen matrix, Map or Block");
    static_assert(std::is_same_v<typename std::decay_t<DG>::Scalar, T>, "mlnc: G must have the scalar type of Z");
    detail::check_pal_backend<B, T>();
    detail::check_backend_value(be);
    detail::check_logits(Z, S);
    detail::check_shape(G, Z.rows(), Z.cols(), "G", "same shape as Z");
    const double inv_n = 1.0 / static_cast<double>(S.size());
    const auto r = detail::with_logits_view(Z, [&](strided_view<const T> z) {
        return detail::pal_dispatch(be, z, S, v, static_cast<T*>(nullptr), detail::mutable_view_of(G), inv_n);
    });
    detail::throw_if_non_finite(r);
    return static_cast<T>(r.sum * inv_n);
}
template <class DZ, label_source L, class DG>
    requires(!backend<DZ>)
typename DZ::Scalar pal_loss_grad(const Eigen::MatrixBase<DZ>& Z, const L& S, DG&& G, pal_variant v = pal_variant::pal) {
    return pal_loss_grad(default_backend, Z, S, std::forward<DG>(G), v);
}

// Mean PAL loss; Z is overwritten by G = d(mean loss)/dZ (no second K x N buffer). Z is any
// writable matrix, Map or Block (either storage order, any strides; a temporary Block such as
// Z.leftCols(n) too). A non-finite logit throws mlnc::error naming its position in the input; the
// content of Z is then unspecified.
template <backend B, class DZ, label_source L>
typename std::decay_t<DZ>::Scalar pal_loss_grad_inplace(const B& be, DZ&& Z, const L& S,
                                                        pal_variant v = pal_variant::pal) {
    static_assert(detail::writable_output<DZ>, "mlnc: Z must be a non-const Eigen matrix, Map or Block");
    using T = typename std::decay_t<DZ>::Scalar;
    detail::check_pal_backend<B, T>();
    detail::check_backend_value(be);
    detail::check_logits(Z, S);
    const strided_view<T> z = detail::mutable_view_of(Z);
    const double inv_n = 1.0 / static_cast<double>(S.size());
    const auto r = detail::pal_dispatch(be, strided_view<const T>{z.data, z.rows, z.cols, z.inner, z.outer}, S, v,
                                        static_cast<T*>(nullptr), z, inv_n);
    detail::throw_if_non_finite(r);
    return static_cast<T>(r.sum * inv_n);
}
template <class DZ, label_source L>
    requires(!backend<DZ>)
typename std::decay_t<DZ>::Scalar pal_loss_grad_inplace(DZ&& Z, const L& S, pal_variant v = pal_variant::pal) {
    return pal_loss_grad_inplace(default_backend, std::forward<DZ>(Z), S, v);
}

}  // namespace mlnc
