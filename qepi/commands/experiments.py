"""Handlers of ``qepi train``, ``qepi evaluate``, ``qepi compare``, ``qepi marks`` and
``qepi report``."""

from __future__ import annotations

import json
from pathlib import Path

from qepi.commands.common import load_config
from qepi.errors import UserError


def _summary_line(s: dict) -> str:
    parts = [f"{s.get('train_shots', s['shots'])} in training steps"]
    if "mitigation_circuits" in s:
        parts.append(f"{s['mitigation_circuits']} circuits, {s['mitigation_shots']} shots for "
                     f"error mitigation")
    return (f"{s['name']}: test acc {s['test_acc']:.3f} (chance {s['chance_acc']:.3f}), "
            f"loss {s['test_loss']:.3f} | {s['params']} params | {s['circuits']} circuits, "
            f"{s['shots']} shots ({'; '.join(parts)}) | {s['wall_time_s']:.1f} s")


def train(*, config: str | None, overrides: list[str], out: str | None, warm_start: str | None,
          resume: str | None, overwrite: bool, quiet: bool) -> int:
    """``qepi train CONFIG [--set k=v] [--out DIR] [--from RUN_DIR] | --resume RUN_DIR``."""
    from qepi.experiments import runner
    from qepi.experiments.rundir import exclusive

    if resume:
        if config or overrides or warm_start or out:
            raise UserError("--resume continues with the run's saved config: drop CONFIG, "
                            "--set, --from and --out")
        with exclusive(resume):
            result = runner.resume(resume, progress=not quiet)
    else:
        cfg = load_config(config, overrides)
        run_dir = Path(out) if out else runner.default_run_dir(cfg)
        with exclusive(run_dir):
            result = runner.run(cfg, run_dir, warm_start=warm_start, progress=not quiet,
                                overwrite=overwrite)
    print(_summary_line(result.summary))
    print(f"run directory: {result.run_dir}")
    return 0


def evaluate(*, run_dirs: list[str], overrides: list[str], split: str, as_json: bool) -> int:
    """``qepi evaluate RUN_DIR... [--set backend.KEY=VALUE] [--split S] [--json]``: the
    trained weights of each run on a split, on the run's backend or the one the ``--set``
    overrides describe (e.g. a final check on Aer with shots and a device's noise). Reads the
    run directories, writes nothing."""
    import dataclasses
    import time

    from qepi.commands.common import check_backend_settings
    from qepi.config import apply_overrides
    from qepi.data import load_dataset
    from qepi.training import evaluate as evaluate_split
    from qepi.training import load_model

    outside = [o for o in overrides if not o.strip().startswith("backend.")]
    if outside:
        raise UserError(f"evaluate --set {outside[0]}: only backend.* keys can change when "
                        f"evaluating trained weights")
    results = []
    for run_dir in map(Path, run_dirs):
        if not run_dir.is_dir():
            raise UserError(f"{run_dir}: not a run directory")
        _, saved = load_model(run_dir)
        backend = apply_overrides(saved, overrides).backend
        check_backend_settings(backend)
        model, cfg = load_model(run_dir, backend=backend)
        data = getattr(load_dataset(cfg.data, cfg.run.seed), split)
        if data is None or len(data) == 0:
            raise UserError(f"--split {split}: {run_dir} has no {split} examples")
        start = time.perf_counter()
        metrics = evaluate_split(model.eval(), data)
        stats = [layer.execution_stats() for layer in model.quantum_layers()]
        results.append({"run": str(run_dir), "split": split, **metrics,
                        "backend": dataclasses.asdict(backend),
                        "circuits": sum(s.circuits for s in stats), "shots": sum(s.shots for s in stats),
                        "wall_time_s": time.perf_counter() - start})
    for r in results:
        if as_json:
            print(json.dumps(r))
            continue
        b = r["backend"]
        setting = ", ".join(f"{k}={b[k]}" for k in ("shots", "noise") if b.get(k))
        print(f"{r['run']}: {split} acc {r['acc']:.3f}, loss {r['loss']:.3f} on {b['name']}"
              f"{f' ({setting})' if setting else ''} | {r['circuits']} circuits, {r['shots']} shots"
              f" | {r['wall_time_s']:.1f} s")
    return 0


def compare(*, config: str, overrides: list[str], seeds: int | None, out: str | None,
            overwrite: bool, as_json: bool, quiet: bool, references: bool = True) -> int:
    """``qepi compare CONFIG [--seeds N] [--json] [--no-references]``: prints the table (or
    JSON) and writes the report; ``seeds=None`` sizes the seed count to the data."""
    from qepi.experiments.compare import compare as run_compare
    from qepi.experiments.compare import default_compare_dir
    from qepi.experiments.report import format_table
    from qepi.experiments.rundir import REPORT, exclusive
    from qepi.experiments.tables import to_json

    cfg = load_config(config, overrides)
    out = Path(out) if out else default_compare_dir(cfg)
    with exclusive(out):
        comparison = run_compare(cfg, seeds, out, overwrite=overwrite,
                                 progress=not (quiet or as_json), references=references)
    if as_json:
        print(to_json(comparison))
    else:
        print(format_table(comparison))
        print(f"\nreport: {out / REPORT}")
    return 0


def marks(*, config: str, overrides: list[str], task_b: list[str], out: str | None, overwrite: bool,
          as_json: bool, quiet: bool) -> int:
    """``qepi marks CONFIG [--set k=v] [--task-b data.k=v] [--out DIR] [--overwrite] [--json]``."""
    from qepi.experiments.marks import default_marks_dir, format_report, marks_experiment
    from qepi.experiments.rundir import REPORT, exclusive

    cfg = load_config(config, overrides)
    out = Path(out) if out else default_marks_dir(cfg)
    with exclusive(out):
        result = marks_experiment(cfg, task_b, out, progress=not (quiet or as_json), overwrite=overwrite)
    if as_json:
        print(json.dumps(result))
    else:
        print(format_report(result))
        print(f"report: {out / REPORT}")
    return 0


def render(directory: str | Path) -> Path:
    """Render the report of a run, comparison, sweep or marks directory again from its
    saved files; returns the report's path."""
    from qepi.experiments.compare import summarize
    from qepi.experiments.marks import format_report
    from qepi.experiments.report import render_compare_report, render_run_report, render_sweep_report
    from qepi.experiments.rundir import COMPARISON_DIR, MARKS, MARKS_DIR, REPORT, RUN, SWEEP_DIR, kind_of
    from qepi.experiments.sweep import aggregate
    from qepi.training import atomic_write_text

    directory = Path(directory)
    if not directory.is_dir():
        raise UserError(f"{directory}: no such directory")
    kind = kind_of(directory)
    if kind == SWEEP_DIR:
        return render_sweep_report(directory, aggregate(directory))
    if kind == COMPARISON_DIR:
        return render_compare_report(directory, summarize(directory))
    if kind == MARKS_DIR and (directory / MARKS).is_file():
        atomic_write_text(directory / REPORT, format_report(json.loads((directory / MARKS).read_text())))
        return directory / REPORT
    if kind == RUN:
        return render_run_report(directory)
    raise UserError(f"{directory}: not a qepi run, comparison, sweep or finished marks directory")


def report(*, run_dir: str) -> int:
    """``qepi report DIR``: render the report again from saved metrics."""
    print(f"report: {render(run_dir)}")
    return 0
