#!/usr/bin/env bash
# The engine's GPU check, for a session lent the device machine (see the engine issue): the benchmark on the GPU,
# then one full Gowalla MINE+ run with the recipe, both saved under $OUT. Run it from the repository root there as
#   RECLOSS_DATA=$PWD/<carried data folder> bash tools/gpu_check.sh
# (the device tool sends the repository, not ../shared: copy gowalla/ and yelp2018/ into an ignored folder and name
# it in `carry`). Needs only torch (CUDA), numpy, scipy, sympy, matplotlib, tqdm: no install, PYTHONPATH is the
# checkout. Test it on the CPU first with DEVICE=cpu QUICK=1.
set -euo pipefail
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
OUT="${OUT:-/tmp/recloss-gpu}"
DEVICE="${DEVICE:-cuda}"
mkdir -p "$OUT"
cli=(python -m recloss_lite.experiments.cli)
nvidia-smi > "$OUT/nvidia-smi.txt" 2>&1 || true
git rev-parse HEAD > "$OUT/commit.txt" 2>/dev/null || true
if [ -n "${QUICK:-}" ]; then
  "${cli[@]}" bench --dataset ml-100k --device "$DEVICE" --repeats 1 --json | tee "$OUT/bench.json"
  "${cli[@]}" train --dataset ml-100k --loss mine+ --device "$DEVICE" --epochs 2 --refit \
    --out "$OUT/run-ml100k" --json --quiet | tee "$OUT/run.json"
  exit 0
fi
"${cli[@]}" bench --dataset gowalla --device "$DEVICE" --json | tee "$OUT/bench.json"
# The published MF + BSL layout (800 negatives per row, cosine, MINE+ with tau 0.08, lam 1.22) with the step chosen on
# Gowalla's validation split for dense Adam (book/results/NOTES.md), refit on all of train, its test curve recorded.
"${cli[@]}" train --dataset gowalla --loss mine+ --tau 0.08 --lam 1.22 --device "$DEVICE" --no-shared-negatives \
  --num-negatives 800 --batch-size 1024 --optimizer adam --lr 3e-3 --lr-decay 0.7 --dropout 0.1 --epochs 150 \
  --refit --test-curve --out "$OUT/gowalla-mine+" --json --quiet | tee "$OUT/run.json"
