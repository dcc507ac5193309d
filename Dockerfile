# kbus's images, from one build (docs/operations.md; compose.yaml uses them):
#   docker build --target kbus -t kbus:dev .              the kbus CLI, quickstart-worker,
#                                                         video-encoding, fake-encoder, kbus-launcher
#   docker build --target launcher -t kbus-launcher:dev . the same with ffmpeg, for kbus-launcher
# The build stage installs what CI installs (scripts/install-deps.sh) and compiles everything in
# Release, without tests and benchmarks; both runtime images copy its binaries, so building both
# compiles once. The runtime images run as the unprivileged user kbus (uid 10001) and serve the
# operations port (/healthz, /readyz, /metrics) on 8080.

FROM debian:bookworm AS build
# The sources first and one RUN for the packages and the build: every layer costs a full copy of
# the image on engines with the vfs storage driver (the compose test's), and a 2 GB layer of
# build packages copied twice more costs minutes there.
COPY . /src
RUN /src/scripts/install-deps.sh \
 && rm -rf /var/lib/apt/lists/* \
 && cmake -S /src -B /build -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_INSTALL_PREFIX=/opt/kbus \
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

# The launcher runs ffmpeg (and ffprobe checks what it wrote). Its packages do not wait for the
# build: with BuildKit they install while the build stage compiles.
FROM runtime AS launcher
COPY scripts/install-deps.sh /tmp/install-deps.sh
RUN /tmp/install-deps.sh --runtime-media && rm -rf /var/lib/apt/lists/* /tmp/install-deps.sh
COPY --from=build /opt/kbus/bin/ /opt/kbus/bin/
USER kbus
CMD ["kbus-launcher", "--help"]
