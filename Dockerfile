# backup-sidecar image.
#
#   docker build -t backup-sidecar .                       # builds from source in a Rust image
#   docker build --target prebuilt -t backup-sidecar .     # takes a binary built on the host
#                                                          # (BINARY=target/release/backup-sidecar)
#
# The legacy builder (DOCKER_BUILDKIT=0) builds every stage before the requested target, so the
# prebuilt target stands before the Rust build stage: it never needs the Rust image.

FROM debian:bookworm-slim AS runtime
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends rsync openssh-client tini borgbackup \
 && rm -rf /var/lib/apt/lists/*
# borg: `restore --from ARCHIVE` runs `borg extract` here, against the remote repository over ssh.
# Root: the sidecar must read every file of every volume, whoever owns it.
ENTRYPOINT ["/usr/bin/tini", "--", "backup-sidecar"]
CMD ["run"]
# Healthy means "backups are current" (see docs/monitoring.md, "Health"), not merely "running".
HEALTHCHECK --interval=60s --timeout=10s --start-period=30s --retries=3 CMD ["backup-sidecar", "health"]

FROM runtime AS prebuilt
ARG BINARY=target/release/backup-sidecar
COPY ${BINARY} /usr/local/bin/backup-sidecar

FROM rust:1-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY compose/remote/guard.py compose/remote/rsyncd.conf ./compose/remote/
RUN cargo build --release --locked

FROM runtime
COPY --from=build /src/target/release/backup-sidecar /usr/local/bin/backup-sidecar
