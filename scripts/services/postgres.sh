#!/bin/bash
# Throwaway PostgreSQL 15 (preinstalled in image) on 127.0.0.1:$PG_PORT, trust auth, user postgres.
#
# A throwaway postgres server for the tests, with a subcommand:
#   postgres.sh [start]  initdb + start + CREATE DATABASE scim; with an existing PG_DIR it only starts the
#                        server again on its old data (same port)
#   postgres.sh stop     pg_ctl stop -m fast; returns once the server is down (a no-op when it is not running)
# Env: PG_DIR (default mktemp), PG_PORT (default 5433), PG_BIN (default /usr/lib/postgresql/15/bin).
set -e
D=${PG_DIR:-$(mktemp -d /tmp/pg.XXXX)}; PORT=${PG_PORT:-5433}
BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}
as_postgres() { if [ "$(id -u)" = 0 ]; then su postgres -s /bin/sh -c "$1"; else sh -c "$1"; fi; }
case "${1:-start}" in
stop)
  as_postgres "$BIN/pg_ctl -D '$D/data' status >/dev/null 2>&1" || exit 0   # not running
  as_postgres "$BIN/pg_ctl -D '$D/data' -m fast -w -t 60 stop >/dev/null"
  exit ;;
start) ;;
*) echo "usage: $0 [start|stop]" >&2; exit 2 ;;
esac
fresh=
if [ ! -f "$D/data/PG_VERSION" ]; then
  [ "$(id -u)" = 0 ] && chown postgres:postgres "$D"   # postgres refuses to run as root
  as_postgres "$BIN/initdb -D '$D/data' -U postgres -A trust --no-sync -E UTF8 >'$D/initdb.log' 2>&1"
  fresh=1
fi
as_postgres "$BIN/pg_ctl -D '$D/data' -l '$D/pg.log' -w -t 60 -o \"-c listen_addresses=127.0.0.1 -p $PORT -k $D -c fsync=off -c synchronous_commit=off -c full_page_writes=off\" start >/dev/null"
[ -z "$fresh" ] || psql -h 127.0.0.1 -p "$PORT" -U postgres -c "CREATE DATABASE scim" >/dev/null
echo "PG_DIR=$D DATABASE_URL=postgres://postgres@127.0.0.1:$PORT/scim PID=$(head -1 $D/data/postmaster.pid)"
# stop: postgres.sh stop with the same PG_DIR (or: su postgres -s /bin/sh -c "$BIN/pg_ctl -D $D/data -m fast stop")
