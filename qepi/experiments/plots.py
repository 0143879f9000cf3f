"""The figures of run, comparison and sweep reports, drawn from saved metrics and aggregates
(matplotlib through :mod:`qepi.plotting`, outside pyplot)."""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path
from typing import Any

from qepi.experiments.grid import point_label
from qepi.experiments.rundir import METRICS
from qepi.plotting import subplots
from qepi.training import read_metrics

COLORS = {"quantum": "tab:blue", "classical": "tab:orange", "no_entanglement": "tab:green"}


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


def seed_band(curves: list[dict[int, float]]) -> tuple[list[int], list[float], list[float], list[float]]:
    """(epochs from 1, mean, min, max) over runs at the epochs every run reached (early
    stopping can end runs early).

    >>> seed_band([{0: 1.0, 1: 0.5}, {0: 0.6, 1: 0.3, 2: 0.2}])
    ([1, 2], [0.8, 0.4], [0.6, 0.3], [1.0, 0.5])
    """
    curves = [c for c in curves if c]
    if not curves:
        return [], [], [], []
    epochs = sorted(set.intersection(*(set(c) for c in curves)))
    values = [[c[e] for c in curves] for e in epochs]
    return ([e + 1 for e in epochs], [sum(v) / len(v) for v in values],
            [min(v) for v in values], [max(v) for v in values])


def _draw(ax, curves: list[dict[int, float]], color, label: str) -> None:
    """The mean curve and, over several seeds, the band from the lowest to the highest seed."""
    x, mean, low, high = seed_band(curves)
    ax.plot(x, mean, marker="o", ms=3, color=color, label=label)
    if len([c for c in curves if c]) > 1:
        ax.fill_between(x, low, high, color=color, alpha=0.2, lw=0)


def plot_learning_curves(path: Path, runs: dict[str, list[Path]], labels: dict[str, str]):
    """Train loss and dev accuracy per epoch of every model, one figure: the mean over seeds
    as a line, the spread between the lowest and highest seed as a band. Returns the figure."""
    fig, (ax_loss, ax_acc) = subplots(1, 2, figsize=(10, 4))
    for variant, dirs in runs.items():
        curves = [epoch_curves(read_metrics(d / METRICS)) for d in dirs]
        color = COLORS.get(variant)
        _draw(ax_loss, [c.get("train_loss", {}) for c in curves], color, labels[variant])
        key = "dev_acc" if any("dev_acc" in c for c in curves) else "train_acc"
        _draw(ax_acc, [c.get(key, {}) for c in curves], color, labels[variant])
        ax_acc.set_ylabel("dev accuracy" if key == "dev_acc" else "train accuracy")
    seeds = max(len(d) for d in runs.values())
    spread = ", band: lowest to highest seed" if seeds > 1 else ""
    ax_loss.set(xlabel="epoch", ylabel="train loss (cross-entropy)", title="Learning curves")
    ax_acc.set(xlabel="epoch", title=f"mean over {seeds} seed(s){spread}")
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return fig


def plot_accuracy_vs_params(path: Path, comparison: dict[str, Any]) -> None:
    """Test accuracy against parameter count: each seed as a faint dot, the mean with its
    95% CI as a bar (clipped to [0, 1]); models of equal size are drawn slightly apart."""
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


def plot_grid_accuracy(path: Path, agg: dict[str, Any]) -> None:
    """Test accuracy (mean over seeds with its 95% CI) of every grid point of a sweep."""
    points = agg["points"]
    fig, ax = subplots(figsize=(max(5.0, 1.2 * len(points) + 2), 4.5))
    for i, p in enumerate(points):
        ci = p["test_acc"]["ci"]
        ax.errorbar(i, p["test_acc"]["mean"], yerr=0 if math.isnan(ci) else ci, fmt="o", capsize=4,
                    color=COLORS.get(p["kind"], "tab:gray"))
    for kind, color in COLORS.items():
        if any(p["kind"] == kind for p in points):
            ax.plot([], [], "o", color=color, label=kind)
    short = [point_label({k.split(".")[-1]: v for k, v in p["point"].items()}, "\n") for p in points]
    ax.set_xticks(range(len(points)), short, fontsize=7, rotation=30 if len(points) > 6 else 0)
    ax.set(ylabel="test accuracy", title=f"Mean over seeds, 95% CI ({len(agg['seeds'])} seeds)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


__all__ = ["COLORS", "epoch_curves", "plot_accuracy_vs_params", "plot_grid_accuracy", "plot_learning_curves",
           "seed_band"]
