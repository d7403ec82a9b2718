#include <mlnc/io/label_file.hpp>

#include <catch2/catch.hpp>

#include "test_support.hpp"

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <random>
#include <string>
#include <vector>

namespace fs = std::filesystem;
using namespace std::string_literals;
using Catch::Matchers::Contains;
using Catch::Matchers::StartsWith;
using mlnc::index_t;
using mlnc::label_sets;
using mlnc::io::read_labels;

using temp_dir = mlnc_test::scratch_dir;
using mlnc_test::read_bytes;
using mlnc_test::write_bytes;
using mlnc_test::error_of;

namespace {

// A version 1.0 .npy file with the given descr and shape, built by hand.
std::string npy_bytes(const std::string& descr, const std::string& shape, const std::string& data) {
    std::string h = "{'descr': '" + descr + "', 'fortran_order': False, 'shape': " + shape + ", }";
    h.append((64 - (10 + h.size() + 1) % 64) % 64, ' ');
    h += '\n';
    std::string out = "\x93NUMPY\x01\x00"s;
    out += static_cast<char>(h.size() & 0xff);
    out += static_cast<char>(h.size() >> 8);
    return out + h + data;
}

std::vector<std::vector<index_t>> lists_of(const label_sets& S) {
    std::vector<std::vector<index_t>> out;
    for (index_t i = 0; i < S.size(); ++i) out.emplace_back(S[i].begin(), S[i].end());
    return out;
}

}  // namespace

TEST_CASE("label file: text round trip through write_labels", "[io][labels]") {
    temp_dir dir;
    const label_sets S = label_sets::from_lists({{0}, {3, 1}, {0, 1, 2, 3, 4}, {4}, {2, 4}}, 5);
    const fs::path p = dir / "labels.txt";
    mlnc::io::write_labels(p, S);
    CHECK(read_bytes(p) == "0\n1 3\n0 1 2 3 4\n4\n2 4\n");
    CHECK(read_labels(p) == S);
    CHECK(read_labels(p, 5) == S);
    const label_sets wide = read_labels(p, 9);
    CHECK(wide.num_labels() == 9);
    CHECK(lists_of(wide) == lists_of(S));
    // Written atomically: nothing else is left in the folder.
    mlnc::io::write_labels(p, S);
    CHECK(std::distance(fs::directory_iterator(dir.path), fs::directory_iterator()) == 1);
    CHECK_THAT(error_of([&] { mlnc::io::write_labels(dir / "missing" / "l.txt", S); }),
               StartsWith((dir / "missing" / "l.txt").string() + ": cannot write"));
}

TEST_CASE("label file: text parsing details", "[io][labels]") {
    temp_dir dir;
    const fs::path p = dir / "l.txt";
    const auto parse = [&](const std::string& text, index_t K = 0) {
        write_bytes(p, text);
        return read_labels(p, K);
    };
    using lists = std::vector<std::vector<index_t>>;

    CHECK(lists_of(parse("3 1 2\n0\n")) == lists{{1, 2, 3}, {0}});
    CHECK(lists_of(parse("  2\t 0 \t\n1   \n")) == lists{{0, 2}, {1}});
    CHECK(lists_of(parse("1 0\r\n2\r\n")) == lists{{0, 1}, {2}});
    CHECK(lists_of(parse("1 0\n2")) == lists{{0, 1}, {2}});  // no final newline
    CHECK(lists_of(parse("007 1\n")) == lists{{1, 7}});
    CHECK(parse("2 0\n1\n").num_labels() == 3);  // inferred: max + 1
    CHECK(parse("0\n0\n").num_labels() == 2);    // at least 2
    CHECK(parse("0\n").num_labels() == 2);
    CHECK(parse("0 1\n", 7).num_labels() == 7);
}

