#pragma once
// The memory of L-BFGS over long vectors (the trainer's x holds all of W, H and b), in two passes
// per iteration instead of the two-loop recursion's 4m. The direction -H g is a combination of
// the stored pairs (s_j, y_j) and g, so the recursion can run on the coefficients of that
// combination, given the inner products of those 2m + 1 vectors (Chen et al., "Large-scale L-BFGS
// using MapReduce", NIPS 2014):
//   pass 1 (push): store the new pair s = x - x_prev, y = g - g_prev over the oldest and compute
//          its inner products with every stored vector, and those of g;
//   pass 2 (direction): d = sum of coefficients times vectors.
// Both passes stream the stored vectors once, in cache-sized blocks, split over threads in
// contiguous ranges with partial sums added in range order (detail/threads.hpp). The algebra is
// that of the two-loop recursion with H0 = (s'y / y'y) I of the newest pair; a pair with
// s'y <= eps y'y (no positive curvature, possible after a backtracking search) is not kept.

#include <mlnc/detail/threads.hpp>
#include <mlnc/types.hpp>

#include <Eigen/Core>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

namespace mlnc::detail {

// Elements per block of the passes (a block of every vector involved stays in L1/L2) and per
// thread at least (below that a thread costs more than it saves).
inline constexpr index_t lbfgs_block = 2048;
inline constexpr double lbfgs_min_per_thread = 1 << 15;

inline int vector_team(int threads, index_t n) {
    return team_size(threads, static_cast<double>(n), lbfgs_min_per_thread, n / lbfgs_block + 1);
}

// Runs f(begin, size) over blocks of [0, n) on up to `threads` threads and returns the sum of
// its (double) results, added in a fixed order.
template <class F>
double blocked_sum(int threads, index_t n, F&& f) {
    const int nt = vector_team(threads, n);
    std::vector<double> part(static_cast<std::size_t>(nt), 0.0);
    parallel_ranges(nt, n, lbfgs_block, [&](int t, index_t i0, index_t i1) {
        double s = 0;
        for (index_t j = i0; j < i1; j += lbfgs_block) s += f(j, std::min(lbfgs_block, i1 - j));
        part[static_cast<std::size_t>(t)] = s;
    });
    double s = 0;
    for (double p : part) s += p;
    return s;
}

template <class T>
double parallel_dot(int threads, const vector<T>& a, const vector<T>& b) {
    return blocked_sum(threads, a.size(), [&](index_t j, index_t nb) {
        return static_cast<double>(a.segment(j, nb).dot(b.segment(j, nb)));
    });
}

template <class T>
double parallel_norm(int threads, const vector<T>& a) {
    return std::sqrt(blocked_sum(threads, a.size(), [&](index_t j, index_t nb) {
        return static_cast<double>(a.segment(j, nb).squaredNorm());
    }));
}

// x = xp + a d
template <class T>
void parallel_step(int threads, vector<T>& x, const vector<T>& xp, T a, const vector<T>& d) {
    x.resize(xp.size());
    (void)blocked_sum(threads, xp.size(), [&](index_t j, index_t nb) {
        x.segment(j, nb).noalias() = xp.segment(j, nb) + a * d.segment(j, nb);
        return 0.0;
    });
}

template <class T>
class lbfgs_memory {
public:
    lbfgs_memory(index_t n, int m, int threads)
        : m_(m), threads_(threads), S_(n, m), Y_(n, m), M_(Eigen::MatrixXd::Zero(2 * m + 1, 2 * m + 1)),
          alpha_(m) {}

    int size() const noexcept { return count_; }
    // Forgets every pair. The inner products go too: a push of a non-finite gradient (refused,
    // then the run restarts) leaves NaN in rows that a later recursion multiplies by 0.
    void clear() noexcept {
        count_ = 0;
        M_.setZero();
    }

