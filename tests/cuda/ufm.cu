// Training on the GPU (mlnc/cuda/ufm.cuh): ufm_objective<T, mlnc::cuda> against the CPU
// ufm_objective (host and device forms, free and fixed classifier, non-finite points), and
// train_ufm on mlnc::cuda against train_ufm on mlnc::cpu: L-BFGS to the same minimum, gradient
// descent (its vectors on the device) along the same iterates, on a borrowed stream too.
#include <mlnc/cuda/ufm.cuh>
#include <mlnc/labels.hpp>
#include <mlnc/ufm.hpp>

#include "gpu_support.hpp"

#include <catch2/catch.hpp>

#include <cmath>
#include <limits>
#include <random>
#include <vector>

using mlnc::index_t;
using namespace mlnc_gpu_test;

// The capability table says the CUDA backend trains.
static_assert(mlnc::backend_traits<mlnc::cuda>::training);

namespace {

const mlnc::penalties lam{5e-3, 5e-3, 1e-2};

template <class T>
mlnc::vector<T> random_x(index_t n, std::uint64_t seed) {
    std::mt19937_64 rng(seed);
    return random_matrix<T>(n, 1, 0.3, rng);
}

// The device objective's host and device forms against the CPU objective at x.
template <class T>
void check_objective(mlnc::ufm_objective<T, mlnc::cpu>& ref, mlnc::ufm_objective<T, mlnc::cuda>& f,
                     const mlnc::vector<T>& x) {
    mlnc::vector<T> g_ref, g;
    const auto v_ref = ref.evaluate(x, g_ref);
    REQUIRE(v_ref.ok());
    const auto v = f.evaluate(x, g);
    REQUIRE(v.ok());
    CHECK(std::abs(double(v.total) - double(v_ref.total)) <= tolerance<T> * std::abs(double(v_ref.total)));
    CHECK(rel(g, g_ref) <= tolerance<T>);
    CHECK(std::abs(double(f.evaluate(x).total) - double(v_ref.total)) <= tolerance<T> * std::abs(double(v_ref.total)));

    mlnc::cuda_backend& gpu = f.backend_value();
    const auto xd = mlnc::upload(gpu, x);
    mlnc::device_buffer<T> gd(x.size());
    const auto vd = f.evaluate_device(xd.vector_view(), gd.vector_view());
    CHECK(vd.total == v.total);  // the same computation on the same device
    CHECK(rel(mlnc::download(gpu, gd.vector_view()), g_ref) <= tolerance<T>);
}

}  // namespace

TEMPLATE_TEST_CASE("ufm_objective on mlnc::cuda matches the CPU", "[cuda][ufm]", float, double) {
    using T = TestType;
    std::mt19937_64 rng(5);
    const index_t K = 33, d = 7, N = 300;
    const mlnc::label_sets S = random_labels(K, N, 4, rng);

    mlnc::ufm_objective<T, mlnc::cpu> ref(mlnc::cpu{1}, S, d, lam);
    mlnc::ufm_objective<T, mlnc::cuda> f(mlnc::cuda{}, S, d, lam);
    REQUIRE(f.size() == ref.size());
    check_objective(ref, f, random_x<T>(f.size(), 1));

    const mlnc::matrix<T> W = random_matrix<T>(K, d, 0.3, rng);  // any fixed classifier (an ETF needs d >= K - 1)
    mlnc::ufm_objective<T, mlnc::cpu> ref_fixed(mlnc::cpu{1}, S, W, lam);
    mlnc::ufm_objective<T, mlnc::cuda> f_fixed(mlnc::cuda{}, S, W, lam);
    REQUIRE(f_fixed.size() == d * N + K);
    check_objective(ref_fixed, f_fixed, random_x<T>(f_fixed.size(), 2));

    SECTION("a non-finite x gives +Inf and a NaN gradient") {
        mlnc::vector<T> x = random_x<T>(f.size(), 4), g;
        x[f.size() - 1] = std::numeric_limits<T>::infinity();
        const auto v = f.evaluate(x, g);
        CHECK(v.status == mlnc::objective_status::overflow);
        CHECK(std::isinf(v.total));
        CHECK(g.size() == f.size());
        CHECK(g.array().isNaN().all());
    }
    SECTION("shapes are checked") {
        mlnc::vector<T> g;
        CHECK_THROWS_WITH(f.evaluate(mlnc::vector<T>::Zero(3), g), Catch::Contains("x: expected"));
        mlnc::device_buffer<T> xd(3);
        CHECK_THROWS_WITH(f.evaluate_device(xd.vector_view()), Catch::Contains("x: expected"));
    }
}

