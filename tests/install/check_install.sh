#!/usr/bin/env bash
# cmake --install of a build, moved elsewhere, then used as a user would: the installed
# `anchorctx --version`, a C program built against it through find_package(anchorctx) and through
# pkg-config, and the library's exported symbols (the C API's only).
# Usage: check_install.sh BUILD_DIR WORK_DIR C_COMPILER
set -euo pipefail
build=$1 work=$2 cc=$3
here=$(cd "$(dirname "$0")" && pwd)
rm -rf "$work"
mkdir -p "$work"
cmake --install "$build" --prefix "$work/staged" >"$work/install.log"
mv "$work/staged" "$work/prefix"  # the tree must not depend on where it was installed
prefix=$work/prefix

"$prefix/bin/anchorctx" --version
lib=$(find "$prefix" -name 'libanchorctx_c.so.*.*' -print -quit)
test -n "$lib" || { echo "libanchorctx_c.so.X.Y.Z not installed" >&2; exit 1; }
test -f "$prefix/include/anchorctx/anchorctx.h"
foreign=$(nm -D --defined-only "$lib" | awk '{print $3}' | grep -v '^anchorctx_' || true)
if [[ -n "$foreign" ]]; then
  echo "$lib exports more than the C API:" >&2
  echo "$foreign" | head >&2
  exit 1
fi

cmake -S "$here" -B "$work/consumer" -DCMAKE_C_COMPILER="$cc" -DCMAKE_PREFIX_PATH="$prefix" \
  >"$work/consumer-configure.log"
cmake --build "$work/consumer" >"$work/consumer-build.log"
"$work/consumer/consumer"

pc_dir=$(dirname "$(find "$prefix" -name anchorctx.pc -print -quit)")
flags=$(PKG_CONFIG_PATH=$pc_dir pkg-config --cflags --libs anchorctx)
libdir=$(PKG_CONFIG_PATH=$pc_dir pkg-config --variable=libdir anchorctx)
# shellcheck disable=SC2086  # the flags are words
"$cc" -std=c99 -Wall -Wextra -Werror "$here/consumer.c" -o "$work/consumer-pkgconfig" $flags -lm \
  -Wl,-rpath,"$libdir"
"$work/consumer-pkgconfig"
