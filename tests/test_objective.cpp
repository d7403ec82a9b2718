// The optimiser-ready objective (objective.hpp): minibatch decomposition, the penalty alone,
// skipped gradients, the flat ufm_objective (layout, pack/unpack, ensmallen and LBFGSpp forms,
// separable batches), backends as values, and third-party optimisers reaching f*.
#include "../examples/optimisers.hpp"
#include "test_support.hpp"

#include <mlnc/objective.hpp>
#include <mlnc/optimum.hpp>
#include <mlnc/ufm.hpp>

#include <catch2/catch.hpp>

#include <cmath>
#include <numeric>
#include <random>

using mlnc::index_t;
using mlnc::label_sets;
using mlnc::sample_subset;
using Catch::Matchers::Contains;

namespace {

const mlnc::penalties lam{0.013, 0.007, 0.021};

// K = 4, every single label 2 times and every pair once: 14 samples of multiplicity 1 and 2.
label_sets small_labels() { return mlnc::balanced_label_sets(4, {{1, 2}, {2, 1}}); }

struct point {
    Eigen::MatrixXd W, H;
    Eigen::VectorXd b;
};
point random_point(index_t K, index_t d, index_t N, std::mt19937_64& rng) {
    return {mlnc_test::gaussian(K, d, rng), mlnc_test::gaussian(d, N, rng), mlnc_test::gaussian(K, 1, rng)};
}

}  // namespace

TEST_CASE("objective: batch data terms of a partition plus the penalty once add up to f", "[objective]") {
    std::mt19937_64 rng(7);
    const label_sets S = small_labels();
    const index_t K = 4, d = 3, N = S.size();
    const auto p = random_point(K, d, N, rng);
    for (const auto v : {mlnc::pal_variant::pal, mlnc::pal_variant::pal_n}) {
        mlnc::pal_objective obj(S, lam, v);
        Eigen::MatrixXd dW(K, d), dH(d, N);
        Eigen::VectorXd db(K);
        const auto full = obj.evaluate(p.W, p.H, p.b, dW, dH, db);

        // A shuffled partition into batches of 5, 5 and 4.
        std::vector<index_t> order(static_cast<std::size_t>(N));
        std::iota(order.begin(), order.end(), index_t{0});
        std::shuffle(order.begin(), order.end(), rng);
        double total = 0;
        Eigen::MatrixXd sW = Eigen::MatrixXd::Zero(K, d), sH = Eigen::MatrixXd::Zero(d, N);
        Eigen::VectorXd sb = Eigen::VectorXd::Zero(K);
        for (index_t begin = 0; begin < N; begin += 5) {
            const index_t n = std::min<index_t>(5, N - begin);
            const sample_subset batch(S, std::vector<index_t>(order.begin() + begin, order.begin() + begin + n));
            Eigen::MatrixXd dWb(K, d), dHb(d, n);
            Eigen::VectorXd dbb(K);
            const auto vb = obj.evaluate_batch(batch, p.W, batch.columns(p.H), p.b, dWb, dHb, dbb);
            CHECK(vb.penalty == 0);
            CHECK(vb.total == vb.loss);
            // Scaled by the global 1/N, not by the batch size: the mean over the batch times n/N.
            const double batch_mean = mlnc::pal_loss(p.W * batch.columns(p.H) + p.b.replicate(1, n), batch, v);
            CHECK(vb.loss == Approx(batch_mean * static_cast<double>(n) / static_cast<double>(N)).epsilon(1e-14));
            total += vb.total;
            sW += dWb;
            sb += dbb;
            batch.columns(sH) = dHb;
        }
        Eigen::MatrixXd pW(K, d), pH(d, N);
        Eigen::VectorXd pb(K);
        const auto pen = obj.penalty(p.W, p.H, p.b, pW, pH, pb);
        CHECK(pen.loss == 0);
        CHECK(pen.total == Approx(full.penalty).epsilon(1e-15));
        // Sums of a few O(1) terms in another order: agreement to a few ulps of f.
        CHECK(total + pen.total == Approx(full.total).epsilon(1e-14));
        CHECK((sW + pW - dW).cwiseAbs().maxCoeff() < 1e-15);
        CHECK((sH + pH - dH).cwiseAbs().maxCoeff() < 1e-15);
        CHECK((sb + pb - db).cwiseAbs().maxCoeff() < 1e-15);
    }
}

