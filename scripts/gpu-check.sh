#!/usr/bin/env bash
# The one script to run on a GPU machine: is the CUDA build right there, and how fast is it.
# Needs no network: the binary (from scripts/build-cuda.sh), the assets folder and this repository's
# models/ are all it reads; the CUDA 13 math libraries come from the host (a PyTorch cu13x venv has
# them) and the driver library from the host's driver (>= 580 for the sm_90 default build).
#
#   scripts/gpu-check.sh [--bin dist/cuda-sm90/cemiface.gz] [--assets assets] [--out gpu-check-out]
#                        [--device cuda] [--presets demo-64,paper-112] [--batch 64]
#                        [--train-demo SECONDS] [--quick]
#
#   --quick            tiny-32 only, small batches: a dry run of every stage (e.g. --device cpu here)
#   --train-demo S     also train demo-64 for S seconds and report how far it got
#
# Stages, each logged with its wall time; results under --out:
#   1. environment: binary, libraries (ldd), nvidia-smi, toolchain of the build (BUILD.json)
#   2. /healthz of `cemiface serve --device cuda`: must say "device": "cuda:0" and name the GPU
#   3. `cemiface device-check`: GPU memory flat over repeated steps (3a), CPU-vs-device parity (UNet forward, DDIM-20 from one seed, dlib,
#      latent denoiser; tolerances in the table) and speed (DDIM-20 latency, images/s, train steps/s)
#   4. `cemiface generate` with the shipped latent model: images/s of the whole command
#   5. `cemiface train-diffusion --config latent-dcgan`: training steps/s
#   6. summary.md / summary.json
# Stages 1–2 must pass for the rest to mean anything; a failure in 3–5 is logged, the remaining
# stages still run (one GPU session shows every problem at once), and the script exits 1 at the end.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN=$ROOT/dist/cuda-sm90/cemiface.gz
ASSETS=$ROOT/assets
OUTDIR=${OUT:-$ROOT/gpu-check-out}
DEVICE=cuda
PRESETS=demo-64,paper-112
BATCH=64
TRAIN_DEMO=0
QUICK=0
while [ $# -gt 0 ]; do
  case "$1" in
    --bin) BIN=$2; shift 2 ;;
    --assets) ASSETS=$2; shift 2 ;;
    --out) OUTDIR=$2; shift 2 ;;
    --device) DEVICE=$2; shift 2 ;;
    --presets) PRESETS=$2; shift 2 ;;
    --batch) BATCH=$2; shift 2 ;;
    --train-demo) TRAIN_DEMO=$2; shift 2 ;;
    --quick) QUICK=1; shift ;;
    -h|--help) sed -n '2,21p' "$0"; exit 0 ;;
    *) echo "gpu-check: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done
if [ "$QUICK" = 1 ]; then PRESETS=tiny-32; BATCH=2; fi
ITERS=$([ "$QUICK" = 1 ] && echo 1 || echo 3)

mkdir -p "$OUTDIR"
OUTDIR=$(cd "$OUTDIR" && pwd)
LOG=$OUTDIR/gpu-check.log
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
say() { echo "gpu-check: $*" | tee -a "$LOG"; }
die() { say "error: $*"; exit 1; }
stage_start=0
stage() { stage_start=$(date +%s.%N); say "== $* =="; }
since() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }'; }
stage_end() { say "   ($(since "$stage_start") s)"; }
FAILED=()
failed() { FAILED+=("$1"); say "FAILED: $1 (continuing)"; }

# 1. Environment
stage "1. environment"
[ -f "$BIN" ] || die "no binary at $BIN (scripts/build-cuda.sh makes it; --bin to point elsewhere)"
[ -d "$ASSETS/face-api" ] && [ -f "$ASSETS/gan-face-generate/weights.tar" ] || die "assets missing under $ASSETS (scripts/setup.sh --assets-only)"
case "$BIN" in
  *.gz) gunzip -c "$BIN" > "$WORK/cemiface" ;;
  *) cp "$BIN" "$WORK/cemiface" ;;
