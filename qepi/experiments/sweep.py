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

Example:
    >>> from qepi.config import Config
    >>> grid = parse_grid(["train.lr=0.01,0.1", "model.embedding=quantum,classical"], Config())
    >>> grid
    {'model.embedding': ['quantum', 'classical'], 'train.lr': [0.01, 0.1]}
    >>> trials = plan_trials(Config(), grid, seeds=2)
    >>> len(trials), trials[0].name
    (8, 'model.embedding=quantum,train.lr=0.01,seed=0')
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import logging
import math
import os
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from qepi.config import Config, apply_overrides, from_dict, load, to_dict, to_toml, update
from qepi.errors import UserError
from qepi.experiments.runner import model_kind, resume, run
from qepi.experiments.stats import mean_ci, paired_test
from qepi.training import atomic_write_text

PLAN = "sweep-plan.json"
LAYER_KEYS = ("model.embedding", "model.attention")
RESERVED_KEYS = {"run.seed": "vary seeds with --seeds", "run.name": "trials are named by the sweep",
                 "run.out_dir": "set the sweep directory with --out"}
INSTALL_HINT = "qepi sweep needs Ray: pip install 'qepi[distributed]'"


def import_ray():
    """The ``ray`` module, or a UserError with the install hint when Ray is missing."""
    try:
        import ray
    except ImportError:
        raise UserError(INSTALL_HINT) from None
    return ray


# ---------------------------------------------------------------------- the grid
def _split_values(text: str) -> list[str]:
    """Split at commas outside brackets and quotes: ``'[0,1],[2,3]'`` -> two values."""
    values, depth, quote, start = [], 0, "", 0
    for i, ch in enumerate(text):
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "\"'":
            quote = ch
        elif ch in "[{":
            depth += 1
        elif ch in "]}":
            depth -= 1
        elif ch == "," and depth == 0:
            values.append(text[start:i].strip())
            start = i + 1
    values.append(text[start:].strip())
    return values


def _value(cfg: Config, key: str) -> Any:
    section, name = key.split(".", 1)
    return getattr(getattr(cfg, section), name)


def parse_grid(specs: list[str], base: Config) -> dict[str, list[Any]]:
    """``["key=v1,v2", ...]`` -> ``{key: [v1, v2]}`` with keys sorted and values typed.

    Each value is checked by applying it to ``base`` (:func:`qepi.config.apply_overrides`),
    so a wrong type or an unknown key is an error naming the key. Lists are written in
    brackets: ``data.classes=[0,1],[3,8]``.

    >>> from qepi.config import Config
    >>> parse_grid(["data.classes=[0,1],[3,8]", "circuit.n_qubits=2,3"], Config())
    {'circuit.n_qubits': [2, 3], 'data.classes': [[0, 1], [3, 8]]}
    >>> parse_grid(["train.lr=fast"], Config())
    Traceback (most recent call last):
    ...
    qepi.config.ConfigError: train.lr: expected a number, got 'fast'
    """
    grid: dict[str, list[Any]] = {}
    for spec in specs:
        if "=" not in spec:
            raise UserError(f"--grid {spec!r}: expected section.key=value1,value2")
        key, raw = (part.strip() for part in spec.split("=", 1))
        if key in RESERVED_KEYS:
            raise UserError(f"--grid {key}: cannot be a grid key ({RESERVED_KEYS[key]})")
        if key in grid:
            raise UserError(f"--grid {key}: given twice; list all its values in one --grid")
        values = []
        for text in _split_values(raw):
            if not text:
                raise UserError(f"--grid {key}: empty value in {raw!r}")
            value = _value(apply_overrides(base, [f"{key}={text}"]), key)
            if value in values:
                raise UserError(f"--grid {key}: value {text!r} listed twice")
            values.append(value)
        grid[key] = values
    return dict(sorted(grid.items()))


def _text(value: Any) -> str:
    """A grid value as TOML-like text: strings bare, the rest as JSON (true, 0.05, [0, 1])."""
    return value if isinstance(value, str) else json.dumps(value)


def _override(key: str, value: Any) -> str:
    return f"{key}={json.dumps(value)}"


def point_label(point: dict[str, Any], sep: str = ", ") -> str:
    """``key=value`` pairs of a grid point; ``base`` for the empty point.

    >>> point_label({"model.embedding": "classical", "train.lr": 0.05})
    'model.embedding=classical, train.lr=0.05'
    """
    return sep.join(f"{k}={_text(v)}" for k, v in point.items()) or "base"


