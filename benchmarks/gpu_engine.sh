#!/usr/bin/env bash
# The engine's CUDA path on a GPU machine, in one run: the real-network benchmark
# (EfficientNet-Lite0 with its ImageNet weights; 2 and 6 epochs) with the engine, the
# plain loop (in-process and as a fresh script per cycle) and the lower bound all on
# the GPU, and the engine's tests with device "auto" resolving to cuda.
#
# It expects the wheels of modelhub and of what the machine lacks in .whl/
# (pip wheel --no-deps -w .whl . ; pip download the rest for that machine's Python)
# and writes its JSON and logs under $OUT (default ./gpu-out). The timeouts add up to about 9 minutes:
# run it as one device call with timeout_s 580 (the first machine start takes 1-2 minutes more).
# all-MiniLM-L6-v2 is left out: its wheel (83 MB) is over what one device call carries (64 MiB).
set -u
OUT=${OUT:-gpu-out}
mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    || { echo "installing the wheels failed"; exit 2; }
export PYTHONPATH=/tmp/site PATH=/tmp/site/bin:$PATH PYTHONUNBUFFERED=1 DLV_AUTHOR=bench
nvidia-smi -L | tee "$OUT/gpu.txt"
python3 -c "import torch, modelhub; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), modelhub.__file__)" \
    | tee -a "$OUT/gpu.txt"
run_bench() {   # NAME, then engine_real.py's arguments
    local name=$1; shift
    timeout "$BENCH_TIMEOUT" python3 benchmarks/engine_real.py --device cuda --workloads effnet --plain-script \
        --out "$OUT/$name.json" "$@" >/dev/null 2>"$OUT/$name.err"
    echo "$name rc=$?"; tail -n 4 "$OUT/$name.err"
}
BENCH_TIMEOUT=200 run_bench effnet_cuda_e2 --epochs 2
# -P: the repository's own modelhub/ folder must not shadow the installed package (storage/ is mapped)
timeout 80 python3 -P -m pytest -p no:cacheprovider -p no:randomly -q -rf tests/test_engine_cuda.py \
    tests/test_engine_reuse.py tests/test_engine_architectures.py >"$OUT/pytest.txt" 2>&1
echo "pytest rc=$?"; tail -n 15 "$OUT/pytest.txt"
BENCH_TIMEOUT=240 run_bench effnet_cuda_e6 --epochs 6
