#pragma once
// Refusing allocations that cannot succeed. Sizes read from input are first checked against what
// the input can honestly hold (a file's length, the number of samples); a size that passes that
// test may still exceed the machine. On Linux an allocation far beyond the memory is not refused:
// the process is killed when the pages are touched. So before a large allocation the library
// compares its size with the memory this process can get and throws mlnc::error with one line
// naming the argument, the bytes needed and the bytes available.

#include <mlnc/error.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <limits>
#include <string>
#include <utility>

#if defined(__unix__) || defined(__APPLE__)
#include <sys/resource.h>
#include <unistd.h>
#endif

namespace mlnc::detail {

// Bytes this process can expect to allocate: MemAvailable of /proc/meminfo (Linux), capped by the
// cgroup's remaining allowance (containers), or the physical memory elsewhere; capped by the
// address-space limit (ulimit -v). Infinity when unknown.
// MLNC_MEMORY_LIMIT (bytes) overrides it, for tests and for users who share a machine.
inline double available_memory() {
    if (const char* env = std::getenv("MLNC_MEMORY_LIMIT")) {
        char* end = nullptr;
        const double v = std::strtod(env, &end);
        if (end != env && *end == '\0' && v > 0) return v;
    }
    double bytes = std::numeric_limits<double>::infinity();
#if defined(__linux__)
    {
        std::ifstream meminfo("/proc/meminfo");
        std::string key;
        double kb = 0;
        std::string unit;
        while (meminfo >> key >> kb) {
            std::getline(meminfo, unit);
            if (key == "MemAvailable:") {
                bytes = kb * 1024.0;
                break;
            }
        }
    }
    // In a container the cgroup's limit binds first (v2: memory.max, v1: memory.limit_in_bytes),
    // less what the group already uses.
    {
        const auto read_number = [](const char* path, double& out) {
            std::ifstream f(path);
            std::string text;
            if (!(f >> text) || text == "max") return false;
            char* end = nullptr;
            out = std::strtod(text.c_str(), &end);
            return end != text.c_str() && out > 0;
        };
        double limit = 0, used = 0;
        if (read_number("/sys/fs/cgroup/memory.max", limit)) {
            read_number("/sys/fs/cgroup/memory.current", used);
            bytes = std::min(bytes, std::max(0.0, limit - used));
        } else if (read_number("/sys/fs/cgroup/memory/memory.limit_in_bytes", limit) && limit < 1e18) {
            read_number("/sys/fs/cgroup/memory/memory.usage_in_bytes", used);
            bytes = std::min(bytes, std::max(0.0, limit - used));
        }
    }
#endif
#if defined(__unix__) || defined(__APPLE__)
    if (!std::isfinite(bytes)) {
        const long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGE_SIZE);
        if (pages > 0 && page > 0) bytes = static_cast<double>(pages) * static_cast<double>(page);
    }
    rlimit as{};
    if (getrlimit(RLIMIT_AS, &as) == 0 && as.rlim_cur != RLIM_INFINITY)
        bytes = std::min(bytes, static_cast<double>(as.rlim_cur));
#endif
    return bytes;
}

// "34.4 GB", "512 MB", "96 kB".
inline std::string byte_string(double bytes) {
    const char* unit[] = {"bytes", "kB", "MB", "GB", "TB", "PB", "EB"};
    int u = 0;
    while (bytes >= 1000.0 && u < 6) {
        bytes /= 1000.0;
        ++u;
    }
    char buf[48];
    std::snprintf(buf, sizeof buf, u == 0 ? "%.0f %s" : "%.3g %s", bytes, unit[u]);
    return buf;
}

// Throws mlnc::error("<what>: needs <n> of memory (<why>), more than the <m> available") when
// `bytes` (a double, so that a product of sizes cannot overflow) exceeds the available memory.
inline void require_memory(double bytes, const std::string& what, const std::string& why) {
    const double have = available_memory();
    if (!(bytes <= have))
        throw error(what + ": needs " + byte_string(bytes) + " of memory (" + why + "), more than the " +
                    byte_string(have) + " available");
}

// The same check for arrays that grow while input is read (their final size is not known in
// advance): add() the bytes each step appends; the total is checked whenever it has doubled since
// the last check (from 64 MB on), so the cost is a few reads of /proc/meminfo however large the
// input. Growth by doubling can hold twice the total for a moment: pass what that costs.
class growth_guard {
public:
    growth_guard(std::string what, std::string why) : what_(std::move(what)), why_(std::move(why)) {}
    void add(double bytes) {
        total_ += bytes;
        if (total_ > next_) {
            require_memory(total_, what_, why_);
            while (next_ < total_) next_ *= 2;
        }
    }

private:
    std::string what_, why_;
    double total_ = 0;
    double next_ = 64e6;
};

}  // namespace mlnc::detail
