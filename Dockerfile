# syntax=docker/dockerfile:1
# leaseguard container image: make image (or docker build -t leaseguard .).
# The build stage makes a static binary (no cgo, no libc); the final stage is
# distroless static, non-root, with no shell or package manager: the image
# holds the binary, CA certificates, time zone data and /etc/passwd.
# deploy/container/image_test.go runs this file's go build line as written
# and checks the binary is static, so keep that RUN on one line.

ARG GO_VERSION=1.26.8

FROM golang:${GO_VERSION} AS build
WORKDIR /src
# Modules first: a source change does not download them again.
COPY go.mod go.sum ./
RUN go mod download
COPY . .
# VERSION is stamped into `leaseguard version` (make image passes git describe).
ARG VERSION=dev
RUN CGO_ENABLED=0 go build -trimpath -buildvcs=false -ldflags="-s -w -X main.version=${VERSION}" -o /out/leaseguard ./cmd/leaseguard
# LEASEGUARD_DATA_DIR, owned by the nonroot user (65532), for when no volume
# is mounted there.
RUN mkdir -p /out/var/lib/leaseguard

FROM gcr.io/distroless/static:nonroot
COPY --from=build /out/leaseguard /usr/local/bin/leaseguard
COPY --from=build --chown=65532:65532 /out/var/lib/leaseguard /var/lib/leaseguard
USER nonroot:nonroot
# Metrics, /livez and /readyz (LEASEGUARD_METRICS_ADDR).
EXPOSE 9464
ENTRYPOINT ["/usr/local/bin/leaseguard"]
CMD ["run"]
