#pragma once
// PAL-CE / PAL-N at the logits level on the GPU: the front ends of pal.hpp for device views.
//  - pal_loss, pal_sample_losses, pal_loss_grad, pal_loss_grad_inplace: return the mean loss on
//    the host; they synchronise the backend's stream and throw mlnc::error naming the first
//    non-finite logit ("Z: non-finite logit at (k, i)"), as the CPU backend does.
//  - the *_async forms write the mean loss (and per-sample losses) to device memory, queue the
//    work on the backend's stream without synchronising, and record a non-finite logit in the
//    backend's sticky flag (cuda_backend::non_finite()).
// Z (K x N) and G are column-major device views with any leading dimension; G may be Z itself.
// Labels: device_labels (to_device(S, gpu)). float and double.

#include <mlnc/cuda/kernels.cuh>
#include <mlnc/cuda/runtime.hpp>
#include <mlnc/cuda/view.hpp>
#include <mlnc/error.hpp>
#include <mlnc/types.hpp>

#include <string>
#include <type_traits>

namespace mlnc {
namespace detail {

template <class T>
constexpr void check_cuda_scalar() {
    static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>, "mlnc: PAL-CE is implemented for float and double");
}

template <class T>
void check_device_logits(device_matrix_view<const T> z, const device_labels& S, pal_variant v) {
    if (S.size() == 0) throw error("labels: no samples");
    if (z.rows != S.num_labels() || z.cols != S.size())
        throw error("Z: expected " + std::to_string(S.num_labels()) + " x " + std::to_string(S.size()) +
                    " (K labels x N samples), got " + std::to_string(z.rows) + " x " + std::to_string(z.cols));
    require(v == pal_variant::pal || v == pal_variant::pal_n, "variant", "unknown value " + std::to_string(static_cast<int>(v)));
}
template <class T>
void check_device_output(device_matrix_view<T> g, index_t rows, index_t cols, const char* name) {
    if (g.rows != rows || g.cols != cols)
        throw error(std::string(name) + ": expected " + std::to_string(rows) + " x " + std::to_string(cols) +
                    " (same shape as Z), got " + std::to_string(g.rows) + " x " + std::to_string(g.cols));
}

// Queues the column kernel and the sum of the per-sample losses; returns the device double that
// will hold the mean loss (in the backend's workspace, valid until the next call).
template <class T>
double* queue_pal(cuda_backend& gpu, device_matrix_view<const T> z, const device_labels& S, pal_variant v,
                  T* per_sample, device_matrix_view<T> g, T* loss, unsigned long long* status) {
    const index_t N = S.size();
    auto* ws = static_cast<double*>(gpu.workspace(static_cast<std::size_t>(N + 1) * sizeof(double)));
    cuda_kernels::column_args<T> a;
    a.z = z;
    a.S = S.view();
    a.variant = v;
    a.scale = 1.0 / static_cast<double>(N);
    a.per_sample = per_sample;
    a.col_loss = ws + 1;
    a.g = g;
    a.status = status;
    cuda_kernels::launch_columns<T, cuda_kernels::column_op::fused>(a, gpu.stream());
    cuda_kernels::sum_rows<T><<<1, cuda_kernels::sum_threads, 0, gpu.stream()>>>(ws + 1, N, a.scale, ws, loss);
    cuda_check(cudaGetLastError(), "kernel launch (loss sum)");
    return ws;
}

// The host-value form: queue, wait, and throw on a non-finite logit.
template <class T>
T run_pal(cuda_backend& gpu, device_matrix_view<const T> z, const device_labels& S, pal_variant v, T* per_sample,
          device_matrix_view<T> g) {
    check_cuda_scalar<T>();
    check_device_logits(z, S, v);
    gpu.reset_status(cuda_backend::host_slot);
    const double* mean = queue_pal<T>(gpu, z, S, v, per_sample, g, nullptr, gpu.status_word(cuda_backend::host_slot));
    double host = 0;
    cuda_check(cudaMemcpyAsync(&host, mean, sizeof host, cudaMemcpyDeviceToHost, gpu.stream()), "cudaMemcpyAsync");
    if (const auto bad = gpu.read_status(cuda_backend::host_slot))  // synchronises
        throw error("Z: non-finite logit at (" + std::to_string(bad->first) + ", " + std::to_string(bad->second) + ")");
    return static_cast<T>(host);
}

template <class T>
void check_loss_outputs(device_vector_view<T> loss, device_vector_view<T> per_sample, index_t N) {
    require(loss.size == 1, "loss", "expected a device vector of 1 entry, got " + std::to_string(loss.size));
    require(per_sample.data == nullptr || per_sample.size == N, "per_sample",
            "expected " + std::to_string(N) + " entries (one per sample), got " + std::to_string(per_sample.size));
}

}  // namespace detail

