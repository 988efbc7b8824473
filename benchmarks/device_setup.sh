#!/usr/bin/env bash
# On the GPU machine of the device tool: install the carried wheels (.whl/, from shared/device/fetch-wheels.sh)
# and save a random-initialised Mistral-7B to $MODEL_DIR (default /tmp/m7b) with the carried tokenizer.
# Usage: source benchmarks/device_setup.sh   (sets PYTHONPATH and MODEL_DIR; WHEELS=dir to use other wheels)
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site ${WHEELS:-.whl}/* \
  2>&1 | grep -v "WARNING: Target directory" | tail -3
export PYTHONPATH=/tmp/site:$PWD/src PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
export MODEL_DIR=${MODEL_DIR:-/tmp/m7b}
[ -f "$MODEL_DIR/config.json" ] || python3 benchmarks/make_random_mistral.py "$MODEL_DIR" --tokenizer .device/tokenizer.model
