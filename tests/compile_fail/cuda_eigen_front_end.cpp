// Must NOT compile, even in a program linked to mlnc::cuda: the CUDA backend takes device views,
// not Eigen objects. CTest expects the static_assert's message in the compiler output.
#include <mlnc/pal.hpp>

int main() {
    const auto S = mlnc::label_sets::from_lists({{0}, {1}}, 2);
    const Eigen::MatrixXd Z = Eigen::MatrixXd::Zero(2, 2);
    return static_cast<int>(mlnc::pal_loss(mlnc::cuda{}, Z, S));
}
