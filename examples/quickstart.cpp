// The smallest tour of the library: label sets, the PAL-CE objective and its gradient, and one
// plain gradient step that lowers the objective.

#include <mlnc/mlnc.hpp>

#include <iostream>

int main() {
    // Three labels, four samples: two singletons, a pair and the full set.
    const auto S = mlnc::label_sets::from_lists({{0}, {1}, {1, 2}, {0, 1, 2}}, 3);
    mlnc::pal_objective<double> f(S, {.lambda_w = 5e-3, .lambda_h = 5e-3, .lambda_b = 1e-2});

    Eigen::MatrixXd W = Eigen::MatrixXd::Random(3, 4), H = Eigen::MatrixXd::Random(4, 4);
    Eigen::VectorXd b = Eigen::VectorXd::Zero(3);
    Eigen::MatrixXd dW(3, 4), dH(4, 4);
    Eigen::VectorXd db(3);

    const auto before = f.evaluate(W, H, b, dW, dH, db);
    const double step = 0.5;
    W -= step * dW;
    H -= step * dH;
    b -= step * db;
    const auto after = f.evaluate(W, H, b);

    std::cout << "objective " << before.total << " -> " << after.total << " after one gradient step\n";
    return after.total < before.total ? 0 : 1;
}
