#!/usr/bin/env bash
# λ sweep of the latent-dcgan preset (docs/latent-generator.md §5): short runs from scratch that
# differ only in train.lambda, each measured by report-control on the same held-out inquiries.
#
#   scripts/lambda_sweep.sh [STEPS=1000] [INQUIRIES=12] [LAMBDAS="0 1 3"]
#
# The reference bank is copied from runs/latent-dcgan when that run exists (λ is not part of the
# bank, so every run trains on the same teachers). Results: runs/lambda-sweep/<λ>/report/report.json
# and one summary line per λ on stdout.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
STEPS=${1:-1000}
INQ=${2:-12}
LAMBDAS=${3:-"0 1 3"}
BIN=target/release/cemiface
for l in $LAMBDAS; do
  run=runs/lambda-sweep/$l
  mkdir -p "$run"
  sed "s/^lambda = .*/lambda = $l/" configs/latent-dcgan.toml > "$run.toml"
  [ -f "$run/bank.safetensors" ] || { [ -f runs/latent-dcgan/bank.safetensors ] && cp runs/latent-dcgan/bank.safetensors "$run/"; } || true
  resume=(); [ -d "$run/checkpoints" ] && resume=(--resume)
  "$BIN" train-diffusion --config "$run.toml" --run-dir "$run" --max-steps "$STEPS" "${resume[@]}" > "$run/train.log" 2>&1
  "$BIN" report-control --checkpoint "$run" --inquiries "$INQ" --no-photos --m=-1,-0.5,0,0.5,1 \
    --out "$run/report" --json > "$run/report.stdout"
  python3 - "$l" "$run/report/report.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[2]))
line = [f"lambda {sys.argv[1]}:"]
for name, j in r["judges"].items():
    means = " ".join(f"{float(m):+.1f}→{s:+.2f}" for m, s in sorted(j["mean_by_m"].items(), key=lambda kv: float(kv[0])))
    line.append(f"{name}: spearman {j['spearman']:.2f}, {means};")
print(" ".join(line))
PY
done
