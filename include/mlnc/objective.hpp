#pragma once
// Problem (4) of the UFM as an objective an optimiser can drive:
//   f(W, H, b) = (1/N) sum_i L_PAL(W h_i + b, S_i) + lW ||W||_F^2 + lH ||H||_F^2 + lb ||b||^2
// with W K x d, H d x N (column i = feature of sample i), b of size K. With G = d(data term)/dZ
// (pal.hpp), the gradients are dW = G H^T + 2 lW W, dH = W^T G + 2 lH H, db = G 1 + 2 lb b.
//  - pal_objective: f and its gradients on the matrices (W, H, b); minibatches (the data term of
//    a subset of the samples, scaled by the global 1/N, so that the batch terms of a partition of
//    the samples plus the penalty once add up to f) and the penalty on its own.
//  - ufm_objective: the same over one flat parameter vector x = [vec(W); vec(H); b] (or
//    [vec(H); b] with W fixed), with pack/unpack, in the vocabulary of ensmallen's function types
//    (Evaluate, Gradient, EvaluateWithGradient; NumFunctions, Shuffle and the batch forms of a
//    separable function) and callable as LBFGSpp's f(x, grad).
// See docs/api.md.

#include <mlnc/backend.hpp>
#include <mlnc/detail/checks.hpp>
#include <mlnc/detail/memory.hpp>
#include <mlnc/detail/threads.hpp>
#include <mlnc/error.hpp>
#include <mlnc/labels.hpp>
#include <mlnc/pal.hpp>
#include <mlnc/types.hpp>

#include <Eigen/Core>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <numeric>
#include <optional>
#include <random>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

namespace mlnc {

// Passed instead of a gradient output that is not wanted: evaluate(W, H, b, skip, dH, db) does
// not form dW (a fixed classifier).
struct skip_t {
    explicit constexpr skip_t() = default;
};
inline constexpr skip_t skip{};

// What an evaluation of f found. overflow: the logits W H + b of finite W, H, b are not all
// finite (they overflowed T); loss and total are then +Inf and any gradient is NaN. Trainers take
// that as "step too long"; it is a numerical outcome, not an error.
enum class objective_status { ok, overflow };

template <class T>
struct objective_value {
    T loss = 0;     // data term (1/N) sum_i L(z_i, S_i) (over the batch, for a batch)
    T penalty = 0;  // lW ||W||^2 + lH ||H||^2 + lb ||b||^2 (0 for a batch's data term)
    T total = 0;    // loss + penalty
    objective_status status = objective_status::ok;
    index_t overflow_row = -1;  // with status overflow: the first non-finite logit (k, i)
    index_t overflow_col = -1;
    bool ok() const noexcept { return status == objective_status::ok; }
};

namespace detail {

template <class O>
constexpr bool is_skip = std::is_same_v<std::remove_cvref_t<O>, skip_t>;

template <class O, class T>
constexpr void check_gradient_output() {
    if constexpr (!is_skip<O>) {
        static_assert(writable_output<O>, "mlnc: a gradient output must be a non-const Eigen matrix, Map or Block, or mlnc::skip");
        static_assert(std::is_same_v<typename std::decay_t<O>::Scalar, T>,
                      "mlnc: gradient outputs must have the objective's scalar type");
    }
}

// A gradient output as the objective's one Ref type R: skip is a null pointer; an object R can
// bind to (a column-major matrix, Map or Block; any vector with direct access) is written in
// place; anything else (a row-major matrix) goes through a temporary copied back by finish().
// One instantiation of the objective's body then serves every kind of output.
template <class R, class O>
class output_binding {
public:
    explicit output_binding(O& o) : o_(o) {
        if constexpr (direct) {
            ref_.emplace(o);
        } else if constexpr (!is_skip<O>) {
            if constexpr (plain::ColsAtCompileTime == 1) tmp_.resize(o.size());
            else tmp_.resize(o.rows(), o.cols());
            ref_.emplace(tmp_);
        }
    }
    R* get() { return ref_ ? &*ref_ : nullptr; }
    void finish() {
        if constexpr (!direct && !is_skip<O>) o_ = tmp_.reshaped(o_.rows(), o_.cols());
    }

private:
    static constexpr bool direct = !is_skip<O> && std::is_constructible_v<R, O&>;
    using plain = typename R::PlainObject;
    O& o_;
    plain tmp_;
    std::optional<R> ref_;
};

// The label sets of samples [offset, offset + n) of S, as samples 0..n-1 (a chunk of columns).
template <class L>
struct label_window {
    const L* S;
    index_t offset;
    index_t n;
    auto operator[](index_t i) const { return (*S)[offset + i]; }
    index_t size() const noexcept { return n; }
    index_t num_labels() const noexcept { return S->num_labels(); }
};

}  // namespace detail

// The workspace of the objective's logits: chunks of at most this many bytes (default 64 MiB).
inline constexpr std::size_t default_workspace_bytes = std::size_t{64} << 20;

// f(W, H, b) for fixed labels and penalties, with analytic gradients. The samples are processed in
// chunks of c columns: Z_c = W H_c + b, the kernel turns Z_c into G_c in place (scaled by the
// global 1/N), then dW += G_c H_c^T, dH_c = W^T G_c, db += G_c 1. So the K x N logits are never
// formed: the one workspace holds K x c entries, c as large as workspace_bytes() allows (at least
// 64 columns; beyond that the classes are tiled, data_term_tiled). Small models split each chunk's
// samples over threads (data_term_split); others thread the products. Bad input (shapes, NaN/Inf
// in W, H or b) throws mlnc::error (gradient outputs may then hold anything); logits that
// overflow T are reported in objective_value::status (total = +Inf), not thrown. Gradient outputs
// are any writable Eigen matrix, Map or Block of the right shape, or mlnc::skip; they must not
// alias W, H or b.
// The templates taking Eigen arguments only check shapes and bind them to the Ref types below;
// the work is done by non-template members, compiled once per (T, B) (and precompiled with
// mlnc::precompiled, see docs/api.md).
template <class T = double, class B = cpu>
class pal_objective {
public:
    using in_matrix = Eigen::Ref<const matrix<T>, 0, Eigen::OuterStride<>>;
    using in_vector = Eigen::Ref<const vector<T>, 0, Eigen::InnerStride<>>;
    using out_matrix = Eigen::Ref<matrix<T>, 0, Eigen::OuterStride<>>;
    using out_vector = Eigen::Ref<vector<T>, 0, Eigen::InnerStride<>>;

    pal_objective(B be, label_sets S, penalties lambdas, pal_variant v = pal_variant::pal)
        : be_(be), s_(std::move(S)), lam_(lambdas), v_(v) {
        detail::check_pal_backend<B, T>();
        static_assert(!available_backend<B> || backend_traits<B>::objective,
                      "mlnc: this backend has no objective (see backend_traits)");
        detail::check_backend_value(be_);
        check_penalties(lam_);
        detail::require(v_ == pal_variant::pal || v_ == pal_variant::pal_n, "variant",
                        "unknown value " + std::to_string(static_cast<int>(v_)));
        if (s_.empty()) throw error("labels: no samples");
    }
    pal_objective(label_sets S, penalties lambdas, pal_variant v = pal_variant::pal)
        : pal_objective(B{}, std::move(S), lambdas, v) {}

