// Parity of the device objective pal_objective<T, cuda_backend> (mlnc/cuda/objective.cuh) with
// the CPU objective: chunked, class-tiled, with and without gradients, overflow and bad input.
#include <mlnc/cuda/objective.cuh>
#include <mlnc/objective.hpp>

#include "gpu_support.hpp"

#include <catch2/catch.hpp>

#include <cmath>
#include <limits>
#include <random>

using mlnc::index_t;
using mlnc::pal_variant;
using namespace mlnc_gpu_test;

namespace {

template <class T>
struct problem {
    mlnc::label_sets S;
    mlnc::matrix<T> W, H;
    mlnc::vector<T> b;
};

template <class T>
problem<T> make_problem(index_t K, index_t d, index_t N, std::uint64_t seed) {
    std::mt19937_64 rng(seed);
    problem<T> p;
    p.S = random_labels(K, N, 12, rng);
    p.W = random_matrix<T>(K, d, 0.5, rng);
    p.H = random_matrix<T>(d, N, 0.5, rng);
    p.b = random_matrix<T>(K, 1, 0.5, rng);
    return p;
}

// The device objective with the given workspace against the CPU one, value and all gradients.
template <class T>
void check_parity(const problem<T>& p, std::size_t workspace_bytes, bool expect_tiled, pal_variant v) {
    const mlnc::penalties lam{1e-3, 2e-3, 3e-3};
    const index_t K = p.W.rows(), d = p.W.cols(), N = p.H.cols();
    mlnc::pal_objective<T> cpu_f(mlnc::cpu{1}, p.S, lam, v);
    mlnc::matrix<T> dW(K, d), dH(d, N);
    mlnc::vector<T> db(K);
    const auto ref = cpu_f.evaluate(p.W, p.H, p.b, dW, dH, db);
    REQUIRE(ref.ok());

    mlnc::cuda_backend gpu;
    mlnc::pal_objective<T, mlnc::cuda_backend> f(gpu, p.S, lam, v);
    f.set_workspace_bytes(workspace_bytes);
    CHECK(f.plan().tiled(K) == expect_tiled);
    auto W = upload_padded(gpu, p.W, 2);  // ld > rows
    auto H = upload_padded(gpu, p.H, 1);
    auto b = mlnc::upload(gpu, p.b);
    auto gW = upload_padded(gpu, mlnc::matrix<T>::Zero(K, d).eval(), 3);
    mlnc::device_buffer<T> gH(d, N), gb(K);
    const mlnc::device_vector_view<const T> bv = b.vector_view();

    const auto value_only = f.evaluate(W.view, H.view, bv);
    CHECK(value_only.ok());
    CHECK(std::abs(double(value_only.total) - double(ref.total)) <= tolerance<T> * std::abs(double(ref.total)));
    const auto r = f.evaluate(W.view, H.view, bv, gW.view, gH.view(), gb.vector_view());
    REQUIRE(r.ok());
    CHECK(std::abs(double(r.loss) - double(ref.loss)) <= tolerance<T> * std::abs(double(ref.loss)));
    CHECK(std::abs(double(r.penalty) - double(ref.penalty)) <= tolerance<T> * std::abs(double(ref.penalty)));
    CHECK(std::abs(double(r.total) - double(ref.total)) <= tolerance<T> * std::abs(double(ref.total)));
    CHECK(rel(mlnc::download(gpu, gW.view), dW) <= tolerance<T>);
    CHECK(rel(mlnc::download(gpu, gH.view()), dH) <= tolerance<T>);
    CHECK(rel(mlnc::download(gpu, gb.vector_view()), db) <= tolerance<T>);
    // Only dH (a fixed classifier).
    mlnc::device_buffer<T> gH2(d, N);
    f.evaluate(W.view, H.view, bv, {}, gH2.view(), {});
    CHECK(rel(mlnc::download(gpu, gH2.view()), dH) <= tolerance<T>);
}

}  // namespace

TEMPLATE_TEST_CASE("cuda objective matches the CPU objective", "[cuda][objective]", float, double) {
    using T = TestType;
    // 1024: the cached kernel reads vectors; 8200: in double the pipelined block (more than 64 KiB
    // a column), the bias added as the stage moves into registers, 300 columns (more than one a
    // block on an H200's 132 multiprocessors).
    for (const index_t K : {3, 33, 1024, 1025, 4097, 8200}) {
        const auto p = make_problem<T>(K, 16, 300, static_cast<std::uint64_t>(K));
        for (const pal_variant v : {pal_variant::pal, pal_variant::pal_n}) {
            CAPTURE(K, static_cast<int>(v));
            check_parity(p, mlnc::default_workspace_bytes, false, v);                   // one chunk
            check_parity(p, static_cast<std::size_t>(K) * sizeof(T) * 130, false, v);   // chunks 130, 130, 40
            check_parity(p, static_cast<std::size_t>(K) * sizeof(T) * 20, true, v);     // class tiles of K 20/128 rows
        }
    }
}

