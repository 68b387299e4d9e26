#!/usr/bin/env bash
# Installs the Python gRPC client toolchain of tests/grpc.rs (grpcio and
# grpcio-tools from PyPI) into a virtualenv, and prints its python's path.
# Cached under /var/cache/switchboard; rebuilt when requirements change.
set -euo pipefail
cd "$(dirname "$0")/.."

venv="${SWITCHBOARD_PYTHON_VENV:-/var/cache/switchboard/venv-grpc}"
requirements=tests/grpc_python/requirements.txt
stamp="$venv/.requirements"

if ! [ -x "$venv/bin/python" ] || ! cmp -s "$requirements" "$stamp"; then
  if ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq && apt-get install -y -qq python3-venv >/dev/null
  fi
  rm -rf "$venv"
  python3 -m venv "$venv" >&2
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$requirements" >&2
  cp "$requirements" "$stamp"
fi
echo "$venv/bin/python"
