#include <mlnc/io/atomic_write.hpp>
#include <mlnc/io/npy.hpp>

#include <catch2/catch.hpp>

#include "test_support.hpp"

#include <bit>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>
#include <random>
#include <string>
#include <type_traits>
#include <vector>

namespace fs = std::filesystem;
using namespace std::string_literals;
using Catch::Matchers::Contains;
using Catch::Matchers::StartsWith;
using mlnc::io::npy_array;

using temp_dir = mlnc_test::scratch_dir;
using mlnc_test::read_bytes;
using mlnc_test::write_bytes;
using mlnc_test::error_of;

namespace {

// A .npy file built by hand: magic, version, little-endian header length, the dictionary padded
// with spaces and a newline to a multiple of 64 bytes, then the raw data bytes.
std::string npy_bytes(const std::string& dict, const std::string& data, int major = 1) {
    const std::size_t pre = major == 1 ? 10 : 12;
    std::string h = dict;
    h.append((64 - (pre + h.size() + 1) % 64) % 64, ' ');
    h += '\n';
    std::string out = "\x93NUMPY";
    out += static_cast<char>(major);
    out += '\0';
    const std::size_t n = h.size();
    out += static_cast<char>(n & 0xff);
    out += static_cast<char>((n >> 8) & 0xff);
    if (major != 1) {
        out += static_cast<char>((n >> 16) & 0xff);
        out += static_cast<char>((n >> 24) & 0xff);
    }
    return out + h + data;
}

std::string dict(const std::string& descr, const std::string& shape, const std::string& order = "False") {
    return "{'descr': '" + descr + "', 'fortran_order': " + order + ", 'shape': " + shape + ", }";
}

// Little-endian bytes of values of type T.
template <class T>
std::string le_bytes(const std::vector<T>& v) {
    std::string s;
    for (const T x : v) {
        unsigned char b[sizeof(T)];
        std::memcpy(b, &x, sizeof(T));
        if constexpr (std::endian::native == std::endian::big) std::reverse(b, b + sizeof(T));
        s.append(reinterpret_cast<const char*>(b), sizeof(T));
    }
    return s;
}

// The data bytes of a file written by write_npy & co. (after the header of version 1.0).
std::string data_bytes(const std::string& file) {
    const std::size_t hlen = static_cast<unsigned char>(file[8]) | (static_cast<unsigned char>(file[9]) << 8);
    return file.substr(10 + hlen);
}

template <class Derived>
bool same_bits(const Eigen::MatrixBase<Derived>& a, const Eigen::MatrixBase<Derived>& b) {
    using T = typename Derived::Scalar;
    return a.rows() == b.rows() && a.cols() == b.cols() &&
           std::memcmp(a.derived().data(), b.derived().data(), static_cast<std::size_t>(a.size()) * sizeof(T)) == 0;
}

std::string npy_error(const fs::path& p) {
    return error_of([&] { mlnc::io::read_npy(p); });
}

}  // namespace

TEST_CASE("npy: float64 round trip through write_npy, with NumPy's header layout", "[io][npy]") {
    temp_dir dir;
    const std::vector<double> v{1.0, -2.5, 3.25e-300, std::numeric_limits<double>::max(), -0.0, 1.0 / 3.0};

    SECTION("2-D") {
        const fs::path p = dir / "a.npy";
        mlnc::io::write_npy(p, v.data(), {2, 3});
        const std::string bytes = read_bytes(p);
        REQUIRE(bytes.substr(0, 8) == std::string("\x93NUMPY\x01\x00", 8));
        const std::size_t hlen = static_cast<unsigned char>(bytes[8]) | (static_cast<unsigned char>(bytes[9]) << 8);
        CHECK((10 + hlen) % 64 == 0);
        CHECK(bytes.size() == 10 + hlen + 6 * 8);
        CHECK(bytes[10 + hlen - 1] == '\n');
        CHECK_THAT(bytes.substr(10, hlen), StartsWith("{'descr': '<f8', 'fortran_order': False, 'shape': (2, 3), }"));

        const npy_array a = mlnc::io::read_npy(p);
        CHECK(a.shape == std::vector<std::int64_t>{2, 3});
        CHECK(a.dtype == "<f8");
        CHECK(a.ndim() == 2);
        REQUIRE(a.data.size() == v.size());
        for (std::size_t i = 0; i < v.size(); ++i) CHECK(std::memcmp(&a.data[i], &v[i], sizeof(double)) == 0);
    }
    SECTION("1-D, 0-D and empty shapes") {
        mlnc::io::write_npy(dir / "v.npy", v.data(), {6});
        auto a = mlnc::io::read_npy(dir / "v.npy");
        CHECK(a.shape == std::vector<std::int64_t>{6});
        CHECK(a.data == v);
        CHECK_THAT(read_bytes(dir / "v.npy"), Contains("'shape': (6,), }"));

        mlnc::io::write_npy(dir / "s.npy", v.data(), {});
        a = mlnc::io::read_npy(dir / "s.npy");
        CHECK(a.shape.empty());
        CHECK(a.data == std::vector<double>{1.0});

        mlnc::io::write_npy(dir / "e.npy", static_cast<const double*>(nullptr), {0, 3});
        a = mlnc::io::read_npy(dir / "e.npy");
        CHECK(a.shape == std::vector<std::int64_t>{0, 3});
        CHECK(a.data.empty());
    }
    SECTION("overwriting replaces the file and leaves no temporary behind") {
        const fs::path p = dir / "a.npy";
        mlnc::io::write_npy(p, v.data(), {6});
        mlnc::io::write_npy(p, v.data(), {3});
        CHECK(mlnc::io::read_npy(p).shape == std::vector<std::int64_t>{3});
        CHECK(std::distance(fs::directory_iterator(dir.path), fs::directory_iterator()) == 1);
    }
}

