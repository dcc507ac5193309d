#!/usr/bin/env bash
# The compose test: runs the real compose.yaml on a Docker engine of its own and checks what
# docs/operations.md ("Running with `docker compose`") promises of `docker compose up`. On a
# clean Debian bookworm machine, as root:
#
#   scripts/compose-test.sh [DIR]
#
# DIR (default build/compose-test; on a big disk: the engine's vfs driver copies every image
# layer in full, about 6 GB here) holds the engine's state, the logs (DIR/logs), this script's
# output (DIR/output.txt) and the base image's work. Steps, each timed:
#   install-deps, the engine (scripts/docker-engine.sh: private socket, vfs), the Debian base
#   images (debootstrap), the kbus images (one build for both targets) and the Kafka stand-in
#   (docker/kafka-standin: apache/kafka cannot be pulled here), then with docker-compose 1.29:
#   1. up with 3 launchers and 2 workflow hosts; every service healthy
#   2. three EncodeVideo sent with `docker-compose run --rm cli send`: a good video encodes
#      (ffprobe: the height asked), a flaky one (its upload is not there yet) succeeds after
#      retries, a corrupt one ends in the dead-letter topic with ffmpeg's error; kbus watch
#      shows progress
#   3. SIGKILL of the launcher running an encode: the attempt is lost after the heartbeat
#      silence and retried on another launcher; the video ends encoded
#   4. `docker-compose restart video-encoding` mid-run: every workflow ends exactly once
#   5. the launchers shared the work; the quickstart worker works, a delayed order arrives at
#      its time through the scheduler, and its nightly schedule is there; /metrics of every
#      service answers
#   6. `docker-compose stop` mid-encode is graceful (every kbus container exits 0) and, after
#      `start`, nothing was lost
#   7. the Docker-backend opt-in (compose.docker-launcher.yaml), a project of its own once the
#      first is down, with 2 launchers: an encode runs in a container of its own on the same
#      engine; SIGKILL of its launcher mid-encode costs no retry: the other launcher adopts the
#      container ("job adopted"), the video ends encoded by attempt 1, and no job container is
#      left
# The project up is always taken down (down -v) and the engine stopped, even on failure.
# Environment:
#   KBUS_COMPOSE_KEEP=1   leave the engine running with its images, so the next run rebuilds only
#                         what changed (stop it with scripts/docker-engine.sh stop DIR/engine)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

t_start=$(date +%s)
work=${1:-$root/build/compose-test}
mkdir -p "$work"
work=$(cd "$work" && pwd -P)
engine=$work/engine
logs=$work/logs
rm -rf "$logs"
mkdir -p "$logs"
keep=${KBUS_COMPOSE_KEEP:-0}
# What it prints stays in DIR/output.txt too: ctest shows a passing test's output only with -V.
exec > >(tee "$work/output.txt") 2>&1

say() { printf 'compose-test: %s\n' "$*"; }
fail() { say "FAILED: $*"; exit 1; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }
step_t=0
step() { step_t=$(now); say "== $*"; }
done_step() { say "   done in $(since "$step_t") s"; }

# ------------------------------------------------------------------------- machine ----------
step "install-deps"
scripts/install-deps.sh
done_step

# Debian's client, the same release as its daemon (a newer client may ask for a newer API).
if [[ -x /usr/bin/docker ]]; then DOCKER=/usr/bin/docker; else DOCKER=$(command -v docker); fi
export KBUS_DOCKER=$DOCKER
docker() { "$DOCKER" "$@"; }
command -v docker-compose >/dev/null || fail "docker-compose not found"

project=kbusct$$
export COMPOSE_PROJECT_NAME=$project
# The compose files of the project up: compose.yaml, and from step 7 compose.docker-launcher.yaml
compose_files=(compose.yaml)
dc() {
  local f args=()
  for f in "${compose_files[@]}"; do args+=(-f "$root/$f"); done
  docker-compose "${args[@]}" --project-directory "$root" "$@"
}
# kbus's CLI in a one-off container of the compose file's cli service
cli() { dc run --rm -T --no-deps cli "$@" 2>>"$logs/cli.stderr"; }

