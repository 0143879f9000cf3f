#!/usr/bin/env bash
# A staged run on motif: exact training, a fine-tune with 1,000 shots and FakeManilaV2's
# noise on qepi's own simulator (exact), and a final check of both on Aer with the same
# shots and noise. Prints each stage's summary line and the Aer evaluations.
set -euo pipefail
cd "$(dirname "$0")/.."
QEPI=${QEPI:-.venv/bin/qepi}
OUT=${OUT:-runs/staged}
DEVICE=(--set backend.shots=1000 --set backend.noise=FakeManilaV2)
"$QEPI" train configs/motif.toml --set backend.name=exact --out "$OUT/exact" --overwrite --quiet
"$QEPI" train configs/motif.toml --set backend.name=exact "${DEVICE[@]}" --set train.epochs=2 \
    --from "$OUT/exact" --out "$OUT/noisy" --overwrite --quiet
for stage in exact noisy; do
    "$QEPI" evaluate "$OUT/$stage" --set backend.name=aer "${DEVICE[@]}"
done
