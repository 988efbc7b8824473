#!/usr/bin/env bash
# On the GPU machine of the device tool: install the carried wheels (.whl/, from benchmarks/prepare_device_wheels.sh)
# once per machine, and save a random-initialised Mistral-7B to $MODEL_DIR (default /tmp/m7b) with the carried
# tokenizer. NVLink multicast stays off (the device machines require it).
# Usage: source benchmarks/device_setup.sh   (sets PYTHONPATH and MODEL_DIR; WHEELS=dir to use other wheels)
if [ ! -f /tmp/site/.installed ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
    ${WHEELS:-.whl}/* 2>&1 | grep -v "WARNING: Target directory" | tail -3
  touch /tmp/site/.installed
fi
export PYTHONPATH=/tmp/site:$PWD/src PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
export MODEL_DIR=${MODEL_DIR:-/tmp/m7b}
[ -f "$MODEL_DIR/config.json" ] || python3 benchmarks/make_random_mistral.py "$MODEL_DIR" --tokenizer .device/tokenizer.model
