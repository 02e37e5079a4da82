#!/usr/bin/env bash
# Writes backend/engine/fonts/DejaVuSans-charts.ttf: DejaVu Sans (Debian's fonts-dejavu-core,
# Bitstream Vera / DejaVu licence, see backend/engine/fonts/LICENSE) cut down with fontTools to the
# characters chart text uses (ASCII and a few symbols), so the engine embeds ~30 KB, not 760 KB.
#   python3 -m venv /tmp/ft && /tmp/ft/bin/pip install fonttools && PATH=/tmp/ft/bin:$PATH scripts/subset-font.sh
set -euo pipefail
src=${1:-/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf}
pyftsubset "$src" \
  --unicodes="U+0020-007E,U+00B0,U+00B1,U+00B7,U+00D7,U+0394,U+03B7,U+03BB,U+03BC,U+03C3,U+2013,U+2014,U+2026,U+2192,U+2212,U+2248,U+2264,U+2265" \
  --layout-features='kern' --no-hinting --desubroutinize \
  --output-file=backend/engine/fonts/DejaVuSans-charts.ttf
