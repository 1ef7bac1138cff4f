#!/bin/sh
# Runs one database server in the foreground with its data in /data, initialised on first start.
set -eu
case "${1:-pg}" in
  pg)
    bin=$(ls -d /usr/lib/postgresql/*/bin | tail -n 1)
    mkdir -p /data/pg /run/postgresql
    chown postgres:postgres /data/pg /run/postgresql
    if [ ! -s /data/pg/PG_VERSION ]; then
      runuser -u postgres -- "$bin/initdb" -D /data/pg -A trust >/dev/null
    fi
    exec runuser -u postgres -- "$bin/postgres" -D /data/pg -k /run/postgresql -c listen_addresses=''
    ;;
  mariadb)
    mkdir -p /data/mysql /run/mysqld
    chown mysql:mysql /data/mysql /run/mysqld
    if [ ! -d /data/mysql/mysql ]; then
      mariadb-install-db --user=mysql --datadir=/data/mysql --auth-root-authentication-method=socket >/dev/null
    fi
    exec mariadbd --user=mysql --datadir=/data/mysql --socket=/run/mysqld/mysqld.sock --skip-networking
    ;;
  redis)
    mkdir -p /data/redis
    exec redis-server --dir /data/redis --port 0 --unixsocket /run/redis.sock --save '' --appendonly no
    ;;
  sqlite)
    exec sleep infinity
    ;;
  *) echo "db-entrypoint: pg, mariadb, redis or sqlite" >&2; exit 2 ;;
esac
