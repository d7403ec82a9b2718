// Fuzz target: the .npy reader (header parser, dtype and shape checks, data conversion).
#include "fuzz_support.hpp"

#include <mlnc/io/npy.hpp>

#include <cmath>

extern "C" int LLVMFuzzerInitialize(int*, char***) {
    mlnc_fuzz::limit_memory();
    return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    mlnc_fuzz::expect_refusal_or_success([&] {
        const auto a = mlnc::io::parse_npy(mlnc_fuzz::as_text(data, size), "fuzz.npy");
        // What the reader promises: the shape's product is the number of values.
        std::int64_t count = 1;
        for (const auto n : a.shape) count *= n;
        if (count != a.size() || a.ndim() > 2) std::abort();
    });
    return 0;
}
