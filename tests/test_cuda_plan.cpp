// The host-side decisions of the CUDA backend (mlnc/cuda/plan.hpp, mlnc/cuda/view.hpp): plain
// C++, tested on every machine, GPU or not.
#include <mlnc/backend.hpp>
#include <mlnc/cuda/plan.hpp>
#include <mlnc/cuda/view.hpp>

#include <catch2/catch.hpp>

#include <cstdint>

namespace cp = mlnc::cuda_plan;
using mlnc::index_t;

TEST_CASE("column kernels: a warp per column up to 1024 rows, a block above", "[cuda_plan]") {
    const auto w = cp::column_launch(1024, 17);
    CHECK(w.warp_per_column);
    CHECK(w.threads == 256);
    CHECK(w.blocks == 3);  // 8 columns per block
    CHECK(cp::column_launch(2, 8).blocks == 1);
    CHECK(cp::column_launch(2, 0).blocks == 0);
    const auto b = cp::column_launch(1025, 17);
    CHECK_FALSE(b.warp_per_column);
    CHECK(b.threads == 512);
    CHECK(b.blocks == 17);
    CHECK_THROWS_AS(cp::column_launch(0, 1), mlnc::error);
}

TEST_CASE("objective plan: chunks of columns, class tiles only when a chunk cannot hold K", "[cuda_plan]") {
    // K = 32000 floats, 64 MiB: 524 columns per chunk, untiled.
    const auto p = cp::plan_objective(32000, 8192, 4, std::size_t{64} << 20);
    CHECK(p.chunk == (std::int64_t{64} << 20) / (4 * 32000));
    CHECK(p.tile == 32000);
    CHECK_FALSE(p.tiled(32000));
    // All of n fits: one chunk.
    CHECK(cp::plan_objective(10, 7, 8, 1 << 20).chunk == 7);
    // K = 10^6 doubles, 64 MiB: 8 columns fit, fewer than min_chunk: tiles of 128 columns.
    const auto t = cp::plan_objective(1000000, 8192, 8, std::size_t{64} << 20);
    CHECK(t.chunk == cp::min_chunk);
    CHECK(t.tile == (std::int64_t{64} << 20) / (8 * cp::min_chunk));
    CHECK(t.tiled(1000000));
    CHECK(t.workspace_entries() * 8 <= (std::int64_t{64} << 20));
    // A small n is never tiled for lack of columns: the chunk needs only n of them.
    const auto s = cp::plan_objective(1000, 3, 4, 3 * 1000 * 4);
    CHECK(s.chunk == 3);
    CHECK_FALSE(s.tiled(1000));
    // The smallest workspace: one row of one chunk.
    const auto m = cp::plan_objective(1000, 500, 4, 4);
    CHECK(m.chunk == cp::min_chunk);
    CHECK(m.tile == 1);
    CHECK_THROWS_AS(cp::plan_objective(1000, 500, 8, 4), mlnc::error);
}

TEST_CASE("status word: first non-finite position in column order", "[cuda_plan]") {
    const auto a = cp::pack_position(5, 2), b = cp::pack_position(0, 3), c = cp::pack_position((1u << 31) - 1, 2);
    CHECK(a < b);
    CHECK(c < b);
    CHECK(a < c);
    CHECK(cp::position_row(c) == (index_t{1} << 31) - 1);
    CHECK(cp::position_col(c) == 2);
    CHECK(cp::position_row(cp::pack_position(7, 8000000000)) == 7);
    CHECK(cp::position_col(cp::pack_position(7, 8000000000)) == 8000000000);
    CHECK(cp::pack_position(0, 0) < cp::no_position);
}

TEST_CASE("device views: column-major with a leading dimension; PyTorch row-major as its transpose", "[cuda_plan]") {
    float* p = reinterpret_cast<float*>(std::uintptr_t{4096});  // never dereferenced on the host
    const mlnc::device_matrix_view<float> v(p, 3, 4, 5);
    CHECK(v.middle_cols(1, 2).data == p + 5);
    CHECK(v.middle_rows(1, 2).data == p + 1);
    CHECK(v.middle_rows(1, 2).ld == 5);
    const mlnc::device_matrix_view<const float> c = v;
    CHECK(c.data == p);
    const auto t = mlnc::device_matrix_view<float>::of_row_major(p, 8, 1000);  // torch (N, K) = (8, 1000)
    CHECK(t.rows == 1000);
    CHECK(t.cols == 8);
    CHECK(t.ld == 1000);
    CHECK_THROWS_WITH(mlnc::device_matrix_view<float>(p, 3, 4, 2),
                      "device_matrix_view: leading dimension 2 is smaller than the 3 rows");
    CHECK_THROWS_AS(mlnc::device_matrix_view<float>(nullptr, 3, 4), mlnc::error);
    CHECK_THROWS_AS(mlnc::device_vector_view<float>(p, -1), mlnc::error);
}

TEST_CASE("capability table: the CUDA backend's row means the same in every translation unit", "[cuda_plan]") {
    using cuda_row = mlnc::backend_traits<mlnc::cuda>;
    STATIC_REQUIRE(cuda_row::pal_loss);
    STATIC_REQUIRE(cuda_row::objective);
    STATIC_REQUIRE_FALSE(cuda_row::host_memory);
    STATIC_REQUIRE_FALSE(cuda_row::predictors);
    STATIC_REQUIRE(cuda_row::compiled_in == (MLNC_WITH_CUDA != 0));  // the build's setting, never the compiler's
    STATIC_REQUIRE(mlnc::backend<mlnc::cuda_backend>);
}
