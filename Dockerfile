# syntax=docker/dockerfile:1

# Wemesse update server: a static, CGO-free binary (the same build as
# `make build`) on a small Alpine base that runs as a non-root user.
#
#   docker build -t wemesse .
#   docker run -p 9000:9000 -e WEMESSE_SIGNATURE=... -v wemesse-uploads:/var/lib/wemesse/uploads \
#     -v wemesse-data:/var/lib/wemesse/data wemesse
#
# Alpine rather than distroless because busybox wget gives HEALTHCHECK
# something to call; the binary has no health-check subcommand.

FROM golang:1.26-bookworm AS build
WORKDIR /src
# Modules first, in their own layer: it is rebuilt only when go.mod or go.sum
# change, not on every source edit.
COPY go.mod go.sum ./
RUN go mod download && go mod verify
COPY . .
RUN --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/wemesse ./cmd/wemesse

FROM alpine:3.22
# A fixed numeric UID/GID, so that orchestrators can check runAsNonRoot and
# bind mounts can be chowned to it (chown 10001:10001 DIR).
RUN addgroup -S -g 10001 wemesse \
 && adduser -S -D -H -u 10001 -G wemesse -h /var/lib/wemesse -s /sbin/nologin wemesse \
 && mkdir -p /var/lib/wemesse/uploads /var/lib/wemesse/data \
 && chown -R 10001:10001 /var/lib/wemesse
COPY --from=build /out/wemesse /usr/local/bin/wemesse

# The working directory is where the server looks for an optional .env file.
WORKDIR /var/lib/wemesse
ENV WEMESSE_ADDR=:9000 \
    WEMESSE_DATABASE_URL=/var/lib/wemesse/data/wemesse.db \
    WEMESSE_UPLOAD_DIR=/var/lib/wemesse/uploads
# Builds, and the SQLite file when no postgres:// URL is given. New named
# volumes inherit the ownership set above.
VOLUME ["/var/lib/wemesse/uploads", "/var/lib/wemesse/data"]
USER 10001:10001
EXPOSE 9000

# Plain HTTP on the container's loopback; with WEMESSE_TLS_CERT/KEY set the
# server speaks only HTTPS, so override this check (or terminate TLS in a
# proxy in front instead).
HEALTHCHECK --interval=30s --timeout=5s --start-period=15s --retries=3 \
    CMD wget -q -O /dev/null http://127.0.0.1:9000/healthz || exit 1

ENTRYPOINT ["/usr/local/bin/wemesse"]
CMD ["serve"]
