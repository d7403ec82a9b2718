#pragma once
// NumPy .npy files: the exchange format of the mlnc program (features N x d, classifier K x d,
// bias K, multi-hot labels N x K).
//
// Reading accepts format versions 1.0, 2.0 and 3.0, little-endian C-order arrays of 0, 1 or 2
// dimensions, and the dtypes <f4, <f8 (matrices) plus |b1, |u1, |i1, <i2, <u2, <i4, <u4, <i8, <u8
// (multi-hot label arrays). The readers take the scalar type T of the result, float or double
// (double by default): float32 data is read as float without a detour through double, or widened
// exactly to double; float64 data read as float is refused, since nearly every value would lose
// precision (NumPy's casting='safe' refuses it too). Integers are converted to T, exactly up to 2^24 (float)
// or 2^53 (double) in magnitude, which covers the 0/1 of label arrays. Everything else throws
// mlnc::error with a message that starts with the file's path. Sizes are checked against the
// file's length before anything is allocated, so a corrupt header can never cause a huge
// allocation.
//
// Writing produces <f4 from float data and <f8 from double data, version 1.0, with the header
// padded to a multiple of 64 bytes as NumPy does. Files are written atomically (io/atomic_write.hpp),
// so a reader never sees a partial file.
//
// A C-order N x d array and a column-major d x N Eigen matrix are the same memory: features are
// read and written without a transpose (see theory.md, "Notation").

#include <mlnc/detail/memory.hpp>
#include <mlnc/error.hpp>
#include <mlnc/io/atomic_write.hpp>
#include <mlnc/types.hpp>

#include <Eigen/Core>

#include <algorithm>
#include <array>
#include <bit>
#include <cerrno>
#include <cmath>
#include <concepts>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <istream>
#include <limits>
#include <sstream>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

namespace mlnc::io {

// The scalar types .npy files are read into and written from.
template <class T>
concept npy_float = std::same_as<T, float> || std::same_as<T, double>;

// A whole .npy file with its values as T.
template <npy_float T>
struct basic_npy_array {
    std::vector<std::int64_t> shape;  // 0, 1 or 2 entries
    std::string dtype;                // the descr of the header, e.g. "<f8"
    std::vector<T> data;              // C order, converted to T