    const B& backend_value() const noexcept { return be_; }
    // The byte budget of the logits workspace (default_workspace_bytes); one column of K entries is
    // always allowed. Results do not depend on it beyond rounding (the chunks' sums are added).
    std::size_t workspace_bytes() const noexcept { return workspace_bytes_; }
    void set_workspace_bytes(std::size_t bytes) {
        detail::require(bytes > 0, "workspace_bytes", "must be > 0");
        workspace_bytes_ = bytes;
    }
    const label_sets& labels() const noexcept { return s_; }
    const penalties& lambdas() const noexcept { return lam_; }
    pal_variant variant() const noexcept { return v_; }
    index_t num_labels() const noexcept { return s_.num_labels(); }
    index_t num_samples() const noexcept { return s_.size(); }

    // f at (W, H, b).
    template <class DW, class DH, class Db>
    objective_value<T> evaluate(const Eigen::MatrixBase<DW>& W, const Eigen::MatrixBase<DH>& H,
                                const Eigen::MatrixBase<Db>& b) {
        return evaluate(W, H, b, skip, skip, skip);
    }
    template <class DW, class DH, class Db>
    T value(const Eigen::MatrixBase<DW>& W, const Eigen::MatrixBase<DH>& H, const Eigen::MatrixBase<Db>& b) {
        return evaluate(W, H, b).total;
    }

    // f and its gradients: dW (K x d), dH (d x N), db (K), each written (not accumulated) or skip.
    template <class DW, class DH, class Db, class GW, class GH, class Gb>
    objective_value<T> evaluate(const Eigen::MatrixBase<DW>& W, const Eigen::MatrixBase<DH>& H,
                                const Eigen::MatrixBase<Db>& b, GW&& dW, GH&& dH, Gb&& db) {
        return bind(W, H, b, dW, dH, db, [this](const auto&... a) { return evaluate_refs(a...); });
    }

    // The data term of the samples in `batch`, (1/N) sum_{i in batch} L(W h_i + b, S_i) with N the
    // number of samples of the whole objective, and its gradients: H and dH are d x |batch| (the
    // batch's columns, e.g. batch.columns(H_full)), dW and db as for evaluate. penalty = 0. The
    // batch supplies the label sets (its own parent's: normally the label_sets this objective
    // was built from, of which the objective holds a copy); only K and N are checked against it.
    template <class DW, class DH, class Db, class GW = skip_t, class GH = skip_t, class Gb = skip_t>
    objective_value<T> evaluate_batch(const sample_subset& batch, const Eigen::MatrixBase<DW>& W,
                                      const Eigen::MatrixBase<DH>& H, const Eigen::MatrixBase<Db>& b, GW&& dW = skip_t{},
                                      GH&& dH = skip_t{}, Gb&& db = skip_t{}) {
        return bind(W, H, b, dW, dH, db, [this, &batch](const auto&... a) { return data_term(batch, a...); });
    }

    // The penalty lW ||W||^2 + lH ||H||^2 + lb ||b||^2 alone (loss = 0), with its gradients 2 l X.
    // H may have any number of columns (the whole H, or a batch's columns).
    template <class DW, class DH, class Db, class GW = skip_t, class GH = skip_t, class Gb = skip_t>
    objective_value<T> penalty(const Eigen::MatrixBase<DW>& W, const Eigen::MatrixBase<DH>& H,
                               const Eigen::MatrixBase<Db>& b, GW&& dW = skip_t{}, GH&& dH = skip_t{},
                               Gb&& db = skip_t{}) const {
        return bind(W, H, b, dW, dH, db, [this](const auto&... a) { return penalty_refs(a...); });
    }

    // The same on the Ref types (what the templates above call).
    objective_value<T> evaluate_refs(const in_matrix& W, const in_matrix& H, const in_vector& b, out_matrix* dW,
                                     out_matrix* dH, out_vector* db);
    objective_value<T> data_term(const sample_subset& batch, const in_matrix& W, const in_matrix& H,
                                 const in_vector& b, out_matrix* dW, out_matrix* dH, out_vector* db);
    objective_value<T> penalty_refs(const in_matrix& W, const in_matrix& H, const in_vector& b, out_matrix* dW,
                                    out_matrix* dH, out_vector* db) const;

private:
    // Checks the shapes the Ref types cannot hold (a vector b, db), binds every argument and calls
    // f(W, H, b, dW*, dH*, db*); outputs that needed a temporary are written back afterwards.
    template <class DW, class DH, class Db, class GW, class GH, class Gb, class F>
    objective_value<T> bind(const Eigen::MatrixBase<DW>& W, const Eigen::MatrixBase<DH>& H,
                                   const Eigen::MatrixBase<Db>& b, GW& dW, GH& dH, Gb& db, F&& f) const {
        static_assert(std::is_same_v<typename DW::Scalar, T> && std::is_same_v<typename DH::Scalar, T> &&
                          std::is_same_v<typename Db::Scalar, T>,
                      "mlnc: W, H and b must have the objective's scalar type");
        detail::check_gradient_output<GW, T>();
        detail::check_gradient_output<GH, T>();
        detail::check_gradient_output<Gb, T>();
        check_vector(b, "b");
        if constexpr (!detail::is_skip<Gb>) check_vector(db, "db");
        detail::output_binding<out_matrix, std::remove_reference_t<GW>> gw(dW);
        detail::output_binding<out_matrix, std::remove_reference_t<GH>> gh(dH);
        detail::output_binding<out_vector, std::remove_reference_t<Gb>> gb(db);
        const objective_value<T> v = f(in_matrix(W), in_matrix(H), in_vector(b), gw.get(), gh.get(), gb.get());
        gw.finish();
        gh.finish();
        gb.finish();
        return v;
    }
    template <class D>
    void check_vector(const Eigen::MatrixBase<D>& x, const char* name) const {
        if (x.rows() != 1 && x.cols() != 1)
            throw error(std::string(name) + ": expected a vector of " + std::to_string(num_labels()) + " entries, got " +
                        std::to_string(x.rows()) + " x " + std::to_string(x.cols()));
    }

