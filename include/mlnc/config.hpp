#pragma once
// Library-wide macros and the version. Nothing here depends on Eigen.

#define MLNC_VERSION_MAJOR 0
#define MLNC_VERSION_MINOR 1
#define MLNC_VERSION_PATCH 0

// Functions callable from both host and device code; empty when nvcc is not compiling.
#if defined(__CUDACC__)
#define MLNC_HOST_DEVICE __host__ __device__
#else
#define MLNC_HOST_DEVICE
#endif

// MLNC_WITH_CUDA is defined (to 1) by the build when the CUDA backend's kernels are compiled in.
#if !defined(MLNC_WITH_CUDA)
#define MLNC_WITH_CUDA 0
#endif

// MLNC_PRECOMPILED is defined (to 1) for programs linked to mlnc::precompiled, the optional static
// library that holds the float and double CPU instances of the heavy templates (the trainer, the
// objective, the metrics, the closed form, the ETF, the synthetic data; docs/api.md): the headers
// then declare those instances extern template, and research code compiles several times faster.
#if !defined(MLNC_PRECOMPILED)
#define MLNC_PRECOMPILED 0
#endif
