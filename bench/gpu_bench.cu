// The GPU benchmark of bench/gpu_check.sh: mlnc's CUDA kernels timed with CUDA events (median
// of 20 runs after 3 warm-ups), each beside a reference measured in the same run. Prints one
// JSON object per line; bench/gpu_check.sh joins them with PyTorch's figures into one table.
//  - pal_inplace K N: loss + gradient in place (float) vs a device-to-device copy of the same
//    K N floats (the bandwidth bound: one read and one write of Z);
//  - objective K d N ws: f(W, H, b) with all gradients (float), workspace ws bytes;
//  - objective_memory: device memory the objective takes beyond its inputs and gradients
//    (K = 100000, d = 256, N = 8192, default workspace);
//  - ufm_eval: the training objective (double) at mlnc verify's K = 200 case (d = 256, N = 21 900)
//    in its host form, as L-BFGS calls it (x copied in, the gradient out), vs its device form:
//    the difference is the per-evaluation copy cost of keeping L-BFGS on the host;
//  - train: train_ufm on mlnc::cuda, that case from verify's start, L-BFGS and 2000 steps of GD.
// Options: --no-train leaves the two training runs out (L-BFGS takes about 45 s); --sweep adds the
// kernel's two forms (held in registers, streamed) against the copy over K at 256 MiB of logits.
#include <mlnc/cuda/kernels.cuh>
#include <mlnc/cuda/objective.cuh>
#include <mlnc/cuda/pal.cuh>
#include <mlnc/cuda/ufm.cuh>

#include <algorithm>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

