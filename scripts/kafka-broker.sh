#!/usr/bin/env bash
# A Kafka-protocol broker for the tests: tansu (Apache-2.0, from crates.io) on 127.0.0.1:9092.
#   scripts/kafka-broker.sh start   # install tansu if missing (~17 min build), start, wait until ready
#   scripts/kafka-broker.sh stop    # stop the broker this script started
# Storage is in memory: every start is a fresh, empty broker.
set -euo pipefail

PORT="${KAFKA_PORT:-9092}"
STATE_DIR="${KAFKA_STATE_DIR:-/var/lib/switchboard-kafka}"
PID_FILE="$STATE_DIR/tansu.pid"
TANSU_VERSION="${TANSU_VERSION:-0.6.0}"
export PATH="$HOME/.cargo/bin:$PATH"

listening() { (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; }

install_tansu() {
  command -v tansu >/dev/null 2>&1 && return
  echo "tansu not found; building it from crates.io (about 17 minutes on 2 cores)"
  # Without a storage feature tansu has no storage engine and refuses to start.
  cargo install tansu --version "$TANSU_VERSION" --locked --features dynostore,libsql
}

start() {
  if listening; then
    echo "a broker already listens on 127.0.0.1:$PORT"
    return
  fi
  install_tansu
  mkdir -p "$STATE_DIR"
  nohup tansu broker \
    --listener-url "tcp://127.0.0.1:$PORT" \
    --advertised-listener-url "tcp://127.0.0.1:$PORT" \
    --storage-engine memory://tansu/ \
    >"$STATE_DIR/tansu.log" 2>&1 &
  echo $! >"$PID_FILE"
  for _ in $(seq 1 200); do
    if listening; then
      echo "tansu started on 127.0.0.1:$PORT (pid $(cat "$PID_FILE"))"
      return
    fi
    sleep 0.1
  done
  echo "tansu did not start; log:" >&2
  cat "$STATE_DIR/tansu.log" >&2
  exit 1
}

stop() {
  if [ -f "$PID_FILE" ]; then
    kill "$(cat "$PID_FILE")" 2>/dev/null || true
    rm -f "$PID_FILE"
    echo "tansu stopped"
  fi
}

case "${1:-start}" in
  start) start ;;
  stop) stop ;;
  *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
