#!/usr/bin/env bash
# Study 2 (docs/word-vs-character.md): a character-level LSTM trained for the CPU time of the
# word-level LSTM of study 1 (run results.sh first; its $OUT/lstm is the word model).
#
#   bash benchmarks/studies/word_vs_char.sh        # from the repository root
set -euo pipefail
mkdir -p benchmarks/studies/out
DATA=${DATA:-/tmp/demo/cache/shapes}
OUT=${OUT:-/tmp/studies}
PY="env OPENBLAS_NUM_THREADS=1 nice -n 10 .venv/bin/python"
RNNCAP="env OPENBLAS_NUM_THREADS=1 nice -n 10 .venv/bin/rnncap"

# 1. CPU seconds per training step, word (T = 17, V = 52) and character (T = 82, V = 28).
$PY benchmarks/studies/step_time.py --out "$OUT/step_time.json"
cp "$OUT/step_time.json" benchmarks/studies/out/
# 2. The character model: the word model's 2,343 iterations x (word / char CPU per step).
$PY benchmarks/studies/train_budget.py --out "$OUT/char" --data "$DATA" --step-time "$OUT/step_time.json"
# 3. Scores on the test split (the word model's come from results.sh).
$RNNCAP evaluate "$OUT/char" --split test --method greedy
$RNNCAP evaluate "$OUT/char" --split test --method beam --beam-size 3
# 4. Parameters, decoding time, errors.
$PY benchmarks/studies/analyze_char.py --word "$OUT/lstm" --char "$OUT/char" --data "$DATA" \
    --step-time "$OUT/step_time.json" --json benchmarks/studies/out/char-analysis.json
cp "$OUT/char/budget.json" benchmarks/studies/out/char-budget.json