TEST_CASE("objective: batch gradients match central differences", "[objective]") {
    std::mt19937_64 rng(11);
    const label_sets S = small_labels();
    const index_t K = 4, d = 3, N = S.size();
    auto p = random_point(K, d, N, rng);
    mlnc::pal_objective obj(S, lam);
    const sample_subset batch(S, {3, 9, 3, 12});  // a repeated sample counts twice
    Eigen::MatrixXd Hb = batch.columns(p.H);
    Eigen::MatrixXd dW(K, d), dHb(d, 4);
    Eigen::VectorXd db(K);
    obj.evaluate_batch(batch, p.W, Hb, p.b, dW, dHb, db);
    const auto f = [&] { return obj.evaluate_batch(batch, p.W, Hb, p.b).total; };
    // Step 1e-6: truncation ~1e-12, rounding ~1e-10 / N; entries are O(1/N) = 0.07, 1e-8 catches
    // any missing or doubled term.
    const double h = 1e-6;
    const auto fd = [&](double& x) {
        const double x0 = x;
        x = x0 + h;
        const double fp = f();
        x = x0 - h;
        const double fm = f();
        x = x0;
        return (fp - fm) / (2 * h);
    };
    for (index_t i = 0; i < K; ++i)
        for (index_t j = 0; j < d; ++j) CHECK(dW(i, j) == Approx(fd(p.W(i, j))).margin(1e-8));
    for (index_t i = 0; i < d; ++i)
        for (index_t j = 0; j < 4; ++j) CHECK(dHb(i, j) == Approx(fd(Hb(i, j))).margin(1e-8));
    for (index_t i = 0; i < K; ++i) CHECK(db(i) == Approx(fd(p.b(i))).margin(1e-8));
}

TEST_CASE("objective: skipped outputs change nothing else; penalty and batch check their input", "[objective]") {
    std::mt19937_64 rng(5);
    const label_sets S = small_labels();
    const index_t K = 4, d = 3, N = S.size();
    const auto p = random_point(K, d, N, rng);
    mlnc::pal_objective obj(S, lam);
    Eigen::MatrixXd dW(K, d), dH(d, N), dH2(d, N);
    Eigen::VectorXd db(K), db2(K);
    const auto a = obj.evaluate(p.W, p.H, p.b, dW, dH, db);
    const auto b = obj.evaluate(p.W, p.H, p.b, mlnc::skip, dH2, db2);
    CHECK(a.total == b.total);
    CHECK(dH == dH2);
    CHECK(db == db2);
    // Row-major and Block outputs.
    Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor> dWr(K, d);
    Eigen::MatrixXd big = Eigen::MatrixXd::Zero(d + 2, N + 3);
    obj.evaluate(p.W, p.H, p.b, dWr, big.block(1, 2, d, N), mlnc::skip);
    CHECK((dWr - dW).cwiseAbs().maxCoeff() < 1e-15);  // another summation order in the product
    CHECK(big.block(1, 2, d, N) == dH);

    CHECK_THROWS_WITH(obj.evaluate_batch(sample_subset(S, {}), p.W, p.H.leftCols(0), p.b), Contains("batch"));
    const label_sets other = mlnc::balanced_label_sets(4, {{1, 1}});
    CHECK_THROWS_WITH(obj.evaluate_batch(sample_subset(other, {0}), p.W, p.H.leftCols(1), p.b), Contains("batch"));
    CHECK_THROWS_WITH(obj.evaluate_batch(sample_subset(S, {0, 1}), p.W, p.H.leftCols(3), p.b), Contains("H"));
    CHECK_THROWS_WITH(sample_subset(S, {0, N}), Contains("out of range"));
    Eigen::MatrixXd bad = p.H;
    bad(0, 0) = std::nan("");
    CHECK_THROWS_WITH(obj.penalty(p.W, bad, p.b), Contains("H"));
    Eigen::MatrixXd small(d, N - 1);
    CHECK_THROWS_WITH(obj.evaluate(p.W, p.H, p.b, dW, small, db), Contains("dH"));
}

