#!/usr/bin/env bash
# Runs every test: unit tests, and the end-to-end tests against a real Docker engine, a real
# sshd/rsync/borg remote and the sidecar image built from this tree. Provisions what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
# The remote guard's lint and unit tests first: a second, and no Docker.
scripts/guard-tests.sh
scripts/provision.sh --tests
scripts/build-images.sh --tests
# The end-to-end tests run one at a time: they time freezes, and this machine has two cores.
# --nocapture: the fault suite prints its table, and progress shows while the tests run.
cargo test --locked --no-fail-fast -- --test-threads=1 --nocapture "$@"