def trial_name(point: dict[str, Any], seed: int) -> str:
    """A stable directory name for (grid point, seed): readable ``key=value`` pairs; a value
    with characters other than letters, digits and ``._+-`` is cleaned and tagged with a
    short hash of the point, so distinct points never share a name.

    >>> trial_name({"model.embedding": "classical", "train.lr": 0.05}, 1)
    'model.embedding=classical,train.lr=0.05,seed=1'
    >>> trial_name({"data.classes": [3, 8]}, 0)
    'data.classes=3_8~bafa3f,seed=0'
    """
    label = ",".join(f"{k}={_text(v)}" for k, v in point.items())
    clean = ",".join(f"{k}={re.sub(r'[^A-Za-z0-9._+-]+', '_', _text(v)).strip('_')}"
                     for k, v in point.items())
    if clean != label or len(clean) > 150:
        digest = hashlib.sha1(json.dumps(point, sort_keys=True).encode()).hexdigest()[:6]
        clean = f"{clean[:150]}~{digest}"
    return f"{clean or 'base'},seed={seed}"


@dataclass
class Trial:
    """One (grid point, seed): its directory name and resolved config."""

    name: str
    point: dict[str, Any]
    seed: int
    cfg: Config


def plan_trials(base: Config, grid: dict[str, list[Any]], seeds: int) -> list[Trial]:
    """Every (grid point, seed) of the sweep, seed-major (the whole grid at the first seed
    comes first); seeds are ``run.seed, run.seed + 1, ...``."""
    if seeds < 1:
        raise UserError(f"--seeds: must be >= 1, got {seeds}")
    points = [dict(zip(grid, values)) for values in itertools.product(*grid.values())]
    trials = []
    for seed in range(base.run.seed, base.run.seed + seeds):
        for point in points:
            cfg = apply_overrides(base, [_override(k, v) for k, v in point.items()])
            name = trial_name(point, seed)
            trials.append(Trial(name, point, seed, update(cfg, run={"seed": seed, "name": name})))
    return trials


# ---------------------------------------------------------------------- resources
def trial_cpus(cfg: Config, node_cpus: int, default: int = 1) -> int:
    """CPUs a trial reserves: as many as its threads use, at least ``default``.

    Its threads are ``train.threads`` (torch) and, on Aer, ``backend.threads``, where Aer's
    0 (all cores) reserves a whole node: ``node_cpus``, the largest node's CPU count. Torch
    with ``train.threads = 0`` (its default) runs on the CPUs the trial reserved.

    >>> from qepi.config import Config, update
    >>> aer = update(Config(), backend={"name": "aer", "threads": 3})
    >>> trial_cpus(aer, node_cpus=8), trial_cpus(update(aer, backend={"threads": 0}), node_cpus=8)
    (3, 8)
    >>> trial_cpus(Config(), node_cpus=8), trial_cpus(update(Config(), train={"threads": 2}), node_cpus=8)
    (1, 2)
    """
    if not 1 <= default <= node_cpus:
        raise UserError(f"--cpus-per-trial: must be between 1 and the largest Ray node's "
                        f"{node_cpus} CPUs, got {default}")
    threads = {"train.threads": cfg.train.threads}
    if cfg.backend.name == "aer":
        threads["backend.threads"] = cfg.backend.threads or node_cpus
    for key, need in threads.items():
        if need > node_cpus:
            raise UserError(f"{key} = {need}: a trial cannot reserve more CPUs than the largest "
                            f"Ray node has ({node_cpus})")
    return max(default, *threads.values())


@contextmanager
def ray_session(address: str | None = None) -> Iterator[Any]:
    """Yield the ``ray`` module connected to a cluster (``address``, e.g. ``"auto"`` or
    ``"10.0.0.5:6379"``) or to a new local instance sized to this machine's cores; an
    already initialised Ray is used as it is. Only an instance started here is shut down."""
    ray = import_ray()
    if ray.is_initialized():
        yield ray
        return
    try:
        if address:
            ray.init(address=address, log_to_driver=False, logging_level=logging.WARNING)
        else:
            ray.init(address="local", num_cpus=os.cpu_count(), include_dashboard=False,
                     log_to_driver=False, logging_level=logging.ERROR)
    except ConnectionError as err:
        raise UserError(f"--address {address}: cannot connect to a Ray cluster ({err}); check the "
                        f"address, and for a cluster with token authentication set "
                        f"RAY_AUTH_MODE=token with its token in ~/.ray/auth_token") from None
    try:
        yield ray
    finally:
        ray.shutdown()