TEST_CASE("npy: float32 files written by hand, versions 1.0, 2.0 and 3.0", "[io][npy]") {
    temp_dir dir;
    const std::vector<float> v{1.5f, -2.25f, 3e-8f, 1e30f, 0.1f, -7.0f};
    for (const int major : {1, 2, 3}) {
        const fs::path p = dir / ("f" + std::to_string(major).append(".npy"));
        write_bytes(p, npy_bytes(dict("<f4", "(3, 2)"), le_bytes(v), major));
        const npy_array a = mlnc::io::read_npy(p);
        CHECK(a.shape == std::vector<std::int64_t>{3, 2});
        CHECK(a.dtype == "<f4");
        REQUIRE(a.data.size() == v.size());
        for (std::size_t i = 0; i < v.size(); ++i) CHECK(a.data[i] == static_cast<double>(v[i]));
    }
}

TEST_CASE("npy: headers in other spellings NumPy may have written", "[io][npy]") {
    temp_dir dir;
    const std::string data = le_bytes(std::vector<double>{1, 2, 3, 4});
    const std::vector<std::string> dicts{
        "{'shape': (2, 2), 'fortran_order': False, 'descr': '<f8'}",        // other key order, no trailing comma
        "{\"descr\": \"<f8\", \"fortran_order\": False, \"shape\": (2,2)}",  // double quotes, no spaces
        "{'descr': '<f8', 'fortran_order': False, 'shape': (2L, 2L), }",     // Python 2 longs
        "  {  'descr' :'<f8' ,'fortran_order':False,'shape':( 2 , 2 , ) }",  // odd spacing
    };
    for (const auto& d : dicts) {
        INFO(d);
        write_bytes(dir / "h.npy", npy_bytes(d, data));
        CHECK(mlnc::io::read_npy(dir / "h.npy").shape == std::vector<std::int64_t>{2, 2});
    }
    // An unpadded header (not a multiple of 64) is still valid.
    std::string d = dict("<f8", "(4,)");
    std::string raw = std::string("\x93NUMPY\x01\x00", 8);
    raw += static_cast<char>(d.size() + 1);
    raw += '\0';
    write_bytes(dir / "u.npy", raw + d + "\n" + data);
    CHECK(mlnc::io::read_npy(dir / "u.npy").data == std::vector<double>{1, 2, 3, 4});
}

TEST_CASE("npy: C order - a 2 x 3 file whose values tell their position", "[io][npy]") {
    temp_dir dir;
    // value 10 * row + col, stored row after row
    const std::vector<double> c_order{0, 1, 2, 10, 11, 12};
    const fs::path p = dir / "m.npy";
    mlnc::io::write_npy(p, c_order.data(), {2, 3});

    const Eigen::MatrixXd M = mlnc::io::read_matrix(p, "M");
    REQUIRE(M.rows() == 2);
    REQUIRE(M.cols() == 3);
    for (int i = 0; i < 2; ++i)
        for (int j = 0; j < 3; ++j) CHECK(M(i, j) == 10 * i + j);

    // As features: 2 samples x 3 features -> H is 3 x 2 with column i = sample i.
    const Eigen::MatrixXd H = mlnc::io::read_features(p, "H");
    REQUIRE(H.rows() == 3);
    REQUIRE(H.cols() == 2);
    for (int i = 0; i < 2; ++i)
        for (int j = 0; j < 3; ++j) CHECK(H(j, i) == 10 * i + j);

    // The writers produce the very same bytes.
    mlnc::io::write_matrix(dir / "m2.npy", M);
    mlnc::io::write_features(dir / "h2.npy", H);
    CHECK(read_bytes(dir / "m2.npy") == read_bytes(p));
    CHECK(read_bytes(dir / "h2.npy") == read_bytes(p));

    // Blocks (non-unit outer stride) are written correctly too.
    Eigen::MatrixXd big = Eigen::MatrixXd::Constant(5, 6, -1.0);
    big.block(1, 2, 2, 3) = M;
    mlnc::io::write_matrix(dir / "m3.npy", big.block(1, 2, 2, 3));
    CHECK(read_bytes(dir / "m3.npy") == read_bytes(p));
    Eigen::MatrixXd bigH = Eigen::MatrixXd::Constant(4, 4, -1.0);
    bigH.block(0, 1, 3, 2) = H;
    mlnc::io::write_features(dir / "h3.npy", bigH.block(0, 1, 3, 2));
    CHECK(read_bytes(dir / "h3.npy") == read_bytes(p));

    const Eigen::VectorXd v = Eigen::VectorXd::LinSpaced(4, -1.0, 2.0);
    mlnc::io::write_vector(dir / "v.npy", v);
    CHECK(mlnc::io::read_vector(dir / "v.npy", "v") == v);
}

