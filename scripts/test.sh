#!/usr/bin/env bash
# Sets up a fresh Debian bookworm machine and runs kbus's whole test suite: unit tests, and the
# integration suites on the embedded broker and on real Apache Kafka (fetched from Maven
# Central and started on loopback by the tests themselves).
#   scripts/test.sh              everything
#   scripts/test.sh -L unit      extra arguments go to ctest (here: unit tests only)
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh
scripts/kafka-broker.sh fetch >/dev/null

build=${KBUS_BUILD_DIR:-build}
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DKBUS_WARNINGS_AS_ERRORS=ON >/dev/null
cmake --build "$build" -j "$(nproc)"
# Integration binaries mostly wait on group joins, so they overlap well even on 2 cores.
ctest --test-dir "$build" --output-on-failure --no-label-summary -j 4 --timeout 600 "$@"
