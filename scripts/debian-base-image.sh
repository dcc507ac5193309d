#!/usr/bin/env bash
# Makes the Debian base images the Dockerfiles start FROM, from Debian's own packages, for an
# engine that cannot pull from Docker Hub:
#   debian:bookworm        debootstrap --variant=minbase, set up for containers as Debian's
#                          official image is (apt keeps no caches, services never start during
#                          an install, the bookworm, -updates and -security suites)
#   debian:bookworm-slim   the same root, and dpkg leaves out documentation, man pages and
#                          translations, as the official slim image does
#
#   scripts/debian-base-image.sh [WORKDIR]   (uses DOCKER_HOST; WORKDIR holds the root while it
#                                             is made, default a temporary folder)
# Images that exist already are left alone. Needs root and debootstrap. Environment:
# KBUS_DEBIAN_MIRROR (default http://deb.debian.org/debian), KBUS_DOCKER (the docker client).
set -euo pipefail

if [[ -n "${KBUS_DOCKER:-}" ]]; then DOCKER=$KBUS_DOCKER
elif [[ -x /usr/bin/docker ]]; then DOCKER=/usr/bin/docker
else DOCKER=docker
fi
MIRROR=${KBUS_DEBIAN_MIRROR:-http://deb.debian.org/debian}

have() { "$DOCKER" image inspect "$1" >/dev/null 2>&1; }
if have debian:bookworm && have debian:bookworm-slim; then exit 0; fi

work=${1:-}
if [[ -z "$work" ]]; then
  work=$(mktemp -d /tmp/debian-base.XXXXXX)
  trap 'rm -rf "$work"' EXIT
fi
mkdir -p "$work"
root="$work/rootfs"
rm -rf "$root"
debootstrap --variant=minbase bookworm "$root" "$MIRROR" >"$work/debootstrap.log" 2>&1 || {
  tail -n 30 "$work/debootstrap.log" >&2
  echo "debian-base-image.sh: debootstrap failed (log: $work/debootstrap.log)" >&2
  exit 1
}

# What a container wants that a machine does not.
rm -f "$root/etc/apt/sources.list"
cat >"$root/etc/apt/sources.list.d/debian.sources" <<EOF
Types: deb
URIs: $MIRROR
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://deb.debian.org/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
# A package's service must not start inside an image build.
printf '#!/bin/sh\n# no service starts during an image build\nexit 101\n' >"$root/usr/sbin/policy-rc.d"
chmod 0755 "$root/usr/sbin/policy-rc.d"
# Every layer keeps what it writes: no package caches, no translations, no recommended packages.
cat >"$root/etc/apt/apt.conf.d/docker-clean" <<'EOF'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
Acquire::Languages "none";
APT::Install-Recommends "false";
EOF
# A build that is lost is redone from scratch: no need to sync every file dpkg writes.
echo 'force-unsafe-io' >"$root/etc/dpkg/dpkg.cfg.d/docker-apt-speedup"
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* "$root"/var/log/*.log "$root"/tmp/*
: >"$root/etc/hostname"

if ! have debian:bookworm; then
  tar -C "$root" --numeric-owner -c . | "$DOCKER" import -c 'CMD ["bash"]' - debian:bookworm >/dev/null
fi

if ! have debian:bookworm-slim; then
  cat >"$root/etc/dpkg/dpkg.cfg.d/docker" <<'EOF'
# slim: documentation, manuals and translations are not installed (copyright files are)
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/lintian/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/locale/*
EOF
  find "$root/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete
  find "$root/usr/share/doc" -mindepth 1 -type d -empty -delete
  rm -rf "$root"/usr/share/man/* "$root"/usr/share/info/* "$root"/usr/share/locale/* \
         "$root"/usr/share/groff/* "$root"/usr/share/lintian/*
  tar -C "$root" --numeric-owner -c . | "$DOCKER" import -c 'CMD ["bash"]' - debian:bookworm-slim >/dev/null
fi
rm -rf "$root"