TEST_CASE("ufm_objective: layout, pack/unpack and the ensmallen and LBFGSpp forms agree", "[objective]") {
    std::mt19937_64 rng(3);
    const label_sets S = small_labels();
    const index_t K = 4, d = 3, N = S.size();
    const auto p = random_point(K, d, N, rng);
    mlnc::ufm_objective f(S, d, lam);
    REQUIRE(f.size() == K * d + d * N + K);
    const Eigen::VectorXd x = f.pack(p.W, p.H, p.b);
    // [vec(W); vec(H); b], column-major.
    CHECK(x[1] == p.W(1, 0));
    CHECK(x[K * d + 1] == p.H(1, 0));
    CHECK(x[K * d + d * N + 2] == p.b[2]);
    CHECK(x == mlnc::pack_parameters(p.W, p.H, p.b));
    const auto q = f.unpack(x);
    CHECK(q.W == p.W);
    CHECK(q.H == p.H);
    CHECK(q.b == p.b);
    const auto r = mlnc::unpack_parameters(x, K, d, N);
    CHECK(r.H == p.H);

    mlnc::pal_objective obj(S, lam);
    Eigen::MatrixXd dW(K, d), dH(d, N);
    Eigen::VectorXd db(K);
    const double f0 = obj.evaluate(p.W, p.H, p.b, dW, dH, db).total;
    Eigen::VectorXd g1, g2, g3;
    CHECK(f.Evaluate(x) == f0);
    CHECK(f.EvaluateWithGradient(x, g1) == f0);
    f.Gradient(x, g2);
    CHECK(f(x, g3) == f0);
    CHECK(g1 == mlnc::pack_parameters(dW, dH, db));
    CHECK(g1 == g2);
    CHECK(g1 == g3);

    // W held fixed: x = [vec(H); b], the gradient is the tail of the full one.
    mlnc::ufm_objective ff(S, p.W, lam);
    REQUIRE(ff.size() == d * N + K);
    const Eigen::VectorXd xf = ff.pack(p.H, p.b);
    Eigen::VectorXd gf;
    CHECK(ff(xf, gf) == f0);
    CHECK(gf == g1.tail(d * N + K));
    CHECK(ff.W(xf) == p.W);
    CHECK_THROWS_WITH(ff.pack(p.W, p.H, p.b), Contains("fixed"));
    CHECK_THROWS_WITH(f.pack(p.H, p.b), Contains("W is a variable"));

    // Bad x is an error naming x; a non-finite x is a point where f = +Inf (a step too long).
    CHECK_THROWS_WITH(f.Evaluate(Eigen::VectorXd::Zero(3)), Contains("x:") && Contains(std::to_string(f.size())));
    Eigen::VectorXd xi = x;
    xi[0] = std::numeric_limits<double>::infinity();
    CHECK(std::isinf(f(xi, g1)));
    CHECK(g1.hasNaN());
    CHECK(f.evaluate(xi).status == mlnc::objective_status::overflow);
    CHECK_THROWS_WITH(mlnc::unpack_parameters(x.head(5), K, d, N), Contains("x:"));
}

