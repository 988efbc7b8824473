#!/usr/bin/env bash
# On the device tool's GPU machine, the last of three consecutive calls (it stays warm ~30 s between them): SmolLM2
# on the bundled multi-table sample, 1 epoch, then the grammar + scope row, constrained decoding's overhead
# (benchmarks/constrained_overhead.py: free / grammar / grammar + scope, serial and overlapped), the grammar-alone
# row and the guided row, each saved under $OUT as it finishes. SmolLM2's GGUF (98 MB) is over one call's 64 MiB:
# here, split it into .gguf/pa (26,000,000 bytes), .gguf/pb (60,000,000) and .gguf/pc (the rest), with /.gguf/ in
# .git/info/exclude, then
#   call 1: carry .whl .device .gguf (pa only): install the wheels as benchmarks/device_setup.sh does, cp .gguf/pa /tmp/g/
#   call 2: carry .gguf (pb only): cp .gguf/pb /tmp/g/
#   call 3: carry .gguf (pc only): bash benchmarks/multi_table_device_call.sh   (REPEATS=1 for a shorter overhead run)
# Or in two calls: xz -c the GGUF (90.5 MB), split it at 32,000,000 bytes into .gx/xaa and .gx/xb, and carry the wheels
# without bitsandbytes (quantization=none here) in .wl: call 1 carries .wl .device .gx/xaa and installs them, call 2
# carries .gx/xb and runs `cat /tmp/g/xaa .gx/xb | xz -d > /tmp/smol.gguf` before this script.
set -uo pipefail
[ -s /tmp/smol.gguf ] || cat /tmp/g/pa /tmp/g/pb .gguf/pc > /tmp/smol.gguf
ls -l /tmp/smol.gguf
export PYTHONPATH=/tmp/site:$PWD/src PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false NCCL_NVLS_ENABLE=0
export OUT_DIR=/tmp/mt_real
common=(experiment=spider_baseline model=smollm2_135m data=spider_sample device=cuda tracking=none
        model.gguf_file=/tmp/smol.gguf)
save() {  # a row's results, predictions, metrics, infer summary and log into $OUT
  mkdir -p "$OUT/$1"
  cp "$OUT_DIR/$1"/{results.jsonl,predictions.jsonl,metrics.json,infer_summary.json} "$OUT/$1/" 2>/dev/null
  cp "$OUT_DIR/$1.log" "$OUT/" 2>/dev/null
}
row() {
  EPOCHS=1 ROWS="$1" bash benchmarks/multi_table_real_model.sh model.gguf_file=/tmp/smol.gguf > "$OUT/table.md"
  save "$1"
  tail -1 "$OUT/table.md"
}
row longer
row longer_grammar
python benchmarks/constrained_overhead.py --run "$OUT_DIR/longer" --out "$OUT/overhead.json" --repeats "${REPEATS:-3}" \
  "${common[@]}" quantization=none data_size.train=null training.num_epochs=1 training.learning_rate=1.0e-3 \
  > "$OUT/overhead.log" 2>&1
tail -9 "$OUT/overhead.log"
row longer_grammar_only
row longer_guided
cat "$OUT/table.md"