    std::int64_t ndim() const noexcept { return static_cast<std::int64_t>(shape.size()); }
    std::int64_t size() const noexcept { return static_cast<std::int64_t>(data.size()); }
};
using npy_array = basic_npy_array<double>;

namespace detail {

inline constexpr std::array<unsigned char, 6> npy_magic{0x93, 'N', 'U', 'M', 'P', 'Y'};
// NumPy itself refuses headers above 10000 bytes by default; this bound only guards allocation.
inline constexpr std::uint64_t npy_max_header = std::uint64_t{1} << 20;

// Errors start with the source's name: a path as printable text (other bytes escaped, so the
// message stays one line whatever the file is called), or a name such as "<memory>".
[[noreturn]] inline void fail(const std::string& name, const std::string& problem) {
    throw error(name + ": " + problem);
}
[[noreturn]] inline void fail(const std::filesystem::path& path, const std::string& problem) {
    fail(mlnc::detail::printable(path.string()), problem);
}
[[noreturn]] inline void fail(const char* name, const std::string& problem) { fail(std::string(name), problem); }

enum class npy_kind { f4, f8, b1, u1, i1, i2, u2, i4, u4, i8, u8 };

struct npy_dtype {
    npy_kind kind;
    std::size_t itemsize;
    bool is_float;
};

inline std::string shape_string(const std::vector<std::int64_t>& shape) {
    std::string s = "(";
    for (std::size_t i = 0; i < shape.size(); ++i) {
        if (i > 0) s += ", ";
        s += std::to_string(shape[i]);
    }
    if (shape.size() == 1) s += ",";
    return s + ")";
}

// The dtype of a descr string, or a refusal that says why.
inline npy_dtype parse_dtype(const std::string& path, const std::string& descr) {
    static constexpr std::string_view supported =
        "supported: <f4, <f8, and for label arrays |b1, |u1, |i1, <i2, <u2, <i4, <u4, <i8, <u8";
    if (descr.size() >= 2) {
        const char order = descr[0];
        const std::string_view code = std::string_view(descr).substr(1);
        // One-byte types have no byte order; NumPy writes '|' but any marker means the same.
        if (order == '|' || order == '<' || order == '>') {
            if (code == "b1") return {npy_kind::b1, 1, false};
            if (code == "u1") return {npy_kind::u1, 1, false};
            if (code == "i1") return {npy_kind::i1, 1, false};
        }
        struct entry {
            std::string_view code;
            npy_dtype type;
        };
        static constexpr std::array<entry, 8> multi_byte{{{"f4", {npy_kind::f4, 4, true}},
                                                          {"f8", {npy_kind::f8, 8, true}},
                                                          {"i2", {npy_kind::i2, 2, false}},
                                                          {"u2", {npy_kind::u2, 2, false}},
                                                          {"i4", {npy_kind::i4, 4, false}},
                                                          {"u4", {npy_kind::u4, 4, false}},
                                                          {"i8", {npy_kind::i8, 8, false}},
                                                          {"u8", {npy_kind::u8, 8, false}}}};
        for (const auto& e : multi_byte) {
            if (code != e.code) continue;
            if (order == '<') return e.type;
            if (order == '>')
                fail(path, "big-endian dtype '" + mlnc::detail::printable(descr, 32) +
                               "' is not supported (convert with arr.astype('<" + std::string(code) + "'))");
        }
    }
    fail(path, "unsupported dtype '" + mlnc::detail::printable(descr, 32) + "' (" + std::string(supported) + ")");
}

// A little-endian value of type T from raw bytes, on any host.
template <class T>
T load_le(const unsigned char* p) {
    std::array<unsigned char, sizeof(T)> b;
    std::memcpy(b.data(), p, sizeof(T));
    if constexpr (std::endian::native == std::endian::big) std::reverse(b.begin(), b.end());
    T v;
    std::memcpy(&v, b.data(), sizeof(T));
    return v;
}

// One stored value as T. f8 as float is never asked for (check_narrowing refuses it).
template <npy_float T>
T convert_one(npy_kind kind, const unsigned char* p) {
    switch (kind) {
        case npy_kind::f4: return static_cast<T>(load_le<float>(p));
        case npy_kind::f8: return static_cast<T>(load_le<double>(p));
        case npy_kind::b1:
        case npy_kind::u1: return static_cast<T>(p[0]);
        case npy_kind::i1: return static_cast<T>(load_le<std::int8_t>(p));
        case npy_kind::i2: return static_cast<T>(load_le<std::int16_t>(p));
        case npy_kind::u2: return static_cast<T>(load_le<std::uint16_t>(p));
        case npy_kind::i4: return static_cast<T>(load_le<std::int32_t>(p));
        case npy_kind::u4: return static_cast<T>(load_le<std::uint32_t>(p));
        case npy_kind::i8: return static_cast<T>(load_le<std::int64_t>(p));
        case npy_kind::u8: return static_cast<T>(load_le<std::uint64_t>(p));
    }
    return T(0);
}

// The stored type that is T itself, and its name in messages.
template <npy_float T>
constexpr npy_kind npy_kind_of = std::same_as<T, float> ? npy_kind::f4 : npy_kind::f8;
template <npy_float T>
constexpr const char* npy_type_name = std::same_as<T, float> ? "float32" : "float64";

// A parser for the header dictionary, a Python literal such as
//   {'descr': '<f8', 'fortran_order': False, 'shape': (3, 4), }
// Only what NumPy writes is accepted: string keys, string / True / False / tuple-of-int values.
class npy_header_parser {
public:
    npy_header_parser(const std::string& name, std::string_view text) : path_(name), s_(text) {}

