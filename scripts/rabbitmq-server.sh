#!/usr/bin/env bash
# Makes sure a RabbitMQ node for the tests listens on 127.0.0.1:5672 (user
# guest/guest, which RabbitMQ lets in from loopback only).
#   scripts/rabbitmq-server.sh start     # install (Debian package) and start if needed, wait until ready
#   scripts/rabbitmq-server.sh stop      # stop the node this script started
#   scripts/rabbitmq-server.sh kill      # SIGKILL it (broker-restart tests), data kept
set -euo pipefail

PORT="${RABBITMQ_PORT:-5672}"
STATE_DIR="${RABBITMQ_STATE_DIR:-/var/lib/switchboard-rabbitmq}"
NODE="switchboard@localhost"
STARTED="$STATE_DIR/started-by-script"
BIN=/usr/lib/rabbitmq/bin

listening() { (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; }

install_binary() {
  [ -x "$BIN/rabbitmq-server" ] && return
  echo "RabbitMQ not found; installing Debian's rabbitmq-server package"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # The package's own node is not started (no init system here, or it is
  # stopped below): this script runs its own node on $PORT.
  apt-get install -y -qq rabbitmq-server >/dev/null
  # Where an init system started the package's own node, it is stopped: the
  # tests expect this script's node and its settings on $PORT.
  if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet rabbitmq-server 2>/dev/null; then
    systemctl stop rabbitmq-server || true
  fi
}

# The node's environment: its own data, logs and Erlang cookie under
# $STATE_DIR, listening on loopback only.
node_env() {
  export HOME="$STATE_DIR"
  export RABBITMQ_NODENAME="$NODE"
  export RABBITMQ_NODE_IP_ADDRESS=127.0.0.1
  export RABBITMQ_NODE_PORT="$PORT"
  export RABBITMQ_DIST_PORT="${RABBITMQ_DIST_PORT:-25673}"
  export ERL_EPMD_ADDRESS=127.0.0.1
  export RABBITMQ_MNESIA_BASE="$STATE_DIR/mnesia"
  export RABBITMQ_LOG_BASE="$STATE_DIR/log"
  export RABBITMQ_PID_FILE="$STATE_DIR/node.pid"
  export RABBITMQ_ENABLED_PLUGINS_FILE="$STATE_DIR/enabled_plugins"
  export RABBITMQ_CONFIG_FILE="$STATE_DIR/rabbitmq.conf"
}

start() {
  if listening; then
    echo "RabbitMQ already listening on 127.0.0.1:$PORT"
    return
  fi
  install_binary
  mkdir -p "$STATE_DIR/mnesia" "$STATE_DIR/log"
  [ -f "$STATE_DIR/enabled_plugins" ] || echo "[]." >"$STATE_DIR/enabled_plugins"
  # Messages up to 16 MiB (the tests send 1 MiB payloads and one over the limit).
  echo "max_message_size = 16777216" >"$STATE_DIR/rabbitmq.conf"
  node_env
  "$BIN/rabbitmq-server" -detached >"$STATE_DIR/start.log" 2>&1
  touch "$STARTED"
  # The detached VM registers its node name only after a moment, and
  # `await_startup` gives up at once on a node it cannot see yet: wait for the
  # listener (it opens once the database is loaded), then for the boot.
  for _ in $(seq 1 1200); do
    listening && break
    sleep 0.1
  done
  if ! listening || ! timeout 60 "$BIN/rabbitmqctl" -n "$NODE" await_startup >"$STATE_DIR/await.log" 2>&1; then
    echo "RabbitMQ did not start; see $STATE_DIR/log" >&2
    cat "$STATE_DIR/start.log" "$STATE_DIR/await.log" >&2 2>/dev/null || true
    tail -n 20 "$STATE_DIR/log/$NODE.log" >&2 || true
    exit 1
  fi
  echo "RabbitMQ started on 127.0.0.1:$PORT (node $NODE, data in $STATE_DIR/mnesia)"
}

stop() {
  [ -f "$STARTED" ] || return 0
  node_env
  # With the pid file, `stop` returns once the VM has exited.
  timeout 60 "$BIN/rabbitmqctl" -n "$NODE" stop "$STATE_DIR/node.pid" >/dev/null 2>&1 || kill_node
  rm -f "$STARTED"
}

kill_node() {
  [ -f "$STATE_DIR/node.pid" ] && kill -9 "$(cat "$STATE_DIR/node.pid")" 2>/dev/null || true
  pkill -9 -f "beam.*-sname $NODE|beam.*$NODE" 2>/dev/null || true
}

case "${1:-start}" in
  start) start ;;
  stop) stop ;;
  kill) kill_node ;;
  *) echo "usage: $0 start|stop|kill" >&2; exit 2 ;;
esac
