#include <mlnc/mlnc.hpp>

#include <cmath>
#include <iostream>

// Two labels, two samples, zero logits: each sample's PAL loss is log 2.
int main() {
    const auto S = mlnc::label_sets::from_lists({{0}, {1}}, 2);
    const Eigen::MatrixXd Z = Eigen::MatrixXd::Zero(2, 2);
    const double loss = mlnc::pal_loss(Z, S);
    std::cout << "loss " << loss << "\n";
    return std::abs(loss - std::log(2.0)) < 1e-15 ? 0 : 1;
}