TEST_CASE("npy: integer and bool dtypes for label arrays", "[io][npy]") {
    temp_dir dir;
    const fs::path p = dir / "i.npy";
    const auto check = [&](const std::string& descr, const std::string& data, const std::vector<double>& expect) {
        INFO(descr);
        write_bytes(p, npy_bytes(dict(descr, "(" + std::to_string(expect.size()) + ",)"), data));
        const npy_array a = mlnc::io::read_npy(p);
        CHECK(a.dtype == descr);
        CHECK(a.data == expect);
        // ...but never as a float matrix.
        CHECK_THAT(error_of([&] { mlnc::io::read_vector(p, "v"); }),
                   StartsWith(p.string() + ": v has dtype '" + descr + "'; expected float32"));
    };
    check("|b1", std::string("\x00\x01\x01", 3), {0, 1, 1});
    check("|u1", std::string("\x00\x01\xff", 3), {0, 1, 255});
    check("<u1", std::string("\x00\x01\xff", 3), {0, 1, 255});
    check("|i1", std::string("\x00\x01\xff", 3), {0, 1, -1});
    check("<i2", le_bytes(std::vector<std::int16_t>{0, 1, -300}), {0, 1, -300});
    check("<u2", le_bytes(std::vector<std::uint16_t>{0, 1, 65535}), {0, 1, 65535});
    check("<i4", le_bytes(std::vector<std::int32_t>{0, 1, -70000}), {0, 1, -70000});
    check("<u4", le_bytes(std::vector<std::uint32_t>{0, 1, 4000000000u}), {0, 1, 4000000000.0});
    check("<i8", le_bytes(std::vector<std::int64_t>{0, 1, -(std::int64_t{1} << 40)}), {0, 1, -1099511627776.0});
    check("<u8", le_bytes(std::vector<std::uint64_t>{0, 1, std::uint64_t{1} << 63}), {0, 1, 9223372036854775808.0});
}

