#pragma once
// --backend cuda: mlnc objective's evaluation and mlnc verify's training on the GPU. The
// definitions are in cuda_objective.cu, compiled by nvcc in builds with the CUDA backend
// (MLNC_WITH_CUDA); the program's other files stay host-only. Without the backend, or without a
// usable device, the calls throw mlnc::error: the program exits 2 with one line saying so.

#include <mlnc/config.hpp>
#include <mlnc/error.hpp>
#include <mlnc/labels.hpp>
#include <mlnc/objective.hpp>
#include <mlnc/types.hpp>
#include <mlnc/ufm.hpp>

namespace mlnc_cli {

// Uploads W, H, b and the labels, evaluates f and the gradients whose outputs are not null, and
// downloads them. L-BFGS-style use (host parameters, one call per evaluation) pays the uploads
// and downloads each time: about (K d + d N + K) entries each way.
#if MLNC_WITH_CUDA
// Throws mlnc::error (one line: why) unless a CUDA device is usable.
void require_cuda_device();

template <class T>
mlnc::objective_value<T> cuda_objective(const mlnc::matrix<T>& W, const mlnc::matrix<T>& H, const mlnc::vector<T>& b,
                                        const mlnc::label_sets& S, const mlnc::penalties& lam, mlnc::pal_variant v,
                                        mlnc::matrix<T>* dW, mlnc::matrix<T>* dH, mlnc::vector<T>* db);
extern template mlnc::objective_value<float> cuda_objective(const mlnc::matrix<float>&, const mlnc::matrix<float>&,
                                                            const mlnc::vector<float>&, const mlnc::label_sets&,
                                                            const mlnc::penalties&, mlnc::pal_variant,
                                                            mlnc::matrix<float>*, mlnc::matrix<float>*,
                                                            mlnc::vector<float>*);
extern template mlnc::objective_value<double> cuda_objective(const mlnc::matrix<double>&, const mlnc::matrix<double>&,
                                                             const mlnc::vector<double>&, const mlnc::label_sets&,
                                                             const mlnc::penalties&, mlnc::pal_variant,
                                                             mlnc::matrix<double>*, mlnc::matrix<double>*,
                                                             mlnc::vector<double>*);
// train_ufm on the GPU (mlnc/cuda/ufm.cuh): L-BFGS copies x to the device and the gradient back
// per evaluation; gradient descent keeps its vectors on the device. The observer gets host copies.
template <class T>
mlnc::ufm_result<T> cuda_train(const mlnc::label_sets& S, mlnc::index_t d, const mlnc::penalties& lam,
                               const mlnc::ufm_options& opt, const mlnc::ufm_observer<T>& observer);
extern template mlnc::ufm_result<float> cuda_train(const mlnc::label_sets&, mlnc::index_t, const mlnc::penalties&,
                                                   const mlnc::ufm_options&, const mlnc::ufm_observer<float>&);
extern template mlnc::ufm_result<double> cuda_train(const mlnc::label_sets&, mlnc::index_t, const mlnc::penalties&,
                                                    const mlnc::ufm_options&, const mlnc::ufm_observer<double>&);
#else
inline constexpr const char* no_cuda_build =
    "--backend cuda: this mlnc was built without the CUDA backend (configure with MLNC_ENABLE_CUDA=ON where nvcc is "
    "installed)";
[[noreturn]] inline void require_cuda_device() { throw mlnc::error(no_cuda_build); }
template <class T>
mlnc::ufm_result<T> cuda_train(const mlnc::label_sets&, mlnc::index_t, const mlnc::penalties&, const mlnc::ufm_options&,
                               const mlnc::ufm_observer<T>&) {
    throw mlnc::error(no_cuda_build);
}
template <class T>
mlnc::objective_value<T> cuda_objective(const mlnc::matrix<T>&, const mlnc::matrix<T>&, const mlnc::vector<T>&,
                                        const mlnc::label_sets&, const mlnc::penalties&, mlnc::pal_variant,
                                        mlnc::matrix<T>*, mlnc::matrix<T>*, mlnc::vector<T>*) {
    throw mlnc::error(no_cuda_build);
}
#endif

}  // namespace mlnc_cli
