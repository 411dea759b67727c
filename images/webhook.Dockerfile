# syntax=docker/dockerfile:1
# mesh-webhook: the sidecar injection webhook, on distroless (glibc, CA certificates, no shell), non-root.
# Build from the repository root:
#   docker build -f images/webhook.Dockerfile -t ghcr.io/mesh-project/mesh-webhook:0.1.0 .
ARG RUST_VERSION=1.95
FROM docker.io/library/rust:${RUST_VERSION}-bookworm AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p mesh-webhook \
    && install -D -m 0755 target/release/mesh-webhook /out/mesh-webhook

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/mesh-webhook /usr/local/bin/mesh-webhook
# distroless "nonroot": UID/GID 65532, the chart's runAsUser/runAsGroup.
USER 65532:65532
# HTTPS admission reviews; /healthz, /readyz and /metrics.
EXPOSE 15017 15014
ENTRYPOINT ["/usr/local/bin/mesh-webhook"]
