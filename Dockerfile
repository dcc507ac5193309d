# One image for kbus's binaries (the kbus CLI, the quickstart worker), built with the same
# dependency script as CI and the README.
FROM debian:bookworm AS build
WORKDIR /src
COPY scripts/install-deps.sh scripts/install-deps.sh
RUN scripts/install-deps.sh
COPY . .
RUN cmake -S . -B /build -G Ninja -DCMAKE_BUILD_TYPE=Release -DKBUS_BUILD_TESTS=OFF \
      -DKBUS_BUILD_BENCH=OFF -DCMAKE_INSTALL_PREFIX=/opt/kbus \
 && cmake --build /build \
 && cmake --install /build \
 && install -m 0755 /build/examples/quickstart/quickstart-worker /opt/kbus/bin/

FROM debian:bookworm-slim
COPY scripts/install-deps.sh /tmp/install-deps.sh
RUN /tmp/install-deps.sh --runtime && rm -rf /var/lib/apt/lists/* /tmp/install-deps.sh
COPY --from=build /opt/kbus /opt/kbus
ENV PATH=/opt/kbus/bin:$PATH
USER nobody
ENTRYPOINT ["kbus"]
