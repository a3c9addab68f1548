#!/usr/bin/env bash
# Type-checks and compiles the example with the TypeScript of bindings/js (built first).
set -euo pipefail
cd "$(dirname "$0")"
if [ ! -e node_modules/@rotor/codec ]; then
    echo "examples/wallet-service/build.sh: @rotor/codec is not linked here: run scripts/setup" >&2
    exit 1
fi
rm -rf dist
../../bindings/js/node_modules/.bin/tsc -p tsconfig.json
