#!/usr/bin/env bash
# Builds the sidecar binary and the images the demo and the tests use:
#   backup-sidecar:latest            the Dockerfile's prebuilt target, with target/release/backup-sidecar
#   backup-sidecar-remote:latest     compose/remote/
#   backup-sidecar-receivers:latest  compose/receivers/: the notification receivers (tests only)
#   backup-sidecar-databases:latest  tests/images/databases/: Debian's database servers (tests only)
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked
export DOCKER_BUILDKIT=0
build() {
  local log
  log=$(mktemp)
  if ! docker build "$@" >"$log" 2>&1; then
    cat "$log" >&2
    rm -f "$log"
    return 1
  fi
  rm -f "$log"
}
build --target prebuilt -t backup-sidecar:latest .
build -t backup-sidecar-remote:latest compose/remote
build -t backup-sidecar-receivers:latest compose/receivers
build -t backup-sidecar-databases:latest tests/images/databases
# Rebuilds leave the previous images untagged.
docker image prune -f >/dev/null
echo "built backup-sidecar:latest, backup-sidecar-remote:latest, backup-sidecar-receivers:latest \
and backup-sidecar-databases:latest"
