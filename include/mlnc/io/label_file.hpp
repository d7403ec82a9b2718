#pragma once
// Label-set files (cli.md, "File formats"):
//  - text: one line per sample with its 0-based label indices separated by spaces or tabs, e.g.
//        0 3
//        2
//    Indices are sorted on reading. Empty lines, duplicates, negatives, non-integers and indices
//    out of range are refused with the line number. A final newline and \r\n line ends are fine.
//  - .npy: an N x K multi-hot array of 0/1 (any float, integer or bool dtype that io/npy.hpp
//    reads), recognised by its magic bytes whatever the file's extension.
// Errors are mlnc::error messages starting with the path ("<path>:<line>: ..." for text).

#include <mlnc/error.hpp>
#include <mlnc/io/npy.hpp>
#include <mlnc/labels.hpp>

#include <algorithm>
#include <array>
#include <cerrno>
#include <charconv>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

namespace mlnc::io {

namespace detail {

inline label_sets read_multi_hot_labels(const std::filesystem::path& path, index_t K) {
    const npy_array a = read_npy(path);
    if (a.ndim() != 2)
        fail(path, "a multi-hot label array must be 2-D (N samples x K labels), got shape " + shape_string(a.shape));
    const index_t N = a.shape[0], cols = a.shape[1];
    if (N == 0) fail(path, "no samples (shape " + shape_string(a.shape) + ")");
    if (K != 0 && cols != K)
        fail(path, "multi-hot label array has " + std::to_string(cols) + " columns, expected K = " + std::to_string(K));
    if (cols < 2) fail(path, "multi-hot label array needs at least 2 columns (K >= 2), got " + std::to_string(cols));
    if (cols > std::numeric_limits<label_t>::max())
        fail(path, "K = " + std::to_string(cols) + " exceeds the supported 2^31 - 1");
    std::vector<index_t> offsets{0};
    offsets.reserve(static_cast<std::size_t>(N) + 1);
    std::vector<label_t> indices;
    for (index_t i = 0; i < N; ++i) {
        const double* row = a.data.data() + i * cols;
        for (index_t k = 0; k < cols; ++k) {
            if (row[k] == 1.0) {
                indices.push_back(static_cast<label_t>(k));
            } else if (row[k] != 0.0) {
                fail(path, "row " + std::to_string(i) + ", column " + std::to_string(k) +
                               ": multi-hot entry is neither 0 nor 1");
            }
        }
        if (static_cast<index_t>(indices.size()) == offsets.back())
            fail(path, "row " + std::to_string(i) + " has no label (every sample needs at least one)");
        offsets.push_back(static_cast<index_t>(indices.size()));
    }
    return label_sets::from_csr(std::move(offsets), std::move(indices), cols);
}

// A token as it may appear in a one-line message: printable ASCII only, at most 24 characters.
inline std::string printable_token(std::string_view tok) {
    std::string s;
    for (const char c : tok.substr(0, 24)) s += (c >= 0x20 && c < 0x7f) ? c : '?';
    if (tok.size() > 24) s += "...";
    return s;
}

inline label_sets read_text_labels(const std::filesystem::path& path, std::string_view text, index_t K) {
    // Indices must fit label_t; with K given they must also be below K.
    const index_t limit = K != 0 ? K : std::numeric_limits<label_t>::max();
    std::vector<index_t> offsets{0};
    std::vector<label_t> indices;
    std::vector<label_t> row;
    index_t max_index = -1;
    std::size_t pos = 0;
    for (std::size_t line_no = 1; pos < text.size(); ++line_no) {
        const std::size_t nl = text.find('\n', pos);
        std::string_view line = text.substr(pos, nl == std::string_view::npos ? std::string_view::npos : nl - pos);
        pos = nl == std::string_view::npos ? text.size() : nl + 1;
        if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
        const auto bad = [&](const std::string& problem) {
            throw error(path.string() + ":" + std::to_string(line_no) + ": " + problem);
        };

        row.clear();
        std::size_t p = 0;
        while (true) {
            while (p < line.size() && (line[p] == ' ' || line[p] == '\t')) ++p;
            if (p == line.size()) break;
            std::size_t e = p;
            while (e < line.size() && line[e] != ' ' && line[e] != '\t') ++e;
            const std::string_view tok = line.substr(p, e - p);
            p = e;
            const bool negative = tok.front() == '-';
            const std::string_view digits = negative ? tok.substr(1) : tok;
            std::int64_t v = 0;
            const auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), v);
            if (digits.empty() || digits.front() < '0' || digits.front() > '9' ||
                end != digits.data() + digits.size() || (ec != std::errc{} && ec != std::errc::result_out_of_range))
                bad("'" + printable_token(tok) + "' is not a label index (a non-negative integer)");
            if (negative) bad("negative label index " + printable_token(tok));
            if (ec == std::errc::result_out_of_range || v >= limit) {
                if (K != 0)
                    bad("label index " + printable_token(tok) + " out of range [0, " + std::to_string(K) + ")");
                bad("label index " + printable_token(tok) + " is too large (K must be below 2^31)");
            }
            row.push_back(static_cast<label_t>(v));
        }
        if (row.empty()) bad("empty line (every sample needs at least one label index)");
        std::sort(row.begin(), row.end());
        const auto dup = std::adjacent_find(row.begin(), row.end());
        if (dup != row.end()) bad("duplicate label index " + std::to_string(*dup));
        max_index = std::max<index_t>(max_index, row.back());
        indices.insert(indices.end(), row.begin(), row.end());
        offsets.push_back(static_cast<index_t>(indices.size()));
    }
    if (offsets.size() == 1) fail(path, "no label sets (empty file)");
    const index_t k = K != 0 ? K : std::max<index_t>(2, max_index + 1);
    return label_sets::from_csr(std::move(offsets), std::move(indices), k);
}

}  // namespace detail

