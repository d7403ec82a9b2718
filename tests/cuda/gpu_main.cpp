// The main of the GPU tests: exit 77 (CTest's SKIP_RETURN_CODE) when no CUDA device is usable, so
// a machine without a GPU reports the tests as skipped, never as passed.
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>

#include <cuda_runtime.h>

#include <cstdio>

int main(int argc, char* argv[]) {
    int n = 0;
    const cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess || n == 0) {
        std::printf("no usable CUDA device (%s): skipped\n", e != cudaSuccess ? cudaGetErrorString(e) : "none found");
        return 77;
    }
    return Catch::Session().run(argc, argv);
}
