#pragma once
// How far trained features are from Theorem 1's tag-wise average h = C_m sum_{k in S} w_k:
// per multiplicity m, the least-squares C_m over the label-set means of size m and the largest
// relative residual ||mu_S - C_m v_S|| / ||mu_S||, v_S = sum_{k in S} w_k.

#include <mlnc/error.hpp>
#include <mlnc/labels.hpp>
#include <mlnc/metrics.hpp>
#include <mlnc/types.hpp>

#include <Eigen/Core>

#include <algorithm>
#include <limits>

namespace mlnc {

struct tagwise_fit {
    // For each multiplicity m present. For m = K the prototype sum_k w_k vanishes for an ETF, so
    // C_K is reported as 0 and the residual as max ||mu_S|| divided by the mean norm of the
    // multiplicity-1 means (how far from the predicted 0 those features are).
    per_multiplicity<double> C;
    per_multiplicity<double> residual;
};

// H: d x N features with label sets S; W: K x d classifier. Either may be float or double; the
// means (compute_class_means) and the fit are computed in double. Throws mlnc::error when S is
// empty, a shape does not match, or H or W holds NaN/Inf.
template <class DH, class DW>
tagwise_fit fit_tagwise(const Eigen::MatrixBase<DH>& H, const label_sets& S, const Eigen::MatrixBase<DW>& W) {
    const class_means cm = compute_class_means(H, S);
    const index_t K = S.num_labels(), d = cm.dim();
    detail::check_classifier(W, K, d);
    const Eigen::MatrixXd Wt = W.template cast<double>().transpose();  // column k: w_k

    double norm1 = 0;  // the mean norm of the multiplicity-1 means, the scale of the m = K residual
    if (cm.num_singletons > 0)
        norm1 = cm.means.leftCols(cm.num_singletons).colwise().norm().sum() / static_cast<double>(cm.num_singletons);

    tagwise_fit out;
    Eigen::MatrixXd V;
    for (const auto& [m, r] : cm.groups_by_multiplicity()) {
        const auto Mu = cm.means.middleCols(r.begin, r.size());
        V.setZero(d, r.size());  // column t: v_S for S = sets[r.begin + t]
        double num = 0, den = 0;
        for (index_t t = 0; t < r.size(); ++t) {
            for (const label_t k : cm.sets[r.begin + t]) V.col(t) += Wt.col(k);
            num += Mu.col(t).dot(V.col(t));
            den += V.col(t).squaredNorm();
        }
        const double c = (m == K || den == 0.0) ? 0.0 : num / den;
        double worst = 0;
        for (index_t t = 0; t < r.size(); ++t) {
            const double res = (Mu.col(t) - c * V.col(t)).norm();
            const double scale = m == K ? norm1 : Mu.col(t).norm();
            const double rel = scale > 0 ? res / scale : (res == 0 ? 0.0 : std::numeric_limits<double>::infinity());
            worst = std::max(worst, rel);
        }
        out.C.insert_or_assign(m, c);
        out.residual.insert_or_assign(m, worst);
    }
    return out;
}

}  // namespace mlnc
