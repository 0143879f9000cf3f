"""Markdown reports with matplotlib plots, rendered from saved metrics and summaries only,
so ``qepi report DIR`` can draw them again at any time."""

from __future__ import annotations

import json
import math
from collections import defaultdict
from pathlib import Path
from typing import Any

from qepi.errors import UserError
from qepi.experiments.baselines import reference_markdown, reference_rows, selection_markdown
from qepi.training import atomic_write_text, read_metrics

COLORS = {"quantum": "tab:blue", "classical": "tab:orange", "no_entanglement": "tab:green"}


def to_json(value: Any, indent: int | None = 2) -> str:
    """JSON text with NaN and infinities written as null (strict JSON for scripts).

    >>> to_json({"p": float("nan"), "x": [1.5]}, indent=None)
    '{"p": null, "x": [1.5]}'
    """

    def clean(v):
        if isinstance(v, float) and not math.isfinite(v):
            return None
        if isinstance(v, dict):
            return {k: clean(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [clean(x) for x in v]
        return v

    return json.dumps(clean(value), indent=indent)


def epoch_curves(records: list[dict[str, Any]]) -> dict[str, dict[int, float]]:
    """Per-epoch mean train loss / acc and dev loss / acc from metrics records.

    >>> epoch_curves([{"kind": "train", "epoch": 0, "loss": 1.0, "acc": 0.5},
    ...               {"kind": "train", "epoch": 0, "loss": 0.5, "acc": 1.0},
    ...               {"kind": "eval", "split": "dev", "epoch": 0, "loss": 0.6, "acc": 0.7}])
    {'train_loss': {0: 0.75}, 'train_acc': {0: 0.75}, 'dev_loss': {0: 0.6}, 'dev_acc': {0: 0.7}}
    """
    sums: dict[str, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    for r in records:
        if r.get("kind") == "train":
            sums["train_loss"][r["epoch"]].append(r["loss"])
            sums["train_acc"][r["epoch"]].append(r["acc"])
        elif r.get("kind") == "eval" and r.get("split") == "dev":
            sums["dev_loss"][r["epoch"]].append(r["loss"])
            sums["dev_acc"][r["epoch"]].append(r["acc"])
    return {k: {e: sum(v) / len(v) for e, v in sorted(d.items())} for k, d in sums.items()}


def _mean_curve(curves: list[dict[int, float]]) -> tuple[list[int], list[float]]:
    """Mean over runs at the epochs every run reached (early stopping can end runs early)."""
    curves = [c for c in curves if c]
    if not curves:
        return [], []
    epochs = sorted(set.intersection(*(set(c) for c in curves)))
    return [e + 1 for e in epochs], [sum(c[e] for c in curves) / len(curves) for e in epochs]


def plot_learning_curves(path: Path, runs: dict[str, list[Path]], labels: dict[str, str]) -> None:
    """Train loss and dev accuracy per epoch (mean over seeds) of every model, one figure."""
    from qepi.plotting import subplots

    fig, (ax_loss, ax_acc) = subplots(1, 2, figsize=(10, 4))
    for variant, dirs in runs.items():
        curves = [epoch_curves(read_metrics(d / "metrics.jsonl")) for d in dirs]
        color = COLORS.get(variant)
        x, y = _mean_curve([c.get("train_loss", {}) for c in curves])
        ax_loss.plot(x, y, marker="o", ms=3, color=color, label=labels[variant])
        key = "dev_acc" if any("dev_acc" in c for c in curves) else "train_acc"
        x, y = _mean_curve([c.get(key, {}) for c in curves])
        ax_acc.plot(x, y, marker="o", ms=3, color=color, label=labels[variant])
        ax_acc.set_ylabel("dev accuracy" if key == "dev_acc" else "train accuracy")
    ax_loss.set(xlabel="epoch", ylabel="train loss (cross-entropy)", title="Learning curves")
    ax_acc.set(xlabel="epoch", title=f"mean over {max(len(d) for d in runs.values())} seed(s)")
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def plot_accuracy_vs_params(path: Path, comparison: dict[str, Any]) -> None:
    """Test accuracy against parameter count: each seed as a faint dot, the mean with its
    95% CI as a bar (clipped to [0, 1]); models of equal size are drawn slightly apart."""
    from qepi.plotting import subplots

    fig, ax = subplots(figsize=(5.5, 4))
    models = comparison["models"]
    counts = [m["params"] for m in models.values()]
    dodge = 0.02 * (max(counts) - min(counts) or max(counts))  # models of equal size side by side
    for i, (variant, m) in enumerate(models.items()):
        color, mean, ci = COLORS.get(variant), m["test_acc"]["mean"], m["test_acc"]["ci"]
        x = m["params"] + (i - (len(models) - 1) / 2) * dodge
        per_seed = m["per_seed"]["test_acc"]
        ax.scatter([x] * len(per_seed), per_seed, color=color, alpha=0.35, s=14)
        low, high = (mean, mean) if math.isnan(ci) else (max(0.0, mean - ci), min(1.0, mean + ci))
        ax.errorbar(x, mean, yerr=[[mean - low], [high - mean]], fmt="o", capsize=4,
                    color=color, label=m["label"])
    ax.axhline(comparison["chance_acc"], color="gray", ls="--", lw=1, label="chance (majority)")
    ax.set(xlabel="trainable parameters", ylabel="test accuracy", ylim=(0, 1.02),
           title="Accuracy against parameter count")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def _pm(stat: dict[str, float]) -> str:
    if math.isnan(stat["ci"]):
        return f"{stat['mean']:.3f}"
    return f"{stat['mean']:.3f} ± {stat['ci']:.3f}"


def _num(x: float) -> str:
    return "n/a" if math.isnan(x) else f"{x:.3g}"


def table_rows(comparison: dict[str, Any]) -> list[list[str]]:
    """Header and one row per model: accuracy and loss (mean ± 95% CI), the per-seed range of
    accuracy, params, circuits, shots and wall time (means per run)."""
    rows = [["model", "test acc", "per-seed min–max", "test loss", "params", "circuits", "shots", "wall s"]]
    for m in comparison["models"].values():
        per_seed = m["per_seed"]["test_acc"]
        rows.append([m["label"], _pm(m["test_acc"]), f"{min(per_seed):.3f}–{max(per_seed):.3f}",
                     _pm(m["test_loss"]), str(m["params"]),
                     f"{m['circuits']:.0f}", f"{m['shots']:.0f}", f"{m['wall_time_s']:.1f}"])
    return rows


def format_table(comparison: dict[str, Any]) -> str:
    """The comparison as a plain-text table with the verdict below it (for stdout)."""
    rows = table_rows(comparison)
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    line = lambda r: "  ".join(c.ljust(w) if i == 0 else c.rjust(w)  # noqa: E731
                               for i, (c, w) in enumerate(zip(r, widths)))
    n = len(comparison["seeds"])
    out = [f"{comparison['task']}: {n} seed(s), mean ± 95% CI", line(rows[0]),
           "  ".join("-" * w for w in widths)]
    out += [line(r) for r in rows[1:]]
    references = reference_rows(comparison)
    if references:
        out += ["", "classical references (not parameter-matched): test acc, per-seed min–max, "
                    "quantum minus reference (paired test)"]
        width = max(len(r[0]) for r in references)
        out += [f"{r[0].ljust(width)}  {r[1]}  {r[4]}  {r[6]}" for r in references]
    out += [""] + [v.replace("**", "") for v in comparison["verdict"]]
    return "\n".join(out)


def _md_table(rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(rows[0]) + " |", "|" + "---|" * len(rows[0])]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows[1:]])


def render_compare_report(out: str | Path, comparison: dict[str, Any]) -> Path:
    """Write ``comparison.json``, ``learning_curves.png``, ``accuracy_vs_params.png`` and
    ``report.md`` in the comparison directory ``out``; returns the report's path."""
    out = Path(out)
    runs = {v: [out / name for name in m["runs"]] for v, m in comparison["models"].items()}
    plot_learning_curves(out / "learning_curves.png", runs,
                         {v: m["label"] for v, m in comparison["models"].items()})
    plot_accuracy_vs_params(out / "accuracy_vs_params.png", comparison)
    cfg = comparison["config"]
    tests = [["quantum vs", "metric", "mean difference", "95% CI", "t", "p"]]
    for other, by_metric in comparison["tests"].items():
        for metric, t in by_metric.items():
            tests.append([comparison["models"][other]["label"], f"test {metric}", _num(t["diff"]),
                          _num(t["ci"]), _num(t["t"]), _num(t["p"])])
    c, m, tr, b = cfg["circuit"], cfg["model"], cfg["train"], cfg["backend"]
    shots = f" ({b['shots']} shots)" if b["shots"] else ""
    text = "\n".join([
        f"# Comparison: {comparison['task']}",
        "",
        f"Seeds {comparison['seeds']}; every model trained on the same data split per seed with the "
        f"same budget ({comparison.get('budget') or str(tr['epochs']) + ' epochs'}, batch {tr['batch_size']}, "
        f"{tr['optimizer']} lr {tr['lr']}, "
        f"{comparison['n_train']} training examples). Quantum layers: embedding={m['embedding']}, "
        f"attention={m['attention']}; {c['n_qubits']} qubits, {c['n_layers']} layer(s) of "
        f"{c['ansatz']} with {c['encoding']} encoding on {b['name']}"
        f"{shots}.",
        "",
        "## Verdict",
        "",
        *[f"- {v}" for v in comparison["verdict"]],
        "",
        "## Results (mean ± 95% CI over seeds, Student t)",
        "",
        _md_table(table_rows(comparison)),
        "",
        "Circuits, shots and wall time are means per run (training and evaluation).",
        "",
        "## Paired tests over seeds",
        "",
        _md_table(tests),
        "",
        reference_markdown(comparison),
        selection_markdown(comparison),
        "## Plots",
        "",
        "![learning curves](learning_curves.png)",
        "",
        "![accuracy against parameter count](accuracy_vs_params.png)",
        "",
    ])
    atomic_write_text(out / "comparison.json", to_json(comparison) + "\n")
    atomic_write_text(out / "report.md", text)
    return out / "report.md"


def render_run_report(run_dir: str | Path) -> Path:
    """Write ``report.md`` and ``learning_curves.png`` of one finished run."""
    run_dir = Path(run_dir)
    path = run_dir / "summary.json"
    if not path.is_file():
        raise UserError(f"{run_dir}: run did not finish (no summary.json)")
    s = json.loads(path.read_text())
    plot_learning_curves(run_dir / "learning_curves.png", {s["kind"]: [run_dir]}, {s["kind"]: s["kind"]})
    rows = [["test acc", "test loss", "best dev acc", "chance", "params", "steps", "circuits",
             "shots", "wall s"],
            [f"{s['test_acc']:.3f}", f"{s['test_loss']:.3f}",
             "n/a" if s["best_dev_acc"] is None else f"{s['best_dev_acc']:.3f}",
             f"{s['chance_acc']:.3f}", str(s["params"]), str(s["steps"]), str(s["circuits"]),
             str(s["shots"]), f"{s['wall_time_s']:.1f}"]]
    notes = []
    if s.get("warm_start"):
        notes.append(f"Warm-started from `{s['warm_start']}`.")
    if s.get("selection"):
        notes += [f"Dev split: {s['dev'] or 'none'}.", f"Budget: {s['budget']}.",
                  f"Model selection (on dev, never on test): {s['selection']}."]
    elif s.get("stopped_early"):
        notes.append("Stopped early on dev accuracy; the weights are those of the best dev epoch.")
    text = "\n".join([f"# Run {s['name']}", "",
                      f"{s['kind']} model on `{s['task']}`, seed {s['seed']}, backend {s['backend']}.",
                      "", _md_table(rows), "", *(f"{n}\n" for n in notes),
                      "![learning curves](learning_curves.png)", ""])
    atomic_write_text(run_dir / "report.md", text)
    return run_dir / "report.md"


def render(directory: str | Path) -> Path:
    """Render the report of a sweep, comparison or run directory again from its saved files."""
    from qepi.experiments.compare import MANIFEST, summarize
    from qepi.experiments.sweep import PLAN, aggregate, render_sweep_report

    directory = Path(directory)
    if not directory.is_dir():
        raise UserError(f"{directory}: no such directory")
    if (directory / PLAN).is_file():
        return render_sweep_report(directory, aggregate(directory))
    if (directory / MANIFEST).is_file():
        return render_compare_report(directory, summarize(directory))
    if (directory / "config.toml").is_file():
        return render_run_report(directory)
    raise UserError(f"{directory}: not a qepi run or comparison directory")
