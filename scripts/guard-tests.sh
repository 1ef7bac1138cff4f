#!/usr/bin/env bash
# The remote guard's own checks, quick and without Docker: Debian's flake8 (pyflakes and
# pycodestyle, the same version on every bookworm machine) over compose/remote/guard.py and its
# tests, then the unit tests. Both with Debian's /usr/bin/python3, the interpreter the guard runs
# under on the remote, and Debian's rclone for the copy's tests (they never skip). Installs what is
# missing.
set -euo pipefail
cd "$(dirname "$0")/.."
need=()
[ -x /usr/bin/python3 ] || need+=(python3)
[ -x /usr/bin/flake8 ] || need+=(flake8)
# The copy's tests run Debian's rclone for real (the remote image has the same one).
[ -x /usr/bin/rclone ] || need+=(rclone)
if [ ${#need[@]} -gt 0 ]; then
  echo "guard-tests: installing ${need[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
echo "guard-tests: flake8 $(/usr/bin/flake8 --version | head -n 1)"
# 100 columns: the guard's own style.
/usr/bin/flake8 --max-line-length=100 --show-source \
  compose/remote/guard.py compose/remote/test_guard.py
# No __pycache__ left next to the guard.
PYTHONDONTWRITEBYTECODE=1 /usr/bin/python3 -m unittest discover -s compose/remote -p 'test_*.py' -v
