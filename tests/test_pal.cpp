// The kernels and the objective against references, at the logits level and through W, H, b.
// The checks that no Eigen temporary is allocated are in test_pal_views.cpp (Eigen configured
// there), so that this file can link the library's precompiled instances.
#include <mlnc/objective.hpp>
#include <mlnc/pal.hpp>

#include <catch2/catch.hpp>

#include <atomic>
#include <bit>
#include <cstdint>
#include <cstring>
#include <numeric>
#include <random>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

using mlnc::index_t;
using mlnc::label_sets;
using mlnc::pal_variant;

namespace {

// The obviously-correct reference: loss of one sample straight from the definition
// sum_{k in S} -log softmax(z)_k, in long double, with the max subtracted for range only.
long double ref_sample_loss(const Eigen::VectorXd& z, std::span<const mlnc::label_t> S, pal_variant v) {
    const long double mx = z.maxCoeff();
    long double se = 0;
    for (index_t k = 0; k < z.size(); ++k) se += std::exp(static_cast<long double>(z[k]) - mx);
    long double l = 0;
    for (auto k : S) l += -((static_cast<long double>(z[k]) - mx) - std::log(se));
    return v == pal_variant::pal_n ? l / static_cast<long double>(S.size()) : l;
}

long double ref_objective(const Eigen::MatrixXd& W, const Eigen::MatrixXd& H, const Eigen::VectorXd& b,
                          const label_sets& S, const mlnc::penalties& p, pal_variant v) {
    long double loss = 0;
    for (index_t i = 0; i < S.size(); ++i) {
        Eigen::VectorXd z = W * H.col(i) + b;
        loss += ref_sample_loss(z, S[i], v);
    }
    loss /= static_cast<long double>(S.size());
    return loss + p.lambda_w * W.squaredNorm() + p.lambda_h * H.squaredNorm() + p.lambda_b * b.squaredNorm();
}

// Random label sets with multiplicities drawn from 1..max_m (max_m may be K).
label_sets random_labels(index_t K, index_t N, index_t max_m, std::mt19937_64& rng) {
    std::vector<std::vector<index_t>> sets;
    for (index_t i = 0; i < N; ++i) {
        const index_t m = 1 + static_cast<index_t>(rng() % static_cast<std::uint64_t>(max_m));
        std::vector<index_t> all(static_cast<std::size_t>(K));
        std::iota(all.begin(), all.end(), index_t{0});
        std::shuffle(all.begin(), all.end(), rng);
        sets.emplace_back(all.begin(), all.begin() + m);
    }
    return label_sets::from_lists(sets, K);
}

Eigen::MatrixXd randn(index_t r, index_t c, std::mt19937_64& rng, double scale = 1.0) {
    std::normal_distribution<double> nd(0.0, scale);
    Eigen::MatrixXd A(r, c);
    for (index_t j = 0; j < c; ++j)
        for (index_t i = 0; i < r; ++i) A(i, j) = nd(rng);
    return A;
}

struct shape {
    index_t K, d, N, max_m;
};

// Each column i of Z against the definition: per[i] the sample's loss (relative tol, per sample),
// G(:, i) = (m p - y) / N (PAL) or (p - y / m) / N (PAL-N), p = softmax(z), within tol (1 + m) / N.
template <class T>
void check_columns_against_definition(const mlnc::matrix<T>& Z, const label_sets& S, pal_variant v,
                                      const mlnc::vector<T>& per, const mlnc::matrix<T>& G, double tol) {
    const index_t N = Z.cols();
    for (index_t i = 0; i < N; ++i) {
        INFO("column " << i);
        const Eigen::VectorXd z = Z.col(i).template cast<double>();
        const long double ref = ref_sample_loss(z, S[i], v);
        CHECK(std::abs(static_cast<long double>(per[i]) - ref) <= tol * (1 + std::abs(ref)));
        const double m = static_cast<double>(S[i].size());
        const Eigen::ArrayXd p = (z.array() - z.maxCoeff()).exp() / (z.array() - z.maxCoeff()).exp().sum();
        Eigen::ArrayXd g = (v == pal_variant::pal ? m : 1.0) * p;
        for (const auto k : S[i]) g[k] -= v == pal_variant::pal ? 1.0 : 1.0 / m;
        g /= static_cast<double>(N);
        const double err = (G.col(i).template cast<double>().array() - g).abs().maxCoeff();
        CHECK(err <= tol * (1 + m) / static_cast<double>(N));
    }
}

// Whether Z's columns (and their label sets) rotated by `shift` give each column the same loss
// and gradient bits (per, G) as in place.
template <class T>
bool rotation_keeps_bits(const mlnc::matrix<T>& Z, const label_sets& S, const mlnc::vector<T>& per,
                         const mlnc::matrix<T>& G, index_t shift) {
    const index_t K = Z.rows(), N = Z.cols();
    std::vector<index_t> from(static_cast<std::size_t>(N));  // column j of the rotation is Z's from[j]
    for (index_t j = 0; j < N; ++j) from[static_cast<std::size_t>(j)] = (j + shift) % N;
    const auto S_rot = mlnc::sample_subset(S, from).to_label_sets();
    mlnc::matrix<T> Z_rot(K, N);
    for (index_t j = 0; j < N; ++j) Z_rot.col(j) = Z.col(from[static_cast<std::size_t>(j)]);
    mlnc::vector<T> per_rot(N);
    mlnc::matrix<T> G_rot(K, N);
    mlnc::pal_sample_losses(Z_rot, S_rot, per_rot);
    mlnc::pal_loss_grad(Z_rot, S_rot, G_rot);
    bool same = true;
    for (index_t j = 0; j < N; ++j) {
        const index_t i = from[static_cast<std::size_t>(j)];
        same = same && per_rot[j] == per[i] && (G_rot.col(j).array() == G.col(i).array()).all();
    }
    return same;
}

}  // namespace

TEST_CASE("objective matches the plain reference; gradients match central differences") {
    std::mt19937_64 rng(12345);
    const mlnc::penalties lam{0.013, 0.007, 0.021};
    // N = 1, K = 2, m = K-1 and m = K all appear.
    const std::vector<shape> shapes{{2, 1, 1, 1}, {2, 3, 4, 2}, {3, 2, 5, 2}, {5, 4, 7, 5}, {6, 6, 3, 5}, {4, 7, 9, 3}};
    for (const auto v : {pal_variant::pal, pal_variant::pal_n}) {
        for (const auto& sh : shapes) {
            CAPTURE(sh.K, sh.d, sh.N, sh.max_m, static_cast<int>(v));
            const auto S = random_labels(sh.K, sh.N, sh.max_m, rng);
            const Eigen::MatrixXd W = randn(sh.K, sh.d, rng), H = randn(sh.d, sh.N, rng);
            const Eigen::VectorXd b = randn(sh.K, 1, rng);
            mlnc::pal_objective<double> obj(S, lam, v);
            Eigen::MatrixXd dW(sh.K, sh.d), dH(sh.d, sh.N);
            Eigen::VectorXd db(sh.K);
            const auto val = obj.evaluate(W, H, b, dW, dH, db);
            const double ref = static_cast<double>(ref_objective(W, H, b, S, lam, v));
            // Both sides are sums of O(N K) terms of size O(1) in double: 1e-13 relative is
            // ~1000 ulps of headroom, far below any formula error.
            CHECK(val.total == Approx(ref).epsilon(1e-13));
            CHECK(obj.value(W, H, b) == val.total);
            CHECK(val.loss + val.penalty == Approx(val.total).epsilon(1e-15));

            // Central differences, step 1e-6: truncation O(h^2 |f'''|) ~ 1e-12, rounding
            // O(eps |f| / h) ~ 1e-10; 1e-7 absolute catches any wrong term (those are O(1/N)).
            const double h = 1e-6;
            auto fd = [&](auto& X, index_t i, index_t j) {
                const double x0 = X(i, j);
                X(i, j) = x0 + h;
                const double fp = static_cast<double>(ref_objective(W, H, b, S, lam, v));
                X(i, j) = x0 - h;
                const double fm = static_cast<double>(ref_objective(W, H, b, S, lam, v));
                X(i, j) = x0;
                return (fp - fm) / (2 * h);
            };
            auto& Wm = const_cast<Eigen::MatrixXd&>(W);
            auto& Hm = const_cast<Eigen::MatrixXd&>(H);
            auto& bm = const_cast<Eigen::VectorXd&>(b);
            for (index_t i = 0; i < sh.K; ++i)
                for (index_t j = 0; j < sh.d; ++j) CHECK(dW(i, j) == Approx(fd(Wm, i, j)).margin(1e-7));
            for (index_t i = 0; i < sh.d; ++i)
                for (index_t j = 0; j < sh.N; ++j) CHECK(dH(i, j) == Approx(fd(Hm, i, j)).margin(1e-7));
            for (index_t i = 0; i < sh.K; ++i) CHECK(db(i) == Approx(fd(bm, i, 0)).margin(1e-7));
        }
    }
}

TEST_CASE("logits level: loss, per-sample losses, gradient out of place and in place agree") {
    std::mt19937_64 rng(99);
    const auto S = random_labels(7, 11, 7, rng);
    const Eigen::MatrixXd Z = randn(7, 11, rng, 3.0);
    for (const auto v : {pal_variant::pal, pal_variant::pal_n}) {
        Eigen::VectorXd losses(11);
        Eigen::MatrixXd G(7, 11);
        const double l0 = mlnc::pal_loss(Z, S, v);
        const double l1 = mlnc::pal_sample_losses(Z, S, losses, v);
        const double l2 = mlnc::pal_loss_grad(Z, S, G, v);
        Eigen::MatrixXd Zi = Z;
        const double l3 = mlnc::pal_loss_grad_inplace(Zi, S, v);
        CHECK(l0 == l1);
        CHECK(l0 == l2);
        CHECK(l0 == l3);
        CHECK(Zi == G);  // bitwise: same arithmetic
        CHECK(losses.mean() == Approx(l0).epsilon(1e-15));
        for (index_t i = 0; i < 11; ++i)
            CHECK(losses[i] == Approx(static_cast<double>(ref_sample_loss(Z.col(i), S[i], v))).epsilon(1e-14));
        // Column sums of G: PAL gives (m - m)/N = 0, PAL-N gives (1 - 1)/N = 0.
        CHECK(G.colwise().sum().cwiseAbs().maxCoeff() < 1e-15);
    }
}

