#pragma once
// mlnc verify, part 3: the files of the run folder. history.csv (from training), the trained
// features on their top two singular directions with the label-set means (features_2d.csv,
// means_2d.csv: the paper's Figure 1, bottom row), and, where gnuplot runs, nc_metrics.svg and
// features_2d.svg drawn from them (plot.hpp: no shell, no user text in a script).

#include "plot.hpp"
#include "verify_train.hpp"

#include <mlnc/io/atomic_write.hpp>
#include <mlnc/labels.hpp>
#include <mlnc/metrics.hpp>

#include <Eigen/Core>
#include <Eigen/SVD>

#include <algorithm>
#include <filesystem>
#include <iomanip>
#include <ostream>
#include <sstream>
#include <string>
#include <vector>

namespace mlnc_cli::verify {

namespace fs = std::filesystem;

// Writes the CSV files into out_dir and draws the plots. Returns the plots written.
inline std::vector<std::string> write_outputs(const fs::path& out_dir, const training& t, const mlnc::label_sets& S,
                                              index_t K, index_t d, std::ostream& human) {
    const auto write = [&](const fs::path& path, const std::string& content) {
        mlnc::io::atomic_write(path, [&](std::ostream& o) {
            o.write(content.data(), static_cast<std::streamsize>(content.size()));
        });
    };
    write(out_dir / "history.csv", t.history_csv);

    // Features on their top two right singular vectors (of the N x d feature matrix), and the
    // label-set means.
    const Eigen::MatrixXd& H = t.res.H;
    Eigen::JacobiSVD<Eigen::MatrixXd> svd(H.transpose(), Eigen::ComputeThinV);
    const Eigen::MatrixXd V2 = svd.matrixV().leftCols(std::min<index_t>(2, svd.matrixV().cols()));
    Eigen::MatrixXd P = H.transpose() * V2;
    if (P.cols() < 2) P.conservativeResize(Eigen::NoChange, 2), P.col(1).setZero();
    std::ostringstream pts, means;
    pts << std::setprecision(9) << "x,y,multiplicity\n";
    means << std::setprecision(9) << "x,y,multiplicity,label_set\n";
    for (index_t i = 0; i < S.size(); ++i) pts << P(i, 0) << "," << P(i, 1) << "," << S.multiplicity(i) << "\n";
    const mlnc::class_means cm = mlnc::compute_class_means(P.transpose(), S);  // 2 x G
    for (index_t g = 0; g < cm.num_groups(); ++g) {
        std::string name = "{";
        for (auto k : cm.sets[g]) {
            if (name.size() > 1) name += ',';
            name += std::to_string(k);
        }
        means << cm.means(0, g) << "," << cm.means(1, g) << "," << cm.sets.multiplicity(g) << ",\"" << name << "}\"\n";
    }
    write(out_dir / "features_2d.csv", pts.str());
    write(out_dir / "means_2d.csv", means.str());

    std::vector<std::string> plots;
    if (!have_gnuplot()) {
        human << "note: gnuplot not found (apt-get install gnuplot-nox): no plots, history.csv is written\n";
        return plots;
    }
    // The scripts hold fixed text and numbers only, and name only the files of plot_svg's folder.
    const index_t M = S.max_multiplicity();
    std::ostringstream s1;
    s1 << "set terminal svg size 900,600 dynamic enhanced font 'sans,12'\n"
       << "set output 'plot.svg'\nset datafile separator ','\nset datafile missing 'nan'\n"
       << "set logscale y\nset format y '10^{%L}'\nset xlabel 'iteration'\nset ylabel 'metric'\n"
       << "set title 'Neural-collapse metrics during training (K = " << K << ", d = " << d << ")'\n"
       << "set key outside right\nset grid\n"
       << "f(x) = (x > 1e-300 ? x : 1e-300)\n"
       << "plot 'history.csv' using 1:(f($5)) with lines lw 2 title 'NC1', "
       << "'' using 1:(f($6)) with lines lw 2 title 'NC2 (W)', '' using 1:(f($7)) with lines lw 2 title 'NC2 (H)', "
       << "'' using 1:(f($8)) with lines lw 2 title 'NC3'";
    for (index_t m = 2; m <= M; ++m) s1 << ", '' using 1:(f($" << 7 + m << ")) with lines lw 2 title 'NC_m, m = " << m << "'";
    s1 << ", '' using 1:(f($3)) with lines dt 2 lc rgb 'gray40' title '|grad f|'\n";
    if (plot_svg({{"history.csv", t.history_csv}}, s1.str(), out_dir / "nc_metrics.svg"))
        plots.push_back((out_dir / "nc_metrics.svg").string());
    std::ostringstream s2;
    s2 << "set terminal svg size 800,800 dynamic enhanced font 'sans,11'\n"
       << "set output 'plot.svg'\nset datafile separator ','\n"
       << "set title 'Trained features on their top two singular directions; label-set means marked'\n"
       << "set size ratio -1\nset key outside bottom center horizontal\nset grid\n"
       << "plot ";
    for (index_t m = 1; m <= M; ++m)
        s2 << "'features_2d.csv' every ::1 using 1:($3 == " << m << " ? $2 : NaN) with points pt 7 ps 0.6 title 'samples, m = "
           << m << "', ";
    s2 << "'means_2d.csv' every ::1 using 1:2 with points pt 6 ps 2.5 lw 2 lc rgb 'black' title 'label-set mean', "
       << "'means_2d.csv' every ::1 using 1:2:4 with labels noenhanced offset 0,1.3 font 'sans,8' notitle\n";
    if (plot_svg({{"features_2d.csv", pts.str()}, {"means_2d.csv", means.str()}}, s2.str(), out_dir / "features_2d.svg"))
        plots.push_back((out_dir / "features_2d.svg").string());
    if (plots.size() < 2) human << "note: gnuplot failed on some plots; the CSV files are written\n";
    return plots;
}

}  // namespace mlnc_cli::verify
