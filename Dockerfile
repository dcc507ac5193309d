# kbus's images, from one build (docs/operations.md; compose.yaml uses them):
#   docker build --target kbus -t kbus:dev .              the kbus CLI, quickstart-worker,
#                                                         video-encoding, fake-encoder, kbus-launcher
#   docker build --target launcher -t kbus-launcher:dev . the same with ffmpeg, for kbus-launcher
#   docker build --target encoder -t kbus-encoder:dev .   ffmpeg alone, for kbus-launcher --backend
#                                                         docker (compose.docker-launcher.yaml)
# The build stage installs what compiling needs (scripts/install-deps.sh --compile, the script CI
# uses) and compiles the programs in Release, without tests and benchmarks; both runtime images
# copy its binaries, so building both compiles once. The runtime images run as the unprivileged
# user kbus (uid 10001) and serve the operations port (/healthz, /readyz, /metrics) on 8080.

FROM debian:bookworm AS build
# The packages in a layer of their own, before the sources: a change to the code rebuilds the
# programs, not the package layer. Layers stay few (engines with the vfs storage driver, the
# compose test's, copy the whole image for each).
COPY scripts/install-deps.sh /tmp/install-deps.sh
RUN /tmp/install-deps.sh --compile && rm -rf /var/lib/apt/lists/* /tmp/install-deps.sh
COPY . /src
RUN cmake -S /src -B /build -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_INSTALL_PREFIX=/opt/kbus \
      -DKBUS_BUILD_TESTS=OFF -DKBUS_BUILD_BENCH=OFF >/dev/null \
 && cmake --build /build \
 && cmake --install /build --strip >/dev/null \
 && for p in quickstart/quickstart-worker video-encoding/video-encoding fake-encoder/fake-encoder; do \
      install -s -m 0755 "/build/examples/$p" /opt/kbus/bin/; \
    done \
 && rm -rf /build

# What both runtime images share: the unprivileged user, the media folder (a volume mounted there
# starts owned by kbus), the binaries on PATH and the operations port.
FROM debian:bookworm-slim AS runtime
RUN useradd --uid 10001 --user-group --home-dir /nonexistent --no-create-home --shell /usr/sbin/nologin kbus \
 && install -d -o kbus -g kbus /media
ENV PATH=/opt/kbus/bin:$PATH \
    KBUS_HTTP_PORT=8080
EXPOSE 8080

FROM runtime AS kbus
COPY scripts/install-deps.sh /tmp/install-deps.sh
RUN /tmp/install-deps.sh --runtime && rm -rf /var/lib/apt/lists/* /tmp/install-deps.sh
COPY --from=build /opt/kbus/bin/ /opt/kbus/bin/
USER kbus
CMD ["kbus", "--help"]

# Debian's ffmpeg (and ffprobe) on the runtime: the layer the launcher and the encoder share, so
# that building both installs ffmpeg once and the engine stores it once. Its packages do not wait
# for the build: with BuildKit they install while the build stage compiles.
FROM runtime AS media
COPY scripts/install-deps.sh /tmp/install-deps.sh
RUN /tmp/install-deps.sh --runtime-media && rm -rf /var/lib/apt/lists/* /tmp/install-deps.sh

# The launcher runs ffmpeg (and ffprobe checks what it wrote).
FROM media AS launcher
COPY --from=build /opt/kbus/bin/ /opt/kbus/bin/
USER kbus
CMD ["kbus-launcher", "--help"]

# What kbus-launcher --backend docker starts for each encoding (compose.docker-launcher.yaml,
# docker/launcher-docker.allow): Debian's ffmpeg, and no kbus program (nothing from the build
# stage). It is the media stage as it stands, the launcher image without kbus's binaries: a stage
# of its own that installed ffmpeg again would cost a second apt-get and, on an engine with the
# vfs driver (the compose test's), a full copy of its layers; this one adds no layer. (The
# runtime libraries the launcher needs come along; ffmpeg does not use them.) Last in the file:
# the legacy builder (docker-compose 1.29) builds every stage before its target, and the kbus and
# launcher targets should not wait for this one. It runs as nobody; the launcher sets each
# container's user (the allow-list's .user), its init, limits and mounts.
FROM media AS encoder
USER 65534:65534
CMD ["ffmpeg", "-hide_banner", "-version"]
