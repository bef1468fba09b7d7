#!/usr/bin/env bash
# Re-score the studies' beam-search rows with the current decoder, without training anything:
# beam 3 and beam 5 for the word models of docs/results.md, beam 3 for the character models of
# docs/word-vs-character.md, then every analysis that reads those eval JSONs (beam search ranks
# a caption cut at max_length below every complete one); greedy rows are not re-run.
#
#   bash benchmarks/studies/rescore_beam.sh        # from the repository root, after results.sh
#                                                  # and word_vs_char.sh made the runs
set -euo pipefail
DATA=${DATA:-/tmp/demo/cache/shapes}
OUT=${OUT:-/tmp/studies}
PY="env OPENBLAS_NUM_THREADS=1 nice -n 10 .venv/bin/python"
RNNCAP="env OPENBLAS_NUM_THREADS=1 nice -n 10 .venv/bin/rnncap"

# Two chains side by side (one core each).
( for b in 3 5; do $RNNCAP evaluate "$OUT/lstm" --split test --method beam --beam-size $b; done
  for b in 3 5; do $RNNCAP evaluate "$OUT/rnn-plain" --split test --method beam --beam-size $b; done
  $RNNCAP evaluate "$OUT/char" --split test --method beam --beam-size 3 ) > "$OUT/rescore-a.log" 2>&1 &
( for b in 3 5; do $RNNCAP evaluate "$OUT/rnn" --split test --method beam --beam-size $b; done
  $RNNCAP evaluate "$OUT/char-3ep" --split test --method beam --beam-size 3 ) > "$OUT/rescore-b.log" 2>&1 &
wait
.venv/bin/python benchmarks/studies/analyze_results.py --data "$DATA" \
    --runs "$OUT/lstm" "$OUT/rnn" "$OUT/rnn-plain" "$OUT/char" "$OUT/char-3ep" \
    --json benchmarks/studies/out/results-analysis.json --captions benchmarks/studies/out/captions.json
# Decoding times are measured again here (CPU per caption, greedy and beam 3).
for run in char char-3ep; do
  $PY benchmarks/studies/analyze_char.py --word "$OUT/lstm" --char "$OUT/$run" --data "$DATA" \
      --step-time benchmarks/studies/out/step_time_packed.json --json "benchmarks/studies/out/$run-analysis.json"
done
