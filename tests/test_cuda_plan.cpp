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

TEST_CASE("fused column: held in lanes of a warp, a block or a cluster of blocks, else streamed", "[cuda_plan]") {
    using k = cp::fused_kernel;
    // 32 floats or 16 doubles a thread.
    CHECK(cp::cached_rows_per_thread(4) == 32);
    CHECK(cp::cached_rows_per_thread(8) == 16);
    CHECK_THROWS_AS(cp::cached_rows_per_thread(2), mlnc::error);
    // Lanes of a warp: the fewest (a power of two) that hold the column, 256-thread blocks.
    const auto one = cp::fused_launch(10, 1000, 4, true);
    CHECK(one.kind == k::cached_lanes);
    CHECK(one.lanes == 1);
    CHECK(one.threads == 256);
    CHECK(one.blocks == 4);  // 1000 columns, 256 a block
    CHECK(cp::fused_launch(32, 1, 4, true).lanes == 1);
    CHECK(cp::fused_launch(33, 1, 4, true).lanes == 2);
    CHECK(cp::fused_launch(17, 1, 8, true).lanes == 2);
    CHECK(cp::fused_launch(100, 1, 4, true).lanes == 4);
    const auto w = cp::fused_launch(1024, 17, 4, true);
    CHECK(w.kind == k::cached_lanes);
    CHECK(w.lanes == 32);
    CHECK(w.blocks == 3);  // 8 columns a block
    CHECK(cp::fused_launch(2, 0, 4, true).blocks == 0);
    CHECK(cp::fused_launch(513, 17, 8, true).kind == k::cached_block);
    // A block: the smallest power of two of threads from 64 whose shares hold the column, up to
    // 512 with clusters.
    const auto b = cp::fused_launch(1025, 17, 4, true);
    CHECK(b.kind == k::cached_block);
    CHECK(b.threads == 64);
    CHECK(b.blocks == 17);
    CHECK(cp::fused_launch(4097, 5, 4, true).threads == 256);
    CHECK(cp::fused_launch(16384, 5, 4, true).threads == 512);
    CHECK(cp::fused_launch(8192, 5, 8, true).threads == 512);
    // Clusters of 256-thread blocks of 8192 floats or 4096 doubles, up to 8 blocks.
    const auto c = cp::fused_launch(16385, 5, 4, true);
    CHECK(c.kind == k::cached_cluster);
    CHECK(c.threads == 256);
    CHECK(c.cluster == 3);
    CHECK(c.blocks == 15);
    CHECK(cp::fused_launch(32000, 5, 4, true).cluster == 4);
    CHECK(cp::fused_launch(65536, 5, 4, true).cluster == 8);
    CHECK(cp::fused_launch(8193, 5, 8, true).cluster == 3);
    CHECK(cp::fused_launch(32768, 5, 8, true).cluster == 8);
    CHECK(cp::fused_launch(65537, 5, 4, true).kind == k::streamed);
    CHECK(cp::fused_launch(32769, 5, 8, true).kind == k::streamed);
    // Without clusters: blocks of up to 1024 threads, then streamed.
    const auto nb = cp::fused_launch(32768, 5, 4, false);
    CHECK(nb.kind == k::cached_block);
    CHECK(nb.threads == 1024);
    CHECK(cp::fused_launch(32769, 5, 4, false).kind == k::streamed);
    CHECK(cp::fused_launch(16385, 5, 8, false).kind == k::streamed);
    const auto st = cp::fused_launch(100000, 5, 4, true);
    CHECK(st.threads == cp::column_launch(100000, 5).threads);
    CHECK(st.blocks == 5);
    CHECK_THROWS_AS(cp::fused_launch(0, 1, 4, true), mlnc::error);
}

TEST_CASE("fused column: the pipelined block for double columns past 64 KiB that a block holds, where the stage fits",
          "[cuda_plan]") {
    using k = cp::fused_kernel;
    const std::size_t h200 = 232448 - 512;  // an H100/H200's opt-in shared memory less the scratch
    // Up to 64 KiB a column, and in float: as without a stage.
    CHECK(cp::fused_launch(8192, 5, 8, true, h200).kind == k::cached_block);
    CHECK(cp::fused_launch(16384, 5, 4, true, h200).kind == k::cached_block);
    CHECK(cp::fused_launch(32000, 5, 4, true, h200).kind == k::cached_cluster);
    CHECK(cp::fused_launch(100, 5, 8, true, h200).kind == k::cached_lanes);
    // Past it, up to 16384 doubles: 512 threads, at most as many blocks as columns.
    const auto p = cp::fused_launch(8193, 5000, 8, true, h200);
    CHECK(p.kind == k::pipelined_block);
    CHECK(p.threads == cp::pipelined_threads);
    CHECK(p.blocks == 5000);
    CHECK(cp::fused_launch(16384, 5, 8, true, h200).kind == k::pipelined_block);
    CHECK(cp::fused_launch(16384, 5, 8, false, h200).kind == k::pipelined_block);
    // Longer: clusters (or streamed), as without a stage.
    CHECK(cp::fused_launch(16385, 5, 8, true, h200).kind == k::cached_cluster);
    CHECK(cp::fused_launch(16385, 5, 8, false, h200).kind == k::streamed);
    // A stage too small for the column (a device with less shared memory), or none (memory not
    // aligned): the kinds of before.
    CHECK(cp::fused_launch(16384, 5, 8, true, 100 * 1024).kind == k::cached_cluster);
    CHECK(cp::fused_launch(12000, 5, 8, true, 100 * 1024).kind == k::pipelined_block);
    CHECK(cp::fused_launch(12000, 5, 8, true, 0).kind == k::cached_cluster);
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
