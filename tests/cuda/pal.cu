// Parity of the CUDA PAL-CE kernels with the CPU backend (mlnc/cuda/pal.cuh).
#include <mlnc/cuda/pal.cuh>
#include <mlnc/pal.hpp>

#include "gpu_support.hpp"

#include <catch2/catch.hpp>

#include <cmath>
#include <limits>
#include <random>

using mlnc::index_t;
using mlnc::pal_variant;
using namespace mlnc_gpu_test;

static_assert(mlnc::backend_traits<mlnc::cuda_backend>::compiled_in && mlnc::backend_traits<mlnc::cuda>::pal_loss);

TEMPLATE_TEST_CASE("cuda pal kernels match the CPU backend", "[cuda][pal]", float, double) {
    using T = TestType;
    mlnc::cuda_backend gpu;
    // The cached kernels hold 32 floats or 16 doubles a thread: L lanes of a warp 32 L floats or
    // 16 L doubles (L = 1 .. 32), a block of up to 512 threads 16384 or 8192, a cluster of up to 8
    // blocks of 256 65536 or 32768 (without clusters, a block of up to 1024 threads: 32768 or
    // 16384); longer columns are streamed (cuda_plan::fused_launch).
    for (const index_t K : {2, 3, 10, 16, 17, 31, 32, 33, 64, 65, 100, 200, 300, 511, 512, 513, 1023, 1024, 1025, 4096,
                            4097, 8192, 8193, 16384, 16385, 32768, 32769, 65536, 65537, 100000}) {
        const index_t N = K >= 4097 ? 37 : 67;  // not a multiple of the 8 columns of a warp block
        std::mt19937_64 rng(static_cast<std::uint64_t>(K));
        const auto S = random_labels(K, N, 40, rng);
        const auto dS = mlnc::to_device(S, gpu);
        const mlnc::matrix<T> Z = random_matrix<T>(K, N, 3.0, rng);
        for (const pal_variant v : {pal_variant::pal, pal_variant::pal_n})
        // ld = K + 3 (16-byte vectors only where that is a multiple of the vector) and ld = K + 4
        // (vectors whenever K is a multiple: floats K % 4 == 0, doubles K % 2 == 0).
        for (const index_t pad : {3, 4}) {
            CAPTURE(K, static_cast<int>(v), pad);
            mlnc::matrix<T> G(K, N);
            mlnc::vector<T> losses(N);
            const T l_cpu = mlnc::pal_loss_grad(mlnc::cpu{1}, Z, S, G, v);
            mlnc::pal_sample_losses(mlnc::cpu{1}, Z, S, losses, v);

            auto dz = upload_padded(gpu, Z, pad);
            auto dg = upload_padded(gpu, mlnc::matrix<T>::Zero(K, N).eval(), pad + 4);
            mlnc::device_buffer<T> dl(N);
            const T l_loss = mlnc::pal_loss(gpu, mlnc::device_matrix_view<const T>(dz.view), dS, v);
            const T l_samples = mlnc::pal_sample_losses(gpu, dz.view, dS, dl.vector_view(), v);
            const T l_grad = mlnc::pal_loss_grad(gpu, dz.view, dS, dg.view, v);
            CHECK(std::abs(double(l_loss) - double(l_cpu)) <= tolerance<T> * std::abs(double(l_cpu)));
            CHECK(std::abs(double(l_samples) - double(l_cpu)) <= tolerance<T> * std::abs(double(l_cpu)));
            CHECK(std::abs(double(l_grad) - double(l_cpu)) <= tolerance<T> * std::abs(double(l_cpu)));
            CHECK(rel(mlnc::download(gpu, dl.vector_view()), losses) <= tolerance<T>);
            CHECK(rel(mlnc::download(gpu, dg.view), G) <= tolerance<T>);
            // The padding rows of G are untouched.
            const auto whole = mlnc::download(gpu, dg.buf.view());
            CHECK((whole.bottomRows(pad + 4).array() == T(-7)).all());

            const T l_inplace = mlnc::pal_loss_grad_inplace(gpu, dz.view, dS, v);
            CHECK(std::abs(double(l_inplace) - double(l_cpu)) <= tolerance<T> * std::abs(double(l_cpu)));
            CHECK(rel(mlnc::download(gpu, dz.view), G) <= tolerance<T>);

            // Device-resident: nothing on the host until the caller copies it.
            auto dz2 = upload_padded(gpu, Z, 0);
            mlnc::device_buffer<T> dloss(1), dls(N);
            mlnc::pal_loss_grad_async(gpu, dz2.view, dS, dz2.view, dloss.vector_view(), dls.vector_view(), v);
            CHECK(std::abs(double(mlnc::download(gpu, dloss.vector_view())[0]) - double(l_cpu)) <=
                  tolerance<T> * std::abs(double(l_cpu)));
            CHECK(rel(mlnc::download(gpu, dls.vector_view()), losses) <= tolerance<T>);
            CHECK(rel(mlnc::download(gpu, dz2.view), G) <= tolerance<T>);
            CHECK(!gpu.non_finite());
        }
    }
}