// Mean PAL loss of the device logits Z (K x N).
template <class T>
std::remove_const_t<T> pal_loss(cuda_backend& gpu, device_matrix_view<T> Z, const device_labels& S,
                                pal_variant v = pal_variant::pal) {
    using U = std::remove_const_t<T>;
    return detail::run_pal<U>(gpu, Z, S, v, nullptr, {});
}

// Mean PAL loss and the per-sample losses (N entries of device memory).
template <class T>
std::remove_const_t<T> pal_sample_losses(cuda_backend& gpu, device_matrix_view<T> Z, const device_labels& S,
                                         device_vector_view<std::remove_const_t<T>> losses,
                                         pal_variant v = pal_variant::pal) {
    using U = std::remove_const_t<T>;
    detail::require(losses.size == S.size(), "losses",
                    "expected " + std::to_string(S.size()) + " entries (one per sample), got " + std::to_string(losses.size));
    return detail::run_pal<U>(gpu, Z, S, v, losses.data, {});
}

// Mean PAL loss and G = d(mean loss)/dZ (K x N, device memory, any leading dimension).
template <class T>
std::remove_const_t<T> pal_loss_grad(cuda_backend& gpu, device_matrix_view<T> Z, const device_labels& S,
                                     device_matrix_view<std::remove_const_t<T>> G, pal_variant v = pal_variant::pal) {
    using U = std::remove_const_t<T>;
    detail::check_device_output(G, Z.rows, Z.cols, "G");
    detail::require(G.data != nullptr || G.empty(), "G", "null device pointer");
    return detail::run_pal<U>(gpu, Z, S, v, nullptr, G);
}

// Mean PAL loss; Z is overwritten by G = d(mean loss)/dZ. On a non-finite logit the content of Z
// is unspecified.
template <class T>
T pal_loss_grad_inplace(cuda_backend& gpu, device_matrix_view<T> Z, const device_labels& S,
                        pal_variant v = pal_variant::pal) {
    static_assert(!std::is_const_v<T>, "mlnc: Z is overwritten by the gradient: pass a view of non-const T");
    return detail::run_pal<T>(gpu, device_matrix_view<const T>(Z), S, v, nullptr, Z);
}

// Device-resident: loss[0] = mean loss, per_sample (optional: a default view) = the losses, G (a
// default view: no gradient; it may be Z's memory) = d(mean loss)/dZ. Queued on the backend's
// stream; nothing is synchronised. A non-finite logit leaves the outputs unspecified and is
// recorded in gpu.non_finite().
template <class T>
void pal_loss_grad_async(cuda_backend& gpu, device_matrix_view<T> Z, const device_labels& S,
                         device_matrix_view<std::remove_const_t<T>> G, device_vector_view<std::remove_const_t<T>> loss,
                         device_vector_view<std::remove_const_t<T>> per_sample = {}, pal_variant v = pal_variant::pal) {
    using U = std::remove_const_t<T>;
    detail::check_cuda_scalar<U>();
    detail::check_device_logits<U>(Z, S, v);
    if (G.data) detail::check_device_output(G, Z.rows, Z.cols, "G");
    detail::check_loss_outputs(loss, per_sample, S.size());
    detail::queue_pal<U>(gpu, Z, S, v, per_sample.data, G, loss.data, gpu.status_word(cuda_backend::device_slot));
}
template <class T>
void pal_loss_async(cuda_backend& gpu, device_matrix_view<T> Z, const device_labels& S,
                    device_vector_view<std::remove_const_t<T>> loss,
                    device_vector_view<std::remove_const_t<T>> per_sample = {}, pal_variant v = pal_variant::pal) {
    pal_loss_grad_async(gpu, Z, S, device_matrix_view<std::remove_const_t<T>>{}, loss, per_sample, v);
}

}  // namespace mlnc