    struct result {
        std::string descr;
        bool fortran_order = false;
        std::vector<std::int64_t> shape;
    };

    result parse() {
        result r;
        bool have_descr = false, have_order = false, have_shape = false;
        expect('{', "the header dictionary must start with '{'");
        skip_space();
        while (peek() != '}') {
            const std::string key = string_literal("a quoted key");
            expect(':', "expected ':' after key '" + mlnc::detail::printable(key, 32) + "'");
            if (key == "descr") {
                if (have_descr) malformed("duplicate key 'descr'");
                skip_space();
                if (peek() == '[')
                    fail(path_, "unsupported dtype: structured (record) arrays are not supported");
                r.descr = string_literal("a quoted dtype string for 'descr'");
                have_descr = true;
            } else if (key == "fortran_order") {
                if (have_order) malformed("duplicate key 'fortran_order'");
                r.fortran_order = boolean();
                have_order = true;
            } else if (key == "shape") {
                if (have_shape) malformed("duplicate key 'shape'");
                r.shape = tuple();
                have_shape = true;
            } else {
                malformed("unexpected key '" + mlnc::detail::printable(key, 32) + "'");
            }
            skip_space();
            if (peek() == ',') {
                ++pos_;
                skip_space();
            } else if (peek() != '}') {
                malformed("expected ',' or '}' after the value of '" + mlnc::detail::printable(key, 32) + "'");
            }
        }
        ++pos_;
        skip_space();
        if (pos_ != s_.size()) malformed("unexpected characters after the closing '}'");
        if (!have_descr) malformed("missing key 'descr'");
        if (!have_order) malformed("missing key 'fortran_order'");
        if (!have_shape) malformed("missing key 'shape'");
        return r;
    }

private:
    [[noreturn]] void malformed(const std::string& what) const { fail(path_, "malformed .npy header: " + what); }

    char peek() const { return pos_ < s_.size() ? s_[pos_] : '\0'; }
    void skip_space() {
        while (pos_ < s_.size() && (s_[pos_] == ' ' || s_[pos_] == '\t' || s_[pos_] == '\n' || s_[pos_] == '\r'))
            ++pos_;
    }
    void expect(char c, const std::string& what) {
        skip_space();
        if (peek() != c) malformed(what);
        ++pos_;
    }
    std::string string_literal(const std::string& what) {
        skip_space();
        const char q = peek();
        if (q != '\'' && q != '"') malformed("expected " + what);
        const std::size_t start = ++pos_;
        while (pos_ < s_.size() && s_[pos_] != q) {
            if (s_[pos_] == '\\' || s_[pos_] == '\n') malformed("unsupported character in a string literal");
            ++pos_;
        }
        if (pos_ == s_.size()) malformed("unterminated string literal");
        return std::string(s_.substr(start, pos_++ - start));
    }
    bool boolean() {
        skip_space();
        for (const auto& [word, value] : {std::pair<std::string_view, bool>{"True", true}, {"False", false}}) {
            if (s_.substr(pos_, word.size()) == word) {
                pos_ += word.size();
                return value;
            }
        }
        malformed("'fortran_order' must be True or False");
    }
    std::vector<std::int64_t> tuple() {
        expect('(', "'shape' must be a tuple such as (3, 4)");
        std::vector<std::int64_t> dims;
        bool trailing_comma = false;
        skip_space();
        while (peek() != ')') {
            dims.push_back(integer());
            skip_space();
            trailing_comma = peek() == ',';
            if (trailing_comma) {
                ++pos_;
                skip_space();
            } else if (peek() != ')') {
                malformed("expected ',' or ')' in 'shape'");
            }
            // A bound on the dimensions we report, far above the 2 we accept.
            if (dims.size() > 64) malformed("'shape' has too many dimensions");
        }
        ++pos_;
        // (3) is a parenthesised int in Python, not a tuple; NumPy writes (3,).
        if (dims.size() == 1 && !trailing_comma) malformed("'shape' must be a tuple; write (n,) for 1-D");
        return dims;
    }
    std::int64_t integer() {
        const std::size_t start = pos_;
        std::int64_t v = 0;
        while (pos_ < s_.size() && s_[pos_] >= '0' && s_[pos_] <= '9') {
            const int digit = s_[pos_] - '0';
            if (v > (std::numeric_limits<std::int64_t>::max() - digit) / 10)
                fail(path_, "shape entry overflows a 64-bit integer");
            v = v * 10 + digit;
            ++pos_;
        }
        if (pos_ == start) malformed("'shape' entries must be non-negative integers");
        if (peek() == 'L') ++pos_;  // Python 2 long suffix, in files written by old NumPy
        return v;
    }

