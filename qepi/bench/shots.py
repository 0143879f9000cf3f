"""`qepi bench shots`: shots each optimiser spends to reach a dev accuracy on ``motif``.

The config (default ``configs/motif.toml``) runs on ``backend.name = "exact"`` with
``backend.shots = --shots`` (every circuit, and every parameter-shift circuit of the fixed-shot
Adam run, gets that many shots), with ``--train`` training examples in batches of
``--batch`` (8: many small steps, so that Adam learns within the default 6 epochs) and
``--epochs`` epochs.
The same model, data and seed are trained with each of ``--optimizers``:

- ``adam``: Adam on parameter-shift gradients of every weight (the reference);
- ``spsa``: SPSA on the circuit weights, Adam on the classical ones;
- ``rosalin``: Rosalin's per-weight shot allocation on the circuit weights, Adam on the others.

After each epoch it records the training shots spent so far (training steps only; the dev
evaluations, the same for every optimiser, are not counted) and the dev accuracy. The table
gives, per optimiser: steps, training shots, best dev accuracy, and the training shots at the
first epoch whose dev accuracy reached the Adam run's best ("not reached" otherwise).

Sections: :data:`SECTIONS` lists what the command prints after training, in order; each
takes (args, results): the optimiser table, then the mitigated-vs-unmitigated error of
:mod:`qepi.bench.mitigation` at ``--mitigation-shots`` shots per circuit.
"""

from __future__ import annotations

import json
from typing import Any

from qepi.config import apply_overrides, load
from qepi.errors import UserError

OPTIMIZER_NAMES = ("adam", "spsa", "rosalin")


class _Curve:
    """Trainer callback: (training shots, dev accuracy) after each epoch."""

    def __init__(self):
        self.points: list[tuple[int, float]] = []

    def on_epoch_end(self, trainer, epoch: int, metrics: dict[str, Any]) -> None:
        if "dev_acc" in metrics:
            self.points.append((trainer.train_shots, metrics["dev_acc"]))


def shots_to_reach(points: list[tuple[int, float]], target: float) -> int | None:
    """Training shots at the first point whose dev accuracy is >= ``target`` (None: never).

    >>> shots_to_reach([(10, 0.5), (20, 0.7), (30, 0.9)], 0.7)
    20
    >>> shots_to_reach([(10, 0.5)], 0.7) is None
    True
    """
    return next((shots for shots, acc in points if acc >= target), None)


def train_one(cfg, optimizer: str) -> dict[str, Any]:
    """Train ``cfg`` with ``train.optimizer = optimizer``; steps, training shots, best dev
    accuracy and the per-epoch curve."""
    from qepi.config import update
    from qepi.data import load_dataset
    from qepi.models import HybridTransformer
    from qepi.training import Trainer, seed_everything

    cfg = update(cfg, train={"optimizer": optimizer})
    dataset = load_dataset(cfg.data, cfg.run.seed)
    seed_everything(cfg.run.seed)
    curve = _Curve()
    trainer = Trainer(HybridTransformer(cfg, dataset.spec), cfg, dataset, callbacks=[curve],
                      progress=False)
    summary = trainer.fit()
    return {"optimizer": optimizer, "steps": summary["steps"], "train_shots": summary["train_shots"],
            "best_dev_acc": summary["best_dev_acc"], "test_acc": summary["test"]["acc"],
            "curve": curve.points, "wall_time_s": summary["wall_time_s"]}


def print_shot_table(args, results: list[dict[str, Any]]) -> None:
    """The optimiser table (or one JSON object per optimiser with ``--json``)."""
    target = next((r["best_dev_acc"] for r in results if r["optimizer"] == "adam"), None)
    for r in results:
        reached = None if target is None else shots_to_reach(r["curve"], target)
        r["target_dev_acc"], r["shots_to_target"] = target, reached
        if args.json:
            print(json.dumps(r))
    if args.json:
        return
    print(f"{'optimizer':<10}{'steps':>7}{'train shots':>16}{'best dev acc':>14}"
          f"{'shots to Adam acc':>20}{'ratio':>8}")
    adam_shots = next((r["shots_to_target"] for r in results if r["optimizer"] == "adam"), None)
    for r in results:
        reached = r["shots_to_target"]
        ratio = f"{reached / adam_shots:.2f}" if reached and adam_shots else "-"
        print(f"{r['optimizer']:<10}{r['steps']:>7}{r['train_shots']:>16,}{r['best_dev_acc']:>14.3f}"
              f"{(f'{reached:,}' if reached is not None else 'not reached'):>20}{ratio:>8}")
    if target is not None:
        print(f"target: the Adam run's best dev accuracy {target:.3f}; ratio = shots to reach it / "
              f"Adam's")


def print_mitigation(args, results: list[dict[str, Any]]) -> None:
    """Mitigated against unmitigated estimate error under depolarizing + readout noise
    (:mod:`qepi.bench.mitigation`, ``--mitigation-shots`` shots; 0 skips it)."""
    if not args.mitigation_shots:
        return
    from qepi.bench.mitigation import measure, table

    result = measure(shots=args.mitigation_shots, seeds=2)
    print(json.dumps(result) if args.json else "\n" + table(result))


# What the command prints after training, in order.
SECTIONS = [print_shot_table, print_mitigation]


def main(args) -> int:
    """Train with each optimiser and print every section."""
    from qepi.bench import describe_load, machine_load, set_threads, warn_if_busy

    if min(args.shots, args.epochs, args.train, args.batch) < 1 or args.mitigation_shots < 0:
        raise UserError("bench shots: --shots, --epochs, --train and --batch must be >= 1, "
                        "--mitigation-shots >= 0")
    unknown = sorted(set(args.optimizers) - set(OPTIMIZER_NAMES))
    if unknown:
        raise UserError(f"bench shots: unknown optimizer {unknown[0]!r} (known: "
                        f"{', '.join(OPTIMIZER_NAMES)})")
    cfg = apply_overrides(load(args.config), [
        "backend.name=exact", f"backend.shots={args.shots}", f"train.epochs={args.epochs}",
        f"data.n_train={args.train}", f"train.batch_size={args.batch}", f"run.seed={args.seed}",
        "train.patience=0",
        *args.overrides])
    machine = machine_load(set_threads(args.threads))
    if not args.json:
        print(f"bench shots: {args.config}, exact backend with {args.shots} shots, "
              f"{args.train} training examples, batches of {args.batch}, {args.epochs} epochs, "
              f"seed {args.seed}; "
              f"{describe_load(machine)}")
    warn_if_busy(machine)
    results = [train_one(cfg, name) for name in args.optimizers]
    for section in SECTIONS:
        section(args, results)
    return 0


__all__ = ["OPTIMIZER_NAMES", "SECTIONS", "main", "print_mitigation", "print_shot_table",
           "shots_to_reach", "train_one"]
