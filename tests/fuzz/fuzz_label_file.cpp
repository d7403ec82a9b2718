// Fuzz target: label files, text and multi-hot .npy, with K inferred and with K given (the first
// byte picks K in 0, 2..33 so that both branches are reached).
#include "fuzz_support.hpp"

#include <mlnc/io/label_file.hpp>

extern "C" int LLVMFuzzerInitialize(int*, char***) {
    mlnc_fuzz::limit_memory();
    return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const auto text = mlnc_fuzz::as_text(data, size);
    const auto check = [](const mlnc::label_sets& S) {
        // What a reader promises: every set non-empty, sorted, unique and inside [0, K).
        for (mlnc::index_t i = 0; i < S.size(); ++i) {
            const auto s = S[i];
            if (s.empty() || s.front() < 0 || s.back() >= S.num_labels()) std::abort();
            for (std::size_t j = 1; j < s.size(); ++j)
                if (s[j] <= s[j - 1]) std::abort();
        }
    };
    mlnc_fuzz::expect_refusal_or_success([&] { check(mlnc::io::parse_labels(text, 0, "fuzz")); });
    if (size > 0) {
        const mlnc::index_t K = data[0] % 33 == 0 ? 0 : data[0] % 33 + 1;
        mlnc_fuzz::expect_refusal_or_success([&] { check(mlnc::io::parse_labels(text.substr(1), K, "fuzz")); });
    }
    return 0;
}
