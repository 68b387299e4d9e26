#!/usr/bin/env bash
# The Kafka broker for the tests on 127.0.0.1:9092.
#   scripts/kafka-broker.sh start   # fetch if missing, start, wait until ready
#   scripts/kafka-broker.sh stop    # stop the broker this script started
#
# By default: Apache Kafka (KRaft mode, no ZooKeeper), fetched from Maven
# Central with scripts/kafka/pom.xml into a cache dir and run with Java 17.
# SWITCHBOARD_KAFKA_BROKER=tansu runs tansu instead (built from crates.io, ~17 min).
# Every start is a fresh, empty broker.
set -euo pipefail

PORT="${KAFKA_PORT:-9092}"
CONTROLLER_PORT="${KAFKA_CONTROLLER_PORT:-9093}"
STATE_DIR="${KAFKA_STATE_DIR:-/var/lib/switchboard-kafka}"
PID_FILE="$STATE_DIR/broker.pid"
BROKER="${SWITCHBOARD_KAFKA_BROKER:-kafka}"
KAFKA_VERSION="4.1.1"
KAFKA_LIB="${KAFKA_CACHE_DIR:-/var/cache/switchboard/kafka-$KAFKA_VERSION}/lib"
TANSU_VERSION="${TANSU_VERSION:-0.6.0}"
HERE="$(cd "$(dirname "$0")" && pwd)"
export PATH="$HOME/.cargo/bin:$PATH"

listening() { (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; }

fetch_kafka() {
  if [ -f "$KAFKA_LIB/.complete" ]; then return; fi
  echo "fetching Apache Kafka $KAFKA_VERSION from Maven Central into $KAFKA_LIB"
  mkdir -p "$KAFKA_LIB"
  mvn -q -B -f "$HERE/kafka/pom.xml" dependency:copy-dependencies \
    -Dkafka.version="$KAFKA_VERSION" -DoutputDirectory="$KAFKA_LIB" -DincludeScope=runtime
  touch "$KAFKA_LIB/.complete"
}

start_kafka() {
  fetch_kafka
  local data="$STATE_DIR/data"
  rm -rf "$data"
  mkdir -p "$data"
  cat >"$STATE_DIR/server.properties" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$CONTROLLER_PORT
listeners=PLAINTEXT://127.0.0.1:$PORT,CONTROLLER://127.0.0.1:$CONTROLLER_PORT
advertised.listeners=PLAINTEXT://127.0.0.1:$PORT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=$data
num.partitions=1
auto.create.topics.enable=true
offsets.topic.replication.factor=1
offsets.topic.num.partitions=4
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
delete.topic.enable=true
PROPS
  local java_opts=(-Xms256m -Xmx1g -XX:+UseG1GC -Djava.awt.headless=true -Dorg.slf4j.simpleLogger.defaultLogLevel=warn)
  # A fixed cluster id: 16 bytes, base64url without padding.
  java "${java_opts[@]}" -cp "$KAFKA_LIB/*" kafka.tools.StorageTool format \
    -t c3dpdGNoYm9hcmQtdGVzdA -c "$STATE_DIR/server.properties" >"$STATE_DIR/format.log" 2>&1 \
    || { cat "$STATE_DIR/format.log" >&2; exit 1; }
  nohup java "${java_opts[@]}" -cp "$KAFKA_LIB/*" kafka.Kafka "$STATE_DIR/server.properties" \
    >"$STATE_DIR/broker.log" 2>&1 &
  echo $! >"$PID_FILE"
}

start_tansu() {
  if ! command -v tansu >/dev/null 2>&1; then
    echo "tansu not found; building it from crates.io (about 17 minutes on 2 cores)"
    # Without a storage feature tansu has no storage engine and refuses to start.
    cargo install tansu --version "$TANSU_VERSION" --locked --features dynostore,libsql
  fi
  nohup tansu broker \
    --listener-url "tcp://127.0.0.1:$PORT" \
    --advertised-listener-url "tcp://127.0.0.1:$PORT" \
    --storage-engine memory://tansu/ \
    >"$STATE_DIR/broker.log" 2>&1 &
  echo $! >"$PID_FILE"
}

start() {
  if listening; then
    echo "a broker already listens on 127.0.0.1:$PORT"
    return
  fi
  mkdir -p "$STATE_DIR"
  case "$BROKER" in
    kafka) start_kafka ;;
    tansu) start_tansu ;;
    *) echo "SWITCHBOARD_KAFKA_BROKER must be kafka or tansu, not $BROKER" >&2; exit 2 ;;
  esac
  for _ in $(seq 1 600); do
    if listening; then
      echo "$BROKER started on 127.0.0.1:$PORT (pid $(cat "$PID_FILE"))"
      return
    fi
    if ! kill -0 "$(cat "$PID_FILE")" 2>/dev/null; then break; fi
    sleep 0.1
  done
  echo "$BROKER did not start; log:" >&2
  tail -50 "$STATE_DIR/broker.log" >&2
  exit 1
}

stop() {
  if [ -f "$PID_FILE" ]; then
    local pid
    pid="$(cat "$PID_FILE")"
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
    rm -f "$PID_FILE"
    echo "$BROKER stopped"
  fi
}

case "${1:-start}" in
  start) start ;;
  stop) stop ;;
  *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