TEST_CASE("npy: every malformed file is refused with a message naming the file", "[io][npy]") {
    temp_dir dir;
    const fs::path p = dir / "bad.npy";
    const std::string d6 = le_bytes(std::vector<double>{1, 2, 3, 4, 5, 6});
    const auto refused = [&](const std::string& bytes, const std::string& what) {
        write_bytes(p, bytes);
        const std::string msg = npy_error(p);
        CHECK_THAT(msg, StartsWith(p.string() + ": "));
        CHECK_THAT(msg, Contains(what));
        CHECK(msg.find('\n') == std::string::npos);
    };

    SECTION("missing, a directory, empty") {
        CHECK_THAT(npy_error(dir / "none.npy"), StartsWith((dir / "none.npy").string() + ": no such file"));
        CHECK_THAT(npy_error(dir.path), Contains("is a directory"));
        refused("", "empty file");
    }
    SECTION("bad magic") {
        refused("hello, this is not numpy", "bad magic");
        refused("\x93NUMPX\x01\x00rest of file", "bad magic");
        refused("PK\x03\x04", "bad magic");  // an .npz (zip) file
    }
    SECTION("unsupported version") {
        std::string b = npy_bytes(dict("<f8", "(6,)"), d6);
        b[6] = 4;
        refused(b, "unsupported .npy format version 4.0");
        b[6] = 1;
        b[7] = 1;
        refused(b, "unsupported .npy format version 1.1");
    }
    SECTION("malformed header dictionary") {
        const std::vector<std::pair<std::string, std::string>> cases{
            {"'descr': '<f8', 'fortran_order': False, 'shape': (6,)", "must start with '{'"},
            {"{'descr': '<f8', 'fortran_order': False, 'shape': (6,)", "expected ',' or '}'"},
            {"{'descr': '<f8', 'fortran_order': False}", "missing key 'shape'"},
            {"{'fortran_order': False, 'shape': (6,)}", "missing key 'descr'"},
            {"{'descr': '<f8', 'shape': (6,)}", "missing key 'fortran_order'"},
            {"{'descr': '<f8', 'descr': '<f8', 'fortran_order': False, 'shape': (6,)}", "duplicate key 'descr'"},
            {"{'descr': '<f8', 'fortran_order': False, 'shape': (6,), 'extra': 1}", "unexpected key 'extra'"},
            {"{'descr': <f8, 'fortran_order': False, 'shape': (6,)}", "expected a quoted dtype"},
            {"{'descr': '<f8, 'fortran_order': False, 'shape': (6,)}", "expected ',' or '}' after the value of 'descr'"},
            {"{'descr' '<f8', 'fortran_order': False, 'shape': (6,)}", "expected ':' after key 'descr'"},
            {"{descr: '<f8', 'fortran_order': False, 'shape': (6,)}", "expected a quoted key"},
            {"{'descr': '<f8', 'fortran_order': false, 'shape': (6,)}", "True or False"},
            {"{'descr': '<f8', 'fortran_order': False, 'shape': 6}", "must be a tuple"},
            {"{'descr': '<f8', 'fortran_order': False, 'shape': (6)}", "must be a tuple"},
            {"{'descr': '<f8', 'fortran_order': False, 'shape': [6]}", "must be a tuple"},
            {"{'descr': '<f8', 'fortran_order': False, 'shape': (-6,)}", "non-negative integers"},
            {"{'descr': '<f8', 'fortran_order': False, 'shape': (6.0,)}", "expected ',' or ')'"},
            {"{'descr': '<f8', 'fortran_order': False, 'shape': (6,)} x", "after the closing '}'"},
            {"{'descr': '<f8', 'fortran_order': False, 'shape': (6,)}}", "after the closing '}'"},
            {"{'descr': '<f8', 'fortran_order': False, 'shape': (6,", "non-negative integers"},
            {"{'descr': '<f8', 'fortran_order': False, 'shape': (6", "expected ',' or ')'"},
            {"{'descr': '<f\\x38', 'fortran_order': False, 'shape': (6,)}", "string literal"},
            {"{'descr': '<f8', 'fortran_order': False, 'shape': (99999999999999999999,)}", "overflows"},
            {"", "must start with '{'"},
        };
        for (const auto& [d, what] : cases) {
            INFO(d);
            refused(npy_bytes(d, d6), what);
        }
        refused(npy_bytes("{'descr': '<f8'\0, 'fortran_order': False, 'shape': (6,)}"s, d6),
                "NUL");
    }
    SECTION("fortran order, big-endian, other dtypes, more than two dimensions") {
        refused(npy_bytes(dict("<f8", "(2, 3)", "True"), d6), "fortran_order is True");
        refused(npy_bytes(dict(">f8", "(6,)"), d6), "big-endian dtype '>f8'");
        refused(npy_bytes(dict(">i4", "(12,)"), d6), "big-endian");
        refused(npy_bytes(dict("<f2", "(24,)"), d6), "unsupported dtype '<f2'");
        refused(npy_bytes(dict("<c16", "(3,)"), d6), "unsupported dtype '<c16'");
        refused(npy_bytes(dict("|f8", "(6,)"), d6), "unsupported dtype '|f8'");
        refused(npy_bytes(dict("=f8", "(6,)"), d6), "unsupported dtype '=f8'");
        refused(npy_bytes(dict("|O", "(6,)"), d6), "unsupported dtype '|O'");
        refused(npy_bytes(dict("", "(6,)"), d6), "unsupported dtype ''");
        refused(npy_bytes("{'descr': [('a', '<f8')], 'fortran_order': False, 'shape': (6,)}", d6),
                "structured");
        refused(npy_bytes(dict("<f8", "(1, 2, 3)"), d6), "3-D array of shape (1, 2, 3) is not supported");
    }
    SECTION("truncated data, extra data, header length overflow, size overflow") {
        const std::string good = npy_bytes(dict("<f8", "(2, 3)"), d6);
        refused(good.substr(0, good.size() - 1), "truncated data: shape (2, 3) of <f8 needs 48 data bytes");
        refused(good + "x", "size mismatch, extra data after the array");
        refused(npy_bytes(dict("<f8", "(2, 2)"), d6), "extra data");
        refused(npy_bytes(dict("<f8", "(2, 4)"), d6), "truncated data");

        std::string b = good;
        b[8] = '\xff';
        b[9] = '\xff';
        refused(b, "truncated file: the header claims 65535 bytes");
        refused(npy_bytes(dict("<f8", "(6,)"), d6, 2).replace(8, 4, "\xff\xff\xff\xff"),
                "header length 4294967295 bytes exceeds the limit");
        // Sizes that would need absurd allocations are refused from the file length alone.
        refused(npy_bytes(dict("<f8", "(1099511627776,)"), d6), "truncated data");
        refused(npy_bytes(dict("<f8", "(4611686018427387904, 4611686018427387904)"), d6), "overflows");
        refused(npy_bytes(dict("<f8", "(2305843009213693952, 1)"), d6), "needs more than 2^64");
    }
}

