# scimd container image.
#
#   docker build -t scimd .                                  # compiles in the `builder` stage (Rust image)
#   cargo build --release && strip -o target/container/scimd target/release/scimd && \
#   docker build --build-arg BINARY_FROM=prebuilt -t scimd . # takes target/container/scimd from the context
#   docker run -p 8000:8000 -v scimd-data:/data scimd        # key generated into /data/api-key if API_KEY unset
#
# The binary must be built for glibc of Debian 12 (bookworm) or older: the runtime is debian:bookworm-slim.
# scimd runs as PID 1 and handles SIGTERM itself (stops accepting, finishes in-flight requests, closes the
# store); it starts no child processes, so no init is needed (`--init` does no harm).

# Where the binary comes from: `builder` (compile here) or `prebuilt` (copy target/container/scimd, which
# scripts/container-test fills with a stripped build).
ARG BINARY_FROM=builder

# ---- builder: compiles scimd (for users; needs the Rust image) ------------------------------------------------
FROM rust:1-bookworm AS builder
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin scimd \
 && install -D -m 0755 target/release/scimd /out/scimd

# ---- prebuilt: a binary built outside, from the context --------------------------------------------------------
FROM scratch AS prebuilt
COPY target/container/scimd /out/scimd

# ---- the chosen one --------------------------------------------------------------------------------------------
FROM ${BINARY_FROM} AS binary

# ---- runtime ---------------------------------------------------------------------------------------------------
FROM debian:bookworm-slim AS runtime
# ca-certificates: outbound TLS (amqps://, database URLs with TLS). A fixed uid/gid, so that volumes and
# Kubernetes' runAsUser/fsGroup can name it. /data belongs to it: a fresh named volume inherits that.
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/archives/*.deb \
 && groupadd --gid 10001 scimd \
 && useradd --no-log-init --uid 10001 --gid 10001 --home-dir /data --no-create-home --shell /usr/sbin/nologin scimd \
 && install -d -o 10001 -g 10001 -m 0750 /data

COPY --from=binary /out/scimd /usr/local/bin/scimd

# No secrets here: API_KEY, AMQP and DATABASE_URL come at run time (-e, --env-file, a Kubernetes Secret).
ENV LISTEN=0.0.0.0:8000 \
    DATA_PATH=/data
VOLUME ["/data"]
EXPOSE 8000
USER 10001:10001
WORKDIR /data
STOPSIGNAL SIGTERM
# `scimd health` sees the container's environment: with TLS_CERT set it checks over HTTPS.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 CMD ["scimd", "health"]
ENTRYPOINT ["scimd"]
CMD ["serve"]

# Last, so that a new revision or date does not invalidate the cached layers above.
ARG VERSION=0.1.0
ARG REVISION=unknown
ARG CREATED=unknown
LABEL org.opencontainers.image.title="scimd" \
      org.opencontainers.image.description="SCIM 2.0 provisioning server backed by an append-only event log" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.base.name="debian:bookworm-slim"
