#pragma once
// Plots through gnuplot with no shell and no user text in any script. gnuplot runs as a child
// process (posix_spawnp, an argument vector, no shell) in a private folder this program created
// with mkdtemp; the script and its data files have fixed names inside that folder, so no path or
// name the user chose ever appears in a command line or a gnuplot script (gnuplot would expand
// backquotes in it). The finished SVG is then moved to its destination.

#include <mlnc/error.hpp>
#include <mlnc/io/atomic_write.hpp>

#include <cerrno>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <utility>
#include <vector>

#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

extern char** environ;

namespace mlnc_cli {

namespace fs = std::filesystem;

// A folder only this process knows (mode 0700 under $TMPDIR or /tmp), removed with its content.
class private_dir {
public:
    private_dir() {
        const char* base = std::getenv("TMPDIR");
        std::string tmpl = (base != nullptr && *base != '\0' ? std::string(base) : std::string("/tmp")) + "/mlnc-XXXXXX";
        std::vector<char> buf(tmpl.begin(), tmpl.end());
        buf.push_back('\0');
        if (mkdtemp(buf.data()) == nullptr) {
            buf.assign(std::begin("/tmp/mlnc-XXXXXX"), std::end("/tmp/mlnc-XXXXXX"));
            if (mkdtemp(buf.data()) == nullptr) return;
        }
        path_ = buf.data();
    }
    ~private_dir() {
        std::error_code ec;
        if (!path_.empty()) fs::remove_all(path_, ec);
    }
    private_dir(const private_dir&) = delete;
    private_dir& operator=(const private_dir&) = delete;

    bool ok() const noexcept { return !path_.empty(); }
    const fs::path& path() const noexcept { return path_; }

private:
    fs::path path_;
};

// Runs argv[0] (looked up in PATH) with the given arguments in folder cwd, standard input and
// output on /dev/null; true when it exits with status 0. posix_spawnp: no shell, and no fork of a
// process that may hold large matrices (which strict overcommit could refuse).
inline bool run_quietly(const std::vector<std::string>& argv, const fs::path& cwd) {
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    const std::string dir = cwd.string();
    posix_spawn_file_actions_t actions;
    if (posix_spawn_file_actions_init(&actions) != 0) return false;
    bool ok = posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0) == 0 &&
              posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0) == 0 &&
              posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0) == 0 &&
              posix_spawn_file_actions_addchdir_np(&actions, dir.c_str()) == 0;
    pid_t pid = 0;
    ok = ok && posix_spawnp(&pid, args[0], &actions, nullptr, args.data(), environ) == 0;
    posix_spawn_file_actions_destroy(&actions);
    if (!ok) return false;
    int status = 0;
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR) return false;
    return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

inline bool have_gnuplot() {
    const private_dir dir;
    return dir.ok() && run_quietly({"gnuplot", "--version"}, dir.path());
}

// Writes the data files (fixed names) and the script into a private folder, runs gnuplot on it,
// and moves the SVG the script writes ("plot.svg") to `svg` atomically. The script must name only
// those files. False (and nothing written at `svg`) when gnuplot fails.
inline bool plot_svg(const std::vector<std::pair<std::string, std::string>>& data_files, const std::string& script,
                     const fs::path& svg) {
    const private_dir dir;
    if (!dir.ok()) return false;
    for (const auto& [name, content] : data_files) {
        std::ofstream o(dir.path() / name, std::ios::binary);
        o << content;
        if (!o.flush()) return false;
    }
    {
        std::ofstream o(dir.path() / "plot.gp", std::ios::binary);
        o << script;
        if (!o.flush()) return false;
    }
    if (!run_quietly({"gnuplot", "plot.gp"}, dir.path())) return false;
    std::ifstream in(dir.path() / "plot.svg", std::ios::binary);
    if (!in) return false;
    const std::string content{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
    if (content.empty()) return false;
    // A copy through a temporary file next to the destination: the private folder may lie on
    // another file system, where a rename fails.
    mlnc::io::atomic_write(svg, [&](std::ostream& out) { out.write(content.data(), static_cast<std::streamsize>(content.size())); });
    return true;
}

}  // namespace mlnc_cli
