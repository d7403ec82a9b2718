#pragma once
// Runs the built mlnc program (path in MLNC_CLI_PATH) for the CLI tests and captures its exit
// code, stdout and stderr.

#include "test_support.hpp"

#include <sys/wait.h>

#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <string>

namespace mlnc_test {

struct cli_result {
    int exit_code = -1;
    std::string out, err;
    // Lines on stderr (a trailing newline does not open a new line).
    int err_lines() const {
        int n = 0;
        for (std::size_t i = 0; i < err.size(); ++i)
            if (err[i] == '\n' || i + 1 == err.size()) ++n;
        return n;
    }
};

// A fresh, empty folder under the system temp dir, removed when the object dies.
class temp_dir {
public:
    explicit temp_dir(const std::string& tag) {
        std::random_device rd;
        path_ = std::filesystem::temp_directory_path() / ("mlnc-test-" + tag + "-" + std::to_string(rd()));
        std::filesystem::create_directories(path_);
    }
    ~temp_dir() {
        std::error_code ec;
        std::filesystem::remove_all(path_, ec);
    }
    temp_dir(const temp_dir&) = delete;
    temp_dir& operator=(const temp_dir&) = delete;
    const std::filesystem::path& path() const { return path_; }
    std::string operator/(const std::string& name) const { return (path_ / name).string(); }

private:
    std::filesystem::path path_;
};

// Runs `mlnc <args>` (args are passed to /bin/sh as written) with stdin closed.
inline cli_result run_cli(const std::string& args) {
    static int counter = 0;
    const temp_dir io("cli-io-" + std::to_string(counter++));
    const std::string cmd = std::string("'") + MLNC_CLI_PATH + "' " + args + " < /dev/null > '" + (io / "out") +
                            "' 2> '" + (io / "err") + "'";
    const int status = std::system(cmd.c_str());
    cli_result r;
    r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + (WIFSIGNALED(status) ? WTERMSIG(status) : 0);
    r.out = read_bytes(io.path() / "out");
    r.err = read_bytes(io.path() / "err");
    return r;
}

}  // namespace mlnc_test
