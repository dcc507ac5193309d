#!/usr/bin/env bash
# The Docker backend tests' engine: a ctest fixture around scripts/docker-engine.sh.
#
#   docker_rig.sh setup DIR BINARY   start a private engine in DIR/engine and import the test
#                                    image kbus-test-job:<BINARY's hash>: BINARY (a static
#                                    fake-encoder) as /fake-encoder, with empty /tmp and /work
#   docker_rig.sh cleanup DIR        fail, listing them, if any container labelled kbus.group
#                                    is left (a job the launcher did not remove); remove them;
#                                    stop the engine
#
# setup writes DIR/docker-host (the DOCKER_HOST) and DIR/image (the image's name) for the tests.
# On a machine without dockerd at all it writes DIR/no-dockerd and succeeds: the tests then
# report themselves skipped. Any other failure to start the engine (not root, a daemon that
# dies) fails setup, so the tests do not run and ctest fails.
set -euo pipefail

die() { echo "docker_rig.sh: $*" >&2; exit 1; }

repo=$(cd "$(dirname "$0")/../.." && pwd)
cmd=${1:-}
dir=${2:-}
[[ -n "$cmd" && -n "$dir" ]] || { echo "usage: $0 {setup DIR BINARY|cleanup DIR}" >&2; exit 2; }
if [[ -x /usr/bin/docker ]]; then docker=/usr/bin/docker; else docker=docker; fi

setup() {
  local binary=${1:-}
  [[ -f "$binary" ]] || die "no test binary '$binary'"
  mkdir -p "$dir"
  rm -f "$dir/no-dockerd" "$dir/docker-host" "$dir/image"
  if ! command -v "${KBUS_DOCKERD:-dockerd}" >/dev/null; then
    echo "no dockerd on this machine: the Docker backend tests are skipped" >"$dir/no-dockerd"
    cat "$dir/no-dockerd"
    return 0
  fi
  local host
  host=$("$repo/scripts/docker-engine.sh" start "$dir/engine") || die "the Docker engine did not start"
  export DOCKER_HOST=$host
  # Containers of an earlier run that was killed before its cleanup.
  local stale
  stale=$("$docker" ps -aq --filter label=kbus.group)
  if [[ -n "$stale" ]]; then
    echo "removing containers left by an earlier run: $stale"
    "$docker" rm -f $stale >/dev/null
  fi
  local image
  image=kbus-test-job:$(sha256sum "$binary" | cut -c1-16)
  if ! "$docker" image inspect "$image" >/dev/null 2>&1; then
    local root
    root=$(mktemp -d)
    chmod 0755 "$root"  # the image's /: mktemp makes it 0700, which user 65534 cannot enter
    trap 'rm -rf "$root"' RETURN
    install -m 0755 "$binary" "$root/fake-encoder"
    mkdir -m 1777 "$root/tmp" "$root/work"
    tar -C "$root" --owner=0 --group=0 -c . | "$docker" import - "$image" >/dev/null ||
      die "docker import of $image failed"
  fi
  echo "$host" >"$dir/docker-host"
  echo "$image" >"$dir/image"
  echo "engine $host, image $image"
}

cleanup() {
  if [[ -f "$dir/no-dockerd" ]]; then cat "$dir/no-dockerd"; return 0; fi
  if [[ ! -f "$dir/docker-host" ]]; then
    echo "the engine never started (setup failed): no containers to check"
    "$repo/scripts/docker-engine.sh" stop "$dir/engine"
    return 0
  fi
  local host status=0 left
  host=$("$repo/scripts/docker-engine.sh" host "$dir/engine")
  export DOCKER_HOST=$host
  if "$docker" version >/dev/null 2>&1; then
    left=$("$docker" ps -a --filter label=kbus.group \
      --format '{{.ID}} {{.Names}} group={{.Label "kbus.group"}} job={{.Label "kbus.job_id"}} attempt={{.Label "kbus.attempt"}} {{.Status}}')
    if [[ -n "$left" ]]; then
      echo "containers left behind by the launcher (a job's container must be removed once its exit is reported):" >&2
      echo "$left" >&2
      "$docker" rm -f $("$docker" ps -aq --filter label=kbus.group) >/dev/null || true
      status=1
    else
      echo "no container labelled kbus.group is left"
    fi
  else
    echo "the engine at $host does not answer" >&2
    status=1
  fi
  "$repo/scripts/docker-engine.sh" stop "$dir/engine"
  return $status
}

case "$cmd" in
  setup) setup "${3:-}" ;;
  cleanup) cleanup ;;
  *) echo "usage: $0 {setup DIR BINARY|cleanup DIR}" >&2; exit 2 ;;
esac