TEST_CASE("ufm_objective: the separable form sums to f over any partition", "[objective]") {
    std::mt19937_64 rng(21);
    const label_sets S = small_labels();
    const index_t K = 4, d = 3, N = S.size();
    const auto p = random_point(K, d, N, rng);
    for (const bool fixed : {false, true}) {
        CAPTURE(fixed);
        mlnc::ufm_objective f = fixed ? mlnc::ufm_objective(S, Eigen::MatrixXd(p.W), lam) : mlnc::ufm_objective(S, d, lam);
        const Eigen::VectorXd x = fixed ? f.pack(p.H, p.b) : f.pack(p.W, p.H, p.b);
        Eigen::VectorXd g, gb;
        const double fx = f.EvaluateWithGradient(x, g);
        CHECK(f.NumFunctions() == N);
        f.seed(17);
        f.Shuffle();
        CHECK(f.order() != std::vector<index_t>(f.order().size(), 0));
        double sum = 0;
        Eigen::VectorXd gsum = Eigen::VectorXd::Zero(x.size());
        for (index_t begin = 0; begin < N; begin += 4) {
            const index_t n = std::min<index_t>(4, N - begin);
            const double fb = f.EvaluateWithGradient(x, begin, gb, n);
            CHECK(f.Evaluate(x, begin, n) == fb);
            sum += fb;
            gsum += gb;
        }
        CHECK(sum == Approx(fx).epsilon(1e-14));
        CHECK((gsum - g).cwiseAbs().maxCoeff() < 1e-15);
        CHECK_THROWS_WITH(f.Evaluate(x, N - 1, 2), Contains("batch"));
    }
}

TEST_CASE("backends are values: the context travels with the call", "[objective][backend]") {
    static_assert(mlnc::backend<mlnc::cpu> && mlnc::backend<const mlnc::cpu&> && !mlnc::backend<int>);
    static_assert(mlnc::available_backend<mlnc::cpu> && !mlnc::available_backend<mlnc::cuda>);
    std::mt19937_64 rng(9);
    const label_sets S = small_labels();
    const auto p = random_point(4, 3, S.size(), rng);
    const Eigen::MatrixXd Z = p.W * p.H;
    CHECK(mlnc::pal_loss(mlnc::cpu{2}, Z, S) == mlnc::pal_loss(Z, S));
    CHECK_THROWS_WITH(mlnc::pal_loss(mlnc::cpu{-1}, Z, S), Contains("cpu::threads"));
    mlnc::pal_objective a(mlnc::cpu{1}, S, lam);  // deduced: pal_objective<double, cpu>
    static_assert(std::is_same_v<decltype(a), mlnc::pal_objective<double, mlnc::cpu>>);
    CHECK(a.backend_value().threads == 1);
    CHECK(a.value(p.W, p.H, p.b) == mlnc::pal_objective(S, lam).value(p.W, p.H, p.b));
    CHECK_THROWS_WITH(mlnc::pal_objective(mlnc::cpu{-3}, S, lam), Contains("cpu::threads"));
    mlnc::ufm_objective u(mlnc::cpu{4}, S, 3, lam);
    static_assert(std::is_same_v<decltype(u), mlnc::ufm_objective<double, mlnc::cpu>>);
    // float objects name their scalar.
    mlnc::pal_objective<float> fl(S, lam);
    const float vf = fl.value(p.W.cast<float>().eval(), p.H.cast<float>().eval(), p.b.cast<float>().eval());
    CHECK(vf == Approx(a.value(p.W, p.H, p.b)).epsilon(1e-5));
    const auto r = mlnc::train_ufm<float>(mlnc::cpu{1}, S, 3, lam, mlnc::ufm_options{});
    CHECK(r.W.rows() == 4);
}

