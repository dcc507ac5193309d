#!/usr/bin/env bash
# Run a real single-node Apache Kafka broker (KRaft, combined broker+controller)
# on 127.0.0.1 for kbus integration tests. Uses plain jars from Maven Central
# (see test/support/kafka/pom.xml) and a local JDK (17+); no Docker, no
# ZooKeeper.
#
# Usage:
#   scripts/kafka-broker.sh fetch        download the jars into the cache, build the
#                                        start-up (CDS) archive and a formatted storage
#                                        template; idempotent, ~0 s when done
#   scripts/kafka-broker.sh start DIR    start a broker whose state lives in DIR;
#                                        prints "127.0.0.1:PORT" (also in DIR/bootstrap)
#   scripts/kafka-broker.sh stop DIR     stop it (idempotent)
#   scripts/kafka-broker.sh create-topic DIR TOPIC PARTITIONS
#                                        create a topic (replication factor 1) on
#                                        the running broker of DIR, unless it exists
#
# Environment:
#   KBUS_KAFKA_HOME           jar cache (default ~/.cache/kbus/kafka-<version>)
#   KBUS_KAFKA_START_TIMEOUT  seconds to wait for readiness (default 90)
#   KBUS_KAFKA_HEAP           broker -Xmx (default 512m; at least 64m)
#   KBUS_KAFKA_CDS            1 (default) to use a class-data-sharing archive, 0 not to
#   JAVA / JAVA_HOME          which java to run (default: java on PATH)
#
# Files in DIR: server.properties, log4j.properties, data/, kafka.log,
# format.log, kafka.pid, ports, bootstrap.
#
# `start` on a DIR that was used before keeps its data/ and, if they are
# still free, its previous ports (so clients can reconnect to the same
# address after stop + start). Use a fresh DIR for a fresh, empty cluster.
# `start` on a DIR whose broker is running just prints its bootstrap.

set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$SCRIPT_DIR/.." && pwd)"
POM="$REPO_ROOT/test/support/kafka/pom.xml"

# Single source of truth for the version: the pom.
KAFKA_VERSION="$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$POM" | head -n1)"
[[ -n "$KAFKA_VERSION" ]] || { echo "kafka-broker.sh: cannot read kafka.version from $POM" >&2; exit 1; }

CACHE="${KBUS_KAFKA_HOME:-$HOME/.cache/kbus/kafka-$KAFKA_VERSION}"
STAMP="$CACHE/.fetched"
START_TIMEOUT="${KBUS_KAFKA_START_TIMEOUT:-90}"
HEAP="${KBUS_KAFKA_HEAP:-512m}"
USE_CDS="${KBUS_KAFKA_CDS:-1}"

if [[ -n "${JAVA:-}" ]]; then :
elif [[ -n "${JAVA_HOME:-}" && -x "$JAVA_HOME/bin/java" ]]; then JAVA="$JAVA_HOME/bin/java"
else JAVA=java
fi

# JVM flags, chosen for start-up time on a small CI box. Measured on 2 cores,
# JVM launch to broker ready (noisy): JVM defaults ~2.9-3.3 s, these flags
# ~2.2-2.7 s, these flags + the CDS archive below ~1.2-1.4 s.
# - C1-only JIT (TieredStopAtLevel=1) was the biggest flag win: a test broker
#   never runs long enough to profit from C2, and C2 compiles compete with
#   start-up for the 2 cores.
# - SerialGC: no GC worker threads, plenty for a small heap.
JVM_FLAGS=(
  -Xms64m "-Xmx$HEAP"
  -XX:+UseSerialGC
  -XX:TieredStopAtLevel=1
  -Xshare:auto
  -Djava.awt.headless=true
  -Djava.net.preferIPv4Stack=true
)

# Class-data-sharing archive: the parsed/verified classes of a broker start,
# dumped once by a training run (see ensure_cds) and memory-mapped by every
# later JVM. It halves broker start-up. It is only valid for one JVM build
# and one class path, hence a key derived from the java binary; the cache
# directory (the class path) is recreated whenever the pom changes.
CDS_ARCHIVE=""      # set by cds_init
CDS_DUMP_TO=""      # non-empty only during the training run

LOCKED=0
LAUNCHED_PORT=""

die() { echo "kafka-broker.sh: $*" >&2; exit 1; }
warn() { echo "kafka-broker.sh: $*" >&2; }