TEMPLATE_TEST_CASE("train_ufm on mlnc::cuda: L-BFGS reaches the CPU's minimum", "[cuda][ufm]", float, double) {
    using T = TestType;
    const mlnc::label_sets S = mlnc::balanced_label_sets(4, {{1, 3}, {2, 1}});
    mlnc::ufm_options o;
    o.seed = 7;
    o.gradient_tolerance = sizeof(T) == 8 ? 1e-12 : 1e-5;
    o.max_iterations = 5000;
    const auto cpu = mlnc::train_ufm<T>(mlnc::cpu{1}, S, 4, lam, o);
    const auto gpu = mlnc::train_ufm<T>(mlnc::cuda{}, S, 4, lam, o);
    REQUIRE(cpu.status == mlnc::ufm_status::converged_gradient);
    CHECK(gpu.status == mlnc::ufm_status::converged_gradient);
    // Both at the minimiser: f agrees to its rounding, whatever path each took.
    const double tol = sizeof(T) == 8 ? 1e-12 : 1e-5;
    CHECK(std::abs(gpu.objective - cpu.objective) <= tol * std::abs(cpu.objective));
    CHECK(gpu.W.rows() == 4);
    CHECK(gpu.H.cols() == S.size());
}

TEMPLATE_TEST_CASE("train_ufm on mlnc::cuda: gradient descent on the device follows the CPU's iterates", "[cuda][ufm]",
                   float, double) {
    using T = TestType;
    std::mt19937_64 rng(9);
    const mlnc::label_sets S = random_labels(40, 500, 3, rng);
    mlnc::ufm_options o;
    o.method = mlnc::ufm_method::gd;
    o.seed = 3;
    o.max_iterations = 25;
    o.history_every = 5;
    // The observer sees the same iterates (downloaded from the device every 5 iterations).
    std::vector<double> seen_cpu, seen_gpu;
    const auto watch = [](std::vector<double>& out) {
        return [&out](const mlnc::ufm_history_entry&, const Eigen::Ref<const mlnc::matrix<T>>& W,
                      const Eigen::Ref<const mlnc::matrix<T>>& H, const Eigen::Ref<const mlnc::vector<T>>& b) {
            out.push_back(W.template cast<double>().norm() + H.template cast<double>().norm() +
                          b.template cast<double>().norm());
        };
    };
    const auto cpu = mlnc::train_ufm<T>(mlnc::cpu{1}, S, 16, lam, o, watch(seen_cpu));
    cudaStream_t stream = nullptr;
    REQUIRE(cudaStreamCreate(&stream) == cudaSuccess);
    const auto gpu = mlnc::train_ufm<T>(mlnc::cuda{0, stream}, S, 16, lam, o, watch(seen_gpu));
    REQUIRE(cudaStreamDestroy(stream) == cudaSuccess);

    REQUIRE(cpu.status == mlnc::ufm_status::max_iterations);
    CHECK(gpu.status == cpu.status);
    CHECK(gpu.iterations == cpu.iterations);
    // The same accepted trial steps: the same number of evaluations (in double; in float an
    // Armijo test within f's rounding of its threshold may go the other way). The iterates differ
    // by the rounding of the sums (another order on the device), amplified a little by 25 steps.
    if constexpr (sizeof(T) == 8) CHECK(gpu.function_evaluations == cpu.function_evaluations);
    const double tol = sizeof(T) == 8 ? 1e-10 : 1e-4;
    CHECK(std::abs(gpu.objective - cpu.objective) <= tol * std::abs(cpu.objective));
    CHECK(rel(gpu.W, cpu.W) <= tol);
    CHECK(rel(gpu.H, cpu.H) <= tol);
    CHECK(rel(gpu.b, cpu.b) <= tol);
    REQUIRE(seen_gpu.size() == seen_cpu.size());
    for (std::size_t i = 0; i < seen_cpu.size(); ++i) CHECK(std::abs(seen_gpu[i] - seen_cpu[i]) <= tol * seen_cpu[i]);
}