    const std::string& path_;
    std::string_view s_;
    std::size_t pos_ = 0;
};

struct npy_layout {
    std::vector<std::int64_t> shape;
    std::string descr;
    npy_dtype type;
    std::uint64_t count;  // number of elements
};

// Validates the header of an .npy byte stream of `size` bytes in all, positioned at its start,
// and the length against it; on return `in` is positioned at the first data byte and exactly
// count * itemsize bytes remain. `name` starts every error message.
inline npy_layout parse_npy_layout(std::istream& in, std::uint64_t size, const std::string& name) {
    const std::string& path = name;
    const auto read_exact = [&](unsigned char* dst, std::size_t n, const char* what) {
        in.read(reinterpret_cast<char*>(dst), static_cast<std::streamsize>(n));
        if (in.gcount() != static_cast<std::streamsize>(n)) fail(path, std::string("truncated file: ") + what);
    };
    std::array<unsigned char, 8> pre{};
    if (size == 0) fail(path, "empty file, not a .npy file");
    if (size < pre.size()) {
        read_exact(pre.data(), static_cast<std::size_t>(size), "");
        if (std::equal(pre.begin(), pre.begin() + static_cast<std::ptrdiff_t>(size), npy_magic.begin()))
            fail(path, "truncated file: ends inside the .npy preamble");
        fail(path, "not a .npy file (bad magic string; expected \\x93NUMPY)");
    }
    read_exact(pre.data(), pre.size(), "ends inside the .npy preamble");
    if (!std::equal(npy_magic.begin(), npy_magic.end(), pre.begin()))
        fail(path, "not a .npy file (bad magic string; expected \\x93NUMPY)");
    const int major = pre[6], minor = pre[7];
    if (!((major == 1 || major == 2 || major == 3) && minor == 0))
        fail(path, "unsupported .npy format version " + std::to_string(major) + "." + std::to_string(minor) +
                       " (supported: 1.0, 2.0, 3.0)");

    std::uint64_t header_len;
    std::uint64_t data_offset;
    if (major == 1) {
        std::array<unsigned char, 2> b{};
        read_exact(b.data(), b.size(), "ends inside the header length");
        header_len = load_le<std::uint16_t>(b.data());
        data_offset = 10 + header_len;
    } else {
        std::array<unsigned char, 4> b{};
        read_exact(b.data(), b.size(), "ends inside the header length");
        header_len = load_le<std::uint32_t>(b.data());
        data_offset = 12 + header_len;
    }
    if (header_len > npy_max_header)
        fail(path, "header length " + std::to_string(header_len) + " bytes exceeds the limit of " +
                       std::to_string(npy_max_header) + " (corrupt file?)");
    if (data_offset > size)
        fail(path, "truncated file: the header claims " + std::to_string(header_len) + " bytes but the file has " +
                       std::to_string(size) + " bytes in all");
    std::string header(static_cast<std::size_t>(header_len), '\0');
    read_exact(reinterpret_cast<unsigned char*>(header.data()), header.size(), "ends inside the header");
    if (header.find('\0') != std::string::npos) fail(path, "malformed .npy header: contains a NUL byte");

    auto dict = npy_header_parser(path, header).parse();
    const npy_dtype type = parse_dtype(path, dict.descr);
    if (dict.fortran_order)
        fail(path, "fortran_order is True; only C-order arrays are supported (save np.ascontiguousarray(a))");
    if (dict.shape.size() > 2)
        fail(path, std::to_string(dict.shape.size()) + "-D array of shape " + shape_string(dict.shape) +
                       " is not supported (at most 2 dimensions)");

    std::uint64_t count = 1;
    for (const std::int64_t n : dict.shape) {
        const auto u = static_cast<std::uint64_t>(n);
        if (u != 0 && count > std::numeric_limits<std::uint64_t>::max() / u)
            fail(path, "shape " + shape_string(dict.shape) + " overflows the number of elements");
        count *= u;
    }
    const std::uint64_t available = size - data_offset;
    // count * itemsize compared without overflow.
    const std::uint64_t max_count = available / type.itemsize;
    const bool too_short = count > max_count;
    if (too_short || count * type.itemsize != available) {
        const std::string need =
            too_short && count > std::numeric_limits<std::uint64_t>::max() / type.itemsize
                ? std::string("more than 2^64")
                : std::to_string(count * type.itemsize);
        const std::string what = "shape " + shape_string(dict.shape) + " of " + dict.descr + " needs " + need +
                                 " data bytes, the file has " + std::to_string(available);
        fail(path, (too_short ? "truncated data: " : "size mismatch, extra data after the array: ") + what);
    }
    if (count > static_cast<std::uint64_t>(std::numeric_limits<std::ptrdiff_t>::max() / 8))
        fail(path, "array too large for this platform");
    return {std::move(dict.shape), std::move(dict.descr), type, count};
}

// Opens path (a regular file) and validates it as parse_npy_layout does.
inline npy_layout open_npy(const std::filesystem::path& path, std::ifstream& in) {
    namespace fs = std::filesystem;
    std::error_code ec;
    const fs::file_status st = fs::status(path, ec);
    if (st.type() == fs::file_type::not_found) fail(path, "no such file");
    if (st.type() == fs::file_type::directory) fail(path, "is a directory, not a .npy file");
    // Devices and FIFOs could block or never end: only regular files (or links to them) are read.
    if (st.type() != fs::file_type::regular && st.type() != fs::file_type::not_found && !ec)
        fail(path, "is not a regular file");
    errno = 0;
    in.open(path, std::ios::binary);
    if (!in) {
        const int err = errno;
        fail(path, "cannot open for reading" + (err != 0 ? " (" + std::generic_category().message(err) + ")" : ""));
    }
    in.seekg(0, std::ios::end);
    const std::streamoff file_size = in.tellg();
    in.seekg(0, std::ios::beg);
    if (file_size < 0 || !in) fail(path, "cannot determine the file size (not a regular file?)");
    return parse_npy_layout(in, static_cast<std::uint64_t>(file_size), mlnc::detail::printable(path.string()));
}

// Refuses to read float64 data as float: nearly every value would lose precision. role names the
// array in the message ("W"); empty for the whole-file readers.
template <npy_float T>
void check_narrowing(const std::string& path, std::string_view role, const npy_layout& L) {
    if constexpr (std::same_as<T, float>) {
        if (L.type.kind == npy_kind::f8)
            fail(path, (role.empty() ? std::string("the file") : std::string(role)) + " holds float64 data (dtype '" +
                           L.descr + "'), which would lose precision as float32; read it as double");
    }
}

// Reads the data of an opened file into out[0..count) as T (check_narrowing<T> has passed).
template <npy_float T>
void read_npy_data(const std::string& path, std::istream& in, const npy_layout& L, T* out) {
    if (L.type.kind == npy_kind_of<T> && std::endian::native == std::endian::little) {
        const auto bytes = static_cast<std::streamsize>(L.count * sizeof(T));
        in.read(reinterpret_cast<char*>(out), bytes);
        if (in.gcount() != bytes) fail(path, "read error in the data");
        return;
    }
    constexpr std::size_t chunk_bytes = std::size_t{1} << 16;
    std::vector<unsigned char> buf(chunk_bytes);
    const std::size_t per_chunk = chunk_bytes / L.type.itemsize;
    for (std::uint64_t done = 0; done < L.count;) {
        const std::size_t n = static_cast<std::size_t>(std::min<std::uint64_t>(per_chunk, L.count - done));
        in.read(reinterpret_cast<char*>(buf.data()), static_cast<std::streamsize>(n * L.type.itemsize));
        if (in.gcount() != static_cast<std::streamsize>(n * L.type.itemsize)) fail(path, "read error in the data");
        for (std::size_t j = 0; j < n; ++j)
            out[done + j] = convert_one<T>(L.type.kind, buf.data() + j * L.type.itemsize);
        done += n;
    }
}

// The checks shared by the float readers: dtype, precision, dimensions, non-empty.
template <npy_float T>
void require_float(const std::string& path, std::string_view name, const npy_layout& L, std::size_t ndim,
                   const char* expected) {
    if (!L.type.is_float)
        fail(path, std::string(name) + " has dtype '" + L.descr + "'; expected float32 (<f4) or float64 (<f8)");
    check_narrowing<T>(path, name, L);
    if (L.shape.size() != ndim)
        fail(path, std::string(name) + " must be " + expected + ", got shape " + shape_string(L.shape));
    if (L.count == 0) fail(path, std::string(name) + " is empty, shape " + shape_string(L.shape));
}

template <npy_float T>
void require_finite(const std::string& path, std::string_view name, const T* p, std::size_t n) {
    for (std::size_t i = 0; i < n; ++i)
        if (!std::isfinite(p[i])) fail(path, std::string(name) + " contains NaN or Inf");
}

// Before the values of an array are read into T: the array is honest (its bytes are in the file)
// but the values may still exceed the memory. copies > 1 when they are held more than once.
template <npy_float T>
void require_memory_for(const std::string& name, const npy_layout& L, int copies = 1) {
    mlnc::detail::require_memory(copies * static_cast<double>(L.count) * sizeof(T), name,
                                 "the values of shape " + shape_string(L.shape) + " as " + npy_type_name<T> +
                                     (copies == 2 ? ", twice while they are transposed" : ""));
}

template <npy_float T>
basic_npy_array<T> read_whole(std::istream& in, const npy_layout& L, const std::string& name) {
    check_narrowing<T>(name, "", L);
    require_memory_for<T>(name, L);
    basic_npy_array<T> a;
    a.data.resize(static_cast<std::size_t>(L.count));
    read_npy_data(name, in, L, a.data.data());
    a.shape = L.shape;
    a.dtype = L.descr;
    return a;
}

// Writes values as little-endian bytes.
template <npy_float T>
void put_le(std::ostream& out, const T* p, std::size_t n) {
    if constexpr (std::endian::native == std::endian::little) {
        out.write(reinterpret_cast<const char*>(p), static_cast<std::streamsize>(n * sizeof(T)));
    } else {
        for (std::size_t i = 0; i < n; ++i) {
            std::array<char, sizeof(T)> b;
            std::memcpy(b.data(), p + i, sizeof(T));
            std::reverse(b.begin(), b.end());
            out.write(b.data(), sizeof(T));
        }
    }
}

// The version 1.0 header for a C-order array of T (<f4 or <f8) of the given shape.
template <npy_float T>
std::string npy_header(const std::vector<std::int64_t>& shape) {
    const std::string descr = std::same_as<T, float> ? "<f4" : "<f8";
    std::string dict = "{'descr': '" + descr + "', 'fortran_order': False, 'shape': " + shape_string(shape) + ", }";
    const std::size_t unpadded = 10 + dict.size() + 1;  // preamble + dict + '\n'
    dict.append((64 - unpadded % 64) % 64, ' ');
    dict += '\n';
    std::string h(npy_magic.begin(), npy_magic.end());
    h += '\x01';
    h += '\x00';
    h += static_cast<char>(dict.size() & 0xff);
    h += static_cast<char>((dict.size() >> 8) & 0xff);
    return h + dict;
}

inline std::uint64_t checked_count(const std::filesystem::path& path, const std::vector<std::int64_t>& shape) {
    if (shape.size() > 2)
        fail(path, "cannot write a " + std::to_string(shape.size()) + "-D array (at most 2 dimensions)");
    std::uint64_t count = 1;
    for (const std::int64_t n : shape) {
        if (n < 0) fail(path, "cannot write: negative dimension in shape " + shape_string(shape));
        const auto u = static_cast<std::uint64_t>(n);
        if (u != 0 && count > std::numeric_limits<std::uint64_t>::max() / 8 / u)
            fail(path, "cannot write: shape " + shape_string(shape) + " is too large");
        count *= u;
    }
    return count;
}

}  // namespace detail

// The whole file: shape, descr and the values as T, in C order.
template <npy_float T = double>
basic_npy_array<T> read_npy(const std::filesystem::path& path) {
    std::ifstream in;
    const detail::npy_layout L = detail::open_npy(path, in);
    return detail::read_whole<T>(in, L, mlnc::detail::printable(path.string()));
}

// The same from the bytes of an .npy file held in memory; `name` starts error messages.
template <npy_float T = double>
basic_npy_array<T> parse_npy(std::string_view bytes, const std::string& name = "<memory>") {
    std::istringstream in{std::string(bytes)};
    const detail::npy_layout L = detail::parse_npy_layout(in, bytes.size(), name);
    return detail::read_whole<T>(in, L, name);
}

// The dtype of an .npy file ("<f4", "<f8", ...) from its header, without reading the data.
inline std::string read_npy_dtype(const std::filesystem::path& path) {
    std::ifstream in;
    return detail::open_npy(path, in).descr;
}

// A 2-D float32/float64 array (rows x cols, e.g. W as K x d) as T, finite and non-empty.
// name is the role of the array in messages ("<path>: W contains NaN or Inf").
template <npy_float T = double>
matrix<T> read_matrix(const std::filesystem::path& path, std::string_view name) {
    std::ifstream in;
    const detail::npy_layout L = detail::open_npy(path, in);
    const std::string where = mlnc::detail::printable(path.string());
    detail::require_float<T>(where, name, L, 2, "a 2-D array");
    // The row-major copy and the column-major result exist together for a moment.
    detail::require_memory_for<T>(where, L, 2);
    // C order rows x cols is column-major cols x rows: read it as such, then transpose once.
    Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor> M(L.shape[0], L.shape[1]);
    detail::read_npy_data(where, in, L, M.data());
    detail::require_finite(where, name, M.data(), static_cast<std::size_t>(L.count));
    return M;
}

// A 2-D float32/float64 array of N samples x d features, returned as the d x N matrix H of
// theory.md (same memory, no transpose) of T. Finite and non-empty.
template <npy_float T = double>
matrix<T> read_features(const std::filesystem::path& path, std::string_view name) {
    std::ifstream in;
    const detail::npy_layout L = detail::open_npy(path, in);
    const std::string where = mlnc::detail::printable(path.string());
    detail::require_float<T>(where, name, L, 2, "a 2-D array (N samples x d features)");
    detail::require_memory_for<T>(where, L);
    matrix<T> H(L.shape[1], L.shape[0]);
    detail::read_npy_data(where, in, L, H.data());
    detail::require_finite(where, name, H.data(), static_cast<std::size_t>(L.count));
    return H;
}

// A 1-D float32/float64 array as T, finite and non-empty.
template <npy_float T = double>
vector<T> read_vector(const std::filesystem::path& path, std::string_view name) {
    std::ifstream in;
    const detail::npy_layout L = detail::open_npy(path, in);
    const std::string where = mlnc::detail::printable(path.string());
    detail::require_float<T>(where, name, L, 1, "a 1-D array");
    detail::require_memory_for<T>(where, L);
    vector<T> v(L.shape[0]);
    detail::read_npy_data(where, in, L, v.data());
    detail::require_finite(where, name, v.data(), static_cast<std::size_t>(L.count));
    return v;
}

// Writes a C-order array of the given shape (0, 1 or 2 dimensions) atomically, as <f4 for float
// data and <f8 for double. data must hold the product of shape's entries values (it may be null
// when that is 0).
template <npy_float T>
void write_npy(const std::filesystem::path& path, const T* data, std::vector<std::int64_t> shape) {
    const std::uint64_t count = detail::checked_count(path, shape);
    if (count > 0 && data == nullptr) detail::fail(path, "cannot write: null data for a non-empty array");
    const std::string header = detail::npy_header<T>(shape);
    atomic_write(path, [&](std::ostream& out) {
        out.write(header.data(), static_cast<std::streamsize>(header.size()));
        detail::put_le(out, data, static_cast<std::size_t>(count));
    });
}

// A rows x cols float or double matrix (or expression) as a 2-D C-order array (W: K x d).
template <class Derived>
    requires npy_float<typename Derived::Scalar>
void write_matrix(const std::filesystem::path& path, const Eigen::MatrixBase<Derived>& M) {
    using T = typename Derived::Scalar;
    const Eigen::Ref<const matrix<T>> R(M);  // an expression is evaluated once, here
    const std::vector<std::int64_t> shape{R.rows(), R.cols()};
    detail::checked_count(path, shape);
    const std::string header = detail::npy_header<T>(shape);
    atomic_write(path, [&](std::ostream& out) {
        out.write(header.data(), static_cast<std::streamsize>(header.size()));
        vector<T> row(R.cols());
        for (Eigen::Index r = 0; r < R.rows(); ++r) {
            row = R.row(r).transpose();
            detail::put_le(out, row.data(), static_cast<std::size_t>(row.size()));
        }
    });
}

// The d x N float or double feature matrix H as an N x d C-order array (column i of H is row i of
// the file).
template <class Derived>
    requires npy_float<typename Derived::Scalar>
void write_features(const std::filesystem::path& path, const Eigen::MatrixBase<Derived>& H) {
    using T = typename Derived::Scalar;
    const Eigen::Ref<const matrix<T>> R(H);  // contiguous columns
    const std::vector<std::int64_t> shape{R.cols(), R.rows()};
    detail::checked_count(path, shape);
    const std::string header = detail::npy_header<T>(shape);
    atomic_write(path, [&](std::ostream& out) {
        out.write(header.data(), static_cast<std::streamsize>(header.size()));
        for (Eigen::Index i = 0; i < R.cols(); ++i)
            detail::put_le(out, R.col(i).data(), static_cast<std::size_t>(R.rows()));
    });
}

// A float or double vector as a 1-D array.
template <class Derived>
    requires npy_float<typename Derived::Scalar>
void write_vector(const std::filesystem::path& path, const Eigen::MatrixBase<Derived>& v) {
    using T = typename Derived::Scalar;
    const Eigen::Ref<const vector<T>> R(v);  // contiguous
    const std::vector<std::int64_t> shape{R.size()};
    detail::checked_count(path, shape);
    const std::string header = detail::npy_header<T>(shape);
    atomic_write(path, [&](std::ostream& out) {
        out.write(header.data(), static_cast<std::streamsize>(header.size()));
        detail::put_le(out, R.data(), static_cast<std::size_t>(R.size()));
    });
}

}  // namespace mlnc::io