// The pipelined block (aligned double columns of more than 64 KiB, up to 16384 doubles): a
// persistent block per multiprocessor slot, so with 400 columns each block takes several,
// staging the next while it writes the one before; in place, out of place, PAL-N.
TEST_CASE("cuda pipelined block streams many columns a block", "[cuda][pal][pipelined]") {
    using T = double;
    mlnc::cuda_backend gpu;
    for (const index_t K : {8194, 12000, 16384}) {  // multiples of the 16-byte vector
        const index_t N = 400;
        std::mt19937_64 rng(static_cast<std::uint64_t>(K) + 9);
        const auto S = random_labels(K, N, 30, rng);
        const auto dS = mlnc::to_device(S, gpu);
        const mlnc::matrix<T> Z = random_matrix<T>(K, N, 3.0, rng);
        CAPTURE(K);
        CHECK((mlnc::cuda_plan::fused_launch(K, N, sizeof(T), mlnc::cuda_kernels::clusters_usable<T>(),
                                             mlnc::cuda_kernels::current_device_caps().stage_bytes)
                       .kind == mlnc::cuda_plan::fused_kernel::pipelined_block ||
               mlnc::cuda_kernels::current_device_caps().stage_bytes < static_cast<std::size_t>(K) * sizeof(T)));
        for (const pal_variant v : {pal_variant::pal, pal_variant::pal_n}) {
            CAPTURE(static_cast<int>(v));
            mlnc::matrix<T> G(K, N);
            mlnc::vector<T> losses(N);
            const T l_cpu = mlnc::pal_loss_grad(mlnc::cpu{2}, Z, S, G, v);
            mlnc::pal_sample_losses(mlnc::cpu{2}, Z, S, losses, v);
            auto dz = upload_padded(gpu, Z, 0);
            mlnc::device_buffer<T> dg(K, N), dl(N);
            CHECK(std::abs(double(mlnc::pal_sample_losses(gpu, dz.view, dS, dl.vector_view(), v)) - double(l_cpu)) <=
                  tolerance<T> * std::abs(double(l_cpu)));
            CHECK(rel(mlnc::download(gpu, dl.vector_view()), losses) <= tolerance<T>);
            const T l_grad = mlnc::pal_loss_grad(gpu, dz.view, dS, dg.view(), v);
            CHECK(std::abs(double(l_grad) - double(l_cpu)) <= tolerance<T> * std::abs(double(l_cpu)));
            CHECK(rel(mlnc::download(gpu, dg.view()), G) <= tolerance<T>);
            const T l_inplace = mlnc::pal_loss_grad_inplace(gpu, dz.view, dS, v);
            CHECK(std::abs(double(l_inplace) - double(l_cpu)) <= tolerance<T> * std::abs(double(l_cpu)));
            CHECK(rel(mlnc::download(gpu, dz.view), G) <= tolerance<T>);
        }
    }
}

TEMPLATE_TEST_CASE("cuda pal kernels handle large logits like the CPU backend", "[cuda][pal]", float, double) {
    using T = TestType;
    mlnc::cuda_backend gpu;
    const T big = sizeof(T) == 8 ? T(1e300) : T(1e30);
    for (const index_t K : {33, 2000, 20000}) {
        std::mt19937_64 rng(1);
        const auto S = random_labels(K, 9, 5, rng);
        mlnc::matrix<T> Z = random_matrix<T>(K, 9, 1.0, rng) * big;
        mlnc::matrix<T> G(K, 9);
        const T l_cpu = mlnc::pal_loss_grad(mlnc::cpu{1}, Z, S, G);
        auto dz = upload_padded(gpu, Z, 0);
        const auto dS = mlnc::to_device(S, gpu);
        const T l = mlnc::pal_loss_grad_inplace(gpu, dz.view, dS);
        CHECK(std::abs(double(l) - double(l_cpu)) <= tolerance<T> * std::abs(double(l_cpu)));
        CHECK(rel(mlnc::download(gpu, dz.view), G) <= tolerance<T>);
    }
}

