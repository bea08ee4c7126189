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
NAME=scim2-server PACKAGE=scim2-server==0.8.3 PIDFILE=$D/scim2.pid
ARGS=(--hostname 127.0.0.1 --port "$PORT" --bearer-token "$TOKEN")
. "$(dirname "$0")/python-server.sh"
python_server "$@"
echo "SCIM2_DIR=$D SCIM2_URL=http://127.0.0.1:$PORT PID=$(cat "$PIDFILE")"
