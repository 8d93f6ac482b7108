# syntax=docker/dockerfile:1
#
# The toad image: a static binary on distroless, run as a numeric non-root
# user, holding CAP_NET_RAW as a file capability; beside it the preload
# libraries for unmodified programs (/libtoad_preload.so for glibc,
# /libtoad_preload_musl.so for musl), which toad serve --preload-library-dir
# copies into a volume the application shares.
#
#   docker buildx build -t toad --build-arg VERSION=$(git describe --tags --always) .
#
# Build with BuildKit (the default builder since Docker 23): it keeps the
# security.capability extended attribute when COPY --from copies the binary
# out of the build stage. Some builders have been reported to drop it (kaniko,
# older legacy Docker builders); without it the non-root configuration in
# deploy/README.md cannot open its packet socket. deploy/README.md explains
# the two ways to grant the capability in a pod.
#
# Base images are pinned by tag. For reproducible builds pin them by digest as
# well, e.g. golang:1.26@sha256:<digest>, and let a bot bump the digests.

FROM --platform=$BUILDPLATFORM golang:1.26 AS build

RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends libcap2-bin \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /src
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .

# Cross-compiles for the target platform: no cgo, so no emulation is needed.
ARG TARGETOS
ARG TARGETARCH
ARG VERSION=dev
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 GOOS=$TARGETOS GOARCH=$TARGETARCH \
    go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/ ./cmd/toad ./cmd/toactl

# The file capability lets the non-root user open AF_PACKET sockets. -v checks
# that it was written. setcap only writes an extended attribute, so it works on
# a binary built for another architecture.
RUN setcap cap_net_raw+ep /out/toad && setcap -v cap_net_raw+ep /out/toad

# The preload libraries (C, libc only), for glibc and for musl. This stage
# runs on the target platform, not $BUILDPLATFORM: the C compiler builds
# for the machine it runs on, so an image for another architecture builds
# it under emulation (binfmt), while the Go stage above cross-compiles.
# The glibc library needs the glibc of Debian 12 (2.36) or newer in the
# application's image; the musl one suits Alpine.
FROM debian:12 AS preload

RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends gcc libc6-dev make musl-tools \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /src
COPY preload/ preload/
RUN make -C preload OUT=/out

FROM gcr.io/distroless/static-debian12:nonroot

LABEL org.opencontainers.image.title="toad" \
      org.opencontainers.image.description="Real client addresses from TOA TCP options, served over gRPC" \
      org.opencontainers.image.source="https://github.com/toad-project/toad"

# No --chown: changing the owner of a file clears its file capabilities.
COPY --from=build /out/toad /out/toactl /
# Beside /toad, where --preload-library-dir finds them.
COPY --from=preload /out/libtoad_preload.so /out/libtoad_preload_musl.so /

# Numeric, so that the kubelet can verify runAsNonRoot.
USER 65532:65532

# gRPC health (grpc.health.v1 only), for kubelet probes.
EXPOSE 50052

ENTRYPOINT ["/toad"]
CMD ["serve"]
