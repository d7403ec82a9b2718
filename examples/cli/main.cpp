// mlnc: the command-line face of the library (contract: shared/spec/cli.md, docs/cli.md).

#include "command.hpp"

#include <algorithm>
#include <exception>
#include <string>

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
        std::cerr << where << ": " << e.what() << " (see --help)" << std::endl;
        return exit_bad_input;
    } catch (const mlnc::error& e) {
        std::cerr << where << ": " << e.what() << std::endl;
        return exit_bad_input;
    } catch (const std::bad_alloc&) {
        std::cerr << where << ": out of memory" << std::endl;
        return exit_bad_input;
    } catch (const std::exception& e) {
        std::cerr << where << ": " << e.what() << std::endl;
        return exit_bad_input;
    }
}