TEST_CASE("npy: read_matrix, read_features and read_vector refuse what they cannot use", "[io][npy]") {
    temp_dir dir;
    const fs::path p = dir / "x.npy";
    const double nan = std::numeric_limits<double>::quiet_NaN();
    const double inf = std::numeric_limits<double>::infinity();

    const std::vector<double> with_nan{1, 2, nan, 4};
    mlnc::io::write_npy(p, with_nan.data(), {2, 2});
    CHECK(error_of([&] { mlnc::io::read_matrix(p, "W"); }) == p.string() + ": W contains NaN or Inf");
    CHECK(error_of([&] { mlnc::io::read_features(p, "H"); }) == p.string() + ": H contains NaN or Inf");
    mlnc::io::write_npy(p, with_nan.data(), {4});
    CHECK(error_of([&] { mlnc::io::read_vector(p, "b"); }) == p.string() + ": b contains NaN or Inf");
    write_bytes(p, npy_bytes(dict("<f4", "(1,)"), le_bytes(std::vector<float>{-std::numeric_limits<float>::infinity()})));
    CHECK(error_of([&] { mlnc::io::read_vector(p, "b"); }) == p.string() + ": b contains NaN or Inf");
    const std::vector<double> with_inf{inf};
    mlnc::io::write_npy(p, with_inf.data(), {1, 1});
    CHECK(error_of([&] { mlnc::io::read_matrix(p, "W"); }) == p.string() + ": W contains NaN or Inf");

    const std::vector<double> v{1, 2, 3, 4};
    mlnc::io::write_npy(p, v.data(), {4});
    CHECK_THAT(error_of([&] { mlnc::io::read_matrix(p, "W"); }), StartsWith(p.string() + ": W must be a 2-D array"));
    CHECK_THAT(error_of([&] { mlnc::io::read_features(p, "H"); }), Contains("got shape (4,)"));
    mlnc::io::write_npy(p, v.data(), {});
    CHECK_THAT(error_of([&] { mlnc::io::read_vector(p, "b"); }), StartsWith(p.string() + ": b must be a 1-D array"));
    mlnc::io::write_npy(p, v.data(), {2, 2});
    CHECK_THAT(error_of([&] { mlnc::io::read_vector(p, "b"); }), Contains("got shape (2, 2)"));
    mlnc::io::write_npy(p, static_cast<const double*>(nullptr), {0, 3});
    CHECK_THAT(error_of([&] { mlnc::io::read_matrix(p, "W"); }), StartsWith(p.string() + ": W is empty"));
    mlnc::io::write_npy(p, static_cast<const double*>(nullptr), {0});
    CHECK_THAT(error_of([&] { mlnc::io::read_vector(p, "b"); }), StartsWith(p.string() + ": b is empty"));
    write_bytes(p, npy_bytes(dict("<i4", "(2, 2)"), le_bytes(std::vector<std::int32_t>{1, 2, 3, 4})));
    CHECK(error_of([&] { mlnc::io::read_matrix(p, "W"); }) ==
          p.string() + ": W has dtype '<i4'; expected float32 (<f4) or float64 (<f8)");
}

TEST_CASE("npy: writing refuses bad shapes and targets and leaves nothing behind", "[io][npy]") {
    temp_dir dir;
    const std::vector<double> v(8, 1.0);
    CHECK_THAT(error_of([&] { mlnc::io::write_npy(dir / "a.npy", v.data(), {2, 2, 2}); }),
               Contains("at most 2 dimensions"));
    CHECK_THAT(error_of([&] { mlnc::io::write_npy(dir / "a.npy", v.data(), {-1, 2}); }), Contains("negative dimension"));
    CHECK_THAT(error_of([&] { mlnc::io::write_npy(dir / "a.npy", static_cast<const double*>(nullptr), {2}); }), Contains("null data"));
    CHECK_THAT(error_of([&] { mlnc::io::write_npy(dir / "no" / "a.npy", v.data(), {2}); }),
               StartsWith((dir / "no" / "a.npy").string() + ": cannot write: folder"));
    fs::create_directory(dir / "d.npy");
    CHECK_THAT(error_of([&] { mlnc::io::write_npy(dir / "d.npy", v.data(), {2}); }), Contains("is a directory"));
    CHECK(std::distance(fs::directory_iterator(dir.path), fs::directory_iterator()) == 1);
}

TEST_CASE("npy: garbage never crashes the reader", "[io][npy][fuzz]") {
    temp_dir dir;
    const fs::path p = dir / "f.npy";
    const std::string good = npy_bytes(dict("<f4", "(2, 3)"), le_bytes(std::vector<float>{1, 2, 3, 4, 5, 6}));
    const auto read_or_refuse = [&](const std::string& bytes) {
        write_bytes(p, bytes);
        try {
            const npy_array a = mlnc::io::read_npy(p);
            std::size_t n = 1;
            for (const auto s : a.shape) n *= static_cast<std::size_t>(s);
            CHECK(a.data.size() == n);
            return true;
        } catch (const mlnc::error& e) {
            CHECK_THAT(e.what(), StartsWith(p.string() + ": "));
            return false;
        }
    };

    REQUIRE(read_or_refuse(good));
    SECTION("truncated at every length") {
        for (std::size_t len = 0; len < good.size(); ++len) {
            INFO("length " << len);
            CHECK_FALSE(read_or_refuse(good.substr(0, len)));
        }
    }
    SECTION("every byte of the header replaced by a few values") {
        for (std::size_t i = 0; i < good.size() - 24; ++i) {
            for (const int c : {0x00, 0x20, 0x27, 0x28, 0x29, 0x2c, 0x31, 0x7b, 0x7d, 0x80, 0xff}) {
                std::string b = good;
                b[i] = static_cast<char>(c);
                read_or_refuse(b);
            }
        }
    }
    SECTION("random bytes, with and without a valid preamble") {
        std::mt19937_64 rng(20260101);
        for (int trial = 0; trial < 400; ++trial) {
            std::string b(static_cast<std::size_t>(rng() % 300), '\0');
            for (char& c : b) c = static_cast<char>(rng() & 0xff);
            if (trial % 2 == 1 && b.size() >= 10) {
                b.replace(0, 8, std::string("\x93NUMPY\x01\x00", 8));
                b[9] = 0;  // header length below 256: the random dictionary is actually parsed
            }
            read_or_refuse(b);
        }
    }
}

