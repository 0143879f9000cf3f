"""One experiment: config -> run directory -> trained model and summary.

A run directory ``runs/<name>/`` holds, in the order written (names in
:mod:`qepi.experiments.rundir`):

- ``config.toml``: the resolved config (every key), written before training starts;
- ``metrics.jsonl``: one record per step and per evaluation, as they come;
- ``checkpoint.pt``: the resumable training state (atomic, every ``train.checkpoint_every``
  steps and at each epoch's end);
- ``model.pt``: the final weights with config, InputSpec, seeds and qepi version;
- ``summary.json``: the final figures; its presence marks the run as finished;
- ``report.md`` and ``learning_curves.png`` (``qepi report`` renders them again).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qepi import __version__
from qepi.config import Config, check_run_name, load, to_toml
from qepi.data import Dataset, load_dataset
from qepi.diagnostics import training_monitors
from qepi.errors import UserError
from qepi.experiments.report import render_run_report
from qepi.experiments.rundir import CHECKPOINT, CONFIG, MODEL, RUN, SUMMARY, fresh_dir
from qepi.layers import QuantumLayer
from qepi.layers.epigenetic import regulation_on
from qepi.models import HybridTransformer, count_parameters
from qepi.training import (
    Trainer,
    atomic_write_text,
    load_checkpoint,
    model_record,
    save_checkpoint,
    seed_everything,
)


@dataclass
class RunResult:
    """What :func:`run` returns: the run directory, the resolved config, the final summary
    (also in ``summary.json``) and the trained model."""

    run_dir: Path
    cfg: Config
    summary: dict[str, Any]
    model: HybridTransformer


def model_kind(cfg: Config) -> str:
    """``quantum``, ``classical`` or ``no_entanglement`` (quantum layers without entangling gates)."""
    if "quantum" not in (cfg.model.embedding, cfg.model.attention):
        return "classical"
    return "quantum" if cfg.circuit.entangling else "no_entanglement"


def default_run_dir(cfg: Config) -> Path:
    """``<run.out_dir>/<run.name>``, the name defaulting to ``<task>-<kind>-s<seed>``."""
    name = check_run_name(cfg.run.name) or f"{cfg.data.task}-{model_kind(cfg)}-s{cfg.run.seed}"
    return Path(cfg.run.out_dir) / name


def _warm_start(model: HybridTransformer, source: str | Path) -> str:
    source = Path(source)
    path = source / MODEL if source.is_dir() else source
    if source.is_dir() and not path.is_file():
        raise UserError(f"--from {source}: no {MODEL} there (the run did not finish)")
    state = load_checkpoint(path)
    saved_spec = state.get("input_spec")
    if saved_spec != dataclasses.asdict(model.inputs):
        raise UserError(f"--from {source}: its data shape {saved_spec} differs from this "
                        f"run's {dataclasses.asdict(model.inputs)}")
    try:
        model.load_state_dict(state["model"])
    except (RuntimeError, KeyError) as err:
        first = str(err).splitlines()[0]
        raise UserError(f"--from {source}: its weights do not fit this model ({first})") from None
    return str(source)


def _finish(run_dir: Path, cfg: Config, model, dataset: Dataset,
            fit: dict[str, Any], extra: dict[str, Any], report: bool) -> dict[str, Any]:
    save_checkpoint(run_dir / MODEL, model_record(model, cfg, cfg.run.seed))
    summary = {
        "name": run_dir.name, "kind": model_kind(cfg), "task": cfg.data.task, "seed": cfg.run.seed,
        "backend": cfg.backend.name, "params": count_parameters(model), "n_train": len(dataset.train),
        "test_acc": fit["test"]["acc"], "test_loss": fit["test"]["loss"],
        "best_dev_acc": fit["best_dev_acc"], "chance_acc": dataset.majority_rate(),
        "steps": fit["steps"], "epochs": fit["epochs"], "stopped_early": fit["stopped_early"],
        "planned_epochs": fit["planned_epochs"], "best_epoch": fit["best_epoch"],
        "budget": fit["budget"], "selection": fit["selection"], "dev": dataset.dev_source,
        "circuits": fit["circuits"], "shots": fit["shots"], "train_shots": fit["train_shots"],
        **{key: fit[key] for key in ("mitigation_circuits", "mitigation_shots") if key in fit},
        "optimizer": cfg.train.optimizer, "wall_time_s": fit["wall_time_s"],
        "qepi_version": __version__, **extra,
    }
    details = {name: layer.execution_details() for name, layer in model.named_modules()
               if isinstance(layer, QuantumLayer) and layer.execution_details()}
    if details:  # e.g. each layer's device layout and transpiled depth on runtime
        summary["backend_details"] = details
    regulation = regulation_on(model, dataset.test.x, dataset.test.mask)  # expression on test
    if regulation:
        summary["regulation"] = regulation
    atomic_write_text(run_dir / SUMMARY, json.dumps(summary, indent=2) + "\n")
    if report:
        render_run_report(run_dir)
    return summary


def _with_monitors(cfg: Config, dataset: Dataset, callbacks) -> list:
    """``callbacks`` plus, with ``train.diagnostics``, the gradient-flow and entropy monitors."""
    if not cfg.train.diagnostics:
        return list(callbacks)
    return [*callbacks, *training_monitors(dataset)]


def run(cfg: Config, out: str | Path | None = None, *, warm_start: str | Path | None = None,
        callbacks=(), progress: bool = True, overwrite: bool = False,
        report: bool = True) -> RunResult:
    """Train the model ``cfg`` describes in a new run directory and evaluate it on test.

    Args:
        cfg: resolved config; ``run.seed`` seeds data, weights and simulator.
        out: run directory (default ``<run.out_dir>/<run.name>``).
        warm_start: a finished run directory (or model.pt) whose weights start this run;
            staged training warms up on an exact simulator and continues on Aer.
        callbacks: objects with Trainer hooks (see :mod:`qepi.training.trainer`).
        overwrite: replace an earlier run in ``out`` instead of refusing.
        report: also write ``report.md`` and its plot.

    Example:
        >>> import tempfile
        >>> from qepi.config import Config, update
        >>> cfg = update(Config(), model={"embedding": "classical", "attention": "classical"},
        ...              data={"task": "parity", "seq_len": 4, "n_train": 8, "n_dev": 4, "n_test": 4},
        ...              train={"epochs": 1})
        >>> with tempfile.TemporaryDirectory() as d:
        ...     result = run(cfg, f"{d}/run", progress=False, report=False)
        ...     sorted(p.name for p in result.run_dir.iterdir())
        ['checkpoint.pt', 'config.toml', 'metrics.jsonl', 'model.pt', 'summary.json']
    """
    run_dir = Path(out) if out is not None else default_run_dir(cfg)
    dataset = load_dataset(cfg.data, cfg.run.seed)  # bad data fails before anything is written
    dataset.check_not_empty()
    seed_everything(cfg.run.seed)
    model = HybridTransformer(cfg, dataset.spec)
    extra: dict[str, Any] = {}
    if warm_start is not None:
        extra["warm_start"] = _warm_start(model, warm_start)
    trainer = Trainer(model, cfg, dataset, run_dir=run_dir,
                      callbacks=_with_monitors(cfg, dataset, callbacks), progress=progress)
    with fresh_dir(run_dir, RUN, overwrite):
        atomic_write_text(run_dir / CONFIG, to_toml(cfg))
        fit = trainer.fit()
        summary = _finish(run_dir, cfg, model, dataset, fit, extra, report)
    return RunResult(run_dir, cfg, summary, model)


def resume(run_dir: str | Path, *, callbacks=(), progress: bool = True,
           report: bool = True) -> RunResult:
    """Continue an interrupted run from ``run_dir/checkpoint.pt`` with its saved config; the
    final weights equal those of an uninterrupted run."""
    run_dir = Path(run_dir)
    if not (run_dir / CONFIG).is_file():
        raise UserError(f"--resume {run_dir}: not a qepi run directory (no {CONFIG})")
    if (run_dir / SUMMARY).exists():
        raise UserError(f"--resume {run_dir}: the run already finished")
    if not (run_dir / CHECKPOINT).is_file():
        raise UserError(f"--resume {run_dir}: no checkpoint yet; start the run again with --overwrite")
    cfg = load(run_dir / CONFIG)
    state = load_checkpoint(run_dir / CHECKPOINT)
    dataset = load_dataset(cfg.data, cfg.run.seed)
    model = HybridTransformer(cfg, dataset.spec)
    trainer = Trainer(model, cfg, dataset, run_dir=run_dir,
                      callbacks=_with_monitors(cfg, dataset, callbacks), progress=progress)
    trainer.load_state(state)
    fit = trainer.fit()
    summary = _finish(run_dir, cfg, model, dataset, fit, {"resumed_at_step": state["step"]}, report)
    return RunResult(run_dir, cfg, summary, model)