followers=()
cleanup() {
  local rc=$?
  set +e
  trap - EXIT INT TERM
  if [[ -n "${DOCKER_HOST:-}" ]] && "$DOCKER" info >/dev/null 2>&1; then
    for f in "${followers[@]}"; do docker rm -f "$f" >/dev/null 2>&1; done
    # The Docker-backend launchers' job containers (step 7) are the engine's, not compose's:
    # down would leave them, running, with the media volume.
    local jobs; jobs=$(docker ps -aq --filter label=kbus.group)
    [[ -z $jobs ]] || docker rm -f $jobs >/dev/null 2>&1
    if (( rc != 0 )); then
      dc ps >"$logs/ps.txt" 2>&1
      dc logs --no-color --timestamps >"$logs/compose.log" 2>&1
      say "last lines of the services' logs (all in $logs/compose.log):"
      tail -n 40 "$logs/compose.log" | sed 's/^/    /'
    fi
    local t; t=$(now)
    dc down -v --remove-orphans >"$logs/down.log" 2>&1
    say "down -v in $(since "$t") s"
  fi
  if [[ "$keep" == 1 ]]; then
    say "the engine keeps running (KBUS_COMPOSE_KEEP=1): scripts/docker-engine.sh stop $engine"
  else
    scripts/docker-engine.sh stop "$engine"
  fi
  say "total $(( $(date +%s) - t_start )) s: $([[ $rc == 0 ]] && echo passed || echo "FAILED (exit $rc)")"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
trap 'say "FAILED: line $LINENO: $BASH_COMMAND"' ERR

step "the Docker engine (state in $engine)"
DOCKER_HOST=$(scripts/docker-engine.sh start "$engine")
export DOCKER_HOST
docker version --format '   engine {{.Server.Version}}, client {{.Client.Version}}'
# For compose.docker-launcher.yaml (step 7): the launchers get this engine's socket, and its group.
export KBUS_HOST_DOCKER_SOCKET=${DOCKER_HOST#unix://}
KBUS_DOCKER_GID=$(stat -c %g "$KBUS_HOST_DOCKER_SOCKET")
export KBUS_DOCKER_GID
# What an interrupted run left in a kept engine (the engine is the test's own: all of it goes).
leftover=$(docker ps -aq)
[[ -z $leftover ]] || { say "   removing $(wc -w <<<"$leftover") containers a previous run left"; docker rm -f $leftover >/dev/null; }
docker volume prune -f >/dev/null
docker network prune -f >/dev/null
done_step

step "compose.yaml is valid for docker-compose $(docker-compose version --short), every profile included, and with compose.docker-launcher.yaml"
KBUS_KAFKA_PORT=9092 dc --profile tools --profile ui --profile metrics config -q || fail "docker-compose config"
# The Docker-launcher opt-in is read too (the compose_config test checks its names in detail);
# steps 1 to 6 run compose.yaml alone, step 7 both.
dc -f "$root/compose.docker-launcher.yaml" config -q || fail "docker-compose config with compose.docker-launcher.yaml"
done_step

step "the Debian base images (debootstrap, unless the engine has them)"
scripts/debian-base-image.sh "$work/base"
done_step

# ------------------------------------------------------------------------- images -----------
kafka_image=kbus/kafka-standin:test
export KBUS_IMAGE=kbus:test KBUS_LAUNCHER_IMAGE=kbus-launcher:test KBUS_KAFKA_IMAGE=$kafka_image

step "the images: kbus, kbus-launcher (one build stage) and kbus-encoder, and the Kafka stand-in meanwhile"
# BuildKit: the runtime stages install their packages while the build stage compiles, and
# instructions that change no file cost no layer copy on vfs.
export DOCKER_BUILDKIT=1
standin_t=$(now)
( scripts/kafka-standin-image.sh "$kafka_image" >"$logs/standin-build.log" 2>&1
  echo "$(since "$standin_t")" >"$logs/standin-build.time" ) &
standin_pid=$!
build_t=$(now)
docker build --network host --progress plain --target launcher -t "$KBUS_LAUNCHER_IMAGE" . \
  >"$logs/launcher-build.log" 2>&1 || { tail -n 40 "$logs/launcher-build.log"; fail "building the launcher image"; }
docker build --network host --progress plain --target kbus -t "$KBUS_IMAGE" . \
  >"$logs/kbus-build.log" 2>&1 || { tail -n 40 "$logs/kbus-build.log"; fail "building the kbus image"; }
# BuildKit sends the context once, then only what changed.
context=$(sed -n '/load build context/,/DONE/p' "$logs/launcher-build.log" | grep -o 'transferring context: [0-9.]* *[kMG]*B' | tail -n1)
say "   kbus images built in $(since "$build_t") s (${context:-context unknown})"
# The encoder image of compose.docker-launcher.yaml (step 7), by the name its allow-list gives:
# the launcher image's ffmpeg layer without kbus's binaries, so it adds no layer.
t=$(now)
docker build --network host --progress plain --target encoder -t kbus-encoder:dev . \
  >"$logs/encoder-build.log" 2>&1 || { tail -n 40 "$logs/encoder-build.log"; fail "building the encoder image"; }
say "   kbus-encoder built in $(since "$t") s"
wait "$standin_pid" || { cat "$logs/standin-build.log"; fail "building the Kafka stand-in"; }
say "   Kafka stand-in built in $(cat "$logs/standin-build.time") s"
docker images --format '   {{.Repository}}:{{.Tag}} {{.Size}}' | grep -E 'kbus|debian' || true
done_step

# ------------------------------------------------------------------------- helpers ----------
wait_for() {  # wait_for SECONDS WHAT COMMAND...: runs COMMAND every second until it succeeds
  local limit=$1 what=$2 t deadline
  shift 2
  t=$(now)
  deadline=$((SECONDS + limit))
  until "$@"; do
    (( SECONDS < deadline )) || fail "$what: not within $limit s"
    sleep 1
  done
  say "   $what ($(since "$t") s)"
}

# q FILE count|get FIELD|ids COND...: queries the records `kbus tail` printed in FILE. A COND is
# type=T (the envelope's type), FIELD=VALUE or FIELD^=PREFIX on the payload's fields.
q() {
  python3 - "$@" <<'PY'
import json, sys
path, cmd, *args = sys.argv[1:]
field = args.pop(0) if cmd == "get" else None
records = []
for line in open(path, errors="replace"):
    try:
        r = json.loads(line)
    except ValueError:
        continue
    if isinstance(r, dict):
        records.append(r)
def value(r, key):
    if key == "type":
        return (r.get("envelope") or {}).get("type")
    payload = r.get("payload")
    return payload.get(key) if isinstance(payload, dict) else None
def matches(r):
    for cond in args:
        if "^=" in cond:
            key, prefix = cond.split("^=", 1)
            if not str(value(r, key)).startswith(prefix):
                return False
        else:
            key, want = cond.split("=", 1)
            if str(value(r, key)) != want:
                return False
    return True
hits = [r for r in records if matches(r)]
if cmd == "count":
    print(len(hits))
elif cmd == "get":
    print(value(hits[-1], field) if hits else "")
elif cmd == "ids":  # each video_id with how many records name it
    counts = {}
    for r in hits:
        counts[value(r, "video_id")] = counts.get(value(r, "video_id"), 0) + 1
    for k in sorted(counts):
        print(k, counts[k])
PY
}

# The records of a topic: followed from the start by a container of the cli service (busy
# topics, with heartbeats, never fall silent), or read once up to two seconds of silence.
follow() {  # follow NAME TOPIC
  local c=${project}_follow_$1
  dc run -d --no-deps --name "$c" cli tail --topic "$2" >/dev/null 2>>"$logs/cli.stderr"
  followers+=("$c")
}
followed() {  # followed NAME: path of a file with what NAME's follower printed so far
  docker logs "${project}_follow_$1" >"$logs/$1.jsonl" 2>/dev/null || true
  echo "$logs/$1.jsonl"
}
read_topic() {  # read_topic TOPIC: path of a file with the topic's records
  cli tail --topic "$1" --timeout-ms 2000 >"$logs/$1.jsonl" || true
  echo "$logs/$1.jsonl"
}
has() {  # has N FILE-COMMAND COND...: at least N records match
  local n=$1 file
  file=$($2)
  shift 2
  (( $(q "$file" count "$@") >= n ))
}
in_events() { followed encode-in; }       # video.encode.in: launcher events, timeouts
in_control() { followed control; }        # kbus.launcher.control: cancels
in_results() { read_topic video.events; } # VideoEncoded, VideoEncodingFailed
ended() {  # ended ID: a VideoEncoded or VideoEncodingFailed names it
  local f
  f=$(in_results)
  (( $(q "$f" count video_id="$1") >= 1 ))
}
send() {  # send VIDEO_ID SOURCE HEIGHT
  cli send --type video.EncodeVideo --topic video.commands \
    "{\"video_id\": \"$1\", \"source\": \"$2\", \"height\": $3}" >/dev/null || fail "send $1"
  say "   sent EncodeVideo $1 ($2, height $3)"
}
kbus_containers() {  # the containers of the long-running kbus services, running or not
  docker ps -aq --filter "label=com.docker.compose.project=$project" --filter label=com.docker.compose.oneoff=False |
    while read -r c; do
      case $(docker inspect -f '{{index .Config.Labels "com.docker.compose.service"}}' "$c") in
        video-encoding | launcher | quickstart | scheduler) echo "$c" ;;
      esac
    done
}
name_of() { docker inspect -f '{{.Name}}' "$1" | sed 's:^/::'; }
launcher_exec() {  # a command in a running launcher container (ffmpeg, ffprobe, the media volume)
  local c
  c=$(docker ps -q --filter "label=com.docker.compose.project=$project" --filter label=com.docker.compose.service=launcher \
    --filter label=com.docker.compose.oneoff=False | head -n1)
  [[ -n $c ]] || fail "no launcher container runs"
  docker exec "$c" "$@"
}
height_of() { launcher_exec ffprobe -v error -select_streams v:0 -show_entries stream=height -of csv=p=0 "$1" | tr -d '\r'; }
healthy_count() {
  docker ps -q --filter "label=com.docker.compose.project=$project" --filter health=healthy | wc -l
}
all_healthy() { (( $(healthy_count) >= 9 )); }  # kafka, 2 video-encoding, 3 launchers, quickstart, scheduler, console
healthy_at_least() { (( $(healthy_count) >= $1 )); }
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# ------------------------------------------------------------------------- 1. up ------------
step "1. up with 3 launchers and 2 workflow hosts, until every service is healthy"
export KBUS_KAFKA_PORT KBUS_CONSOLE_PORT KBUS_CONSOLE_TOKEN
KBUS_KAFKA_PORT=$(free_port)
KBUS_CONSOLE_PORT=$(free_port)
KBUS_CONSOLE_TOKEN=$(python3 -c 'import secrets; print(secrets.token_hex(16))')
up_t=$(now)
dc up -d --no-build --scale launcher=3 --scale video-encoding=2 >"$logs/up.log" 2>&1 ||
  { cat "$logs/up.log"; fail "docker-compose up"; }
wait_for 240 "every service healthy (9 containers)" all_healthy
say "   time from up to all healthy: $(since "$up_t") s"
samples_done() { [[ $(docker inspect -f '{{.State.Status}} {{.State.ExitCode}}' "$(dc ps -q samples)") == "exited 0" ]]; }
wait_for 120 "samples made" samples_done
follow encode-in video.encode.in
follow control kbus.launcher.control
done_step

# ------------------------------------------------------------------------- 2. three videos --
step "2. three EncodeVideo: a good video, a flaky upload, a corrupt file"
# The flaky video's upload is still arriving when its command comes: the file is written under
# another name now and renamed into place once the first attempt has failed for want of it.
launcher_exec sh -ec 'mkdir -p /media/uploads
  ffmpeg -hide_banner -loglevel error -nostdin -y -f lavfi -i testsrc=duration=4:size=640x360:rate=25 \
    -c:v libx264 -preset ultrafast -pix_fmt yuv420p -f mp4 /media/uploads/.flaky-1.part'
send good-1 /media/samples/testsrc-5s.mp4 240
send flaky-1 /media/uploads/flaky-1.mp4 360
send broken-1 /media/samples/broken-upload.mp4 240
wait_for 90 "flaky-1: attempt 1 failed, its upload not there yet" \
  has 1 in_events type=kbus.ProcessExited job_id=flaky-1 attempt=1 outcome=failed
launcher_exec mv /media/uploads/.flaky-1.part /media/uploads/flaky-1.mp4
say "   flaky-1: the upload completed"
wait_for 90 "good-1 ended" ended good-1
wait_for 90 "flaky-1 ended" ended flaky-1
wait_for 120 "broken-1 ended" ended broken-1
results=$(in_results)
for id in good-1 flaky-1; do
  [[ $(q "$results" get attempts type=video.VideoEncoded video_id=$id) =~ ^[0-9]+$ ]] ||
    fail "$id was not encoded: $(grep "\"$id\"" "$results" | tail -n1)"