# python3 is used for the port picking and the readiness probe (with bash
# fallbacks). The system interpreter is preferred: a pyenv shim costs ~150 ms
# per call, and the readiness probe runs in a loop.
PYTHON=""
for p in /usr/bin/python3 "$(command -v python3 2>/dev/null || true)"; do
  if [[ -n "$p" && -x "$p" ]] && "$p" -c '' >/dev/null 2>&1; then PYTHON="$p"; break; fi
done
have_python() { [[ -n "$PYTHON" ]]; }

# Several `start`s may run concurrently on a cold cache: downloads and the
# CDS training run are serialised with a lock (fd 9) on a file next to the
# cache. Every java we start gets 9>&- so no JVM keeps holding the lock.
lock_cache() {
  (( LOCKED )) && return 0
  mkdir -p "$(dirname "$CACHE")"
  exec 9>"$CACHE.lock"
  flock 9
  LOCKED=1
}
unlock_cache() {
  (( LOCKED )) || return 0
  exec 9>&-
  LOCKED=0
}

# ---------------------------------------------------------------- fetch ----

jars_fetched() {
  [[ -f "$STAMP" && "$(cat "$STAMP")" == "$(sha256sum "$POM" | cut -d' ' -f1)" ]]
}

fetch_jars() {
  # Fast path: the stamp records the pom's hash, so editing the pom (e.g. a
  # version bump with KBUS_KAFKA_HOME set) triggers a re-fetch.
  jars_fetched && return 0
  lock_cache
  jars_fetched && return 0

  command -v mvn >/dev/null 2>&1 || die "mvn not found (needed once to download the Kafka $KAFKA_VERSION jars)"
  warn "fetching Kafka $KAFKA_VERSION jars into $CACHE"
  # Download into a temporary dir and move it into place, so an interrupted
  # fetch never leaves a half-populated cache that looks complete.
  # Maven's output is kept out of the way unless it fails (Debian's mvn 3.8
  # prints stray colour codes even with -q -B).
  local tmp="$CACHE.tmp.$$"
  rm -rf "$tmp" "$tmp.log"
  if ! mvn -B -q -f "$POM" dependency:copy-dependencies \
        -DincludeScope=runtime -DoutputDirectory="$tmp" >"$tmp.log" 2>&1; then
    cat "$tmp.log" >&2
    rm -rf "$tmp" "$tmp.log"
    die "maven failed to fetch the Kafka jars"
  fi
  rm -f "$tmp.log"
  [[ -f "$tmp/kafka_2.13-$KAFKA_VERSION.jar" ]] || { rm -rf "$tmp"; die "kafka_2.13-$KAFKA_VERSION.jar missing after fetch"; }
  sha256sum "$POM" | cut -d' ' -f1 >"$tmp/.fetched"
  rm -rf "$CACHE"
  mv "$tmp" "$CACHE"
}

cds_init() {
  [[ "$USE_CDS" == 1 ]] || return 0
  local jbin key
  jbin="$(readlink -f "$(command -v "$JAVA")")" || return 0
  key="$(printf '%s %s' "$jbin" "$(stat -c '%s %Y' "$jbin")" | sha256sum | cut -c1-12)"
  CDS_ARCHIVE="$CACHE/cds-$key.jsa"
}

# Build the CDS archive with one throw-away broker run, unless it exists or
# an earlier attempt failed (marker file; delete it to try again).
ensure_cds() {
  [[ -n "$CDS_ARCHIVE" ]] || return 0
  [[ -f "$CDS_ARCHIVE" || -f "$CDS_ARCHIVE.failed" ]] && return 0
  lock_cache
  [[ -f "$CDS_ARCHIVE" || -f "$CDS_ARCHIVE.failed" ]] && return 0

  warn "one-off training run to build $CDS_ARCHIVE (faster broker start-up)"
  local tdir="$CACHE/cds-training.$$" tmp="$CDS_ARCHIVE.tmp.$$" rc=0
  rm -rf "$tdir"; mkdir -p "$tdir"
  CDS_DUMP_TO="$tmp"
  launch "$tdir" || rc=$?
  stop_pid "$tdir"           # the JVM writes the archive while exiting
  CDS_DUMP_TO=""
  # A truncated archive crashes the JVM (SIGBUS) instead of being ignored, so
  # check it with a JVM that refuses to start without it before using it.
  if (( rc == 0 )) && [[ -s "$tmp" ]] &&
     "$JAVA" -Xshare:on -XX:SharedArchiveFile="$tmp" -XX:ErrorFile="$tdir/hs_err_%p.log" \
        -cp "$CACHE/*" -version >/dev/null 2>&1 9>&-; then
    mv "$tmp" "$CDS_ARCHIVE"
  else
    warn "could not build the CDS archive; starting without it (see $CDS_ARCHIVE.failed)"
    { echo "training rc=$rc"; tail -n 40 "$tdir/kafka.log" 2>/dev/null; } >"$CDS_ARCHIVE.failed" || true
    rm -f "$tmp"
  fi
  rm -rf "$tdir"
}

