#!/usr/bin/env bash
# The demo: builds the images, makes keys, starts an app, a remote and the sidecar, and shows a full
# mirror + snapshot in `docker logs backup-sidecar`. `scripts/demo.sh down` removes it all.
set -euo pipefail
cd "$(dirname "$0")/.."
demo=compose/demo
compose() { docker-compose -p demo -f "$demo/docker-compose.yml" "$@"; }

if [ "${1:-}" = down ]; then
  compose down -v --remove-orphans
  rm -rf "$demo/.ssh"
  exit 0
fi

scripts/provision.sh
command -v docker-compose >/dev/null || {
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker-compose >/dev/null
}
scripts/build-images.sh

# Keys: the sidecar's client key, the remote's host key, and known_hosts pinning it.
mkdir -p "$demo/.ssh/remote"
ssh=$demo/.ssh
[ -s "$ssh/id_ed25519" ] || ssh-keygen -q -t ed25519 -N '' -C backup-sidecar -f "$ssh/id_ed25519"
[ -s "$ssh/remote/ssh_host_ed25519_key" ] || ssh-keygen -q -t ed25519 -N '' -f "$ssh/remote/ssh_host_ed25519_key"
echo "remote $(cut -d' ' -f1,2 "$ssh/remote/ssh_host_ed25519_key.pub")" > "$ssh/known_hosts"
[ -s "$ssh/borg_passphrase" ] || head -c 18 /dev/urandom | base64 > "$ssh/borg_passphrase"
chmod 600 "$ssh/id_ed25519" "$ssh/borg_passphrase"

compose up -d app db remote
for _ in $(seq 1 30); do
  compose logs remote 2>&1 | grep -q "Server listening" && break
  sleep 1
done
# The remote's guard creates the append-only repository (what `backup-sidecar init` does on a Pi).
compose exec -T remote /usr/local/lib/backup-sidecar/guard --setup < "$ssh/borg_passphrase" >/dev/null
compose up -d backup-sidecar

echo "waiting for the first run (mirror + snapshot) ..."
for _ in $(seq 1 60); do
  docker logs backup-sidecar 2>&1 | grep -q "run finished" && break
  sleep 1
done
echo "---- docker logs backup-sidecar"
docker logs backup-sidecar 2>&1
echo "----"
echo "The sidecar now mirrors every minute; snapshot now: docker kill -s USR1 backup-sidecar"
echo "Archives:  docker exec backup-sidecar backup-sidecar snapshots"
echo "Restore:   docker exec backup-sidecar backup-sidecar restore demo_app-data --from latest --yes"
echo "Remove it all: scripts/demo.sh down"
docker logs backup-sidecar 2>&1 | grep "run finished" | head -n1 | grep -q 'outcome="success"'
