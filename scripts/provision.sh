#!/usr/bin/env bash
# Gets a fresh Debian machine ready for the demo: a running Docker engine, docker-compose, ssh-keygen
# and a local debian:bookworm-slim (built with debootstrap when no registry can be reached).
# `--tests` adds the host tools only the tests use. Starts nothing that already runs.
set -euo pipefail
cd "$(dirname "$0")/.."
tests=false
[ "${1:-}" = --tests ] && tests=true

need=()
command -v dockerd >/dev/null || need+=(docker.io)
command -v debootstrap >/dev/null || need+=(debootstrap)
command -v ssh-keygen >/dev/null || need+=(openssh-client)
# The demo and the project tests run real compose projects.
command -v docker-compose >/dev/null || need+=(docker-compose)
if $tests; then
  command -v socat >/dev/null || need+=(socat)
  # The capture's unit tests compare with real rsync and change xattrs and ACLs.
  command -v rsync >/dev/null || need+=(rsync)
  command -v setfattr >/dev/null || need+=(attr)
  command -v setfacl >/dev/null || need+=(acl)
  # The S3 server of the copy tests is installed below into a venv of Debian's Python.
  /usr/bin/python3 -c 'import ensurepip, venv' 2>/dev/null || need+=(python3-venv)
fi
if [ ${#need[@]} -gt 0 ]; then
  echo "provision: installing ${need[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
# The metrics test scrapes the sidecar with a real Prometheus and lints with promtool (one
# package). Without its recommends: the node exporter is not needed, and the test starts its own
# Prometheus on a free port.
# The socket proxy test runs Debian's HAProxy on the host with compose/socket-proxy/haproxy.cfg.
# The web page's tests drive Debian's Chromium, headless, through its chromedriver
# (tests/common/browser.rs); without its recommends: the sandbox helper is not needed, the tests
# run it with --no-sandbox as root.
lean=()
if $tests; then
  command -v haproxy >/dev/null || lean+=(haproxy)
  command -v promtool >/dev/null || lean+=(prometheus)
  command -v chromium >/dev/null || lean+=(chromium)
  command -v chromedriver >/dev/null || lean+=(chromium-driver)
fi
if [ ${#lean[@]} -gt 0 ]; then
  echo "provision: installing ${lean[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${lean[@]}" >/dev/null
fi

# The copy tests' S3 server (tests/common/copy_targets.rs): moto's, from PyPI, in memory, run by
# the tests as a host process. In its own venv, pinned; reinstalled only when missing or another
# version.
moto=5.2.6
if $tests && ! /opt/moto/bin/python -c "import sys, moto; sys.exit(moto.__version__ != '$moto')" \
    2>/dev/null; then
  echo "provision: installing moto $moto in /opt/moto"
  rm -rf /opt/moto
  /usr/bin/python3 -m venv /opt/moto
  /opt/moto/bin/pip install -q --disable-pip-version-check "moto[server]==$moto"
fi

if ! docker info >/dev/null 2>&1; then
  echo "provision: starting dockerd"
  # A dockerd killed with its session leaves its pid file behind, which stops the next one.
  if ! pgrep -x dockerd >/dev/null; then
    rm -f /var/run/docker.pid /run/docker/containerd/containerd.pid
  fi
  nohup dockerd >/var/log/dockerd.log 2>&1 &
  pid=$!
  for _ in $(seq 1 60); do
    docker info >/dev/null 2>&1 && break
    kill -0 "$pid" 2>/dev/null || break
    sleep 1
  done
  docker info >/dev/null 2>&1 || { tail -n 20 /var/log/dockerd.log; echo "provision: dockerd did not start" >&2; exit 1; }
fi

scripts/base-image.sh