# Formatted, empty KRaft storage for node 1, made once by StorageTool and
# copied by `start` (with fresh ids, see init_storage): saves the ~1 s JVM
# run of `StorageTool format` on every start.
TEMPLATE="$CACHE/storage-template"

ensure_template() {
  [[ -f "$TEMPLATE/meta.properties" ]] && return 0
  lock_cache
  [[ -f "$TEMPLATE/meta.properties" ]] && return 0
  local tdir="$CACHE/template-work.$$"
  rm -rf "$tdir"; mkdir -p "$tdir"
  write_configs "$tdir" 1 2    # ports are not stored in the storage
  if format_storage "$tdir" && [[ -f "$tdir/data/meta.properties" ]]; then
    rm -rf "$TEMPLATE"
    mv "$tdir/data" "$TEMPLATE"
  else
    warn "could not prepare a storage template; every start will format its own"
  fi
  rm -rf "$tdir"
}

cmd_fetch() {
  command -v "$JAVA" >/dev/null 2>&1 || die "java not found (set JAVA_HOME or JAVA)"
  fetch_jars
  cds_init
  ensure_cds
  ensure_template
  unlock_cache
}

# ---------------------------------------------------------------- ports ----

# Print two distinct free loopback ports ("BROKER CONTROLLER"). Arguments are
# preferred ports (from a previous run), used if still free.
#
# Candidates are drawn from 20000-32767, i.e. below Linux's default ephemeral
# range (32768-60999), so an unrelated outgoing connection cannot grab the
# port between our check and the broker's bind. Both sockets are held open
# until both are chosen so the two ports differ. SO_REUSEADDR matches what
# the JVM does for server sockets (a port whose old connections sit in
# TIME_WAIT is usable). Two concurrent starts can still race for the same
# port; `launch` retries with new ports if the broker fails to bind.
pick_ports() {
  if have_python; then
    "$PYTHON" - "$@" <<'PY'
import random, socket, sys
held, ports = [], []
candidates = [int(p) for p in sys.argv[1:] if p.isdigit()]
rng = random.SystemRandom()
for _ in range(2):
    while True:
        port = candidates.pop(0) if candidates else rng.randrange(20000, 32768)
        if port in ports:
            continue
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
            s.listen(1)
        except OSError:
            s.close()
            continue
        held.append(s); ports.append(port)
        break
print(*ports)
PY
  else
    # Fallback without python: "nobody accepts a connection" == free enough.
    local ports=() p
    for p in "$@" x x x x x x x x x x x x x x x x x x x x; do
      [[ "$p" =~ ^[0-9]+$ ]] || p=$((20000 + RANDOM % 12768))
      [[ " ${ports[*]-} " == *" $p "* ]] && continue
      if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then ports+=("$p"); fi
      (( ${#ports[@]} == 2 )) && break
    done
    (( ${#ports[@]} == 2 )) || die "could not find free ports"
    echo "${ports[@]}"
  fi
}

# ------------------------------------------------------------ readiness ----

# Succeeds when the broker at 127.0.0.1:$1 answers a Metadata request that
# lists at least one broker. In KRaft a broker is only listed once it is
# registered and unfenced, i.e. it can host partitions (otherwise topic
# creation fails with "only 0 broker(s) are registered"). Kafka 3.9 logs
# "Kafka Server started" only after that point anyway; this protocol-level
# check confirms the PLAINTEXT listener really serves clients.
broker_ready() {
  local port="$1"
  if have_python; then
    "$PYTHON" - "$port" <<'PY'
import socket, struct, sys
port = int(sys.argv[1])
client = b"kbus-ready"
# MetadataRequest v4 (non-flexible): topics=[] (none), allow_auto_topic_creation=false
body = struct.pack(">hhih", 3, 4, 42, len(client)) + client + struct.pack(">i?", 0, False)
try:
    with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
        s.sendall(struct.pack(">i", len(body)) + body)
        buf = b""
        while len(buf) < 16:
            chunk = s.recv(4096)
            if not chunk:
                sys.exit(1)
            buf += chunk
    # size, correlation_id, throttle_time_ms, length of the brokers array
    _, corr, _, nbrokers = struct.unpack(">iiii", buf[:16])
    sys.exit(0 if corr == 42 and nbrokers > 0 else 1)
except OSError:
    sys.exit(1)
PY
  elif command -v kcat >/dev/null 2>&1; then
    kcat -b "127.0.0.1:$port" -L -m 2 2>/dev/null | grep -qE '^ +[1-9][0-9]* brokers:'
  else
    # Best effort: the port accepts connections (the log line was seen already).
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null
  fi
}

# ------------------------------------------------------------ processes ----

# Is $1 the broker of directory $2? The cmdline check guards against a
# recycled pid (e.g. a stale kafka.pid after a reboot).
pid_alive() {
  local pid="$1" dir="$2"
  [[ -n "$pid" && -r "/proc/$pid/cmdline" ]] || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF "kafka.Kafka $dir/server.properties"
}

# Like kill -0, but a dead child that we have not reaped yet (zombie) counts
# as dead. (pid_alive cannot be used right after the fork: until exec, the
# child's cmdline is still this script's.)
proc_running() {
  local state
  kill -0 "$1" 2>/dev/null || return 1
  state="$(sed -n 's/^State:[[:space:]]*\([A-Z]\).*/\1/p' "/proc/$1/status" 2>/dev/null)"
  [[ -n "$state" && "$state" != Z ]]
}

stop_pid() {
  local dir="$1" pid i
  [[ -f "$dir/kafka.pid" ]] || return 0
  pid="$(cat "$dir/kafka.pid")"
  if pid_alive "$pid" "$dir"; then
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 200; i++)); do   # 200 x 0.1 s = 20 s for a clean shutdown
      pid_alive "$pid" "$dir" || break
      sleep 0.1
    done
    if pid_alive "$pid" "$dir"; then
      warn "broker $pid did not stop within 20 s, killing it"
      kill -KILL "$pid" 2>/dev/null || true
      while pid_alive "$pid" "$dir"; do sleep 0.1; done
    fi
  fi
  rm -f "$dir/kafka.pid"
}

# ---------------------------------------------------------------- start ----

write_configs() {
  local dir="$1" port="$2" cport="$3"
  cat >"$dir/server.properties" <<EOF
# Generated by scripts/kafka-broker.sh: single-node KRaft test broker.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$cport
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$cport
advertised.listeners=PLAINTEXT://127.0.0.1:$port
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
controller.listener.names=CONTROLLER
log.dirs=$dir/data

# One replica of everything.
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
default.replication.factor=1
min.insync.replicas=1

# Test friendly behaviour.
auto.create.topics.enable=true
delete.topic.enable=true
num.partitions=4
group.initial.rebalance.delay.ms=0

# Small footprint for a 2-core CI box. The internal topics default to 50
# partitions each, which makes the first consumer group / transaction slow
# to set up; the log cleaner would otherwise take 128 MB of heap.
offsets.topic.num.partitions=4
transaction.state.log.num.partitions=4
num.network.threads=2
num.io.threads=2
num.recovery.threads.per.data.dir=1
background.threads=2
log.cleaner.threads=1
log.cleaner.dedupe.buffer.size=8388608
log.segment.bytes=67108864

# After an unclean exit (kill -9) the restarted node's controller keeps the
# old broker registration alive until its session expires (default 9 s) and
# rejects the new one (DUPLICATE_BROKER_REGISTRATION), so a crash+restart
# test would wait ~10 s. Shorter, but still 4 missed heartbeats.
broker.heartbeat.interval.ms=1000
broker.session.timeout.ms=4000
EOF

  # WARN and above to stdout, i.e. DIR/kafka.log, plus the one INFO line the
  # start-up wait looks for.
  cat >"$dir/log4j.properties" <<'EOF'
log4j.rootLogger=WARN, stdout
log4j.appender.stdout=org.apache.log4j.ConsoleAppender
log4j.appender.stdout.layout=org.apache.log4j.PatternLayout
log4j.appender.stdout.layout.ConversionPattern=[%d] %p %m (%c)%n
log4j.logger.kafka.server.KafkaRaftServer=INFO
EOF
}

# java flags for a run in DIR ($1); $2 is "broker" or "tool".
RUN_FLAGS=()
set_run_flags() {
  local dir="$1" what="$2"
  RUN_FLAGS=("${JVM_FLAGS[@]}"
             "-XX:ErrorFile=$dir/hs_err_%p.log"   # not into the caller's cwd
             "-Dlog4j.configuration=file:$dir/log4j.properties")
  if [[ -n "$CDS_DUMP_TO" ]]; then
    [[ "$what" == broker ]] && RUN_FLAGS+=("-XX:ArchiveClassesAtExit=$CDS_DUMP_TO")
  elif [[ -n "$CDS_ARCHIVE" && -f "$CDS_ARCHIVE" ]]; then
    RUN_FLAGS+=("-XX:SharedArchiveFile=$CDS_ARCHIVE")
  fi
}

# A random Kafka Uuid: 16 random bytes in unpadded base64url (what
# `StorageTool random-uuid` prints, without a JVM start). Like Kafka's own
# Uuid.randomUuid(), avoid a leading '-' (command lines would take it for an
# option).
new_uuid() {
  local id
  while :; do
    id="$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n')"
    [[ "$id" != -* ]] && { echo "$id"; return; }
  done
}

format_storage() {
  local dir="$1"
  set_run_flags "$dir" tool
  "$JAVA" "${RUN_FLAGS[@]}" -cp "$CACHE/*" kafka.tools.StorageTool format \
      --cluster-id "$(new_uuid)" --config "$dir/server.properties" >"$dir/format.log" 2>&1 9>&-
}

# Create DIR/data as `StorageTool format` would. Fast path: copy the template
# and give it its own cluster.id and directory.id (meta.properties holds
# nothing else specific; bootstrap.checkpoint only holds the metadata.version
# of this Kafka release).
init_storage() {
  local dir="$1"
  rm -rf "$dir/data"    # no meta.properties: nothing Kafka would use
  if [[ -f "$TEMPLATE/meta.properties" ]]; then
    cp -R "$TEMPLATE" "$dir/data"
    sed -i -e "s/^cluster\.id=.*/cluster.id=$(new_uuid)/" \
           -e "s/^directory\.id=.*/directory.id=$(new_uuid)/" "$dir/data/meta.properties"
    echo "copied formatted storage from $TEMPLATE" >"$dir/format.log"
    return 0
  fi

  format_storage "$dir" && return 0
  warn "formatting $dir/data failed:"; cat "$dir/format.log" >&2
  return 1
}

# Start one broker attempt in DIR on the given ports. Returns 0 when ready,
# 2 when the broker died because a port was taken (the caller retries with
# other ports), 1 otherwise.
start_once() {
  local dir="$1" port="$2" cport="$3"
  local log="$dir/kafka.log"
  write_configs "$dir" "$port" "$cport"

  if [[ ! -f "$dir/data/meta.properties" ]]; then
    init_storage "$dir" || return 1
  fi

  : >"$log"
  set_run_flags "$dir" broker
  # setsid + nohup: the broker must outlive this script and not get the
  # caller's SIGINT/SIGHUP. All fds are redirected so that a caller capturing
  # our stdout with $(...) is not kept waiting until the broker exits.
  setsid nohup "$JAVA" "${RUN_FLAGS[@]}" -cp "$CACHE/*" \
      kafka.Kafka "$dir/server.properties" </dev/null >>"$log" 2>&1 9>&- &
  local pid=$!
  echo "$pid" >"$dir/kafka.pid"

  local deadline=$((SECONDS + START_TIMEOUT)) started=0
  while (( SECONDS < deadline )); do
    if ! proc_running "$pid"; then
      wait "$pid" 2>/dev/null || true
      rm -f "$dir/kafka.pid"
      grep -q 'Address already in use' "$log" && return 2
      return 1
    fi
    if (( ! started )) && grep -q 'Kafka Server started' "$log"; then started=1; fi
    if (( started )) && broker_ready "$port"; then
      return 0
    fi
    sleep 0.1
  done
  warn "broker not ready after ${START_TIMEOUT} s"
  stop_pid "$dir"
  return 1
}

# Start a broker in DIR (absolute), retrying on port clashes. Sets
# LAUNCHED_PORT to the broker port on success.
launch() {
  local dir="$1" prev=() attempt rc=1 port cport
  # Prefer the ports of a previous run in this DIR (stable address across
  # restarts), falling back to fresh ones.
  [[ -f "$dir/ports" ]] && read -r -a prev <"$dir/ports"
  for attempt in 1 2 3; do
    read -r port cport < <(pick_ports "${prev[@]+"${prev[@]}"}") || true
    [[ -n "${port:-}" && -n "${cport:-}" ]] || { warn "could not pick free ports"; return 1; }
    rm -f "$dir"/hs_err_*.log
    rc=0; start_once "$dir" "$port" "$cport" || rc=$?
    if (( rc == 1 )) && [[ -z "$CDS_DUMP_TO" && -n "$CDS_ARCHIVE" && -f "$CDS_ARCHIVE" ]] &&
       compgen -G "$dir/hs_err_*.log" >/dev/null; then
      # The JVM crashed (e.g. SIGBUS on a damaged CDS archive). Do not let
      # the archive break the tests: set it aside and try again without it.
      warn "JVM crashed with $CDS_ARCHIVE; setting it aside and retrying without it"
      mv -f "$CDS_ARCHIVE" "$CDS_ARCHIVE.failed" || true
      CDS_ARCHIVE=""
      continue
    fi
    (( rc == 2 )) || break
    warn "port clash (attempt $attempt), retrying with other ports"
    prev=()
  done
  (( rc == 0 )) || return 1
  echo "$port $cport" >"$dir/ports"
  LAUNCHED_PORT="$port"
}

cmd_start() {
  local dir="${1:-}"
  [[ -n "$dir" ]] || die "usage: $0 start DIR"
  mkdir -p "$dir"
  dir="$(cd "$dir" && pwd -P)"

  if [[ -f "$dir/kafka.pid" && -f "$dir/bootstrap" ]] && pid_alive "$(cat "$dir/kafka.pid")" "$dir"; then
    cat "$dir/bootstrap"
    return 0
  fi

  cmd_fetch

  if ! launch "$dir"; then
    if [[ -s "$dir/kafka.log" ]]; then
      warn "Kafka failed to start; last lines of $dir/kafka.log:"
      tail -n 40 "$dir/kafka.log" >&2
    fi
    die "start failed"
  fi
  echo "127.0.0.1:$LAUNCHED_PORT" >"$dir/bootstrap"
  echo "127.0.0.1:$LAUNCHED_PORT"
}

# ----------------------------------------------------------------- stop ----

cmd_stop() {
  local dir="${1:-}"
  [[ -n "$dir" ]] || die "usage: $0 stop DIR"
  [[ -d "$dir" ]] || return 0
  dir="$(cd "$dir" && pwd -P)"
  stop_pid "$dir"
}

# --------------------------------------------------------- create-topic ----

# Kafka's own admin tool (what kafka-topics.sh runs in 3.9; the old
# kafka.admin.TopicCommand is gone). ~0.6-1 s with the CDS archive.
cmd_create_topic() {
  local dir="${1:-}" topic="${2:-}" partitions="${3:-}"
  [[ -n "$dir" && -n "$topic" && "$partitions" =~ ^[1-9][0-9]*$ ]] ||
    die "usage: $0 create-topic DIR TOPIC PARTITIONS"
  [[ -f "$dir/bootstrap" && -f "$dir/log4j.properties" ]] || die "no broker was started in $dir"
  dir="$(cd "$dir" && pwd -P)"
  jars_fetched || die "Kafka jars not fetched (run: $0 fetch)"
  cds_init
  set_run_flags "$dir" tool
  "$JAVA" "${RUN_FLAGS[@]}" -cp "$CACHE/*" org.apache.kafka.tools.TopicCommand \
      --bootstrap-server "$(cat "$dir/bootstrap")" --create --if-not-exists \
      --topic "$topic" --partitions "$partitions" --replication-factor 1
}

# ----------------------------------------------------------------- main ----

case "${1:-}" in
  fetch) cmd_fetch ;;
  start) shift; cmd_start "$@" ;;
  stop)  shift; cmd_stop "$@" ;;
  create-topic) shift; cmd_create_topic "$@" ;;
  *) echo "usage: $0 {fetch|start DIR|stop DIR|create-topic DIR TOPIC PARTITIONS}" >&2; exit 2 ;;
esac
