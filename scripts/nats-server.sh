#!/usr/bin/env bash
# Makes sure a JetStream-enabled nats-server listens on 127.0.0.1:4222.
#   scripts/nats-server.sh start   # install (Debian package) and start if needed, wait until ready
#   scripts/nats-server.sh stop    # stop the server this script started
set -euo pipefail

PORT="${NATS_PORT:-4222}"
STATE_DIR="${NATS_STATE_DIR:-/var/lib/switchboard-nats}"
PID_FILE="$STATE_DIR/nats-server.pid"

listening() { (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; }

install_binary() {
  command -v nats-server >/dev/null 2>&1 && return
  echo "nats-server not found; installing Debian's nats-server package"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq nats-server >/dev/null
}

start() {
  if listening; then
    echo "nats-server already listening on 127.0.0.1:$PORT"
    return
  fi
  install_binary
  mkdir -p "$STATE_DIR/store"
  nohup nats-server -a 127.0.0.1 -p "$PORT" -js -sd "$STATE_DIR/store" \
    >"$STATE_DIR/nats-server.log" 2>&1 &
  echo $! >"$PID_FILE"
  for _ in $(seq 1 100); do
    if listening; then
      echo "nats-server started on 127.0.0.1:$PORT (pid $(cat "$PID_FILE"))"
      return
    fi
    sleep 0.1
  done
  echo "nats-server did not start; log:" >&2
  cat "$STATE_DIR/nats-server.log" >&2
  exit 1
}

stop() {
  if [ -f "$PID_FILE" ]; then
    kill "$(cat "$PID_FILE")" 2>/dev/null || true
    rm -f "$PID_FILE"
  fi
}

case "${1:-start}" in
  start) start ;;
  stop) stop ;;
  *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