TEST_CASE("label file: every text error names the file and the line", "[io][labels]") {
    temp_dir dir;
    const fs::path p = dir / "l.txt";
    const auto refused = [&](const std::string& text, const std::string& expected, index_t K = 0) {
        INFO(text);
        write_bytes(p, text);
        const std::string msg = error_of([&] { read_labels(p, K); });
        CHECK(msg == p.string() + expected);
    };
    refused("0 1\n\n2\n", ":2: empty line (every sample needs at least one label index)");
    refused("0 1\n2\n\n", ":3: empty line (every sample needs at least one label index)");
    refused("0 1\n \t \n2\n", ":2: empty line (every sample needs at least one label index)");
    refused("\n", ":1: empty line (every sample needs at least one label index)");
    refused("\r\n", ":1: empty line (every sample needs at least one label index)");
    refused("0 1\n2 -1\n", ":2: negative label index -1");
    refused("0 1.5\n", ":1: '1.5' is not a label index (a non-negative integer)");
    refused("0\nx\n", ":2: 'x' is not a label index (a non-negative integer)");
    refused("+1\n", ":1: '+1' is not a label index (a non-negative integer)");
    refused("1e2\n", ":1: '1e2' is not a label index (a non-negative integer)");
    refused("0x1\n", ":1: '0x1' is not a label index (a non-negative integer)");
    refused("-\n", ":1: '-' is not a label index (a non-negative integer)");
    refused("1,2\n", ":1: '1,2' is not a label index (a non-negative integer)");
    refused("1\r2\n", ":1: '1\\x0d2' is not a label index (a non-negative integer)");
    // A long token is cut at 32 bytes in the message.
    refused(std::string(40, '7') + "x\n", ":1: '" + std::string(32, '7') + "...' is not a label index (a non-negative integer)");
    refused("0 1\n3 2 3\n", ":2: duplicate label index 3");
    refused("0 1\n4 5\n", ":2: label index 5 out of range [0, 5)", 5);
    refused("0 1\n4 99999999999999999999999\n", ":2: label index 99999999999999999999999 out of range [0, 5)", 5);
    refused("2147483647\n", ":1: label index 2147483647 is too large (K must be below 2^31)");
    refused("99999999999999999999999\n", ":1: label index 99999999999999999999999 is too large (K must be below 2^31)");
    refused("", ": no label sets (empty file)");

    CHECK(error_of([&] { read_labels(dir / "none.txt"); }) == (dir / "none.txt").string() + ": no such file");
    CHECK(error_of([&] { read_labels(dir.path); }) == dir.path.string() + ": is a directory, not a label file");
    write_bytes(p, "0\n");
    CHECK(error_of([&] { read_labels(p, 1); }) == p.string() + ": K must be 0 (infer) or at least 2, got 1");
    CHECK(error_of([&] { read_labels(p, -3); }) == p.string() + ": K must be 0 (infer) or at least 2, got -3");
}

TEST_CASE("label file: .npy multi-hot arrays, recognised by their magic bytes", "[io][labels]") {
    temp_dir dir;
    using lists = std::vector<std::vector<index_t>>;
    const lists expected{{0, 2}, {1}, {0, 1, 2}};

    // float64 through write_npy, under a .txt name
    const std::vector<double> y{1, 0, 1, 0, 1, 0, 1, 1, 1};
    const fs::path f8 = dir / "y.txt";
    mlnc::io::write_npy(f8, y.data(), {3, 3});
    CHECK(lists_of(read_labels(f8)) == expected);
    CHECK(read_labels(f8, 3).num_labels() == 3);

    // bool and uint8 as NumPy writes them
    const std::string bytes = "\x01\x00\x01\x00\x01\x00\x01\x01\x01"s;
    write_bytes(dir / "b.npy", npy_bytes("|b1", "(3, 3)", bytes));
    CHECK(lists_of(read_labels(dir / "b.npy")) == expected);
    write_bytes(dir / "u.npy", npy_bytes("|u1", "(3, 3)", bytes));
    CHECK(lists_of(read_labels(dir / "u.npy")) == expected);

    const fs::path p = dir / "bad.npy";
    const auto refused = [&](const std::string& file, const std::string& expected_msg, index_t K = 0) {
        write_bytes(p, file);
        CHECK(error_of([&] { read_labels(p, K); }) == p.string() + ": " + expected_msg);
    };
    refused(npy_bytes("|u1", "(3, 3)", bytes), "multi-hot label array has 3 columns, expected K = 4", 4);
    refused(npy_bytes("|u1", "(3, 3)", "\x01\x00\x01\x00\x02\x00\x01\x01\x01"s),
            "row 1, column 1: multi-hot entry is neither 0 nor 1");
    refused(npy_bytes("|u1", "(3, 3)", "\x01\x00\x01\x00\x00\x00\x01\x01\x01"s),
            "row 1 has no label (every sample needs at least one)");
    refused(npy_bytes("|u1", "(9,)", bytes), "a multi-hot label array must be 2-D (N samples x K labels), got shape (9,)");
    refused(npy_bytes("|u1", "(9, 1)", bytes), "multi-hot label array needs at least 2 columns (K >= 2), got 1");
    refused(npy_bytes("|u1", "(0, 3)", ""), "no samples (shape (0, 3))");
    refused(npy_bytes("<f8", "(1, 2)", std::string("\x00\x00\x00\x00\x00\x00\xf8\x7f", 8) + std::string(8, '\0')),
            "row 0, column 0: multi-hot entry is neither 0 nor 1");
    // Errors of the .npy layer come through with the path too.
    write_bytes(p, npy_bytes("|u1", "(3, 3)", bytes.substr(0, 8)));
    CHECK_THAT(error_of([&] { read_labels(p); }), StartsWith(p.string() + ": truncated data"));
    write_bytes(p, npy_bytes(">i4", "(1, 2)", std::string(8, '\0')));
    CHECK_THAT(error_of([&] { read_labels(p); }), StartsWith(p.string() + ": big-endian"));
}

