#!/usr/bin/env bash
# Removes every container, volume and network that the tests or the demo left behind, the
# metrics test's Prometheus directories and the proxy test's HAProxy.
set -uo pipefail
# That Prometheus dies with its test process, but a test killed outright leaves its directory.
rm -rf "${TMPDIR:-/tmp}"/bs-test-prometheus-*
# The socket proxy test's HAProxy, should its test process have been killed outright.
pkill -f 'haproxy -db -f .*compose/socket-proxy/haproxy.cfg' 2>/dev/null
command -v docker >/dev/null && docker info >/dev/null 2>&1 || exit 0
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
exit 0