TEST_CASE("npy: files written by NumPy itself", "[io][npy][numpy]") {
    if (std::system("python3 -c 'import numpy' >/dev/null 2>&1") != 0) {
        WARN("python3 with numpy not available: skipping the check against files NumPy wrote");
        return;
    }
    temp_dir dir;
    const std::string script =
        "import numpy as np, sys; d = sys.argv[1]; "
        "np.save(d + '/f4.npy', np.arange(6, dtype=np.float32).reshape(2, 3) / 4); "
        "np.save(d + '/f8.npy', np.arange(6, dtype=np.float64).reshape(3, 2) * 1.5); "
        "np.save(d + '/b1.npy', np.array([[True, False], [False, True]])); "
        "np.save(d + '/fo.npy', np.asfortranarray(np.ones((2, 3))))";
    REQUIRE(std::system(("python3 -c \"" + script + "\" '" + dir.path.string() + "'").c_str()) == 0);
    const Eigen::MatrixXd A = mlnc::io::read_matrix(dir / "f4.npy", "A");
    REQUIRE(A.rows() == 2);
    for (int i = 0; i < 2; ++i)
        for (int j = 0; j < 3; ++j) CHECK(A(i, j) == (3 * i + j) / 4.0);
    const Eigen::MatrixXd B = mlnc::io::read_matrix(dir / "f8.npy", "B");
    REQUIRE(B.rows() == 3);
    for (int i = 0; i < 3; ++i)
        for (int j = 0; j < 2; ++j) CHECK(B(i, j) == (2 * i + j) * 1.5);
    CHECK(mlnc::io::read_npy(dir / "b1.npy").data == std::vector<double>{1, 0, 0, 1});
    CHECK_THAT(npy_error(dir / "fo.npy"), Contains("fortran_order is True"));

    // And NumPy reads what mlnc writes.
    const std::vector<double> v{1, 2, 3, 4, 5, 6};
    mlnc::io::write_npy(dir / "w.npy", v.data(), {2, 3});
    const std::string check = "import numpy as np, sys; a = np.load(sys.argv[1]); "
                              "sys.exit(0 if a.dtype == np.float64 and a.shape == (2, 3) and a[1, 0] == 4 else 1)";
    CHECK(std::system(("python3 -c \"" + check + "\" '" + (dir / "w.npy").string() + "'").c_str()) == 0);
}

TEST_CASE("npy: an honest size beyond the memory is refused with one line, nothing allocated", "[io][npy]") {
    const temp_dir dir;
    // A sparse file whose length matches its header: 200000 x 100000 float64 = 160 GB of data
    // that occupies no disk. The reader must not try to allocate it (Linux would kill it).
    const std::string header = npy_bytes(dict("<f8", "(200000, 100000)"), "");
    const auto path = dir / "huge.npy";
    write_bytes(path, header);
    std::error_code ec;
    fs::resize_file(path, header.size() + std::uint64_t{200000} * 100000 * 8, ec);
    if (ec) {
        WARN("this file system cannot hold a sparse 160 GB file: " << ec.message());
        return;
    }
    for (const auto& msg : {error_of([&] { mlnc::io::read_features(path, "H"); }), npy_error(path)}) {
        CHECK_THAT(msg, Contains("needs 160 GB of memory") && Contains("available"));
        CHECK(msg.find('\n') == std::string::npos);
    }
    // read_matrix holds the values twice while it transposes them.
    CHECK_THAT(error_of([&] { mlnc::io::read_matrix(path, "W"); }), Contains("needs 320 GB of memory"));
    // The limit can be lowered for a shared machine: 80 bytes of values do not fit in 64.
    write_bytes(dir / "small.npy", npy_bytes(dict("<f8", "(10,)"), le_bytes(std::vector<double>(10, 1.0))));
    setenv("MLNC_MEMORY_LIMIT", "64", 1);
    CHECK_THAT(npy_error(dir / "small.npy"), Contains("needs 80 bytes of memory"));
    unsetenv("MLNC_MEMORY_LIMIT");
    CHECK(mlnc::io::read_npy(dir / "small.npy").size() == 10);
}

TEST_CASE("npy: messages show hostile file names as one line of printable text", "[io][npy]") {
    const temp_dir dir;
    for (const std::string name : {"new\nline.npy", "esc\x1b[31m.npy", "quote'\"`$(x).npy", "-dash.npy", "t\xc3\xa9st.npy"}) {
        write_bytes(dir / name, "not npy at all");
        const auto msg = npy_error(dir / name);
        INFO(msg);
        CHECK_THAT(msg, Contains("bad magic"));
        for (const char c : msg) CHECK((c >= 0x20 && c < 0x7f));
    }
    CHECK_THAT(npy_error(dir / "new\nline.npy"), Contains("new\\x0aline.npy"));
}

