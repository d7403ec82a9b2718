#pragma once
// Runs the built mlnc program (path in MLNC_CLI_PATH) for the CLI tests and captures its exit
// code, stdout and stderr.

#include "test_support.hpp"

#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

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

// Runs the mlnc program with exactly these arguments (no shell: any byte may appear in them) in
// folder cwd, stdin from /dev/null.
inline cli_result run_cli_argv(const std::vector<std::string>& args, const std::filesystem::path& cwd) {
    static int counter = 0;
    const temp_dir io("cli-argv-" + std::to_string(counter++));
    const std::string out = io / "out", err = io / "err";
    std::vector<std::string> argv{MLNC_CLI_PATH};
    argv.insert(argv.end(), args.begin(), args.end());
    std::vector<char*> cargs;
    for (auto& a : argv) cargs.push_back(a.data());
    cargs.push_back(nullptr);
    const pid_t pid = fork();
    if (pid == 0) {
        const int in_fd = open("/dev/null", O_RDONLY);
        const int out_fd = open(out.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
        const int err_fd = open(err.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
        if (in_fd < 0 || out_fd < 0 || err_fd < 0 || dup2(in_fd, 0) < 0 || dup2(out_fd, 1) < 0 || dup2(err_fd, 2) < 0 ||
            chdir(cwd.c_str()) != 0)
            _exit(126);
        execv(cargs[0], cargs.data());
        _exit(127);
    }
    int status = 0;
    REQUIRE(pid > 0);
    REQUIRE(waitpid(pid, &status, 0) == pid);
    cli_result r;
    r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + (WIFSIGNALED(status) ? WTERMSIG(status) : 0);
    r.out = read_bytes(io.path() / "out");
    r.err = read_bytes(io.path() / "err");
    return r;
}

// File and folder names that break shell lines, gnuplot strings and one-line messages.
inline const std::vector<std::string>& hostile_names() {
    static const std::vector<std::string> names{
        "a'; touch INJECTED; echo '", "quote\"dq", "back`touch INJECTED`tick", "dollar$(touch INJECTED)",
        "with space", "new\nline", "-leading-dash", "--looks-like-an-option", "esc\x1b[31mred"};
    return names;
}

}  // namespace mlnc_test
