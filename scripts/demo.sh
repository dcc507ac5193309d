#!/usr/bin/env bash
# Sets up a fresh Debian bookworm machine, builds kbus and runs the quickstart demo on the
# embedded broker: orders go in as commands, handlers chain them, and an audit service in a
# second consumer group prints the events that come out.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh
build=${KBUS_BUILD_DIR:-build}
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$build" -j "$(nproc)" --target quickstart-worker >/dev/null
exec "$build/examples/quickstart/quickstart-worker" --brokers embedded --demo "${1:-5}"