TEST_CASE("the data term is invariant to a constant added to b") {
    std::mt19937_64 rng(5);
    const auto S = random_labels(6, 8, 4, rng);
    const Eigen::MatrixXd W = randn(6, 5, rng), H = randn(5, 8, rng);
    const Eigen::VectorXd b = randn(6, 1, rng);
    mlnc::pal_objective<double> obj(S, {});
    const double l0 = obj.evaluate(W, H, b).loss;
    for (double c : {-50.0, 0.5, 1e3}) {
        const Eigen::VectorXd bc = b.array() + c;
        // Shifting every logit by c changes each column's max by c exactly up to rounding of
        // z + c (|c| up to 1e3 -> absolute rounding ~1e-13).
        CHECK(obj.evaluate(W, H, bc).loss == Approx(l0).margin(1e-12));
    }
}

TEST_CASE("PAL-N equals PAL when every label set is a singleton") {
    std::mt19937_64 rng(8);
    const auto S = random_labels(5, 9, 1, rng);
    const Eigen::MatrixXd Z = randn(5, 9, rng, 2.0);
    Eigen::MatrixXd G1(5, 9), G2(5, 9);
    CHECK(mlnc::pal_loss_grad(Z, S, G1, pal_variant::pal) == mlnc::pal_loss_grad(Z, S, G2, pal_variant::pal_n));
    CHECK(G1 == G2);
}

TEST_CASE("multiplicity K: constant loss K log K at equal logits, zero gradient") {
    const auto S = label_sets::from_lists({{0, 1, 2, 3}}, 4);
    const Eigen::MatrixXd Z = Eigen::MatrixXd::Constant(4, 1, 2.5);
    Eigen::MatrixXd G(4, 1);
    CHECK(mlnc::pal_loss_grad(Z, S, G) == Approx(4 * std::log(4.0)).epsilon(1e-15));
    CHECK(G.cwiseAbs().maxCoeff() < 1e-16);
}

TEST_CASE("huge logits stay finite and exact: 1e30 in float, 1e300 in double") {
    const auto S = label_sets::from_lists({{0}, {1}, {0, 1}, {0, 1, 2}}, 3);
    SECTION("float") {
        const float c = 1e30f;
        Eigen::MatrixXf Z(3, 4);
        Z << c, c, c, -c,  //
            0, 0, 0, c,    //
            -c, -c, -c, 0;
        Eigen::MatrixXf G(3, 4);
        Eigen::VectorXf l(4);
        mlnc::pal_sample_losses(Z, S, l);
        const float mean = mlnc::pal_loss_grad(Z, S, G);
        // sample 0: label at the max -> loss 0 (exp(-1e30) underflows to 0, exactly the
        // rounded true value); sample 1: loss = c; sample 2: c; sample 3: c + 2c = 3c.
        CHECK(l[0] == 0.0f);
        CHECK(l[1] == Approx(1e30).epsilon(1e-6));
        CHECK(l[2] == Approx(1e30).epsilon(1e-6));
        CHECK(l[3] == Approx(3e30).epsilon(1e-6));
        CHECK(std::isfinite(mean));
        CHECK(G.allFinite());
        CHECK(G(0, 1) == Approx(0.25f));  // (1 * p_0 - 0) / 4 with p_0 = 1
    }
    SECTION("double") {
        const double c = 1e300;
        Eigen::MatrixXd Z(3, 4);
        Z << c, c, c, -c,  //
            0, 0, 0, c,    //
            -c, -c, -c, 0;
        Eigen::MatrixXd G(3, 4);
        Eigen::VectorXd l(4);
        mlnc::pal_sample_losses(Z, S, l);
        CHECK(l[0] == 0.0);
        CHECK(l[3] == Approx(3e300).epsilon(1e-15));
        CHECK(std::isfinite(mlnc::pal_loss_grad(Z, S, G)));
        CHECK(G.allFinite());
    }
}

TEST_CASE("float and double objectives agree to float precision") {
    std::mt19937_64 rng(21);
    const auto S = random_labels(8, 30, 4, rng);
    const Eigen::MatrixXd W = randn(8, 6, rng), H = randn(6, 30, rng);
    const Eigen::VectorXd b = randn(8, 1, rng);
    const mlnc::penalties lam{1e-3, 2e-3, 3e-3};
    mlnc::pal_objective<double> od(S, lam);
    mlnc::pal_objective<float> of(S, lam);
    Eigen::MatrixXd dW(8, 6), dH(6, 30);
    Eigen::VectorXd db(8);
    Eigen::MatrixXf fW(8, 6), fH(6, 30);
    Eigen::VectorXf fb(8);
    const double vd = od.evaluate(W, H, b, dW, dH, db).total;
    const float vf = of.evaluate(W.cast<float>().eval(), H.cast<float>().eval(), b.cast<float>().eval(), fW, fH, fb).total;
    // float rounding of inputs and of O(K) exp terms: a few 1e-7 relative.
    CHECK(vf == Approx(vd).epsilon(1e-5));
    CHECK((fW.cast<double>() - dW).cwiseAbs().maxCoeff() < 1e-5);
    CHECK((fH.cast<double>() - dH).cwiseAbs().maxCoeff() < 1e-5);
}

TEST_CASE("non-finite input and shape mismatches throw mlnc::error naming the argument") {
    using Catch::Matchers::Contains;
    const auto S = label_sets::from_lists({{0}, {1, 2}}, 3);
    mlnc::pal_objective<double> obj(S, {});
    Eigen::MatrixXd W = Eigen::MatrixXd::Ones(3, 2), H = Eigen::MatrixXd::Ones(2, 2);
    Eigen::VectorXd b = Eigen::VectorXd::Zero(3);
    CHECK_THROWS_WITH(obj.evaluate(Eigen::MatrixXd::Ones(4, 2), H, b), Contains("W") && Contains("3 rows"));
    CHECK_THROWS_WITH(obj.evaluate(W, Eigen::MatrixXd::Ones(3, 2), b), Contains("H"));
    CHECK_THROWS_WITH(obj.evaluate(W, Eigen::MatrixXd::Ones(2, 3), b), Contains("H"));
    CHECK_THROWS_WITH(obj.evaluate(W, H, Eigen::VectorXd::Zero(2)), Contains("b"));
    H(1, 1) = std::numeric_limits<double>::quiet_NaN();
    CHECK_THROWS_WITH(obj.evaluate(W, H, b), Contains("H") && Contains("NaN"));
    H(1, 1) = 1;
    W(0, 0) = std::numeric_limits<double>::infinity();
    CHECK_THROWS_WITH(obj.evaluate(W, H, b), Contains("W"));
    W(0, 0) = 1;
    b(2) = -std::numeric_limits<double>::infinity();
    CHECK_THROWS_WITH(obj.evaluate(W, H, b), Contains("b"));

    Eigen::MatrixXd Z = Eigen::MatrixXd::Zero(3, 2);
    Z(2, 1) = std::numeric_limits<double>::quiet_NaN();
    CHECK_THROWS_WITH(mlnc::pal_loss(Z, S), Contains("Z") && Contains("(2, 1)"));
    CHECK_THROWS_WITH(mlnc::pal_loss(Eigen::MatrixXd::Zero(3, 3), S), Contains("Z"));
    Eigen::MatrixXd G(2, 2);
    CHECK_THROWS_WITH(mlnc::pal_loss_grad(Eigen::MatrixXd::Zero(3, 2), S, G), Contains("G"));
    CHECK_THROWS_WITH(mlnc::pal_objective<double>(S, {-1.0, 0, 0}), Contains("lambda_w"));
    CHECK_THROWS_WITH(mlnc::pal_objective<double>(S, {0, std::nan(""), 0}), Contains("lambda_h"));
}

TEST_CASE("caller's data is used through Map without copies") {
    std::vector<double> wbuf(3 * 2, 0.5), hbuf(2 * 2, -0.25), bbuf(3, 0.1);
    const Eigen::Map<const Eigen::MatrixXd> W(wbuf.data(), 3, 2), H(hbuf.data(), 2, 2);
    const Eigen::Map<const Eigen::VectorXd> b(bbuf.data(), 3);
    const auto S = label_sets::from_lists({{0}, {1, 2}}, 3);
    mlnc::pal_objective<double> obj(S, {0.1, 0.1, 0.1});
    // All logits equal: losses log 3 and 2 log 3.
    CHECK(obj.evaluate(W, H, b).loss == Approx(1.5 * std::log(3.0)).epsilon(1e-15));
}

TEST_CASE("K = 10^6 labels: loss and gradient at the logits level") {
    const index_t K = 1000000;
    const auto S = label_sets::from_lists({{0}, {5, 999999}, {1, 2, 3, 4, 500000}}, K);
    std::mt19937_64 rng(3);
    const Eigen::MatrixXd Z = randn(K, 3, rng, 10.0);
    Eigen::MatrixXd G(K, 3);
    const double l = mlnc::pal_loss_grad(Z, S, G);
    long double ref = 0;
    for (index_t i = 0; i < 3; ++i) ref += ref_sample_loss(Z.col(i), S[i], pal_variant::pal);
    // Sums of 10^6 exponentials in double: relative rounding ~1e-16 * sqrt(10^6) per column.
    CHECK(l == Approx(static_cast<double>(ref / 3)).epsilon(1e-12));
    CHECK(G.colwise().sum().cwiseAbs().maxCoeff() < 1e-12);
    CHECK(G.allFinite());
}

namespace {
// Sets Eigen's L2 size for a scope and restores all three sizes after it, also on a throw.
struct l2_size_scope {
    std::ptrdiff_t l1 = Eigen::l1CacheSize(), l2 = Eigen::l2CacheSize(), l3 = Eigen::l3CacheSize();
    explicit l2_size_scope(std::ptrdiff_t size) { Eigen::setCpuCacheSizes(l1, size, l3); }
    ~l2_size_scope() { Eigen::setCpuCacheSizes(l1, l2, l3); }
    l2_size_scope(const l2_size_scope&) = delete;
    l2_size_scope& operator=(const l2_size_scope&) = delete;
};
}  // namespace