TEST_CASE("third-party optimisers on ufm_objective reach the closed-form f*", "[objective][optimisers]") {
    // The problem of examples/optimisers.cpp: K = 4, d = 4, n_1 = 3, n_2 = 1.
    const index_t K = 4, d = 4;
    const mlnc::multiplicity_counts n{{1, 3}, {2, 1}};
    const mlnc::penalties lambdas{5e-3, 5e-3, 1e-2};
    const label_sets S = mlnc::balanced_label_sets(K, n);
    const double f_star = mlnc::global_optimum(K, n, lambdas)->f;
    mlnc::ufm_objective f(S, d, lambdas);
    mlnc::ufm_options o;
    o.max_iterations = 0;
    const auto start = mlnc::train_ufm(S, d, lambdas, o);
    const Eigen::VectorXd x0 = f.pack(start.W, start.H, start.b);
    // Both stop at ||grad|| <= 1e-8; near the minimiser f - f* ~ ||grad||^2 / (2 mu) with mu the
    // smallest nonzero curvature (~ the penalties, 1e-2), so the gap is ~1e-14, far inside 1e-9.
    {
        Eigen::VectorXd x = x0;
        const auto r = mlnc_examples::lbfgspp_minimize(f, x);
        INFO("LBFGSpp: " << r.iterations << " evaluations, f = " << r.f << ", |grad| = " << r.gradient_norm);
        CHECK(std::abs(r.f - f_star) <= 1e-9 * f_star);
    }
    {
        Eigen::VectorXd x = x0;
        const auto r = mlnc_examples::nesterov_minimize(f, x);
        INFO("Nesterov: " << r.iterations << " iterations, f = " << r.f << ", |grad| = " << r.gradient_norm);
        CHECK(std::abs(r.f - f_star) <= 1e-9 * f_star);
        // 141 iterations when written, 155 at be0b40e (AVX-512 build); a wrong gradient would never
        // get there.
        CHECK(r.iterations < 10000);
    }
}

TEST_CASE("minibatch SGD on the separable form approaches f*", "[objective][optimisers]") {
    // examples/minibatch_sgd.cpp's first 500 epochs: K = 6, n_1 = 10, n_2 = 2 (90 samples),
    // batches of 16, lr 0.5 / (1 + epoch / 100). Measured gap 1.8e-6. A wrong decomposition (e.g.
    // the whole penalty in every batch, i.e. counted N/|B| ~ 6 times) makes SGD converge to the
    // minimiser of another function, whose f exceeds f* by a sizeable part of the penalty (~0.1 f*).
    const index_t K = 6, d = 6;
    const mlnc::multiplicity_counts n{{1, 10}, {2, 2}};
    const mlnc::penalties lambdas{5e-3, 5e-3, 1e-2};
    const label_sets S = mlnc::balanced_label_sets(K, n);
    const double f_star = mlnc::global_optimum(K, n, lambdas)->f;
    mlnc::ufm_objective f(S, d, lambdas);
    f.seed(1);
    mlnc::ufm_options o;
    o.max_iterations = 0;
    const auto start = mlnc::train_ufm(S, d, lambdas, o);
    Eigen::VectorXd x = f.pack(start.W, start.H, start.b);
    const auto r = mlnc_examples::sgd_minimize(f, x, 0, 500, 16, 0.5, 100.0);
    INFO("SGD: f = " << r.f << ", f* = " << f_star);
    CHECK(r.f >= f_star * (1 - 1e-14));
    CHECK(r.f - f_star <= 1e-4 * f_star);
}

