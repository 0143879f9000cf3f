"""Grids of config values: ``--grid key=v1,v2`` parsed and typed, trials named and planned.

A *grid point* assigns one value to every grid key; a *trial* is a grid point at one seed,
with its resolved config and a stable directory name. Sweeps (:mod:`qepi.experiments.sweep`)
train every trial; Tune searches (:mod:`qepi.experiments.tune`) sample from the grid.

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

import hashlib
import itertools
import json
import re
from dataclasses import dataclass
from typing import Any

from qepi.config import Config, apply_overrides, update
from qepi.data import load_dataset
from qepi.errors import UserError
from qepi.experiments.tables import value_text
from qepi.models import HybridTransformer

RESERVED_KEYS = {"run.seed": "vary seeds with --seeds", "run.name": "trials are named by the sweep",
                 "run.out_dir": "set the sweep directory with --out"}


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


def override(key: str, value: Any) -> str:
    """A ``key=value`` override that gives ``key`` exactly ``value``.

    >>> override("data.classes", [3, 8]), override("model.embedding", "classical")
    ('data.classes=[3, 8]', 'model.embedding="classical"')
    """
    return f"{key}={json.dumps(value)}"


def point_label(point: dict[str, Any], sep: str = ", ") -> str:
    """``key=value`` pairs of a grid point; ``base`` for the empty point.

    >>> point_label({"model.embedding": "classical", "train.lr": 0.05})
    'model.embedding=classical, train.lr=0.05'
    """
    return sep.join(f"{k}={value_text(v)}" for k, v in point.items()) or "base"


def trial_name(point: dict[str, Any], seed: int) -> str:
    """A stable directory name for (grid point, seed): readable ``key=value`` pairs; a value
    with characters other than letters, digits and ``._+-`` is cleaned and tagged with a
    short hash of the point, so distinct points never share a name.

    >>> trial_name({"model.embedding": "classical", "train.lr": 0.05}, 1)
    'model.embedding=classical,train.lr=0.05,seed=1'
    >>> trial_name({"data.classes": [3, 8]}, 0)
    'data.classes=3_8~bafa3f,seed=0'
    """
    label = ",".join(f"{k}={value_text(v)}" for k, v in point.items())
    clean = ",".join(f"{k}={re.sub(r'[^A-Za-z0-9._+-]+', '_', value_text(v)).strip('_')}"
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
            cfg = apply_overrides(base, [override(k, v) for k, v in point.items()])
            name = trial_name(point, seed)
            trials.append(Trial(name, point, seed, update(cfg, run={"seed": seed, "name": name})))
    return trials


def check_points(trials: list[Trial], need_dev: bool = False) -> None:
    """Build every grid point's data and model once here, so a bad value fails before any
    trial starts (with a message naming the key)."""
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


__all__ = ["RESERVED_KEYS", "Trial", "check_points", "override", "parse_grid", "plan_trials",
           "point_label", "trial_name"]
