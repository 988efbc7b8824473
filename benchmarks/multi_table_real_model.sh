#!/usr/bin/env bash
# The real small model (SmolLM2-135M-Instruct) on the bundled multi-table sample through the spider_baseline
# preset, on a GPU: zero-shot, the preset's own recipe (NF4, LR 2e-4, 1 epoch of 1,000 questions) and a longer one
# (bf16, all 1,170 questions, 3 epochs at LR 1e-3), every row scored by the eval stage on the 225 test questions.
# Prints each row's execution accuracy (95% interval), valid SQL, by hardness, and its wall time; each row's run
# directory stays under $OUT_DIR (default /tmp/mt_real). Extra arguments go to every row (e.g. model.gguf_file=F).
#     bash benchmarks/multi_table_real_model.sh model.gguf_file=/tmp/smol.gguf
set -uo pipefail
out=${OUT_DIR:-/tmp/mt_real}
common=(experiment=spider_baseline model=smollm2_135m data=spider_sample device=cuda tracking=none "$@")
row() {  # name, overrides...
  local name=$1; shift
  local start=$SECONDS
  python -m experiments "${common[@]}" "hydra.run.dir=$out/$name" "$@" > "$out/$name.log" 2>&1
  echo "$name rc=$? wall_s=$((SECONDS - start))" | tee -a "$out/rows.txt"
}
mkdir -p "$out"
: > "$out/rows.txt"
row zero_shot 'stages=[prepare,infer,eval]' zero_shot=true quantization=none
row spider_baseline
row longer quantization=none data_size.train=null training.num_epochs=3 training.learning_rate=1.0e-3
python - "$out" <<'PY'
import json, sys
from pathlib import Path
from experiments.analysis.stats import wilson_interval
out = Path(sys.argv[1])
print("| row | EX (95% CI) | valid SQL | easy / medium / hard / extra | wall s |")
print("|---|---|---|---|---|")
walls = dict(line.split(" ", 1) for line in (out / "rows.txt").read_text().splitlines())
for name, facts in walls.items():
    metrics = out / name / "metrics.json"
    if not metrics.is_file():
        print(f"| {name} | failed ({facts}) | | | |"); continue
    m = json.loads(metrics.read_text())
    n = m["n"]; ex = m["execution_accuracy"]; low, high = wilson_interval(round(ex * n), n)
    levels = " / ".join(f"{v['execution_accuracy']:.2f}" if v["execution_accuracy"] is not None else "-"
                        for v in m["by_hardness"].values())
    print(f"| {name} | {ex:.3f} ({low:.3f}-{high:.3f}) | {m['valid_sql_rate']:.3f} | {levels} | "
          f"{facts.split('wall_s=')[1]} |")
PY