TEST_CASE("label file: multi-hot .npy is streamed, never held as N x K doubles", "[io][labels]") {
    const temp_dir dir;
    // 3000 x 2000 uint8 (6 MB): as doubles 48 MB. With the memory limit at 16 MB the old reader
    // (a double matrix of N x K) is refused; the streaming one needs the CSR arrays only.
    const index_t N = 3000, K = 2000;
    std::string data(static_cast<std::size_t>(N * K), '\0');
    for (index_t i = 0; i < N; ++i) {
        data[static_cast<std::size_t>(i * K + i % K)] = 1;
        data[static_cast<std::size_t>(i * K + (7 * i + 3) % K)] = 1;
    }
    write_bytes(dir / "y.npy", npy_bytes("|u1", "(3000, 2000)", data));
    setenv("MLNC_MEMORY_LIMIT", "16000000", 1);
    label_sets S;
    REQUIRE_NOTHROW(S = read_labels(dir / "y.npy"));
    unsetenv("MLNC_MEMORY_LIMIT");
    REQUIRE(S.size() == N);
    CHECK(S.num_labels() == K);
    for (index_t i : {0, 1, 1234, 2999}) {
        std::vector<index_t> want{i % K, (7 * i + 3) % K};
        std::sort(want.begin(), want.end());
        want.erase(std::unique(want.begin(), want.end()), want.end());
        CHECK(std::vector<index_t>(S[i].begin(), S[i].end()) == want);
    }
}

TEST_CASE("label file: a huge label index infers a huge K without allocating it", "[io][labels]") {
    const temp_dir dir;
    write_bytes(dir / "big.txt", "0\n2147483646\n");
    const auto S = read_labels(dir / "big.txt");
    CHECK(S.num_labels() == 2147483647);
    CHECK(S.size() == 2);
    CHECK_THAT(error_of([&] { read_labels(dir / "big.txt", 10); }), Contains(":2: label index 2147483646 out of range"));
    CHECK_THAT(error_of([&] { mlnc::io::parse_labels("2147483647\n"); }), Contains("too large"));
}

TEST_CASE("label file: parse_labels reads bytes held in memory like a file", "[io][labels]") {
    CHECK(lists_of(mlnc::io::parse_labels("0 2\n1\n")) == std::vector<std::vector<index_t>>{{0, 2}, {1}});
    CHECK(mlnc::io::parse_labels(npy_bytes("|b1", "(2, 3)", "\x01\x00\x01\x00\x01\x00"s)).num_labels() == 3);
    CHECK_THAT(error_of([&] { mlnc::io::parse_labels("0\n\n1\n", 0, "labels.txt"); }), StartsWith("labels.txt:2: empty line"));
    CHECK_THAT(error_of([&] { mlnc::io::parse_labels("0 \x1b[2J\n"); }), Contains("'\\x1b[2J'"));
}
