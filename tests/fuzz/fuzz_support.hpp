#pragma once
// Shared by the fuzz targets: the entry point's signature, and the rule every target follows.
// A target feeds the bytes to one parser or constructor; mlnc::error (a clear refusal) is the
// expected outcome for bad input and is swallowed; anything else (another exception, a crash, a
// sanitizer report, an allocation beyond the limit) is a finding.
//
// The same files build two ways: with clang's libFuzzer (make fuzz) and with the project's
// compiler as an ordinary program that replays the corpus and every input that ever crashed
// (replay_main.cpp, a CTest test per target in make test).

#include <mlnc/error.hpp>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size);
extern "C" int LLVMFuzzerInitialize(int* argc, char*** argv);

namespace mlnc_fuzz {

inline std::string_view as_text(const std::uint8_t* data, std::size_t size) {
    return {reinterpret_cast<const char*>(data), size};
}

// Runs f(); a refusal with mlnc::error is the expected answer to bad input.
template <class F>
void expect_refusal_or_success(F&& f) {
    try {
        f();
    } catch (const mlnc::error&) {
    }
}

// Sizes that are honest for the input but too large for the fuzzer's memory budget are refused by
// the library's memory check (detail/memory.hpp) with mlnc::error, as on a small machine.
inline void limit_memory() { setenv("MLNC_MEMORY_LIMIT", "500000000", 1); }

}  // namespace mlnc_fuzz
