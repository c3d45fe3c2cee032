#!/usr/bin/env bash
# One-shot GPU check of the CUDA kernels (kernels/cuda), run from the repository root on a machine
# with an NVIDIA GPU, nvcc, cmake, torch with CUDA; results go under $OUT (default ./gpu_check_out).
#   bash benchmarks/gpu_check.sh
# apache-tvm-ffi (and pytest, if missing) come from wheels carried in .whl/. The package itself is
# NOT pip-installed (its pyproject pins a CPU torch): everything runs from the checkout via
# PYTHONPATH. Every step logs to $OUT/<step>.log and the script goes on when a step fails; the
# exit status of each step is in $OUT/steps.txt. Budget: about 5 minutes on an H100 with 16 cores.
set -x
set -o pipefail
OUT="${OUT:-$PWD/gpu_check_out}"
mkdir -p "$OUT"
BUILD=/tmp/b
JOBS=$(nproc 2>/dev/null || echo 16)
T0=$(date +%s)
: > "$OUT/steps.txt"

step() {  # step NAME TIMEOUT_S CMD...: runs CMD with a time limit, logs, records the status
  local name=$1 limit=$2
  shift 2
  local t=$(date +%s)
  timeout -k 10 "$limit" "$@" > "$OUT/$name.log" 2>&1
  local rc=$?
  echo "$name rc=$rc seconds=$(( $(date +%s) - t )) total=$(( $(date +%s) - T0 ))" | tee -a "$OUT/steps.txt"
  tail -n 30 "$OUT/$name.log"
  return $rc
}

# 1. versions
step versions 60 bash -c 'nvidia-smi; nvcc --version; cmake --version; ninja --version; python3 --version;
  python3 -c "import torch; print(torch.__version__, torch.version.cuda, torch.cuda.is_available(), torch.backends.cudnn.version())";
  which compute-sanitizer; python3 -m pip --version'

