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

#include <mlnc/detail/memory.hpp>
#include <mlnc/error.hpp>
#include <mlnc/io/atomic_write.hpp>
#include <mlnc/io/npy.hpp>
#include <mlnc/io/text.hpp>
#include <mlnc/labels.hpp>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>
#include <sstream>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

namespace mlnc::io {

namespace detail {

// An N x K multi-hot array from an .npy stream, row by row: the values are converted in chunks of
// at most 64 KiB of file bytes and go straight into the CSR arrays (nothing of size N x K beyond
// the file itself, which is never held in memory).
inline label_sets read_multi_hot_stream(std::istream& in, std::uint64_t size, const std::string& name, index_t K) {
    const npy_layout L = parse_npy_layout(in, size, name);
    if (L.shape.size() != 2)
        fail(name, "a multi-hot label array must be 2-D (N samples x K labels), got shape " + shape_string(L.shape));
    const index_t N = L.shape[0], cols = L.shape[1];
    if (N == 0) fail(name, "no samples (shape " + shape_string(L.shape) + ")");
    if (K != 0 && cols != K)
        fail(name, "multi-hot label array has " + std::to_string(cols) + " columns, expected K = " + std::to_string(K));
    if (cols < 2) fail(name, "multi-hot label array needs at least 2 columns (K >= 2), got " + std::to_string(cols));
    if (cols > std::numeric_limits<label_t>::max())
        fail(name, "K = " + std::to_string(cols) + " exceeds the supported 2^31 - 1");
    std::vector<index_t> offsets{0};
    std::vector<label_t> indices;
    // An all-ones u1 file makes 4 bytes of indices per byte of file: checked as the arrays grow
    // (twice their size, for the moment a vector doubles).
    mlnc::detail::growth_guard guard(name, "the label sets of the multi-hot array");
    constexpr std::size_t chunk_bytes = std::size_t{1} << 16;
    std::vector<unsigned char> buf(chunk_bytes);
    const std::size_t per_chunk = chunk_bytes / L.type.itemsize;
    index_t i = 0, k = 0;  // the entry the next value belongs to
    for (std::uint64_t done = 0; done < L.count;) {
        const std::size_t n = static_cast<std::size_t>(std::min<std::uint64_t>(per_chunk, L.count - done));
        in.read(reinterpret_cast<char*>(buf.data()), static_cast<std::streamsize>(n * L.type.itemsize));
        if (in.gcount() != static_cast<std::streamsize>(n * L.type.itemsize)) fail(name, "read error in the data");
        for (std::size_t j = 0; j < n; ++j) {
            const double v = convert_one<double>(L.type.kind, buf.data() + j * L.type.itemsize);
            if (v == 1.0) {
                indices.push_back(static_cast<label_t>(k));
                guard.add(2.0 * sizeof(label_t));
            } else if (v != 0.0) {
                fail(name, "row " + std::to_string(i) + ", column " + std::to_string(k) +
                               ": multi-hot entry is neither 0 nor 1");
            }
            if (++k == cols) {
                if (static_cast<index_t>(indices.size()) == offsets.back())
                    fail(name, "row " + std::to_string(i) + " has no label (every sample needs at least one)");
                offsets.push_back(static_cast<index_t>(indices.size()));
                guard.add(2.0 * sizeof(index_t));
                k = 0;
                ++i;
            }
        }
        done += n;
    }
    return label_sets::from_csr(std::move(offsets), std::move(indices), cols);
}

inline void check_k_argument(const std::string& name, index_t K) {
    if (K < 0 || K == 1) fail(name, "K must be 0 (infer) or at least 2, got " + std::to_string(K));
    if (K > std::numeric_limits<label_t>::max())
        fail(name, "K = " + std::to_string(K) + " exceeds the supported 2^31 - 1");
}

inline bool starts_with_npy_magic(std::string_view head) {
    return head.size() >= npy_magic.size() &&
           std::equal(npy_magic.begin(), npy_magic.end(), head.begin(),
                      [](unsigned char a, char b) { return a == static_cast<unsigned char>(b); });
}

inline label_sets read_text_labels(const std::string& path, std::string_view text, index_t K) {
    // Indices must fit label_t; with K given they must also be below K.
    const index_t limit = K != 0 ? K : std::numeric_limits<label_t>::max();
    std::vector<index_t> offsets{0};
    std::vector<label_t> indices;
    std::vector<label_t> row;
    index_t max_index = -1;
    text_lines lines(text, path);
    for (std::string_view line; lines.next(line);) {
        row.clear();
        line_tokens tokens(line);
        for (std::string_view tok; tokens.next(tok);) {
            const integer_token v = parse_integer(tok);
            if (v.state == integer_token::status::malformed)
                lines.fail("'" + token_text(tok) + "' is not a label index (a non-negative integer)");
            if (tok.front() == '-') lines.fail("negative label index " + token_text(tok));
            if (v.state == integer_token::status::overflow || v.value >= limit) {
                if (K != 0) lines.fail("label index " + token_text(tok) + " out of range [0, " + std::to_string(K) + ")");
                lines.fail("label index " + token_text(tok) + " is too large (K must be below 2^31)");
            }
            row.push_back(static_cast<label_t>(v.value));
        }
        if (row.empty()) lines.fail("empty line (every sample needs at least one label index)");
        std::sort(row.begin(), row.end());
        const auto dup = std::adjacent_find(row.begin(), row.end());
        if (dup != row.end()) lines.fail("duplicate label index " + std::to_string(*dup));
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
// An inferred K is only as large as the data's largest index: nothing of size K is allocated
// here, and the library allocates O(K) only where every label must have samples anyway.
inline label_sets read_labels(const std::filesystem::path& path, index_t K = 0) {
    namespace fs = std::filesystem;
    const std::string name = mlnc::detail::printable(path.string());
    detail::check_k_argument(name, K);
    std::error_code ec;
    const fs::file_status st = fs::status(path, ec);
    if (st.type() == fs::file_type::not_found) detail::fail(name, "no such file");
    if (st.type() == fs::file_type::directory) detail::fail(name, "is a directory, not a label file");
    // Devices and FIFOs could block or never end: only regular files (or links to them) are read.
    if (st.type() != fs::file_type::regular && st.type() != fs::file_type::not_found && !ec)
        detail::fail(name, "is not a regular file");
    errno = 0;
    std::ifstream in(path, std::ios::binary);
    if (!in) {
        const int err = errno;
        detail::fail(name, "cannot open for reading" +
                               (err != 0 ? " (" + std::generic_category().message(err) + ")" : std::string()));
    }
    in.seekg(0, std::ios::end);
    const std::streamoff file_size = in.tellg();
    in.seekg(0, std::ios::beg);
    if (file_size < 0 || !in) detail::fail(name, "cannot determine the file size (not a regular file?)");
    const auto size = static_cast<std::uint64_t>(file_size);
    std::array<char, 6> head{};
    in.read(head.data(), static_cast<std::streamsize>(head.size()));
    const std::string_view h(head.data(), static_cast<std::size_t>(in.gcount()));
    in.clear();
    in.seekg(0, std::ios::beg);
    if (detail::starts_with_npy_magic(h)) return detail::read_multi_hot_stream(in, size, name, K);
    // The text and its CSR arrays: at most one label_t (4 bytes) per two bytes of text and one
    // offset (8 bytes) per line of at least two bytes, each array up to twice that while growing.
    mlnc::detail::require_memory(13.0 * static_cast<double>(size), name, "the text of the label file and its label sets");
    std::string text(static_cast<std::size_t>(size), '\0');
    in.read(text.data(), static_cast<std::streamsize>(size));
    if (in.gcount() != static_cast<std::streamsize>(size)) detail::fail(name, "read error");
    return detail::read_text_labels(name, text, K);
}

// The same from the bytes of a label file held in memory; `name` starts error messages.
inline label_sets parse_labels(std::string_view bytes, index_t K = 0, const std::string& name = "<memory>") {
    detail::check_k_argument(name, K);
    if (detail::starts_with_npy_magic(bytes)) {
        std::istringstream in{std::string(bytes)};
        return detail::read_multi_hot_stream(in, bytes.size(), name, K);
    }
    return detail::read_text_labels(name, bytes, K);
}

// Writes the text format (one line per sample, ascending indices separated by one space),
// atomically: a temporary file in the same folder is renamed into place.
inline void write_labels(const std::filesystem::path& path, const label_sets& S) {
    atomic_write(path, [&](std::ostream& out) {
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