def largest_node_cpus(ray) -> int:
    """CPU count of the largest live node of the connected Ray cluster."""
    return int(max(n["Resources"].get("CPU", 0) for n in ray.nodes() if n["Alive"]))


def use_assigned_cpus(ray) -> int:
    """Inside a Ray task or actor: set torch's threads to the CPUs Ray assigned (the trainer
    then applies ``train.threads`` when it is > 0); returns them."""
    import torch

    cpus = max(1, int(ray.get_runtime_context().get_assigned_resources().get("CPU", 1)))
    torch.set_num_threads(cpus)
    return cpus


# ---------------------------------------------------------------------- one trial
def _saved_config(run_dir: Path) -> Config | None:
    return load(run_dir / "config.toml") if (run_dir / "config.toml").is_file() else None


def is_finished(cfg: Config, run_dir: str | Path) -> bool:
    """True when ``run_dir`` holds a finished run of ``cfg``; a run of another config there
    is an error (the directory belongs to a different sweep)."""
    run_dir = Path(run_dir)
    saved = _saved_config(run_dir)
    if saved is not None and saved != cfg:
        raise UserError(f"{run_dir}: holds a run of a different config; use another --out "
                        f"for a sweep of a changed config")
    return saved is not None and (run_dir / "summary.json").is_file()


def run_trial(cfg: Config, run_dir: str | Path, callbacks=()) -> dict[str, Any]:
    """Bring the trial in ``run_dir`` to its end from whatever state it was left in and
    return its summary: a finished run's saved summary, an interrupted run resumed from its
    checkpoint, or a fresh run. Safe to call again after any interruption."""
    run_dir = Path(run_dir)
    if is_finished(cfg, run_dir):
        return json.loads((run_dir / "summary.json").read_text())
    if _saved_config(run_dir) is not None and (run_dir / "checkpoint.pt").is_file():
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


def _check_points(trials: list[Trial], need_dev: bool = False) -> None:
    """Build every grid point's data and model once here, so a bad value fails before any
    trial starts (with a message naming the key)."""
    from qepi.data import load_dataset
    from qepi.models import HybridTransformer

    seen = set()
    for t in trials:
        key = point_label(t.point)
        if key in seen:
            continue
        seen.add(key)
        dataset = load_dataset(t.cfg.data, t.seed)
        dataset.check_not_empty()
        if need_dev and (dataset.dev is None or not len(dataset.dev)):
            raise UserError("data.n_dev: a Tune search selects on dev accuracy; give the task a "
                            "dev split")
        HybridTransformer(t.cfg, dataset.spec)


def _write_plan(out: Path, base: Config, grid: dict[str, list[Any]], trials: list[Trial]) -> None:
    if out.exists() and not out.is_dir():
        raise UserError(f"{out}: exists and is not a directory")
    if out.exists() and any(out.iterdir()):
        if not (out / PLAN).is_file():
            raise UserError(f"{out}: directory is not empty and is not a qepi sweep directory; "
                            f"choose another --out")
        if load(out / "config.toml") != base:
            raise UserError(f"{out}: holds a sweep of a different base config; choose another "
                            f"--out (or delete the directory to start over)")
    (out / "runs").mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "config.toml", to_toml(base))
    points: dict[str, dict[str, Any]] = {}
    for t in trials:
        label = point_label(t.point)
        entry = points.setdefault(label, {"point": t.point, "kind": model_kind(t.cfg), "trials": []})
        entry["trials"].append({"name": t.name, "seed": t.seed})
    plan = {"grid": grid, "seeds": sorted({t.seed for t in trials}), "points": list(points.values())}
    atomic_write_text(out / PLAN, json.dumps(plan, indent=2) + "\n")


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
    _check_points(trials)
    out = Path(out) if out is not None else default_sweep_dir(cfg)
    _write_plan(out, cfg, grid, trials)
    result = SweepResult(out.resolve(), {})
    todo = []
    for t in trials:
        (result.skipped if is_finished(t.cfg, out / "runs" / t.name) else todo).append(t)
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
            run_dir = str(result.out / "runs" / t.name)
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
                    if not (result.out / "runs" / t.name / "summary.json").is_file():
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
        by_seed = c["per_seed"]
        c_runs = dict(zip(by_seed["seed"], zip(by_seed["test_acc"], by_seed["test_loss"])))
        for q in members:
            if q["kind"] == "classical":
                continue
            pairs = [(qa, ql, *c_runs[s]) for s, qa, ql in
                     zip(q["per_seed"]["seed"], q["per_seed"]["test_acc"], q["per_seed"]["test_loss"])
                     if s in c_runs]
            columns = list(zip(*pairs)) or [(), (), (), ()]
            rows.append({
                "setting": setting, "quantum": _layer_label(q["point"]), "kind": q["kind"],
                "classical": _layer_label(c["point"]),
                "params": {"quantum": q["params"], "classical": c["params"]},
                "acc": paired_test(columns[0], columns[2]), "loss": paired_test(columns[1], columns[3]),
            })
    return rows


