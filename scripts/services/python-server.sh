#!/bin/bash
# Sourced, not run: the part the services that are a pinned PyPI package in a virtualenv of their own share
# (mongo.sh: nx-27017; scim2-server.sh: scim2-server). The caller sets
#   NAME     the server's executable in the virtualenv      PACKAGE  what pip installs (name==version)
#   V        the virtualenv                                  D        the service's directory (log: $D/out.log)
#   PORT     the port it listens on (127.0.0.1)              PIDFILE  where its pid is kept
#   ARGS     an array: the server's arguments
# then calls `python_server "$@"`, which handles the subcommand:
#   install  create the virtualenv V with PACKAGE unless NAME is there (needs python3-venv); exits
#   stop     SIGTERM; exits once the port is closed (SIGKILL after 30 s; a no-op when not running)
#   [start]  install if needed, start in the background, return once the port is open (exit 1 if it never is)
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
python_server_install() {
  [ -x "$V/bin/$NAME" ] || { python3 -m venv "$V" && "$V/bin/pip" install -q "$PACKAGE"; }
}
python_server() {
  case "${1:-start}" in
  install) python_server_install; exit ;;
  stop)
    local pid=
    [ -s "$PIDFILE" ] && pid=$(cat "$PIDFILE")
    [ -z "$pid" ] || kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 600); do port_open "$PORT" || exit 0; sleep 0.05; done
    [ -z "$pid" ] || kill -9 "$pid" 2>/dev/null || true
    for _ in $(seq 1 100); do port_open "$PORT" || exit 0; sleep 0.1; done
    exit 1 ;;
  start) ;;
  *) echo "usage: $0 [install|start|stop]" >&2; exit 2 ;;
  esac
  python_server_install
  mkdir -p "$D"
  "$V/bin/$NAME" "${ARGS[@]}" >> "$D/out.log" 2>&1 &
  echo $! > "$PIDFILE"
  for _ in $(seq 1 200); do port_open "$PORT" && return 0; sleep 0.05; done
  echo "$NAME did not start: see $D/out.log" >&2
  exit 1
}
