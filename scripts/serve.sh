#!/usr/bin/env bash
# README "run" command: installs what is missing, builds the wasm front end and the server in
# release mode, and serves the web app on http://127.0.0.1:3000 (set CEMIFACE_ADDR to change it).
# Extra arguments go to `cargo leptos serve`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
scripts/setup.sh
export PATH="$PWD/end2end/node_modules/.bin:$HOME/.cargo/bin:$PATH"  # binaryen's wasm-opt first
export RUST_BACKTRACE=0   # =1 hides cargo-leptos' error text behind a backtrace
exec cargo leptos serve --release "$@"
