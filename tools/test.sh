#!/usr/bin/env bash
# Quick start, command 2: builds everything and runs the test suite (unit and integration) under ctest.
# Extra arguments go to ctest, e.g. `bash tools/test.sh -L unit` or `-R registry`.
set -euo pipefail
cd "$(dirname "$0")/.."

cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo > /dev/null
cmake --build build -j"$(nproc)"
ctest --test-dir build --output-on-failure -j"$(nproc)" "$@"
