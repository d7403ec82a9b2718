#pragma once
// Writing files so that a reader never sees a partial one: the content goes to a temporary file in
// the target's folder (the same file system, where a rename replaces a file in one step), is
// flushed and checked, and is then renamed over the target. On any failure the temporary file is
// removed and the target is left as it was.
//  - atomic_write(path, body): one file whose content body(std::ostream&) writes;
//  - staged_files: several files replaced together, renamed only once all of them are written.
// Errors are mlnc::error messages starting with the target's path as printable text.

#include <mlnc/error.hpp>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <ostream>
#include <random>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

namespace mlnc::io {

namespace detail {

[[noreturn]] inline void fail_write(const std::filesystem::path& target, const std::string& problem) {
    throw error(mlnc::detail::printable(target.string()) + ": " + problem);
}

}  // namespace detail

// Files written under temporary names and renamed over their targets by commit(); whatever was
// staged but not committed is removed when the object goes away (an exception included).
class staged_files {
public:
    staged_files() = default;
    staged_files(const staged_files&) = delete;
    staged_files& operator=(const staged_files&) = delete;
    ~staged_files() { discard(); }

    // A fresh temporary path next to target for the caller to write (with any writer). A target
    // that is a folder, or whose folder does not exist, is refused here, before anything is
    // written, so that commit() has only renames left to do.
    [[nodiscard]] std::filesystem::path stage(const std::filesystem::path& target) {
        namespace fs = std::filesystem;
        if (target.filename().empty()) detail::fail_write(target, "not a file name");
        const fs::path dir = target.has_parent_path() ? target.parent_path() : fs::path(".");
        std::error_code ec;
        if (fs::is_directory(target, ec)) detail::fail_write(target, "is a directory; cannot write a file there");
        if (!fs::is_directory(dir, ec))
            detail::fail_write(target,
                               "cannot write: folder " + mlnc::detail::printable(dir.string()) + " does not exist");
        std::random_device rd;
        const auto tag = (static_cast<std::uint64_t>(rd()) << 32) ^ static_cast<std::uint64_t>(rd());
        fs::path tmp = dir / ("." + target.filename().string() + ".tmp-" + std::to_string(tag));
        files_.emplace_back(tmp, target);
        return tmp;
    }

    // Renames every staged file over its target, in the order staged. The renames cannot be
    // undone: should one fail (stage() checked what it could), the targets before it are already
    // replaced; the error names the target that failed and the other temporaries are removed.
    void commit() {
        std::error_code ec;
        while (!files_.empty()) {
            const auto& [tmp, target] = files_.front();
            std::filesystem::rename(tmp, target, ec);
            if (ec)
                detail::fail_write(target, "cannot rename the temporary file into place (" + ec.message() + ")");
            files_.erase(files_.begin());
        }
    }

private:
    void discard() noexcept {
        std::error_code ec;
        for (const auto& f : files_) std::filesystem::remove(f.first, ec);
        files_.clear();
    }

    std::vector<std::pair<std::filesystem::path, std::filesystem::path>> files_;  // (temporary, target)
};

// Writes path by calling body(stream) on a temporary file in the same folder, then renaming it
// over path. If body throws or the stream fails, the temporary file is removed and path is left
// untouched.
template <class Body>
void atomic_write(const std::filesystem::path& path, Body&& body) {
    staged_files staged;
    const std::filesystem::path tmp = staged.stage(path);
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out)
        detail::fail_write(path, "cannot create a temporary file in " +
                                     mlnc::detail::printable(tmp.parent_path().string()));
    body(static_cast<std::ostream&>(out));
    out.flush();
    out.close();
    if (out.fail()) detail::fail_write(path, "write failed (disk full?)");
    staged.commit();
}

}  // namespace mlnc::io