TEST_CASE("long columns: which calls prefetch the next column into L2") {
    // 20 000 floats = 80 000 bytes a column (past the L1 prefetch's 16 KB). Live columns: this one
    // and the next, and the gradient's when written out of place.
    using mlnc::strided_view;
    using mlnc::cpu_kernels::prefetch_into_l2;
    const Eigen::Index K = 20000, N = 4;
    const std::ptrdiff_t col = K * static_cast<std::ptrdiff_t>(sizeof(float));
    std::vector<float> z(static_cast<std::size_t>(K * N)), g(z.size());
    const strided_view<const float> Z{z.data(), K, N, 1, K};
    const strided_view<float> none{}, out{g.data(), K, N, 1, K}, in_place{z.data(), K, N, 1, K},
        g_strided{g.data(), K, N, N, 1};
    const strided_view<const float> z_strided{z.data(), K, N, N, 1};
    const strided_view<const float> short_cols{z.data(), 4096, N, 1, 4096};  // 16 KB: the L1 prefetch
    const bool on = mlnc::cpu_kernels::l2_prefetch_enabled;
    INFO("L2 prefetch compiled in: " << on);
    {
        const l2_size_scope two(2 * col);
        CHECK(prefetch_into_l2(Z, none) == on);      // loss alone: 2 live
        CHECK(prefetch_into_l2(Z, in_place) == on);  // in place: 2 live
        CHECK_FALSE(prefetch_into_l2(Z, out));       // out of place: 3 live
    }
    {
        const l2_size_scope two_less(2 * col - 1);
        CHECK_FALSE(prefetch_into_l2(Z, none));
        CHECK_FALSE(prefetch_into_l2(Z, in_place));
    }
    {
        const l2_size_scope big(std::ptrdiff_t{1} << 30);
        CHECK(prefetch_into_l2(Z, out) == on);
        CHECK_FALSE(prefetch_into_l2(Z, g_strided));       // G written with a stride
        CHECK_FALSE(prefetch_into_l2(z_strided, none));    // Z read through a scratch column
        CHECK_FALSE(prefetch_into_l2(short_cols, none));   // fits L1: prefetched there instead
    }
    {
        const l2_size_scope three(3 * col);
        CHECK(prefetch_into_l2(Z, out) == on);
    }
}

TEMPLATE_TEST_CASE("long columns: prefetching the next one into L2 or not changes no bit, and both match the reference",
                   "", float, double) {
    // Columns past L1 (K = 20 000: 80 KB in float, 160 KB in double) prefetch their successor into
    // L2 when the columns live at once fit in L2 as Eigen knows it (prefetch_into_l2, tested
    // above). Eigen's L2 size set to 0 and to 1 GB takes both branches in one program; the
    // prefetch is a hint, so the answers must agree bit for bit, and with the long-double
    // reference. N = 37 columns: two threads' ranges (split at multiples of L <= 16) both hold some.
    using T = TestType;
    using mat = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic>;
    const index_t K = 20000, N = 37;
    std::mt19937_64 rng(21);
    const auto S = random_labels(K, N, 4, rng);
    const Eigen::MatrixXd Zd = randn(K, N, rng, 4.0);
    const mat Z = Zd.cast<T>();
    const auto run = [&](std::ptrdiff_t l2_size, int threads, mat& G, mat& Gi, Eigen::Matrix<T, Eigen::Dynamic, 1>& per) {
        const l2_size_scope scope(l2_size);
        const mlnc::cpu be{threads};
        G.resize(K, N);
        per.resize(N);
        Gi = Z;
        const double a = mlnc::pal_loss_grad(be, Z, S, G);
        const double b = mlnc::pal_loss_grad_inplace(be, Gi, S);
        const double c = mlnc::pal_sample_losses(be, Z, S, per);
        CHECK(a == b);
        CHECK(a == c);
        CHECK(a == mlnc::pal_loss(be, Z, S));
        return a;
    };
    mat G0, Gi0, G1, Gi1;
    Eigen::Matrix<T, Eigen::Dynamic, 1> per0, per1;
    for (const int threads : {1, 2}) {
        INFO("threads " << threads);
        const double off = run(0, threads, G0, Gi0, per0);
        const double on = run(std::ptrdiff_t{1} << 30, threads, G1, Gi1, per1);
        CHECK(off == on);
        CHECK(G0 == G1);
        CHECK(Gi0 == Gi1);
        CHECK(G0 == Gi0);
        CHECK(per0 == per1);
        // Against the long-double reference from the logits as T holds them. Sample i's loss is a
        // sum of m terms lse - z_k (each >= 5 here, checked), so its relative error is at most
        // that of one term: the error of lse, i.e. the relative error of the sum of exps (each
        // lane adds at most 16 exps in T before the flush to double: 16 eps(T) = 1e-6 in float,
        // 1.8e-15 in double, plus the exps' own ulp) over 5, and the final rounding to T (6e-8
        // in float): below 2.7e-7 in float (measured: 3.5e-8 at most) and 1e-15 in double.
        const double tol = std::is_same_v<T, float> ? 3e-7 : 1e-14;
        long double ref = 0;
        for (index_t i = 0; i < N; ++i) {
            const Eigen::VectorXd zi = Z.col(i).template cast<double>();
            const long double r = ref_sample_loss(zi, S[i], pal_variant::pal);
            ref += r;
            for (const auto k : S[i]) {  // the term lse - z_k = the loss of the set {k}
                const mlnc::label_t one[] = {k};
                REQUIRE(ref_sample_loss(zi, one, pal_variant::pal) >= 5.0L);
            }
            CHECK(static_cast<double>(per0[i]) == Approx(static_cast<double>(r)).epsilon(tol));
        }
        CHECK(off == Approx(static_cast<double>(ref / N)).epsilon(tol));
    }
}

TEST_CASE("out of place: which gradients are streamed to memory, and how") {
    // A gradient written out of place is streamed when the whole of G exceeds stream_l2_multiple
    // times Eigen's L2 size; never in place, with a stride, or for the loss alone. It is streamed
    // from a scratch column of exps, except for columns past the L1 prefetch whose scratch column,
    // this one and the next would not fit in L2 (3 columns): those take their exps again, and the
    // L2 prefetch then counts 2 live columns, not 3.
    using mlnc::strided_view;
    using mlnc::cpu_kernels::gradient_write;
    using mlnc::cpu_kernels::gradient_write_of;
    using mlnc::cpu_kernels::prefetch_into_l2;
    const Eigen::Index K = 20000, N = 42;
    const std::ptrdiff_t col = K * static_cast<std::ptrdiff_t>(sizeof(float));  // 80 000 bytes
    const std::ptrdiff_t whole = col * N;                                        // 3.36 MB
    constexpr double multiple = mlnc::cpu_kernels::stream_l2_multiple;
    REQUIRE(std::fmod(static_cast<double>(whole), multiple) == 0.0);
    const auto at_g = static_cast<std::ptrdiff_t>(static_cast<double>(whole) / multiple);  // G = multiple x L2
    std::vector<float> z(static_cast<std::size_t>(K * N)), g(z.size());
    const strided_view<const float> Z{z.data(), K, N, 1, K}, z_strided{z.data(), K, N, N, 1};
    const strided_view<float> none{}, out{g.data(), K, N, 1, K}, in_place{z.data(), K, N, 1, K},
        g_strided{g.data(), K, N, N, 1};
    // 16 KB columns (the L1 prefetch), 195 of them in the same buffers (3.2 MB of G, streamed
    // below with L2 = 3 columns: 6 x 240 000 bytes).
    const strided_view<const float> short_cols{z.data(), 4096, 195, 1, 4096};
    const strided_view<float> short_out{g.data(), 4096, 195, 1, 4096};
    const bool on = mlnc::cpu_kernels::stream_gradient_enabled;
    const bool pf = mlnc::cpu_kernels::l2_prefetch_enabled;
    INFO("streaming compiled in: " << on << ", L2 prefetch: " << pf);
    const gradient_write from_scratch = on ? gradient_write::streamed_from_scratch : gradient_write::cached;
    const gradient_write recomputed = on ? gradient_write::streamed_recomputed : gradient_write::cached;
    CHECK(gradient_write_of(Z, none) == gradient_write::none);
    {
        const l2_size_scope exact(at_g);  // G = multiple x L2: not past it
        CHECK(gradient_write_of(Z, out) == gradient_write::cached);
    }
    {
        const l2_size_scope smaller(at_g - 1);  // still >= 3 columns (240 000 bytes)
        REQUIRE(at_g - 1 >= 3 * col);
        CHECK(gradient_write_of(Z, out) == from_scratch);
        CHECK(gradient_write_of(Z, in_place) == gradient_write::cached);
        CHECK(gradient_write_of(Z, g_strided) == gradient_write::cached);
        CHECK(gradient_write_of(z_strided, out) == gradient_write::cached);
        CHECK(gradient_write_of(Z, none) == gradient_write::none);
        // A G whose address is not a multiple of its scalar's size (not dereferenced here).
        const strided_view<float> odd{reinterpret_cast<float*>(reinterpret_cast<char*>(g.data()) + 1), K, N, 1, K};
        CHECK(gradient_write_of(Z, odd) == gradient_write::cached);
    }
    {
        const l2_size_scope three(3 * col);  // scratch + this + next fit: from the scratch column
        CHECK(gradient_write_of(Z, out) == from_scratch);
        CHECK(prefetch_into_l2(Z, out) == pf);
    }
    {
        const l2_size_scope less(3 * col - 1);  // they do not: exps taken again, 2 live columns
        CHECK(gradient_write_of(Z, out) == recomputed);
        CHECK(prefetch_into_l2(Z, out) == (pf && on));
        CHECK(gradient_write_of(short_cols, short_out) == from_scratch);  // short columns: always
        // Columns of stream_min_column_bytes or less are never streamed (their partial lines).
        constexpr auto min_k = mlnc::cpu_kernels::stream_min_column_bytes / static_cast<Eigen::Index>(sizeof(float));
        const strided_view<const float> z_min{z.data(), min_k, 1000, 1, min_k},
            z_past{z.data(), min_k + 1, 1000, 1, min_k + 1};
        const strided_view<float> g_min{g.data(), min_k, 1000, 1, min_k},
            g_past{g.data(), min_k + 1, 1000, 1, min_k + 1};
        CHECK(gradient_write_of(z_min, g_min) == gradient_write::cached);
        CHECK(gradient_write_of(z_past, g_past) == from_scratch);
    }
    {
        const l2_size_scope two(2 * col - 1);  // not even two columns: no prefetch either way
        CHECK(gradient_write_of(Z, out) == recomputed);
        CHECK_FALSE(prefetch_into_l2(Z, out));
    }
}