done
attempts=$(q "$results" get attempts type=video.VideoEncoded video_id=good-1)
[[ $attempts == 1 ]] || fail "good-1 took $attempts attempts, not 1"
attempts=$(q "$results" get attempts type=video.VideoEncoded video_id=flaky-1)
(( attempts >= 2 )) || fail "flaky-1 took $attempts attempts: its first should have failed"
say "   flaky-1 encoded after $attempts attempts"
for pair in good-1:240 flaky-1:360; do
  id=${pair%:*} want=${pair#*:}
  out=$(q "$results" get output type=video.VideoEncoded video_id=$id)
  got=$(height_of "$out")
  [[ $got == "$want" ]] || fail "$id: $out is ${got:-unreadable} lines high, not $want"
  say "   $id: ffprobe $out: height $got"
done
[[ $(q "$results" count type=video.VideoEncodingFailed video_id=broken-1) == 1 ]] ||
  fail "broken-1 did not fail: $(grep '"broken-1"' "$results" | tail -n1)"
cli dlq list --group video-encoding >"$logs/dlq.jsonl" || fail "kbus dlq list"
grep '"broken-1"' "$logs/dlq.jsonl" | grep -q 'attempts-exhausted' ||
  fail "broken-1 is not in video-encoding.dlq: $(cat "$logs/dlq.jsonl")"
say "   dlq list: $(grep '"broken-1"' "$logs/dlq.jsonl" | head -n1 | cut -c1-400)"
grep '"broken-1"' "$logs/dlq.jsonl" | grep -qiE 'moov atom not found|invalid data found' ||
  fail "the dead letter of broken-1 does not carry ffmpeg's error"
cli watch --topic video.encode.in --job good-1 >"$logs/watch-good-1.txt" || fail "kbus watch good-1 did not end succeeded"
grep -qE 'progress [0-9]+%' "$logs/watch-good-1.txt" || fail "kbus watch showed no progress: $(cat "$logs/watch-good-1.txt")"
sed 's/^/   watch: /' "$logs/watch-good-1.txt"
done_step

# ------------------------------------------------------------------------- 2b. console ------
step "2b. the console, on the published port, shows the three and redrives only with the token"
console() {  # console METHOD PATH [BODY [TOKEN]]: prints "STATUS BODY"
  python3 - "$KBUS_CONSOLE_PORT" "$@" <<'PY'
import json, sys, urllib.request, urllib.error
port, method, path = sys.argv[1], sys.argv[2], sys.argv[3]
body = sys.argv[4].encode() if len(sys.argv) > 4 else None
req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=body, method=method)
if len(sys.argv) > 5:
    req.add_header("Authorization", "Bearer " + sys.argv[5])
try:
    with urllib.request.urlopen(req, timeout=20) as r:
        print(r.status, r.read().decode())
except urllib.error.HTTPError as e:
    print(e.code, e.read().decode())
except OSError as e:
    print(0, json.dumps({"error": str(e)}))
PY
}
console_counts() {  # the video workflow's completed and failed instances, as the console counts them
  console GET /api/workflows | python3 -c '
import json, sys
status, _, body = sys.stdin.read().partition(" ")
items = json.loads(body)["items"] if status == "200" else []
w = [i for i in items if i["name"] == "video.encode"]
print(str(w[0]["completed"]) + " " + str(w[0]["failed"]) if w else "0 0")'
}
console_saw_three() { read -r completed failed <<<"$(console_counts)"; (( completed >= 2 && failed >= 1 )); }
wait_for 60 "the console counts good-1 and flaky-1 completed, broken-1 failed" console_saw_three
job=$(console GET '/api/job?id=flaky-1')
[[ $job == 200* ]] && grep -q '"outcome":"succeeded"' <<<"$job" || fail "console: job flaky-1: $job"
say "   job flaky-1: $(grep -o '"attempts":\[.*' <<<"$job" | grep -o '"outcome":"[a-z_]*"' | tr '\n' ' ')"
dead=$(console GET '/api/dead-letters?group=video-encoding&reason=attempts-exhausted')
grep -q '"key":"broken-1"' <<<"$dead" || fail "console: broken-1 is not among the dead letters: $dead"
partition=$(python3 -c 'import json,sys; d=[i for i in json.loads(sys.argv[1].split(" ",1)[1])["items"] if i["key"]=="broken-1"][0]; print(d["partition"], d["offset"])' "$dead")
read -r p o <<<"$partition"
redrive="{\"group\":\"video-encoding\",\"partition\":$p,\"offset\":$o}"
refused=$(console POST /api/dead-letters/redrive "$redrive")
[[ $refused == 401* ]] || fail "console: a redrive without the token was not refused: $refused"
redriven=$(console POST /api/dead-letters/redrive "$redrive" "$KBUS_CONSOLE_TOKEN")
[[ $redriven == 200* ]] || fail "console: redrive with the token: $redriven"
broken_1() { console GET '/api/instance?workflow=video.encode&id=broken-1'; }
second_run() { grep -q '"run":2' <<<"$(broken_1)"; }
wait_for 60 "broken-1, redriven from the console, started its second run" second_run
# Handled to its end (its attempts fail again), before the next steps kill and restart things.
second_run_failed() { local b; b=$(broken_1); grep -q '"run":2' <<<"$b" && grep -q '"status":"failed"' <<<"$b"; }
wait_for 120 "broken-1's second run ended (failed again, the upload is still corrupt)" second_run_failed
page=$(console GET /)
[[ $page == 200* ]] && grep -q 'app.js' <<<"$page" || fail "console: the page did not load"
say "   the console answered on 127.0.0.1:$KBUS_CONSOLE_PORT; broken-1 redriven: $redriven"
done_step

