#pragma once
// The mlnc program's plumbing: each subcommand lives in its own .cpp and registers itself with
// a static `registrar`; main() parses, runs the chosen one and maps errors to exit codes.

#include <mlnc/error.hpp>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <cmath>
#include <functional>
#include <iostream>
#include <string>
#include <vector>

namespace mlnc_cli {

// Exit codes of cli.md.
inline constexpr int exit_ok = 0;
inline constexpr int exit_check_failed = 1;
inline constexpr int exit_bad_input = 2;

// A subcommand: `setup` adds its options to the CLI11 subcommand and returns the function that
// runs it once parsing succeeded (returning the exit code).
struct command {
    std::string name;
    std::string description;
    int order;  // position in --help
    std::function<std::function<int()>(CLI::App&)> setup;
};

inline std::vector<command>& registry() {
    static std::vector<command> commands;
    return commands;
}

struct registrar {
    explicit registrar(command c) { registry().push_back(std::move(c)); }
};

// Bad usage or bad input: main() prints "mlnc <cmd>: <message>" on one line and exits 2.
using usage_error = mlnc::error;

// Prints exactly one JSON object on stdout (cli.md: --json).
inline void print_json(const nlohmann::json& j) { std::cout << j.dump(2) << std::endl; }

// A penalty weight given on the command line: finite and >= 0, or exit 2 naming the option.
inline double checked_lambda(double value, const char* option) {
    if (!(std::isfinite(value) && value >= 0.0))
        throw mlnc::error(std::string(option) + ": must be a finite number >= 0, got " + mlnc::detail::num(value));
    return value;
}

// Adds the --json flag every subcommand has.
inline void add_json_flag(CLI::App& app, bool& flag) {
    app.add_flag("--json", flag, "Print one JSON object on stdout (human text goes to stderr)");
}

}  // namespace mlnc_cli
