// Must NOT compile on the host: the predictors check the capability table too. CTest expects the
// static_assert's message in the compiler output.
#include <mlnc/predict.hpp>

int main() {
    const auto S = mlnc::label_sets::from_lists({{0}, {1}}, 2);
    const Eigen::MatrixXd H = Eigen::MatrixXd::Identity(2, 2);
    const mlnc::onn_predictor onn(mlnc::cuda{}, H, S);
    return static_cast<int>(onn.num_classes());
}