# ------------------------------------------------------------------------- 3. kill -9 -------
step "3. SIGKILL of the launcher running an encode: lost, retried on another launcher"
send long-1 /media/samples/testsrc-60s.mp4 720
progressing() {  # progressing ID ATTEMPT: a progress event between 1 and 99 %
  local f
  f=$(in_events)
  python3 - "$f" "$1" "$2" <<'PY'
import json, sys
path, job, attempt = sys.argv[1], sys.argv[2], int(sys.argv[3])
for line in open(path, errors="replace"):
    try:
        r = json.loads(line)
    except ValueError:
        continue
    p = r.get("payload") if isinstance(r, dict) else None
    if (r.get("envelope") or {}).get("type") == "kbus.ProcessProgress" and isinstance(p, dict) \
            and p.get("job_id") == job and p.get("attempt") == attempt and 0 < p.get("percent", 0) < 100:
        sys.exit(0)
sys.exit(1)
PY
}
wait_for 90 "long-1: attempt 1 encoding (progress between 1 and 99 %)" progressing long-1 1
host1=$(q "$(in_events)" get host type=kbus.ProcessStarted job_id=long-1 attempt=1)
victim=""
for c in $(dc ps -q launcher); do
  [[ $(docker inspect -f '{{.Config.Hostname}}' "$c") == "$host1" ]] && victim=$c
