#!/usr/bin/env bash
# Quick start, command 1: installs the Debian packages, builds, generates the bundled synthetic study (a head
# CT with a left intraparenchymal hemorrhage, deterministic from its seed) and runs the hub on it with its
# embedded default config. Results land in build/demo/output/<StudyInstanceUID>/.
set -euo pipefail
cd "$(dirname "$0")/.."

bash packaging/install-deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo > /dev/null
cmake --build build -j"$(nproc)" --target aihubd aihub-phantom reference_plugins

rm -rf build/demo
build/bin/aihub-phantom head-ct --out build/demo/input --seed 7 --hemorrhage intraparenchymal --side left
# The ground truth stays beside the study, not in the hub's input.
mv build/demo/input/*/truth.json build/demo/truth.json
echo "== aihubd analyze (embedded default config: state in build/var, plugins from build/plugins)"
build/bin/aihubd analyze --input build/demo/input --output build/demo/output
echo "== results"
find build/demo/output -type f | sort
echo "== audit log"
build/bin/aihubd verify-audit