TEMPLATE_TEST_CASE("cuda objective at K = 100000: one chunk and class tiles", "[cuda][objective]", float, double) {
    using T = TestType;
    const auto p = make_problem<T>(100000, 8, 40, 5);
    check_parity(p, mlnc::default_workspace_bytes, false, pal_variant::pal);
    check_parity(p, std::size_t{4} << 20, true, pal_variant::pal);  // 4 MiB: tiles of 4 MiB / (40 T)
}

TEMPLATE_TEST_CASE("cuda objective reports overflow and refuses non-finite input like the CPU", "[cuda][objective]",
                   float, double) {
    using T = TestType;
    auto p = make_problem<T>(40, 4, 30, 7);
    const T huge = std::numeric_limits<T>::max() / 64;  // only (5, 2) = huge^2 d overflows
    p.W.row(5).setConstant(huge);
    p.H.col(2).setConstant(huge);
    const mlnc::penalties lam{};
    mlnc::pal_objective<T> cpu_f(mlnc::cpu{1}, p.S, lam);
    const auto ref = cpu_f.evaluate(p.W, p.H, p.b);
    REQUIRE_FALSE(ref.ok());

    mlnc::cuda_backend gpu;
    mlnc::pal_objective<T, mlnc::cuda_backend> f(gpu, p.S, lam);
    auto W = mlnc::upload(gpu, p.W);
    auto H = mlnc::upload(gpu, p.H);
    auto b = mlnc::upload(gpu, p.b);
    mlnc::device_buffer<T> gb(40);
    for (const std::size_t ws : {mlnc::default_workspace_bytes, std::size_t{40} * sizeof(T) * 3}) {
        f.set_workspace_bytes(ws);
        const auto r = f.evaluate(W.view(), H.view(), b.vector_view(), {}, {}, gb.vector_view());
        CHECK(r.status == mlnc::objective_status::overflow);
        CHECK(std::isinf(double(r.total)));
        CHECK(r.overflow_row == ref.overflow_row);
        CHECK(r.overflow_col == ref.overflow_col);
        CHECK(mlnc::download(gpu, gb.vector_view()).array().isNaN().all());
    }

    auto q = make_problem<T>(40, 4, 30, 8);
    q.H(3, 7) = std::numeric_limits<T>::quiet_NaN();
    auto W2 = mlnc::upload(gpu, q.W);
    auto H2 = mlnc::upload(gpu, q.H);
    auto b2 = mlnc::upload(gpu, q.b);
    mlnc::pal_objective<T, mlnc::cuda_backend> g(gpu, q.S, lam);
    CHECK_THROWS_WITH(g.evaluate(W2.view(), H2.view(), b2.vector_view()), "H: contains NaN or Inf (first at (3, 7))");
    CHECK_THROWS_WITH(g.evaluate(W2.view(), H2.view().middle_cols(0, 29), b2.vector_view()),
                      "H: expected 4 x 30 (d x N, d = columns of W), got 4 x 29");
}

TEST_CASE("cuda objective: the class template argument defaults to double", "[cuda][objective]") {
    mlnc::cuda_backend gpu;
    const auto S = mlnc::label_sets::from_lists({{0}, {1, 2}}, 3);
    mlnc::pal_objective f(gpu, S, mlnc::penalties{});
    STATIC_REQUIRE(std::is_same_v<decltype(f), mlnc::pal_objective<double, mlnc::cuda_backend>>);
    CHECK(f.num_labels() == 3);
}

TEST_CASE("cuda objective: TF32 is off by default, an explicit option for float, no effect on double",
          "[cuda][objective]") {
    const auto pf = make_problem<float>(1025, 64, 200, 9);
    const auto pd = make_problem<double>(1025, 64, 200, 9);
    const mlnc::penalties lam{1e-3, 1e-3, 1e-3};
    mlnc::cuda_backend gpu;
    CHECK_FALSE(gpu.tf32());
    gpu.set_tf32(true);
    CHECK(gpu.tf32());
    mlnc::pal_objective<float> cf(mlnc::cpu{1}, pf.S, lam);
    mlnc::pal_objective<double> cd(mlnc::cpu{1}, pd.S, lam);
    mlnc::pal_objective<float, mlnc::cuda_backend> gf(gpu, pf.S, lam);
    mlnc::pal_objective<double, mlnc::cuda_backend> gd(gpu, pd.S, lam);
    auto Wf = mlnc::upload(gpu, pf.W);
    auto Hf = mlnc::upload(gpu, pf.H);
    auto bf = mlnc::upload(gpu, pf.b);
    auto Wd = mlnc::upload(gpu, pd.W);
    auto Hd = mlnc::upload(gpu, pd.H);
    auto bd = mlnc::upload(gpu, pd.b);
    const double rf = cf.evaluate(pf.W, pf.H, pf.b).total, rd = cd.evaluate(pd.W, pd.H, pd.b).total;
    CHECK(std::abs(gf.evaluate(Wf.view(), Hf.view(), bf.vector_view()).total - rf) <= 1e-2 * rf);  // ~10-bit products
    CHECK(std::abs(gd.evaluate(Wd.view(), Hd.view(), bd.vector_view()).total - rd) <= 1e-12 * rd);
}
