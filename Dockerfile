# Portcullis gateway image: a static binary on distroless, run as non-root.
#
#   docker build --build-arg VERSION=$(git describe --tags --always) -t portcullis/gateway .
#
# The build command below is also run by the test suite outside Docker
# (e2e/deploy_docker_test.go extracts it from this file), which checks that
# it yields a static binary with the version stamped in.

ARG GO_VERSION=1.26

FROM golang:${GO_VERSION}-bookworm AS build
WORKDIR /src
# Modules first, so a source change does not re-download them.
COPY go.mod go.sum ./
RUN go mod download
COPY cmd ./cmd
COPY internal ./internal
ARG VERSION=dev
# TARGETOS/TARGETARCH are set by BuildKit for multi-platform builds.
ARG TARGETOS
ARG TARGETARCH
RUN CGO_ENABLED=0 GOOS=${TARGETOS:-linux} GOARCH=${TARGETARCH:-amd64} go build -trimpath -ldflags="-s -w -X github.com/portcullis/portcullis/internal/gateway.Version=${VERSION}" -o /out/gateway ./cmd/gateway

# distroless/static: CA certificates, tzdata and /etc/passwd with a nonroot
# user, and nothing else (no shell, no package manager, no curl).
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/gateway /gateway
# 65532 is distroless's "nonroot"; numeric so Kubernetes' runAsNonRoot can
# verify it without reading /etc/passwd.
USER 65532:65532
# The ops endpoints (/metrics, /stats, /monitor, the admin API, the detailed
# /health) stay on the container's own loopback unless the deployment says
# otherwise: a plain `docker run -p 9777:9777` exposes the public port and
# nothing else. Compose and Kubernetes set OPS_ADDR=:9778 so Prometheus can
# reach it over their private network.
ENV GATEWAY_PORT=:9777 \
    OPS_ADDR=127.0.0.1:9778 \
    DASHBOARD=off
# Only the public port: `docker run -P` publishes every EXPOSEd port on all
# of the host's addresses, and the ops port must never be one of them.
EXPOSE 9777
# No curl in the image: the binary probes itself, GET /health on OPS_ADDR
# (a host-less ":9778" is probed on 127.0.0.1, inside the container), or on
# GATEWAY_PORT only with OPS_ADDR=public. Exit 0 healthy, 1 not.
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
    CMD ["/gateway", "healthcheck"]
ENTRYPOINT ["/gateway"]