TEMPLATE_TEST_CASE("out of place: a streamed gradient has the same bits as one written through the cache", "",
                   float, double) {
    // Eigen's L2 size set to 0 streams every gradient written out of place (gradient_write_of;
    // long columns take their exps again), to 3 columns streams it from a scratch column, and to
    // 1 GB streams none: all in one program. The streamed column is written from its first
    // packet-aligned entry on, the entries before it and the last ones after the last full packet
    // by scalar stores, with the labels subtracted in whichever part holds them. So: K from just
    // past stream_min_column_bytes (in float) to long columns, G's columns starting at every
    // alignment (G a Map one entry past an aligned buffer, outer stride K + 3, whose padding must
    // stay untouched), labels at 0, 1, K - 1 and at random, both variants, 1 and 2 threads. The
    // same operations on each entry, so the same bits; and against the long-double gradient.
    using T = TestType;
    using mat = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic>;
    using gmap = Eigen::Map<mat, Eigen::Unaligned, Eigen::OuterStride<>>;
    const T sentinel = T(-12345);
    for (const index_t K : {513, 600, 1001, 4099, 20003}) {
        const index_t N = 37, ld = K + 3;
        std::mt19937_64 rng(static_cast<std::uint64_t>(K));
        std::vector<std::vector<index_t>> sets;
        for (index_t i = 0; i < N; ++i) {
            std::vector<index_t> s;
            if (i % 4 == 0) s = {0};
            if (i % 4 == 1) s = {0, 1, K - 1};
            if (i % 4 == 2) s = {K - 1};
            const index_t extra = static_cast<index_t>(rng() % 4);
            for (index_t j = 0; j < extra; ++j) {
                const auto k = static_cast<index_t>(rng() % static_cast<std::uint64_t>(K));
                if (std::find(s.begin(), s.end(), k) == s.end()) s.push_back(k);
            }
            if (s.empty()) s.push_back(static_cast<index_t>(rng() % static_cast<std::uint64_t>(K)));
            sets.push_back(s);
        }
        const auto S = label_sets::from_lists(sets, K);
        const mat Z = randn(K, N, rng, 4.0).cast<T>();
        for (const pal_variant v : {pal_variant::pal, pal_variant::pal_n}) {
            for (const int threads : {1, 2}) {
                INFO("K " << K << ", variant " << static_cast<int>(v) << ", threads " << threads);
                const mlnc::cpu be{threads};
                const auto run = [&](std::ptrdiff_t l2_size, std::vector<T>& buf) {
                    const l2_size_scope scope(l2_size);
                    buf.assign(static_cast<std::size_t>(ld * N + 1), sentinel);
                    gmap G(buf.data() + 1, K, N, Eigen::OuterStride<>(ld));
                    return mlnc::pal_loss_grad(be, Z, S, G, v);
                };
                // L2 = 0: streamed, long columns taking their exps again; L2 = 3 columns: streamed
                // from the scratch column (G is 37 columns > 6 x 3); 1 GB: through the cache.
                const auto col = static_cast<std::ptrdiff_t>(K * static_cast<index_t>(sizeof(T)));
                std::vector<T> streamed, scratched, cached;
                const T a = run(0, streamed);
                const T a2 = run(3 * col, scratched);
                const T b = run(std::ptrdiff_t{1} << 30, cached);
                CHECK(a == b);
                CHECK(a2 == b);
                std::size_t differ = 0, differ2 = 0;  // every entry, padding included (counts: cheap to print)
                for (std::size_t j = 0; j < streamed.size(); ++j) {
                    differ += streamed[j] != cached[j];
                    differ2 += scratched[j] != cached[j];
                }
                CHECK(differ == 0);
                CHECK(differ2 == 0);
                std::size_t untouched = 0;
                for (index_t i = 0; i < N; ++i)
                    for (index_t k = K; k < ld; ++k)
                        untouched += streamed[static_cast<std::size_t>(1 + i * ld + k)] == sentinel;
                CHECK(untouched == static_cast<std::size_t>(N * 3));
                CHECK(streamed[0] == sentinel);
                // And against the long-double gradient of the logits as T holds them: (m p - y) / N
                // (PAL), (p - y / m) / N (PAL-N). Each entry is the rounded product of an exp
                // (within 2 ulp = 4u, u the unit roundoff of T), the scale rounded to T (u) and the
                // product's rounding (u), less y rounded once (u): within 7u of |m p / N| + u |g|,
                // so the relative error over the array is below 8u (float 4.8e-7, double 8.9e-16).
                if (threads == 1) {  // once: on 2 threads, equal to the path through the cache
                    const gmap G(streamed.data() + 1, K, N, Eigen::OuterStride<>(ld));
                    double err2 = 0, ref2 = 0;
                    for (index_t i = 0; i < N; ++i) {
                        const Eigen::VectorXd zi = Z.col(i).template cast<double>();
                        const long double mx = zi.maxCoeff();
                        long double se = 0;
                        for (index_t k = 0; k < K; ++k) se += std::exp(static_cast<long double>(zi[k]) - mx);
                        const auto set = S[i];
                        const auto m = static_cast<long double>(set.size());
                        for (index_t k = 0; k < K; ++k) {
                            const long double p = std::exp(static_cast<long double>(zi[k]) - mx) / se;
                            const bool y =
                                std::find(set.begin(), set.end(), static_cast<mlnc::label_t>(k)) != set.end();
                            const long double r =
                                (v == pal_variant::pal ? m * p - (y ? 1 : 0) : p - (y ? 1 / m : 0)) / N;
                            const long double d = static_cast<long double>(G(k, i)) - r;
                            err2 += static_cast<double>(d * d);
                            ref2 += static_cast<double>(r * r);
                        }
                    }
                    const double u = std::numeric_limits<T>::epsilon() / 2;
                    CHECK(std::sqrt(err2 / ref2) < 8 * u);
                }
            }
        }
    }
}

TEST_CASE("out of place: a non-finite logit is reported at the same place whether G is streamed or not") {
    using mlnc::strided_view;
    const index_t K = 1001, N = 40;
    std::mt19937_64 rng(5);
    const auto S = random_labels(K, N, 3, rng);
    for (const int threads : {1, 2}) {
        for (const index_t bad : {index_t{0}, index_t{17}, index_t{39}}) {
            Eigen::MatrixXf Z = randn(K, N, rng, 2.0).cast<float>();
            Z(500, bad) = std::numeric_limits<float>::infinity();
            Z(7, (bad + 5) % N) = std::numeric_limits<float>::quiet_NaN();
            const index_t first_col = std::min(bad, (bad + 5) % N);
            const index_t first_row = first_col == bad ? 500 : 7;
            for (const std::ptrdiff_t l2 : {std::ptrdiff_t{0}, std::ptrdiff_t{1} << 30}) {
                INFO("threads " << threads << ", bad column " << bad << ", L2 " << l2);
                const l2_size_scope scope(l2);
                Eigen::MatrixXf G(K, N);
                const auto r = mlnc::cpu_kernels::pal_columns(strided_view<const float>{Z.data(), K, N, 1, K}, S,
                                                              pal_variant::pal, static_cast<float*>(nullptr),
                                                              strided_view<float>{G.data(), K, N, 1, K}, 1.0, threads);
                CHECK(r.bad_col == first_col);
                CHECK(r.bad_row == first_row);
            }
        }
    }
}

TEST_CASE("the kernel's float exp is within 2 ulp of exp on [-86.9, 0], 0 below, and exact at 0") {
    // Every float in [-86.9, 0] whose bits are a multiple of 97 apart (about 10^7 of the 1.1 * 10^9
    // floats there), plus the ends and a few exact points, against exp in double rounded to float.
    namespace ei = Eigen::internal;
    using packet = mlnc::cpu_kernels::column_sweeps<float>::packet;
    constexpr auto L = static_cast<std::size_t>(mlnc::cpu_kernels::column_sweeps<float>::L);
    std::vector<float> xs{0.0f, -0.0f, -1e-30f, -1e-7f, -0.5f, -0.34657359f, -0.34657362f, -1.0f, -10.0f,
                          -86.9f, std::nextafter(-86.9f, 0.0f), -86.0f};
    for (std::uint32_t bits = 0x80000000u; bits <= 0xC2ADCCCDu; bits += 97) {  // -0 .. -86.9
        float x;
        std::memcpy(&x, &bits, sizeof x);
        if (x >= -86.9f) xs.push_back(x);
    }
    while (xs.size() % L != 0) xs.push_back(0.0f);
    double worst_ulp = 0;
    float worst_x = 0;
    alignas(64) float out[64];
    for (std::size_t i = 0; i < xs.size(); i += L) {
        ei::pstore(out, mlnc::cpu_kernels::pexp_nonpositive(ei::ploadu<packet>(xs.data() + i)));
        for (std::size_t j = 0; j < L; ++j) {
            const double exact = std::exp(static_cast<double>(xs[i + j]));
            const double ulp = std::nextafter(static_cast<float>(exact), 2.0f) - static_cast<float>(exact);
            const double err = std::abs(static_cast<double>(out[j]) - exact) / ulp;
            if (err > worst_ulp) {
                worst_ulp = err;
                worst_x = xs[i + j];
            }
        }
    }
    INFO("worst error " << worst_ulp << " ulp at x = " << worst_x);
    CHECK(worst_ulp <= 2.0);
    // exp(0) = 1 exactly (the max of every column contributes exactly 1 to its sum).
    ei::pstore(out, mlnc::cpu_kernels::pexp_nonpositive(ei::pset1<packet>(0.0f)));
    CHECK(out[0] == 1.0f);
    // Below exp(-86.9) ~ 1.9e-38: 0, down to -Inf.
    for (const float x : {-86.95f, -87.5f, -100.0f, -1e30f, -std::numeric_limits<float>::infinity()}) {
        ei::pstore(out, mlnc::cpu_kernels::pexp_nonpositive(ei::pset1<packet>(x)));
        CHECK(out[0] == 0.0f);
    }
}

TEST_CASE("the kernel's double exp is within 2 ulp of exp on [-708, 0], 0 below, and exact at 0") {
    // 4 10^6 points spread over [-708, 0] (and denser near 0, where r = x), the ends and the points
    // where the rounding of x / ln2 changes, against expl (long double) rounded to double. With
    // AVX-512 or AVX2 + FMA this is mlnc's own exp (minimax polynomial of degree 11); elsewhere
    // Eigen's pexp.
    namespace ei = Eigen::internal;
    using packet = mlnc::cpu_kernels::column_sweeps<double>::packet;
    constexpr auto L = static_cast<std::size_t>(mlnc::cpu_kernels::column_sweeps<double>::L);
    std::vector<double> xs{0.0, -0.0, -1e-300, -1e-17, -0.5, -0.34657359027997264, -0.34657359027997270, -1.0,
                           -10.0, -708.0, std::nextafter(-708.0, 0.0), -700.0};
    std::mt19937_64 rng(7);
    std::uniform_real_distribution<double> wide(-708.0, 0.0), narrow(-1.0, 0.0);
    for (int i = 0; i < 2000000; ++i) {
        xs.push_back(wide(rng));
        xs.push_back(narrow(rng));
    }
    for (int n = 0; n <= 1021; ++n) {  // the half-way points of the reduction and their neighbours
        const double h = -(n + 0.5) * 0.69314718055994530942;
        for (const double x : {std::nextafter(h, 0.0), h, std::nextafter(h, -1.0)})
            if (x >= -708.0) xs.push_back(x);
    }
    while (xs.size() % L != 0) xs.push_back(0.0);
    double worst_ulp = 0, worst_x = 0;
    alignas(64) double out[64];
    for (std::size_t i = 0; i < xs.size(); i += L) {
        ei::pstore(out, mlnc::cpu_kernels::pexp_nonpositive(ei::ploadu<packet>(xs.data() + i)));
        for (std::size_t j = 0; j < L; ++j) {
            const long double exact = std::exp(static_cast<long double>(xs[i + j]));
            const double rounded = static_cast<double>(exact);
            const double ulp = std::nextafter(rounded, 2.0) - rounded;
            const double err = static_cast<double>(std::abs(static_cast<long double>(out[j]) - exact)) / ulp;
            if (err > worst_ulp) {
                worst_ulp = err;
                worst_x = xs[i + j];
            }
        }
    }
    INFO("worst error " << worst_ulp << " ulp at x = " << worst_x);
    CHECK(worst_ulp <= 2.0);
    ei::pstore(out, mlnc::cpu_kernels::pexp_nonpositive(ei::pset1<packet>(0.0)));
    CHECK(out[0] == 1.0);
    // Below exp(-708) ~ 3.3e-308: 0 (or, with Eigen's pexp, a subnormal or 0), down to -Inf.
    for (const double x : {-708.5, -745.0, -1000.0, -1e300, -std::numeric_limits<double>::infinity()}) {
        ei::pstore(out, mlnc::cpu_kernels::pexp_nonpositive(ei::pset1<packet>(x)));
        CHECK(out[0] < 2.3e-308);
        CHECK(out[0] >= 0.0);
    }
}