done
[[ -n $victim ]] || fail "no launcher container has the host name $host1"
docker kill "$victim" >/dev/null
say "   docker kill (SIGKILL) $(name_of "$victim"), host $host1, which ran long-1 attempt 1"
wait_for 90 "attempt 1 given up as lost: no heartbeat, so the workflow cancels it" \
  has 1 in_control type=kbus.CancelProcess job_id=long-1 attempt=1
reason=$(q "$(in_control)" get reason type=kbus.CancelProcess job_id=long-1 attempt=1)
[[ $reason == *heartbeat* ]] || fail "long-1 attempt 1 was cancelled for another reason: $reason"
say "   the cancel's reason: $reason"
wait_for 90 "long-1: attempt 2 started" has 1 in_events type=kbus.ProcessStarted job_id=long-1 attempt=2
host2=$(q "$(in_events)" get host type=kbus.ProcessStarted job_id=long-1 attempt=2)
[[ $host2 != "$host1" ]] || fail "attempt 2 ran on the killed launcher's host $host1"
say "   attempt 2 runs on another launcher, host $host2"
wait_for 180 "long-1 ended" ended long-1
results=$(in_results)
attempts=$(q "$results" get attempts type=video.VideoEncoded video_id=long-1)
[[ $attempts == 2 ]] || fail "long-1: $(grep '"long-1"' "$results" | tail -n1)"
out=$(q "$results" get output type=video.VideoEncoded video_id=long-1)
got=$(height_of "$out")
[[ $got == 720 ]] || fail "long-1: $out is ${got:-unreadable} lines high, not 720"
say "   long-1 encoded by attempt 2; ffprobe $out: height $got"
cli watch --topic video.encode.in --job long-1 --attempt 2 >"$logs/watch-long-1.txt" || fail "kbus watch long-1"
grep -E 'progress [0-9]+%' "$logs/watch-long-1.txt" | sed -n '1p;$p' | sed 's/^/   watch: /'
done_step

