#!/usr/bin/env bash
# The demo: provisions what it runs (Docker, docker-compose, the base image), builds the sidecar's
# and the remote's images, makes keys, starts an app, a remote and the sidecar as
# compose/docker-compose.yml recommends, and shows the first mirror + snapshot in
# `docker logs backup-sidecar`. Setup output goes to compose/demo/.demo.log (shown when a step
# fails). `scripts/demo.sh down` removes it all.
set -euo pipefail
cd "$(dirname "$0")/.."
demo=compose/demo
compose() { docker-compose -p demo -f "$demo/docker-compose.yml" "$@"; }

if [ "${1:-}" = down ]; then
  compose down -v --remove-orphans
  rm -rf "$demo/.ssh" "$demo/.demo.log"
  exit 0
fi

started=$(date +%s)
log=$demo/.demo.log
: >"$log"
# Runs a setup step quietly; on failure shows its output and stops.
step() {
  local what=$1
  shift
  echo "demo: $what"
  if ! "$@" >>"$log" 2>&1; then
    tail -n 40 "$log" >&2
    echo "demo: $what failed (whole output in $log)" >&2
    exit 1
  fi
}

step "provisioning Docker and docker-compose" scripts/provision.sh
step "building the sidecar and the remote (a few minutes the first time)" scripts/build-images.sh

# Keys: the sidecar's client key, the remote's host key, and known_hosts pinning it.
mkdir -p "$demo/.ssh/remote"
ssh=$demo/.ssh
[ -s "$ssh/id_ed25519" ] || ssh-keygen -q -t ed25519 -N '' -C backup-sidecar -f "$ssh/id_ed25519"
[ -s "$ssh/remote/ssh_host_ed25519_key" ] || ssh-keygen -q -t ed25519 -N '' -f "$ssh/remote/ssh_host_ed25519_key"
echo "remote $(cut -d' ' -f1,2 "$ssh/remote/ssh_host_ed25519_key.pub")" > "$ssh/known_hosts"
[ -s "$ssh/borg_passphrase" ] || head -c 18 /dev/urandom | base64 > "$ssh/borg_passphrase"
[ -s "$ssh/web_password" ] || head -c 12 /dev/urandom | base64 | tr -d '/+=' > "$ssh/web_password"
chmod 600 "$ssh/id_ed25519" "$ssh/borg_passphrase" "$ssh/web_password"

step "starting the app, its database and the remote" compose up -d app db remote
for _ in $(seq 1 30); do
  compose logs remote 2>&1 | grep -q "Server listening" && break
  sleep 1
done
# The remote's guard creates the append-only repository (what `backup-sidecar init` does on a Pi).
step "creating the remote's borg repository" \
  compose exec -T remote /usr/local/lib/backup-sidecar/guard --setup <"$ssh/borg_passphrase"
step "starting the sidecar" compose up -d backup-sidecar

echo "demo: waiting for the first run (mirror + snapshot)"
for _ in $(seq 1 60); do
  docker logs backup-sidecar 2>&1 | grep -q "run finished" && break
  sleep 1
done
echo
echo "---- docker logs backup-sidecar"
docker logs backup-sidecar 2>&1
echo "----"
echo "demo: ready in $(($(date +%s) - started)) s. The sidecar now mirrors every minute. Next:"
echo "  The web page:       http://localhost:8080/  (password: $(cat "$ssh/web_password"))"
cat <<'NEXT'
  What it backs up:   docker exec backup-sidecar backup-sidecar plan
  Preflight:          docker exec backup-sidecar backup-sidecar check
  Snapshot now:       docker kill -s USR1 backup-sidecar; docker logs -f backup-sidecar
  Archives:           docker exec backup-sidecar backup-sidecar snapshots
  How backups go:     docker exec backup-sidecar backup-sidecar status
  Restore a volume:   docker exec backup-sidecar backup-sidecar restore demo_app-data --from latest --yes
  Remove it all:      scripts/demo.sh down
NEXT
docker logs backup-sidecar 2>&1 | grep "run finished" | head -n1 | grep -q 'outcome="success"'
