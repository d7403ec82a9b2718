#pragma once
// Small helpers shared by the tests that touch files: a scratch folder and whole-file I/O.

#include <mlnc/error.hpp>

#include <Eigen/Core>
#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <random>
#include <string>

namespace mlnc_test {

// A fresh folder under the system temp directory, removed with its content at scope exit.
struct scratch_dir {
    std::filesystem::path path;
    scratch_dir() {
        std::random_device rd;
        path = std::filesystem::temp_directory_path() / ("mlnc-test-" + std::to_string(rd()) + std::to_string(rd()));
        std::filesystem::create_directories(path);
    }
    ~scratch_dir() {
        std::error_code ec;
        std::filesystem::remove_all(path, ec);
    }
    std::filesystem::path operator/(const std::string& name) const { return path / name; }
    scratch_dir(const scratch_dir&) = delete;
    scratch_dir& operator=(const scratch_dir&) = delete;
};

inline void write_bytes(const std::filesystem::path& p, const std::string& bytes) {
    std::ofstream out(p, std::ios::binary | std::ios::trunc);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    REQUIRE(out.good());
}

inline std::string read_bytes(const std::filesystem::path& p) {
    std::ifstream in(p, std::ios::binary);
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// The message of the mlnc::error that f throws (fails the test if it throws nothing or another type).
template <class F>
std::string error_of(F&& f) {
    try {
        f();
    } catch (const mlnc::error& e) {
        return e.what();
    }
    FAIL("expected mlnc::error");
    return {};
}

// A rows x cols matrix of independent standard normal entries from a seeded engine (column by
// column, so the values depend only on the engine's state).
template <class Engine>
Eigen::MatrixXd gaussian(Eigen::Index rows, Eigen::Index cols, Engine& rng) {
    std::normal_distribution<double> n01;
    Eigen::MatrixXd X(rows, cols);
    for (Eigen::Index j = 0; j < cols; ++j)
        for (Eigen::Index i = 0; i < rows; ++i) X(i, j) = n01(rng);
    return X;
}

}  // namespace mlnc_test
