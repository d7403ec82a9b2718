#pragma once
// The line-oriented text formats (label files, counts files) share one way of reading text:
// lines end at '\n', a '\r' before it is dropped (files written on Windows), the last line needs
// no '\n'; tokens are separated by spaces and tabs; integers are ASCII digits with an optional '-'
// (no '+', no spaces, no exponent). Errors name the source and the line: "<name>:<line>: ...".

#include <mlnc/error.hpp>
#include <mlnc/types.hpp>

#include <charconv>
#include <cstdint>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>

namespace mlnc::io::detail {

// The lines of a text, one after the other, with their 1-based numbers.
class text_lines {
public:
    // name starts every error message, as the caller gives it (a printable path, "--counts x").
    text_lines(std::string_view text, std::string name) : text_(text), name_(std::move(name)) {}

    // The next line without its end ('\n' or "\r\n"); false after the last one. An empty text
    // has no lines; a text ending in '\n' has no empty line after it.
    bool next(std::string_view& line) {
        if (pos_ >= text_.size()) return false;
        const std::size_t nl = text_.find('\n', pos_);
        const std::size_t end = nl == std::string_view::npos ? text_.size() : nl;
        line = text_.substr(pos_, end - pos_);
        if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
        pos_ = end + 1;
        ++number_;
        return true;
    }

    // The number of the line next() returned last.
    index_t number() const noexcept { return number_; }

    // Throws mlnc::error("<name>:<line>: <problem>") for the current line.
    [[noreturn]] void fail(const std::string& problem) const {
        throw error(name_ + ":" + std::to_string(number_) + ": " + problem);
    }

private:
    std::string_view text_;
    std::string name_;
    std::size_t pos_ = 0;
    index_t number_ = 0;
};

// The tokens of one line, separated by runs of spaces and tabs.
class line_tokens {
public:
    explicit line_tokens(std::string_view line) : line_(line) {}

    // The next token; false when only blanks are left.
    bool next(std::string_view& token) {
        while (pos_ < line_.size() && is_blank(line_[pos_])) ++pos_;
        if (pos_ == line_.size()) return false;
        const std::size_t start = pos_;
        while (pos_ < line_.size() && !is_blank(line_[pos_])) ++pos_;
        token = line_.substr(start, pos_ - start);
        return true;
    }

private:
    static bool is_blank(char c) noexcept { return c == ' ' || c == '\t'; }

    std::string_view line_;
    std::size_t pos_ = 0;
};

// A token read as a 64-bit integer: malformed unless it is an optional '-' and one or more ASCII
// digits; overflow when it has that form but is beyond the range of std::int64_t.
struct integer_token {
    enum class status { ok, malformed, overflow };
    status state = status::malformed;
    std::int64_t value = 0;

    bool ok() const noexcept { return state == status::ok; }
};

inline integer_token parse_integer(std::string_view token) {
    integer_token r;
    const char* const last = token.data() + token.size();
    const auto [end, ec] = std::from_chars(token.data(), last, r.value);
    if (end != last) return r;  // an empty token, '+', spaces, a decimal point, ...
    if (ec == std::errc::result_out_of_range) {
        r.state = integer_token::status::overflow;
    } else if (ec == std::errc{}) {
        r.state = integer_token::status::ok;
    }
    return r;
}

// A token as it may appear in a one-line message: printable text, at most 32 bytes.
inline std::string token_text(std::string_view token) { return mlnc::detail::printable(token, 32); }

}  // namespace mlnc::io::detail