TEST_CASE("npy: parse_npy reads bytes held in memory like a file", "[io][npy]") {
    const auto bytes = npy_bytes(dict("<f4", "(2, 2)"), le_bytes(std::vector<float>{1, 2, 3, 4}));
    const auto a = mlnc::io::parse_npy(bytes, "buffer");
    CHECK(a.shape == std::vector<std::int64_t>{2, 2});
    CHECK(a.data == std::vector<double>{1, 2, 3, 4});
    CHECK_THAT(error_of([&] { mlnc::io::parse_npy(bytes.substr(0, bytes.size() - 1), "buffer"); }),
               StartsWith("buffer: truncated data"));
}

TEST_CASE("npy: float data is written as <f4 and read back as float bit for bit", "[io][npy][float]") {
    temp_dir dir;
    // A signalling NaN comes back quietened from a detour float -> double -> float (its quiet bit
    // set), so it tells whether the values travel as float all the way.
    const float snan = std::bit_cast<float>(std::uint32_t{0x7f800001});
    const std::vector<float> v{1.5f, -0.0f, 0.1f, std::numeric_limits<float>::denorm_min(),
                               std::numeric_limits<float>::max(), snan};
    const fs::path p = dir / "f.npy";
    mlnc::io::write_npy(p, v.data(), {2, 3});
    const std::string bytes = read_bytes(p);
    const std::size_t hlen = static_cast<unsigned char>(bytes[8]) | (static_cast<unsigned char>(bytes[9]) << 8);
    CHECK((10 + hlen) % 64 == 0);
    CHECK_THAT(bytes.substr(10, hlen), StartsWith("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }"));
    CHECK(data_bytes(bytes) == le_bytes(v));

    const auto a = mlnc::io::read_npy<float>(p);
    static_assert(std::is_same_v<decltype(a.data), std::vector<float>>);
    CHECK(a.dtype == "<f4");
    CHECK(a.shape == std::vector<std::int64_t>{2, 3});
    REQUIRE(a.data.size() == v.size());
    CHECK(std::memcmp(a.data.data(), v.data(), v.size() * sizeof(float)) == 0);
    const auto b = mlnc::io::parse_npy<float>(bytes, "buffer");
    REQUIRE(b.data.size() == v.size());
    CHECK(std::memcmp(b.data.data(), v.data(), v.size() * sizeof(float)) == 0);

    // The Eigen writers and readers.
    Eigen::MatrixXf M(2, 3);
    M << 0.1f, -2.5f, 3e-8f, 1e30f, -0.0f, std::numeric_limits<float>::denorm_min();
    mlnc::io::write_matrix(dir / "m.npy", M);
    CHECK_THAT(read_bytes(dir / "m.npy"), Contains("'descr': '<f4'"));
    const auto M2 = mlnc::io::read_matrix<float>(dir / "m.npy", "M");
    static_assert(std::is_same_v<std::remove_const_t<decltype(M2)>, Eigen::MatrixXf>);
    CHECK(same_bits(M2, M));

    mlnc::io::write_features(dir / "h.npy", M);
    const Eigen::MatrixXf H2 = mlnc::io::read_features<float>(dir / "h.npy", "H");
    CHECK(same_bits(H2, M));
    // Features are the transposed matrix on disk, as for double.
    mlnc::io::write_matrix(dir / "mt.npy", Eigen::MatrixXf(M.transpose()));
    CHECK(read_bytes(dir / "h.npy") == read_bytes(dir / "mt.npy"));

    const Eigen::VectorXf w = Eigen::VectorXf::LinSpaced(5, -1.0f, 0.3f);
    mlnc::io::write_vector(dir / "w.npy", w);
    CHECK_THAT(read_bytes(dir / "w.npy"), Contains("'descr': '<f4', 'fortran_order': False, 'shape': (5,), }"));
    const Eigen::VectorXf w2 = mlnc::io::read_vector<float>(dir / "w.npy", "w");
    CHECK(same_bits(w2, w));

    // A double expression cast to float is written as float, a double one as double.
    const Eigen::MatrixXd D = M.cast<double>();
    mlnc::io::write_matrix(dir / "c.npy", D.cast<float>());
    CHECK(read_bytes(dir / "c.npy") == read_bytes(dir / "m.npy"));
    mlnc::io::write_matrix(dir / "d.npy", D);
    CHECK_THAT(read_bytes(dir / "d.npy"), Contains("'descr': '<f8'"));
}

TEST_CASE("npy: float32 read as double widens exactly", "[io][npy][float]") {
    temp_dir dir;
    // 0.1f and 1/3 are not the doubles 0.1 and 1/3: only an exact widening gives these values.
    const std::vector<float> v{0.1f, -1e-40f, 3.4e38f, 1.0f / 3.0f, -2.0f, 6.0f};
    const fs::path p = dir / "f4.npy";
    write_bytes(p, npy_bytes(dict("<f4", "(2, 3)"), le_bytes(v)));
    const Eigen::MatrixXd A = mlnc::io::read_matrix(p, "A");
    REQUIRE(A.rows() == 2);
    REQUIRE(A.cols() == 3);
    for (int i = 0; i < 2; ++i)
        for (int j = 0; j < 3; ++j) CHECK(A(i, j) == static_cast<double>(v[static_cast<std::size_t>(3 * i + j)]));
    const Eigen::MatrixXd H = mlnc::io::read_features<double>(p, "H");
    for (int i = 0; i < 2; ++i)
        for (int j = 0; j < 3; ++j) CHECK(H(j, i) == static_cast<double>(v[static_cast<std::size_t>(3 * i + j)]));
    write_bytes(p, npy_bytes(dict("<f4", "(6,)"), le_bytes(v)));
    const Eigen::VectorXd b = mlnc::io::read_vector(p, "b");
    for (std::size_t i = 0; i < v.size(); ++i) CHECK(b(static_cast<Eigen::Index>(i)) == static_cast<double>(v[i]));
    CHECK(mlnc::io::read_npy(p).data == std::vector<double>(v.begin(), v.end()));
}

