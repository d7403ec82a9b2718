// --backend cuda of mlnc objective and mlnc verify (cuda_objective.hpp): the one file of the program
// nvcc compiles.
#include "cuda_objective.hpp"

#include <mlnc/cuda/objective.cuh>
#include <mlnc/cuda/ufm.cuh>

namespace mlnc_cli {

void require_cuda_device() {
    if (mlnc::cuda_device_count() > 0) return;
    int n = 0;
    const cudaError_t e = cudaGetDeviceCount(&n);
    throw mlnc::error(std::string("--backend cuda: no usable CUDA device (") +
                      (e != cudaSuccess ? cudaGetErrorString(e) : "none found") + ")");
}

template <class T>
mlnc::objective_value<T> cuda_objective(const mlnc::matrix<T>& W, const mlnc::matrix<T>& H, const mlnc::vector<T>& b,
                                        const mlnc::label_sets& S, const mlnc::penalties& lam, mlnc::pal_variant v,
                                        mlnc::matrix<T>* dW, mlnc::matrix<T>* dH, mlnc::vector<T>* db) {
    require_cuda_device();
    mlnc::cuda_backend gpu;
    mlnc::pal_objective<T, mlnc::cuda_backend> f(gpu, S, lam, v);
    const auto dW_in = mlnc::upload(gpu, W);
    const auto dH_in = mlnc::upload(gpu, H);
    const auto db_in = mlnc::upload(gpu, b);
    mlnc::device_buffer<T> gW(dW ? W.rows() : 0, W.cols()), gH(dH ? H.rows() : 0, H.cols()), gb(db ? b.size() : 0);
    const auto v_out = f.evaluate(dW_in.view(), dH_in.view(), db_in.vector_view(),
                                  dW ? gW.view() : mlnc::device_matrix_view<T>{},
                                  dH ? gH.view() : mlnc::device_matrix_view<T>{},
                                  db ? gb.vector_view() : mlnc::device_vector_view<T>{});
    if (dW) *dW = mlnc::download(gpu, gW.view());
    if (dH) *dH = mlnc::download(gpu, gH.view());
    if (db) *db = mlnc::download(gpu, gb.vector_view());
    return v_out;
}

template mlnc::objective_value<float> cuda_objective(const mlnc::matrix<float>&, const mlnc::matrix<float>&,
                                                     const mlnc::vector<float>&, const mlnc::label_sets&,
                                                     const mlnc::penalties&, mlnc::pal_variant, mlnc::matrix<float>*,
                                                     mlnc::matrix<float>*, mlnc::vector<float>*);
template mlnc::objective_value<double> cuda_objective(const mlnc::matrix<double>&, const mlnc::matrix<double>&,
                                                      const mlnc::vector<double>&, const mlnc::label_sets&,
                                                      const mlnc::penalties&, mlnc::pal_variant, mlnc::matrix<double>*,
                                                      mlnc::matrix<double>*, mlnc::vector<double>*);

template <class T>
mlnc::ufm_result<T> cuda_train(const mlnc::label_sets& S, mlnc::index_t d, const mlnc::penalties& lam,
                               const mlnc::ufm_options& opt, const mlnc::ufm_observer<T>& observer) {
    require_cuda_device();
    return mlnc::train_ufm<T>(mlnc::cuda{}, S, d, lam, opt, observer);
}

template mlnc::ufm_result<float> cuda_train(const mlnc::label_sets&, mlnc::index_t, const mlnc::penalties&,
                                            const mlnc::ufm_options&, const mlnc::ufm_observer<float>&);
template mlnc::ufm_result<double> cuda_train(const mlnc::label_sets&, mlnc::index_t, const mlnc::penalties&,
                                             const mlnc::ufm_options&, const mlnc::ufm_observer<double>&);

}  // namespace mlnc_cli
