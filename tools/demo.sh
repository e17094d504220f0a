#!/usr/bin/env bash
# Quick start, command 1: installs the Debian packages, builds, and runs the hub end to end on one machine: a
# local Orthanc as the demo PACS, aihub-adapter and aihubd with their embedded default config, the bundled
# synthetic head CT sent with storescu, and the findings coming back (SR in Orthanc, HL7 at a local RIS peer).
# See tools/demo.py for what it starts and where the logs are (build/demo/).
set -euo pipefail
cd "$(dirname "$0")/.."

bash packaging/install-deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo > /dev/null
cmake --build build -j"$(nproc)" --target aihubd aihub-adapter aihub-phantom reference_plugins
/usr/bin/python3 tools/demo.py build