esac
chmod +x "$WORK/cemiface"
CEMI=$WORK/cemiface
[ -f "$(dirname "$BIN")/BUILD.json" ] && cp "$(dirname "$BIN")/BUILD.json" "$OUTDIR/build.json"
if [ "$DEVICE" != cpu ]; then
  # The math libraries of a CUDA 13 install on the host (a CUDA toolkit or a PyTorch cu13x venv):
  # each library ldd cannot resolve is looked for once over the whole file system.
  for so in $(ldd "$CEMI" | awk '/=> not found/ { print $1 }'); do
    # (libcuda.so.1 is the driver's own: found on the host where its loader path misses it, never shipped)
    LP=${LD_LIBRARY_PATH:-}; for d in ${LP//:/ }; do [ -e "$d/$so" ] && continue 2; done
    lib=$(find / \( -path /proc -o -path /sys -o -path /dev \) -prune -o -name "$so" -print 2>/dev/null | head -1 || true)
    [ -n "$lib" ] || die "$so not found on this host: install CUDA 13 (or a PyTorch cu13x wheel) or put the libraries beside the binary in lib/"
    case ":${LD_LIBRARY_PATH:-}:" in *":$(dirname "$lib"):"*) ;; *)
      export LD_LIBRARY_PATH=$(dirname "$lib")${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
      say "$so (and what lies beside it) from $(dirname "$lib")" ;;
    esac
  done
  ldd "$CEMI" | tee "$OUTDIR/ldd.txt" >> "$LOG"
  if grep -q 'not found' "$OUTDIR/ldd.txt"; then die "unresolved libraries: $(grep 'not found' "$OUTDIR/ldd.txt" | tr '\n' ' ')"; fi
  command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total,compute_cap --format=csv | tee "$OUTDIR/nvidia-smi.csv" >> "$LOG"
fi
"$CEMI" --version | tee -a "$LOG"
stage_end

# 2. /healthz
stage "2. /healthz on $DEVICE"
"$CEMI" serve --addr 127.0.0.1:0 --device "$DEVICE" --assets-dir "$ASSETS" --data-dir "$WORK/data" \
  --site-root "$WORK" > "$WORK/serve.out" 2> "$WORK/serve.err" &
SERVE=$!
addr=""
for _ in $(seq 1 600); do
  addr=$(grep -o 'listening on http://[0-9.:]*' "$WORK/serve.out" "$WORK/serve.err" 2>/dev/null | head -1 | sed 's|.*http://||' || true)
  [ -n "$addr" ] && break
  kill -0 $SERVE 2>/dev/null || break
  sleep 0.1
done
[ -n "$addr" ] || { cat "$WORK/serve.err" >> "$LOG"; die "the server did not start (log above)"; }
exec 3<>"/dev/tcp/${addr%:*}/${addr##*:}"
printf 'GET /healthz HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n' "$addr" >&3
sed '1,/^\r$/d' <&3 > "$OUTDIR/healthz.json"
exec 3>&-
kill $SERVE; wait $SERVE 2>/dev/null || true
cat "$OUTDIR/healthz.json" | head -c 600 >> "$LOG"; echo >> "$LOG"
case "$DEVICE" in cuda|gpu) want_dev=cuda:0 ;; *) want_dev=$DEVICE ;; esac
grep -q "\"device\":\"$want_dev\"" "$OUTDIR/healthz.json" || die "/healthz does not report device $want_dev"
[ "$DEVICE" = cpu ] || grep -q '"gpu":{"name"' "$OUTDIR/healthz.json" || die "/healthz names no GPU"
say "/healthz: device $want_dev$(grep -o '"gpu":{[^}]*}' "$OUTDIR/healthz.json" | sed 's/^/, /')"
stage_end

# 3a. Memory: GPU memory in use must stay flat over repeated UNet forwards and training steps. If
# it does not, the rest still runs, at --batch 8, so the other numbers come back.
mem_ok=""
if [ "$DEVICE" != cpu ]; then
  stage "3a. memory (device-check --memory-only)"
  if "$CEMI" device-check --memory-only --device "$DEVICE" --presets "${PRESETS%%,*}" \
      --assets-dir "$ASSETS" >> "$LOG" 2>&1; then
    mem_ok=yes; say "GPU memory flat over repeated forwards and training steps"
  else
    mem_ok=no; failed "memory (GPU memory grows step after step; the rows below run at --batch 8)"
    BATCH=8
  fi
  stage_end
fi

# 3. Parity and speed of the building blocks
stage "3. device-check ($PRESETS)"
"$CEMI" device-check --device "$DEVICE" --presets "$PRESETS" --batch "$BATCH" --iters "$ITERS" \
  --assets-dir "$ASSETS" --json "$OUTDIR/device-check.json" --markdown "$OUTDIR/device-check.md" \
  2>> "$LOG" | tee -a "$LOG" || failed "device-check"
[ -f "$OUTDIR/device-check.json" ] || echo '{"error": "device-check wrote no report"}' > "$OUTDIR/device-check.json"
[ -f "$OUTDIR/device-check.md" ] || echo "device-check failed before its report: see gpu-check.log" > "$OUTDIR/device-check.md"
stage_end

