#!/bin/sh
# Native kernel tests for CI: builds tests/kernels/native/native_test.cc against st_kernels_core
#   asan     host build with AddressSanitizer + UndefinedBehaviorSanitizer, every host ISA variant;
#            the kernels at -O1 -g0 (ST_KERNELS_OPT; at -O3 -g the depthwise objects compiled about
#            three times slower), asserts on (Debug), the test binary itself at -O1 -g
#   aarch64  cross build (g++-aarch64-linux-gnu, static) run under qemu-aarch64: NEON + scalar
# Usage: kernels/ci_native_tests.sh [--build-only] [all|asan|aarch64]. Exit 0 = passed, 77 = every
# requested part was skipped because its toolchain is missing (the message says which), else failure.
# --build-only: configure and build, run nothing (.ci/run starts it in the background so the builds
# use the core pytest leaves idle). Each build folder is locked while it is built (flock), so a
# run started meanwhile waits for that build and then finds it done.
set -eu
BUILD_ONLY=0
if [ "${1:-}" = "--build-only" ]; then
  BUILD_ONLY=1
  shift
fi
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${ST_NATIVE_BUILD:-$ROOT/build}
# Both builds are incremental (their folders persist under $BUILD) and use every core by default.
JOBS=${JOBS:-$(nproc 2>/dev/null || echo 2)}
MODE=${1:-all}
ran=0
skipped=0

# build DIR CMAKE_ARGS...: configure (once) and build st_native_test in DIR, holding DIR's lock.
build() {
  dir=$1
  shift
  mkdir -p "$dir"
  (
    if command -v flock >/dev/null; then flock 9; fi
    cmake -S "$ROOT/kernels" -B "$dir" -DST_KERNELS_FFI=OFF -DST_KERNELS_NATIVE_TESTS=ON -DST_KERNELS_CUDA=OFF \
      "$@" >/dev/null
    cmake --build "$dir" -j"$JOBS" --target st_native_test >/dev/null
  ) 9>"$dir.lock"
}

run_asan() {
  if ! echo 'int main(){return 0;}' | ${CXX:-c++} -x c++ -fsanitize=address,undefined -o /dev/null - 2>/dev/null; then
    echo "SKIP asan: the host compiler cannot link -fsanitize=address,undefined"
    skipped=$((skipped + 1))
    return 0
  fi
  build "$BUILD/native-asan" -DCMAKE_BUILD_TYPE=Debug "-DST_KERNELS_OPT=-O1 -g0" \
    "-DCMAKE_CXX_FLAGS=-O1 -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer" \
    "-DCMAKE_EXE_LINKER_FLAGS=-fsanitize=address,undefined"
  ran=$((ran + 1))
  [ "$BUILD_ONLY" -eq 1 ] && return 0
  echo "== asan+ubsan (host)"
  ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 "$BUILD/native-asan/st_native_test"
}

run_aarch64() {
  if ! command -v aarch64-linux-gnu-g++ >/dev/null || ! command -v qemu-aarch64 >/dev/null; then
    echo "SKIP aarch64: needs aarch64-linux-gnu-g++ and qemu-aarch64 (apt-get install g++-aarch64-linux-gnu qemu-user)"
    skipped=$((skipped + 1))
    return 0
  fi
  build "$BUILD/native-aarch64" -DCMAKE_BUILD_TYPE=Release -DCMAKE_SYSTEM_NAME=Linux \
    -DCMAKE_SYSTEM_PROCESSOR=aarch64 -DCMAKE_CXX_COMPILER=aarch64-linux-gnu-g++ -DCMAKE_EXE_LINKER_FLAGS=-static
  ran=$((ran + 1))
  [ "$BUILD_ONLY" -eq 1 ] && return 0
  echo "== aarch64 under qemu"
  qemu-aarch64 "$BUILD/native-aarch64/st_native_test"
}

case "$MODE" in
  all) run_asan; run_aarch64 ;;
  asan) run_asan ;;
  aarch64) run_aarch64 ;;
  *) echo "usage: $0 [--build-only] [all|asan|aarch64]" >&2; exit 2 ;;
esac
if [ "$ran" -eq 0 ] && [ "$skipped" -gt 0 ]; then
  exit 77
fi
