#!/bin/bash
# Throwaway third-party SCIM server on 127.0.0.1:$SCIM2_PORT: scim2-server from PyPI (pinned below), which keeps
# Users and Groups in memory (every start is empty), checks a static bearer token, and announces patch, etag,
# filter, sort and bulk in its ServiceProviderConfig. The upstream of the `scim` projection's tests, beside a
# second scimd.
#
#   scim2-server.sh install  create the virtualenv SCIM2_VENV with scim2-server unless it is there (needs python3-venv)
#   scim2-server.sh [start]  start (installing first if needed) with the token SCIM2_TOKEN
#   scim2-server.sh stop     SIGTERM; returns once the port is closed (SIGKILL after 30 s; a no-op when not running)
# Env: SCIM2_DIR (default mktemp; holds the pid and the log), SCIM2_PORT (default 8089), SCIM2_TOKEN (default
# scim2-test-token), SCIM2_VENV (default ~/.cache/scim2-server-venv).
set -e
D=${SCIM2_DIR:-$(mktemp -d /tmp/scim2.XXXX)}; PORT=${SCIM2_PORT:-8089}; TOKEN=${SCIM2_TOKEN:-scim2-test-token}
V=${SCIM2_VENV:-$HOME/.cache/scim2-server-venv}
VERSION=0.8.3
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
install() {
  [ -x "$V/bin/scim2-server" ] && return 0
  python3 -m venv "$V" && "$V/bin/pip" install -q "scim2-server==$VERSION"
}
case "${1:-start}" in
install) install; exit ;;
stop)
  pid=
  [ -s "$D/scim2.pid" ] && pid=$(cat "$D/scim2.pid")
  [ -z "$pid" ] || kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 600); do port_open "$PORT" || exit 0; sleep 0.05; done
  [ -z "$pid" ] || kill -9 "$pid" 2>/dev/null || true
  for _ in $(seq 1 100); do port_open "$PORT" || exit 0; sleep 0.1; done
  exit 1 ;;
start) ;;
*) echo "usage: $0 [install|start|stop]" >&2; exit 2 ;;
esac
install
mkdir -p "$D"
"$V/bin/scim2-server" --hostname 127.0.0.1 --port "$PORT" --bearer-token "$TOKEN" >> "$D/out.log" 2>&1 &
echo $! > "$D/scim2.pid"
up=
for _ in $(seq 1 200); do port_open "$PORT" && { up=1; break; }; sleep 0.05; done
[ -n "$up" ] || { echo "scim2-server did not start: see $D/out.log" >&2; exit 1; }
echo "SCIM2_DIR=$D SCIM2_URL=http://127.0.0.1:$PORT PID=$(cat "$D/scim2.pid")"
