#pragma once
// The host-side decisions of the CUDA backend, in plain C++ (no CUDA header) so that CPU tests
// check them: the launch shape of the column kernels, the chunk and class-tile plan of the
// objective, and the packing of a non-finite logit's position into the device status word.

#include <mlnc/config.hpp>
#include <mlnc/error.hpp>
#include <mlnc/types.hpp>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <string>

namespace mlnc::cuda_plan {

// Columns of at most this many logits get one warp each (8 columns per 256-thread block), as
// PyTorch's persistent softmax does up to 1024; longer columns get a block of block_threads.
inline constexpr index_t warp_max_rows = 1024;
inline constexpr int warp_block_threads = 256;
inline constexpr int columns_per_warp_block = warp_block_threads / 32;
inline constexpr int block_threads = 512;

struct launch_shape {
    bool warp_per_column = true;
    int threads = 0;       // per block
    index_t blocks = 0;    // grid size (x); 0 when there are no columns
};

inline launch_shape column_launch(index_t rows, index_t cols) {
    detail::require(rows >= 1 && cols >= 0, "column_launch", "needs rows >= 1 and cols >= 0");
    if (rows <= warp_max_rows)
        return {true, warp_block_threads, (cols + columns_per_warp_block - 1) / columns_per_warp_block};
    return {false, block_threads, cols};
}

// The fused column (loss and gradient of whole columns) holds its column in registers when the
// column fits: each thread keeps cache_bytes_per_thread bytes (R = 32 floats or 16 doubles, read
// as 16-byte vectors when the memory is aligned), so Z is read once from memory and the gradient
// written from the registers. Chosen by measurement on an H200 (docs/performance.md, "GPU"):
//  - Columns of up to 32 R rows get a group of L lanes of a warp, L the smallest power of two
//    with L R >= K (32 / L columns a warp, 256-thread blocks): one lane holds a column of 10.
//  - Longer ones a block of the smallest power of two of threads, from 64, whose shares hold the
//    column: up to cached_block_threads_with_clusters where thread-block clusters exist
//    (compute capability 9.0), else up to cached_block_max_threads.
//  - With clusters, longer columns still get a cluster of up to cluster_max_blocks blocks of
//    cluster_threads, each block an equal part of the column (65536 floats or 32768 doubles at
//    most). Blocks of 1024 threads leave one column in flight on a multiprocessor (64 registers
//    a thread), whose reductions then stall its reads and writes; a cluster of 256-thread blocks
//    keeps parts of several columns in flight.
//  - Longer columns take the streamed kernels of column_launch, which read the column twice (the
//    second time from cache).
//  - Double columns of more than pipelined_min_bytes that a block of 1024 threads would hold
//    (16384 doubles) take, where the memory is 16-byte aligned and the device lets a block stage
//    the column in shared memory (stage_bytes), the pipelined block instead: a persistent block of
//    512 threads holding 32 doubles each, which copies its next column into shared memory
//    (cp.async) while it reduces and writes the one in its registers. On an H200 it took 0.192 ms
//    at K = 16384 where the cluster took 0.233 and a block of 1024 threads 0.239. It lost
//    elsewhere: double K = 8192 (0.212 against the block's 0.187), and in float, where 1024
//    threads of 32 floats spill their registers (K = 32000: 0.358 against the cluster's 0.259).
inline constexpr int cache_bytes_per_thread = 128;
inline constexpr std::size_t pipelined_min_bytes = 64 * 1024;
inline constexpr int pipelined_threads = 512;  // each holding 2 cached_rows_per_thread
inline constexpr int cached_block_max_threads = 1024;
inline constexpr int cached_block_threads_with_clusters = 512;
inline constexpr int cluster_threads = 256;
inline constexpr int cluster_max_threads = 512;  // the cluster kernel's limit (__launch_bounds__)
inline constexpr int cluster_max_blocks = 8;     // the portable cluster size

enum class fused_kernel { cached_lanes, cached_block, cached_cluster, pipelined_block, streamed };

struct fused_shape {
    fused_kernel kind = fused_kernel::streamed;
    int threads = 0;     // per block
    index_t blocks = 0;  // grid size (x); pipelined_block: at most this many (the launch takes
                         // as many as the device holds at once)
    int lanes = 32;      // cached_lanes: lanes per column
    int cluster = 1;     // cached_cluster: blocks per cluster, one column per cluster
};

inline index_t cached_rows_per_thread(std::size_t scalar_bytes) {
    detail::require(scalar_bytes == 4 || scalar_bytes == 8, "scalar_bytes", "must be 4 (float) or 8 (double)");
    return cache_bytes_per_thread / static_cast<index_t>(scalar_bytes);
}

// stage_bytes: the shared memory a block of the pipelined kernel may stage a column in (the
// device's opt-in limit), 0 where it may not run (memory not 16-byte aligned).
inline fused_shape fused_launch(index_t rows, index_t cols, std::size_t scalar_bytes, bool clusters,
                                std::size_t stage_bytes = 0) {
    detail::require(rows >= 1 && cols >= 0, "fused_launch", "needs rows >= 1 and cols >= 0");
    const index_t per_thread = cached_rows_per_thread(scalar_bytes);
    fused_shape sh;
    const auto bytes = static_cast<std::size_t>(rows) * scalar_bytes;
    if (scalar_bytes == 8 && bytes > pipelined_min_bytes && bytes <= stage_bytes &&
        rows <= cached_block_max_threads * per_thread) {
        sh.kind = fused_kernel::pipelined_block;
        sh.threads = pipelined_threads;
        sh.blocks = cols;
        return sh;
    }
    if (rows <= 32 * per_thread) {
        sh.kind = fused_kernel::cached_lanes;
        sh.lanes = 1;
        while (sh.lanes * per_thread < rows) sh.lanes *= 2;
        sh.threads = warp_block_threads;
        sh.blocks = (cols * sh.lanes + warp_block_threads - 1) / warp_block_threads;
        return sh;
    }
    const int block_max = clusters ? cached_block_threads_with_clusters : cached_block_max_threads;
    if (rows <= block_max * per_thread) {
        sh.kind = fused_kernel::cached_block;
        sh.threads = 64;
        while (sh.threads * per_thread < rows) sh.threads *= 2;
        sh.blocks = cols;
        return sh;
    }
    const index_t part = cluster_threads * per_thread;
    if (clusters && rows <= cluster_max_blocks * part) {
        sh.kind = fused_kernel::cached_cluster;
        sh.cluster = static_cast<int>((rows + part - 1) / part);
        sh.threads = cluster_threads;
        sh.blocks = cols * sh.cluster;
        return sh;
    }
    const launch_shape s = column_launch(rows, cols);
    sh.threads = s.threads;
    sh.blocks = s.blocks;
    return sh;
}

// The objective's plan for n samples and K classes: chunks of `chunk` columns; when even a chunk
// of min_chunk columns of all K logits would exceed the workspace, the classes are tiled too
// (rows [k0, k0 + tile) at a time: pass 1 merges each tile's log-sum-exp, pass 2 recomputes the
// tile's logits and writes its gradient from the merged one).
inline constexpr index_t min_chunk = 128;

struct objective_plan {
    index_t chunk = 0;  // columns per chunk
    index_t tile = 0;   // rows per class tile (== K: untiled)
    bool tiled(index_t K) const noexcept { return tile < K; }
    index_t workspace_entries() const noexcept { return chunk * tile; }
};

inline objective_plan plan_objective(index_t K, index_t n, std::size_t scalar_bytes, std::size_t workspace_bytes) {
    detail::require(K >= 1 && n >= 1, "plan_objective", "needs K >= 1 and n >= 1");
    detail::require(workspace_bytes >= scalar_bytes, "workspace_bytes", "must hold at least one logit");
    const double budget = static_cast<double>(workspace_bytes) / static_cast<double>(scalar_bytes);  // entries
    const auto fit = static_cast<index_t>(std::min(static_cast<double>(n), budget / static_cast<double>(K)));
    if (fit >= std::min(n, min_chunk)) return {fit, K};
    const index_t chunk = std::min(n, min_chunk);
    const auto tile = static_cast<index_t>(std::max(1.0, budget / static_cast<double>(chunk)));
    return {chunk, std::min(tile, K)};
}

// The device status word: the first non-finite logit (column order) as (col << 31) | row, so the
// smallest word is the first position (atomicMin); all ones = none. K < 2^31 (label_t), N < 2^33.
inline constexpr std::uint64_t no_position = std::numeric_limits<std::uint64_t>::max();
MLNC_HOST_DEVICE constexpr std::uint64_t pack_position(std::uint64_t row, std::uint64_t col) noexcept { return (col << 31) | row; }
constexpr index_t position_row(std::uint64_t w) noexcept { return static_cast<index_t>(w & ((std::uint64_t{1} << 31) - 1)); }
constexpr index_t position_col(std::uint64_t w) noexcept { return static_cast<index_t>(w >> 31); }

}  // namespace mlnc::cuda_plan
