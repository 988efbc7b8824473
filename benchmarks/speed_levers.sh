#!/usr/bin/env bash
# Issue 23's speed levers on one GPU, one preset per call: the seed-style row (run SEED_REPEATS times; "x seed"
# divides by the median), ours (exact QLoRA numerics), ours_inexact (training.exact_qlora=false, bf16) and ours_liger
# (+ training.kernels=liger), each with its memory plan. Writes $OUT/speed_levers_<preset>.json and .log.
# On the GPU machine, from the repository root, with .whl (benchmarks/prepare_device_wheels.sh, liger-kernel among
# them) and .device carried; it sources benchmarks/device_setup.sh, which makes the random Mistral-7B once:
#     bash benchmarks/speed_levers.sh extended     # ~8-9 min on an H100/H200 (three compiles of ~100 s)
#     bash benchmarks/speed_levers.sh baseline     # ~4 min (63-step runs are not compiled)
# VARIANTS, STEPS, WARMUP, SEED_REPEATS override the defaults (e.g. VARIANTS="ours_bf16" for the dtype alone).
set -euo pipefail
preset=${1:?usage: bash benchmarks/speed_levers.sh extended|baseline}
out=${OUT:-/tmp/speed_levers}
mkdir -p "$out"
# shellcheck disable=SC1091
source benchmarks/device_setup.sh
python3 -c "import liger_kernel, triton; print('liger-kernel', liger_kernel.__file__)" \
  || echo "liger-kernel or triton missing: ours_liger will report the error (add it to .whl with prepare_device_wheels.sh)"
# extended compiles its blocks during the first 3 steps: keep them out of the timed ones
warmup=${WARMUP:-3}
steps=${STEPS:-$((warmup + 4))}
python3 benchmarks/gpu_benchmark.py --model "$MODEL_DIR" --presets "$preset" \
  --variants ${VARIANTS:-seed ours ours_inexact ours_liger} --seed-repeats "${SEED_REPEATS:-3}" \
  --steps "$steps" --warmup "$warmup" --extra-variants-preset none --skip generation evaluation \
  --out "$out/speed_levers_$preset.json" 2>&1 | tee "$out/speed_levers_$preset.log" | grep -v "^{'"
