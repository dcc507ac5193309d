#!/usr/bin/env bash
# compose.yaml, alone and with compose.docker-launcher.yaml, as docker-compose 1.29 reads it
# (`config`: no engine, seconds), and what the opt-in's parts must agree on: the allow-list the
# launcher mounts names the image the encoder service builds and the media volume by the name
# the file gives it. The compose test runs the real thing; this runs with every other test.
#   test/compose/check_config.sh ROOT      exit 77 (skipped) without docker-compose
set -euo pipefail
root=$(cd "$1" && pwd -P)
command -v docker-compose >/dev/null || { echo "docker-compose not found: skipped"; exit 77; }
fail() { echo "FAILED: $*" >&2; exit 1; }
base=$root/compose.yaml
opt=$root/compose.docker-launcher.yaml
dc() { COMPOSE_PROJECT_NAME=kbusconfig docker-compose --project-directory "$root" "$@"; }
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

dc -f "$base" --profile tools --profile ui --profile metrics config -q || fail "compose.yaml"
echo "compose.yaml: valid, every profile included"

# The socket's group is required: without it, compose refuses and says how to find it.
if dc -f "$base" -f "$opt" config -q 2>"$out/err"; then fail "the opt-in was read without KBUS_DOCKER_GID"; fi
grep -q KBUS_DOCKER_GID "$out/err" || fail "the refusal does not name KBUS_DOCKER_GID: $(cat "$out/err")"
echo "compose.docker-launcher.yaml: refused without KBUS_DOCKER_GID"

KBUS_DOCKER_GID=4242 KBUS_HOST_DOCKER_SOCKET=/run/user/1000/docker.sock \
  dc -f "$base" -f "$opt" --profile tools config >"$out/merged.yaml" || fail "compose.yaml + compose.docker-launcher.yaml"

python3 - "$out/merged.yaml" "$root" <<'PY'
import re, sys, yaml
merged, root = sys.argv[1], sys.argv[2]
c = yaml.safe_load(open(merged))
errors = []
def check(ok, what):
    if not ok:
        errors.append(what)

launcher = c["services"]["launcher"]
env = launcher.get("environment", {})
check(env.get("KBUS_BACKEND") == "docker", f"launcher: KBUS_BACKEND is {env.get('KBUS_BACKEND')!r}, not docker")
socket_in = env.get("KBUS_DOCKER_SOCKET", "/var/run/docker.sock")
check([str(g) for g in launcher.get("group_add", [])] == ["4242"], f"launcher: group_add {launcher.get('group_add')}")
mounts = {}
for v in launcher.get("volumes", []):
    parts = v.split(":")
    check(parts[1] not in mounts, f"launcher: two mounts on {parts[1]}")
    mounts[parts[1]] = parts[0]
check(mounts.get(socket_in) == "/run/user/1000/docker.sock",
      f"launcher: {socket_in} is mounted from {mounts.get(socket_in)!r}, not KBUS_HOST_DOCKER_SOCKET")
allow_in = env.get("KBUS_ALLOW_LIST")
allow = mounts.get(allow_in, "")
check(allow.endswith("/docker/launcher-docker.allow"), f"launcher: {allow_in} is mounted from {allow!r}")
check("encoder" in launcher.get("depends_on", {}), "launcher: does not wait for the encoder service")
check({"kafka", "topics"} <= set(launcher.get("depends_on", {})), "launcher: lost compose.yaml's depends_on")
# A killed launcher's containers are adopted by another replica after the launchers' session
# timeout and a heartbeat: the workflow's heartbeat silence must be longer, or it retries them.
workflow_env = c["services"]["video-encoding"].get("environment", {})
session = int(env.get("KBUS_SESSION_TIMEOUT_MS", 10000))
heartbeat = int(workflow_env.get("KBUS_HEARTBEAT_MS", 500))
silence = int(workflow_env.get("KBUS_HEARTBEAT_TIMEOUT_MS", 0) or 3 * heartbeat)
check(silence > session + heartbeat,
      f"video-encoding: a heartbeat silence of {silence} ms is not longer than the launchers' session timeout "
      f"({session} ms) plus a heartbeat ({heartbeat} ms): a launcher's death would cost a retry")

keys = {}
for line in open(allow if allow.startswith("/") else root + "/docker/launcher-docker.allow"):
    line = line.strip()
    if line and not line.startswith("#"):
        k, _, v = line.partition("=")
        keys.setdefault(k.strip(), []).append(v.strip())
encoder = c["services"].get("encoder", {})
check(keys.get("ffmpeg.image") == [encoder.get("image")],
      f"the allow-list's ffmpeg.image {keys.get('ffmpeg.image')} is not the encoder service's image {encoder.get('image')!r}")
target = encoder.get("build", {}).get("target")
check(re.search(rf"^FROM \S+ AS {re.escape(str(target))}$", open(root + "/Dockerfile").read(), re.M) is not None,
      f"the Dockerfile has no stage {target!r} for the encoder service")
volume = c.get("volumes", {}).get("media", {}).get("name")
for m in keys.get("ffmpeg.mount", []):
    source, dest, mode = m.split(":")
    check(source == volume, f"ffmpeg.mount names {source!r}, but the media volume is named {volume!r}")
    check(dest == "/media", f"ffmpeg.mount puts the media volume at {dest!r}: the workflows name /media")
check(len(keys.get("ffmpeg.mount", [])) == 1, "the allow-list mounts the media volume once")
for s in ("launcher", "samples", "cli"):  # the ones that mount it in compose.yaml
    vols = c["services"][s].get("volumes", [])
    check(any(v.startswith("media:/media") for v in vols), f"{s}: no media volume at /media")
check(keys.get("ffmpeg") == [open(root + "/docker/launcher.allow").read().split("ffmpeg = ", 1)[1].splitlines()[0].strip()],
      "the allow-lists' ffmpeg lines differ: the workflows expect the same fixed arguments from either backend")

if errors:
    sys.exit("FAILED:\n  " + "\n  ".join(errors))
print("compose.yaml + compose.docker-launcher.yaml: the launcher uses --backend docker with the socket "
      "and docker/launcher-docker.allow; its image and volume names match the encoder service and the media volume")
PY
