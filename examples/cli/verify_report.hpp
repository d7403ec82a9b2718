#pragma once
// mlnc verify, part 4: the report. A table of theory against trained values with the notes and
// the verdict (stdout, or stderr with --json), and the JSON object of cli.md (per-multiplicity
// values as objects keyed by m; undefined values as null).

#include "verify_compare.hpp"
#include "verify_train.hpp"

#include <mlnc/error.hpp>
#include <mlnc/types.hpp>
#include <mlnc/ufm.hpp>

#include <nlohmann/json.hpp>

#include <filesystem>
#include <iomanip>
#include <optional>
#include <ostream>
#include <string>
#include <vector>

namespace mlnc_cli::verify {

// A value as JSON: a number, or null when undefined.
inline nlohmann::json json_value(const std::optional<double>& v) {
    return v ? nlohmann::json(*v) : nlohmann::json(nullptr);
}
inline nlohmann::json json_value(double v) { return v; }

// {"1": v_1, "2": v_2, ...} for the multiplicities present.
template <class V>
nlohmann::json by_m_json(const mlnc::per_multiplicity<V>& x) {
    nlohmann::json j = nlohmann::json::object();
    for (const auto& [m, v] : x) j[std::to_string(m)] = json_value(v);
    return j;
}

inline void print_report(std::ostream& human, index_t K, const training& t, const structure& st, const comparison& c,
                         double seconds, const std::filesystem::path& out_dir) {
    const auto row = [&](const std::string& name, const std::string& th, const std::string& tr) {
        human << "  " << std::left << std::setw(28) << name << std::setw(24) << th << tr << "\n" << std::right;
    };
    const bool have_theory = c.theory && c.theory->converged();
    const std::string undefined = "n/a (zero solution)";
    human << "\n";
    row("quantity", "theory", "trained");
    row("objective f", have_theory ? fmt((*c.theory)->f, 15) : "-", fmt(t.res.objective, 15));
    row("relative gap", "", c.gap ? fmt(*c.gap, 3) : "-");
    row("rho = ||W||_F^2", have_theory ? fmt((*c.theory)->rho, 10) : "-", fmt(st.rho, 10));
    row("ETF error (NC2 on W)", "0", st.etf_error ? fmt(*st.etf_error, 3) : undefined);
    if (st.zero) {
        for (const auto& [m, cth] : c.C_theory) row("C_" + std::to_string(m), fmt(cth, 10), undefined);
    } else {
        for (const auto& [m, cm] : st.C) {
            row("C_" + std::to_string(m), c.C_theory.contains(m) ? fmt(c.C_theory.at(m), 10) : "-", fmt(cm, 10));
            row("  tag-wise residual, m = " + std::to_string(m), "0", fmt(st.residual.at(m), 3));
        }
    }
    if (st.nc) {
        row("NC1", "0", st.nc->nc1 ? fmt(*st.nc->nc1, 3) : "n/a");
        row("NC2 (feature means)", "0", st.nc->nc2_h ? fmt(*st.nc->nc2_h, 3) : "n/a");
        row("NC3", "0", st.nc->nc3 ? fmt(*st.nc->nc3, 3) : "n/a");
        // The centred NC_K is never defined (the centred label means sum to 0): not listed.
        for (const auto& [m, v] : st.nc->nc_m)
            if (m < K) row("NC_m, m = " + std::to_string(m), "0", v ? fmt(*v, 3) : "n/a");
    } else {
        row("NC metrics", "0", st.zero ? undefined : "n/a (" + st.nc_unavailable + ")");
    }
    if (have_theory) row("collapse threshold", fmt(c.theory->collapse_threshold(), 6), "(on sqrt(lambda_w lambda_h))");
    human << "  iterations " << t.res.iterations << " (" << mlnc::to_string(t.res.status) << "), " << fmt(seconds, 3)
          << " s; output in " << mlnc::detail::printable(out_dir.string()) << "\n\n";
    for (const auto& note : c.notes) human << "note: " << note << "\n";
    if (!c.within) {
        human << "verdict: OUTSIDE the theorem's assumptions (" << c.outside
              << "): no closed form to compare; structure reported above\n";
    } else if (c.verified) {
        human << "verdict: VERIFIED: trained UFM matches Theorem 1 (gap " << fmt(*c.gap, 2)
              << ((*c.theory)->trivial ? ", both at W = H = 0" : ", structure within " + fmt(c.tol.structure, 1))
              << (t.dtype == "double" ? "" : ", trained in " + t.dtype) << ")\n";
    } else {
        human << "verdict: NOT VERIFIED: ";
        for (std::size_t i = 0; i < c.failures.size(); ++i) human << (i ? "; " : "") << c.failures[i];
        human << "\n";
    }
}

inline nlohmann::json report_json(const training& t, const structure& st, const comparison& c, double seconds,
                                  const std::vector<std::string>& plots) {
    const bool have_theory = c.theory && c.theory->converged();
    const auto null = nlohmann::json(nullptr);
    nlohmann::json j;
    j["verified"] = c.verified;
    j["dtype"] = t.dtype;
    j["within_assumptions"] = c.within;
    j["f_trained"] = t.res.objective;
    j["f_theory"] = have_theory ? nlohmann::json((*c.theory)->f) : null;
    j["rel_gap"] = c.gap ? nlohmann::json(*c.gap) : null;
    j["rho_trained"] = st.rho;
    j["rho_theory"] = have_theory ? nlohmann::json((*c.theory)->rho) : null;
    j["trivial"] = have_theory ? nlohmann::json((*c.theory)->trivial) : null;
    j["collapse_threshold"] = c.theory ? nlohmann::json(c.theory->collapse_threshold()) : null;
    j["suggested_lambda"] = c.suggested_lambda ? nlohmann::json(*c.suggested_lambda) : null;
    j["trained_size"] = st.size;
    j["trained_zero"] = st.zero;
    j["etf_error"] = json_value(st.etf_error);
    j["tagwise_residual"] = st.zero ? null : by_m_json(st.residual);
    j["C_trained"] = st.zero ? null : by_m_json(st.C);
    j["C_theory"] = have_theory ? by_m_json(c.C_theory) : null;
    j["nc1"] = st.nc ? json_value(st.nc->nc1) : null;
    j["nc2_w"] = st.nc ? json_value(st.nc->nc2_w) : null;
    j["nc2_h"] = st.nc ? json_value(st.nc->nc2_h) : null;
    j["nc3"] = st.nc ? json_value(st.nc->nc3) : null;
    j["nc_m"] = st.nc ? by_m_json(st.nc->nc_m) : nlohmann::json::object();
    j["iterations"] = t.res.iterations;
    j["status"] = mlnc::to_string(t.res.status);
    j["seconds"] = seconds;
    j["failures"] = c.failures;
    j["notes"] = c.notes;
    j["plots"] = plots;
    return j;
}

}  // namespace mlnc_cli::verify