    // Stores s = x - xp, y = g - gp as the newest pair (over the oldest when m are kept) and
    // computes the inner products of g with every kept vector and itself. false when the pair was refused
    // (no positive curvature); the inner products of g are computed either way.
    bool push(const vector<T>& x, const vector<T>& xp, const vector<T>& g, const vector<T>& gp) {
        const int loc = next_;
        // The kept slots plus the new one, newest first (the oldest one is overwritten when full).
        std::vector<int> slots{loc};
        for (int k = 0; k < std::min(count_, m_ - 1); ++k) slots.push_back(slot(k));
        const std::size_t ns = slots.size();
        const index_t n = x.size();
        const int nt = vector_team(threads_, n);
        // Per thread and slot: s.s_j, s.y_j, y.s_j, y.y_j, g.s_j, g.y_j; then g.g.
        const std::size_t per = ns * 6 + 1;
        std::vector<double> part(static_cast<std::size_t>(nt) * per, 0.0);
        parallel_ranges(nt, n, lbfgs_block, [&](int t, index_t i0, index_t i1) {
            double* acc = part.data() + static_cast<std::size_t>(t) * per;
            for (index_t j = i0; j < i1; j += lbfgs_block) {
                const index_t nb = std::min(lbfgs_block, i1 - j);
                auto s = S_.col(loc).segment(j, nb);
                auto y = Y_.col(loc).segment(j, nb);
                s.noalias() = x.segment(j, nb) - xp.segment(j, nb);
                y.noalias() = g.segment(j, nb) - gp.segment(j, nb);
                const auto gs = g.segment(j, nb);
                for (std::size_t k = 0; k < ns; ++k) {
                    const auto sj = S_.col(slots[k]).segment(j, nb);
                    const auto yj = Y_.col(slots[k]).segment(j, nb);
                    double* a = acc + 6 * k;
                    a[0] += static_cast<double>(s.dot(sj));
                    a[1] += static_cast<double>(s.dot(yj));
                    a[2] += static_cast<double>(y.dot(sj));
                    a[3] += static_cast<double>(y.dot(yj));
                    a[4] += static_cast<double>(gs.dot(sj));
                    a[5] += static_cast<double>(gs.dot(yj));
                }
                acc[6 * ns] += static_cast<double>(gs.squaredNorm());
            }
        });
        const int gi = 2 * m_;
        for (std::size_t k = 0; k < ns; ++k) {
            double v[6] = {0, 0, 0, 0, 0, 0};
            for (int t = 0; t < nt; ++t)
                for (std::size_t q = 0; q < 6; ++q) v[q] += part[static_cast<std::size_t>(t) * per + 6 * k + q];
            const int j = slots[k];
            set(loc, j, v[0]);
            set(loc, m_ + j, v[1]);
            set(m_ + loc, j, v[2]);
            set(m_ + loc, m_ + j, v[3]);
            set(gi, j, v[4]);
            set(gi, m_ + j, v[5]);
        }
        double gg = 0;
        for (int t = 0; t < nt; ++t) gg += part[static_cast<std::size_t>(t) * per + 6 * ns];
        M_(gi, gi) = gg;
        const double sy = M_(loc, m_ + loc), yy = M_(m_ + loc, m_ + loc);
        if (!(sy > std::numeric_limits<T>::epsilon() * yy)) {
            count_ = std::min(count_, m_ - 1);  // slot loc no longer holds a kept pair
            return false;
        }
        next_ = (loc + 1) % m_;
        count_ = std::min(count_ + 1, m_);
        return true;
    }

    // ||g||^2 for the g of the last push (computed in its pass).
    double gradient_squared_norm() const noexcept { return M_(2 * m_, 2 * m_); }

    // d = -H g for the g of the last push (size() >= 1). Returns g.d, from the inner products
    // (the line search's phi'(0), without a pass over g and d).
    double direction(const vector<T>& g, vector<T>& d) {
        const int D = 2 * m_ + 1, gi = 2 * m_;
        Eigen::VectorXd q = Eigen::VectorXd::Zero(D);
        q(gi) = 1;
        for (int k = 0; k < count_; ++k) {  // newest to oldest
            const int j = slot(k);
            alpha_(j) = M_.row(j).dot(q) / M_(j, m_ + j);
            q(m_ + j) -= alpha_(j);
        }
        const int newest = slot(0);
        q *= M_(newest, m_ + newest) / M_(m_ + newest, m_ + newest);
        for (int k = count_ - 1; k >= 0; --k) {  // oldest to newest
            const int j = slot(k);
            const double beta = M_.row(m_ + j).dot(q) / M_(j, m_ + j);
            q(j) += alpha_(j) - beta;
        }
        const index_t n = g.size();
        d.resize(n);
        std::vector<int> slots;
        for (int k = 0; k < count_; ++k) slots.push_back(slot(k));
        (void)blocked_sum(threads_, n, [&](index_t j, index_t nb) {
            auto dj = d.segment(j, nb);
            dj.noalias() = static_cast<T>(-q(gi)) * g.segment(j, nb);
            for (int s : slots)
                dj.noalias() -= static_cast<T>(q(s)) * S_.col(s).segment(j, nb) +
                                static_cast<T>(q(m_ + s)) * Y_.col(s).segment(j, nb);
            return 0.0;
        });
        return -M_.row(gi).dot(q);
    }

private:
    // The slot of the k-th newest kept pair.
    int slot(int k) const noexcept { return ((next_ - 1 - k) % m_ + m_) % m_; }
    void set(int a, int b, double v) noexcept { M_(a, b) = M_(b, a) = v; }

    int m_, threads_;
    int count_ = 0, next_ = 0;
    matrix<T> S_, Y_;
    Eigen::MatrixXd M_;  // inner products of [s_0 .. s_{m-1}, y_0 .. y_{m-1}, g]
    Eigen::VectorXd alpha_;
};

}  // namespace mlnc::detail