TEMPLATE_TEST_CASE("cuda pal kernels report the first non-finite logit", "[cuda][pal]", float, double) {
    using T = TestType;
    mlnc::cuda_backend gpu;
    for (const index_t K : {31, 1025, 20000}) {  // 20000: a cluster of 3 (float) or 5 (double) blocks
        std::mt19937_64 rng(2);
        const auto S = random_labels(K, 20, 4, rng);
        const auto dS = mlnc::to_device(S, gpu);
        mlnc::matrix<T> Z = random_matrix<T>(K, 20, 1.0, rng);
        Z(0, 11) = std::numeric_limits<T>::quiet_NaN();
        Z(K - 1, 4) = std::numeric_limits<T>::infinity();
        Z(3, 4) = -std::numeric_limits<T>::infinity();
        auto dz = upload_padded(gpu, Z, 2);
        const std::string expected = "Z: non-finite logit at (3, 4)";
        CHECK_THROWS_WITH(mlnc::pal_loss(gpu, dz.view, dS), expected);
        CHECK_THROWS_WITH(mlnc::pal_loss_grad_inplace(gpu, dz.view, dS), expected);
        // A later call with finite logits is not affected by the earlier report.
        auto ok = upload_padded(gpu, random_matrix<T>(K, 20, 1.0, rng), 0);
        CHECK(std::isfinite(double(mlnc::pal_loss(gpu, ok.view, dS))));

        auto dz2 = upload_padded(gpu, Z, 0);
        mlnc::device_buffer<T> dloss(1);
        mlnc::pal_loss_async(gpu, dz2.view, dS, dloss.vector_view());
        const auto bad = gpu.non_finite();
        REQUIRE(bad);
        CHECK(bad->first == 3);
        CHECK(bad->second == 4);
        gpu.clear_non_finite();
        CHECK(!gpu.non_finite());
    }
}

TEST_CASE("cuda backend borrows the caller's stream", "[cuda][pal]") {
    cudaStream_t s = nullptr;
    REQUIRE(cudaStreamCreate(&s) == cudaSuccess);
    {
        mlnc::cuda_backend gpu(s);
        CHECK(gpu.stream() == s);
        std::mt19937_64 rng(3);
        const index_t K = 1500, N = 40;
        const auto S = random_labels(K, N, 10, rng);
        const mlnc::matrix<double> Z = random_matrix<double>(K, N, 2.0, rng);
        mlnc::matrix<double> G(K, N);
        const double l_cpu = mlnc::pal_loss_grad(mlnc::cpu{1}, Z, S, G);
        const auto dS = mlnc::to_device(S, gpu);
        auto dz = upload_padded(gpu, Z, 1);
        mlnc::device_buffer<double> dloss(1);
        mlnc::pal_loss_grad_async(gpu, dz.view, dS, dz.view, dloss.vector_view());
        REQUIRE(cudaStreamSynchronize(s) == cudaSuccess);
        CHECK(std::abs(mlnc::download(gpu, dloss.vector_view())[0] - l_cpu) <= 1e-12 * l_cpu);
        CHECK(rel(mlnc::download(gpu, dz.view), G) <= 1e-12);
    }
    REQUIRE(cudaStreamDestroy(s) == cudaSuccess);
}

TEST_CASE("cuda pal front ends check shapes", "[cuda][pal]") {
    mlnc::cuda_backend gpu;
    const auto S = mlnc::label_sets::from_lists({{0}, {1, 2}}, 3);
    const auto dS = mlnc::to_device(S, gpu);
    mlnc::device_buffer<float> z(3, 3), g(3, 2);
    CHECK_THROWS_WITH(mlnc::pal_loss(gpu, z.view(), dS), "Z: expected 3 x 2 (K labels x N samples), got 3 x 3");
    CHECK_THROWS_WITH(mlnc::pal_loss_grad(gpu, z.view().middle_cols(0, 2), dS, g.view().middle_rows(0, 2)),
                      "G: expected 3 x 2 (same shape as Z), got 2 x 2");
}
