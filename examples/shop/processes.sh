#!/usr/bin/env bash
# Runs the shop as four processes — orders, inventory, payments and a client —
# on NATS, RabbitMQ, Redis or HTTP, in the sync or async style; stops the services with SIGTERM
# and fails unless the client saw the expected result and every service shut
# down cleanly.
#
#   examples/shop/processes.sh nats sync     # needs nats-server on 127.0.0.1:4222
#   examples/shop/processes.sh amqp async    # needs RabbitMQ on 127.0.0.1:5672
#   examples/shop/processes.sh redis sync    # needs Redis on 127.0.0.1:6379
#   examples/shop/processes.sh http async    # ports 7301-7304 (examples/shop/processes.toml)
set -euo pipefail
backend=${1:?usage: processes.sh nats|amqp|redis|http sync|async}
style=${2:?usage: processes.sh nats|amqp|redis|http sync|async}
cd "$(dirname "$0")/../.."

case $backend in
  nats) export SWITCHBOARD_URL=nats://127.0.0.1:4222 ;;
  amqp) export SWITCHBOARD_URL=amqp://127.0.0.1:5672 ;;
  redis) export SWITCHBOARD_URL=redis://127.0.0.1:6379 ;;
  http) export SWITCHBOARD_CONFIG=examples/shop/processes.toml ;;
  *) echo "unknown backend $backend (nats, amqp, redis or http)" >&2; exit 2 ;;
esac
export SWITCHBOARD_STYLE=$style
# CARGO_FEATURES=--all-features reuses a build made with every feature (CI).
cargo build --quiet ${CARGO_FEATURES:---features $backend} --example shop
shop="${CARGO_TARGET_DIR:-target}/debug/examples/shop"

logs=$(mktemp -d)
pids=()
stop_all() {
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
}
trap stop_all EXIT

for service in orders inventory payments; do
  "$shop" --service "$service" 2> "$logs/$service.log" &
  pids+=($!)
  for _ in $(seq 100); do
    grep -q "^$service ready" "$logs/$service.log" && break
    sleep 0.1
  done
  grep -q "^$service ready" "$logs/$service.log" || { cat "$logs/$service.log" >&2; exit 1; }
done

"$shop" --client

trap - EXIT
status=0
for i in "${!pids[@]}"; do
  kill -TERM "${pids[$i]}"
  if ! wait "${pids[$i]}"; then status=1; fi
done
for service in orders inventory payments; do
  grep -E "stopped|error" "$logs/$service.log" >&2 || true
done
rm -rf "$logs"
exit $status
