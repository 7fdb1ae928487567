#!/usr/bin/env bash
# Installs what anchorctx needs to build and test on Debian 12 (run as root). Idempotent.
set -euo pipefail
packages=(
  build-essential cmake ninja-build pkg-config   # toolchain
  libgtest-dev libgmock-dev libbenchmark-dev     # tests and micro-benchmarks
  libopenblas-dev libopenblas-openmp-dev         # BLAS (GEMMs; the OpenMP build shares our thread pool)
  libdnnl-dev                                    # oneDNN: native bf16 GEMMs (optional at build time)
  libomp-dev                                     # OpenMP headers for clang users; g++ uses libgomp
  libcli11-dev nlohmann-json3-dev libfmt-dev     # command line, JSON, formatting
  libsimdjson-dev zlib1g-dev libzstd-dev         # data readers: JSONL, gzip, zstd
  libpcre2-dev libsentencepiece-dev libxxhash-dev  # tokenizers: regexes, SentencePiece, hashes
  libicu-dev                                     # tokenizers: Unicode NFC
  libopenmpi-dev openmpi-bin                     # MPI: multi-process training (optional at build time)
  libcairo2-dev fonts-dejavu-core                # report plots (SVG and PNG) and their font
  python3 python3-venv clang-format              # the C API ctypes test, reference venvs; format
  time                                           # /usr/bin/time: the streaming memory test
  clang libclang-rt-14-dev                       # libFuzzer targets (fuzz/)
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
