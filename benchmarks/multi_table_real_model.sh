#!/usr/bin/env bash
# The real small model (SmolLM2-135M-Instruct) on the bundled multi-table sample through the spider_baseline
# preset, on a GPU: zero-shot, the preset's own recipe (NF4, LR 2e-4, 1 epoch of 1,000 questions) and a longer one
# (bf16, all 1,170 questions, 3 epochs at LR 1e-3); the longer run's adapter decoded free, with the database's
# grammar alone (inference.check_scope=false), with the grammar and its scope check (the default) and with both +
# execution guidance over 4 candidates. Every row is scored by the eval stage on the
# 225 test questions. Prints each row's execution accuracy (95% interval), valid SQL, unknown tables and columns,
# accuracy by hardness, infer and wall seconds; each row's run directory stays under $OUT_DIR (default
# /tmp/mt_real). Extra arguments go to every row (e.g. model.gguf_file=F).
#     bash benchmarks/multi_table_real_model.sh model.gguf_file=/tmp/smol.gguf
#     ROWS="zero_shot spider_baseline" bash benchmarks/multi_table_real_model.sh ...   # some rows (one call each)
#     EPOCHS=1 ...   # a shorter longer row (its epochs; default 3)
set -uo pipefail
out=${OUT_DIR:-/tmp/mt_real}
common=(experiment=spider_baseline model=smollm2_135m data=spider_sample device=cuda tracking=none "$@")
want() { [ -z "${ROWS:-}" ] || [[ " $ROWS " == *" $1 "* ]]; }  # ROWS="a b": only those rows (calls of 10 minutes)
row() {  # name, overrides...
  local name=$1; shift
  want "$name" || return 0
  local start=$SECONDS
  python -m experiments "${common[@]}" "hydra.run.dir=$out/$name" "$@" > "$out/$name.log" 2>&1
  echo "$name rc=$? wall_s=$((SECONDS - start))" | tee -a "$out/rows.txt"
}
mkdir -p "$out"
touch "$out/rows.txt"  # rows of earlier calls into the same $OUT_DIR stay in the table
decode=('stages=[prepare,infer,eval]' quantization=none)
row zero_shot "${decode[@]}" zero_shot=true inference.constrain=none
row spider_baseline
row longer quantization=none data_size.train=null "training.num_epochs=${EPOCHS:-3}" training.learning_rate=1.0e-3 \
  inference.constrain=none
row longer_grammar_only "${decode[@]}" "adapter=$out/longer/adapter" inference.constrain=grammar \
  inference.check_scope=false
row longer_grammar "${decode[@]}" "adapter=$out/longer/adapter" inference.constrain=grammar
row longer_guided "${decode[@]}" "adapter=$out/longer/adapter" inference.constrain=grammar \
  inference.execution_guided=4
python - "$out" <<'PY'
import json, sys
from pathlib import Path
from experiments.analysis.stats import wilson_interval
out = Path(sys.argv[1])
print("| row | EX (95% CI) | valid SQL | unknown table / column | easy / medium / hard / extra | infer s | wall s | "
      "scope: checks / masked / dead ends / s |")
print("|---|---|---|---|---|---|---|---|")
walls = dict(line.split(" ", 1) for line in (out / "rows.txt").read_text().splitlines())
for name, facts in walls.items():
    metrics = out / name / "metrics.json"
    if not metrics.is_file():
        print(f"| {name} | failed ({facts}) | | | | | |"); continue
    m = json.loads(metrics.read_text())
    n = m["n"]; ex = m["execution_accuracy"]; low, high = wilson_interval(round(ex * n), n)
    levels = " / ".join(f"{v['execution_accuracy']:.2f}" if v["execution_accuracy"] is not None else "-"
                        for v in m["by_hardness"].values())
    unknown = f"{m['categories'].get('unknown_table', 0)} / {m['categories'].get('unknown_column', 0)}"
    summary = json.loads((out / name / "infer_summary.json").read_text())
    scope = (f"{summary['scope_checks']} / {summary['scope_rejected_tokens']} / {summary['scope_dead_ends']} / "
             f"{summary['scope_seconds']:.2f}" if "scope_checks" in summary else "-")
    print(f"| {name} | {ex:.3f} ({low:.3f}-{high:.3f}) | {m['valid_sql_rate']:.3f} | {unknown} | {levels} | "
          f"{summary.get('infer_seconds', 0):.1f} | {facts.split('wall_s=')[1]} | {scope} |")
PY