TEST_CASE("objective in chunks of columns: every chunking gives the unchunked result to 1e-12", "[objective]") {
    // The logits are formed c columns at a time (c from the workspace budget); dW and db add the
    // chunks' contributions. Chunks of 1, 2, 7, 16 and 17 columns, N - 1 (a last chunk of one)
    // and N; relative error ||a - b||_F / ||b||_F over each whole array.
    std::mt19937_64 rng(31);
    const index_t K = 10, d = 5;
    const label_sets S = mlnc::balanced_label_sets(K, {{1, 2}, {2, 1}});  // 65 samples
    const index_t N = S.size();
    const auto p = random_point(K, d, N, rng);
    const auto rel = [](const auto& a, const auto& b) { return (a - b).norm() / b.norm(); };
    for (const auto v : {mlnc::pal_variant::pal, mlnc::pal_variant::pal_n}) {
        mlnc::pal_objective obj(S, lam, v);
        REQUIRE(obj.workspace_bytes() == mlnc::default_workspace_bytes);
        Eigen::MatrixXd dW(K, d), dH(d, N);
        Eigen::VectorXd db(K);
        const auto whole = obj.evaluate(p.W, p.H, p.b, dW, dH, db);
        for (const index_t c : {index_t{1}, index_t{2}, index_t{7}, index_t{16}, index_t{17}, N - 1, N}) {
            INFO("chunk of " << c << " columns");
            mlnc::pal_objective chunked(S, lam, v);
            chunked.set_workspace_bytes(static_cast<std::size_t>(c * K) * sizeof(double));
            Eigen::MatrixXd cW(K, d), cH(d, N);
            Eigen::VectorXd cb(K);
            const auto part = chunked.evaluate(p.W, p.H, p.b, cW, cH, cb);
            CHECK(std::abs(part.total - whole.total) <= 1e-12 * std::abs(whole.total));
            CHECK(rel(cW, dW) <= 1e-12);
            CHECK(rel(cH, dH) <= 1e-12);
            CHECK(rel(cb, db) <= 1e-12);
            // A batch in chunks too.
            const sample_subset batch(S, {3, 60, 4, 4, 17, 33, 2});
            const Eigen::MatrixXd Hb = batch.columns(p.H);
            Eigen::MatrixXd bW(K, d), bH(d, 7), uW(K, d), uH(d, 7);
            Eigen::VectorXd bb(K), ub(K);
            const auto bv = chunked.evaluate_batch(batch, p.W, Hb, p.b, bW, bH, bb);
            const auto uv = obj.evaluate_batch(batch, p.W, Hb, p.b, uW, uH, ub);
            CHECK(std::abs(bv.total - uv.total) <= 1e-12 * std::abs(uv.total));
            CHECK(rel(bW, uW) <= 1e-12);
            CHECK(rel(bH, uH) <= 1e-12);
            CHECK(rel(bb, ub) <= 1e-12);
        }
    }
    // An overflow is reported at its global column, whichever chunk holds it.
    mlnc::pal_objective chunked(S, lam);
    chunked.set_workspace_bytes(3 * K * sizeof(double));
    Eigen::MatrixXd H = p.H;
    H.col(40).setConstant(1e300);
    Eigen::MatrixXd W = p.W;
    W.setConstant(1e10);
    const auto o = chunked.evaluate(W, H, p.b);
    CHECK(o.status == mlnc::objective_status::overflow);
    CHECK(o.overflow_col == 40);
    CHECK_THROWS_WITH(chunked.set_workspace_bytes(0), Contains("workspace_bytes"));
}

TEST_CASE("objective at K past one block of GEMM rows (2^15): the same as the products formed whole", "[objective]") {
    std::mt19937_64 rng(41);
    const index_t K = 40000, d = 3;
    const label_sets S = label_sets::from_lists({{0}, {1, 39999}, {32767, 32768}, {5}, {20000, 3, 7}}, K);
    const index_t N = S.size();
    const auto p = random_point(K, d, N, rng);
    mlnc::pal_objective obj(S, lam);
    Eigen::MatrixXd dW(K, d), dH(d, N);
    Eigen::VectorXd db(K);
    const auto v = obj.evaluate(p.W, p.H, p.b, dW, dH, db);
    // The reference: Z whole, the logits-level kernel, the three products whole.
    Eigen::MatrixXd Z = p.W * p.H;
    Z.colwise() += p.b;
    Eigen::MatrixXd G(K, N);
    const double loss = mlnc::pal_loss_grad(Z, S, G);
    const auto rel = [](const auto& a, const auto& b) { return (a - b).norm() / b.norm(); };
    CHECK(std::abs(v.loss - loss) <= 1e-12 * std::abs(loss));
    CHECK(rel(dW, Eigen::MatrixXd(G * p.H.transpose() + 2 * lam.lambda_w * p.W)) <= 1e-12);
    CHECK(rel(dH, Eigen::MatrixXd(p.W.transpose() * G + 2 * lam.lambda_h * p.H)) <= 1e-12);
    CHECK(rel(db, Eigen::VectorXd(G.rowwise().sum() + 2 * lam.lambda_b * p.b)) <= 1e-12);
}