    void check_batch(const sample_subset& batch) const;
    template <class L>
    objective_value<T> data_term_of(const L& S, const in_matrix& W, const in_matrix& H, const in_vector& b,
                                    out_matrix* dW, out_matrix* dH, out_vector* db, double* h_sq = nullptr);
    void add_penalty(objective_value<T>& v, const in_matrix& W, const in_matrix& H, const in_vector& b,
                     out_matrix* dW, out_matrix* dH, out_vector* db, const double* h_sq = nullptr) const;
    // The H penalty folded into the products (h_sq given and dH wanted): dH's columns of H_c start
    // at 2 lH H_c and the product W^T G_c is added to them; h_sq[i] = ||h_i||^2 in double for the
    // columns of H_c (so that ||H||^2 is added up the same way with or without the fold).
    void fold_h_penalty(out_matrix D, const in_matrix& Hc, double* h_sq, int threads) const;
    // out[i] = ||h_i||^2 in double for the columns [begin, end) of H: the one expression of both
    // routes above, so that ||H||^2 has the same bits with or without the fold.
    static void column_norms(const in_matrix& H, index_t begin, index_t end, double* out) {
        for (index_t i = begin; i < end; ++i) out[i] = H.col(i).template cast<double>().squaredNorm();
    }
    void check_parameters(const in_matrix& W, const in_matrix& H, const in_vector& b, index_t n) const;
    static void check_finite_parameters(const in_matrix& W, const in_matrix& H, const in_vector& b);
    // The result for logits that are not all finite, the first at (row, col): +Inf, NaN gradients.
    static objective_value<T> overflow_at(index_t row, index_t col, out_matrix* dW, out_matrix* dH, out_vector* db) {
        constexpr T nan = std::numeric_limits<T>::quiet_NaN();
        if (dW) dW->setConstant(nan);
        if (dH) dH->setConstant(nan);
        if (db) db->setConstant(nan);
        objective_value<T> v;
        v.loss = v.total = std::numeric_limits<T>::infinity();
        v.status = objective_status::overflow;
        v.overflow_row = row;
        v.overflow_col = col;
        return v;
    }
    static void check_outputs(const in_matrix& W, const in_matrix& H, const out_matrix* dW, const out_matrix* dH,
                              const out_vector* db);
    index_t chunk_columns(index_t n);
    index_t tile_rows(index_t n) const;
    template <class L>
    objective_value<T> data_term_tiled(const L& S, const in_matrix& W, const in_matrix& H, const in_vector& b,
                                       out_matrix* dW, out_matrix* dH, out_vector* db, index_t chunk, index_t rows,
                                       double* h_sq);
    int split_threads(index_t d, index_t columns, bool partial_dW) const;
    template <class L>
    objective_value<T> data_term_split(const L& S, const in_matrix& W, const in_matrix& H, const in_vector& b,
                                       out_matrix* dW, out_matrix* dH, out_vector* db, index_t chunk, int nt,
                                       double* h_sq);
    static constexpr index_t gemm_rows = index_t{1} << 15;  // rows of W per product (see data_term_of)
    // The largest K x d partial dW a thread of the split over samples may hold (data_term_split).
    static constexpr double split_partial_bytes = double(std::size_t{32} << 20);
    // Chunks hold at least this many samples (or all of them); when that many columns of K
    // logits exceed the workspace, the classes are tiled (data_term_tiled).
    static constexpr index_t min_chunk_columns = 64;

