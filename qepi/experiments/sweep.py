"""Sweeps: a grid of config values times seeds, trained in parallel on Ray.

Every (grid point, seed) is a *trial*: one Ray task that trains one run directory with
:func:`qepi.experiments.runner.run`. Without an address the trials run on a local Ray
instance sized to this machine's cores; with one, on a running Ray cluster. Ray places
the tasks (each reserves :func:`trial_cpus` CPUs) and retries a task whose worker process
or node dies; qepi schedules nothing itself.

A sweep directory holds, in the order written:

- ``config.toml``: the base config (resolved); a restarted sweep must use the same one;
- ``sweep-plan.json``: the grid, the seeds and every trial's name, grid point and seed;
- ``runs/<trial>/``: one run directory per trial, named by its grid point and seed
  (``model.embedding=classical,train.lr=0.05,seed=1``);
- ``sweep.json``, ``report.md``, ``accuracy.png``, ``learning_curves.png``: the aggregate
  over the grid, mean ± 95% CI over seeds, with quantum-vs-classical paired tests where
  the grid varies ``model.embedding`` or ``model.attention``.

A trial is finished when its run directory holds ``summary.json``. Starting a sweep again
in the same directory skips finished trials and resumes interrupted ones from their last
checkpoint, so no result is lost or computed twice.

The grid and the trials come from :mod:`qepi.experiments.grid`, Ray from
:mod:`qepi.experiments.cluster`, the report from :mod:`qepi.experiments.report`.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from qepi.config import Config, from_dict, load, to_dict, to_toml
from qepi.errors import UserError
from qepi.experiments.cluster import largest_node_cpus, ray_session, trial_cpus, use_assigned_cpus
from qepi.experiments.grid import Trial, check_points, plan_trials, point_label
from qepi.experiments.report import render_sweep_report
from qepi.experiments.rundir import (
    CHECKPOINT,
    CONFIG,
    SUMMARY,
    SWEEP_DIR,
    SWEEP_PLAN,
    TRIALS,
    continued_dir,
    read_summary,
)
from qepi.experiments.runner import model_kind, resume, run
from qepi.experiments.stats import over_seeds, paired_by_seed
from qepi.training import atomic_write_text

LAYER_KEYS = ("model.embedding", "model.attention")


# ---------------------------------------------------------------------- one trial
def _saved_config(run_dir: Path) -> Config | None:
    return load(run_dir / CONFIG) if (run_dir / CONFIG).is_file() else None


def is_finished(cfg: Config, run_dir: str | Path) -> bool:
    """True when ``run_dir`` holds a finished run of ``cfg``; a run of another config there
    is an error (the directory belongs to a different sweep)."""
    run_dir = Path(run_dir)
    saved = _saved_config(run_dir)
    if saved is not None and saved != cfg:
        raise UserError(f"{run_dir}: holds a run of a different config; use another --out "
                        f"for a sweep of a changed config")
    return saved is not None and (run_dir / SUMMARY).is_file()


def run_trial(cfg: Config, run_dir: str | Path, callbacks=()) -> dict[str, Any]:
    """Bring the trial in ``run_dir`` to its end from whatever state it was left in and
    return its summary: a finished run's saved summary, an interrupted run resumed from its
    checkpoint, or a fresh run. Safe to call again after any interruption."""
    run_dir = Path(run_dir)
    if is_finished(cfg, run_dir):
        return read_summary(run_dir)
    if _saved_config(run_dir) is not None and (run_dir / CHECKPOINT).is_file():
        return resume(run_dir, callbacks=callbacks, progress=False, report=False).summary
    return run(cfg, run_dir, callbacks=callbacks, progress=False, report=False, overwrite=True).summary


def _trial_task(cfg: dict[str, Any], run_dir: str, callbacks) -> dict[str, Any]:
    """The Ray task of one trial (runs on a worker). The config travels as plain data, so a
    worker with another qepi version fails with a message naming the key."""
    import ray

    cpus = use_assigned_cpus(ray)
    return {**run_trial(from_dict(cfg), run_dir, callbacks), "cpus": cpus}


# ---------------------------------------------------------------------- the sweep
@dataclass
class SweepResult:
    """What :func:`sweep` returns: the directory, the aggregate (also in ``sweep.json``),
    the trials run now with the CPUs Ray gave each, those skipped as already finished, and
    failures (name -> error)."""

    out: Path
    aggregate: dict[str, Any]
    ran: list[str] = field(default_factory=list)
    cpus: dict[str, int] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)


def default_sweep_dir(cfg: Config) -> Path:
    """``<run.out_dir>/sweep-<run.name or task>``."""
    return Path(cfg.run.out_dir) / f"sweep-{cfg.run.name or cfg.data.task}"


def _write_plan(out: Path, base: Config, grid: dict[str, list[Any]], trials: list[Trial]) -> None:
    continued_dir(out, SWEEP_DIR, {CONFIG: base}, "base config")
    (out / TRIALS).mkdir(exist_ok=True)
    atomic_write_text(out / CONFIG, to_toml(base))
    points: dict[str, dict[str, Any]] = {}
    for t in trials:
        label = point_label(t.point)
        entry = points.setdefault(label, {"point": t.point, "kind": model_kind(t.cfg), "trials": []})
        entry["trials"].append({"name": t.name, "seed": t.seed})
    plan = {"grid": grid, "seeds": sorted({t.seed for t in trials}), "points": list(points.values())}
    atomic_write_text(out / SWEEP_PLAN, json.dumps(plan, indent=2) + "\n")


def sweep(cfg: Config, grid: dict[str, list[Any]], seeds: int = 1, out: str | Path | None = None, *,
          address: str | None = None, cpus_per_trial: int = 1, retries: int = 3, callbacks=(),
          progress: bool = True) -> SweepResult:
    """Train every (grid point, seed) as a Ray task and write the aggregate.

    Args:
        cfg: the base config; ``grid`` (from :func:`parse_grid`) overrides some of its keys.
        seeds: seeds per grid point: ``run.seed, run.seed + 1, ...``.
        out: sweep directory (default ``<run.out_dir>/sweep-<name>``); a directory of the
            same sweep continues it: finished trials are skipped, interrupted ones resumed.
        address: a running Ray cluster (``"auto"``, ``"HOST:6379"``); None starts a local
            Ray instance with this machine's cores.
        cpus_per_trial: CPUs each non-Aer trial reserves (Aer trials: :func:`trial_cpus`).
        retries: times Ray runs a trial again after its worker process or node died.
        callbacks: Trainer callbacks (see :mod:`qepi.training.trainer`), shipped to workers.

    A trial that raises (rather than dying) is not retried: the other trials finish, the
    aggregate covers what finished, and ``failed`` names the rest.
    """
    if retries < 0:
        raise UserError(f"--retries: must be >= 0, got {retries}")
    trials = plan_trials(cfg, grid, seeds)
    check_points(trials)
    out = Path(out) if out is not None else default_sweep_dir(cfg)
    _write_plan(out, cfg, grid, trials)
    result = SweepResult(out.resolve(), {})
    todo = []
    for t in trials:
        (result.skipped if is_finished(t.cfg, out / TRIALS / t.name) else todo).append(t)
    if progress and result.skipped:
        print(f"{len(result.skipped)} of {len(trials)} trials already finished; skipping them")
    if todo:
        _run_on_ray(todo, result, address, cpus_per_trial, retries, callbacks, progress, len(trials))
    result.aggregate = aggregate(out)
    render_sweep_report(out, result.aggregate)
    return result


def _run_on_ray(todo: list[Trial], result: SweepResult, address, cpus_per_trial: int, retries: int,
                callbacks, progress: bool, total: int) -> None:
    with ray_session(address) as ray:
        node_cpus = largest_node_cpus(ray)
        task = ray.remote(_trial_task)
        pending = {}
        for t in todo:
            options = {"num_cpus": trial_cpus(t.cfg, node_cpus, cpus_per_trial), "max_retries": retries,
                       "name": f"qepi-trial {t.name}"}
            run_dir = str(result.out / TRIALS / t.name)
            pending[task.options(**options).remote(to_dict(t.cfg), run_dir, list(callbacks))] = t
        start = time.perf_counter()
        try:
            while pending:
                done, _ = ray.wait(list(pending), num_returns=1)
                t = pending.pop(done[0])
                try:
                    summary = ray.get(done[0])
                except ray.exceptions.RayTaskError as err:
                    cause = err.cause if err.cause is not None else err
                    result.failed[t.name] = f"{cause.__class__.__name__}: {str(cause).splitlines()[0]}"
                except ray.exceptions.RayError as err:  # the worker or node died too often
                    result.failed[t.name] = f"{err.__class__.__name__}: {str(err).splitlines()[0]}"
                else:
                    if not (result.out / TRIALS / t.name / SUMMARY).is_file():
                        raise UserError(f"trial {t.name} finished on a worker but its run directory "
                                        f"is not visible here: --out must be on a filesystem "
                                        f"every Ray node shares")
                    result.ran.append(t.name)
                    result.cpus[t.name] = summary["cpus"]
                    if progress:
                        print(f"[{len(result.skipped) + len(result.ran)}/{total}] {t.name}: test acc "
                              f"{summary['test_acc']:.3f}, {summary['wall_time_s']:.1f} s on "
                              f"{summary['cpus']} CPU(s) ({time.perf_counter() - start:.0f} s)")
                if progress and t.name in result.failed:
                    print(f"[failed] {t.name}: {result.failed[t.name]}")
        except BaseException:
            for ref in pending:  # a restarted sweep must not meet these still writing
                ray.cancel(ref, force=True)
            raise


# ---------------------------------------------------------------------- the aggregate
def _layer_label(point: dict[str, Any]) -> str:
    return point_label({k: v for k, v in point.items() if k in LAYER_KEYS})


def quantum_vs_classical(points: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Paired tests over seeds of every non-classical grid point against the classical
    point with the same values of the other keys (only where the grid varies a layer kind).
    A group without a classical point gets a note instead."""
    if not points or not any(k in LAYER_KEYS for k in points[0]["point"]):
        return []
    groups: dict[str, list[dict[str, Any]]] = {}
    for p in points:
        rest = {k: v for k, v in p["point"].items() if k not in LAYER_KEYS}
        groups.setdefault(point_label(rest, ", ") if rest else "", []).append(p)
    rows = []
    for setting, members in groups.items():
        classical = [p for p in members if p["kind"] == "classical"]
        if not classical:
            rows.append({"setting": setting, "note": "no point of this group is fully classical "
                         "(a layer left quantum in the base config); nothing to compare against"})
            continue
        c = classical[0]
        for q in members:
            if q["kind"] == "classical":
                continue
            rows.append({
                "setting": setting, "quantum": _layer_label(q["point"]), "kind": q["kind"],
                "classical": _layer_label(c["point"]),
                "params": {"quantum": q["params"], "classical": c["params"]},
                **paired_by_seed(q["per_seed"], c["per_seed"]),
            })
    return rows


