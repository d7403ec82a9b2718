#pragma once
// Threads of the CPU engine: OpenMP when the program is compiled with it (link mlnc::openmp, or
// add -fopenmp yourself), else everything runs on the calling thread with the same results.
// Work is split into one contiguous range per thread (parallel_ranges), or into pieces that threads
// claim as they come free (parallel_pieces), and partial results are combined in range or piece
// order, so a result depends on the ranges or pieces only, never on scheduling.

#include <mlnc/types.hpp>

#include <algorithm>
#include <atomic>
#include <exception>
#include <vector>

#if defined(_OPENMP)
#include <omp.h>
#endif

namespace mlnc::detail {

// True when this program was compiled with OpenMP (cpu::threads is then honoured).
inline constexpr bool openmp_enabled =
#if defined(_OPENMP)
    true;
#else
    false;
#endif

// The threads to use for `work` units over `items` independent items, with `requested` as in
// cpu::threads (0 = all, omp_get_max_threads()). One thread without OpenMP, inside a parallel
// region of the caller (no nested teams, no oversubscription), or when there is less than
// min_work_per_thread per thread.
inline int team_size(int requested, double work, double min_work_per_thread, index_t items) noexcept {
#if defined(_OPENMP)
    if (omp_in_parallel()) return 1;
    long t = requested > 0 ? requested : omp_get_max_threads();
    t = std::min<long>(t, static_cast<long>(std::min<index_t>(items, 1 << 20)));
    t = std::min<long>(t, static_cast<long>(std::max(1.0, work / min_work_per_thread)));
    return static_cast<int>(std::max<long>(t, 1));
#else
    (void)requested;
    (void)work;
    (void)min_work_per_thread;
    (void)items;
    return 1;
#endif
}

// The start of range t of [0, n) split into nt contiguous, near-equal ranges that start at
// multiples of grain (t = nt gives n).
inline index_t range_begin(int t, int nt, index_t n, index_t grain = 1) noexcept {
    if (t >= nt) return n;
    const auto b = static_cast<index_t>(static_cast<double>(n) * t / nt);
    return std::min(n, b / grain * grain);
}

// Calls f(t, begin, end) for every range t < nt of [0, n) (range_begin), on up to nt threads. An
// exception thrown by f stops nothing else; the one of the lowest t is rethrown once all are done.
template <class F>
void parallel_ranges(int nt, index_t n, index_t grain, F&& f) {
    std::vector<std::exception_ptr> errors(static_cast<std::size_t>(nt));
    const auto run = [&](int t) {
        try {
            f(t, range_begin(t, nt, n, grain), range_begin(t + 1, nt, n, grain));
        } catch (...) {
            errors[static_cast<std::size_t>(t)] = std::current_exception();
        }
    };
#if defined(_OPENMP)
#pragma omp parallel for num_threads(nt) schedule(static, 1)
    for (int t = 0; t < nt; ++t) run(t);
#else
    for (int t = 0; t < nt; ++t) run(t);
#endif
    for (const std::exception_ptr& e : errors)
        if (e) std::rethrow_exception(e);
}

// Calls f(t, p, q) for every piece p < np on up to nt threads: t is the calling thread's number (<
// nt: per-thread workspaces). Pieces are claimed in order as threads come free, so a thread that
// the machine slows takes fewer of them; a result combined in piece order depends on the pieces
// only. With `ahead`, a thread claims its next piece when it starts one and q is that piece (np if
// none), so that p's end can prefetch q's data; the price is that a thread descheduled in the
// middle of p holds q too. Without, q is -1 (not known). An exception thrown by f stops nothing
// else; the one of the lowest p is rethrown once all are done.
template <class F>
void parallel_pieces(int nt, index_t np, bool ahead, F&& f) {
    std::vector<std::exception_ptr> errors(static_cast<std::size_t>(np));
    const auto run = [&](int t, index_t p, index_t q) {
        try {
            f(t, p, q);
        } catch (...) {
            errors[static_cast<std::size_t>(p)] = std::current_exception();
        }
    };
#if defined(_OPENMP)
    std::atomic<index_t> claimed{0};
#pragma omp parallel num_threads(nt)
    {
        const int t = omp_get_thread_num();
        index_t p = claimed.fetch_add(1, std::memory_order_relaxed);
        while (p < np) {
            if (ahead) {
                const index_t q = std::min(claimed.fetch_add(1, std::memory_order_relaxed), np);
                run(t, p, q);
                p = q;
            } else {
                run(t, p, -1);
                p = claimed.fetch_add(1, std::memory_order_relaxed);
            }
        }
    }
#else
    (void)nt;
    for (index_t p = 0; p < np; ++p) run(0, p, ahead ? p + 1 : -1);
#endif
    for (const std::exception_ptr& e : errors)
        if (e) std::rethrow_exception(e);
}

// Eigen's matrix products run on OpenMP's team size of the calling thread (omp_get_max_threads(),
// unless the program called Eigen::setNbThreads). This sets that team size to `threads` (0:
// unchanged) for the calling thread only, for the scope of the object.
class gemm_threads {
public:
    explicit gemm_threads(int threads) noexcept {
#if defined(_OPENMP)
        if (threads > 0 && !omp_in_parallel()) {
            saved_ = omp_get_max_threads();
            omp_set_num_threads(threads);
        }
#else
        (void)threads;
#endif
    }
    ~gemm_threads() {
#if defined(_OPENMP)
        if (saved_ > 0) omp_set_num_threads(saved_);
#endif
    }
    gemm_threads(const gemm_threads&) = delete;
    gemm_threads& operator=(const gemm_threads&) = delete;

private:
    int saved_ = 0;
};

}  // namespace mlnc::detail
