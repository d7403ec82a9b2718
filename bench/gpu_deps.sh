#!/usr/bin/env bash
# Copies the Eigen, Catch2 and LBFGSpp headers into .gpu-deps/ (git-ignored, about 10 MB) for
# bench/gpu_check.sh on a machine that has none of them.
set -euo pipefail
cd "$(dirname "$0")/.."
rm -rf .gpu-deps
mkdir -p .gpu-deps
cp -r /usr/include/eigen3 .gpu-deps/eigen3
cp -r /usr/include/catch2 .gpu-deps/catch2
mkdir -p .gpu-deps/lbfgspp
cp -r /usr/include/LBFGS.h /usr/include/LBFGSpp .gpu-deps/lbfgspp/
du -sh .gpu-deps
