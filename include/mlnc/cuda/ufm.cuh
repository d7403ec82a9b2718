#pragma once
// Training the UFM on the GPU: train_ufm(mlnc::cuda{device, stream}, ...) and
// ufm_objective<T, mlnc::cuda>, for a file compiled by nvcc.
//  - ufm_objective<T, cuda>: Problem (4) over the flat parameter vector of objective.hpp with
//    pal_objective<T, cuda_backend> underneath. Its host form (evaluate(x, g), operator()) copies
//    x to the device (one copy: W, H and b are contiguous in x), evaluates there and copies the
//    gradient back; its device form (evaluate_device) takes x and g in device memory.
//  - train_ufm on mlnc::cuda: L-BFGS keeps its vectors (x, the gradient, the 2 m correction
//    vectors) on the host and calls the host form, so each evaluation moves x to the device and
//    the gradient back: 2 (K d + d N + K) sizeof(T) bytes over PCIe. Gradient descent keeps x,
//    its direction, the trial point and both gradients on the device: per evaluation only f, and
//    per iteration two dot products, come back; the iterate is copied to the host only when the
//    observer is to see it and at the end.
// The separable (minibatch) forms of ufm_objective are CPU-only. The results are the CPU
// trainer's to rounding: the same algorithm on the same numbers, with the sums in another order.

#include <mlnc/cuda/kernels.cuh>
#include <mlnc/cuda/objective.cuh>
#include <mlnc/cuda/runtime.hpp>
#include <mlnc/cuda/view.hpp>
#include <mlnc/objective.hpp>
#include <mlnc/ufm.hpp>

#include <cmath>
#include <limits>
#include <memory>
#include <string>
#include <utility>

namespace mlnc {

namespace cuda_kernels {

// out = x + a d (n entries).
template <class T>
__global__ void step_kernel(const T* x, T a, const T* d, T* out, index_t n) {
    for (index_t e = static_cast<index_t>(blockIdx.x) * blockDim.x + threadIdx.x; e < n;
         e += static_cast<index_t>(gridDim.x) * blockDim.x)
        out[e] = x[e] + a * d[e];
}
// dir = -g + beta dir, or dir = -g when beta is 0 (dir is then not read: it may hold anything).
template <class T>
__global__ void direction_kernel(const T* g, T beta, T* dir, index_t n) {
    for (index_t e = static_cast<index_t>(blockIdx.x) * blockDim.x + threadIdx.x; e < n;
         e += static_cast<index_t>(gridDim.x) * blockDim.x)
        dir[e] = beta != T(0) ? -g[e] + beta * dir[e] : -g[e];
}
// Partial sums (one per block, in double) of a[e] b[e].
template <class T>
__global__ void __launch_bounds__(sumsq_threads) dot_partials(const T* a, const T* b, index_t n, double* partial) {
    using group = block_group<double, sumsq_threads>;
    __shared__ group::scratch sh;
    const group grp{static_cast<int>(threadIdx.x), &sh};
    double acc = 0;
    for (index_t e = static_cast<index_t>(blockIdx.x) * sumsq_threads + threadIdx.x; e < n;
         e += static_cast<index_t>(gridDim.x) * sumsq_threads)
        acc += static_cast<double>(a[e]) * static_cast<double>(b[e]);
    const double s = grp.sum(acc);
    if (threadIdx.x == 0) partial[blockIdx.x] = s;
}

inline unsigned elementwise_blocks(index_t n) {
    const index_t b = n / 256 + 1;
    return static_cast<unsigned>(b < 4096 ? b : 4096);
}

}  // namespace cuda_kernels

template <class T>
class ufm_objective<T, cuda> : public detail::ufm_layout<T> {
    static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>, "mlnc: PAL-CE is implemented for float and double");
    using layout = detail::ufm_layout<T>;
    using layout::K_, layout::d_, layout::N_, layout::check_x, layout::w_size, layout::non_finite_point;

public:
    using vector_type = vector<T>;
    using layout::size, layout::num_labels, layout::dim, layout::num_samples, layout::fixed_classifier, layout::W,
        layout::H, layout::b, layout::pack, layout::unpack;

    // W, H and b are all variables; d is the feature dimension. The context's device and stream
    // (its own stream when ctx.stream is null) carry every call.
    ufm_objective(cuda ctx, label_sets S, index_t d, penalties lambdas, pal_variant v = pal_variant::pal)
        : layout(S.num_labels(), d, S.size()), gpu_(std::make_unique<cuda_backend>(ctx)),
          obj_(std::make_unique<pal_objective<T, cuda_backend>>(*gpu_, S, lambdas, v)) {
        detail::require(d >= 1, "d", "feature dimension must be >= 1, got " + std::to_string(d));
    }
    // W is held fixed at fixed_W (K x d, copied to the device once); the variables are H and b.
    ufm_objective(cuda ctx, label_sets S, matrix<T> fixed_W, penalties lambdas, pal_variant v = pal_variant::pal)
        : layout(S.num_labels(), fixed_W.cols(), S.size()), gpu_(std::make_unique<cuda_backend>(ctx)),
          obj_(std::make_unique<pal_objective<T, cuda_backend>>(*gpu_, S, lambdas, v)) {
        this->set_fixed_classifier(std::move(fixed_W));
        w_fixed_ = upload(*gpu_, *this->W_fixed_);
    }

