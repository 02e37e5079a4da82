#!/usr/bin/env bash
# latent_sweep.sh on a GPU machine with the CUDA build: unpacks the binary, finds the host's CUDA 13
# math libraries (as gpu-check.sh does), runs the variants one after another (a shared GPU made the
# banks crawl: docs/latent-generator.md §5) in a scratch folder, and copies back only what is worth
# keeping per variant (config, logs, report, loss curves, final EMA weights and μ; no bank, no
# optimiser state).
#
#   scripts/gpu-sweep.sh [--bin dist/cuda-sm90/cemiface.gz] [--out gpu-sweep-out] [--steps 4000]
#                        [--inquiries 100] [--budget SECONDS] NAME:section.key=value[,…] …
#
#   --budget S   stop the sweep after S seconds and still copy back what exists (a lent GPU's call
#                has a time limit; an unfinished report can be rerun on the CPU from final/)
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN=$ROOT/dist/cuda-sm90/cemiface.gz
OUTDIR=${OUT:-$ROOT/gpu-sweep-out}
STEPS=4000
INQ=100
BUDGET=0
while [ $# -gt 0 ]; do
  case "$1" in
    --bin) BIN=$2; shift 2 ;;
    --out) OUTDIR=$2; shift 2 ;;
    --steps) STEPS=$2; shift 2 ;;
    --inquiries) INQ=$2; shift 2 ;;
    --budget) BUDGET=$2; shift 2 ;;
    -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
    -*) echo "gpu-sweep: unknown option '$1' (see --help)" >&2; exit 2 ;;
    *) break ;;
  esac
done
[ $# -gt 0 ] || { echo "gpu-sweep: name at least one variant (see --help)" >&2; exit 2; }
[ -f "$BIN" ] || { echo "gpu-sweep: no binary at $BIN (scripts/build-cuda.sh makes it)" >&2; exit 2; }
work=$(mktemp -d)
gunzip -c "$BIN" > "$work/cemiface" && chmod +x "$work/cemiface"
for so in libcublasLt.so.13 libcublas.so.13 libcurand.so.10 libcudart.so.13; do
  lib=$(find / -name "$so" -not -path '/proc/*' 2>/dev/null | head -1 || true)
  [ -n "$lib" ] || { echo "gpu-sweep: $so not found on this host" >&2; exit 1; }
  case ":${LD_LIBRARY_PATH:-}:" in *":$(dirname "$lib"):"*) ;; *)
    export LD_LIBRARY_PATH=$(dirname "$lib")${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH} ;;
  esac
done
nvidia-smi -L || true
mkdir -p "$OUTDIR"
status=0
limit=(); [ "$BUDGET" -gt 0 ] && limit=(timeout "$BUDGET")
"${limit[@]}" "$ROOT/scripts/latent_sweep.sh" --bin "$work/cemiface" --device cuda --parallel 1 --out "$work/sweep" \
  --steps "$STEPS" --inquiries "$INQ" "$@" || status=$?
for dir in "$work"/sweep/*/; do
  name=$(basename "$dir"); dest=$OUTDIR/$name
  mkdir -p "$dest"
  cp "$dir"/{config.toml,train.log,time.txt,metrics.jsonl,loss.png,report.txt} "$dest"/ 2>/dev/null || true
  [ -d "$dir/report" ] && cp -r "$dir/report" "$dest/"
  last=$(ls -d "$dir"/checkpoints/step_* 2>/dev/null | sort | tail -1 || true)
  [ -n "$last" ] && mkdir -p "$dest/final" && cp "$last"/{state.json,ema.safetensors,identity_mean.safetensors,anchors.safetensors} "$dest/final/" 2>/dev/null || true
done
cp "$work/sweep/summary.txt" "$OUTDIR/" 2>/dev/null || true
exit $status
