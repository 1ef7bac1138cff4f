#!/bin/sh
# Initialises the cluster in /data/pg on first start, then runs the server in the foreground.
set -eu
bin=$(ls -d /usr/lib/postgresql/*/bin | tail -n 1)
mkdir -p /data/pg /run/postgresql
chown postgres:postgres /data/pg /run/postgresql
if [ ! -s /data/pg/PG_VERSION ]; then
  runuser -u postgres -- "$bin/initdb" -D /data/pg -A trust >/dev/null
fi
exec runuser -u postgres -- "$bin/postgres" -D /data/pg -k /run/postgresql -c listen_addresses=''