namespace {

using mlnc::index_t;

template <class F>
double median_ms(cudaStream_t s, F&& f) {
    cudaEvent_t a, b;
    mlnc::detail::cuda_check(cudaEventCreate(&a), "cudaEventCreate");
    mlnc::detail::cuda_check(cudaEventCreate(&b), "cudaEventCreate");
    for (int i = 0; i < 3; ++i) f();
    std::vector<float> t;
    for (int i = 0; i < 20; ++i) {
        mlnc::detail::cuda_check(cudaEventRecord(a, s), "cudaEventRecord");
        f();
        mlnc::detail::cuda_check(cudaEventRecord(b, s), "cudaEventRecord");
        mlnc::detail::cuda_check(cudaEventSynchronize(b), "cudaEventSynchronize");
        float ms = 0;
        mlnc::detail::cuda_check(cudaEventElapsedTime(&ms, a, b), "cudaEventElapsedTime");
        t.push_back(ms);
    }
    cudaEventDestroy(a);
    cudaEventDestroy(b);
    std::nth_element(t.begin(), t.begin() + 10, t.end());
    return t[10];
}

// Multiplicities 1..3, distinct labels: the law of bench_pal.cpp and torch_gpu.py.
mlnc::label_sets random_labels(index_t K, index_t N, std::mt19937_64& rng) {
    std::vector<std::vector<index_t>> sets(static_cast<std::size_t>(N));
    for (auto& s : sets) {
        const index_t m = 1 + static_cast<index_t>(rng() % 3);
        while (static_cast<index_t>(s.size()) < m) {
            const auto k = static_cast<index_t>(rng() % static_cast<std::uint64_t>(K));
            if (std::find(s.begin(), s.end(), k) == s.end()) s.push_back(k);
        }
    }
    return mlnc::label_sets::from_lists(sets, K);
}

mlnc::device_buffer<float> random_device(mlnc::cuda_backend& gpu, index_t rows, index_t cols, float sd,
                                         std::mt19937_64& rng) {
    std::normal_distribution<float> nd(0.0f, sd);
    mlnc::matrix<float> m(rows, cols);
    for (index_t j = 0; j < m.size(); ++j) m.data()[j] = nd(rng);
    return mlnc::upload(gpu, m);
}

void pal_inplace(mlnc::cuda_backend& gpu, index_t K, index_t N) {
    std::mt19937_64 rng(1);
    const auto dS = mlnc::to_device(random_labels(K, N, rng), gpu);
    auto z = random_device(gpu, K, N, 3.0f, rng);
    mlnc::device_buffer<float> copy(K, N), loss(1);
    // The gradient overwrites Z; its values stay finite, so repeated calls time the same work.
    const double kernel = median_ms(gpu.stream(), [&] {
        mlnc::pal_loss_grad_async(gpu, z.view(), dS, z.view(), loss.vector_view());
    });
    const double memcpy = median_ms(gpu.stream(), [&] {
        mlnc::detail::cuda_check(cudaMemcpyAsync(copy.data(), z.data(), static_cast<std::size_t>(K * N) * sizeof(float),
                                                 cudaMemcpyDeviceToDevice, gpu.stream()),
                                 "cudaMemcpyAsync");
    });
    std::printf("{\"case\": \"pal_inplace\", \"K\": %lld, \"N\": %lld, \"mlnc_ms\": %.4f, \"copy_ms\": %.4f}\n",
                static_cast<long long>(K), static_cast<long long>(N), kernel, memcpy);
}

void objective(mlnc::cuda_backend& gpu, index_t K, index_t d, index_t N, std::size_t ws) {
    std::mt19937_64 rng(2);
    const auto S = random_labels(K, N, rng);
    auto W = random_device(gpu, K, d, 0.05f, rng);
    auto H = random_device(gpu, d, N, 0.05f, rng);
    auto b = random_device(gpu, K, 1, 0.05f, rng);
    mlnc::device_buffer<float> dW(K, d), dH(d, N), db(K);
    mlnc::pal_objective<float, mlnc::cuda_backend> f(gpu, S, mlnc::penalties{1e-4, 1e-4, 1e-4});
    f.set_workspace_bytes(ws);
    const double ms = median_ms(gpu.stream(), [&] {
        f.evaluate(W.view(), H.view(), b.vector_view(), dW.view(), dH.view(), db.vector_view());
    });
    std::printf("{\"case\": \"objective\", \"K\": %lld, \"d\": %lld, \"N\": %lld, \"workspace_mib\": %zu, "
                "\"mlnc_ms\": %.4f, \"tiled\": %s}\n",
                static_cast<long long>(K), static_cast<long long>(d), static_cast<long long>(N), ws >> 20, ms,
                f.plan().tiled(K) ? "true" : "false");
}

void objective_memory(index_t K, index_t d, index_t N) {
    std::mt19937_64 rng(3);
    const auto S = random_labels(K, N, rng);
    mlnc::cuda_backend loader;  // uploads the inputs; the measured backend is created after the baseline
    auto W = random_device(loader, K, d, 0.05f, rng);
    auto H = random_device(loader, d, N, 0.05f, rng);
    auto b = random_device(loader, K, 1, 0.05f, rng);
    mlnc::device_buffer<float> dW(K, d), dH(d, N), db(K);
    std::size_t free0 = 0, free1 = 0, total = 0;
    mlnc::detail::cuda_check(cudaMemGetInfo(&free0, &total), "cudaMemGetInfo");
    {
        mlnc::cuda_backend gpu;
        mlnc::pal_objective<float, mlnc::cuda_backend> f(gpu, S, mlnc::penalties{1e-4, 1e-4, 1e-4});
        f.evaluate(W.view(), H.view(), b.vector_view(), dW.view(), dH.view(), db.vector_view());
        mlnc::detail::cuda_check(cudaMemGetInfo(&free1, &total), "cudaMemGetInfo");
        std::printf("{\"case\": \"objective_memory\", \"K\": %lld, \"d\": %lld, \"N\": %lld, \"extra_mb\": %.1f, "
                    "\"tiled\": %s}\n",
                    static_cast<long long>(K), static_cast<long long>(d), static_cast<long long>(N),
                    static_cast<double>(free0 - free1) / 1e6, f.plan().tiled(K) ? "true" : "false");
    }
}

const char* kernel_name(mlnc::cuda_plan::fused_kernel k) {
    switch (k) {
        case mlnc::cuda_plan::fused_kernel::cached_lanes: return "lanes";
        case mlnc::cuda_plan::fused_kernel::cached_block: return "block";
        case mlnc::cuda_plan::fused_kernel::cached_cluster: return "cluster";
        case mlnc::cuda_plan::fused_kernel::pipelined_block: return "pipelined";
        case mlnc::cuda_plan::fused_kernel::streamed: break;
    }
    return "streamed";
}

// The fused column kernel in place over K at 256 MiB of logits: the shape launch_columns picks
// (held in registers up to 65536 floats or 32768 doubles) against the streamed kernel and the copy;
// where other shapes of the same kernels are possible, each of them too ("shapes"), the
// measurements behind cuda_plan::fused_launch's choices.
template <class T>
void sweep(mlnc::cuda_backend& gpu, index_t K) {
    namespace ck = mlnc::cuda_kernels;
    namespace cp = mlnc::cuda_plan;
    const index_t N = (index_t{256} << 20) / (K * static_cast<index_t>(sizeof(T)));
    std::mt19937_64 rng(5);
    const auto dS = mlnc::to_device(random_labels(K, N, rng), gpu);
    mlnc::device_buffer<T> z, copy(K, N);
    {
        std::normal_distribution<double> nd(0.0, 3.0);
        mlnc::matrix<T> m(K, N);
        for (index_t j = 0; j < m.size(); ++j) m.data()[j] = static_cast<T>(nd(rng));
        z = mlnc::upload(gpu, m);
    }
    mlnc::device_buffer<double> col_loss(N);
    mlnc::device_buffer<unsigned long long> status(1);
    ck::column_args<T> a;
    a.z = mlnc::device_matrix_view<const T>(z.view());
    a.S = dS.view();
    a.scale = 1.0 / static_cast<double>(N);
    a.col_loss = col_loss.data();
    a.g = z.view();
    a.status = status.data();
    const auto chosen = cp::fused_launch(K, N, sizeof(T), ck::clusters_usable<T>(), ck::stage_bytes_for(a));
    const double cached = median_ms(gpu.stream(), [&] { ck::launch_fused(a, chosen, gpu.stream()); });
    const double streamed =
        median_ms(gpu.stream(), [&] { ck::launch_streamed_columns<T, ck::column_op::fused>(a, gpu.stream()); });
    const double memcpy = median_ms(gpu.stream(), [&] {
        mlnc::detail::cuda_check(cudaMemcpyAsync(copy.data(), z.data(), static_cast<std::size_t>(K * N) * sizeof(T),
                                                 cudaMemcpyDeviceToDevice, gpu.stream()),
                                 "cudaMemcpyAsync");
    });
    std::printf("{\"case\": \"sweep\", \"type\": \"%s\", \"K\": %lld, \"N\": %lld, \"kernel\": \"%s\", "
                "\"threads\": %d, \"lanes\": %d, \"cluster\": %d, \"mlnc_ms\": %.4f, \"streamed_ms\": %.4f, "
                "\"copy_ms\": %.4f}\n",
                sizeof(T) == 4 ? "float" : "double", static_cast<long long>(K), static_cast<long long>(N),
                kernel_name(chosen.kind), chosen.threads, chosen.lanes, chosen.cluster, cached, streamed, memcpy);
    // Other shapes that hold the column.
    const index_t R = cp::cached_rows_per_thread(sizeof(T));
    std::vector<cp::fused_shape> others;
    if (chosen.kind == cp::fused_kernel::cached_lanes && chosen.lanes < 32) {
        cp::fused_shape w = chosen;
        w.lanes = 32;  // a whole warp a column
        w.blocks = (N * 32 + 255) / 256;
        others.push_back(w);
    }
    for (const int threads : {512, 1024})
        if (threads * R >= K && (chosen.kind != cp::fused_kernel::cached_block || chosen.threads != threads))
            others.push_back({cp::fused_kernel::cached_block, threads, N, 32, 1});
    // The pipelined block (doubles) wherever a block of 1024 threads would hold the column and
    // the stage fits, from K = 1000 on.
    if (sizeof(T) == 8 && K >= 1000 && K <= 1024 * R && static_cast<std::size_t>(K) * sizeof(T) <= ck::stage_bytes_for(a) &&
        chosen.kind != cp::fused_kernel::pipelined_block)
        others.push_back({cp::fused_kernel::pipelined_block, cp::pipelined_threads, N, 32, 1});
    for (const int threads : {256, 512}) {
        const index_t parts = (K + threads * R - 1) / (threads * R);
        if (parts >= 2 && parts <= cp::cluster_max_blocks && ck::clusters_usable<T>() &&
            (chosen.kind != cp::fused_kernel::cached_cluster || chosen.threads != threads))
            others.push_back({cp::fused_kernel::cached_cluster, threads, N * parts, 32, static_cast<int>(parts)});
    }
    for (const auto& sh : others) {
        const double ms = median_ms(gpu.stream(), [&] { ck::launch_fused(a, sh, gpu.stream()); });
        std::printf("{\"case\": \"shape\", \"type\": \"%s\", \"K\": %lld, \"N\": %lld, \"kernel\": \"%s\", "
                    "\"threads\": %d, \"lanes\": %d, \"cluster\": %d, \"mlnc_ms\": %.4f, \"copy_ms\": %.4f}\n",
                    sizeof(T) == 4 ? "float" : "double", static_cast<long long>(K), static_cast<long long>(N),
                    kernel_name(sh.kind), sh.threads, sh.lanes, sh.cluster, ms, memcpy);
    }
}

// mlnc verify --K 200 --d 256 --n 1:10,2:1 --lambda-w 1e-4 --lambda-h 1e-4 --lambda-b 1e-4
mlnc::label_sets verify_case() { return mlnc::balanced_label_sets(200, {{1, 10}, {2, 1}}); }
const mlnc::penalties verify_lambdas{1e-4, 1e-4, 1e-4};

void ufm_eval() {
    const auto S = verify_case();
    mlnc::ufm_objective<double, mlnc::cuda> f(mlnc::cuda{}, S, 256, verify_lambdas);
    std::mt19937_64 rng(4);
    std::normal_distribution<double> nd(0.0, 0.1);
    mlnc::vector<double> x(f.size()), g(f.size());
    for (auto& v : x) v = nd(rng);
    mlnc::cuda_backend& gpu = f.backend_value();
    const auto xd = mlnc::upload(gpu, x);
    mlnc::device_buffer<double> gd(f.size());
    const double host = median_ms(gpu.stream(), [&] { f.evaluate(x, g); });
    const double device = median_ms(gpu.stream(), [&] { f.evaluate_device(xd.vector_view(), gd.vector_view()); });
    std::printf("{\"case\": \"ufm_eval\", \"K\": 200, \"d\": 256, \"N\": %lld, \"host_ms\": %.4f, \"device_ms\": %.4f, "
                "\"mb_each_way\": %.1f}\n",
                static_cast<long long>(S.size()), host, device, static_cast<double>(f.size()) * 8 / 1e6);
}

void train(mlnc::ufm_method method, int max_iterations) {
    mlnc::ufm_options o;
    o.seed = 1;
    o.method = method;
    o.max_iterations = max_iterations;
    o.history_every = 1000000;
    const auto r = mlnc::train_ufm<double>(mlnc::cuda{}, verify_case(), 256, verify_lambdas, o);
    std::printf("{\"case\": \"train\", \"method\": \"%s\", \"iterations\": %d, \"evaluations\": %d, \"seconds\": %.3f, "
                "\"status\": \"%s\", \"objective\": %.17g}\n",
                method == mlnc::ufm_method::gd ? "gd" : "lbfgs", r.iterations, r.function_evaluations, r.seconds,
                mlnc::to_string(r.status), r.objective);
}

}  // namespace

