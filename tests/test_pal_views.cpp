// Eigen's assertions throw in this file, and its run-time malloc check is compiled in, so a test
// can prove that no Eigen temporary is allocated (Eigen::internal::set_is_malloc_allowed). The
// Eigen configuration is this file's own, so it compiles everything it uses (tests/CMakeLists.txt).
#include <stdexcept>
#define EIGEN_RUNTIME_NO_MALLOC
#define eigen_assert(x)                                                 \
    do {                                                                \
        if (!(x)) throw std::logic_error("eigen_assert failed: " #x); \
    } while (false)

#include <mlnc/pal.hpp>

#include <catch2/catch.hpp>

#include "test_support.hpp"

#include <random>

using mlnc::index_t;
using mlnc::label_sets;

TEST_CASE("row-major, strided and block logits are read where they are, never copied") {
    const auto S = label_sets::from_lists({{0}, {1, 2}, {0, 2}, {3}}, 4);
    std::mt19937_64 rng(11);
    const Eigen::MatrixXd Zc = 3.0 * mlnc_test::gaussian(4, 4, rng);
    Eigen::MatrixXd Gc(4, 4);
    const double ref = mlnc::pal_loss_grad(Zc, S, Gc);

    using row_major = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
    const row_major Zr = Zc;
    // A K x N view with an inner stride: every other row of a 8 x 4 buffer.
    Eigen::MatrixXd big = Eigen::MatrixXd::Zero(8, 4);
    for (index_t k = 0; k < 4; ++k) big.row(2 * k) = Zc.row(k);
    const Eigen::Map<const Eigen::MatrixXd, 0, Eigen::Stride<8, 2>> Zs(big.data(), 4, 4);
    Eigen::MatrixXd wide = Eigen::MatrixXd::Zero(6, 7);
    wide.block(1, 2, 4, 4) = Zc;

    // Eigen allocates through its own aligned_malloc; with malloc forbidden, a copy of Z into a
    // temporary matrix would trip the assertion below (made to throw in this test file).
    Eigen::internal::set_is_malloc_allowed(false);
    const double l_row = mlnc::pal_loss(Zr, S);
    const double l_str = mlnc::pal_loss(Zs, S);
    const double l_blk = mlnc::pal_loss(wide.block(1, 2, 4, 4), S);
    Eigen::internal::set_is_malloc_allowed(true);
    // Eigen's vectorised exp may differ from the scalar one in the last bit, and which elements
    // take which path depends on the alignment of the column: equal to a few ulps.
    CHECK(l_row == Approx(ref).epsilon(1e-15));
    CHECK(l_str == Approx(ref).epsilon(1e-15));
    CHECK(l_blk == Approx(ref).epsilon(1e-15));

    // Gradients into row-major and block outputs, and in place in a row-major matrix.
    row_major Gr(4, 4);
    Eigen::MatrixXd gwide = Eigen::MatrixXd::Zero(6, 7);
    row_major Zin = Zr;
    Eigen::internal::set_is_malloc_allowed(false);
    const double l1 = mlnc::pal_loss_grad(Zc, S, Gr);
    const double l2 = mlnc::pal_loss_grad(Zr, S, gwide.block(1, 2, 4, 4));
    const double l3 = mlnc::pal_loss_grad_inplace(Zin, S);
    Eigen::internal::set_is_malloc_allowed(true);
    for (const double l : {l1, l2, l3}) CHECK(l == Approx(ref).epsilon(1e-15));
    CHECK((Eigen::MatrixXd(Gr) - Gc).cwiseAbs().maxCoeff() < 1e-16);
    CHECK((Eigen::MatrixXd(gwide.block(1, 2, 4, 4)) - Gc).cwiseAbs().maxCoeff() < 1e-16);
    CHECK((Eigen::MatrixXd(Zin) - Gc).cwiseAbs().maxCoeff() < 1e-16);
    CHECK(gwide.col(0).isZero());

    // An expression has no storage: it is evaluated once and gives the same value.
    CHECK(mlnc::pal_loss(Zc * 1.0, S) == Approx(ref).epsilon(1e-15));
}
