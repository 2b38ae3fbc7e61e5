# tokenbrokerd and tokenbrokerctl on Debian 12, built from Debian's packages only.
#
#   scripts/build-image            # podman (or docker); makes the base image with
#                                  # debootstrap where none can be pulled
#   docker build --build-arg REVISION=$(git rev-parse --short=12 HEAD) -t tokenbroker:0.1.0 .
#
# The runtime stage holds the two binaries, the shared libraries they link
# (worked out from the binaries in the build stage) and CA certificates. It runs
# as uid/gid 10001 with a read-only root filesystem: the only writable places it
# needs are /var/lib/tokenbroker (a volume: the SQLite database) and /tmp (an
# emptyDir or tmpfs). Configuration and secrets are mounted under
# /etc/tokenbroker/ (docs/kubernetes.md).
ARG BASE_IMAGE=docker.io/library/debian:12-slim

FROM ${BASE_IMAGE} AS build
ARG REVISION=""
WORKDIR /src
COPY scripts/install-deps scripts/install-deps
RUN scripts/install-deps
COPY CMakeLists.txt ./
COPY cmake cmake
COPY proto proto
COPY service service
COPY client client
RUN cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release -DTOKENBROKER_BUILD_TESTS=OFF \
      -DTOKENBROKER_REVISION="${REVISION}" \
 && cmake --build build --target tokenbrokerd tokenbrokerctl \
 && mkdir -p /out/bin \
 && install -m 0755 -s build/bin/tokenbrokerd build/bin/tokenbrokerctl /out/bin/
# The Debian packages of every shared library the binaries load: the runtime
# stage installs exactly these (on merged /usr, dpkg knows some files by their
# /lib path).
RUN set -eu; \
    for lib in $(ldd /out/bin/tokenbrokerd /out/bin/tokenbrokerctl | awk '$2 == "=>" && $3 ~ /^\// {print $3}' | sort -u); do \
      real="$(realpath "$lib")"; \
      dpkg -S "$lib" 2>/dev/null || dpkg -S "$real" 2>/dev/null || dpkg -S "${real#/usr}"; \
    done | cut -d: -f1 | sort -u > /out/runtime-packages; \
    cat /out/runtime-packages

FROM ${BASE_IMAGE}
ARG VERSION=0.1.0
ARG REVISION=""
LABEL org.opencontainers.image.title="tokenbroker" \
      org.opencontainers.image.description="The one place where mailbox credentials live: OAuth2 tokens and IMAP over gRPC" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.source="https://github.com/tokenbroker/tokenbroker" \
      org.opencontainers.image.licenses="NOASSERTION" \
      org.opencontainers.image.base.name="debian:12-slim"
COPY --from=build /out/runtime-packages /tmp/runtime-packages
RUN apt-get update -q \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends ca-certificates $(cat /tmp/runtime-packages) \
 && apt-get clean \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/* /var/log/* /tmp/runtime-packages \
 && groupadd --system --gid 10001 tokenbroker \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /var/lib/tokenbroker \
      --shell /usr/sbin/nologin tokenbroker \
 && install -d -o 10001 -g 10001 -m 0700 /var/lib/tokenbroker \
 && install -d -m 0755 /etc/tokenbroker \
 && find / -xdev -type f -perm /6000 -exec chmod a-s {} +
COPY --from=build /out/bin/tokenbrokerd /out/bin/tokenbrokerctl /usr/local/bin/
USER 10001:10001
WORKDIR /var/lib/tokenbroker
ENV TMPDIR=/tmp
EXPOSE 50051 50052 9464
STOPSIGNAL SIGTERM
# Exec form: SIGTERM reaches tokenbrokerd itself, which drains and exits 0.
ENTRYPOINT ["/usr/local/bin/tokenbrokerd"]
CMD ["--config", "/etc/tokenbroker/config/config.yaml"]
