#!/usr/bin/env bash
# Installs the AsyncAPI project's own parser (@asyncapi/parser, from npm) where
# tests/tool_asyncapi.rs finds it, unless that version is there already.
#   scripts/asyncapi-parser.sh    # prints the directory
set -euo pipefail

VERSION="3.6.6"
DIR="${ASYNCAPI_PARSER_DIR:-/var/cache/switchboard/asyncapi}"

installed() {
  [ -f "$DIR/node_modules/@asyncapi/parser/package.json" ] &&
    grep -q "\"version\": \"$VERSION\"" "$DIR/node_modules/@asyncapi/parser/package.json"
}

if ! installed; then
  command -v npm >/dev/null 2>&1 || {
    echo "npm not found; installing Debian's nodejs and npm packages"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq nodejs npm >/dev/null
  }
  mkdir -p "$DIR"
  (cd "$DIR" && npm install --no-audit --no-fund --silent "@asyncapi/parser@$VERSION" >/dev/null)
fi
echo "$DIR"