// The kernels' log of their sums of exps (x >= 1): with AVX-512 mlnc's own (getexp, getmant and a
// Taylor series of atanh), elsewhere Eigen's plog. Against log in long double rounded to T.
template <class T>
void check_log_at_least_one(const std::vector<T>& xs_in, double tol_ulp) {
    namespace ei = Eigen::internal;
    using packet = typename mlnc::cpu_kernels::column_sweeps<T>::packet;
    constexpr auto L = static_cast<std::size_t>(mlnc::cpu_kernels::column_sweeps<T>::L);
    std::vector<T> xs = xs_in;
    while (xs.size() % L != 0) xs.push_back(T(1));
    double worst_ulp = 0;
    T worst_x = 1;
    alignas(64) T out[64];
    for (std::size_t i = 0; i < xs.size(); i += L) {
        ei::pstore(out, mlnc::cpu_kernels::plog_at_least_one(ei::ploadu<packet>(xs.data() + i)));
        for (std::size_t j = 0; j < L; ++j) {
            const long double exact = std::log(static_cast<long double>(xs[i + j]));
            const T rounded = static_cast<T>(exact);
            if (rounded == T(0)) {  // x = 1
                CHECK(out[j] == T(0));
                continue;
            }
            const long double ulp = std::nextafter(rounded, T(1e30)) - rounded;
            const double err = static_cast<double>(std::abs(static_cast<long double>(out[j]) - exact) / ulp);
            if (err > worst_ulp) {
                worst_ulp = err;
                worst_x = xs[i + j];
            }
        }
    }
    INFO("worst error " << worst_ulp << " ulp at x = " << worst_x);
    CHECK(worst_ulp <= tol_ulp);
}

TEST_CASE("the kernels' log of a sum of exps is within 1.5 ulp of log on [1, 2^31) in float, exact at 1") {
    // Every float of [1, 2) whose bits are a multiple of 7 apart, every float of [1, 2^31) a
    // multiple of 97 apart, the neighbours of sqrt(2) 2^e (where m is halved) and the powers of 2.
    // Worst seen: 0.89 ulp with AVX-512 (mlnc's own); Eigen's plog, used without AVX-512, 0.83 ulp
    // with AVX-512 and 1.06 ulp in the SSE2 build of the sanitized tests (x = 2.76e6).
    std::vector<float> xs{1.0f, std::nextafter(1.0f, 2.0f), 2.0f, 10.0f, 1000.0f, 2147483520.0f};
    for (std::uint32_t bits = 0x3F800000u; bits < 0x40000000u; bits += 7) xs.push_back(std::bit_cast<float>(bits));
    for (std::uint32_t bits = 0x3F800000u; bits < 0x4F000000u; bits += 97) xs.push_back(std::bit_cast<float>(bits));
    for (int e = 0; e < 31; ++e) {
        const float r = std::ldexp(1.41421356f, e);
        for (const float x : {std::nextafter(r, 0.0f), r, std::nextafter(r, 1e30f), std::ldexp(1.0f, e)}) xs.push_back(x);
    }
    check_log_at_least_one<float>(xs, 1.5);
}

TEST_CASE("the kernels' log of a sum of exps is within 1.5 ulp of log on [1, 2^1000) in double, exact at 1") {
    // 10^6 points of [1, 2) (where log x = x - 1 + ... is smallest), 10^6 of [1, 2^1000) spread
    // evenly in log x, the neighbours of sqrt(2) 2^e and the powers of 2. Worst seen with AVX-512:
    // 1.12 ulp, near x = sqrt(2) where e ln2 and log(m) nearly cancel; Eigen's plog, used before
    // and still without AVX-512, 1.23 ulp on the same points with AVX-512 and 1.34 ulp in the SSE2
    // build of the sanitized tests.
    std::vector<double> xs{1.0, std::nextafter(1.0, 2.0), 2.0, 10.0, 1e6, std::ldexp(1.0, 999) * 1.9};
    std::mt19937_64 rng(11);
    std::uniform_real_distribution<double> near_one(1.0, 2.0), wide(0.0, 1000.0 * 0.69314718055994530942);
    for (int i = 0; i < 1000000; ++i) {
        xs.push_back(near_one(rng));
        xs.push_back(std::exp(wide(rng)));
    }
    for (int e = 0; e < 1000; ++e) {
        const double r = std::ldexp(1.4142135623730951, e);
        for (const double x : {std::nextafter(r, 0.0), r, std::nextafter(r, 1e300), std::ldexp(1.0, e)}) xs.push_back(x);
    }
    check_log_at_least_one<double>(xs, 1.5);
}

TEST_CASE("K = 10^6 in float: lane sums combined in double keep the loss to float precision") {
    const index_t K = 1000000;
    const auto S = label_sets::from_lists({{0}, {5, 999999}, {1, 2, 3, 4, 500000}}, K);
    std::mt19937_64 rng(4);
    const Eigen::MatrixXf Z = randn(K, 3, rng, 3.0).cast<float>();
    Eigen::MatrixXf G(K, 3);
    const float l = mlnc::pal_loss_grad(Z, S, G);
    long double ref = 0;
    for (index_t i = 0; i < 3; ++i) ref += ref_sample_loss(Z.col(i).cast<double>(), S[i], pal_variant::pal);
    // Each exp(z - max) is within 2 ulp of float (the test above); the sums run over blocks of 16
    // terms per SIMD lane in float (relative error <= 16 * 2^-24 ~ 1e-6, worst case) and the block
    // sums are added in double, so log(sum) is off by <= ~1.1e-6 per label; the mean loss here is
    // ~16 (log K + spread): 2e-7 relative. A sum of 10^6 terms kept in float lanes alone (62 500
    // per lane of 16) could be off by up to 4e-3.
    CHECK(static_cast<double>(l) == Approx(static_cast<double>(ref / 3)).epsilon(2e-7));
    // The gradient of each column sums to m p - y = m - m = 0 up to float rounding of K terms.
    CHECK(G.cast<double>().colwise().sum().cwiseAbs().maxCoeff() < 1e-5);
}

TEST_CASE("threads: the same loss bit for bit at every thread count") {
    // Without OpenMP every count runs serially and the checks hold trivially; the build links
    // the tests to mlnc::openmp when the compiler has it, and this says which it was.
    INFO("OpenMP: " << (mlnc::detail::openmp_enabled ? "yes" : "no"));
    // The small-K block path (4 pieces of about 6554 columns here, the last one short) and columns one at
    // a time (12 pieces): the threads take the pieces in an order that changes run to run, and
    // the pieces' sums are added in piece order whatever thread made them.
    // K = 100 in float: panels of 16 columns with AVX-512 (31 pieces).
    const index_t K = GENERATE(10, 37, 100), N = 20011;
    INFO("K = " << K);
    const auto width = mlnc::cpu_kernels::piece_columns<double>(K);
    REQUIRE((N + width - 1) / width >= 4);
    std::vector<std::vector<index_t>> lists;
    std::mt19937_64 rng(11);
    for (index_t i = 0; i < N; ++i) {
        std::vector<index_t> set{static_cast<index_t>(rng() % K)};
        if (i % 3 == 0) set.push_back((set[0] + 1 + static_cast<index_t>(rng() % (K - 1))) % K);
        lists.push_back(set);
    }
    const auto S = label_sets::from_lists(lists, K);
    const Eigen::MatrixXd Z = randn(K, N, rng, 4.0);
    Eigen::MatrixXd G1(K, N), G(K, N);
    const double l1 = mlnc::pal_loss_grad(mlnc::cpu{1}, Z, S, G1);
    const Eigen::MatrixXf Zf = Z.cast<float>();
    Eigen::MatrixXf Gf1(K, N), Gf(K, N);
    const float lf1 = mlnc::pal_loss_grad(mlnc::cpu{1}, Zf, S, Gf1);
    for (const int t : {0, 2, 3, 7}) {
        INFO("threads " << t);
        for (int run = 0; run < 3; ++run) {
            const double a = mlnc::pal_loss_grad(mlnc::cpu{t}, Z, S, G);
            CHECK(a == l1);
            CHECK(mlnc::pal_loss(mlnc::cpu{t}, Z, S) == l1);  // loss alone: same pieces, same sums
            CHECK((G.array() == G1.array()).all());  // each column is computed alike whatever thread computes it
            CHECK(mlnc::pal_loss_grad(mlnc::cpu{t}, Zf, S, Gf) == lf1);
            CHECK((Gf.array() == Gf1.array()).all());
        }
    }
    Eigen::VectorXd per1(N), per3(N);
    CHECK(mlnc::pal_sample_losses(mlnc::cpu{1}, Z, S, per1) == mlnc::pal_loss(mlnc::cpu{1}, Z, S));
    mlnc::pal_sample_losses(mlnc::cpu{3}, Z, S, per3);
    CHECK(per3 == per1);
#if defined(_OPENMP)
    // Called from inside the caller's own parallel region the kernel runs serially (no nested team).
    int inner = 0;
#pragma omp parallel num_threads(2)
    {
#pragma omp single
        inner = mlnc::detail::team_size(0, 1e12, 1.0, 1000);
    }
    CHECK(inner == 1);
    CHECK(mlnc::detail::team_size(3, 1e12, 1.0, 1000) == 3);
    CHECK(mlnc::detail::team_size(3, 1e12, 1.0, 2) == 2);     // never more threads than items
    CHECK(mlnc::detail::team_size(3, 100.0, 1000.0, 1000) == 1);  // too little work to share
#endif
}

