#!/usr/bin/env bash
# Builds docker/kafka-standin: a stand-in for the official apache/kafka image, for engines that
# cannot pull it. The jars are the ones scripts/kafka-broker.sh fetches on the host (HTTPS to
# Maven Central fails inside a container), linked into a small temporary build context next to
# the stand-in's own files, so nothing else of the repository or the cache is sent.
#
#   scripts/kafka-standin-image.sh [TAG]   (uses DOCKER_HOST; default tag kbus/kafka-standin:<version>)
# Prints the tag. Needs the debian:bookworm-slim base (scripts/debian-base-image.sh).
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ -n "${KBUS_DOCKER:-}" ]]; then DOCKER=$KBUS_DOCKER
elif [[ -x /usr/bin/docker ]]; then DOCKER=/usr/bin/docker
else DOCKER=docker
fi

version=$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' test/support/kafka/pom.xml | head -n1)
tag=${1:-kbus/kafka-standin:$version}
cache=${KBUS_KAFKA_HOME:-$HOME/.cache/kbus/kafka-$version}
scripts/kafka-broker.sh fetch >/dev/null
[[ -f "$cache/kafka_2.13-$version.jar" ]] || { echo "kafka-standin-image.sh: no Kafka jars in $cache" >&2; exit 1; }

ctx=$(mktemp -d "${TMPDIR:-/tmp}/kafka-standin.XXXXXX")
trap 'rm -rf "$ctx"' EXIT
cp -R docker/kafka-standin/. "$ctx/"
mkdir "$ctx/libs"
# Hard links when the cache and the context share a file system, copies otherwise.
cp -l "$cache"/*.jar "$ctx/libs/" 2>/dev/null || cp "$cache"/*.jar "$ctx/libs/"
"$DOCKER" build --network host -q -t "$tag" "$ctx" >/dev/null
echo "$tag"
