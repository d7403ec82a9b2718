#pragma once
// How far trained features are from Theorem 1's tag-wise average h = C_m sum_{k in S} w_k:
// per multiplicity m, the least-squares C_m over the label-set means of size m and the largest
// relative residual ||mu_S - C_m v_S|| / ||mu_S||, v_S = sum_{k in S} w_k.

#include <mlnc/error.hpp>
#include <mlnc/labels.hpp>

#include <Eigen/Core>

#include <algorithm>
#include <map>
#include <string>

namespace mlnc {

struct tagwise_fit {
    // Keyed by multiplicity m (only those present). For m = K the prototype sum_k w_k vanishes
    // for an ETF, so C_K is reported as 0 and the residual as max ||mu_S|| divided by the mean
    // norm of the multiplicity-1 means (how far from the predicted 0 those features are).
    std::map<index_t, double> C;
    std::map<index_t, double> residual;
};

template <class DH, class DW>
tagwise_fit fit_tagwise(const Eigen::MatrixBase<DH>& H, const label_sets& S, const Eigen::MatrixBase<DW>& W) {
    const index_t K = S.num_labels(), N = S.size(), d = H.rows();
    if (H.cols() != N)
        throw error("H: expected " + std::to_string(N) + " columns (one per sample), got " + std::to_string(H.cols()));
    if (W.rows() != K || W.cols() != d)
        throw error("W: expected " + std::to_string(K) + " x " + std::to_string(d) + ", got " +
                    std::to_string(W.rows()) + " x " + std::to_string(W.cols()));
    const Eigen::MatrixXd Hd = H.template cast<double>(), Wd = W.template cast<double>();
    if (!Hd.allFinite()) throw error("H: contains NaN or Inf");
    if (!Wd.allFinite()) throw error("W: contains NaN or Inf");

    const auto groups = group_by_label_set(S);
    const index_t G = groups.size();
    Eigen::MatrixXd mu(d, G), v = Eigen::MatrixXd::Zero(d, G);
    for (index_t g = 0; g < G; ++g) {
        const auto& mem = groups.members[static_cast<std::size_t>(g)];
        Eigen::VectorXd s = Eigen::VectorXd::Zero(d);
        for (index_t i : mem) s += Hd.col(i);
        mu.col(g) = s / static_cast<double>(mem.size());
        for (label_t k : groups.sets[g]) v.col(g) += Wd.row(k).transpose();
    }

    std::map<index_t, double> num, den;
    for (index_t g = 0; g < G; ++g) {
        const index_t m = groups.sets.multiplicity(g);
        num[m] += mu.col(g).dot(v.col(g));
        den[m] += v.col(g).squaredNorm();
    }
    double norm1 = 0;
    index_t count1 = 0;
    for (index_t g = 0; g < G; ++g)
        if (groups.sets.multiplicity(g) == 1) {
            norm1 += mu.col(g).norm();
            ++count1;
        }
    norm1 = count1 > 0 ? norm1 / static_cast<double>(count1) : 0.0;

    tagwise_fit out;
    for (const auto& [m, n] : num) out.C[m] = (m == K || den[m] == 0.0) ? 0.0 : n / den[m];
    for (index_t g = 0; g < G; ++g) {
        const index_t m = groups.sets.multiplicity(g);
        const double r = (mu.col(g) - out.C[m] * v.col(g)).norm();
        const double scale = m == K ? norm1 : mu.col(g).norm();
        const double rel = scale > 0 ? r / scale : (r == 0 ? 0.0 : std::numeric_limits<double>::infinity());
        auto [it, fresh] = out.residual.try_emplace(m, rel);
        if (!fresh) it->second = std::max(it->second, rel);
    }
    return out;
}

}  // namespace mlnc