    B be_;
    label_sets s_;
    penalties lam_;
    pal_variant v_;
    std::size_t workspace_bytes_ = default_workspace_bytes;
    vector<T> z_;
    std::vector<matrix<T>> dw_part_;  // the partial dW of threads 1.. of data_term_split
    std::vector<double> h_sq_;        // ||h_i||^2 of the columns of H (fold_h_penalty)
};

// The members that do the work: not inline, so that mlnc::precompiled's instances are used.
template <class T, class B>
objective_value<T> pal_objective<T, B>::evaluate_refs(const in_matrix& W, const in_matrix& H, const in_vector& b,
                                                       out_matrix* dW, out_matrix* dH, out_vector* db) {
    // ||h_i||^2 of every column, from the products' pass when they form dH.
    if (dH) h_sq_.resize(static_cast<std::size_t>(H.cols()));
    objective_value<T> v = data_term_of(s_, W, H, b, dW, dH, db, dH ? h_sq_.data() : nullptr);
    if (v.ok()) add_penalty(v, W, H, b, dW, dH, db, dH ? h_sq_.data() : nullptr);
    return v;
}

template <class T, class B>
objective_value<T> pal_objective<T, B>::data_term(const sample_subset& batch, const in_matrix& W, const in_matrix& H,
                                                   const in_vector& b, out_matrix* dW, out_matrix* dH, out_vector* db) {
    check_batch(batch);
    return data_term_of(batch, W, H, b, dW, dH, db);
}

template <class T, class B>
objective_value<T> pal_objective<T, B>::penalty_refs(const in_matrix& W, const in_matrix& H, const in_vector& b,
                                                      out_matrix* dW, out_matrix* dH, out_vector* db) const {
    check_parameters(W, H, b, H.cols());
    check_finite_parameters(W, H, b);
    check_outputs(W, H, dW, dH, db);
    if (dW) dW->setZero();
    if (dH) dH->setZero();
    if (db) db->setZero();
    objective_value<T> v;
    add_penalty(v, W, H, b, dW, dH, db);
    return v;
}

template <class T, class B>
void pal_objective<T, B>::check_batch(const sample_subset& batch) const {
    if (batch.num_labels() != num_labels() || batch.total_samples() != num_samples())
        throw error("batch: a subset of " + std::to_string(batch.total_samples()) + " samples over " +
                    std::to_string(batch.num_labels()) + " labels, but the objective has " +
                    std::to_string(num_samples()) + " samples over " + std::to_string(num_labels()));
    if (batch.empty()) throw error("batch: no samples");
}

template <class T, class B>
template <class L>
objective_value<T> pal_objective<T, B>::data_term_of(const L& S, const in_matrix& W, const in_matrix& H,
                                                      const in_vector& b, out_matrix* dW, out_matrix* dH,
                                                      out_vector* db, double* h_sq) {
    const index_t n = S.size(), K = num_labels();
    check_parameters(W, H, b, n);
    check_outputs(W, H, dW, dH, db);
    const auto checked = [&](objective_value<T> v) {
        if (v.status == objective_status::overflow) check_finite_parameters(W, H, b);
        return v;
    };
    const bool any_gradient = dW || dH || db;
    if (const index_t rows = tile_rows(n); rows < K)
        return checked(data_term_tiled(S, W, H, b, dW, dH, db, std::min(n, min_chunk_columns), rows, h_sq));
    const index_t chunk = chunk_columns(n);
    if (const int nt = split_threads(W.cols(), std::min(chunk, n), dW != nullptr); nt > 1)
        return checked(data_term_split(S, W, H, b, dW, dH, db, chunk, nt, h_sq));
    const double inv_n = 1.0 / static_cast<double>(num_samples());
    const detail::gemm_threads gemm_team(be_.threads);
    double sum = 0.0;
    for (index_t c0 = 0; c0 < n; c0 += chunk) {
        const index_t nc = std::min(chunk, n - c0);
        const auto Hc = H.middleCols(c0, nc);
        Eigen::Map<matrix<T>> Z(z_.data(), K, nc);
        // In blocks of rows: Eigen's threaded GEMM packs a block of the left factor per thread
        // as tall as its share of the rows, which at K = 10^6 would be hundreds of MB.
        for (index_t r0 = 0; r0 < K; r0 += gemm_rows) {
            const index_t nr = std::min(gemm_rows, K - r0);
            Z.middleRows(r0, nr).noalias() = W.middleRows(r0, nr) * Hc;
        }
        Z.colwise() += b;
        const detail::label_window<L> Sc{&S, c0, nc};
        const auto r = detail::pal_dispatch(be_, detail::view_of(Z), Sc, v_, static_cast<T*>(nullptr),
                                            any_gradient ? detail::mutable_view_of(Z) : strided_view<T>{}, inv_n);
        if (!r.finite()) return checked(overflow_at(r.bad_row, c0 + r.bad_col, dW, dH, db));
        sum += r.sum;
        const auto& G = Z;
        if (dW) {
            for (index_t r0 = 0; r0 < K; r0 += gemm_rows) {
                const index_t nr = std::min(gemm_rows, K - r0);
                if (c0 == 0) dW->middleRows(r0, nr).noalias() = G.middleRows(r0, nr) * Hc.transpose();
                else dW->middleRows(r0, nr).noalias() += G.middleRows(r0, nr) * Hc.transpose();
            }
        }
        if (dH && h_sq) {
            fold_h_penalty(dH->middleCols(c0, nc), Hc, h_sq + c0, be_.threads);
            dH->middleCols(c0, nc).noalias() += W.transpose() * G;
        } else if (dH) {
            dH->middleCols(c0, nc).noalias() = W.transpose() * G;
        }
        if (db) {
            if (c0 == 0) *db = G.rowwise().sum();
            else *db += G.rowwise().sum();
        }
    }
    objective_value<T> v;
    v.loss = v.total = static_cast<T>(sum * inv_n);
    return v;
}

// The rows of a class tile for n samples: K (no tiling) when min(n, min_chunk_columns) columns of
// K logits fit in the workspace, else as many rows as fit beside that many columns (at least 1).
template <class T, class B>
index_t pal_objective<T, B>::tile_rows(index_t n) const {
    const index_t K = num_labels();
    const double columns = static_cast<double>(std::min(n, min_chunk_columns));
    const double fit = static_cast<double>(workspace_bytes_) / (columns * sizeof(T));
    if (fit >= static_cast<double>(K)) return K;
    return std::max<index_t>(1, static_cast<index_t>(fit));
}

// The data term with the classes tiled: for each chunk of `chunk` samples, pass 1 forms the logits
// `rows` classes at a time and merges each tile into a running log-sum-exp per sample (with the
// logits of its labels); pass 2 forms each tile again, turns it into its rows of G from the
// merged log-sum-exp and adds G_t H_c^T to dW's rows, W_t^T G_t to dH_c and G_t 1 to db's rows.
// One extra product (the second Z) buys a workspace of rows x chunk entries, whatever K.
template <class T, class B>
template <class L>
objective_value<T> pal_objective<T, B>::data_term_tiled(const L& S, const in_matrix& W, const in_matrix& H,
                                                        const in_vector& b, out_matrix* dW, out_matrix* dH,
                                                        out_vector* db, index_t chunk, index_t rows, double* h_sq) {
    const index_t n = S.size(), K = num_labels();
    const bool any_gradient = dW || dH || db;
    const double inv_n = 1.0 / static_cast<double>(num_samples());
    const double tile_bytes = static_cast<double>(rows) * static_cast<double>(chunk) * sizeof(T);
    if (z_.size() < rows * chunk) {
        detail::require_memory(tile_bytes, "logits", "the tile of " + std::to_string(rows) + " x " +
                                                         std::to_string(chunk) + " logits");
        z_.resize(rows * chunk);
    }
    const detail::gemm_threads gemm_team(be_.threads);
    const int nt = detail::team_size(be_.threads, static_cast<double>(rows) * static_cast<double>(chunk), 32768.0, chunk);
    std::vector<cpu_kernels::lse_column<T>> state(static_cast<std::size_t>(chunk));
    std::vector<index_t> first(static_cast<std::size_t>(chunk) + 1);
    std::vector<T> label_z;
    double sum = 0.0;
    for (index_t c0 = 0; c0 < n; c0 += chunk) {
        const index_t nc = std::min(chunk, n - c0);
        const auto Hc = H.middleCols(c0, nc);
        const detail::label_window<L> Sc{&S, c0, nc};
        for (index_t i = 0; i < nc; ++i)
            first[static_cast<std::size_t>(i) + 1] = first[static_cast<std::size_t>(i)] + static_cast<index_t>(Sc[i].size());
        label_z.resize(static_cast<std::size_t>(first[static_cast<std::size_t>(nc)]));
        std::fill(state.begin(), state.end(), cpu_kernels::lse_column<T>{});
        const auto form = [&](index_t r0, index_t nr) {  // in blocks of gemm_rows rows (data_term_of)
            Eigen::Map<matrix<T>> Z(z_.data(), nr, nc);
            for (index_t q = 0; q < nr; q += gemm_rows) {
                const index_t nq = std::min(gemm_rows, nr - q);
                Z.middleRows(q, nq).noalias() = W.middleRows(r0 + q, nq) * Hc;
            }
            Z.colwise() += b.segment(r0, nr);
            return Z;
        };
        for (index_t r0 = 0; r0 < K; r0 += rows) {  // pass 1
            const index_t nr = std::min(rows, K - r0);
            auto Z = form(r0, nr);
            detail::parallel_ranges(nt, nc, 1, [&](int, index_t begin, index_t end) {
                cpu_kernels::lse_tile(detail::view_of(Z), r0, Sc, state.data(), label_z.data(), first.data(), begin, end);
            });
        }
        for (index_t i = 0; i < nc; ++i) {
            const auto& st = state[static_cast<std::size_t>(i)];
            // The first column (in column order) with a non-finite logit.
            if (st.bad_row >= 0) return overflow_at(st.bad_row, c0 + i, dW, dH, db);
            sum += cpu_kernels::loss_from_lse(st, label_z.data() + first[static_cast<std::size_t>(i)],
                                              Sc[i].size(), v_);
        }
        if (!any_gradient) continue;
        if (dH && h_sq) fold_h_penalty(dH->middleCols(c0, nc), Hc, h_sq + c0, be_.threads);
        for (index_t r0 = 0; r0 < K; r0 += rows) {  // pass 2
            const index_t nr = std::min(rows, K - r0);
            auto G = form(r0, nr);
            detail::parallel_ranges(nt, nc, 1, [&](int, index_t begin, index_t end) {
                cpu_kernels::gradient_from_lse(detail::mutable_view_of(G), r0, Sc, state.data(), v_, inv_n, begin, end);
            });
            for (index_t q = 0; dW && q < nr; q += gemm_rows) {
                const index_t nq = std::min(gemm_rows, nr - q);
                if (c0 == 0) dW->middleRows(r0 + q, nq).noalias() = G.middleRows(q, nq) * Hc.transpose();
                else dW->middleRows(r0 + q, nq).noalias() += G.middleRows(q, nq) * Hc.transpose();
            }
            if (dH) {
                if (r0 == 0 && !h_sq) dH->middleCols(c0, nc).noalias() = W.middleRows(r0, nr).transpose() * G;
                else dH->middleCols(c0, nc).noalias() += W.middleRows(r0, nr).transpose() * G;
            }
            if (db) {
                if (c0 == 0) db->segment(r0, nr) = G.rowwise().sum();
                else db->segment(r0, nr) += G.rowwise().sum();
            }
        }
    }
    objective_value<T> v;
    v.loss = v.total = static_cast<T>(sum * inv_n);
    return v;
}

// The threads of data_term_split for chunks of `columns` samples, or 1 for the product-threaded
// route of data_term_of. Splitting the samples needs no synchronisation inside the products, which
// Eigen's threaded GEMM does (its G H^T, a small K x d result over a long inner dimension, ran
// 10x slower on 2 threads than on 1 here when the machine was shared), but each thread beyond the
// first holds a K x d partial dW: the split is for models whose dW is small, and for chunks of at
// least 64 samples and ~4 MFLOP per thread.
template <class T, class B>
int pal_objective<T, B>::split_threads(index_t d, index_t columns, bool partial_dW) const {
    const double K = static_cast<double>(num_labels());
    if (partial_dW && K * static_cast<double>(d) * sizeof(T) > split_partial_bytes) return 1;
    return detail::team_size(be_.threads, 2.0 * K * static_cast<double>(d) * static_cast<double>(columns), double(1 << 22),
                             columns / 64);
}

// The data term with the samples of each chunk split over nt threads in contiguous ranges: each
// thread forms its columns' logits, runs the kernel on them and forms their dH with serial
// products, and adds G H^T and G 1 of its columns to its own partial dW and db (thread 0 into dW
// and db themselves). The partials and the loss sums are added in thread order at the end, so a
// result depends on nt only, never on scheduling.
template <class T, class B>
template <class L>
objective_value<T> pal_objective<T, B>::data_term_split(const L& S, const in_matrix& W, const in_matrix& H,
                                                        const in_vector& b, out_matrix* dW, out_matrix* dH,
                                                        out_vector* db, index_t chunk, int nt, double* h_sq) {
    const index_t n = S.size(), K = num_labels(), d = W.cols();
    const bool any_gradient = dW || dH || db;
    const double inv_n = 1.0 / static_cast<double>(num_samples());
    const auto nts = static_cast<std::size_t>(nt);
    if (dW) {
        if (dw_part_.size() < nts - 1) dw_part_.resize(nts - 1);
        for (std::size_t t = 0; t + 1 < nts; ++t) dw_part_[t].resize(K, d);
    }
    std::vector<vector<T>> db_part(db ? nts : 0);
    std::vector<char> written(nts, 0);
    std::vector<double> sums(nts, 0.0);
    std::vector<pal_kernel_result> bad(nts);
    for (index_t c0 = 0; c0 < n; c0 += chunk) {
        const index_t nc = std::min(chunk, n - c0);
        detail::parallel_ranges(nt, nc, cpu_kernels::column_sweeps<T>::L, [&](int t, index_t i0, index_t i1) {
            const auto ts = static_cast<std::size_t>(t);
            if (i0 == i1 || !bad[ts].finite()) return;
            const index_t c = c0 + i0, m = i1 - i0;
            const auto Ht = H.middleCols(c, m);
            Eigen::Map<matrix<T>> Z(z_.data() + K * i0, K, m);
            Z.noalias() = W * Ht;  // serial: Eigen does not start a team inside a parallel region
            Z.colwise() += b;
            const detail::label_window<L> St{&S, c, m};
            const auto r = cpu_kernels::pal_columns(detail::view_of(Z), St, v_, static_cast<T*>(nullptr),
                                                    any_gradient ? detail::mutable_view_of(Z) : strided_view<T>{}, inv_n);
            if (!r.finite()) {
                bad[ts] = r;
                bad[ts].bad_col += c;
                return;
            }
            sums[ts] += r.sum;
            const bool first = !written[ts];
            written[ts] = 1;
            if (dW) {
                if (t == 0) {
                    if (first) dW->noalias() = Z * Ht.transpose();
                    else dW->noalias() += Z * Ht.transpose();
                } else {
                    matrix<T>& P = dw_part_[ts - 1];
                    if (first) P.noalias() = Z * Ht.transpose();
                    else P.noalias() += Z * Ht.transpose();
                }
            }
            if (dH && h_sq) {
                fold_h_penalty(dH->middleCols(c, m), Ht, h_sq + c, 1);
                dH->middleCols(c, m).noalias() += W.transpose() * Z;
            } else if (dH) {
                dH->middleCols(c, m).noalias() = W.transpose() * Z;
            }
            if (db) {
                if (first) db_part[ts] = Z.rowwise().sum();
                else db_part[ts] += Z.rowwise().sum();
            }
        });
        for (const pal_kernel_result& r : bad)  // ranges in column order: the first is the first
            if (!r.finite()) return overflow_at(r.bad_row, r.bad_col, dW, dH, db);
    }
    double sum = 0.0;
    for (double x : sums) sum += x;
    if (dW) {
        if (!written[0]) dW->setZero();
        for (std::size_t t = 1; t < nts; ++t)
            if (written[t]) *dW += dw_part_[t - 1];
    }
    if (db) {
        db->setZero();
        for (std::size_t t = 0; t < nts; ++t)
            if (written[t]) *db += db_part[t];
    }
    objective_value<T> v;
    v.loss = v.total = static_cast<T>(sum * inv_n);
    return v;
}

// Adds the penalty to v and its gradient to the outputs given, summed in double. h_sq: the
// squared norms of H's columns when the products already folded 2 lH H into dH
// (fold_h_penalty); otherwise one pass over H computes them and adds 2 lH H to dH. Either way
// ||H||^2 is their sum in column order (8 running sums), so the value does not depend on the
// gradients asked for, the route or the thread count.
template <class T, class B>
void pal_objective<T, B>::add_penalty(objective_value<T>& v, const in_matrix& W, const in_matrix& H,
                                      const in_vector& b, out_matrix* dW, out_matrix* dH, out_vector* db,
                                      const double* h_sq) const {
    const index_t N = H.cols();
    std::vector<double> own;
    if (!h_sq) {
        own.resize(static_cast<std::size_t>(N));
        const T two_lh = T(2 * lam_.lambda_h);
        constexpr index_t block = 256;
        const int nt = detail::team_size(be_.threads, static_cast<double>(H.size()), double(1 << 16), N / block + 1);
        detail::parallel_ranges(nt, N, block, [&](int, index_t begin, index_t end) {
            column_norms(H, begin, end, own.data());
            if (dH) dH->middleCols(begin, end - begin) += two_lh * H.middleCols(begin, end - begin);
        });
        h_sq = own.data();
    }
    double lane[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    index_t i = 0;
    for (; i + 8 <= N; i += 8)
        for (int l = 0; l < 8; ++l) lane[l] += h_sq[i + l];
    for (int l = 0; i < N; ++i, ++l) lane[l] += h_sq[i];
    const double h = ((lane[0] + lane[1]) + (lane[2] + lane[3])) + ((lane[4] + lane[5]) + (lane[6] + lane[7]));
    const double pen = lam_.lambda_w * W.template cast<double>().squaredNorm() + lam_.lambda_h * h +
                       lam_.lambda_b * b.template cast<double>().squaredNorm();
    v.penalty = static_cast<T>(pen);
    v.total = static_cast<T>(static_cast<double>(v.loss) + pen);
    if (dW) *dW += T(2 * lam_.lambda_w) * W;
    if (db) *db += T(2 * lam_.lambda_b) * b;
}

template <class T, class B>
void pal_objective<T, B>::fold_h_penalty(out_matrix D, const in_matrix& Hc, double* h_sq, int threads) const {
    const T two_lh = T(2 * lam_.lambda_h);
    const index_t n = Hc.cols();
    constexpr index_t block = 256;
    const int nt = detail::team_size(threads, static_cast<double>(Hc.size()), double(1 << 16), n / block + 1);
    detail::parallel_ranges(nt, n, block, [&](int, index_t begin, index_t end) {
        column_norms(Hc, begin, end, h_sq);
        D.middleCols(begin, end - begin).noalias() = two_lh * Hc.middleCols(begin, end - begin);
    });
}

template <class T, class B>
void pal_objective<T, B>::check_parameters(const in_matrix& W, const in_matrix& H, const in_vector& b,
                                           index_t n) const {
    const index_t K = num_labels();
    if (W.rows() != K)
        throw error("W: expected " + std::to_string(K) + " rows (one per label), got " + std::to_string(W.rows()));
    detail::check_shape(H, W.cols(), n, "H", "d x n, d = columns of W, n = number of samples");
    detail::require(b.size() == K, "b", "expected a vector of " + std::to_string(K) + " entries, got " +
                                            std::to_string(b.size()));
}

// NaN or Inf in W, H or b always reaches the logits (a product with a non-finite factor is never
// skipped, and 0 * Inf is NaN), so the data term checks them only when the kernel found a
// non-finite logit: no passes over the parameters on the way to a finite result.
template <class T, class B>
void pal_objective<T, B>::check_finite_parameters(const in_matrix& W, const in_matrix& H, const in_vector& b) {
    detail::check_finite(W, "W");
    detail::check_finite(H, "H");
    detail::check_finite(b, "b");
}

template <class T, class B>
void pal_objective<T, B>::check_outputs(const in_matrix& W, const in_matrix& H, const out_matrix* dW,
                                        const out_matrix* dH, const out_vector* db) {
    if (dW) detail::check_shape(*dW, W.rows(), W.cols(), "dW", "same shape as W");
    if (dH) detail::check_shape(*dH, H.rows(), H.cols(), "dH", "same shape as H");
    if (db)
        detail::require(db->size() == W.rows(), "db", "expected a vector of " + std::to_string(W.rows()) +
                                                         " entries, got " + std::to_string(db->size()));
}

// The columns per chunk for n samples: as many as workspace_bytes() holds (at least one), and
// the workspace sized for them (it grows to the largest chunk seen and is reused).
template <class T, class B>
index_t pal_objective<T, B>::chunk_columns(index_t n) {
    const index_t K = num_labels();
    const double column_bytes = static_cast<double>(K) * sizeof(T);
    const auto fit = static_cast<index_t>(std::min(static_cast<double>(n), static_cast<double>(workspace_bytes_) / column_bytes));
    const index_t chunk = std::max<index_t>(1, fit);
    if (z_.size() < K * chunk) {
        detail::require_memory(column_bytes * static_cast<double>(chunk), "logits",
                               "the K x c logits workspace, K = " + std::to_string(K) + ", c = " + std::to_string(chunk));
        z_.resize(K * chunk);
    }
    return chunk;
}

template <backend B>
pal_objective(B, label_sets, penalties, pal_variant = pal_variant::pal) -> pal_objective<double, B>;
pal_objective(label_sets, penalties, pal_variant = pal_variant::pal) -> pal_objective<double, cpu>;

// The flat parameter vector of Problem (4): x = [vec(W); vec(H); b], column-major vec.
template <class DW, class DH, class Db>
vector<typename DW::Scalar> pack_parameters(const Eigen::MatrixBase<DW>& W, const Eigen::MatrixBase<DH>& H,
                                            const Eigen::MatrixBase<Db>& b) {
    using T = typename DW::Scalar;
    static_assert(std::is_same_v<typename DH::Scalar, T> && std::is_same_v<typename Db::Scalar, T>,
                  "mlnc: W, H and b must have one scalar type");
    detail::require(H.rows() == W.cols(), "H", "expected " + std::to_string(W.cols()) + " rows (the columns of W), got " +
                                                   std::to_string(H.rows()));
    detail::require(b.size() == W.rows() && (b.rows() == 1 || b.cols() == 1), "b",
                    "expected a vector of " + std::to_string(W.rows()) + " entries (the rows of W)");
    vector<T> x(W.size() + H.size() + b.size());
    x.head(W.size()) = W.reshaped();
    x.segment(W.size(), H.size()) = H.reshaped();
    x.tail(b.size()) = b.reshaped();
    return x;
}
template <class T>
vector<T> pack_parameters(const ufm_point<T>& p) {
    return pack_parameters(p.W, p.H, p.b);
}

// The inverse of pack_parameters for K labels, dimension d and N samples.
template <class Dx>
ufm_point<typename Dx::Scalar> unpack_parameters(const Eigen::MatrixBase<Dx>& x, index_t K, index_t d, index_t N) {
    detail::require(K >= 1, "K", "must be >= 1, got " + std::to_string(K));
    detail::require(d >= 1, "d", "must be >= 1, got " + std::to_string(d));
    detail::require(N >= 1, "N", "must be >= 1, got " + std::to_string(N));
    detail::require(x.size() == K * d + d * N + K && (x.rows() == 1 || x.cols() == 1), "x",
                    "expected a vector of K d + d N + K = " + std::to_string(K * d + d * N + K) + " entries, got " +
                        std::to_string(x.rows()) + " x " + std::to_string(x.cols()));
    const auto v = x.derived().reshaped();
    ufm_point<typename Dx::Scalar> p;
    p.W = v.head(K * d).reshaped(K, d);
    p.H = v.segment(K * d, d * N).reshaped(d, N);
    p.b = v.tail(K);
    return p;
}

namespace detail {

// The flat parameter vector of Problem (4) for K labels, dimension d and N samples, shared by the
// backends' ufm_objective: x = [vec(W); vec(H); b], or x = [vec(H); b] with a fixed classifier
// (held here, in host memory). Views of x's parts, pack and unpack.
template <class T>
class ufm_layout {
public:
    using vector_type = vector<T>;

    index_t size() const noexcept { return w_size() + d_ * N_ + K_; }  // number of variables
    index_t num_labels() const noexcept { return K_; }
    index_t dim() const noexcept { return d_; }
    index_t num_samples() const noexcept { return N_; }
    bool fixed_classifier() const noexcept { return W_fixed_.has_value(); }

    // The parts of x, as views into it (or into the fixed W).
    Eigen::Map<const matrix<T>> W(const vector_type& x) const {
        check_x(x);
        return W_fixed_ ? Eigen::Map<const matrix<T>>(W_fixed_->data(), K_, d_)
                        : Eigen::Map<const matrix<T>>(x.data(), K_, d_);
    }
    Eigen::Map<const matrix<T>> H(const vector_type& x) const {
        check_x(x);
        return {x.data() + w_size(), d_, N_};
    }
    Eigen::Map<const vector<T>> b(const vector_type& x) const {
        check_x(x);
        return {x.data() + w_size() + d_ * N_, K_};
    }

    // x from (W, H, b); with a fixed classifier W is not part of x (pack(H, b)).
    template <class DW, class DH, class Db>
    vector_type pack(const Eigen::MatrixBase<DW>& W, const Eigen::MatrixBase<DH>& H, const Eigen::MatrixBase<Db>& b) const {
        require(!fixed_classifier(), "pack", "the classifier is fixed: x holds only H and b; use pack(H, b)");
        check_shape(W, K_, d_, "W", "K x d");
        check_shape(H, d_, N_, "H", "d x N");
        require(b.size() == K_, "b", "expected " + std::to_string(K_) + " entries, got " + std::to_string(b.size()));
        return pack_parameters(W, H, b);
    }
    template <class DH, class Db>
    vector_type pack(const Eigen::MatrixBase<DH>& H, const Eigen::MatrixBase<Db>& b) const {
        require(fixed_classifier(), "pack", "W is a variable: use pack(W, H, b)");
        check_shape(H, d_, N_, "H", "d x N");
        require(b.size() == K_, "b", "expected " + std::to_string(K_) + " entries, got " + std::to_string(b.size()));
        vector_type x(size());
        x.head(d_ * N_) = H.reshaped();
        x.tail(K_) = b.reshaped();
        return x;
    }
    vector_type pack(const ufm_point<T>& p) const { return fixed_classifier() ? pack(p.H, p.b) : pack(p.W, p.H, p.b); }
    // (W, H, b) from x (a copy; W is the fixed W when it is fixed).
    ufm_point<T> unpack(const vector_type& x) const { return {W(x), H(x), b(x)}; }

protected:
    ufm_layout(index_t K, index_t d, index_t N) : K_(K), d_(d), N_(N) {}
    // Fixes the classifier at fixed_W (checked: K rows, d_ columns, at least one, finite). Called
    // by the derived constructors once their objective is built, so its errors come first.
    void set_fixed_classifier(matrix<T> fixed_W) {
        if (fixed_W.rows() != K_)
            throw error("fixed_W: expected " + std::to_string(K_) + " rows (one per label), got " +
                        std::to_string(fixed_W.rows()));
        require(fixed_W.cols() >= 1, "fixed_W", "needs at least one column");
        check_finite(fixed_W, "fixed_W");
        d_ = fixed_W.cols();
        W_fixed_ = std::move(fixed_W);
    }

    index_t w_size() const noexcept { return fixed_classifier() ? 0 : K_ * d_; }
    void check_x(const vector_type& x) const {
        if (x.size() != size())
            throw error("x: expected " + std::to_string(size()) + " parameters (" +
                        (fixed_classifier() ? std::string("d N + K") : std::string("K d + d N + K")) + "), got " +
                        std::to_string(x.size()));
    }
    // f at a point outside the range of T (or whose logits overflow): +Inf, status overflow.
    static objective_value<T> non_finite_point() {
        constexpr T inf = std::numeric_limits<T>::infinity();
        objective_value<T> v;
        v.loss = v.total = inf;
        v.status = objective_status::overflow;
        return v;
    }

    index_t K_, d_, N_;
    std::optional<matrix<T>> W_fixed_;
};

}  // namespace detail

// Problem (4) over one flat parameter vector, for any optimiser. Layout: x = [vec(W); vec(H); b]
// (pack_parameters), or x = [vec(H); b] when the classifier is held fixed (the fixed-W
// constructor): W is then not a variable and dW is never formed.
//  - Evaluate(x), Gradient(x, g), EvaluateWithGradient(x, g): ensmallen's differentiable function;
//  - operator()(x, g): LBFGSpp's form (returns f, writes g);
//  - NumFunctions(), Shuffle(), Evaluate(x, begin, batch), Gradient(x, begin, g, batch),
//    EvaluateWithGradient(x, begin, g, batch): ensmallen's separable function. The N samples
//    (in the order of the last Shuffle) are the functions; the batch [begin, begin + batch) has
//      f_B = (1/N) sum_{i in B} L_i + (|B|/N)(lW ||W||^2 + lb ||b||^2) + lH sum_{i in B} ||h_i||^2,
//    so the f_B of any partition of the samples add up to f, and (N/|B|) grad f_B is an unbiased
//    estimate of grad f. g is written in full (zero outside W, the batch's columns of H and b).
// g is resized to size() when it has another size. A non-finite x (a line search that overshot)
// or logits that overflow give f = +Inf and a NaN gradient; evaluate() says which.
template <class T = double, class B = cpu>
class ufm_objective : public detail::ufm_layout<T> {
    using layout = detail::ufm_layout<T>;
    using layout::K_, layout::d_, layout::N_, layout::check_x, layout::w_size, layout::non_finite_point;

public:
    using vector_type = vector<T>;
    using layout::size, layout::num_labels, layout::dim, layout::num_samples, layout::fixed_classifier, layout::W,
        layout::H, layout::b, layout::pack, layout::unpack;

    // W, H and b are all variables; d is the feature dimension.
    ufm_objective(B be, label_sets S, index_t d, penalties lambdas, pal_variant v = pal_variant::pal)
        : layout(S.num_labels(), d, S.size()), obj_(be, std::move(S), lambdas, v) {
        detail::require(d >= 1, "d", "feature dimension must be >= 1, got " + std::to_string(d));
        init_order();
    }
    ufm_objective(label_sets S, index_t d, penalties lambdas, pal_variant v = pal_variant::pal)
        : ufm_objective(B{}, std::move(S), d, lambdas, v) {}

    // W is held fixed at fixed_W (K x d); the variables are H and b.
    ufm_objective(B be, label_sets S, matrix<T> fixed_W, penalties lambdas, pal_variant v = pal_variant::pal)
        : layout(S.num_labels(), fixed_W.cols(), S.size()), obj_(be, std::move(S), lambdas, v) {
        this->set_fixed_classifier(std::move(fixed_W));
        init_order();
    }
    ufm_objective(label_sets S, matrix<T> fixed_W, penalties lambdas, pal_variant v = pal_variant::pal)
        : ufm_objective(B{}, std::move(S), std::move(fixed_W), lambdas, v) {}

    const pal_objective<T, B>& objective() const noexcept { return obj_; }

    // f, its parts and status, without and with the gradient.
    // A non-finite x is found by pal_objective only when the logits come out non-finite (no pass
    // over x on the way to a finite f); its error is then turned into the non-finite point.
    objective_value<T> evaluate(const vector_type& x) {
        check_x(x);
        try {
            return obj_.evaluate(W(x), H(x), b(x));
        } catch (const error&) {
            if (!x.allFinite()) return non_finite_point();
            throw;
        }
    }
    objective_value<T> evaluate(const vector_type& x, vector_type& g) {
        check_x(x);
        g.resize(size());
        Eigen::Map<matrix<T>> dH(g.data() + w_size(), d_, N_);
        Eigen::Map<vector<T>> db(g.data() + w_size() + d_ * N_, K_);
        try {
            if (fixed_classifier()) return obj_.evaluate(W(x), H(x), b(x), skip, dH, db);
            Eigen::Map<matrix<T>> dW(g.data(), K_, d_);
            return obj_.evaluate(W(x), H(x), b(x), dW, dH, db);
        } catch (const error&) {
            if (x.allFinite()) throw;
            g.setConstant(std::numeric_limits<T>::quiet_NaN());
            return non_finite_point();
        }
    }

    // ensmallen's differentiable function.
    T Evaluate(const vector_type& x) { return evaluate(x).total; }
    void Gradient(const vector_type& x, vector_type& g) { evaluate(x, g); }
    T EvaluateWithGradient(const vector_type& x, vector_type& g) { return evaluate(x, g).total; }
    // LBFGSpp's objective.
    T operator()(const vector_type& x, vector_type& g) { return evaluate(x, g).total; }

    // ensmallen's separable function: the samples are the functions.
    index_t NumFunctions() const noexcept { return N_; }
    // A new random order of the samples (mt19937_64; seed() sets the stream).
    void Shuffle() {
        for (index_t i = N_ - 1; i > 0; --i) {
            const auto j = static_cast<index_t>(rng_() % static_cast<std::uint64_t>(i + 1));
            std::swap(order_[static_cast<std::size_t>(i)], order_[static_cast<std::size_t>(j)]);
        }
    }
    void seed(std::uint64_t s) { rng_.seed(s); }
    // The samples in their current order (identity until Shuffle).
    const std::vector<index_t>& order() const noexcept { return order_; }
    // The batch [begin, begin + batch_size) of the current order: a view of this objective's own
    // label sets, valid while the objective lives where it is (not after it is moved or destroyed).
    sample_subset batch(index_t begin, index_t batch_size) const {
        if (begin < 0 || batch_size < 1 || begin > N_ - batch_size)
            throw error("batch: [" + std::to_string(begin) + ", " + std::to_string(begin) + " + " +
                        std::to_string(batch_size) + ") is not a non-empty range inside [0, " + std::to_string(N_) + ")");
        return {obj_.labels(), std::vector<index_t>(order_.begin() + begin, order_.begin() + begin + batch_size)};
    }
    T Evaluate(const vector_type& x, index_t begin, index_t batch_size) {
        return evaluate_batch(x, batch(begin, batch_size), nullptr).total;
    }
    void Gradient(const vector_type& x, index_t begin, vector_type& g, index_t batch_size) {
        evaluate_batch(x, batch(begin, batch_size), &g);
    }
    T EvaluateWithGradient(const vector_type& x, index_t begin, vector_type& g, index_t batch_size) {
        return evaluate_batch(x, batch(begin, batch_size), &g).total;
    }

    // f_B of any subset of the samples (see above), with the gradient when g is not null.
    objective_value<T> evaluate_batch(const vector_type& x, const sample_subset& subset, vector_type* g) {
        check_x(x);
        if (g) g->resize(size());
        if (!x.allFinite()) {
            if (g) g->setConstant(std::numeric_limits<T>::quiet_NaN());
            return non_finite_point();
        }
        const index_t n = subset.size();
        const auto Wx = W(x);
        const auto bx = b(x);
        hb_.resize(d_, n);
        hb_ = subset.columns(H(x));
        objective_value<T> v;
        if (g) {
            g->setZero();
            dhb_.resize(d_, n);
            Eigen::Map<vector<T>> db(g->data() + w_size() + d_ * N_, K_);
            if (fixed_classifier()) {
                v = obj_.evaluate_batch(subset, Wx, hb_, bx, skip, dhb_, db);
            } else {
                Eigen::Map<matrix<T>> dW(g->data(), K_, d_);
                v = obj_.evaluate_batch(subset, Wx, hb_, bx, dW, dhb_, db);
            }
            if (!v.ok()) {
                g->setConstant(std::numeric_limits<T>::quiet_NaN());
                return v;
            }
            const double share = static_cast<double>(n) / static_cast<double>(N_);
            const auto& lam = obj_.lambdas();
            dhb_ += T(2 * lam.lambda_h) * hb_;
            Eigen::Map<matrix<T>> dH(g->data() + w_size(), d_, N_);
            // A sample drawn twice contributes twice, as its loss term does.
            for (index_t j = 0; j < n; ++j) dH.col(subset.indices()[static_cast<std::size_t>(j)]) += dhb_.col(j);
            if (!fixed_classifier()) {
                Eigen::Map<matrix<T>> dW(g->data(), K_, d_);
                dW += T(2 * lam.lambda_w * share) * Wx;
            }
            db += T(2 * lam.lambda_b * share) * bx;
        } else {
            v = obj_.evaluate_batch(subset, Wx, hb_, bx);
            if (!v.ok()) return v;
        }
        add_batch_penalty(v, Wx, bx, static_cast<double>(n) / static_cast<double>(N_));
        return v;
    }

private:
    // (|B|/N)(lW ||W||^2 + lb ||b||^2) + lH ||H_B||^2, with H_B = hb_ (a repeated sample counts twice).
    template <class MW, class Mb>
    void add_batch_penalty(objective_value<T>& v, const MW& Wx, const Mb& bx, double share) const {
        const auto& lam = obj_.lambdas();
        const double pen = share * (lam.lambda_w * Wx.template cast<double>().squaredNorm() +
                                    lam.lambda_b * bx.template cast<double>().squaredNorm()) +
                           lam.lambda_h * hb_.template cast<double>().squaredNorm();
        v.penalty = static_cast<T>(pen);
        v.total = static_cast<T>(static_cast<double>(v.loss) + pen);
    }

    void init_order() {
        order_.resize(static_cast<std::size_t>(N_));
        std::iota(order_.begin(), order_.end(), index_t{0});
    }

    pal_objective<T, B> obj_;
    std::vector<index_t> order_;
    std::mt19937_64 rng_{0};
    matrix<T> hb_, dhb_;
};

template <backend B>
ufm_objective(B, label_sets, index_t, penalties, pal_variant = pal_variant::pal) -> ufm_objective<double, B>;
ufm_objective(label_sets, index_t, penalties, pal_variant = pal_variant::pal) -> ufm_objective<double, cpu>;
template <backend B, class T>
ufm_objective(B, label_sets, matrix<T>, penalties, pal_variant = pal_variant::pal) -> ufm_objective<T, B>;
template <class T>
ufm_objective(label_sets, matrix<T>, penalties, pal_variant = pal_variant::pal) -> ufm_objective<T, cpu>;

}  // namespace mlnc

// mlnc::precompiled: these instances are compiled once, into the library, and only declared here.
#if MLNC_PRECOMPILED
#if defined(MLNC_INSTANTIATE_OBJECTIVE)
#define MLNC_INSTANCE template
#else
#define MLNC_INSTANCE extern template
#endif
namespace mlnc {
#define MLNC_PAL_OBJECTIVE_INSTANCES(T)                                                                       \
    MLNC_INSTANCE class pal_objective<T, cpu>;                                                                \
    MLNC_INSTANCE objective_value<T> pal_objective<T, cpu>::data_term_of(                                     \
        const label_sets&, const in_matrix&, const in_matrix&, const in_vector&, out_matrix*, out_matrix*,   \
        out_vector*, double*);                                                                                \
    MLNC_INSTANCE objective_value<T> pal_objective<T, cpu>::data_term_of(                                     \
        const sample_subset&, const in_matrix&, const in_matrix&, const in_vector&, out_matrix*, out_matrix*, \
        out_vector*, double*);
MLNC_PAL_OBJECTIVE_INSTANCES(float)
MLNC_PAL_OBJECTIVE_INSTANCES(double)
#undef MLNC_PAL_OBJECTIVE_INSTANCES
}  // namespace mlnc
#undef MLNC_INSTANCE
#endif
