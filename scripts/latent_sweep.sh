#!/usr/bin/env bash
# Recipe sweep of the latent-dcgan preset (docs/latent-generator.md §5): runs from scratch that
# differ from configs/latent-dcgan.toml by a few keys, trained side by side, each measured by
# report-control on the same held-out inquiries (the photos plus DCGAN faces).
#
#   scripts/latent_sweep.sh [--bin target/release/cemiface] [--device cpu] [--out runs/latent-sweep]
#                           [--steps 4000] [--inquiries 30] [--parallel 1] [--assets assets] [--no-photos]
#                           NAME:section.key=value[,section.key=value…] …
#
# e.g.  scripts/latent_sweep.sh --device cuda --parallel 4 \
#         angle2:bank.max_angle=2.0 balanced:train.teachers=balanced
#
# Results: <out>/<NAME>/{config.toml,train.log,report/report.json}, and one summary line per
# variant (dlib and MobileFace means by m, Spearman) on stdout and in <out>/summary.txt. A variant
# with a report is not run again (delete its folder to rerun it).
# On a GPU the tiny denoiser leaves the device mostly idle: --parallel 4 trains four at once.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN=$ROOT/target/release/cemiface
DEVICE=cpu
OUT=$ROOT/runs/latent-sweep
STEPS=4000
INQ=30
PAR=1
ASSETS=$ROOT/assets
PHOTOS=()
while [ $# -gt 0 ]; do
  case "$1" in
    --bin) BIN=$2; shift 2 ;;
    --device) DEVICE=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    --steps) STEPS=$2; shift 2 ;;
    --inquiries) INQ=$2; shift 2 ;;
    --parallel) PAR=$2; shift 2 ;;
    --assets) ASSETS=$2; shift 2 ;;
    --no-photos) PHOTOS=(--no-photos); shift ;;
    -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
    -*) echo "latent_sweep: unknown option '$1' (see --help)" >&2; exit 2 ;;
    *) break ;;
  esac
done
[ $# -gt 0 ] || { echo "latent_sweep: name at least one variant, NAME:section.key=value,… (see --help)" >&2; exit 2; }
[ -x "$BIN" ] || { echo "latent_sweep: no binary at $BIN" >&2; exit 2; }
mkdir -p "$OUT"

# The variant's config: the preset with each section.key set (added to its section when absent).
variant_config() {
  python3 - "$ROOT/configs/latent-dcgan.toml" "$1" <<'PY'
import re, sys
text = open(sys.argv[1]).read().splitlines()
for pair in filter(None, sys.argv[2].split(",")):
    key, value = pair.split("=", 1)
    section, name = key.split(".", 1)
    if not re.fullmatch(r"-?[0-9.]+|true|false", value):
        value = f'"{value}"'
    start = text.index(f"[{section}]")
    end = next((i for i in range(start + 1, len(text)) if text[i].startswith("[")), len(text))
    hit = [i for i in range(start + 1, end) if re.match(rf"{name}\s*=", text[i])]
    if hit:
        text[hit[0]] = f"{name} = {value}"
    else:
        while end > start + 1 and not text[end - 1].strip():
            end -= 1
        text.insert(end, f"{name} = {value}")
print("\n".join(text))
PY
}

run_variant() {
  local name=$1 keys=$2 dir=$OUT/$1
  [ -f "$dir/report/report.json" ] && return 0   # done before: only the summary again
  mkdir -p "$dir"
  variant_config "$keys" > "$dir/config.toml"
  local resume=(); [ -d "$dir/checkpoints" ] && resume=(--resume)
  local t0=$SECONDS
  "$BIN" train-diffusion --config "$dir/config.toml" --run-dir "$dir" --max-steps "$STEPS" \
    --device "$DEVICE" --assets-dir "$ASSETS" "${resume[@]}" > "$dir/train.log" 2>&1 || { echo "$name: training failed (tail of $dir/train.log)"; tail -5 "$dir/train.log"; return 1; }
  echo "$name: trained $STEPS steps in $((SECONDS - t0)) s" > "$dir/time.txt"
  report() {
    "$BIN" report-control --checkpoint "$dir" --inquiries "$INQ" "${PHOTOS[@]}" --m=-1,-0.5,0,0.5,1 --device "$1" \
      --assets-dir "$ASSETS" --out "$dir/report" > "$dir/report.txt" 2>&1
  }
  report "$DEVICE" || { [ "$DEVICE" != cpu ] && echo "$name: report on $DEVICE failed, on the CPU instead" && tail -3 "$dir/report.txt" && report cpu; } \
    || { echo "$name: report failed"; tail -5 "$dir/report.txt"; return 1; }
}

pids=()
for spec in "$@"; do
  name=${spec%%:*}; keys=${spec#*:}; [ "$keys" = "$spec" ] && keys=""
  run_variant "$name" "$keys" &
  pids+=($!)
  while [ "$(jobs -rp | wc -l)" -ge "$PAR" ]; do sleep 2; done
done
status=0
for p in "${pids[@]}"; do wait "$p" || status=1; done

for spec in "$@"; do
  name=${spec%%:*}
  r=$OUT/$name/report/report.json
  [ -f "$r" ] || { echo "$name: no report"; continue; }
  python3 - "$name" "$r" "$(cat "$OUT/$name/time.txt" 2>/dev/null)" <<'PY'
import json, sys
r = json.load(open(sys.argv[2]))
line = [f"{sys.argv[1]} ({sys.argv[3].split(': ')[-1]}):"]
for scope, judges in [("all", r["judges"])] + sorted(r.get("by_source", {}).items()):
    for name, j in judges.items():
        means = " ".join(f"{s:+.2f}" for m, s in sorted(j["mean_by_m"].items(), key=lambda kv: float(kv[0])))
        rho = j["spearman"] if j["spearman"] is not None else float("nan")
        line.append(f"[{scope}] {name.split(' ')[0]} {means} ρ {rho:.2f};")
print(" ".join(line))
PY
done | tee "$OUT/summary.txt"
exit $status
