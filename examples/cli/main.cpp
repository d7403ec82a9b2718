// mlnc: the command-line face of the library (reference: docs/cli.md).

#include "command.hpp"

#include <algorithm>
#include <exception>
#include <string>

namespace {

// The error line as printed: control characters and non-ASCII bytes escaped (\xNN), so that a
// message quoting hostile input (a file name with a newline, an escape sequence) stays one line
// of plain text. Library messages escape what they quote already; this covers the rest.
std::string one_line(const std::string& message) {
    static constexpr char hex[] = "0123456789abcdef";
    std::string s;
    for (const char ch : message) {
        const auto c = static_cast<unsigned char>(ch);
        if (c >= 0x20 && c < 0x7f) {
            s += ch;
        } else {
            s += "\\x";
            s += hex[c >> 4];
            s += hex[c & 0xf];
        }
    }
    return s;
}

}  // namespace

int main(int argc, char** argv) {
    using namespace mlnc_cli;
    CLI::App app{"mlnc: multi-label neural collapse in the unconstrained feature model"};
    app.require_subcommand(1);
    app.set_version_flag("--version", "mlnc 0.1.0");

    auto& cmds = registry();
    std::sort(cmds.begin(), cmds.end(), [](const command& a, const command& b) { return a.order < b.order; });
    std::vector<std::pair<CLI::App*, std::function<int()>>> runners;
    for (const auto& c : cmds) {
        CLI::App* sub = app.add_subcommand(c.name, c.description);
        runners.emplace_back(sub, c.setup(*sub));
    }

    std::string where = "mlnc";
    try {
        app.parse(argc, argv);
        for (auto& [sub, run] : runners) {
            if (sub->parsed()) {
                where = "mlnc " + sub->get_name();
                return run();
            }
        }
        return exit_bad_input;
    } catch (const CLI::CallForHelp& e) {
        return app.exit(e);
    } catch (const CLI::CallForAllHelp& e) {
        return app.exit(e);
    } catch (const CLI::CallForVersion& e) {
        return app.exit(e);
    } catch (const CLI::ParseError& e) {
        for (auto& [sub, run] : runners)
            if (sub->parsed()) where = "mlnc " + sub->get_name();
        std::cerr << one_line(where + ": " + e.what()) << " (see --help)" << std::endl;
        return exit_bad_input;
    } catch (const mlnc::error& e) {
        std::cerr << one_line(where + ": " + e.what()) << std::endl;
        return exit_bad_input;
    } catch (const std::bad_alloc&) {
        std::cerr << where << ": out of memory" << std::endl;
        return exit_bad_input;
    } catch (const std::exception& e) {
        std::cerr << one_line(where + ": " + e.what()) << std::endl;
        return exit_bad_input;
    }
}
