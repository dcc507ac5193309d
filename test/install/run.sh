#!/usr/bin/env bash
# Installs the build into a scratch prefix, then configures, builds and runs an outside project
# against it with find_package(kbus).
set -euo pipefail
build_dir=$1
source_dir=$2
work=$build_dir/install-test
rm -rf "$work"
cmake --install "$build_dir" --prefix "$work/prefix" >/dev/null
cmake -S "$source_dir/consumer" -B "$work/consumer" -G Ninja -DCMAKE_PREFIX_PATH="$work/prefix" >/dev/null
cmake --build "$work/consumer" >/dev/null
"$work/consumer/consumer"
