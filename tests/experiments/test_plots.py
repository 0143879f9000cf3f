"""Learning curves show the spread over seeds: a band from the lowest to the highest seed."""

import json

import numpy as np
from matplotlib.collections import PolyCollection

from qepi.experiments.plots import plot_learning_curves

# train loss per (seed, epoch): two steps per epoch, the epoch's value is their mean
LOSSES = {0: [(1.0, 0.8), (0.6, 0.4)], 1: [(1.2, 1.0), (0.3, 0.3)], 2: [(0.7, 0.9), (0.5, 0.7)]}


def write_runs(tmp_path, variant):
    dirs = []
    for seed, epochs in LOSSES.items():
        run = tmp_path / f"{variant}-s{seed}"
        run.mkdir()
        lines = [{"kind": "train", "epoch": e, "loss": loss, "acc": 0.5}
                 for e, steps in enumerate(epochs) for loss in steps]
        lines += [{"kind": "eval", "split": "dev", "epoch": e, "loss": 0.0, "acc": 0.5 + 0.1 * seed}
                  for e in range(len(epochs))]
        (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
        dirs.append(run)
    return dirs


def band(ax):
    (poly,) = [c for c in ax.collections if isinstance(c, PolyCollection)]
    vertices = poly.get_paths()[0].vertices
    return {x: (vertices[vertices[:, 0] == x, 1].min(), vertices[vertices[:, 0] == x, 1].max())
            for x in np.unique(vertices[:, 0])}


def test_the_band_spans_the_lowest_and_highest_seed(tmp_path):
    runs = {"quantum": write_runs(tmp_path, "quantum")}
    fig = plot_learning_curves(tmp_path / "curves.png", runs, {"quantum": "quantum"})
    ax_loss, ax_acc = fig.axes
    # by hand: epoch 1 means 0.9, 1.1, 0.8; epoch 2 means 0.5, 0.3, 0.6
    expected = {1.0: (0.8, 1.1), 2.0: (0.3, 0.6)}
    for x, (low, high) in band(ax_loss).items():
        assert np.allclose((low, high), expected[x])
    assert np.allclose(ax_loss.lines[0].get_ydata(), [(0.9 + 1.1 + 0.8) / 3, (0.5 + 0.3 + 0.6) / 3])
    assert all(np.allclose(v, (0.5, 0.7)) for v in band(ax_acc).values())  # dev acc per seed
    assert "lowest to highest seed" in ax_acc.get_title()
    assert (tmp_path / "curves.png").is_file()


def test_one_seed_draws_no_band(tmp_path):
    run = write_runs(tmp_path, "quantum")[:1]
    fig = plot_learning_curves(tmp_path / "curves.png", {"quantum": run}, {"quantum": "quantum"})
    assert not any(isinstance(c, PolyCollection) for ax in fig.axes for c in ax.collections)