# 4. Dataset generation with the shipped model
stage "4. generate (latent-dcgan)"
ids=$([ "$QUICK" = 1 ] && echo 1 || echo 16); per=$([ "$QUICK" = 1 ] && echo 4 || echo 64)
gb=$([ "$QUICK" = 1 ] && echo 4 || echo 256)
t0=$(date +%s.%N)
gen_ips=null
if "$CEMI" generate --checkpoint "$ROOT/models/latent-dcgan" --out "$WORK/gen" --identities "$ids" -n "$per" \
  --batch "$gb" --device "$DEVICE" --assets-dir "$ASSETS" >> "$LOG" 2>&1; then
  gen_s=$(since "$t0")
  gen_ips=$(awk -v n=$((ids * per)) -v s="$gen_s" 'BEGIN { printf "%.2f", n / s }')
  say "generate: $((ids * per)) images in ${gen_s} s = $gen_ips images/s (whole command: inquiries, inversion, DDIM-20, manifest)"
else
  failed "generate"
fi
stage_end

# 5. Training steps/s of the latent preset
stage "5. train-diffusion latent-dcgan"
steps=$([ "$QUICK" = 1 ] && echo 10 || echo 200)
latent_cfg=latent-dcgan
if [ "$QUICK" = 1 ]; then  # a 32-anchor bank: the preset's 2,048 take minutes on a CPU
  sed 's/^anchors = [0-9]*/anchors = 32/' "$ROOT/configs/latent-dcgan.toml" > "$WORK/latent-quick.toml"
  latent_cfg=$WORK/latent-quick.toml
fi
"$CEMI" train-diffusion --config "$latent_cfg" --run-dir "$WORK/latent-run" --max-steps "$steps" \
  --device "$DEVICE" --assets-dir "$ASSETS" > "$WORK/train.log" 2>&1 || { tail -20 "$WORK/train.log" >> "$LOG"; failed "latent training"; }
latent_its=$(grep -o '[0-9.]* it/s' "$WORK/train.log" | tail -1 | cut -d' ' -f1 || true)
say "latent-dcgan training: ${latent_its:-?} steps/s ($steps steps)"
stage_end

demo_line=""
if [ "$TRAIN_DEMO" -gt 0 ]; then
  stage "extra: train demo-64 for $TRAIN_DEMO s"
  timeout "$TRAIN_DEMO" "$CEMI" train-diffusion --config demo-64 --run-dir "$OUTDIR/demo-64-run" --sample-grid \
    --device "$DEVICE" --assets-dir "$ASSETS" > "$OUTDIR/demo-64-train.log" 2>&1 || true
  demo_line=$(grep -o 'step [0-9]*/[0-9]* | loss [0-9.]* .* [0-9.]* it/s' "$OUTDIR/demo-64-train.log" | tail -1 || true)
  say "demo-64 after $TRAIN_DEMO s: ${demo_line:-no step logged}"
  find "$OUTDIR/demo-64-run" -name '*.safetensors' -delete 2>/dev/null || true
  stage_end
fi

# 6. Summary
gpu=$(grep -o '"gpu":{[^}]*}' "$OUTDIR/healthz.json" || echo '"gpu":null')
cat > "$OUTDIR/summary.json" <<EOF
{"device": "$want_dev", $gpu, "generate_images_per_s": $gen_ips, "generate_images": $((ids * per)),
 "latent_train_steps_per_s": ${latent_its:-null}, "memory_flat": "$mem_ok", "device_check": $(cat "$OUTDIR/device-check.json")}
EOF
{
  echo "# gpu-check on $want_dev, $(date -u +%Y-%m-%d)"
  echo
  [ -f "$OUTDIR/nvidia-smi.csv" ] && { echo '```'; cat "$OUTDIR/nvidia-smi.csv"; echo '```'; echo; }
  cat "$OUTDIR/device-check.md"
  echo
  echo "| whole command | result |"
  echo "|---|---|"
  echo "| generate, latent-dcgan, $ids × $per images | $gen_ips images/s |"
  echo "| train-diffusion latent-dcgan, $steps steps | ${latent_its:-?} steps/s |"
  if [ "$DEVICE" != cpu ]; then echo "| GPU memory flat over repeated forwards and training steps | $mem_ok |"; fi
  if [ -n "$demo_line" ]; then echo "| train demo-64 for $TRAIN_DEMO s | ${demo_line//|/\\|} |"; fi
  if [ ${#FAILED[@]} -gt 0 ]; then echo; echo "**Failed stages:** ${FAILED[*]} (see gpu-check.log)"; fi
} > "$OUTDIR/summary.md"
say "done: $OUTDIR/summary.md"
cat "$OUTDIR/summary.md"
[ ${#FAILED[@]} -eq 0 ] || { say "failed stages: ${FAILED[*]}"; exit 1; }