    cuda_backend& backend_value() const noexcept { return *gpu_; }
    pal_objective<T, cuda_backend>& objective() const noexcept { return *obj_; }

    // The host form: f (and the gradient) at host x, through the device.
    objective_value<T> evaluate(const vector_type& x) { return evaluate_host(x, nullptr); }
    objective_value<T> evaluate(const vector_type& x, vector_type& g) { return evaluate_host(x, &g); }

    // ensmallen's differentiable function and LBFGSpp's objective, as on the CPU.
    T Evaluate(const vector_type& x) { return evaluate(x).total; }
    void Gradient(const vector_type& x, vector_type& g) { evaluate(x, g); }
    T EvaluateWithGradient(const vector_type& x, vector_type& g) { return evaluate(x, g).total; }
    T operator()(const vector_type& x, vector_type& g) { return evaluate(x, g).total; }

    // The device form: x (size() entries of device memory) and, unless g is a default view, the
    // gradient into g (size() entries, not aliasing x). A non-finite x or logits that overflow
    // give f = +Inf (status overflow) and a NaN gradient. Synchronises (f is a host value).
    objective_value<T> evaluate_device(device_vector_view<const T> x, device_vector_view<T> g = {}) {
        detail::require(x.size == size() && x.data != nullptr, "x",
                        "expected a device vector of " + std::to_string(size()) + " parameters, got " +
                            std::to_string(x.size));
        if (g.data)
            detail::require(g.size == size(), "g",
                            "expected a device vector of " + std::to_string(size()) + " entries, got " +
                                std::to_string(g.size));
        using in_m = device_matrix_view<const T>;
        using out_m = device_matrix_view<T>;
        const index_t ws = w_size();
        const in_m Wv = fixed_classifier() ? in_m(w_fixed_.view()) : in_m(x.data, K_, d_);
        const in_m Hv(x.data + ws, d_, N_);
        const device_vector_view<const T> bv(x.data + ws + d_ * N_, K_);
        const out_m dW = g.data && !fixed_classifier() ? out_m(g.data, K_, d_) : out_m{};
        const out_m dH = g.data ? out_m(g.data + ws, d_, N_) : out_m{};
        const device_vector_view<T> db = g.data ? device_vector_view<T>(g.data + ws + d_ * N_, K_) : device_vector_view<T>{};
        try {
            return obj_->evaluate(Wv, Hv, bv, dW, dH, db);
        } catch (const error&) {
            // The shapes are this object's own: the error is a non-finite entry of x.
            if (g.data) {
                cuda_kernels::launch_axpy_or_fill<T>(T(0), {}, out_m(g.data, size(), 1),
                                                     std::numeric_limits<T>::quiet_NaN(), gpu_->stream());
                gpu_->synchronize();
            }
            return non_finite_point();
        }
    }

private:
    objective_value<T> evaluate_host(const vector_type& x, vector_type* g) {
        check_x(x);
        const index_t n = size();
        x_.resize(n);
        detail::cuda_check(cudaMemcpyAsync(x_.data(), x.data(), static_cast<std::size_t>(n) * sizeof(T),
                                           cudaMemcpyHostToDevice, gpu_->stream()),
                           "cudaMemcpyAsync (x)");
        if (!g) return evaluate_device(x_.vector_view());
        g_.resize(n);
        g->resize(n);
        const objective_value<T> v = evaluate_device(x_.vector_view(), g_.vector_view());
        detail::cuda_check(cudaMemcpyAsync(g->data(), g_.data(), static_cast<std::size_t>(n) * sizeof(T),
                                           cudaMemcpyDeviceToHost, gpu_->stream()),
                           "cudaMemcpyAsync (gradient)");
        gpu_->synchronize();
        return v;
    }

    // Held by pointer: the objective keeps the backend's address, and both stay put when this
    // object is moved (train_ufm moves it into the run).
    std::unique_ptr<cuda_backend> gpu_;
    std::unique_ptr<pal_objective<T, cuda_backend>> obj_;
    device_buffer<T> w_fixed_, x_, g_;
};

template <class T>
ufm_objective(cuda, label_sets, matrix<T>, penalties, pal_variant = pal_variant::pal) -> ufm_objective<T, cuda>;

