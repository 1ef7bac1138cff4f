#!/usr/bin/env bash
# Builds the sidecar binary and the images the demo uses:
#   backup-sidecar:latest            the Dockerfile's prebuilt target, with target/release/backup-sidecar
#   backup-sidecar-remote:latest     compose/remote/
# and with `--tests` those only the tests use:
#   backup-sidecar-receivers:latest  compose/receivers/: the notification receivers
#   backup-sidecar-databases:latest  tests/images/databases/: Debian's database servers
set -euo pipefail
cd "$(dirname "$0")/.."
tests=false
[ "${1:-}" = --tests ] && tests=true
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
built="backup-sidecar:latest and backup-sidecar-remote:latest"
if $tests; then
  build -t backup-sidecar-receivers:latest compose/receivers
  build -t backup-sidecar-databases:latest tests/images/databases
  built="backup-sidecar:latest, backup-sidecar-remote:latest, backup-sidecar-receivers:latest \
and backup-sidecar-databases:latest"
fi
# Rebuilds leave the previous images untagged.
docker image prune -f >/dev/null
echo "built $built"
