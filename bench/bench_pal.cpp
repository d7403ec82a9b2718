// Microbenchmarks of the PAL-CE kernels (CPU backend), templated over the scalar type; the last
// argument of each is the thread count (cpu{threads}). Every kernel is paired with a memory-copy
// reference over the same bytes on as many threads (Copy/K/N/threads) so that the ratio
// kernel_time / copy_time is comparable across machines; bench/compare.py prints it.

#include <mlnc/objective.hpp>
#include <mlnc/pal.hpp>

#include <benchmark/benchmark.h>

#include <cstring>
#include <random>

#if defined(_OPENMP)
#include <omp.h>
#endif

namespace {

mlnc::label_sets bench_labels(mlnc::index_t K, mlnc::index_t N) {
    std::mt19937_64 rng(1);
    std::vector<std::vector<mlnc::index_t>> sets(static_cast<std::size_t>(N));
    for (auto& s : sets) {
        const auto m = 1 + static_cast<mlnc::index_t>(rng() % 3);
        while (static_cast<mlnc::index_t>(s.size()) < m) {
            const auto k = static_cast<mlnc::index_t>(rng() % static_cast<std::uint64_t>(K));
            if (std::find(s.begin(), s.end(), k) == s.end()) s.push_back(k);
        }
    }
    return mlnc::label_sets::from_lists(sets, K);
}

template <class T>
mlnc::matrix<T> bench_logits(mlnc::index_t K, mlnc::index_t N) {
    return (mlnc::matrix<T>::Random(K, N) * T(4)).eval();
}

template <class T>
void set_counters(benchmark::State& st, mlnc::index_t K, mlnc::index_t N, int passes) {
    st.SetBytesProcessed(static_cast<std::int64_t>(st.iterations()) * K * N * static_cast<std::int64_t>(sizeof(T)) * passes);
    st.counters["K"] = static_cast<double>(K);
    st.counters["N"] = static_cast<double>(N);
}

// Reference: read and write K x N scalars (what an ideal in-place gradient pass moves), on
// `threads` threads each copying one contiguous range.
template <class T>
void Copy(benchmark::State& st) {
    const auto K = st.range(0), N = st.range(1);
    const int threads = static_cast<int>(st.range(2));
    const mlnc::matrix<T> a = bench_logits<T>(K, N);
    mlnc::matrix<T> b = mlnc::matrix<T>::Zero(K, N);  // touched: no page faults in the timing
    const auto n = static_cast<std::size_t>(K * N);
    for (auto _ : st) {
#if defined(_OPENMP)
#pragma omp parallel for num_threads(threads) schedule(static, 1)
#endif
        for (int t = 0; t < threads; ++t) {
            const std::size_t lo = n * static_cast<std::size_t>(t) / static_cast<std::size_t>(threads);
            const std::size_t hi = n * static_cast<std::size_t>(t + 1) / static_cast<std::size_t>(threads);
            std::memcpy(b.data() + lo, a.data() + lo, sizeof(T) * (hi - lo));
        }
        benchmark::DoNotOptimize(b.data());
        benchmark::ClobberMemory();
    }
    set_counters<T>(st, K, N, 2);
}

// Reference of the machine's arithmetic: 12 independent chains of packet multiply-adds in
// registers (no memory), 2^22 steps each, on every one of `threads` threads. Each thread does the
// same work, so the real time at 2 threads equals that at 1 where the two cores are whole; above
// it, the second thread slows the first (shared or slowed cores), and a kernel bound by its
// arithmetic gains less than 2x from it.
void FmaChains(benchmark::State& st) {
    namespace ei = Eigen::internal;
    using packet = ei::packet_traits<float>::type;
    constexpr int chains = 12;
    constexpr long steps = 1L << 22;
    const int threads = static_cast<int>(st.range(0));
    for (auto _ : st) {
#if defined(_OPENMP)
#pragma omp parallel num_threads(threads)
#endif
        {
            packet a[chains];
            for (int j = 0; j < chains; ++j) a[j] = ei::pset1<packet>(1.0f + 1e-3f * static_cast<float>(j));
            const packet m = ei::pset1<packet>(0.999999f), c = ei::pset1<packet>(1e-7f);
            for (long i = 0; i < steps; ++i)
                for (int j = 0; j < chains; ++j) a[j] = ei::pmadd(a[j], m, c);
            benchmark::DoNotOptimize(a);
        }
    }
    st.counters["packets_per_thread"] = benchmark::Counter(static_cast<double>(steps * chains) *
                                                               static_cast<double>(st.iterations()),
                                                           benchmark::Counter::kIsRate);
}

// The rule for streaming a gradient written out of place (gradient_write_of in
// include/mlnc/cpu/pal_kernels.hpp): b = 1.0001 a over `bytes` of floats by ordinary packet stores
// (stream = 0) or by the kernel's streaming stores (stream = 1), then b read back and summed, as
// the gradient's reader would. One thread. Streaming pays where the write's saving exceeds what
// the read loses by finding b in memory rather than in cache.
void StoreThenRead(benchmark::State& st) {
    namespace ei = Eigen::internal;
    using sweeps = mlnc::cpu_kernels::column_sweeps<float>;
    using packet = sweeps::packet;
    constexpr Eigen::Index L = sweeps::L;
    const Eigen::Index n = st.range(0) / static_cast<Eigen::Index>(sizeof(float)) / L * L;
    const bool stream = st.range(1) != 0;
    const mlnc::vector<float> a = mlnc::vector<float>::Random(n);
    mlnc::vector<float> b = mlnc::vector<float>::Zero(n);  // Eigen's allocation: aligned for the packets
    const packet s = ei::pset1<packet>(1.0001f);
    for (auto _ : st) {
        for (Eigen::Index k = 0; k < n; k += L) {
            const packet x = ei::pmul(ei::pload<packet>(a.data() + k), s);
            if (stream)
                sweeps::stream(b.data() + k, x);
            else
                ei::pstore(b.data() + k, x);
        }
        if (stream) sweeps::stream_fence();
        packet acc = ei::pzero(s);
        for (Eigen::Index k = 0; k < n; k += L) acc = ei::padd(acc, ei::pload<packet>(b.data() + k));
        benchmark::DoNotOptimize(ei::predux(acc));
        benchmark::ClobberMemory();
    }
    st.counters["MB"] = static_cast<double>(st.range(0)) / (1024.0 * 1024.0);
}

template <class T>
void PalLoss(benchmark::State& st) {
    const auto K = st.range(0), N = st.range(1);
    const auto S = bench_labels(K, N);
    const mlnc::matrix<T> Z = bench_logits<T>(K, N);
    const mlnc::cpu be{static_cast<int>(st.range(2))};
    for (auto _ : st) benchmark::DoNotOptimize(mlnc::pal_loss(be, Z, S));
    set_counters<T>(st, K, N, 1);
}

template <class T>
void PalLossGrad(benchmark::State& st) {
    const auto K = st.range(0), N = st.range(1);
    const auto S = bench_labels(K, N);
    const mlnc::matrix<T> Z = bench_logits<T>(K, N);
    mlnc::matrix<T> G = mlnc::matrix<T>::Zero(K, N);
    const mlnc::cpu be{static_cast<int>(st.range(2))};
    for (auto _ : st) {
        benchmark::DoNotOptimize(mlnc::pal_loss_grad(be, Z, S, G));
        benchmark::ClobberMemory();
    }
    set_counters<T>(st, K, N, 2);
}

// The gradient over the logits (Z read, G written in the same place): what the objective does.
template <class T>
void PalLossGradInPlace(benchmark::State& st) {
    const auto K = st.range(0), N = st.range(1);
    const auto S = bench_labels(K, N);
    mlnc::matrix<T> Z = bench_logits<T>(K, N);
    const mlnc::cpu be{static_cast<int>(st.range(2))};
    for (auto _ : st) {
        benchmark::DoNotOptimize(mlnc::pal_loss_grad_inplace(be, Z, S));
        benchmark::ClobberMemory();
    }
    set_counters<T>(st, K, N, 2);
}

// The small-K path across K, serial: at the smallest K it takes several blocks of samples by one
// call, and these chose up to which K (docs/performance.md, MLNC_BLOCK_GROUP_K_MAX).
template <class T>
void SmallKLoss(benchmark::State& st) {
    PalLoss<T>(st);
}

template <class T>
void SmallKLossGrad(benchmark::State& st) {
    PalLossGrad<T>(st);
}

// Long columns across K (about 6.5 10^6 logits each), serial: past L1, a column prefetches the
// next into L2 where the live columns fit there, and these chose that rule (docs/performance.md,
// MLNC_PREFETCH_L2).
template <class T>
void LargeKLoss(benchmark::State& st) {
    PalLoss<T>(st);
}

template <class T>
void LargeKLossGrad(benchmark::State& st) {
    PalLossGrad<T>(st);
}

template <class T>
void LargeKLossGradInPlace(benchmark::State& st) {
    PalLossGradInPlace<T>(st);
}

// Columns past the small-K blocks and up to a few hundred logits (about 10^6 logits each: 4 MB in
// float, as the shape K = 100, N = 10^4), serial: these go by panels of L columns, and these chose
// up to which K (docs/performance.md, MLNC_PANEL_K_MAX).
template <class T>
void PanelKLoss(benchmark::State& st) {
    PalLoss<T>(st);
}

template <class T>
void PanelKLossGrad(benchmark::State& st) {
    PalLossGrad<T>(st);
}

// Out of place from short columns to long (about 6.5 10^6 logits each: G 26 MB in float, past
// 6 x L2 on most machines), serial: such a G is streamed where its columns pass 2 KB, and these measured
// that rule against MLNC_STREAM_GRADIENT=0 (docs/performance.md).
template <class T>
void MidKLossGrad(benchmark::State& st) {
    PalLossGrad<T>(st);
}

template <class T>
void Objective(benchmark::State& st) {
    const auto K = st.range(0), N = st.range(1), d = st.range(2);
    const auto S = bench_labels(K, N);
    const mlnc::matrix<T> W = mlnc::matrix<T>::Random(K, d), H = mlnc::matrix<T>::Random(d, N);
    const mlnc::vector<T> b = mlnc::vector<T>::Random(K);
    mlnc::matrix<T> dW(K, d), dH(d, N);
    mlnc::vector<T> db(K);
    mlnc::pal_objective<T> obj(S, {1e-3, 1e-3, 1e-3});
    for (auto _ : st) {
        benchmark::DoNotOptimize(obj.evaluate(W, H, b, dW, dH, db).total);
        benchmark::ClobberMemory();
    }
    st.counters["K"] = static_cast<double>(K);
    st.counters["N"] = static_cast<double>(N);
    st.counters["d"] = static_cast<double>(d);
    // Three GEMMs of 2 K d N flops each.
    st.counters["GFLOPs"] = benchmark::Counter(6.0 * static_cast<double>(K * d * N) * static_cast<double>(st.iterations()),
                                               benchmark::Counter::kIsRate, benchmark::Counter::kIs1000);
}

// The kernels' exp alone, one thread: exp(x) of 4096 logits x <= 0 (in L1) stored to a second
// array of 4096, as the gradient stores its exps; a floor for any kernel that forms all K N
// probabilities (docs/performance.md, targets). Counter ns_per_logit.
template <class T>
void KernelExp(benchmark::State& st) {
    namespace ei = Eigen::internal;
    using packet = typename mlnc::cpu_kernels::column_sweeps<T>::packet;
    constexpr int L = static_cast<int>(mlnc::cpu_kernels::column_sweeps<T>::L);
    constexpr int n = 4096;
    alignas(64) static T x[n], y[n];
    std::mt19937_64 rng(1);
    std::uniform_real_distribution<double> u(-30.0, 0.0);
    for (auto& v : x) v = static_cast<T>(u(rng));
    for (auto _ : st) {
        for (int i = 0; i < n; i += L)
            ei::pstore(y + i, mlnc::cpu_kernels::pexp_nonpositive(ei::pload<packet>(x + i)));
        benchmark::DoNotOptimize(y);
        benchmark::ClobberMemory();
    }
    st.counters["ns_per_logit"] = benchmark::Counter(static_cast<double>(n) * static_cast<double>(st.iterations()),
                                                     benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
}

// The shapes of docs/performance.md, serial and on 2 threads.
// The reference of the objective: the same three full-size products (Z = W H, dW = Z H^T,
// dH = W^T Z) measured alone, on Eigen's threads (OpenMP's default team).
template <class T>
void Gemm3(benchmark::State& st) {
    const auto K = st.range(0), N = st.range(1), d = st.range(2);
    const mlnc::matrix<T> W = mlnc::matrix<T>::Random(K, d), H = mlnc::matrix<T>::Random(d, N);
    mlnc::matrix<T> Z(K, N), dW(K, d), dH(d, N);
    for (auto _ : st) {
        Z.noalias() = W * H;
        dW.noalias() = Z * H.transpose();
        dH.noalias() = W.transpose() * Z;
        benchmark::DoNotOptimize(dH.data());
        benchmark::ClobberMemory();
    }
    st.counters["GFLOPs"] = benchmark::Counter(6.0 * static_cast<double>(K * d * N) * static_cast<double>(st.iterations()),
                                               benchmark::Counter::kIsRate, benchmark::Counter::kIs1000);
}

void shapes(benchmark::internal::Benchmark* b) {
    for (const int threads : {1, 2})
        for (const auto& [K, N] : {std::pair<int, int>{10, 100000}, {100, 10000}, {1000, 4096}, {100000, 64}})
            b->Args({K, N, threads});
    b->Unit(benchmark::kMicrosecond)->UseRealTime();
}
void small_k(benchmark::internal::Benchmark* b) {
    for (const int K : {3, 6, 10, 12, 16, 20, 24, 32, 33, 38, 40, 48, 49, 64}) b->Args({K, 100000, 1});
    b->Unit(benchmark::kMicrosecond)->UseRealTime();
}
void large_k(benchmark::internal::Benchmark* b) {
    for (const int K : {4096, 10000, 30000, 100000, 200000, 500000}) b->Args({K, 6553600 / K, 1});
    b->Unit(benchmark::kMicrosecond)->UseRealTime();
}
void panel_k(benchmark::internal::Benchmark* b) {
    for (const int K : {33, 40, 49, 64, 100, 128, 129, 200, 256, 257}) b->Args({K, 1000000 / K, 1});
    b->Unit(benchmark::kMicrosecond)->UseRealTime();
}
void mid_k(benchmark::internal::Benchmark* b) {
    for (const int K : {33, 64, 100, 256, 1000, 4096}) b->Args({K, 6553600 / K, 1});
    b->Unit(benchmark::kMicrosecond)->UseRealTime();
}
// The bandwidth target: K = 1000, N = 65 536 (256 MB in float, out of cache).
void big(benchmark::internal::Benchmark* b) {
    b->Args({1000, 65536, 1})->Args({1000, 65536, 2})->Unit(benchmark::kMicrosecond)->UseRealTime();
}

}  // namespace

BENCHMARK(FmaChains)->Arg(1)->Arg(2)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_TEMPLATE(KernelExp, float)->Unit(benchmark::kNanosecond)->UseRealTime();
BENCHMARK_TEMPLATE(KernelExp, double)->Unit(benchmark::kNanosecond)->UseRealTime();
BENCHMARK(StoreThenRead)
    ->ArgsProduct({{1 << 19, 1 << 20, 1 << 21, 1 << 22, 1 << 23, 1 << 24, 1 << 25}, {0, 1}})
    ->Unit(benchmark::kMicrosecond)
    ->UseRealTime();
BENCHMARK_TEMPLATE(Copy, float)->Apply(shapes)->Apply(big);
BENCHMARK_TEMPLATE(PalLoss, float)->Apply(shapes);
BENCHMARK_TEMPLATE(PalLossGrad, float)->Apply(shapes);
BENCHMARK_TEMPLATE(PalLossGradInPlace, float)->Apply(shapes)->Apply(big);
BENCHMARK_TEMPLATE(Copy, double)->Apply(shapes);
BENCHMARK_TEMPLATE(PalLoss, double)->Apply(shapes);
BENCHMARK_TEMPLATE(PalLossGrad, double)->Apply(shapes);
BENCHMARK_TEMPLATE(PalLossGradInPlace, double)->Apply(shapes);
BENCHMARK_TEMPLATE(SmallKLoss, float)->Apply(small_k);
BENCHMARK_TEMPLATE(SmallKLossGrad, float)->Apply(small_k);
BENCHMARK_TEMPLATE(SmallKLoss, double)->Apply(small_k);
BENCHMARK_TEMPLATE(SmallKLossGrad, double)->Apply(small_k);
BENCHMARK_TEMPLATE(LargeKLoss, float)->Apply(large_k);
BENCHMARK_TEMPLATE(LargeKLossGrad, float)->Apply(large_k);
BENCHMARK_TEMPLATE(LargeKLossGradInPlace, float)->Apply(large_k);
BENCHMARK_TEMPLATE(LargeKLoss, double)->Apply(large_k);
BENCHMARK_TEMPLATE(LargeKLossGrad, double)->Apply(large_k);
BENCHMARK_TEMPLATE(LargeKLossGradInPlace, double)->Apply(large_k);
BENCHMARK_TEMPLATE(PanelKLoss, float)->Apply(panel_k);
BENCHMARK_TEMPLATE(PanelKLossGrad, float)->Apply(panel_k);
BENCHMARK_TEMPLATE(PanelKLoss, double)->Apply(panel_k);
BENCHMARK_TEMPLATE(PanelKLossGrad, double)->Apply(panel_k);
BENCHMARK_TEMPLATE(MidKLossGrad, float)->Apply(mid_k);
BENCHMARK_TEMPLATE(MidKLossGrad, double)->Apply(mid_k);
BENCHMARK_TEMPLATE(Objective, float)->Args({1000, 4096, 512})->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_TEMPLATE(Gemm3, float)->Args({1000, 4096, 512})->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_TEMPLATE(Objective, double)->Args({1000, 4096, 512})->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_TEMPLATE(Gemm3, double)->Args({1000, 4096, 512})->Unit(benchmark::kMillisecond)->UseRealTime();

BENCHMARK_MAIN();