// The label sets of a text or .npy label file. K = 0 infers the number of labels (text: the
// largest index + 1, at least 2; .npy: the number of columns); K > 0 requires the file to agree.
inline label_sets read_labels(const std::filesystem::path& path, index_t K = 0) {
    namespace fs = std::filesystem;
    if (K < 0 || K == 1) detail::fail(path, "K must be 0 (infer) or at least 2, got " + std::to_string(K));
    if (K > std::numeric_limits<label_t>::max())
        detail::fail(path, "K = " + std::to_string(K) + " exceeds the supported 2^31 - 1");
    std::error_code ec;
    const fs::file_status st = fs::status(path, ec);
    if (st.type() == fs::file_type::not_found) detail::fail(path, "no such file");
    if (st.type() == fs::file_type::directory) detail::fail(path, "is a directory, not a label file");
    // Devices and FIFOs could block or never end: only regular files (or links to them) are read.
    if (st.type() != fs::file_type::regular && st.type() != fs::file_type::not_found && !ec)
        detail::fail(path, "is not a regular file");
    errno = 0;
    std::ifstream in(path, std::ios::binary);
    if (!in) {
        const int err = errno;
        detail::fail(path, "cannot open for reading" +
                               (err != 0 ? " (" + std::generic_category().message(err) + ")" : std::string()));
    }
    std::array<char, 6> head{};
    in.read(head.data(), static_cast<std::streamsize>(head.size()));
    if (in.gcount() == static_cast<std::streamsize>(head.size()) &&
        std::equal(head.begin(), head.end(), detail::npy_magic.begin(),
                   [](char a, unsigned char b) { return static_cast<unsigned char>(a) == b; })) {
        in.close();
        return detail::read_multi_hot_labels(path, K);
    }
    in.clear();
    in.seekg(0, std::ios::beg);
    const std::string text{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
    if (in.bad()) detail::fail(path, "read error");
    return detail::read_text_labels(path, text, K);
}

// Writes the text format (one line per sample, ascending indices separated by one space),
// atomically: a temporary file in the same folder is renamed into place.
inline void write_labels(const std::filesystem::path& path, const label_sets& S) {
    detail::atomic_write(path, [&](std::ostream& out) {
        std::string line;
        for (index_t i = 0; i < S.size(); ++i) {
            line.clear();
            for (const label_t k : S[i]) {
                if (!line.empty()) line += ' ';
                line += std::to_string(k);
            }
            line += '\n';
            out.write(line.data(), static_cast<std::streamsize>(line.size()));
        }
    });
}

}  // namespace mlnc::io
