#!/usr/bin/env bash
# Removes every container, volume and network that the tests or the demo left behind, the
# metrics test's Prometheus directories, the proxy test's HAProxy, the web page tests' browsers,
# the second engine and the swarm.
set -uo pipefail
# That Prometheus dies with its test process, but a test killed outright leaves its directory.
rm -rf "${TMPDIR:-/tmp}"/bs-test-prometheus-*
# The browser of a web page test killed outright: its chromedriver dies with the test, the
# browser it started does not (tests/common/browser.rs); then its profile and logs.
pkill -KILL -f -- "--user-data-dir=${TMPDIR:-/tmp}/bs-test-browser-" 2>/dev/null
sleep 0.2
rm -rf "${TMPDIR:-/tmp}"/bs-test-browser-* "${TMPDIR:-/tmp}"/bs-test-chromedriver-*
# The socket proxy test's HAProxy, should its test process have been killed outright.
pkill -f 'haproxy -db -f .*compose/socket-proxy/haproxy.cfg' 2>/dev/null
# The copy tests' S3 server and its socat front (tests/common/copy_targets.rs): they die with
# their test process, this is for one killed outright.
pkill -KILL -f '^/opt/moto/bin/python.* /opt/moto/bin/moto_server|^/opt/moto/bin/moto_server' 2>/dev/null
pkill -KILL -f '^socat TCP-LISTEN:[0-9]+,bind=.* TCP:127\.0\.0\.1:' 2>/dev/null
# The second engine of the two-host test (tests/hosts.rs), should its test have been killed.
"$(dirname "$0")/second-engine.sh" stop /tmp/bs-test-engine-b >/dev/null 2>&1
command -v docker >/dev/null && docker info >/dev/null 2>&1 || exit 0
# The swarm test's stacks, and the swarm it made (tests/swarm.rs leaves a marker while it runs).
for stack in $(docker stack ls --format '{{.Name}}' 2>/dev/null | grep '^bst-'); do
  docker stack rm "$stack" >/dev/null 2>&1
done
if [ -e /tmp/bs-test-swarm ]; then
  sleep 5
  docker swarm leave --force >/dev/null 2>&1
  docker network rm docker_gwbridge >/dev/null 2>&1
  rm -f /tmp/bs-test-swarm
fi
for label in bs-test=1 backup-sidecar.demo=1 backup-sidecar.restore-helper; do
  ids=$(docker ps -aq --filter "label=$label")
  [ -n "$ids" ] && docker rm -f -v $ids >/dev/null
  vols=$(docker volume ls -q --filter "label=$label")
  [ -n "$vols" ] && docker volume rm -f $vols >/dev/null
  nets=$(docker network ls -q --filter "label=$label")
  [ -n "$nets" ] && docker network rm $nets >/dev/null
done
# Volumes a test's restore created (named after the test, without the test label).
vols=$(docker volume ls -q --filter name=^bst-)
[ -n "$vols" ] && docker volume rm -f $vols >/dev/null
# The soak's small disks (loop devices; tests/soak/faults.rs), should its test have been killed;
# not one still mounted (a soak running on a second engine).
losetup -n -l -O NAME,BACK-FILE 2>/dev/null | awk '$2 ~ /\/bs-test-disk-/ {print $1, $2}' |
  while read -r device file; do
    findmnt -S "$device" >/dev/null 2>&1 && continue
    losetup -d "$device" 2>/dev/null
    rm -rf "$(dirname "$file")"
  done
exit 0
