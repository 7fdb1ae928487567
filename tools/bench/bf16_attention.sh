#!/usr/bin/env bash
# The bf16 attention kernels against the float32 ones, in one session: for each shape, ROUNDS
# rounds of `anchorctx bench attention` calls back to back (fp32, bf16 emulated, bf16 native
# with its products on vdpbf16ps (ANCHORCTX_AMX=off; only where the CPU has AMX, where native
# would otherwise use it), bf16 native), so that every ratio compares runs minutes apart at most
# on a shared, noisy machine.
# One JSON file per call into OUT_DIR; then
#   python3 tools/bench/bf16_attention_report.py OUT_DIR   (medians and ratios, Markdown)
#
# Usage: tools/bench/bf16_attention.sh OUT_DIR [--rounds N] [--repeat N] [--seq-lens "8192 16384"]
#        [--masks "causal anchor"]
# Needs build/bin/anchorctx and a CPU with AVX512_BF16 for the native rows (the call fails
# without it). OPENBLAS_CORETYPE is unset as in performance.sh, so sgemm is OpenBLAS's native one.
set -euo pipefail
out=${1:?usage: bf16_attention.sh OUT_DIR [--rounds N] [--repeat N] [--seq-lens LIST] [--masks LIST]}
shift
rounds=3
repeat=3
seq_lens="8192 16384"
masks="causal anchor"
while (($#)); do
  case $1 in
    --rounds) rounds=$2; shift ;;
    --repeat) repeat=$2; shift ;;
    --seq-lens) seq_lens=$2; shift ;;
    --masks) masks=$2; shift ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
  shift
done
root=$(cd "$(dirname "$0")/../.." && pwd)
exe=$root/build/bin/anchorctx
mkdir -p "$out"
kinds="fp32 emulated native"
grep -qw amx_bf16 /proc/cpuinfo && kinds="fp32 emulated vdpbf16 native"
for t in $seq_lens; do
  for mask in $masks; do
    for ((r = 1; r <= rounds; r++)); do
      for kind in $kinds; do
        name=${mask}_${t}_${kind}_r$r
        dtype=bf16
        extra=(--bf16-compute "$kind")
        amx=on
        if [[ $kind == fp32 ]]; then dtype=fp32; extra=(); fi
        if [[ $kind == vdpbf16 ]]; then extra=(--bf16-compute native); amx=off; fi
        echo "== $name" >&2
        env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE ANCHORCTX_AMX=$amx "$exe" bench attention --mask "$mask" \
          --seq-len "$t" --heads 8 --head-dim 128 --docs lognormal:1024:1.0 --dtype "$dtype" \
          "${extra[@]}" --threads 2 --repeat "$repeat" --json > "$out/$name.json"
      done
    done
  done
done
