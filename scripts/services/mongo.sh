#!/bin/bash
# Throwaway MongoDB-wire-compatible server on 127.0.0.1:$MONGO_PORT: nx-27017 from PyPI (pinned below), which
# speaks the MongoDB wire protocol (reports 7.0) and keeps its data in SQLite. No MongoDB server is packaged
# for the registries this project installs from; the Rust `mongodb` driver works with it.
# Known differences from MongoDB (nx-27017 is a MongoDB-wire server, not MongoDB): `$inc` on Int64 returns Int32;
# `{"emails.value": {"$regex": …}}` on arrays of subdocuments matches nothing (use $elemMatch); BSON regex
# values are rejected; no multi-document transactions (scimd then writes its checkpoint after the batch); an `$or` of
# `{_version: {$lte: n}}` and `{_version: {$exists: false}}` misses some documents (each alone works).
#
# A throwaway mongo server for the tests, with a subcommand:
#   mongo.sh install  create the virtualenv MONGO_VENV with nx-27017 unless it is there (needs python3-venv)
#   mongo.sh [start]  start on MONGO_DIR (installing first if needed); an existing MONGO_DIR keeps its data
#   mongo.sh stop     SIGTERM; returns once the port is closed (SIGKILL after 30 s; a no-op when not running)
# Env: MONGO_DIR (default mktemp), MONGO_PORT (default 27018), MONGO_VENV (default ~/.cache/nx-27017-venv).
set -e
D=${MONGO_DIR:-$(mktemp -d /tmp/mongo.XXXX)}; PORT=${MONGO_PORT:-27018}
V=${MONGO_VENV:-$HOME/.cache/nx-27017-venv}
VERSION=0.8.1
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
install() {
  [ -x "$V/bin/nx-27017" ] && return 0
  python3 -m venv "$V" && "$V/bin/pip" install -q "nx-27017==$VERSION"
}
case "${1:-start}" in
install) install; exit ;;
stop)
  pid=
  [ -s "$D/nx.fg.pid" ] && pid=$(cat "$D/nx.fg.pid")
  [ -z "$pid" ] || kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 600); do port_open "$PORT" || exit 0; sleep 0.05; done
  [ -z "$pid" ] || kill -9 "$pid" 2>/dev/null || true
  for _ in $(seq 1 100); do port_open "$PORT" || exit 0; sleep 0.1; done
  exit 1 ;;
start) ;;
*) echo "usage: $0 [install|start|stop]" >&2; exit 2 ;;
esac
install
mkdir -p "$D/data"
"$V/bin/nx-27017" --data-dir "$D/data" -p "$PORT" --log-file "$D/nx.log" --pid-file "$D/nx.pid" >> "$D/out.log" 2>&1 &
echo $! > "$D/nx.fg.pid"
up=
for _ in $(seq 1 200); do port_open "$PORT" && { up=1; break; }; sleep 0.05; done
[ -n "$up" ] || { echo "nx-27017 did not start: see $D/out.log" >&2; exit 1; }
echo "MONGO_DIR=$D MONGO_DB=mongodb://127.0.0.1:$PORT/ PID=$(cat "$D/nx.fg.pid")"
# stop: mongo.sh stop with the same MONGO_DIR and MONGO_PORT
