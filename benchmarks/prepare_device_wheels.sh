#!/usr/bin/env bash
# Here (not on the GPU machine): fill .whl/ with what the device tool's GPU image lacks, small enough to carry.
# ../shared/device/fetch-wheels.sh fetches the pipeline's wheels; bitsandbytes' wheel holds libraries for every
# CUDA/ROCm/XPU version (43 MB), so it is repacked with the CUDA 13 and CPU ones only (the image has torch cu130),
# and TRL (for benchmarks/gpu_benchmark.py), llguidance, gguf and liger-kernel are added. A GGUF (e.g. SmolLM2's
# Q4_1, 98 MB) is over one call's 64 MiB: split it (`split -b 44M`), carry the parts over consecutive calls into /tmp there, join them
# and pass model.gguf_file= (benchmarks/real_model_table.py). Then carry .whl and .device (tokenizer.model) and
# `source benchmarks/device_setup.sh` there.
set -euo pipefail
top=$(git rev-parse --show-toplevel)
cd "$top"
[ -d .whl ] || bash ../shared/device/fetch-wheels.sh
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --platform any -d .whl trl==1.16.0
# llguidance (schema-constrained decoding): one self-contained wheel
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_31_x86_64 --platform manylinux_2_28_x86_64 -d .whl llguidance==1.9.1
# gguf (model.gguf_file and the offline copy of model=smollm2_135m: transformers reads a GGUF through it)
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --platform any -d .whl gguf==0.19.0
# liger-kernel (training.kernels=liger, benchmarks/speed_levers.sh): pure Python; the GPU image's torch brings triton
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --platform any -d .whl \
  liger-kernel==0.8.5
rm -f .whl/greenlet-*.whl  # SQLAlchemy needs it only for asyncio
wheel=$(ls .whl/bitsandbytes-*.whl)
if [ "$(unzip -Z1 "$wheel" | grep -c libbitsandbytes_cuda118.so)" -gt 0 ]; then
  work=$(mktemp -d)
  unzip -q "$wheel" -d "$work"
  find "$work/bitsandbytes" -name 'libbitsandbytes_*.so' ! -name '*cuda13*' ! -name '*_cpu.so' -delete
  rm "$wheel"
  (cd "$work" && zip -q -r -X "$top/$wheel" .)
  rm -rf "$work"
fi
mkdir -p .device
grep -qx '/.device/' .gitignore || echo '/.device/' >> .gitignore
[ -f .device/tokenizer.model ] || python3 -c "import shutil, mistral_common, pathlib; \
shutil.copy(pathlib.Path(mistral_common.__file__).parent / 'data/tokenizer.model.v1', '.device/tokenizer.model')"
du -sh .whl .device