# 2. carried wheels (apache-tvm-ffi, typing-extensions, pytest and its deps) into /tmp/site
export PYTHONPATH="/tmp/site:$PWD${PYTHONPATH:+:$PYTHONPATH}"
export TVM_FFI_DISABLE_TORCH_C_DLPACK=1   # never JIT-build torch's DLPack addon here
if ls .whl/*.whl > /dev/null 2>&1; then
  step wheels 120 bash -c 'python3 -m pip install --no-index --target /tmp/site .whl/*.whl ||
    python3 -m pip install --no-index --no-deps --target /tmp/site .whl/*.whl'
fi
step imports 60 python3 -c "import tvm_ffi, torch, pytest; print('tvm_ffi', tvm_ffi.__version__, tvm_ffi.__file__); print('pytest', pytest.__version__)"

# 3. build (sm_90 only, Ninja, all cores)
step configure 120 cmake -S kernels -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release \
  -DST_KERNELS_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90 -DPython_EXECUTABLE="$(command -v python3)"
step build 300 cmake --build "$BUILD" -j "$JOBS" --target st_kernels_cuda
export ST_KERNELS_CUDA_LIB="$BUILD/libst_kernels_cuda.so"
ls -la "$BUILD"/*.so "$BUILD"/*.a > "$OUT/built_files.txt" 2>&1
nm -D --defined-only "$ST_KERNELS_CUDA_LIB" > "$OUT/exported_symbols.txt" 2>&1
cp "$BUILD/CMakeCache.txt" "$OUT/CMakeCache.txt" 2>/dev/null

# 4. tests (self-contained: --noconftest skips the CPU-library fixtures and their build)
step pytest 240 python3 -m pytest -q -p no:cacheprovider --noconftest tests/kernels/test_cuda.py \
  -rs --durations=15 --junitxml="$OUT/pytest_junit.xml"

# 5. the TVM cuda artifact of the example ticket, end to end (benchmarks/gpu_check_tvm.sh)
if [ -x benchmarks/gpu_check_tvm.sh ] && [ -d .devcarry ]; then
  step tvm 240 benchmarks/gpu_check_tvm.sh
fi

# 6. compute-sanitizer memcheck: one normal case and one malformed-index case
cat > /tmp/st_sanitize_case.py <<'EOF'
import importlib.util, sys, torch
spec = importlib.util.spec_from_file_location("stk_cuda", "st_deploy/kernels/cuda.py")
K = importlib.util.module_from_spec(spec); spec.loader.exec_module(K)
mode = sys.argv[1]
g = torch.Generator(device="cpu"); g.manual_seed(0)
w = torch.randn(16, 8, 3, 3, generator=g) * (torch.rand(16, 8, 3, 3, generator=g) > 0.7)
x = torch.randn(2, 8, 10, 10, generator=g).cuda()
ip, ix, v = K.to_csr(w.reshape(16, -1).cuda())
bp, bi, bv = K.to_bsr4x1(w.reshape(16, -1).cuda())
dw = torch.randn(8, 1, 5, 5, generator=g).cuda()
dp, di, dv = K.to_csr((dw * (dw > 0)).reshape(8, 25))
if mode == "malformed":
    ix = ix.clone(); ix[3] = 10_000; ix[-1] = -1
    ip = ip.clone(); ip[5] = 1 << 30
    bi = bi.clone(); bi[0] = 72
    di = di.clone(); di[0] = 25
calls = [
    lambda: K.conv2d_csr(x, ip, ix, v, out_channels=16, kernel_size=3, padding=1),
    lambda: K.conv2d_bsr4x1(x, bp, bi, bv, out_channels=16, kernel_size=3, padding=1),
    lambda: K.dwconv2d_csr(x, dp, di, dv, kernel_size=5),
    lambda: K.dwconv2d(torch.randn(1, 8, 40, 40).cuda(), dw),
    lambda: K.linear_csr(torch.randn(2, 72).cuda(), ip, ix, v, out_features=16),
    lambda: K.linear_dense(torch.randn(3, 72).cuda(), torch.randn(16, 72).cuda()),
    lambda: K.linear_dense(torch.randn(2, 37).cuda(), torch.randn(16, 37).cuda(), act="relu"),
]
raised = 0
for i, c in enumerate(calls):
    try:
        c()
        K.check()  # synchronizes; raises if this call's kernel met a malformed pattern
        print("call", i, "clean")
    except K.KernelError as e:
        raised += 1
        print("call", i, "raised KernelError:", e)
torch.cuda.synchronize()
rc = 0 if raised == (0 if mode == "normal" else 4) else 1
print("done", mode, "raised", raised, "rc", rc)
sys.exit(rc)
EOF
if command -v compute-sanitizer > /dev/null; then
  for mode in normal malformed; do
    step "sanitizer_$mode" 100 compute-sanitizer --tool memcheck --error-exitcode 3 \
      --print-limit 50 python3 /tmp/st_sanitize_case.py "$mode"
  done
else
  echo "compute-sanitizer not found" | tee -a "$OUT/steps.txt"
  step sanitizer_plain 120 bash -c 'python3 /tmp/st_sanitize_case.py normal && python3 /tmp/st_sanitize_case.py malformed'
fi

# 7. benchmark (stops starting new cases after 75 s)
step bench 150 python3 benchmarks/cuda_kernels.py --json "$OUT/cuda_kernels.json" --time-budget 75

echo "gpu_check done in $(( $(date +%s) - T0 )) s" | tee -a "$OUT/steps.txt"
cat "$OUT/steps.txt"
# The device tool returns at most 8 files: every log in one archive, the results beside it.
tar -czf /tmp/gpu_check_logs.tgz -C "$OUT" . && find "$OUT" -mindepth 1 -maxdepth 1 \
  ! -name steps.txt ! -name cuda_kernels.json ! -name 'gpu_tvm*.json' -exec rm -rf {} + \
  && mv /tmp/gpu_check_logs.tgz "$OUT/"
ls -la "$OUT"
exit 0