def aggregate(out: str | Path) -> dict[str, Any]:
    """Recompute the aggregate of a sweep directory from its plan and saved run summaries:
    one entry per grid point (mean ± 95% CI over the finished seeds of test accuracy, test
    loss and wall time; parameters), then the quantum-vs-classical comparisons."""
    out = Path(out)
    if not (out / PLAN).is_file():
        raise UserError(f"{out}: not a sweep directory (no {PLAN})")
    try:
        plan = json.loads((out / PLAN).read_text())
        plan_points, grid, seeds = plan["points"], plan["grid"], plan["seeds"]
    except (json.JSONDecodeError, KeyError, TypeError):
        raise UserError(f"{out / PLAN}: malformed sweep plan") from None
    points, missing = [], []
    for entry in plan_points:
        rows = []
        for trial in entry["trials"]:
            path = out / "runs" / trial["name"] / "summary.json"
            if path.is_file():
                rows.append(json.loads(path.read_text()))
            else:
                missing.append(trial["name"])
        column = lambda key: [r[key] for r in rows]  # noqa: E731
        points.append({
            "label": point_label(entry["point"]), "point": entry["point"], "kind": entry["kind"],
            "runs": column("name"), "test_acc": mean_ci(column("test_acc")),
            "test_loss": mean_ci(column("test_loss")), "wall_time_s": mean_ci(column("wall_time_s")),
            "params": rows[0]["params"] if rows else None,
            "per_seed": {k: column(k) for k in ("seed", "test_acc", "test_loss")},
        })
    base = load(out / "config.toml")
    return {"task": base.data.task, "grid": grid, "seeds": seeds, "config": to_dict(base),
            "points": points, "quantum_vs_classical": quantum_vs_classical(points),
            "missing": missing}


def _fmt(x: float | None, digits: int = 3) -> str:
    return "n/a" if x is None or math.isnan(x) else f"{x:.{digits}f}"


def _pm(stat: dict[str, float], digits: int = 3) -> str:
    if math.isnan(stat["mean"]):
        return "n/a"
    ci = "" if math.isnan(stat["ci"]) else f" ± {_fmt(stat['ci'], digits)}"
    return _fmt(stat["mean"], digits) + ci


def table_rows(agg: dict[str, Any]) -> list[list[str]]:
    """Header and one row per grid point: the grid values, model kind, test accuracy, test
    loss and wall time (mean ± 95% CI over seeds), parameters and finished seeds."""
    keys = list(agg["grid"])
    rows = [[*keys, "kind", "test acc", "test loss", "params", "wall s", "seeds"]]
    for p in agg["points"]:
        rows.append([*(_text(p["point"][k]) for k in keys), p["kind"], _pm(p["test_acc"]),
                     _pm(p["test_loss"]), "n/a" if p["params"] is None else str(p["params"]),
                     _pm(p["wall_time_s"], 1), f"{p['test_acc']['n']}/{len(agg['seeds'])}"])
    return rows


def comparison_lines(agg: dict[str, Any]) -> list[str]:
    """One sentence per quantum-vs-classical comparison."""
    lines = []
    for r in agg["quantum_vs_classical"]:
        where = f"At {r['setting']}: " if r["setting"] else ""
        if "note" in r:
            lines.append(f"{where}{r['note']}.")
            continue
        a = r["acc"]
        p = f"p = {_fmt(a['p'])}" if not math.isnan(a["p"]) else "no paired test"
        kind = "" if r["kind"] == "quantum" else f" ({r['kind']})"
        lines.append(f"{where}{r['quantum']}{kind} vs {r['classical']}: mean test accuracy "
                     f"difference {_fmt(a['diff'])} (95% CI ± {_fmt(a['ci'])}, {p}, n = {a['n']} "
                     f"seeds); {r['params']['quantum']} vs {r['params']['classical']} parameters.")
    return lines


