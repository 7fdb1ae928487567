#!/usr/bin/env bash
# Runs the attention benchmarks recorded in docs/PERFORMANCE.md, ours and PyTorch's side by side
# in one session, and writes one JSON file per measurement into OUT_DIR. Then:
#   python3 tools/bench/performance_report.py OUT_DIR   (prints the Markdown tables)
#
# Usage: tools/bench/performance.sh OUT_DIR [--no-peers] [--repeat N]
# Needs build/bin/anchorctx (README's first command) and, for the peers, .venv with
# tools/requirements-peers.txt installed. Takes about 15 minutes with the peers on 2 cores.
#
# OpenBLAS: this workplace sets OPENBLAS_CORETYPE=Haswell (for old OpenBLAS bugs on some CPUs),
# which makes the sgemm yardstick use AVX2 kernels on AVX-512 machines. The benchmarks unset it
# (and OPENBLAS_L2_SIZE with it) so sgemm runs OpenBLAS's native kernels: the stricter yardstick.
set -euo pipefail
out=${1:?usage: performance.sh OUT_DIR [--no-peers] [--repeat N]}
shift
peers=1
repeat=5
while (($#)); do
  case $1 in
    --no-peers) peers=0 ;;
    --repeat) repeat=$2; shift ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
  shift
done
root=$(cd "$(dirname "$0")/../.." && pwd)
exe=$root/build/bin/anchorctx
py=$root/.venv/bin/python
mkdir -p "$out"
threads=2
native() { env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE "$@"; }

ours() {  # name, then bench arguments
  local name=$1; shift
  echo "== anchorctx $name" >&2
  native "$exe" bench attention --threads "$threads" --repeat "$repeat" --json "$@" > "$out/$name.json"
}
peer() {  # name, then peer arguments
  local name=$1; shift
  echo "== torch $name" >&2
  native "$py" "$root/tools/peers/torch_attention.py" --threads "$threads" --json "$@" \
    > "$out/$name.json" 2> "$out/$name.err" || echo "   (failed: see $out/$name.err)" >&2
}

shape=(--heads 8 --head-dim 128)
docs=$out/docs_T16384.txt

# 1. causal, T = 8192: efficiency against sgemm; bf16 against fp32.
ours causal_8192_fp32 --mask causal --seq-len 8192 "${shape[@]}" --dtype fp32
ours causal_8192_bf16 --mask causal --seq-len 8192 "${shape[@]}" --dtype bf16

# 2. T = 16384 with lognormal documents (median 1024, sigma 1): anchor and intra_doc against
#    causal on the same shape.
ours anchor_16384_fp32 --mask anchor --seq-len 16384 "${shape[@]}" --docs lognormal:1024:1.0 \
  --dtype fp32 --save-docs "$docs"
ours anchor_16384_bf16 --mask anchor --seq-len 16384 "${shape[@]}" --docs lognormal:1024:1.0 --dtype bf16
ours intra_doc_16384_fp32 --mask intra_doc --seq-len 16384 "${shape[@]}" --docs lognormal:1024:1.0 \
  --anchor-len 1 --dtype fp32
ours causal_16384_fp32 --mask causal --seq-len 16384 "${shape[@]}" --dtype fp32

if ((peers)); then
  prepeat=3
  peer torch_causal_8192_fp32 --mask causal --seq-len 8192 "${shape[@]}" --dtype fp32 \
    --repeat "$prepeat" --impl sdpa_causal,flex_attention
  peer torch_causal_8192_bf16 --mask causal --seq-len 8192 "${shape[@]}" --dtype bf16 \
    --repeat "$prepeat" --impl sdpa_causal
  peer torch_anchor_16384_fp32 --mask anchor --doc-lengths "$docs" "${shape[@]}" --dtype fp32 \
    --repeat "$prepeat" --impl sdpa_dense_mask,flex_attention
  peer torch_causal_16384_fp32 --mask causal --seq-len 16384 "${shape[@]}" --dtype fp32 \
    --repeat "$prepeat" --impl sdpa_causal
fi
echo "results in $out" >&2
