// The host side of the CUDA backend (no device needed): CUDA and cuBLAS failures become
// mlnc::cuda_error carrying the call, the status and its text.
#include <mlnc/cuda/runtime.hpp>

#include <catch2/catch.hpp>

#include <string>

TEST_CASE("cuda runtime failures map to cuda_error", "[cuda]") {
    try {
        mlnc::detail::cuda_check(cudaErrorMemoryAllocation, "cudaMalloc");
        FAIL("no throw");
    } catch (const mlnc::cuda_error& e) {
        CHECK(e.call() == "cudaMalloc");
        CHECK(e.status() == static_cast<int>(cudaErrorMemoryAllocation));
        CHECK(e.status_name() == "cudaErrorMemoryAllocation");
        CHECK(std::string(e.what()) == "cudaMalloc failed: cudaErrorMemoryAllocation (2): out of memory");
    }
    CHECK_NOTHROW(mlnc::detail::cuda_check(cudaSuccess, "cudaMalloc"));
}

TEST_CASE("cuBLAS failures map to cuda_error", "[cuda]") {
    try {
        mlnc::detail::cublas_check(CUBLAS_STATUS_NOT_INITIALIZED, "cublasSgemm_64");
        FAIL("no throw");
    } catch (const mlnc::cuda_error& e) {
        CHECK(e.call() == "cublasSgemm_64");
        CHECK(e.status() == static_cast<int>(CUBLAS_STATUS_NOT_INITIALIZED));
        CHECK(e.status_name() == "CUBLAS_STATUS_NOT_INITIALIZED");
        CHECK(std::string(e.what()).rfind("cublasSgemm_64 failed: CUBLAS_STATUS_NOT_INITIALIZED (1): ", 0) == 0);
    }
    // cuda_error is not mlnc::error: a failing device is not bad input.
    CHECK_FALSE(std::is_base_of_v<mlnc::error, mlnc::cuda_error>);
}

TEST_CASE("cuda_device_count is 0, not an error, without a usable device", "[cuda]") {
    const int n = mlnc::cuda_device_count();
    CHECK(n >= 0);
    int direct = 0;
    if (cudaGetDeviceCount(&direct) != cudaSuccess) CHECK(n == 0);
}
