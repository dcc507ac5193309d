#!/usr/bin/env bash
# A private Docker engine for the compose test: Debian's dockerd with all of its state under one
# folder and its own socket, so that it never touches (or needs) a system daemon.
#
#   scripts/docker-engine.sh start DIR   start it (or reuse the one already running in DIR);
#                                        prints its DOCKER_HOST (unix://DIR/docker.sock)
#   scripts/docker-engine.sh stop DIR    stop it: SIGTERM, then SIGKILL after 30 s (idempotent)
#   scripts/docker-engine.sh host DIR    print its DOCKER_HOST without starting anything
#
# Files in DIR: data/ (images, containers, volumes), exec/ (runtime state), docker.sock,
# docker.pid, dockerd.log (exec/ and docker.sock in /tmp/kbus-engine-HASH when DIR is long). Put DIR on a big disk: the vfs storage driver, the one that works on
# every kernel and file system we met, copies each image layer in full. Runs as root.
# Environment: KBUS_DOCKERD (default dockerd), KBUS_DOCKER (the client used to probe the daemon:
# /usr/bin/docker, Debian's, when it exists, since a newer client may expect a newer API).
set -euo pipefail

die() { echo "docker-engine.sh: $*" >&2; exit 1; }

DOCKERD=${KBUS_DOCKERD:-dockerd}
if [[ -n "${KBUS_DOCKER:-}" ]]; then DOCKER=$KBUS_DOCKER
elif [[ -x /usr/bin/docker ]]; then DOCKER=/usr/bin/docker
else DOCKER=docker
fi

cmd=${1:-}
dir=${2:-}
[[ -n "$cmd" && -n "$dir" ]] || { echo "usage: $0 {start|stop|host} DIR" >&2; exit 2; }
dir=$(realpath -m "$dir")
pidfile="$dir/docker.pid"
# The sockets (docker.sock, and containerd's under exec/) need a short path: a unix socket path
# has at most 107 bytes. Past 60 characters they move to a folder named after DIR in /tmp.
run=$dir
if (( ${#dir} > 60 )); then run=/tmp/kbus-engine-$(printf '%s' "$dir" | sha256sum | cut -c1-12); fi
sock="$run/docker.sock"

alive() {
  local pid
  [[ -f "$pidfile" ]] && pid=$(cat "$pidfile") && [[ -n "$pid" && -r "/proc/$pid/cmdline" ]] &&
    tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF -- "--pidfile $pidfile"
}

answers() { DOCKER_HOST="unix://$sock" "$DOCKER" version >/dev/null 2>&1; }

start() {
  [[ $(id -u) -eq 0 ]] || die "dockerd needs root"
  command -v "$DOCKERD" >/dev/null || die "$DOCKERD not found (scripts/install-deps.sh installs docker.io)"
  if alive && answers; then echo "unix://$sock"; return 0; fi
  if alive; then die "a daemon runs in $dir (pid $(cat "$pidfile")) but does not answer; stop it first"; fi
  rm -f "$pidfile" "$sock"
  mkdir -p "$dir/data" "$run/exec"
  # --bridge none: no default docker0 bridge (compose makes its own networks, and image builds
  # use the host's network), so two engines on one machine never fight over docker0.
  # setsid: the daemon outlives this script and does not get the caller's Ctrl-C; the caller
  # stops it with `stop`.
  setsid "$DOCKERD" --data-root "$dir/data" --exec-root "$run/exec" -H "unix://$sock" \
    --pidfile "$pidfile" --storage-driver vfs --bridge none --log-level warn \
    </dev/null >>"$dir/dockerd.log" 2>&1 &
  local i
  for ((i = 0; i < 600; i++)); do
    if answers; then echo "unix://$sock"; return 0; fi
    kill -0 $! 2>/dev/null || { tail -n 30 "$dir/dockerd.log" >&2; die "dockerd exited (log: $dir/dockerd.log)"; }
    sleep 0.1
  done
  tail -n 30 "$dir/dockerd.log" >&2
  die "dockerd did not answer within 60 s (log: $dir/dockerd.log)"
}

stop() {
  alive || { rm -f "$pidfile"; return 0; }
  local pid i
  pid=$(cat "$pidfile")
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < 300; i++)); do
    [[ -d "/proc/$pid" ]] || break
    sleep 0.1
  done
  if [[ -d "/proc/$pid" ]]; then
    echo "docker-engine.sh: dockerd $pid did not stop within 30 s, killing it" >&2
    kill -KILL "$pid" 2>/dev/null || true
    while [[ -d "/proc/$pid" ]]; do sleep 0.1; done
  fi
  rm -f "$pidfile"
  # A daemon that did not finish its own clean-up leaves mounts (network namespaces) behind,
  # which keep DIR from being deleted.
  local m
  # (grep finding none is the usual case, not a failure of stop)
  findmnt -rn -o TARGET | { grep -E "^($run/exec|$dir/data)/" || true; } | sort -r | while read -r m; do
    umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true
  done
}

case "$cmd" in
  start) start ;;
  stop) stop ;;
  host) echo "unix://$sock" ;;
  *) echo "usage: $0 {start|stop|host} DIR" >&2; exit 2 ;;
esac
