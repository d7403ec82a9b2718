// Must NOT compile, even in a program linked to mlnc::cuda: training on the CUDA backend needs
// <mlnc/cuda/ufm.cuh> in a file compiled by nvcc. CTest expects the static_assert's message.
#include <mlnc/ufm.hpp>

int main() {
    const auto S = mlnc::label_sets::from_lists({{0}, {1}}, 2);
    const auto r = mlnc::train_ufm<double>(mlnc::cuda{}, S, 2, {1e-3, 1e-3, 1e-3}, mlnc::ufm_options{});
    return static_cast<int>(r.iterations);
}
