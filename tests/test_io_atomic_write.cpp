// The one atomic-write helper (io/atomic_write.hpp): a file appears whole or not at all.
#include <mlnc/io/atomic_write.hpp>
#include <mlnc/io/npy.hpp>

#include <catch2/catch.hpp>

#include "test_support.hpp"

#include <filesystem>
#include <iterator>
#include <ostream>
#include <string>
#include <vector>

namespace fs = std::filesystem;
using Catch::Matchers::StartsWith;
using mlnc_test::error_of;
using mlnc_test::read_bytes;
using mlnc_test::write_bytes;
using temp_dir = mlnc_test::scratch_dir;

TEST_CASE("atomic_write: a body that throws or a failing stream leaves no file and no temporary",
          "[io][atomic_write]") {
    temp_dir dir;
    const fs::path p = dir / "out.txt";
    struct boom {};
    const auto throwing = [](std::ostream& o) {
        o << "partial";
        throw boom{};
    };
    CHECK_THROWS_AS(mlnc::io::atomic_write(p, throwing), boom);
    CHECK(fs::is_empty(dir.path));

    // An existing file is left as it was.
    write_bytes(p, "old");
    CHECK_THROWS_AS(mlnc::io::atomic_write(p, throwing), boom);
    CHECK(read_bytes(p) == "old");
    CHECK(std::distance(fs::directory_iterator(dir.path), fs::directory_iterator()) == 1);

    // A stream that fails (as on a full disk) is refused with the path.
    CHECK(error_of([&] {
              mlnc::io::atomic_write(p, [](std::ostream& o) {
                  o << "new";
                  o.setstate(std::ios::badbit);
              });
          }) == p.string() + ": write failed (disk full?)");
    CHECK(read_bytes(p) == "old");
    CHECK(std::distance(fs::directory_iterator(dir.path), fs::directory_iterator()) == 1);

    mlnc::io::atomic_write(p, [](std::ostream& o) { o << "new"; });
    CHECK(read_bytes(p) == "new");
    CHECK(std::distance(fs::directory_iterator(dir.path), fs::directory_iterator()) == 1);
}

TEST_CASE("staged_files: the files appear together on commit, and not at all without it", "[io][atomic_write]") {
    temp_dir dir;
    {
        mlnc::io::staged_files staged;
        write_bytes(staged.stage(dir / "a"), "A");
        write_bytes(staged.stage(dir / "b"), "B");
        CHECK(std::distance(fs::directory_iterator(dir.path), fs::directory_iterator()) == 2);
        CHECK_FALSE(fs::exists(dir / "a"));
        CHECK_FALSE(fs::exists(dir / "b"));
    }
    CHECK(fs::is_empty(dir.path));

    mlnc::io::staged_files staged;
    mlnc::io::write_npy(staged.stage(dir / "a.npy"), std::vector<float>{1, 2}.data(), {2});
    write_bytes(staged.stage(dir / "b"), "B");
    staged.commit();
    CHECK(mlnc::io::read_npy<float>(dir / "a.npy").data == std::vector<float>{1, 2});
    CHECK(read_bytes(dir / "b") == "B");
    CHECK(std::distance(fs::directory_iterator(dir.path), fs::directory_iterator()) == 2);

    // Targets that cannot be written are refused when staged, before anything is renamed.
    fs::create_directory(dir / "d");
    CHECK(error_of([&] {
              mlnc::io::staged_files s;
              (void)s.stage(dir / "d");
          }) == (dir / "d").string() + ": is a directory; cannot write a file there");
    CHECK_THAT(error_of([&] {
                   mlnc::io::staged_files s;
                   (void)s.stage(dir / "no" / "x");
               }),
               StartsWith((dir / "no" / "x").string() + ": cannot write: folder"));
    // A staged file that was never written cannot be renamed into place.
    CHECK_THAT(error_of([&] {
                   mlnc::io::staged_files s;
                   (void)s.stage(dir / "c");
                   s.commit();
               }),
               StartsWith((dir / "c").string() + ": cannot rename the temporary file into place"));
    CHECK(std::distance(fs::directory_iterator(dir.path), fs::directory_iterator()) == 3);
}
