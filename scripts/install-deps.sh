#!/usr/bin/env bash
# Installs everything kbus needs to build, test, benchmark and run its demo on Debian bookworm.
# The README, .ci/run and the Dockerfile all call this script; nothing else installs packages.
#   scripts/install-deps.sh            build + test dependencies (default)
#   scripts/install-deps.sh --runtime  only what the built binaries need at run time
#   scripts/install-deps.sh --runtime-media  the same plus ffmpeg (the launcher's image)
#   scripts/install-deps.sh --compile  only what compiling the programs needs (the image's build stage)
set -euo pipefail

runtime=(librdkafka1 libboost-program-options1.74.0 libcpp-httplib0.11 ca-certificates
         libcurl4                     # the launcher's Docker backend: the Engine API over its socket
         libdate-tz3 tzdata)  # schedules' time zones: the system tz database
media=(ffmpeg)                 # what the launcher runs in compose; ffprobe checks its output
compile=(
  build-essential cmake ninja-build pkg-config
  librdkafka-dev rapidjson-dev libboost-program-options-dev
  libcpp-httplib-dev           # the /healthz, /readyz and /metrics endpoints
  libcurl4-openssl-dev         # the Docker backend's HTTP client
  libhowardhinnant-date-dev    # schedules: cron calendars in a time zone
)
build=(
  git
  prometheus                   # promtool checks /metrics; a real Prometheus scrapes a worker
  libgtest-dev libgmock-dev googletest
  kcat                         # a Kafka client we did not write, for interop tests
  tmux                         # a real terminal for kbus watch's in-place bars
  chromium chromium-driver python3-selenium  # kbus console's page in a real browser (test/browser)
  default-jre-headless maven   # real Apache Kafka for the integration tests (jars from Maven Central)
  python3                      # free-port helper in scripts/kafka-broker.sh
  docker-compose               # runs compose.yaml in the compose test (and validates it)
  docker.io debootstrap        # the compose and Docker backend tests' own engine (docker.io brings
                               # tini, the containers' init), the compose test's Debian base image
)

mode=${1:-build}
case "$mode" in
  --runtime) pkgs=("${runtime[@]}") ;;
  --runtime-media) pkgs=("${runtime[@]}" "${media[@]}") ;;
  --compile) pkgs=("${runtime[@]}" "${compile[@]}") ;;
  build|--build) pkgs=("${runtime[@]}" "${media[@]}" "${compile[@]}" "${build[@]}") ;;
  *) echo "install-deps.sh: unknown option '$mode' (use --runtime, --runtime-media, --compile or nothing)" >&2; exit 2 ;;
esac

sudo=""
if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi

missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
echo "install-deps: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
