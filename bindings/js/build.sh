#!/usr/bin/env bash
# Builds @rotor/codec: the codec component (codec-component/, world `codec-only`) for
# wasm32-wasip2, its JS bindings by jco (generated/), and the typed wrapper by tsc (dist/).
# Needs the npm dependencies (scripts/setup runs `npm ci` here). Cheap when nothing changed.
# `npm pack` runs it first (the `prepack` script), so a package never ships without its build.
set -euo pipefail
cd "$(dirname "$0")"

if ! command -v node >/dev/null 2>&1; then
    echo "build.sh: Node.js (>= 20, with npm) is needed to build bindings/js: install it" \
        "(Debian/Ubuntu: apt-get install nodejs npm; or https://nodejs.org), then run scripts/setup" >&2
    exit 1
fi
if ! command -v cargo >/dev/null 2>&1; then
    echo "build.sh: cargo is needed to build the codec component: install Rust with rustup" \
        "(https://rustup.rs; rust-toolchain.toml picks 1.95 and wasm32-wasip2), then run scripts/setup" >&2
    exit 1
fi
if [ ! -x node_modules/.bin/jco ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
    echo "build.sh: bindings/js/node_modules is missing or older than package-lock.json: run scripts/setup" >&2
    exit 1
fi

# The same target directory as host/build.rs's nested guest build: both compile rotor-codec for
# wasm with the same profile, so the second build reuses the first one's artifacts.
target_dir="${CARGO_TARGET_DIR:-$(cd ../.. && pwd)/target}/guest-build"
# Flags meant for the host (say, -C target-cpu=native) must not reach the wasm build.
env -u RUSTFLAGS -u CARGO_ENCODED_RUSTFLAGS -u CARGO_BUILD_TARGET \
    cargo build --quiet --package rotor-codec-component --profile guest --target wasm32-wasip2 --locked \
    --target-dir "$target_dir"

rm -rf generated dist
node_modules/.bin/jco transpile "$target_dir/wasm32-wasip2/guest/rotor_codec_component.wasm" \
    --out-dir generated --name codec --quiet
node_modules/.bin/tsc -p tsconfig.json

for built in generated/codec.js generated/codec.core.wasm dist/index.js dist/index.d.ts; do
    if [ ! -s "$built" ]; then
        echo "build.sh: $built was not built: see the errors above" >&2
        exit 1
    fi
done
