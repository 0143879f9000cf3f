"""Statistics over seeds: mean with a Student-t 95% confidence interval, paired t-tests, and
the one aggregation of runs that differ by their seed (:func:`over_seeds`)."""

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


PER_SEED = ("seed", "test_acc", "test_loss")


def over_seeds(summaries: list[dict]) -> dict:
    """What runs that differ only by their seed add up to, from their ``summary.json``:
    run names, mean ± 95% CI of test accuracy, test loss and wall time, the mean circuits
    and shots per run, the parameter count (None without runs) and the per-seed values.

    >>> runs = [{"name": "a", "seed": 0, "test_acc": 0.5, "test_loss": 0.7, "wall_time_s": 1.0,
    ...          "circuits": 10, "shots": 0, "params": 42},
    ...         {"name": "b", "seed": 1, "test_acc": 0.7, "test_loss": 0.5, "wall_time_s": 3.0,
    ...          "circuits": 20, "shots": 0, "params": 42}]
    >>> s = over_seeds(runs)
    >>> s["runs"], round(s["test_acc"]["mean"], 3), s["circuits"], s["params"], s["per_seed"]["seed"]
    (['a', 'b'], 0.6, 15.0, 42, [0, 1])
    """
    column = lambda key: [s[key] for s in summaries]  # noqa: E731
    n = len(summaries)
    return {
        "runs": column("name"),
        "test_acc": mean_ci(column("test_acc")),
        "test_loss": mean_ci(column("test_loss")),
        "wall_time_s": mean_ci(column("wall_time_s")),
        "circuits": sum(column("circuits")) / n if n else math.nan,
        "shots": sum(column("shots")) / n if n else math.nan,
        "params": summaries[0]["params"] if n else None,
        "per_seed": {key: column(key) for key in PER_SEED},
    }


def paired_by_seed(a: dict[str, list], b: dict[str, list]) -> dict[str, dict]:
    """Paired t-tests of test accuracy and test loss of two ``per_seed`` tables (see
    :func:`over_seeds`), on the seeds both have.

    >>> a = {"seed": [0, 1, 2], "test_acc": [0.9, 0.8, 0.85], "test_loss": [0.3, 0.4, 0.35]}
    >>> b = {"seed": [2, 0], "test_acc": [0.7, 0.6], "test_loss": [0.6, 0.7]}
    >>> t = paired_by_seed(a, b)
    >>> t["acc"]["n"], round(t["acc"]["diff"], 3)
    (2, 0.225)
    """
    b_runs = dict(zip(b["seed"], zip(b["test_acc"], b["test_loss"])))
    pairs = [(acc, loss, *b_runs[s]) for s, acc, loss in zip(a["seed"], a["test_acc"], a["test_loss"])
             if s in b_runs]
    a_acc, a_loss, b_acc, b_loss = list(zip(*pairs)) or [(), (), (), ()]
    return {"acc": paired_test(a_acc, b_acc), "loss": paired_test(a_loss, b_loss)}
