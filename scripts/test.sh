#!/usr/bin/env bash
# README "test" command (and what CI runs): installs what is missing, builds everything in release
# mode, checks the engine's dependency boundary, runs every Rust test (in release: Candle is ~25x
# slower unoptimised) and the browser tests. Prints a timestamp per stage.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
export PATH="$ROOT/end2end/node_modules/.bin:$HOME/.cargo/bin:$PATH"  # binaryen's wasm-opt first
export RUST_BACKTRACE=0 CARGO_TERM_COLOR=never PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1
# Same value cargo-leptos bakes into the server, so `cargo test` reuses its release artifacts.
export LEPTOS_OUTPUT_NAME=cemiface
# Tests that need the fetched assets fail when they are missing (the default; setup installs them).
T0=$(date +%s)
stamp() { echo "=== [$(date -u +%H:%M:%S) +$(( $(date +%s) - T0 ))s] $*"; }

stamp "setup (tools and assets; skips what is present)"
scripts/setup.sh

stamp "build: wasm front end + server (release)"
cargo leptos build --release

stamp "engine dependency boundary (no tokio, axum or leptos)"
if cargo tree -p cemiface-engine -e normal,build --prefix none --format '{p}' \
    | grep -E '^(tokio|axum|leptos|leptos_[a-z_]+) '; then
  echo "error: the engine crate must not depend on the crates listed above" >&2
  exit 1
fi
echo "engine dependency boundary: ok"

stamp "server layering (scripts/check-layers.sh)"
scripts/check-layers.sh

stamp "clippy (workspace lints in Cargo.toml; the browser build too)"
cargo clippy --workspace --release --all-targets -- -D warnings
cargo clippy -p cemiface-app --features hydrate --target wasm32-unknown-unknown --release -- -D warnings

stamp "one-node Slurm cluster for the Slurm executor's tests (scripts/slurm.sh)"
scripts/slurm.sh up
trap 'scripts/slurm.sh down || true' EXIT
export CEMIFACE_REQUIRE_SLURM=1

stamp "rust tests (release)"
cargo test --release --workspace

stamp "browser tests (Playwright + Debian Chromium)"
# The demo's generator for these tests: one training step of the tiny test config, made by the
# project's own training command.
rm -rf target/e2e/generator
./target/release/cemiface train-diffusion --config tiny-32 \
  --run-dir target/e2e/generator --max-steps 1
# The admin tests' job store and password.
rm -rf target/e2e/data target/e2e/data-shipped
E2E_ADMIN_HASH=$(echo e2e-admin-password | ./target/release/cemiface hash-password)
export E2E_ADMIN_HASH
(cd end2end && npx playwright test)

stamp "CUDA build compile check (scripts/build-cuda.sh --check: CUDA 13 wheels, candle's kernels, cargo check --features cuda)"
# The CUDA code paths cannot run here (no GPU), but they must keep compiling. Cold on 2 cores:
# ≈ 1 min of wheels and ≈ 12 min of build (docs/performance.md § GPU); target/cuda is separate.
scripts/build-cuda.sh --check

stamp "done"
