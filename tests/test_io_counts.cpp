// The training-set specs of io/counts.hpp: the multiplicity spec "1:20,2:4" and counts files.

#include <mlnc/io/counts.hpp>

#include <catch2/catch.hpp>

#include "test_support.hpp"

#include <cstdlib>
#include <string>
#include <vector>

using Catch::Matchers::Contains;
using Catch::Matchers::StartsWith;
using mlnc::index_t;
using mlnc_test::error_of;
using mlnc::io::parse_counts;
using mlnc::io::parse_multiplicity_spec;

TEST_CASE("multiplicity spec: entries m:count in any order, only the multiplicities given", "[io][counts]") {
    using mlnc::multiplicity_counts;
    CHECK(parse_multiplicity_spec("1:20,2:4,3:2", "--n") == multiplicity_counts{{1, 20}, {2, 4}, {3, 2}});
    CHECK(parse_multiplicity_spec("3:1,1:5", "--n", 3) == multiplicity_counts{{1, 5}, {3, 1}});
    CHECK(parse_multiplicity_spec("2:0,1:7", "--n") == multiplicity_counts{{1, 7}, {2, 0}});  // a 0 given is kept
    CHECK(parse_multiplicity_spec("1:9007199254740992", "--n") == multiplicity_counts{{1, 9007199254740992}});
    // Nothing dense in m is built: a large multiplicity is one entry, with K or without.
    setenv("MLNC_MEMORY_LIMIT", "1000", 1);
    CHECK(parse_multiplicity_spec("2000000000:1", "--n") == multiplicity_counts{{2000000000, 1}});
    CHECK(parse_multiplicity_spec("1:3,2000000000:1", "--n", 2000000000) ==
          multiplicity_counts{{1, 3}, {2000000000, 1}});
    unsetenv("MLNC_MEMORY_LIMIT");
}

TEST_CASE("multiplicity spec: every malformed entry is named", "[io][counts]") {
    const auto err = [](const std::string& spec, index_t K = 0) {
        return error_of([&] { parse_multiplicity_spec(spec, "--n", K); });
    };
    CHECK_THAT(err(""), StartsWith("--n: empty"));
    CHECK_THAT(err("1:2,,3:1"), Contains("empty entry"));
    CHECK_THAT(err("1-2"), Contains("entry '1-2': expected m:count"));
    CHECK_THAT(err("1:2:3"), Contains("expected m:count"));
    CHECK_THAT(err("x:1"), Contains("multiplicity 'x'"));
    CHECK_THAT(err("0:1"), Contains("at least 1"));
    CHECK_THAT(err("1:-3"), Contains("negative"));
    CHECK_THAT(err("1:1e3"), Contains("count '1e3'"));
    CHECK_THAT(err("1:9007199254740993"), Contains("below 2^53"));
    CHECK_THAT(err("2:1,2:3"), Contains("given twice"));
    CHECK_THAT(err("4:1", 3), Contains("exceeds K = 3"));
    CHECK_THAT(err("2147483648:1"), Contains("below 2^31"));
    // Quoted input is printable text.
    CHECK_THAT(err("1:\n2"), Contains("'\\x0a2'"));
}

TEST_CASE("counts file: samples, balance detection, and every error names the line", "[io][counts]") {
    const auto p = parse_counts("10 0\n6 1\n\n2 1 0\r\n0 2\n", 3, 1000, "c.txt");
    CHECK(p.S.size() == 18);
    CHECK(p.S.num_labels() == 3);
    CHECK_FALSE(p.n.has_value());  // imbalanced within m = 1
    const auto b = parse_counts("4 0\n4 1\n4 2\n1 0 1\n1 0 2\n1 1 2\n", 3, 1000, "c.txt");
    REQUIRE(b.n.has_value());
    CHECK(*b.n == mlnc::multiplicity_counts{{1, 4}, {2, 1}});
    // Only the multiplicities with samples: here m = 2 alone (tabs, no final newline).
    const auto pairs = parse_counts("2\t0 1\n2 0\t2\r\n\n2 1 2", 3, 1000, "c.txt");
    REQUIRE(pairs.n.has_value());
    CHECK(*pairs.n == mlnc::multiplicity_counts{{2, 2}});
    const auto err = [](const std::string& text, index_t K = 4, index_t max = 100) {
        return error_of([&] { parse_counts(text, K, max, "c.txt"); });
    };
    CHECK_THAT(err("3 0 7\n"), StartsWith("c.txt:1: label 7 out of range [0, 4)"));
    CHECK_THAT(err("1 0\nx 1\n"), StartsWith("c.txt:2: count 'x' is not an integer"));
    CHECK_THAT(err("-1 0\n"), Contains("negative"));
    CHECK_THAT(err("1 0 0\n"), Contains("duplicate"));
    CHECK_THAT(err("1\n"), Contains("needs at least one label"));
    CHECK_THAT(err("1 0\n2 0\n"), StartsWith("c.txt:2: this label set was already given"));
    // Blank lines count, \r\n ends are one line end, and the last line needs no newline.
    CHECK_THAT(err("1 0\r\n\n \t\r\n1 x"), StartsWith("c.txt:4: label 'x' is not an integer"));
    CHECK_THAT(err("1 0\n9223372036854775807 1\n"), Contains("more than 100 samples"));
    CHECK_THAT(err("99999999999999999999 1\n"), Contains("not an integer"));
    CHECK_THAT(err("0 1\n\n"), Contains("gives no samples"));
    CHECK_THAT(err("1 a\x01\n"), Contains("'a\\x01'"));
    CHECK_THAT(err("1 0\n", 1), Contains("K must be"));
    // The sample cap does not bound the labels: 100000 samples of a 1000-label set expand to
    // 400 MB of indices, checked before expanding.
    std::string wide = "100000";
    for (int k = 0; k < 1000; ++k) {
        wide += ' ';
        wide += std::to_string(k);
    }
    setenv("MLNC_MEMORY_LIMIT", "100000000", 1);
    CHECK_THAT(err(wide + "\n", 1000, 200000), Contains("needs") && Contains("the label sets the counts expand to"));
    unsetenv("MLNC_MEMORY_LIMIT");
}

TEST_CASE("counts file: read_counts refuses what is not a regular file", "[io][counts]") {
    const mlnc_test::scratch_dir dir;
    CHECK_THAT(error_of([&] { mlnc::io::read_counts(dir / "missing", 3, 10); }), Contains("no such file"));
    CHECK_THAT(error_of([&] { mlnc::io::read_counts(dir.path, 3, 10); }), Contains("not a regular file"));
    CHECK_THAT(error_of([&] { mlnc::io::read_counts("/dev/zero", 3, 10); }), Contains("not a regular file"));
    mlnc_test::write_bytes(dir / "ok.txt", "2 0\n2 1\n2 2\n");
    CHECK(mlnc::io::read_counts(dir / "ok.txt", 3, 10).n.has_value());
}
