#!/usr/bin/env bash
# Host-core benchmarks: decode throughput against DCMTK, host overhead against the plugin's own execute time,
# hot-reload swap latency and jobs lost, and per reference plugin its inference latency (CPU, and GPU where CUDA is
# present) and host overhead ratio on phantom studies. Each prints ratios against a baseline run in the same
# process; figures are medians. Takes a few minutes on 2 cores (most of it making the CT angiography phantoms).
set -euo pipefail
cd "$(dirname "$0")/.."
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo > /dev/null
cmake --build build -j"$(nproc)" --target aihub-bench-host test_plugins reference_plugins > /dev/null
build/bin/aihub-bench-host decode --slices 300 --size 512 --reps 5
build/bin/aihub-bench-host overhead --plugins build/test-plugins --slices 300 --size 512 --work-ms 2000 --reps 5
build/bin/aihub-bench-host reload --plugins build/test-plugins --swaps 20 --work-ms 5
build/bin/aihub-bench-host latency --plugins build/plugins --studies 10 --devices cpu,cuda
