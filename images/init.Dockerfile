# syntax=docker/dockerfile:1
# mesh-init: the init container that programs traffic capture, a drop-in for istio-iptables.
# Carries iptables (legacy and nft back ends, with iptables-restore/-save) and nftables (nft).
# The injected container runs `istio-iptables <flags>` as its arguments, with NET_ADMIN and NET_RAW.
# Build from the repository root:
#   docker build -f images/init.Dockerfile -t ghcr.io/mesh-project/mesh-init:0.1.0 .
ARG RUST_VERSION=1.95
FROM docker.io/library/rust:${RUST_VERSION}-bookworm AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p mesh-init \
    && install -D -m 0755 target/release/mesh-init /out/mesh-init

FROM docker.io/library/debian:bookworm-slim
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends iptables nftables iproute2 \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /out/mesh-init /usr/local/bin/mesh-init
# Root is needed to program the pod's network namespace (the injector sets runAsUser 0 with NET_ADMIN
# and NET_RAW); in CNI mode the validation container runs it as 1337.
USER 0:0
ENTRYPOINT ["/usr/local/bin/mesh-init"]
