#!/bin/bash
# Throwaway RabbitMQ 3.10 node bound to 127.0.0.1 only (AMQP, dist, epmd, mgmt, stream).
# Env: RMQ_DIR RMQ_PORT RMQ_MGMT_PORT RMQ_STREAM_PORT RMQ_PLUGINS RMQ_NODENAME. Blocks until the node is up.
# CLI afterwards:  HOME=$RMQ_DIR RABBITMQ_NODENAME=rabbit$RMQ_PORT@localhost /usr/lib/rabbitmq/bin/rabbitmqctl list_queues
# Stop: kill the printed PID (or rabbitmqctl shutdown with the same env). epmd (port 4369) stays up, shared by all nodes.
#
# A throwaway rabbitmq server for the tests, with a subcommand:
#   rabbitmq.sh [start]  start a node; with an existing RMQ_DIR (same RMQ_PORT) it restarts the same node on its
#                        old data (durable queues and persistent messages survive)
#   rabbitmq.sh stop     clean shutdown (SIGTERM) of the node of RMQ_DIR/RMQ_PORT; returns once its AMQP port is
#                        closed and its name left epmd (SIGKILL after 60 s); a no-op when it is not running
#   rabbitmq.sh ctl ARGS rabbitmqctl ARGS against that node (e.g. `ctl list_queues name messages`)
# Installing: apt-get install rabbitmq-server (policy-rc.d keeps Debian from starting its own service).
set -e
D=${RMQ_DIR:-$(mktemp -d /tmp/rmq.XXXX)}
mkdir -p "$D"/{mnesia,log}
export HOME="$D"                       # .erlang.cookie lives here (rabbitmqctl needs same HOME)
export RABBITMQ_NODE_IP_ADDRESS=127.0.0.1
export RABBITMQ_NODE_PORT=${RMQ_PORT:-5672}
export RABBITMQ_NODENAME=${RMQ_NODENAME:-rabbit$RABBITMQ_NODE_PORT@localhost}   # unique per instance: epmd is shared
DIST=$((RABBITMQ_NODE_PORT + 20000)); [ $DIST -le 65535 ] || DIST=$((RABBITMQ_NODE_PORT - 20000))
export RABBITMQ_DIST_PORT=${RMQ_DIST_PORT:-$DIST}
export ERL_EPMD_ADDRESS=127.0.0.1      # epmd otherwise binds 0.0.0.0:4369
export RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}"
export RABBITMQ_CTL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}"
export RABBITMQ_MNESIA_BASE="$D/mnesia" RABBITMQ_LOG_BASE="$D/log"
export RABBITMQ_CONF_ENV_FILE="$D/rabbitmq-env.conf"; : > "$RABBITMQ_CONF_ENV_FILE"
export RABBITMQ_CONFIG_FILE="$D/rabbitmq"     # -> $D/rabbitmq.conf
export RABBITMQ_ENABLED_PLUGINS_FILE="$D/enabled_plugins"
export RABBITMQ_PID_FILE="$D/rabbit.pid"
CTL=/usr/lib/rabbitmq/bin/rabbitmqctl

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

if [ "${1:-start}" = ctl ]; then
  shift
  exec "$CTL" "$@"
fi
if [ "${1:-start}" = stop ]; then
  # SIGTERM to the Erlang VM is a clean shutdown (≈0.2 s; `rabbitmqctl shutdown` takes ≈2.5 s, mostly CLI start-up).
  # Done when the pid file is gone, the port is closed and the node name has left epmd (so a restart can take it).
  stopped() {
    [ ! -e "$RABBITMQ_PID_FILE" ] && ! port_open "$RABBITMQ_NODE_PORT" &&
      ! epmd -names 2>/dev/null | grep -q "^name ${RABBITMQ_NODENAME%@*} at"
  }
  if [ -s "$RABBITMQ_PID_FILE" ]; then
    kill -TERM "$(cat "$RABBITMQ_PID_FILE")" 2>/dev/null || rm -f "$RABBITMQ_PID_FILE"   # stale pid file
  elif port_open "$RABBITMQ_NODE_PORT"; then
    timeout 60 "$CTL" shutdown >/dev/null 2>&1 || true
  fi
  for _ in $(seq 1 1200); do stopped && break; sleep 0.05; done
  if ! stopped; then     # did not stop within 60 s: kill the Erlang VM
    if [ -s "$RABBITMQ_PID_FILE" ]; then kill -9 "$(cat "$RABBITMQ_PID_FILE")" 2>/dev/null; fi
    rm -f "$RABBITMQ_PID_FILE"
    for _ in $(seq 1 100); do stopped && break; sleep 0.1; done
  fi
  # the wrapper shell (server.pid) exits with the VM; make sure it does
  # (only if that pid is still the wrapper: once it has exited, the number may belong to another process)
  if [ -s "$D/server.pid" ] && grep -qa rabbitmq "/proc/$(cat "$D/server.pid")/cmdline" 2>/dev/null; then
    kill "$(cat "$D/server.pid")" 2>/dev/null || true
  fi
  rm -f "$D/server.pid"
  stopped
  exit
fi
[ "${1:-start}" = start ] || { echo "usage: $0 [start|stop|ctl ARGS...]" >&2; exit 2; }

PLUGINS=${RMQ_PLUGINS-rabbitmq_management,rabbitmq_stream}   # RMQ_PLUGINS="" for none (faster start)
echo "listeners.tcp.default = 127.0.0.1:$RABBITMQ_NODE_PORT" > "$D/rabbitmq.conf"
case "$PLUGINS" in *management*) printf 'management.tcp.ip = 127.0.0.1\nmanagement.tcp.port = %s\n' "${RMQ_MGMT_PORT:-15672}" >> "$D/rabbitmq.conf";; esac
case "$PLUGINS" in *stream*) printf 'stream.listeners.tcp.1 = 127.0.0.1:%s\n' "${RMQ_STREAM_PORT:-5552}" >> "$D/rabbitmq.conf";; esac
echo "[$PLUGINS]." > "$RABBITMQ_ENABLED_PLUGINS_FILE"
echo "RMQ_DIR=$D"
/usr/lib/rabbitmq/bin/rabbitmq-server >> "$D/log/stdout.log" 2>&1 &
echo $! > "$D/server.pid"
"$CTL" wait --pid "$(cat "$D/server.pid")" --timeout 120 >/dev/null
# `wait` returns once the rabbit app runs; make sure the AMQP listener accepts too
for _ in $(seq 1 100); do port_open "$RABBITMQ_NODE_PORT" && break; sleep 0.1; done
echo "AMQP=amqp://guest:guest@127.0.0.1:$RABBITMQ_NODE_PORT/%2f PID=$(cat "$D/server.pid")"
# stop: rabbitmq.sh stop with the same RMQ_DIR and RMQ_PORT (≈0.3 s); epmd stays running and is shared by every node
