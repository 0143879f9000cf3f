"""Statistics over seeds: mean with a Student-t 95% confidence interval, paired t-tests."""

from __future__ import annotations

import math

import numpy as np


def mean_ci(values, confidence: float = 0.95) -> dict[str, float]:
    """Mean and half-width of the Student-t confidence interval (NaN half-width for n < 2).

    >>> r = mean_ci([0.8, 0.9, 1.0])
    >>> round(r["mean"], 3), round(r["ci"], 3), r["n"]
    (0.9, 0.248, 3)
    """
    from scipy import stats

    x = np.asarray(values, dtype=float)
    n = len(x)
    if n < 2:
        return {"mean": float(x.mean()) if n else math.nan, "ci": math.nan, "n": n}
    half = stats.t.ppf(0.5 + confidence / 2, n - 1) * x.std(ddof=1) / math.sqrt(n)
    return {"mean": float(x.mean()), "ci": float(half), "n": n}


def paired_test(a, b) -> dict:
    """Paired t-test of ``a`` against ``b`` (matched by seed): mean difference a - b, its 95%
    CI, t and the two-sided p-value, and ``note`` saying why a test is missing. A t-test
    needs at least two pairs whose differences vary: with n < 2, or with the same
    difference on every seed (zero variance, e.g. two seeds one test example apart), t and p
    are NaN and ``note`` says so.

    >>> r = paired_test([0.9, 0.8, 0.85, 0.88], [0.7, 0.72, 0.71, 0.69])
    >>> round(r["diff"], 3), r["p"] < 0.05, r["note"]
    (0.153, True, '')
    >>> paired_test([0.81, 0.82], [0.80, 0.81])["note"]
    'no t-test: every seed differs by the same amount (zero variance)'
    """
    from scipy import stats

    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    diff = a - b
    out = {"diff": float(diff.mean()) if len(diff) else math.nan,
           "ci": mean_ci(diff)["ci"], "t": math.nan, "p": math.nan, "n": len(diff), "note": ""}
    if len(diff) < 2:
        out["note"] = "no t-test: fewer than two seeds"
    elif np.ptp(diff) <= 1e-12 * max(1.0, float(np.abs(diff).max())):
        out["note"] = "no t-test: every seed differs by the same amount (zero variance)"
    else:
        result = stats.ttest_rel(a, b)
        out.update(t=float(result.statistic), p=float(result.pvalue))
    return out
