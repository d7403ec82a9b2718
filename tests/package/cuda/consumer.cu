// The installed CUDA backend from a consumer's own .cu file: the kernels compile there, and with a
// device the loss of two samples with zero logits is log 2 (without one it says so and passes:
// this checks the package, the GPU tests check the kernels).
#include <mlnc/cuda/pal.cuh>

#include <cmath>
#include <cstdio>

int main() {
    static_assert(mlnc::backend_traits<mlnc::cuda>::compiled_in, "mlnc::cuda defines MLNC_WITH_CUDA");
    if (mlnc::cuda_device_count() == 0) {
        std::printf("built; no usable CUDA device to run on\n");
        return 0;
    }
    mlnc::cuda_backend gpu;
    const auto S = mlnc::to_device(mlnc::label_sets::from_lists({{0}, {1}}, 2), gpu);
    const auto Z = mlnc::upload(gpu, Eigen::MatrixXf::Zero(2, 2));
    const float loss = mlnc::pal_loss(gpu, Z.view(), S);
    std::printf("loss %.7f\n", loss);
    return std::abs(loss - std::log(2.0f)) < 1e-6f ? 0 : 1;
}