int main(int argc, char** argv) {
    bool with_train = true, with_sweep = false;
    for (int i = 1; i < argc; ++i) {
        const std::string o = argv[i];
        if (o == "--no-train") {
            with_train = false;
        } else if (o == "--sweep") {
            with_sweep = true;
        } else {
            std::fprintf(stderr, "mlnc_gpu_bench: unknown option '%s' (options: --no-train, --sweep)\n", argv[i]);
            return 2;
        }
    }
    if (mlnc::cuda_device_count() == 0) {
        std::printf("no usable CUDA device\n");
        return 77;
    }
    mlnc::cuda_backend gpu;
    if (with_sweep) {
        for (const index_t K : {10, 100, 1000, 1025, 2048, 4096, 8192, 8193, 16384, 20000, 32000, 40000, 65536, 65537})
            sweep<float>(gpu, K);
        for (const index_t K : {10, 1000, 4096, 4097, 8192, 16384, 32000, 32769}) sweep<double>(gpu, K);
    }
    pal_inplace(gpu, 1000, 65536);
    pal_inplace(gpu, 32000, 8192);
    objective(gpu, 32000, 256, 8192, mlnc::default_workspace_bytes);
    objective(gpu, 32000, 256, 8192, std::size_t{1} << 30);
    objective_memory(100000, 256, 8192);
    ufm_eval();
    if (with_train) {
        train(mlnc::ufm_method::lbfgs, 20000);
        train(mlnc::ufm_method::gd, 2000);
    }
    return 0;
}
