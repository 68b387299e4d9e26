#!/usr/bin/env bash
# Makes sure a PostgreSQL server for the tests listens on 127.0.0.1:25432
# (database `switchboard`, user `switchboard`, no password on loopback only).
#   scripts/postgres-server.sh start   # install (Debian package) and start if needed, wait until ready
#   scripts/postgres-server.sh stop    # stop the server this script started
set -euo pipefail

PORT="${POSTGRES_PORT:-25432}"
STATE_DIR="${POSTGRES_STATE_DIR:-/var/lib/switchboard-postgres}"
DATA_DIR="$STATE_DIR/data"
STARTED="$STATE_DIR/started-by-script"

listening() { (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; }

# The newest server binaries Debian installed (/usr/lib/postgresql/<major>/bin).
bin_dir() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1; }

install_binary() {
  [ -n "$(bin_dir)" ] && [ -x "$(bin_dir)/postgres" ] && return
  echo "PostgreSQL server not found; installing Debian's postgresql package"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # The package's own cluster is not used: this script runs its own on $PORT.
  apt-get install -y -qq postgresql >/dev/null
}

# PostgreSQL refuses to run as root: the server runs as the `postgres` user
# the Debian package creates.
as_postgres() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

start() {
  if listening; then
    echo "PostgreSQL already listening on 127.0.0.1:$PORT"
    return
  fi
  install_binary
  local bin
  bin="$(bin_dir)"
  mkdir -p "$STATE_DIR"
  [ "$(id -u)" = 0 ] && chown postgres "$STATE_DIR"
  if [ ! -f "$DATA_DIR/PG_VERSION" ]; then
    as_postgres "$bin/initdb" -D "$DATA_DIR" -U switchboard --auth=trust -E UTF8 >"$STATE_DIR/initdb.log"
  fi
  # Loopback only, trust auth: a test server nobody else can reach.
  as_postgres "$bin/pg_ctl" -D "$DATA_DIR" -l "$STATE_DIR/postgres.log" -w -t 60 \
    -o "-c listen_addresses=127.0.0.1 -p $PORT -k $STATE_DIR -c fsync=off -c max_connections=200" start >/dev/null
  touch "$STARTED"
  for _ in $(seq 1 100); do
    if as_postgres "$bin/psql" -h 127.0.0.1 -p "$PORT" -U switchboard -d postgres -tAc \
      "SELECT 1 FROM pg_database WHERE datname = 'switchboard'" | grep -q 1; then
      break
    fi
    as_postgres "$bin/createdb" -h 127.0.0.1 -p "$PORT" -U switchboard switchboard 2>/dev/null || true
    sleep 0.1
  done
  echo "PostgreSQL started on 127.0.0.1:$PORT (data in $DATA_DIR)"
}

stop() {
  if [ -f "$STARTED" ]; then
    as_postgres "$(bin_dir)/pg_ctl" -D "$DATA_DIR" -m fast -w stop >/dev/null 2>&1 || true
    rm -f "$STARTED"
  fi
}

case "${1:-start}" in
  start) start ;;
  stop) stop ;;
  *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
