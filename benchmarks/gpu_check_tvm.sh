#!/usr/bin/env bash
# TVM part of the GPU check (called by benchmarks/gpu_check.sh): a `--target cuda` artifact of the
# example ticket, run by st_deploy.load on a runtime-only TVM (TVM_USE_RUNTIME_LIB=1, no compiler
# library), checked against the ticket and timed against cuDNN. Inputs, made on a CPU machine by
# `python benchmarks/gpu_prepare.py` and carried in .devcarry/:
#   tvm-runtime.tar.xz   the apache-tvm Python package without libtvm_compiler.so
#   tvm-cuda-sparse/     st-deploy export ticket.pt --target cuda --arch sm_90
#   compact.pt           st-deploy compact ticket.pt (the torch reference and the cuDNN baseline)
set -x
OUT="${OUT:-$PWD/gpu_check_out}"
D=.devcarry
mkdir -p /tmp/tvmrt && tar -xJf "$D/tvm-runtime.tar.xz" -C /tmp/tvmrt || exit 1
export PYTHONPATH="/tmp/tvmrt:$PYTHONPATH" TVM_USE_RUNTIME_LIB=1
# libtvm_runtime_cuda.so needs libcudart.so.13: the toolkit's, else the one torch's wheels bring
for d in /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib \
         $(python3 -c "import nvidia, os; print(' '.join(os.path.join(p, 'cu13', 'lib') for p in nvidia.__path__))" 2>/dev/null); do
  [ -e "$d/libcudart.so.13" ] && export LD_LIBRARY_PATH="$d${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" && break
done
python3 -c "import tvm, tvm_ffi; print(tvm.__file__, tvm.__version__, tvm_ffi.__version__)" || exit 1
python3 benchmarks/gpu_tvm.py --artifact "$D/tvm-cuda-sparse" --compact "$D/compact.pt" \
  --json "$OUT/gpu_tvm.json" 2>&1 | tee "$OUT/gpu_tvm.log"
rc=${PIPESTATUS[0]}
if [ "$rc" != 0 ]; then  # NVRTC missing or failing: TVM's own kernels compiled with nvcc instead
  TVM_CUDA_COMPILE_MODE=nvcc python3 benchmarks/gpu_tvm.py --artifact "$D/tvm-cuda-sparse" \
    --compact "$D/compact.pt" --json "$OUT/gpu_tvm_nvcc.json" 2>&1 | tee "$OUT/gpu_tvm_nvcc.log"
  rc=${PIPESTATUS[0]}
fi
exit "$rc"
