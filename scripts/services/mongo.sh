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
NAME=nx-27017 PACKAGE=nx-27017==0.8.1 PIDFILE=$D/nx.fg.pid
ARGS=(--data-dir "$D/data" -p "$PORT" --log-file "$D/nx.log" --pid-file "$D/nx.pid")
. "$(dirname "$0")/python-server.sh"
[ "${1:-start}" != start ] || mkdir -p "$D/data"
python_server "$@"
echo "MONGO_DIR=$D MONGO_DB=mongodb://127.0.0.1:$PORT/ PID=$(cat "$PIDFILE")"
# stop: mongo.sh stop with the same MONGO_DIR and MONGO_PORT