TEST_CASE("npy: float64 read as float is refused, naming the file", "[io][npy][float]") {
    temp_dir dir;
    const std::vector<double> v{1, 2, 3, 4, 5, 6};
    const fs::path m = dir / "m.npy", b = dir / "b.npy";
    mlnc::io::write_npy(m, v.data(), {2, 3});
    mlnc::io::write_npy(b, v.data(), {6});
    const std::string lossy = " holds float64 data (dtype '<f8'), which would lose precision as float32; read it as double";
    CHECK(error_of([&] { mlnc::io::read_matrix<float>(m, "W"); }) == m.string() + ": W" + lossy);
    CHECK(error_of([&] { mlnc::io::read_features<float>(m, "H"); }) == m.string() + ": H" + lossy);
    CHECK(error_of([&] { mlnc::io::read_vector<float>(b, "b"); }) == b.string() + ": b" + lossy);
    CHECK(error_of([&] { mlnc::io::read_npy<float>(m); }) == m.string() + ": the file" + lossy);
    CHECK(error_of([&] { mlnc::io::parse_npy<float>(read_bytes(m), "buffer"); }) == "buffer: the file" + lossy);
    // As double they read fine.
    CHECK(mlnc::io::read_matrix(m, "W").sum() == 21);
}

TEST_CASE("npy: integer and bool arrays read as float as they read as double", "[io][npy][float]") {
    temp_dir dir;
    const fs::path p = dir / "i.npy";
    write_bytes(p, npy_bytes(dict("|b1", "(3,)"), std::string("\x00\x01\x01", 3)));
    CHECK(mlnc::io::read_npy<float>(p).data == std::vector<float>{0, 1, 1});
    write_bytes(p, npy_bytes(dict("<i2", "(3,)"), le_bytes(std::vector<std::int16_t>{0, 1, -300})));
    CHECK(mlnc::io::read_npy<float>(p).data == std::vector<float>{0, 1, -300});
    write_bytes(p, npy_bytes(dict("<u8", "(2,)"), le_bytes(std::vector<std::uint64_t>{1, std::uint64_t{1} << 63})));
    CHECK(mlnc::io::read_npy<float>(p).data == std::vector<float>{1, 9223372036854775808.0f});
    // ...and never as a float matrix, with the message double gives.
    CHECK(error_of([&] { mlnc::io::read_vector<float>(p, "v"); }) == error_of([&] { mlnc::io::read_vector(p, "v"); }));
    CHECK_THAT(error_of([&] { mlnc::io::read_vector<float>(p, "v"); }),
               StartsWith(p.string() + ": v has dtype '<u8'; expected float32"));
}

TEST_CASE("npy: float values are checked as double ones, in half the memory", "[io][npy][float]") {
    temp_dir dir;
    const fs::path p = dir / "x.npy";
    write_bytes(p, npy_bytes(dict("<f4", "(2, 2)"),
                             le_bytes(std::vector<float>{1, std::numeric_limits<float>::quiet_NaN(), 3, 4})));
    CHECK(error_of([&] { mlnc::io::read_matrix<float>(p, "W"); }) == p.string() + ": W contains NaN or Inf");
    CHECK(error_of([&] { mlnc::io::read_features<float>(p, "H"); }) == p.string() + ": H contains NaN or Inf");
    write_bytes(p, npy_bytes(dict("<f4", "(1,)"), le_bytes(std::vector<float>{std::numeric_limits<float>::infinity()})));
    CHECK(error_of([&] { mlnc::io::read_vector<float>(p, "b"); }) == p.string() + ": b contains NaN or Inf");

    // 10 float32 values: 40 bytes as float, 80 as double; the limit lies between.
    write_bytes(p, npy_bytes(dict("<f4", "(2, 5)"), le_bytes(std::vector<float>(10, 1.0f))));
    setenv("MLNC_MEMORY_LIMIT", "64", 1);
    const auto as_float = mlnc::io::read_npy<float>(p).size();
    const Eigen::Index features = mlnc::io::read_features<float>(p, "H").size();
    const std::string as_double = npy_error(p);
    const std::string matrix = error_of([&] { mlnc::io::read_matrix<float>(p, "W"); });  // twice 40
    unsetenv("MLNC_MEMORY_LIMIT");
    CHECK(as_float == 10);
    CHECK(features == 10);
    CHECK_THAT(as_double, Contains("needs 80 bytes of memory (the values of shape (2, 5) as float64)"));
    CHECK_THAT(matrix, Contains("needs 80 bytes of memory (the values of shape (2, 5) as float32, twice"));
}
