#!/usr/bin/env bash
# Study 1 (docs/results.md): train an LSTM and an RNN captioner on the shapes data and score them
# on the test split with greedy decoding, beam 3 and beam 5. Study 2 (docs/word-vs-character.md)
# reuses the LSTM run as its word-level model.
#
#   bash benchmarks/studies/results.sh            # from the repository root
#
# One BLAS thread and nice: the machine is shared (oversubscribed OpenBLAS threads are ~10x slower).
# The shapes data is read from the cache the demo made (same parameters, so it is not regenerated).
set -euo pipefail
mkdir -p benchmarks/studies/out
DATA=${DATA:-/tmp/demo/cache/shapes}
OUT=${OUT:-/tmp/studies}
RNNCAP="env OPENBLAS_NUM_THREADS=1 nice -n 10 .venv/bin/rnncap"
mkdir -p "$OUT"

train() {  # cell, run name, extra flags
  $RNNCAP train --data "$DATA" --format shapes --out "$OUT/$2" --cell "$1" \
    --hidden-dim 256 --wordvec-dim 128 --batch-size 64 --lr 5e-3 --lr-decay 0.8 --grad-clip 5 \
    --epochs 3 --seed 0 --no-progress "${@:3}"
}
evaluate() {  # run name
  $RNNCAP evaluate "$OUT/$1" --split test --method greedy
  $RNNCAP evaluate "$OUT/$1" --split test --method beam --beam-size 3
  $RNNCAP evaluate "$OUT/$1" --split test --method beam --beam-size 5
}

# The two models train side by side (one core each).
train lstm lstm --image-every-step > "$OUT/lstm.log" 2>&1 &
train rnn rnn --image-every-step > "$OUT/rnn.log" 2>&1 &
train rnn rnn-plain --no-image-every-step > "$OUT/rnn-plain.log" 2>&1 &  # CS231n's own RNN
wait
evaluate lstm > "$OUT/lstm-eval.log" 2>&1 &
evaluate rnn > "$OUT/rnn-eval.log" 2>&1 &
evaluate rnn-plain > "$OUT/rnn-plain-eval.log" 2>&1 &
wait
# Per-step CPU time of the RNN (the LSTM's is measured by word_vs_char.sh).
env OPENBLAS_NUM_THREADS=1 nice -n 10 .venv/bin/python benchmarks/studies/step_time.py --cell rnn --data "$DATA" \
    --out benchmarks/studies/out/step_time_rnn_packed.json
# Tables of docs/results.md (run word_vs_char.sh first to include the character models' rows).
.venv/bin/python benchmarks/studies/analyze_results.py --data "$DATA" \
    --runs "$OUT/lstm" "$OUT/rnn" "$OUT/rnn-plain" $(for r in char char-3ep; do [ -d "$OUT/$r" ] && echo "$OUT/$r"; done) \
    --json benchmarks/studies/out/results-analysis.json --captions benchmarks/studies/out/captions.json
