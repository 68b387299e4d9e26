#!/usr/bin/env bash
# Makes sure a Redis server for the tests listens on 127.0.0.1:6379, with an
# append-only file synced on every write (the restart test kills it and
# counts what survived).
#   scripts/redis-server.sh start     # install (Debian package) and start if needed, wait until ready
#   scripts/redis-server.sh stop      # stop the server this script started
#   scripts/redis-server.sh kill      # SIGKILL it (broker-restart tests), data kept
set -euo pipefail

PORT="${REDIS_PORT:-6379}"
STATE_DIR="${REDIS_STATE_DIR:-/var/lib/switchboard-redis}"
STARTED="$STATE_DIR/started-by-script"

listening() { (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; }

install_binary() {
  command -v redis-server >/dev/null && return
  echo "Redis not found; installing Debian's redis-server package"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq redis-server >/dev/null
  # Where an init system started the package's own server, it is stopped:
  # the tests expect this script's server and its settings on $PORT.
  if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet redis-server 2>/dev/null; then
    systemctl stop redis-server || true
  fi
  if [ -f /run/redis/redis-server.pid ]; then
    kill "$(cat /run/redis/redis-server.pid)" 2>/dev/null || true
    sleep 1
  fi
}

start() {
  if listening; then
    echo "Redis already listening on 127.0.0.1:$PORT"
    return
  fi
  install_binary
  mkdir -p "$STATE_DIR"
  # Each start begins empty: what earlier runs left in the streams is not replayed.
  rm -rf "$STATE_DIR/appendonlydir"
  # Loopback only; every write in the append-only file before it is
  # acknowledged; events up to 16 MiB (the tests send 1 MiB payloads).
  cat >"$STATE_DIR/redis.conf" <<CONF
bind 127.0.0.1 ::1
port $PORT
protected-mode yes
dir $STATE_DIR
appendonly yes
appendfsync always
save ""
daemonize yes
pidfile $STATE_DIR/redis.pid
logfile $STATE_DIR/redis.log
proto-max-bulk-len 32mb
client-output-buffer-limit pubsub 256mb 128mb 60
CONF
  redis-server "$STATE_DIR/redis.conf"
  touch "$STARTED"
  for _ in $(seq 1 300); do
    if listening && redis-cli -p "$PORT" ping 2>/dev/null | grep -q PONG; then
      echo "Redis started on 127.0.0.1:$PORT (data in $STATE_DIR)"
      return
    fi
    sleep 0.1
  done
  echo "Redis did not start; see $STATE_DIR/redis.log" >&2
  tail -n 20 "$STATE_DIR/redis.log" >&2 || true
  exit 1
}

stop() {
  [ -f "$STARTED" ] || return 0
  redis-cli -p "$PORT" shutdown nosave >/dev/null 2>&1 || kill_server
  for _ in $(seq 1 100); do
    listening || break
    sleep 0.1
  done
  rm -f "$STARTED"
}

kill_server() {
  [ -f "$STATE_DIR/redis.pid" ] && kill -9 "$(cat "$STATE_DIR/redis.pid")" 2>/dev/null || true
}

case "${1:-start}" in
  start) start ;;
  stop) stop ;;
  kill) kill_server ;;
  *) echo "usage: $0 start|stop|kill" >&2; exit 2 ;;
esac