# ------------------------------------------------------------------------- 4. restart ------
step "4. docker-compose restart video-encoding mid-run: every workflow ends exactly once"
batch=(r-1 r-2 r-3 r-4 r-5 r-6)
# One container sends the batch (a container each costs seconds).
dc run --rm -T --no-deps --entrypoint sh cli -ec '
  for id in "$@"; do
    kbus send --type video.EncodeVideo --topic video.commands \
      "{\"video_id\": \"$id\", \"source\": \"/media/samples/testsrc-5s.mp4\", \"height\": 240}" >/dev/null
  done' sh "${batch[@]}" 2>>"$logs/cli.stderr" || fail "sending the batch"
say "   sent EncodeVideo ${batch[*]} (/media/samples/testsrc-5s.mp4, height 240)"
wait_for 60 "a first attempt of the batch started" has 1 in_events type=kbus.ProcessStarted job_id^=r-
t=$(now)
dc restart video-encoding >"$logs/restart.log" 2>&1 || { cat "$logs/restart.log"; fail "restart"; }
say "   restarted both video-encoding replicas in $(since "$t") s"
batch_ended() {
  local f
  f=$(in_results)
  (( $(q "$f" count video_id^=r-) >= ${#batch[@]} ))
}
wait_for 180 "the batch ended" batch_ended
q "$(in_results)" ids video_id^=r- >"$logs/batch-ended.txt"
for id in "${batch[@]}"; do
  grep -qx "$id 1" "$logs/batch-ended.txt" || fail "$id did not end exactly once: $(cat "$logs/batch-ended.txt")"
done
say "   each of the batch ended exactly once"
done_step

# ------------------------------------------------------------------------- 5. sharing -------
step "5. the launchers shared the work; the quickstart worker and the scheduler work; /metrics of every service answers"
busy=0
for c in $(docker ps -aq --filter "label=com.docker.compose.project=$project" --filter label=com.docker.compose.service=launcher --filter label=com.docker.compose.oneoff=False); do
  n=$(docker logs "$c" 2>&1 | grep -c '"msg":"process started"' || true)
  say "   $(name_of "$c") ($(docker inspect -f '{{.State.Status}}' "$c")): $n processes started"
  (( n > 0 )) && busy=$((busy + 1))
done
(( busy >= 2 )) || fail "only $busy launcher ran anything"
cli send --type shop.PlaceOrder --topic shop.commands '{"order_id": "o-1", "item": "beans", "quantity": 2}' >/dev/null ||
  fail "send shop.PlaceOrder"
order_completed() {
  local f
  f=$(read_topic shop.events)
  (( $(q "$f" count type=shop.OrderCompleted order_id=o-1) == 1 ))
}
wait_for 60 "quickstart: PlaceOrder o-1 became OrderCompleted" order_completed
sent_delayed=$(now)
cli send --delay 5s --type shop.PlaceOrder --topic shop.commands '{"order_id": "o-2", "item": "tea", "quantity": 1}' \
  >/dev/null || fail "send --delay shop.PlaceOrder"
delayed_completed() {
  local f
  f=$(read_topic shop.events)
  (( $(q "$f" count type=shop.OrderCompleted order_id=o-2) == 1 ))
}
wait_for 60 "scheduler: PlaceOrder o-2, sent with --delay 5s, became OrderCompleted" delayed_completed
awk -v d="$(since "$sent_delayed")" 'BEGIN { exit !(d >= 5) }' || fail "o-2 was completed before its delay"
say "   o-2 completed $(since "$sent_delayed") s after it was sent with --delay 5s"
cli schedules describe shop-daily-report >"$logs/schedule.txt" 2>&1 ||
  { cat "$logs/schedule.txt"; fail "kbus schedules describe shop-daily-report"; }
grep -q "0 2 \* \* \*" "$logs/schedule.txt" || { cat "$logs/schedule.txt"; fail "the nightly schedule is not described"; }
say "   the quickstart's nightly schedule is there: $(grep -m1 -i 'next' "$logs/schedule.txt" | tr -s ' ')"
for c in $(kbus_containers); do
  [[ $(docker inspect -f '{{.State.Running}}' "$c") == true ]] || continue
  docker exec "$c" kbus health --path /metrics >"$logs/metrics-$(name_of "$c").txt" ||
    fail "$(name_of "$c"): /metrics did not answer 200"
  lines=$(grep -c '^kbus_' "$logs/metrics-$(name_of "$c").txt" || true)
  (( lines > 0 )) || fail "$(name_of "$c"): /metrics has no kbus_ series"
  sample=$(grep -E '^kbus_(launcher_launches_total|workflow_instances|worker_records_received_total)' \
    "$logs/metrics-$(name_of "$c").txt" | head -n1 || true)
  say "   $(name_of "$c"): /metrics 200, $lines series; ${sample:-}"
done
done_step

# ------------------------------------------------------------------------- 6. stop ----------
step "6. docker-compose stop mid-encode is graceful; after start nothing is lost"
send stop-1 /media/samples/testsrc-60s.mp4 720
wait_for 90 "stop-1: attempt 1 encoding" progressing stop-1 1
t=$(now)
dc stop >"$logs/stop.log" 2>&1 || { cat "$logs/stop.log"; fail "docker-compose stop"; }
say "   docker-compose stop in $(since "$t") s"
bad=0
for c in $(kbus_containers); do
  [[ $victim == "$c"* ]] && continue  # killed in step 3
  code=$(docker inspect -f '{{.State.ExitCode}}' "$c")
  say "   $(name_of "$c") exited $code"
  [[ $code == 0 ]] || { bad=1; docker logs --tail 20 "$c" 2>&1 | sed 's/^/      /'; }
done
(( bad == 0 )) || fail "a kbus service did not stop cleanly"
t=$(now)
dc start >"$logs/start.log" 2>&1 || { cat "$logs/start.log"; fail "docker-compose start"; }
wait_for 240 "every service healthy again" all_healthy
say "   start to all healthy: $(since "$t") s"
wait_for 180 "stop-1 ended" ended stop-1
results=$(in_results)
attempts=$(q "$results" get attempts type=video.VideoEncoded video_id=stop-1)
[[ $attempts =~ ^[0-9]+$ ]] || fail "stop-1 was not encoded: $(grep '"stop-1"' "$results" | tail -n1)"
has 1 in_events type=kbus.ProcessExited job_id=stop-1 attempt=1 outcome=lost ||
  fail "the launcher did not report stop-1 attempt 1 lost when it stopped"
say "   stop-1 encoded after $attempts attempts (the stopping launcher reported attempt 1 lost)"
# Late duplicates would come now, if ever.
sleep 3
results=$(in_results)
q "$results" ids type^=video.Video >"$logs/ended.txt"
sed 's/^/   ended: /' "$logs/ended.txt"
expected=(good-1 flaky-1 broken-1 long-1 "${batch[@]}" stop-1)
[[ $(wc -l <"$logs/ended.txt") == "${#expected[@]}" ]] || fail "expected ${#expected[@]} videos to end, not $(wc -l <"$logs/ended.txt")"
for id in "${expected[@]}"; do
  runs=1
  [[ $id == broken-1 ]] && runs=2  # redriven from the console in step 2b: a second run, a second end
  grep -qx "$id $runs" "$logs/ended.txt" || fail "$id did not end exactly $runs time(s)"
done
say "   every workflow ended exactly once per run"
done_step

# ------------------------------------------------------------------------- 7. Docker backend -
step "7. compose.docker-launcher.yaml: an encode in a container of its own; SIGKILL of its launcher costs no retry"
# The first project goes first (its Kafka port, and the engine's two cores): followers, then
# down -v. Then a project of its own with both files; from here on the helpers, and the cleanup's
# down -v, speak of it.
for f in "${followers[@]}"; do docker rm -f "$f" >/dev/null 2>&1 || true; done
followers=()
t=$(now)
dc down -v --remove-orphans >"$logs/down-1.log" 2>&1 || { cat "$logs/down-1.log"; fail "docker-compose down -v"; }
say "   the first project down -v in $(since "$t") s"
project=${project}d
export COMPOSE_PROJECT_NAME=$project
compose_files=(compose.yaml compose.docker-launcher.yaml)
t=$(now)
# Only what an encode needs: kafka, topics, samples, the encoder check, 2 launchers, the workflow.
dc up -d --no-build --scale launcher=2 samples launcher video-encoding >"$logs/up-docker.log" 2>&1 ||
  { cat "$logs/up-docker.log"; fail "docker-compose up with compose.docker-launcher.yaml"; }
wait_for 240 "kafka, 2 launchers with the Docker backend and the workflow host healthy" healthy_at_least 4
wait_for 120 "samples made" samples_done
say "   time from up to all healthy: $(since "$t") s"
follow encode-in video.encode.in
job_containers() { docker ps -aq --filter label=kbus.group "$@"; }
[[ -z $(job_containers) ]] || fail "job containers before any job: $(job_containers)"
send dock-1 /media/samples/testsrc-60s.mp4 720
wait_for 90 "dock-1: attempt 1 encoding (progress between 1 and 99 %)" progressing dock-1 1
job=$(job_containers --filter label=kbus.job_id=dock-1)
[[ $(wc -w <<<"$job") == 1 ]] || fail "dock-1: not one container labelled kbus.group and kbus.job_id=dock-1: '$job'"
job_info=$(docker inspect -f '{{.Config.Image}} {{.Config.User}} {{.State.Status}} {{index .Config.Labels "kbus.group"}} {{index .Config.Labels "kbus.attempt"}} {{index .Config.Labels "kbus.partition"}} {{index .Config.Labels "com.docker.compose.project"}}' "$job")
read -r job_image job_user job_state job_group job_attempt job_partition job_project <<<"$job_info"
[[ $job_image == kbus-encoder:dev && $job_state == running && $job_attempt == 1 && -n $job_group ]] ||
  fail "dock-1's container: $job_info"
[[ -z $job_project ]] || fail "dock-1's container belongs to the compose project $job_project"
say "   dock-1 runs in $(name_of "$job"): image $job_image, user $job_user, kbus.group=$job_group, kbus.partition=$job_partition"
host1=$(q "$(in_events)" get host type=kbus.ProcessStarted job_id=dock-1 attempt=1)
victim="" survivor=""
for c in $(dc ps -q launcher); do
  if [[ $(docker inspect -f '{{.Config.Hostname}}' "$c") == "$host1" ]]; then victim=$c; else survivor=$c; fi
done
[[ -n $victim && -n $survivor ]] || fail "no launcher container has the host name $host1, or no other launcher runs"
docker kill -s KILL "$victim" >/dev/null
killed_t=$(now)
say "   docker kill -s KILL $(name_of "$victim"), host $host1, which started dock-1 attempt 1"
[[ $(docker inspect -f '{{.State.Running}}' "$job") == true ]] || fail "dock-1's container ended with its launcher"
adopted() { docker logs "$survivor" 2>&1 | grep '"msg":"job adopted"' | grep -q '"dock-1"'; }
wait_for 60 "$(name_of "$survivor") adopted dock-1" adopted
say "   adopted $(since "$killed_t") s after the kill: $(docker logs "$survivor" 2>&1 | grep '"msg":"job adopted"' | grep '"dock-1"' | head -n1 | cut -c1-300)"
wait_for 180 "dock-1 ended" ended dock-1
for c in "$victim" "$survivor"; do docker logs "$c" >"$logs/$(name_of "$c").log" 2>&1 || true; done
# The longest the workflow heard nothing of dock-1: across the kill, until the adopter's first event.
silence=$(python3 - "$(in_events)" <<'PY'
import json, sys
times = []
for line in open(sys.argv[1], errors="replace"):
    try:
        r = json.loads(line)
    except ValueError:
        continue
    p = r.get("payload") if isinstance(r, dict) else None
    if isinstance(p, dict) and p.get("job_id") == "dock-1" and isinstance(r.get("timestamp"), int):
        times.append(r["timestamp"])
times.sort()
print("%.1f" % (max((b - a for a, b in zip(times, times[1:])), default=0) / 1000))
PY
)
say "   the workflow heard nothing of dock-1 for $silence s at most (it gives an attempt up after 30 s)"
results=$(in_results)
attempts=$(q "$results" get attempts type=video.VideoEncoded video_id=dock-1)
[[ $attempts == 1 ]] || fail "dock-1 was not encoded by attempt 1 alone: $(grep '"dock-1"' "$results" | tail -n1)"
events=$(in_events)
started=$(q "$events" count type=kbus.ProcessStarted job_id=dock-1)
exited=$(q "$events" count type=kbus.ProcessExited job_id=dock-1)
outcome=$(q "$events" get outcome type=kbus.ProcessExited job_id=dock-1 attempt=1)
[[ $started == 1 && $exited == 1 && $outcome == succeeded ]] ||
  fail "dock-1: $started ProcessStarted, $exited ProcessExited (attempt 1: ${outcome:-none}), not one of each, succeeded"
out=$(q "$results" get output type=video.VideoEncoded video_id=dock-1)
got=$(height_of "$out")
[[ $got == 720 ]] || fail "dock-1: $out is ${got:-unreadable} lines high, not 720"
say "   dock-1 encoded by attempt 1 (one ProcessStarted, one ProcessExited: succeeded); ffprobe $out: height $got"
no_job_containers() { [[ -z $(job_containers) ]]; }
wait_for 30 "no container labelled kbus.group is left" no_job_containers
done_step
