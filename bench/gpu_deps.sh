#!/usr/bin/env bash
# Copies the Eigen and Catch2 headers into .gpu-deps/ (git-ignored, about 10 MB) for
# bench/gpu_check.sh on a machine that has neither.
set -euo pipefail
cd "$(dirname "$0")/.."
rm -rf .gpu-deps
mkdir -p .gpu-deps
cp -r /usr/include/eigen3 .gpu-deps/eigen3
cp -r /usr/include/catch2 .gpu-deps/catch2
du -sh .gpu-deps
