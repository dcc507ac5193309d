#!/usr/bin/env bash
# Sets up a fresh Debian bookworm machine, builds kbus and runs the flagship demo on the embedded
# broker: three EncodeVideo commands become launcher attempts followed by a workflow; one
# encodes at once, one fails twice and then encodes, one always fails and ends in the
# dead-letter topic.
#   scripts/demo.sh              the video-encoding demo
#   scripts/demo.sh quickstart   the smaller one: orders, card charges and an audit group
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh
build=${KBUS_BUILD_DIR:-build}
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
if [[ "${1:-}" == quickstart ]]; then
  cmake --build "$build" -j "$(nproc)" --target quickstart-worker >/dev/null
  exec "$build/examples/quickstart/quickstart-worker" --brokers embedded --demo "${2:-5}"
fi
cmake --build "$build" -j "$(nproc)" --target video-encoding >/dev/null
exec "$build/examples/video-encoding/video-encoding" --brokers embedded --demo