namespace detail {

template <>
struct trains_here<cuda> : std::true_type {};

// Gradient descent of ufm.hpp (run_gd) with its vectors in device memory: the same directions,
// Armijo backtracking and step growth, in the same order. Per evaluation f comes back (and is
// compared on the host); per iteration g.dir and ||g||^2 (sums in double); x comes back when the
// observer is to see it and at the end (into x, with its gradient into g).
template <class T>
struct gd_method<T, cuda> {
    static ufm_status run(ufm_problem<T, cuda>& problem, vector<T>& x, T fx, vector<T>& g, const ufm_options& o) {
        namespace ck = cuda_kernels;
        cuda_backend& gpu = problem.function().backend_value();
        const cudaStream_t st = gpu.stream();
        const index_t n = x.size();
        const auto bytes = static_cast<std::size_t>(n) * sizeof(T);
        device_buffer<T> xd(n), gd(n), dir(n), xn(n), gn(n);
        device_buffer<double> partial(ck::sumsq_blocks + 1);
        cuda_check(cudaMemcpyAsync(xd.data(), x.data(), bytes, cudaMemcpyHostToDevice, st), "cudaMemcpyAsync (x)");
        cuda_check(cudaMemcpyAsync(gd.data(), g.data(), bytes, cudaMemcpyHostToDevice, st), "cudaMemcpyAsync (g)");
        const unsigned blocks = ck::elementwise_blocks(n);
        // sum of a[e] b[e] in double, on the host.
        const auto dot = [&](const T* a, const T* b) {
            ck::dot_partials<T><<<ck::sumsq_blocks, ck::sumsq_threads, 0, st>>>(a, b, n, partial.data() + 1);
            ck::sum_rows<T><<<1, ck::sum_threads, 0, st>>>(partial.data() + 1, ck::sumsq_blocks, 1.0, partial.data(),
                                                           nullptr);
            cuda_check(cudaGetLastError(), "kernel launch (dot)");
            double r = 0;
            cuda_check(cudaMemcpyAsync(&r, partial.data(), sizeof r, cudaMemcpyDeviceToHost, st), "cudaMemcpyAsync");
            gpu.synchronize();
            return r;
        };
        const auto download_x = [&]() -> const vector<T>& {
            cuda_check(cudaMemcpyAsync(x.data(), xd.data(), bytes, cudaMemcpyDeviceToHost, st), "cudaMemcpyAsync (x)");
            gpu.synchronize();
            return x;
        };
        double step = o.learning_rate;
        const auto search = [&](T gdir) {
            double a = step;
            for (int it = 0; it < o.max_line_search; ++it, a *= o.backtrack) {
                ck::step_kernel<T><<<blocks, 256, 0, st>>>(xd.data(), static_cast<T>(a), dir.data(), xn.data(), n);
                cuda_check(cudaGetLastError(), "kernel launch (step)");
                const T f_new = problem.evaluate_with([&](ufm_objective<T, cuda>& f) {
                    return f.evaluate_device(xn.vector_view(), gn.vector_view()).total;
                });
                if (std::isfinite(f_new) && f_new <= fx + static_cast<T>(o.armijo * a) * gdir) {
                    step = a * o.step_growth;
                    fx = f_new;
                    return true;
                }
            }
            return false;
        };
        const auto steepest = [&] {
            ck::direction_kernel<T><<<blocks, 256, 0, st>>>(gd.data(), T(0), dir.data(), n);
            cuda_check(cudaGetLastError(), "kernel launch (direction)");
            return static_cast<T>(-dot(gd.data(), gd.data()));
        };
        ufm_status status = ufm_status::line_search_failed;
        bool momentum = false;  // the first direction is -g
        try {
            for (;;) {
                T gdir;
                if (momentum) {
                    ck::direction_kernel<T><<<blocks, 256, 0, st>>>(gd.data(), static_cast<T>(o.momentum), dir.data(), n);
                    cuda_check(cudaGetLastError(), "kernel launch (direction)");
                    gdir = static_cast<T>(dot(gd.data(), dir.data()));
                    if (!(gdir < 0)) {
                        gdir = steepest();
                        momentum = false;
                    }
                } else {
                    gdir = steepest();
                }
                bool accepted = search(gdir);
                if (!accepted && momentum) accepted = search(steepest());  // retry along -g alone
                if (!accepted) break;
                std::swap(xd, xn);
                std::swap(gd, gn);
                problem.on_iteration_from(download_x, fx, std::sqrt(dot(gd.data(), gd.data())));
                momentum = o.momentum > 0;
            }
        } catch (const ufm_stop& s) {
            status = s.status;
        }
        (void)download_x();
        cuda_check(cudaMemcpyAsync(g.data(), gd.data(), bytes, cudaMemcpyDeviceToHost, st), "cudaMemcpyAsync (g)");
        gpu.synchronize();
        return status;
    }
};

}  // namespace detail
}  // namespace mlnc
