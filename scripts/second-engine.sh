#!/usr/bin/env bash
# A second Docker engine on this machine, standing in for a second host (tests/hosts.rs): its own
# data root, exec root, pid file, socket and bridge, no iptables rules of its own (its containers
# reach the host's addresses on its bridge, where the first engine publishes the remote).
#   scripts/second-engine.sh start DIR   starts it (socket DIR/docker.sock, host name NAME, default
#                                        bs-host-b) and loads the images named in IMAGES into it
#   scripts/second-engine.sh stop DIR    removes its containers, stops it, removes DIR and the bridge
set -euo pipefail
cmd=${1:?start or stop}
dir=${2:?the engine directory}
# BRIDGE and ADDRESS let two such engines run side by side (the soak's and tests/hosts.rs's); POOL
# gives its networks addresses of their own (the first engine's forward policy drops the traffic
# between them unless a DOCKER-USER rule lets that range through).
bridge=${BRIDGE:-bs-engine2}
address=${ADDRESS:-10.199.0.1/24}
sock="unix://$dir/docker.sock"
case "$cmd" in
start)
  mkdir -p "$dir"
  if ! ip link show "$bridge" >/dev/null 2>&1; then
    ip link add "$bridge" type bridge
    ip addr add "$address" dev "$bridge"
    ip link set "$bridge" up
  fi
  if ! docker -H "$sock" info >/dev/null 2>&1; then
    # Its own host name (a UTS namespace), as a second machine has: the engine's name is it.
    nohup unshare --uts sh -c 'hostname "$0" && exec "$@"' "${NAME:-bs-host-b}" \
      dockerd --data-root "$dir/data" --exec-root "$dir/exec" --pidfile "$dir/docker.pid" \
      -H "$sock" --bridge "$bridge" --iptables=false --ip-masq=false --ip-forward=false \
      --cgroup-parent bs-engine2 ${POOL:+--default-address-pool "base=$POOL,size=24"} \
      >"$dir/dockerd.log" 2>&1 &
    for _ in $(seq 1 60); do
      docker -H "$sock" info >/dev/null 2>&1 && break
      sleep 0.5
    done
    docker -H "$sock" info >/dev/null 2>&1 || { tail -n 20 "$dir/dockerd.log" >&2; exit 1; }
  fi
  for image in ${IMAGES:-}; do
    docker save "$image" | docker -H "$sock" load -q >/dev/null
  done
  ;;
stop)
  if [ -e "$dir/docker.pid" ]; then
    ids=$(docker -H "$sock" ps -aq 2>/dev/null || true)
    [ -z "$ids" ] || docker -H "$sock" rm -f -v $ids >/dev/null 2>&1 || true
    docker -H "$sock" volume prune -f >/dev/null 2>&1 || true
    pid=$(cat "$dir/docker.pid")
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    kill -9 "$pid" 2>/dev/null || true
  fi
  # Mounts it left (overlay layers, netns) go before the directory does.
  grep -o " $dir/[^ ]*" /proc/mounts | sort -r | xargs -r -n1 umount -l 2>/dev/null || true
  rm -rf "$dir"
  ip link del "$bridge" 2>/dev/null || true
  ;;
*)
  echo "usage: $0 start|stop DIR" >&2; exit 2 ;;
esac