TEST_CASE("objective split over samples on threads: the serial result to 1e-12 at every thread count", "[objective][threads]") {
    // K d = 4096 and 2656 samples: 2 K d N = 44 MFLOP, enough for up to 3 threads of the split
    // over samples (4 MFLOP and 64 samples per thread at least; pal_objective::split_threads).
    // Threads 1 (the product-threaded route) to 3, whole or in chunks of 100, 65 and 1000
    // columns; dW skipped or not; the same bits on a second run at a fixed thread count.
    std::mt19937_64 rng(43);
    const index_t K = 64, d = 64;
    const label_sets S = mlnc::balanced_label_sets(K, {{1, 10}, {2, 1}});
    const index_t N = S.size();
    const auto p = random_point(K, d, N, rng);
    const auto rel = [](const auto& a, const auto& b) { return (a - b).norm() / b.norm(); };
    mlnc::pal_objective serial(mlnc::cpu{1}, S, lam);
    Eigen::MatrixXd dW(K, d), dH(d, N);
    Eigen::VectorXd db(K);
    const auto ref = serial.evaluate(p.W, p.H, p.b, dW, dH, db);
    for (int threads : {2, 3}) {
        for (const index_t c : {N, index_t{100}, index_t{65}, index_t{1000}}) {
            INFO(threads << " threads, chunks of " << c);
            mlnc::pal_objective obj(mlnc::cpu{threads}, S, lam);
            obj.set_workspace_bytes(static_cast<std::size_t>(c * K) * sizeof(double));
            Eigen::MatrixXd tW(K, d), tH(d, N), tH2(d, N);
            Eigen::VectorXd tb(K);
            const auto v = obj.evaluate(p.W, p.H, p.b, tW, tH, tb);
            CHECK(std::abs(v.total - ref.total) <= 1e-12 * std::abs(ref.total));
            CHECK(rel(tW, dW) <= 1e-12);
            CHECK(rel(tH, dH) <= 1e-12);
            CHECK(rel(tb, db) <= 1e-12);
            Eigen::MatrixXd again(K, d);
            Eigen::VectorXd b2(K);
            CHECK(obj.evaluate(p.W, p.H, p.b, again, tH2, b2).total == v.total);
            CHECK(again == tW);
            const auto s = obj.evaluate(p.W, p.H, p.b, mlnc::skip, tH2, b2);
            CHECK(s.total == v.total);
            CHECK(tH2 == tH);
        }
    }
    // An overflow is reported at its global column from whichever thread holds it.
    mlnc::pal_objective obj(mlnc::cpu{2}, S, lam);
    obj.set_workspace_bytes(static_cast<std::size_t>(1000 * K) * sizeof(double));
    Eigen::MatrixXd H = p.H, W = p.W;
    H.col(2500).setConstant(1e300);
    W.setConstant(1e10);
    const auto o = obj.evaluate(W, H, p.b, dW, dH, db);
    CHECK(o.status == mlnc::objective_status::overflow);
    CHECK(o.overflow_col == 2500);
    CHECK(std::isnan(dW(0, 0)));
}