def aggregate(out: str | Path) -> dict[str, Any]:
    """Recompute the aggregate of a sweep directory from its plan and saved run summaries:
    one entry per grid point (mean ± 95% CI over the finished seeds of test accuracy, test
    loss and wall time; parameters), then the quantum-vs-classical comparisons."""
    out = Path(out)
    if not (out / SWEEP_PLAN).is_file():
        raise UserError(f"{out}: not a sweep directory (no {SWEEP_PLAN})")
    try:
        plan = json.loads((out / SWEEP_PLAN).read_text())
        plan_points, grid, seeds = plan["points"], plan["grid"], plan["seeds"]
    except (json.JSONDecodeError, KeyError, TypeError):
        raise UserError(f"{out / SWEEP_PLAN}: malformed sweep plan") from None
    points, missing = [], []
    for entry in plan_points:
        rows = []
        for trial in entry["trials"]:
            run_dir = out / TRIALS / trial["name"]
            if (run_dir / SUMMARY).is_file():
                rows.append(read_summary(run_dir))
            else:
                missing.append(trial["name"])
        seeds_of = over_seeds(rows)
        points.append({
            "label": point_label(entry["point"]), "point": entry["point"], "kind": entry["kind"],
            "runs": seeds_of["runs"], "test_acc": seeds_of["test_acc"], "test_loss": seeds_of["test_loss"],
            "wall_time_s": seeds_of["wall_time_s"], "params": seeds_of["params"],
            "per_seed": seeds_of["per_seed"],
        })
    base = load(out / CONFIG)
    return {"task": base.data.task, "grid": grid, "seeds": seeds, "config": to_dict(base),
            "points": points, "quantum_vs_classical": quantum_vs_classical(points),
            "missing": missing}


__all__ = ["LAYER_KEYS", "SweepResult", "aggregate", "default_sweep_dir", "is_finished",
           "quantum_vs_classical", "run_trial", "sweep"]
