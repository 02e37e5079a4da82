#!/usr/bin/env bash
# Refreshes docs/screenshots from the browser tests: the demo with the shipped generator (desktop and
# phone, from end2end/tests/demo-shipped.spec.ts) and the admin dashboard (admin.spec.ts). Run after
# scripts/test.sh (or the two Playwright files), which write them to target/e2e/screenshots.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
SRC="$ROOT/target/e2e/screenshots"
DST="$ROOT/docs/screenshots"
mkdir -p "$DST"
for f in demo-desktop.png demo-phone.png admin-dashboard.png; do
  [ -f "$SRC/$f" ] || { echo "missing $SRC/$f: run the browser tests first (scripts/test.sh)" >&2; exit 1; }
  cp "$SRC/$f" "$DST/$f"
  echo "docs/screenshots/$f"
done
