#!/usr/bin/env bash
# The server's layering rules (README "Architecture"), checked by scripts/test.sh:
# - nothing but main.rs imports `cli` (the clap layer sits on top of `commands`);
# - nothing outside `cli/` prints: commands report through their context (`commands::ctx`);
# - `commands` does not reach into the web layers (`web`, `jobs`), only the demo's model for its bench;
# - no import cycle between modules other than through the router / state wiring
#   (scripts/import_cycles.py).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../backend/server/src"
fail=0
check() { # what, then a grep pipeline's output
  if [ -n "$2" ]; then echo "error: $1:" >&2; echo "$2" >&2; fail=1; fi
}
check "modules outside cli/ import cli" \
  "$(grep -rnE '(crate|cemiface_server)::cli\b' --include=*.rs . | grep -vE '^\./(cli\.rs|cli/|main\.rs)' || true)"
check "printing outside cli/ (use ctx.output / out! / ctx.log)" \
  "$(grep -rnE '\b(e?println|e?print)!\(' --include=*.rs . | grep -vE '^\./(cli\.rs|cli/)' | grep -vE '^[^:]+:[0-9]+:\s*//' || true)"
# (`cemiface fuzz` fuzzes the API-key hashing itself: its one import of web::auth is allowed.)
check "commands import the web or job layers" \
  "$(grep -rnE 'crate::(web|jobs)\b' --include=*.rs commands.rs commands | grep -v 'web::auth::token_hash\|web::auth::hex' || true)"
python3 ../../../scripts/import_cycles.py || fail=1
[ "$fail" = 0 ] && echo "server layering: ok"
exit "$fail"