TEST_CASE("objective with the classes tiled: the untiled result to 1e-12 at every tile height", "[objective][tiles]") {
    // A workspace too small for min(N, 64) columns of K logits tiles the classes: pass 1 merges
    // per-tile log-sum-exps, pass 2 forms G tile by tile. Tiles of 1, 2, 7, 16, 31 and 39 rows of
    // K = 40 (the label sets below straddle every tile boundary: {0..39} spans all of them), 1 to
    // 3 threads, PAL and PAL-N, the whole objective and a batch.
    std::mt19937_64 rng(47);
    const index_t K = 40, d = 6;
    std::vector<std::vector<index_t>> lists;
    for (index_t i = 0; i < 150; ++i) lists.push_back({i % K, (i * 7 + 3) % K == i % K ? (i + 1) % K : (i * 7 + 3) % K});
    std::vector<index_t> all(static_cast<std::size_t>(K));
    std::iota(all.begin(), all.end(), index_t{0});
    lists.push_back(all);
    lists.push_back({39});
    const label_sets S = label_sets::from_lists(lists, K);
    const index_t N = S.size();
    const auto p = random_point(K, d, N, rng);
    const auto rel = [](const auto& a, const auto& b) { return (a - b).norm() / b.norm(); };
    const sample_subset batch(S, {151, 3, 60, 4, 4, 150, 2});
    const Eigen::MatrixXd Hb = batch.columns(p.H);
    for (const auto v : {mlnc::pal_variant::pal, mlnc::pal_variant::pal_n}) {
        mlnc::pal_objective whole(S, lam, v);
        Eigen::MatrixXd dW(K, d), dH(d, N), uW(K, d), uH(d, 7);
        Eigen::VectorXd db(K), ub(K);
        const auto ref = whole.evaluate(p.W, p.H, p.b, dW, dH, db);
        const auto uref = whole.evaluate_batch(batch, p.W, Hb, p.b, uW, uH, ub);
        for (int threads : {1, 2, 3}) {
            for (const index_t rows : {1, 2, 7, 16, 31, 39}) {
                INFO("tiles of " << rows << " rows, " << threads << " threads");
                mlnc::pal_objective tiled(mlnc::cpu{threads}, S, lam, v);
                tiled.set_workspace_bytes(static_cast<std::size_t>(rows * 64) * sizeof(double));
                Eigen::MatrixXd tW(K, d), tH(d, N), bW(K, d), bH(d, 7);
                Eigen::VectorXd tb(K), bb(K);
                const auto t = tiled.evaluate(p.W, p.H, p.b, tW, tH, tb);
                CHECK(std::abs(t.total - ref.total) <= 1e-12 * std::abs(ref.total));
                CHECK(rel(tW, dW) <= 1e-12);
                CHECK(rel(tH, dH) <= 1e-12);
                CHECK(rel(tb, db) <= 1e-12);
                CHECK(tiled.evaluate(p.W, p.H, p.b).total == t.total);  // the loss alone: pass 1 only
                const auto bt = tiled.evaluate_batch(batch, p.W, Hb, p.b, bW, bH, bb);
                CHECK(std::abs(bt.total - uref.total) <= 1e-12 * std::abs(uref.total));
                CHECK(rel(bW, uW) <= 1e-12);
                CHECK(rel(bH, uH) <= 1e-12);
                CHECK(rel(bb, ub) <= 1e-12);
            }
        }
    }
    // Float, and huge logits: the merge rescales sums by exp(max difference) without overflow.
    {
        mlnc::pal_objective<float> whole(S, lam), tiled(S, lam);
        tiled.set_workspace_bytes(7 * 64 * sizeof(float));
        const Eigen::MatrixXf W = (p.W * 300.0).cast<float>(), H = p.H.cast<float>();
        const Eigen::VectorXf b = p.b.cast<float>();
        Eigen::MatrixXf dW(K, d), dH(d, N), tW(K, d), tH(d, N);
        Eigen::VectorXf db(K), tb(K);
        const auto a = whole.evaluate(W, H, b, dW, dH, db);
        const auto t = tiled.evaluate(W, H, b, tW, tH, tb);
        REQUIRE(std::isfinite(a.total));
        // Both sum the same terms in double and round once: a few float ulps.
        CHECK(std::abs(t.total - a.total) <= 1e-6 * std::abs(a.total));
        CHECK((tW - dW).norm() <= 1e-5 * dW.norm());
        CHECK((tH - dH).norm() <= 1e-5 * dH.norm());
    }
    // An overflow is reported at its global row and column from whichever tile holds it.
    mlnc::pal_objective tiled(S, lam);
    tiled.set_workspace_bytes(7 * 64 * sizeof(double));
    Eigen::MatrixXd W = p.W;
    W.row(23) *= 1e300;
    Eigen::MatrixXd H = p.H;
    H.col(100) *= 1e300;
    const auto o = tiled.evaluate(W, H, p.b);
    CHECK(o.status == mlnc::objective_status::overflow);
    CHECK(o.overflow_col == 100);
    CHECK(o.overflow_row == 23);
}
