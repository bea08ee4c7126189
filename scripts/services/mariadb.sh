#!/bin/bash
# Throwaway MariaDB 10.11 on 127.0.0.1:$MY_PORT; user scim/scim, db scim. Runs as root (--user=root).
#
# A throwaway mariadb server for the tests, with a subcommand:
#   mariadb.sh [start]  install the data dir, start, create user and db; with an existing MY_DIR it only
#                       starts the server again on its old data (same port)
#   mariadb.sh stop     normal shutdown (SIGTERM); returns once the server is down (a no-op when it is not running)
# Env: MY_DIR (default mktemp), MY_PORT (default 3307).
set -e
D=${MY_DIR:-$(mktemp -d /tmp/maria.XXXX)}; PORT=${MY_PORT:-3307}
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
case "${1:-start}" in
stop)
  # SIGTERM is a normal shutdown; mariadbd removes its pid file once done (mariadb-admin shutdown polls once a second)
  if [ -s "$D/mariadb.pid" ]; then kill -TERM "$(cat "$D/mariadb.pid")" 2>/dev/null || rm -f "$D/mariadb.pid"; fi
  for _ in $(seq 1 1200); do [ -f "$D/mariadb.pid" ] || port_open "$PORT" || exit 0; sleep 0.05; done
  [ -f "$D/mariadb.pid" ] && kill -9 "$(cat "$D/mariadb.pid")" 2>/dev/null; rm -f "$D/mariadb.pid"
  for _ in $(seq 1 100); do port_open "$PORT" || exit 0; sleep 0.1; done
  exit 1 ;;
start) ;;
*) echo "usage: $0 [start|stop]" >&2; exit 2 ;;
esac
fresh=
if [ ! -d "$D/data/mysql" ]; then
  mariadb-install-db --no-defaults --user=root --datadir="$D/data" --auth-root-authentication-method=socket \
     --skip-test-db > "$D/install.log" 2>&1
  fresh=1
fi
mariadbd --no-defaults --user=root --datadir="$D/data" --socket="$D/mysql.sock" --pid-file="$D/mariadb.pid" \
   --port="$PORT" --bind-address=127.0.0.1 --skip-name-resolve --skip-log-bin --log-error="$D/error.log" \
   --innodb-buffer-pool-size=64M --innodb-log-file-size=16M --innodb-flush-log-at-trx-commit=0 > /dev/null 2>&1 &
echo $! > "$D/mariadbd.fg.pid"
for _ in $(seq 1 200); do mariadb-admin --no-defaults --socket="$D/mysql.sock" -uroot ping >/dev/null 2>&1 && break; sleep 0.05; done
mariadb-admin --no-defaults --socket="$D/mysql.sock" -uroot ping >/dev/null 2>&1 || { echo "mariadb did not start: see $D/error.log" >&2; exit 1; }
[ -z "$fresh" ] || mariadb --no-defaults --socket="$D/mysql.sock" -uroot -e "CREATE DATABASE scim; CREATE USER 'scim'@'127.0.0.1' IDENTIFIED BY 'scim'; GRANT ALL ON *.* TO 'scim'@'127.0.0.1';"
echo "MY_DIR=$D DATABASE_URL=mysql://scim:scim@127.0.0.1:$PORT/scim PID=$(cat $D/mariadbd.fg.pid)"
# stop: mariadb.sh stop with the same MY_DIR and MY_PORT (or: mariadb-admin --no-defaults --socket=$D/mysql.sock -uroot shutdown)