TEST_CASE("threads: the pieces of columns, and how they are handed out") {
    using mlnc::cpu_kernels::piece_columns;
    constexpr index_t L = mlnc::cpu_kernels::column_sweeps<float>::L;
    // About 65536 logits a piece; at least one column; whole groups of L-sample blocks up to the
    // blocks' largest K (in float 48 with AVX-512, 38 with AVX2 + FMA, 32 otherwise).
    constexpr index_t blocked = mlnc::cpu_kernels::blocked_k_max<float>;
    CHECK(piece_columns<float>(1000) == 66);
    CHECK(piece_columns<float>(blocked + 1) == (65536 + blocked) / (blocked + 1));
    CHECK(piece_columns<float>(65536) == 1);
    CHECK(piece_columns<float>(65535) == 2);
    CHECK(piece_columns<float>(100000) == 1);
    CHECK(piece_columns<double>(1000000) == 1);
    for (const index_t K : {index_t{1}, index_t{2}, index_t{10}, index_t{31}, index_t{32}, blocked}) {
        INFO("K = " << K);
        const index_t w = piece_columns<float>(K);
        CHECK(w % L == 0);
        CHECK(w * K >= 65536);
        CHECK((w - 4 * L) * K < 65536);  // a group of blocks holds at most 4 L samples
    }
    // Every piece once, on a thread numbered below the team's size; claimed ahead, told the piece
    // it takes next (the next call on that thread, or np after its last), else -1; the exception of
    // the lowest piece is the one rethrown, after every piece has run.
    for (const bool ahead : {false, true}) {
        for (const int nt : {1, 2, 3}) {
            INFO("team " << nt << ", ahead " << ahead);
            const index_t np = 50;
            std::vector<std::atomic<int>> calls(np);
            std::vector<std::vector<std::pair<index_t, index_t>>> seen(static_cast<std::size_t>(nt));
            std::atomic<int> bad_thread{0};
            try {
                mlnc::detail::parallel_pieces(nt, np, ahead, [&](int t, index_t p, index_t q) {
                    ++calls[static_cast<std::size_t>(p)];
                    if (t < 0 || t >= nt) {
                        ++bad_thread;
                        return;
                    }
                    seen[static_cast<std::size_t>(t)].emplace_back(p, q);  // one thread per t: no race
                    if (p == 31 || p == 17) throw std::runtime_error("piece " + std::to_string(p));
                });
                FAIL("no exception");
            } catch (const std::runtime_error& e) {
                CHECK(std::string(e.what()) == "piece 17");
            }
            for (const auto& c : calls) CHECK(c == 1);
            CHECK(bad_thread == 0);
            for (const auto& calls_of_t : seen) {
                for (std::size_t j = 0; j < calls_of_t.size(); ++j) {
                    if (j > 0) CHECK(calls_of_t[j - 1].first < calls_of_t[j].first);  // claimed in order
                    if (!ahead) {
                        CHECK(calls_of_t[j].second == -1);
                        continue;
                    }
                    CHECK(calls_of_t[j].first < calls_of_t[j].second);
                    CHECK(calls_of_t[j].second == (j + 1 < calls_of_t.size() ? calls_of_t[j + 1].first : np));
                }
            }
        }
    }
    // A non-finite logit is reported at its place when it lies in a later piece than the first one
    // handed out, whichever pieces run at once: N = 700 columns of K = 1001 are 11 pieces of 66.
    const index_t K = 1001, N = 700;
    REQUIRE(piece_columns<float>(K) == 66);
    std::mt19937_64 rng(3);
    const auto S = random_labels(K, N, 2, rng);
    const Eigen::MatrixXf Z0 = randn(K, N, rng, 2.0).cast<float>();
    for (const int threads : {1, 2, 3}) {
        for (const index_t bad : {index_t{65}, index_t{66}, index_t{400}, index_t{699}}) {
            INFO("threads " << threads << ", bad column " << bad);
            Eigen::MatrixXf Z = Z0;
            Z(1000, bad) = -std::numeric_limits<float>::infinity();
            if (bad + 70 < N) Z(3, bad + 70) = std::numeric_limits<float>::quiet_NaN();  // a later piece
            Z(0, N - 1) = std::numeric_limits<float>::quiet_NaN();                        // the last one
            Eigen::MatrixXf G(K, N);
            const auto r = mlnc::cpu_kernels::pal_columns(mlnc::strided_view<const float>{Z.data(), K, N, 1, K}, S,
                                                          pal_variant::pal, static_cast<float*>(nullptr),
                                                          mlnc::strided_view<float>{G.data(), K, N, 1, K}, 1.0, threads);
            CHECK(r.bad_col == bad);
            CHECK(r.bad_row == (bad == N - 1 ? 0 : 1000));
        }
    }
}

TEMPLATE_TEST_CASE("small K: every K up to past the block path's limit, every N around a block", "", float, double) {
    // Up to the block path's limit (K = 32; contiguous, 48 in float and 38 in double with AVX-512,
    // 38 in float with AVX2 + FMA) L samples run per SIMD register (L = 4..16 by type and instruction set), the
    // rest of the columns one at a time; both must match the definition, for every split of N.
    using T = TestType;
    const double tol = std::is_same_v<T, float> ? 2e-6 : 1e-13;  // relative, per sample
    std::mt19937_64 rng(21);
    // 33 .. 49: sets of two words of bits, and past both types' limits of the contiguous block.
    for (const index_t K : {2, 3, 7, 10, 16, 17, 31, 32, 33, 38, 39, 47, 48, 49}) {
        for (const index_t N : {1, 15, 16, 17, 40, 100}) {
            INFO("K = " << K << ", N = " << N);
            // One or two labels mostly; every fifth sample up to 9, every seventh all K (the SIMD
            // block holds a set as the bits of a lane, its first 4 labels read without a branch).
            std::vector<std::vector<index_t>> lists;
            for (index_t i = 0; i < N; ++i) {
                std::vector<index_t> set{static_cast<index_t>(rng() % K)};
                if (K > 1 && i % 2 == 0) set.push_back((set[0] + 1 + static_cast<index_t>(rng() % (K - 1))) % K);
                if (i % 5 == 4) {
                    const auto m = 1 + static_cast<index_t>(rng() % static_cast<std::uint64_t>(std::min<index_t>(K, 9)));
                    set.clear();
                    for (index_t k = static_cast<index_t>(rng() % K); static_cast<index_t>(set.size()) < m; k = (k + 1) % K)
                        set.push_back(k);
                }
                if (i % 7 == 6) {
                    set.resize(static_cast<std::size_t>(K));
                    std::iota(set.begin(), set.end(), index_t{0});
                }
                lists.push_back(set);
            }
            const auto S = label_sets::from_lists(lists, K);
            const mlnc::matrix<T> Z = randn(K, N, rng, 5.0).cast<T>();
            for (const pal_variant v : {pal_variant::pal, pal_variant::pal_n}) {
                mlnc::vector<T> per(N);
                mlnc::pal_sample_losses(Z, S, per, v);
                mlnc::matrix<T> G(K, N);
                mlnc::pal_loss_grad(Z, S, G, v);
                mlnc::matrix<T> Zi = Z;
                mlnc::pal_loss_grad_inplace(Zi, S, v);
                CHECK(Zi == G);  // in place and out of place: the same computation
                check_columns_against_definition(Z, S, v, per, G, tol);
            }
        }
    }
}

TEMPLATE_TEST_CASE("small K: logits of opposite signs near the overflow give the columns' answer, not NaN", "",
                   float, double) {
    // max - z_k beyond the largest T: in float the columns one at a time take it in double (a
    // finite loss), in double it is +Inf; never NaN. The AVX-512 block takes z_k - max in T, so it
    // must hand such a block to the columns (a 0 * -Inf there once gave NaN).
    using T = TestType;
    const T big = std::numeric_limits<T>::max() / T(4) * T(3);  // big + big overflows T
    const index_t K = 10, N = 48;
    std::vector<std::vector<index_t>> lists;
    for (index_t i = 0; i < N; ++i) lists.push_back({i % 3 == 0 ? 0 : i % 3 == 1 ? 2 : 1});
    const auto S = label_sets::from_lists(lists, K);
    mlnc::matrix<T> Z = mlnc::matrix<T>::Zero(K, N);
    Z.row(0).setConstant(big);
    Z.row(1).setConstant(-big);
    mlnc::vector<T> per(N);
    const T loss = mlnc::pal_sample_losses(Z, S, per);
    // log(sum) = log(1 + 8 exp(-big) + exp(-2 big)) = 0, so the loss is max - z_k: 0 for label 0,
    // big for label 2, 2 big (beyond T) for label 1; the mean over 48 samples is big, finite when
    // the differences are taken in double (T = float), +Inf in double.
    for (index_t i = 0; i < N; ++i) {
        INFO("sample " << i);
        CHECK(per[i] == (i % 3 == 0 ? T(0) : i % 3 == 1 ? big : std::numeric_limits<T>::infinity()));
    }
    const double expected = std::is_same_v<T, float> ? static_cast<double>(big) : std::numeric_limits<double>::infinity();
    CHECK(static_cast<double>(loss) == Approx(expected).epsilon(1e-6));
    CHECK(mlnc::pal_loss(Z, S) == loss);
    mlnc::matrix<T> G(K, N);
    CHECK(mlnc::pal_loss_grad(Z, S, G) == loss);
    CHECK(G.allFinite());
    // In place: a block that hands its columns over must have written nothing of them.
    mlnc::matrix<T> Zi = Z;
    CHECK(mlnc::pal_loss_grad_inplace(Zi, S) == loss);
    CHECK(Zi == G);
}

TEMPLATE_TEST_CASE("small K: a column's bits do not depend on its block's place among the blocks taken together", "",
                   float, double) {
    // Small K takes blocks of L samples, and several blocks together by one call at the smallest K
    // (block_group in pal_kernels.hpp). Z's columns rotated by a multiple of L keep their blocks
    // but move each to another place of its group, or out of one: the columns'
    // losses and gradients must be the same bits. One column holds logits of opposite signs near
    // the overflow (its block goes to the columns one at a time): the other blocks of its group
    // keep their bits.
    using T = TestType;
    std::mt19937_64 rng(41);
    for (const index_t K : {3, 10, 12, 16, 20}) {
        const index_t N = 160;
        std::vector<std::vector<index_t>> lists;
        for (index_t i = 0; i < N; ++i) {
            std::vector<index_t> set{static_cast<index_t>(rng() % K)};
            if (i % 3 == 0) set.push_back((set[0] + 1) % K);
            lists.push_back(set);
        }
        lists[90] = {0, 1};  // label 1 lies 2 big below the max: column 90's block goes column by column
        const auto S = label_sets::from_lists(lists, K);
        mlnc::matrix<T> Z = randn(K, N, rng, 4.0).template cast<T>();
        const T big = std::numeric_limits<T>::max() / T(4) * T(3);
        Z(0, 90) = big;
        Z(1, 90) = -big;
        mlnc::vector<T> per(N);
        mlnc::matrix<T> G(K, N);
        mlnc::pal_sample_losses(Z, S, per);
        mlnc::pal_loss_grad(Z, S, G);
        // L, 2 L and 3 L: every other place in a group of 2 (AVX-512) or 4 (AVX2) blocks.
        constexpr index_t L = mlnc::cpu_kernels::column_sweeps<T>::L;
        for (const index_t shift : {L, 2 * L, 3 * L}) {
            INFO("K = " << K << ", columns rotated by " << shift);
            CHECK(rotation_keeps_bits(Z, S, per, G, shift));
        }
    }
}

