#!/usr/bin/env bash
# Same-process A/B of the CPU kernels at two git revisions (the Python benchmark's ratio against
# ORT drifts with this VM's neighbours; two builds alternating call by call in one process do not).
#
#   bash benchmarks/kernel_ab.sh REV_A [REV_B] [SPEC]     REV_B defaults to the working tree
#   bash benchmarks/kernel_ab.sh 1668bd2 HEAD "64x56k3,256x28k1,512x7k1"
#   bash benchmarks/kernel_ab.sh HEAD WORKTREE "64x56d7p70,123x28d5p54"   # depthwise layers
#
# Builds each revision's kernel core (kernels/, no tvm-ffi) into a shared library under
# ${ST_AB_DIR:-/tmp/st-kernel-ab} and runs benchmarks/kernel_ab/ab.cc on them; see that file for
# SPEC and the UNALIGNED / FLUSH / PRODUCE / ISA switches. Run both orders (A B, then B A): a ratio that
# flips with the order is noise. A layer run alone over and over keeps its data in cache; check a
# gain inside a network too (`st-deploy bench TICKET --runtime tvm-sparse --per-layer`): small
# memory-bound layers that gained 1.1-1.2x here measured the same there.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
work="${ST_AB_DIR:-/tmp/st-kernel-ab}"
mkdir -p "$work"
a="${1:?usage: kernel_ab.sh REV_A [REV_B] [SPEC]}"
b="${2:-WORKTREE}"
spec="${3:-}"

build() {  # build REV -> prints the path of its core .so
  local rev="$1" src
  if [ "$rev" = WORKTREE ]; then
    src="$root/kernels"
  else
    src="$work/src-$rev"
    rm -rf "$src" && mkdir -p "$src"
    git -C "$root" archive "$rev" kernels | tar -x -C "$src"
    src="$src/kernels"
  fi
  local out="$work/build-$rev"
  # Compiler output goes to build.log, shown only if the build fails.
  if ! { cmake -S "$src" -B "$out" -DCMAKE_BUILD_TYPE=Release -DST_KERNELS_CUDA=OFF -DST_KERNELS_FFI=OFF &&
         cmake --build "$out" --target st_kernels_core -j"$(nproc)"; } >"$work/build-$rev.log" 2>&1; then
    cat "$work/build-$rev.log" >&2
    exit 1
  fi
  g++ -shared -o "$work/core-$rev.so" -Wl,--whole-archive "$out/libst_kernels_core.a" \
    -Wl,--no-whole-archive -lpthread
  echo "$work/core-$rev.so"
}

liba="$(build "$a")"
libb="$(build "$b")"
g++ -O2 -std=c++17 -I"$root/kernels/include" "$root/benchmarks/kernel_ab/ab.cc" -o "$work/ab" -ldl
echo "A = $a, B = $b"
"$work/ab" "$liba" "$libb" ${spec:+"$spec"}
