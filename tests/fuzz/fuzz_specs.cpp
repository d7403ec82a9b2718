// Fuzz target: the command-line specs of training sets: `--n 1:20,2:4` (with and without K) and
// the text of a `--counts` file (with a K chosen by the first byte).
#include "fuzz_support.hpp"

#include <mlnc/io/counts.hpp>

extern "C" int LLVMFuzzerInitialize(int*, char***) {
    mlnc_fuzz::limit_memory();
    return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const auto text = mlnc_fuzz::as_text(data, size);
    mlnc_fuzz::expect_refusal_or_success([&] { mlnc::io::parse_multiplicity_spec(text, "--n"); });
    mlnc_fuzz::expect_refusal_or_success([&] {
        const auto n = mlnc::io::parse_multiplicity_spec(text, "--n", 1000);
        if (n.empty() || n.max_multiplicity() > 1000) std::abort();
    });
    if (size > 0) {
        const mlnc::index_t K = data[0] % 40 + 2;
        mlnc_fuzz::expect_refusal_or_success([&] {
            const auto p = mlnc::io::parse_counts(text.substr(1), K, 5000, "--counts fuzz");
            if (p.S.empty() || p.S.size() > 5000 || p.S.num_labels() != K) std::abort();
            if (p.n && (p.n->empty() || p.n->max_multiplicity() > K)) std::abort();
        });
    }
    return 0;
}
