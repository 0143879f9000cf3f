#!/usr/bin/env bash
# Reruns every accuracy figure the README quotes, from the code as it is:
#   bash benchmarks/readme_figures.sh [OUT]      (default OUT=runs/readme; ~10 min on 2 cores)
# Each command's output is printed; timing figures come from `qepi bench` (benchmarks/README.md).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-runs/readme}
QEPI=${QEPI:-.venv/bin/qepi}
PY=${PY:-.venv/bin/python}

echo "## make demo"
$QEPI compare configs/demo.toml --seeds 3 --out "$OUT/demo" --overwrite 2>/dev/null

echo "## digits (classes 0-3)"
$QEPI compare configs/digits.toml --seeds 3 --out "$OUT/digits" --overwrite --no-references 2>/dev/null

echo "## epigenetic regulation: regulated, unregulated, experts; then each evaluated on aer"
$QEPI train configs/epigenetic.toml --out "$OUT/regulated" --overwrite 2>/dev/null
$QEPI train configs/epigenetic.toml --set 'regulation.embedding=""' --set 'regulation.attention=""' \
    --out "$OUT/unregulated" --overwrite 2>/dev/null
$QEPI train configs/epigenetic.toml --set regulation.embedding=experts --set 'regulation.attention=""' \
    --out "$OUT/experts" --overwrite 2>/dev/null
$PY - "$OUT" <<'PYTHON'
import sys
from qepi.experiments.marks import aer_check
for name in ("unregulated", "regulated", "experts"):
    r = aer_check(f"{sys.argv[1]}/{name}")
    print(name, {k: r[k] for k in ("test_acc", "aer_test_acc", "expression", "aer_step_tokens",
                                   "aer_step_circuits")})
PYTHON

echo "## task marks"
$QEPI marks configs/marks.toml --out "$OUT/marks" --overwrite 2>/dev/null

echo "## small sentence sets: a generated 70 + 30 two-topic set on text.toml, then clauses"
$PY benchmarks/small_text.py --out "$OUT/small-text" 2>/dev/null

echo "## staged run: exact, shots + FakeManilaV2 noise on exact, a check on aer"
OUT="$OUT/staged" bash benchmarks/staged_run.sh 2>/dev/null