TEMPLATE_TEST_CASE("small K: strided views and a subset of the labels give the contiguous answer", "", float, double) {
    // With AVX-512 or AVX2 + FMA a contiguous Z (and G) takes the register-transposed block; a
    // column stride other than K in Z or G takes the block through a buffer; a sample_subset feeds
    // either. All must agree.
    using T = TestType;
    const double tol = std::is_same_v<T, float> ? 1e-5 : 1e-13;  // ||a - b||_F / ||b||_F
    std::mt19937_64 rng(31);
    const index_t K = 13, N = 50;
    std::vector<std::vector<index_t>> lists;
    for (index_t i = 0; i < N + 7; ++i) {
        std::vector<index_t> set;
        const auto m = 1 + static_cast<index_t>(rng() % (i % 4 == 3 ? 7 : 3));
        for (index_t k = static_cast<index_t>(rng() % K); static_cast<index_t>(set.size()) < m; k = (k + 1) % K)
            set.push_back(k);
        lists.push_back(set);
    }
    const auto all = label_sets::from_lists(lists, K);
    std::vector<index_t> picked;
    for (index_t i = 0; i < N; ++i) picked.push_back((i * 5 + 3) % (N + 7));
    const mlnc::sample_subset sub(all, picked);
    const auto S = sub.to_label_sets();
    const mlnc::matrix<T> Z = randn(K, N, rng, 4.0).template cast<T>();
    mlnc::matrix<T> G(K, N);
    mlnc::vector<T> per(N);
    const double l = static_cast<double>(mlnc::pal_loss_grad(Z, S, G));
    mlnc::pal_sample_losses(Z, S, per);
    const auto rel = [](const auto& a, const auto& b) {
        return (a.template cast<double>() - b.template cast<double>()).norm() / b.template cast<double>().norm();
    };
    // The labels as a subset of a larger set.
    mlnc::matrix<T> G1(K, N);
    CHECK(static_cast<double>(mlnc::pal_loss_grad(Z, sub, G1)) == Approx(l).epsilon(tol));
    CHECK(rel(G1, G) <= tol);
    // G with a leading dimension past K.
    mlnc::matrix<T> big_G = mlnc::matrix<T>::Constant(K + 3, N, T(7));
    auto G2 = big_G.topRows(K);
    CHECK(static_cast<double>(mlnc::pal_loss_grad(Z, S, G2)) == Approx(l).epsilon(tol));
    CHECK(rel(mlnc::matrix<T>(G2), G) <= tol);
    CHECK((big_G.bottomRows(3).array() == T(7)).all());  // rows past K untouched
    // Z with a leading dimension past K, in place.
    mlnc::matrix<T> big_Z = mlnc::matrix<T>::Constant(K + 5, N, T(-3));
    big_Z.topRows(K) = Z;
    auto Z3 = big_Z.topRows(K);
    CHECK(static_cast<double>(mlnc::pal_loss_grad_inplace(Z3, S)) == Approx(l).epsilon(tol));
    CHECK(rel(mlnc::matrix<T>(Z3), G) <= tol);
    CHECK((big_Z.bottomRows(5).array() == T(-3)).all());
    // Per-sample losses from a Z with a leading dimension past K.
    mlnc::matrix<T> big_Z4 = mlnc::matrix<T>::Zero(K + 2, N);
    big_Z4.topRows(K) = Z;
    mlnc::vector<T> per4(N);
    CHECK(static_cast<double>(mlnc::pal_sample_losses(big_Z4.topRows(K), S, per4)) == Approx(l).epsilon(tol));
    CHECK(rel(per4, per) <= tol);
}

// (The condition of pal_kernels.hpp's SIMD block, whose macro the header does not leave defined.)
#if defined(EIGEN_VECTORIZE_AVX512) || (defined(EIGEN_VECTORIZE_AVX2) && defined(EIGEN_VECTORIZE_FMA))
TEST_CASE("small K: the sets of up to 16 samples as bits, taken across the sets, equal those set by set") {
    // label_bits_across (the transposed block's labels) takes each set's first four labels across
    // the sets (16 with AVX-512, 8 with AVX2), picked from the sets' labels in registers (up to 4
    // per set: 64 or 32, and with AVX2 in two registers up to 16) or else gathered, and a set's
    // labels past its fourth one by one. Every n up to the lanes, sets of 1..K labels, labels in
    // both words of bits (K > 32); lanes past n must stay untouched.
    using mlnc::cpu_kernels::csr_of;
    using mlnc::cpu_kernels::label_bits_across;
    constexpr int lanes = mlnc::cpu_kernels::label_bits_lanes;
    std::mt19937_64 rng(51);
    // The sets' labels in total: up to 2 per lane, up to 4 per lane, more.
    bool two = false, four = false, more = false, longer = false;
    for (const index_t K : {2, 10, 31, 32, 33, 48, 64}) {
        for (const index_t max_m : {index_t{1}, index_t{3}, index_t{5}, K}) {
            const index_t N = 40;
            const auto S = random_labels(K, N, std::min(max_m, K), rng);
            for (int n = 1; n <= lanes; ++n) {
                for (const index_t i0 : {index_t{0}, index_t{7}, N - n}) {
                    INFO("K = " << K << ", sets of up to " << max_m << " labels, n = " << n << ", from " << i0);
                    const auto l = csr_of(S, i0);
                    REQUIRE(l.offsets == S.offsets().data() + i0);
                    REQUIRE(l.labels == S.indices().data());
                    const std::uint32_t untouched = 0xDEADBEEFu;
                    std::uint32_t b0[16], b1[16];
                    std::int32_t count[16];
                    std::fill(b0, b0 + 16, untouched);
                    std::fill(b1, b1 + 16, untouched);
                    std::fill(count, count + 16, static_cast<std::int32_t>(untouched));
                    label_bits_across(l, n, b0, K > 32 ? b1 : nullptr, count);
                    const index_t total = l.offsets[n] - l.offsets[0];
                    (total <= 2 * lanes ? two : total <= 4 * lanes ? four : more) = true;
                    for (int j = 0; j < 16; ++j) {
                        INFO("lane " << j);
                        if (j >= n) {
                            CHECK(b0[j] == untouched);
                            CHECK(b1[j] == untouched);
                            CHECK(count[j] == static_cast<std::int32_t>(untouched));
                            continue;
                        }
                        std::uint32_t w[2] = {0, 0};
                        for (const mlnc::label_t k : S[i0 + j]) w[k / 32] |= 1u << (k % 32);
                        longer = longer || S[i0 + j].size() > 4;
                        CHECK(b0[j] == w[0]);
                        CHECK(b1[j] == (K > 32 ? w[1] : untouched));
                        CHECK(count[j] == static_cast<std::int32_t>(S[i0 + j].size()));
                    }
                }
            }
        }
    }
    CHECK(two);
    CHECK(four);
    CHECK(more);
    CHECK(longer);
    // The objective's windows of a label_sets keep its arrays; a subset has none (set by set).
    const auto S = random_labels(10, 30, 3, rng);
    const mlnc::detail::label_window<label_sets> w{&S, 5, 20};
    CHECK(csr_of(w, 3).offsets == S.offsets().data() + 8);
    CHECK(csr_of(w, 3).labels == S.indices().data());
    const mlnc::sample_subset sub(S, {4, 2, 9});
    CHECK(csr_of(sub, 0).offsets == nullptr);
}
#endif

TEST_CASE("small K: a non-finite logit inside a block of samples is reported at its place") {
    using Catch::Matchers::Contains;
    const index_t K = 10, N = 40;
    std::vector<std::vector<index_t>> lists;
    for (index_t i = 0; i < N; ++i) lists.push_back({i % K});
    const auto S = label_sets::from_lists(lists, K);
    const double inf = std::numeric_limits<double>::infinity(), nan = std::numeric_limits<double>::quiet_NaN();
    for (const double bad : {-inf, inf, nan}) {
        for (const index_t col : {0, 5, 12, 17, 25, 33, 39}) {
            Eigen::MatrixXd Z = Eigen::MatrixXd::Constant(K, N, 0.25);
            Z(3, col) = bad;
            Z(7, std::min<index_t>(col + 1, N - 1)) = nan;  // a later bad entry must not be the one reported
            std::string where = "(3, ";
            where += std::to_string(col);
            where += ")";
            INFO("bad value " << bad << " at " << where);
            CHECK_THROWS_WITH(mlnc::pal_loss(Z, S), Contains(where));
            Eigen::MatrixXd G(K, N);
            CHECK_THROWS_WITH(mlnc::pal_loss_grad(Z, S, G), Contains(where));
            CHECK_THROWS_WITH(mlnc::pal_loss_grad_inplace(Z, S), Contains(where));
            Eigen::MatrixXf Zf = Z.cast<float>();
            CHECK_THROWS_WITH(mlnc::pal_loss(Zf, S), Contains(where));
        }
    }
}

