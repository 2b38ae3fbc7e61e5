# tokenbrokerd container image: built on Debian 12 from Debian packages only.
#   docker build -t tokenbroker .
# The Kubernetes packaging work adds the manifests and Helm chart that run it.
FROM debian:12 AS build
WORKDIR /src
COPY . .
RUN scripts/install-deps \
 && cmake -S . -B build/release -G Ninja -DCMAKE_BUILD_TYPE=Release -DTOKENBROKER_BUILD_TESTS=OFF \
 && cmake --build build/release --target tokenbrokerd tokenbrokerctl

FROM debian:12-slim
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      ca-certificates libgrpc++1.51 libprotobuf32 libabsl20220623 libprometheus-cpp-core1.0 \
      libprometheus-cpp-pull1.0 libyaml-cpp0.7 libsqlite3-0 libpq5 libcurl4 libssl3 \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /var/lib/tokenbroker --create-home tokenbroker
COPY --from=build /src/build/release/bin/tokenbrokerd /src/build/release/bin/tokenbrokerctl /usr/local/bin/
USER 10001:10001
WORKDIR /var/lib/tokenbroker
EXPOSE 50051 9464
ENTRYPOINT ["/usr/local/bin/tokenbrokerd"]
CMD ["--config", "/etc/tokenbroker/config.yaml"]