def format_table(agg: dict[str, Any]) -> str:
    """The aggregate as a plain-text table with the comparisons below it (for stdout)."""
    rows = table_rows(agg)
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    n_keys = len(agg["grid"]) + 1
    line = lambda r: "  ".join(c.ljust(w) if i < n_keys else c.rjust(w)  # noqa: E731
                               for i, (c, w) in enumerate(zip(r, widths)))
    out = [f"{agg['task']}: {len(agg['points'])} grid point(s) x {len(agg['seeds'])} seed(s), "
           f"mean ± 95% CI", line(rows[0]), "  ".join("-" * w for w in widths)]
    out += [line(r) for r in rows[1:]]
    comparisons = comparison_lines(agg)
    if comparisons:
        out += ["", *comparisons]
    if agg["missing"]:
        out += ["", f"{len(agg['missing'])} trial(s) not finished: {', '.join(agg['missing'])}"]
    return "\n".join(out)


def _plot_accuracy(path: Path, agg: dict[str, Any]) -> None:
    from qepi.experiments.report import COLORS
    from qepi.plotting import subplots

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


def render_sweep_report(out: str | Path, agg: dict[str, Any]) -> Path:
    """Write ``sweep.json``, ``accuracy.png``, ``learning_curves.png`` and ``report.md`` in
    the sweep directory ``out``; returns the report's path."""
    from qepi.experiments.report import _md_table, plot_learning_curves, to_json

    out = Path(out)
    finished = [p for p in agg["points"] if p["runs"]]
    if finished:
        _plot_accuracy(out / "accuracy.png", agg)
        runs = {p["label"]: [out / "runs" / name for name in p["runs"]] for p in finished}
        plot_learning_curves(out / "learning_curves.png", runs, {k: k for k in runs})
    tr, b = agg["config"]["train"], agg["config"]["backend"]
    budget = (f"{tr['epochs']} epochs" if tr["epochs"]
              else f"epochs sized from the data (train.epochs = 0, at least {tr['min_steps']} steps)")
    grid = [f"- `{k}`: {', '.join(f'`{_text(v)}`' for v in values)}" for k, values in agg["grid"].items()]
    lines = [
        f"# Sweep: {agg['task']}", "",
        f"{len(agg['points'])} grid point(s) × seeds {agg['seeds']}; base budget {budget}, "
        f"batch {tr['batch_size']}, {tr['optimizer']} lr {tr['lr']}, backend {b['name']}. "
        f"Base config: `config.toml`; one run directory per trial under `runs/`.", "",
        "## Grid", "", *(grid or ["(no grid keys: the base config over seeds)"]), "",
        "## Results (mean ± 95% CI over seeds, Student t)", "",
        _md_table(table_rows(agg)), "",
    ]
    comparisons = comparison_lines(agg)
    if comparisons:
        lines += ["## Quantum vs classical (paired over seeds)", "", *[f"- {c}" for c in comparisons], ""]
    if agg["missing"]:
        lines += ["## Unfinished trials", "", "Start the sweep again to finish them:", "",
                  *[f"- `{name}`" for name in agg["missing"]], ""]
    if finished:
        lines += ["## Plots", "", "![test accuracy per grid point](accuracy.png)", "",
                  "![learning curves](learning_curves.png)", ""]
    atomic_write_text(out / "sweep.json", to_json(agg) + "\n")
    atomic_write_text(out / "report.md", "\n".join(lines))
    return out / "report.md"


# ---------------------------------------------------------------------- the command
def command(args: argparse.Namespace) -> int:
    """``qepi sweep CONFIG --grid key=v1,v2 ... --seeds N [--address ADDR] [--tune asha|pbt]``."""
    from qepi.experiments.report import to_json

    cfg = apply_overrides(load(args.config), args.overrides)
    grid = parse_grid(args.grid, cfg)
    if args.tune:
        from qepi.experiments.tune import format_search, search

        if args.seeds != 1:
            raise UserError("--seeds: a Tune search trains every sample at run.seed; sweep the "
                            "best config over seeds afterwards")
        found = search(cfg, grid, args.tune, samples=args.samples, out=args.out, address=args.address,
                       cpus_per_trial=args.cpus_per_trial, retries=args.retries,
                       progress=not (args.quiet or args.json))
        print(to_json(found) if args.json else format_search(found))
        return 0
    result = sweep(cfg, grid, args.seeds, args.out, address=args.address,
                   cpus_per_trial=args.cpus_per_trial, retries=args.retries,
                   progress=not (args.quiet or args.json))
    if args.json:
        print(to_json(result.aggregate))
    else:
        print(format_table(result.aggregate))
        print(f"\nreport: {result.out / 'report.md'}")
    if result.failed:
        name, error = next(iter(result.failed.items()))
        raise UserError(f"{len(result.failed)} trial(s) failed (first: {name}: {error}); finished "
                        f"trials are kept: fix the cause and start the sweep again")
    return 0
