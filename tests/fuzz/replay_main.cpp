// The fuzz targets without libFuzzer: replays every file of the folders given on the command line
// (the seed corpus and the inputs that once crashed) through LLVMFuzzerTestOneInput. Built with
// the project's compiler (plain and with ASan+UBSan) and run by make test; an input that still
// crashes aborts the program, and CTest reports the test failed.

#include "fuzz_support.hpp"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <iterator>
#include <string>
#include <vector>

int main(int argc, char** argv) {
    LLVMFuzzerInitialize(&argc, &argv);
    std::vector<std::filesystem::path> files;
    for (int a = 1; a < argc; ++a) {
        const std::filesystem::path dir(argv[a]);
        if (!std::filesystem::is_directory(dir)) continue;  // a target may have no crash folder yet
        for (const auto& e : std::filesystem::recursive_directory_iterator(dir))
            if (e.is_regular_file()) files.push_back(e.path());
    }
    std::sort(files.begin(), files.end());
    for (const auto& f : files) {
        std::ifstream in(f, std::ios::binary);
        const std::string bytes{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
        LLVMFuzzerTestOneInput(reinterpret_cast<const std::uint8_t*>(bytes.data()), bytes.size());
    }
    std::cout << "replayed " << files.size() << " inputs without a finding\n";
    if (files.empty()) {
        std::cerr << "no inputs found: the corpus folders are missing\n";
        return 1;
    }
    return 0;
}