TEMPLATE_TEST_CASE("panels: every K around their limits, every N around a panel, strided or not", "", float, double) {
    // Past the small-K blocks and up to 16 packets a column (with AVX-512: 256 floats, 128
    // doubles; with AVX2 half that) the columns go by panels of L (pal_panel in pal_kernels.hpp),
    // whose last panel in a range is short; past that, one at a time. All must match the definition.
    using T = TestType;
    const double tol = std::is_same_v<T, float> ? 2e-6 : 1e-13;  // relative, per sample
    std::mt19937_64 rng(61);
    for (const index_t K : {33, 39, 49, 63, 64, 65, 100, 128, 129, 200, 256, 257}) {
        for (const index_t N : {1, 7, 16, 17, 40}) {
            INFO("K = " << K << ", N = " << N);
            std::vector<std::vector<index_t>> lists;
            for (index_t i = 0; i < N; ++i) {
                std::vector<index_t> set{static_cast<index_t>(rng() % K)};
                if (i % 2 == 0) set.push_back((set[0] + 1 + static_cast<index_t>(rng() % (K - 1))) % K);
                if (i % 7 == 6) {  // the labels in the padded tail of the column too
                    set.resize(static_cast<std::size_t>(K));
                    std::iota(set.begin(), set.end(), index_t{0});
                }
                lists.push_back(set);
            }
            const auto S = label_sets::from_lists(lists, K);
            const mlnc::matrix<T> Z = randn(K, N, rng, 5.0).cast<T>();
            for (const pal_variant v : {pal_variant::pal, pal_variant::pal_n}) {
                mlnc::vector<T> per(N);
                const T loss = mlnc::pal_sample_losses(Z, S, per, v);
                mlnc::matrix<T> G(K, N);
                CHECK(mlnc::pal_loss_grad(Z, S, G, v) == loss);
                mlnc::matrix<T> Zi = Z;
                mlnc::pal_loss_grad_inplace(Zi, S, v);
                CHECK(Zi == G);  // in place and out of place: the same computation
                // Z and G with leading dimensions past K: past the contiguous blocks' K the same
                // bits (panels and columns take any column stride); below, where only contiguous
                // columns go by the register-transposed blocks, the same values.
                mlnc::matrix<T> big_Z = mlnc::matrix<T>::Constant(K + 3, N, T(-2));
                big_Z.topRows(K) = Z;
                mlnc::matrix<T> big_G = mlnc::matrix<T>::Constant(K + 5, N, T(9));
                auto G2 = big_G.topRows(K);
                const T loss2 = mlnc::pal_loss_grad(big_Z.topRows(K), S, G2, v);
                auto Z3 = big_Z.topRows(K);
                const T loss3 = mlnc::pal_loss_grad_inplace(Z3, S, v);
                CHECK((big_G.bottomRows(5).array() == T(9)).all());
                CHECK((big_Z.bottomRows(3).array() == T(-2)).all());
                if (K > mlnc::cpu_kernels::blocked_k_max<T>) {
                    CHECK(loss2 == loss);
                    CHECK(mlnc::matrix<T>(G2) == G);
                    CHECK(loss3 == loss);
                    CHECK(mlnc::matrix<T>(Z3) == G);
                } else {
                    const auto rel = [](const auto& a, const auto& b) {
                        return (a.template cast<double>() - b.template cast<double>()).norm() /
                               b.template cast<double>().norm();
                    };
                    CHECK(static_cast<double>(loss2) == Approx(static_cast<double>(loss)).epsilon(tol));
                    CHECK(static_cast<double>(loss3) == Approx(static_cast<double>(loss)).epsilon(tol));
                    CHECK(rel(mlnc::matrix<T>(G2), G) <= tol);
                    CHECK(rel(mlnc::matrix<T>(Z3), G) <= tol);
                }
                check_columns_against_definition(Z, S, v, per, G, tol);
            }
        }
    }
}

TEMPLATE_TEST_CASE("panels: a column's bits do not depend on its place in a panel, nor on its neighbours", "",
                   float, double) {
    // Columns rotated by 1, 5 and L + 3 land at other places of other panels (and the last, short
    // panel of the range moves): every column keeps its loss's and its gradient's bits. One column
    // holds logits of opposite signs near the overflow, whose loss the panel takes in double: its
    // answer is the columns' one (finite in float, +Inf in double), and its neighbours keep theirs.
    using T = TestType;
    std::mt19937_64 rng(71);
    const T big = std::numeric_limits<T>::max() / T(4) * T(3);
    for (const index_t K : {49, 100, 129}) {
        const index_t N = 75;
        std::vector<std::vector<index_t>> lists;
        for (index_t i = 0; i < N; ++i) {
            std::vector<index_t> set{static_cast<index_t>(rng() % K)};
            if (i % 3 == 0) set.push_back((set[0] + 1) % K);
            lists.push_back(set);
        }
        lists[20] = {0, 1};  // label 1 lies 2 big below the max
        const auto S = label_sets::from_lists(lists, K);
        mlnc::matrix<T> Z = randn(K, N, rng, 4.0).template cast<T>();
        Z(0, 20) = big;
        Z(1, 20) = -big;
        mlnc::vector<T> per(N);
        mlnc::matrix<T> G(K, N);
        mlnc::pal_sample_losses(Z, S, per);
        mlnc::pal_loss_grad(Z, S, G);
        // Its loss is 2 big (max - z_1 in double), +Inf once rounded to T; the mean over N is
        // finite in float (a sum in double), +Inf in double.
        CHECK(per[20] == std::numeric_limits<T>::infinity());
        CHECK(static_cast<bool>(std::isfinite(mlnc::pal_loss(Z, S))) == std::is_same_v<T, float>);
        CHECK(G.allFinite());
        constexpr index_t L = mlnc::cpu_kernels::column_sweeps<T>::L;
        for (const index_t shift : {index_t{1}, index_t{5}, L + 3}) {
            INFO("K = " << K << ", columns rotated by " << shift);
            CHECK(rotation_keeps_bits(Z, S, per, G, shift));
        }
    }
}

TEST_CASE("panels: a non-finite logit inside a panel is reported at its place") {
    using Catch::Matchers::Contains;
    const index_t K = 100, N = 40;
    std::vector<std::vector<index_t>> lists;
    for (index_t i = 0; i < N; ++i) lists.push_back({(7 * i) % K});
    const auto S = label_sets::from_lists(lists, K);
    const double inf = std::numeric_limits<double>::infinity(), nan = std::numeric_limits<double>::quiet_NaN();
    for (const double bad : {-inf, inf, nan}) {
        for (const index_t col : {0, 5, 15, 16, 17, 31, 36, 39}) {
            for (const index_t row : {0, 63, 99}) {  // a whole packet, and the padded tail
                Eigen::MatrixXd Z = Eigen::MatrixXd::Constant(K, N, 0.25);
                Z(row, col) = bad;
                if (col + 1 < N) Z(7, col + 1) = nan;  // a later bad entry must not be the one reported
                std::string where = "(";
                where += std::to_string(row);
                where += ", ";
                where += std::to_string(col);
                where += ")";
                INFO("bad value " << bad << " at " << where);
                CHECK_THROWS_WITH(mlnc::pal_loss(Z, S), Contains(where));
                Eigen::MatrixXd G(K, N);
                CHECK_THROWS_WITH(mlnc::pal_loss_grad(Z, S, G), Contains(where));
                Eigen::MatrixXf Zf = Z.cast<float>();
                CHECK_THROWS_WITH(mlnc::pal_loss(Zf, S), Contains(where));
                CHECK_THROWS_WITH(mlnc::pal_loss_grad_inplace(Zf, S), Contains(where));
                CHECK_THROWS_WITH(mlnc::pal_loss_grad_inplace(Z, S), Contains(where));
            }
        }
    }
}

TEST_CASE("a non-finite logit is reported at its place in the input, in place or not") {
    using Catch::Matchers::Contains;
    const auto S = label_sets::from_lists({{0}, {1, 2}, {0, 2}}, 4);
    const double inf = std::numeric_limits<double>::infinity(), nan = std::numeric_limits<double>::quiet_NaN();
    for (const double bad : {-inf, inf, nan}) {
        for (const index_t row : {0, 2, 3}) {
            Eigen::MatrixXd Z = Eigen::MatrixXd::Constant(4, 3, 0.5);
            Z(row, 1) = bad;
            // Built piecewise: GCC 12 at -O3 warns (-Wrestrict, a known false positive) on "(" + s.
            std::string where = "(";
            where += std::to_string(row);
            where += ", 1)";
            INFO("bad value " << bad << " at " << where);
            CHECK_THROWS_WITH(mlnc::pal_loss(Z, S), Contains(where));
            Eigen::MatrixXd G(4, 3);
            CHECK_THROWS_WITH(mlnc::pal_loss_grad(Z, S, G), Contains(where));
            // Before the fix the in-place kernel overwrote the column with exp(z - max) first and
            // then reported the first non-finite entry of what it had written.
            CHECK_THROWS_WITH(mlnc::pal_loss_grad_inplace(Z, S), Contains(where));
        }
    }
}

TEST_CASE("a column holding both Inf and NaN is reported at its first bad entry") {
    // Eigen's default (PropagateFast) max and min can drop both a NaN and an Inf of one column
    // (SSE's max returns its second operand when one is NaN): the kernel asks for PropagateNaN.
    const auto S = label_sets::from_lists({{0}, {1, 2}}, 4);
    const float finf = std::numeric_limits<float>::infinity(), fnan = std::numeric_limits<float>::quiet_NaN();
    Eigen::MatrixXf Zf(4, 2);
    Zf << 0, finf, 0, 1, 0, fnan, 0, 2;
    CHECK_THROWS_WITH(mlnc::pal_loss_grad_inplace(Zf, S), Catch::Contains("(0, 1)"));
    Eigen::MatrixXd Zd(4, 2);
    Zd << 0, 1, 0, std::nan(""), 0, -std::numeric_limits<double>::infinity(), 0, 2;
    CHECK_THROWS_WITH(mlnc::pal_loss_grad_inplace(Zd, S), Catch::Contains("(1, 1)"));
    // A temporary Block of Z is accepted in place.
    Eigen::MatrixXd Z = Eigen::MatrixXd::Zero(4, 3);
    CHECK(mlnc::pal_loss_grad_inplace(Z.leftCols(2), S) == Approx(1.5 * std::log(4.0)));
}

TEST_CASE("logits that overflow in the objective are a status, not an exception") {
    const auto S = label_sets::from_lists({{0}, {1}}, 2);
    mlnc::pal_objective<float> obj(S, {1e-3, 1e-3, 0});
    // Finite W and H whose product overflows float: W h = 2 * 3e38.
    Eigen::MatrixXf W(2, 2), H(2, 2), dW(2, 2), dH(2, 2);
    Eigen::VectorXf b = Eigen::VectorXf::Zero(2), db(2);
    W << 1e19f, 1e19f, 1, 1;
    H << 3e19f, 1, 3e19f, 1;
    mlnc::objective_value<float> v;
    REQUIRE_NOTHROW(v = obj.evaluate(W, H, b, dW, dH, db));
    CHECK(v.status == mlnc::objective_status::overflow);
    CHECK_FALSE(v.ok());
    CHECK(std::isinf(v.total));
    CHECK(v.overflow_row == 0);
    CHECK(v.overflow_col == 0);
    CHECK(dW.array().isNaN().all());
    CHECK(obj.evaluate(W, H, b).status == mlnc::objective_status::overflow);
    // Non-finite input is still bad input.
    W(1, 1) = std::numeric_limits<float>::infinity();
    CHECK_THROWS_AS(obj.evaluate(W, H, b), mlnc::error);
}
