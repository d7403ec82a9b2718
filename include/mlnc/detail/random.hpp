#pragma once
// mlnc's one source of Gaussian numbers: standard normal draws from std::mt19937_64 by
// Box-Muller. The standard fixes mt19937_64's output but not std::normal_distribution's, so this
// keeps a seed's draws (the trainer's start, the Haar rotation of an ETF, synthetic noise) the
// same with every standard library.

#include <cmath>
#include <cstdint>
#include <numbers>
#include <random>

namespace mlnc::detail {

class gaussian_stream {
public:
    explicit gaussian_stream(std::uint64_t seed) : gen_(seed) {}
    double operator()() {
        if (have_spare_) {
            have_spare_ = false;
            return spare_;
        }
        // u1 in (0, 1] so that log(u1) is finite; 53 random bits each.
        const double u1 = (static_cast<double>(gen_() >> 11) + 1.0) * 0x1.0p-53;
        const double u2 = static_cast<double>(gen_() >> 11) * 0x1.0p-53;
        const double r = std::sqrt(-2.0 * std::log(u1));
        const double a = 2.0 * std::numbers::pi * u2;
        spare_ = r * std::sin(a);
        have_spare_ = true;
        return r * std::cos(a);
    }

private:
    std::mt19937_64 gen_;
    double spare_ = 0;
    bool have_spare_ = false;
};

}  // namespace mlnc::detail
