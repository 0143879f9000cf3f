"""Quantum model vs its classical twin vs the no-entanglement control, over seeds.

For every seed the three models train on the same data split (the seed fixes the data),
with the same budget. A comparison directory holds ``config.toml`` (the base config),
``compare.json`` (seeds and run names, written first), one run directory per model and
seed (``quantum-s0``, ``classical-s0``, ``no_entanglement-s0``, ...), then
``comparison.json``, ``report.md`` and the plots. Beside them, strong classical references
(:mod:`qepi.experiments.baselines`, not parameter-matched) run on the same splits and seeds
(``lr_bigram-s0``, ``transformer-s0``, ...).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from qepi.config import Config, to_dict, to_toml, update
from qepi.data import load_dataset
from qepi.errors import UserError
from qepi.experiments.runner import model_kind, new_run_dir, run
from qepi.experiments.stats import mean_ci, paired_test
from qepi.training import atomic_write_text

VARIANTS = ("quantum", "classical", "no_entanglement")
LABELS = {"quantum": "quantum", "classical": "classical twin",
          "no_entanglement": "no-entanglement control"}
MANIFEST = "compare.json"


def variant_configs(cfg: Config) -> dict[str, Config]:
    """The quantum config, its classical twin (every quantum layer made classical) and the
    no-entanglement control (the same circuits without entangling gates).

    >>> from qepi.config import Config
    >>> v = variant_configs(Config())
    >>> v["classical"].model.attention, v["no_entanglement"].circuit.entangling
    ('classical', False)
    """
    if model_kind(cfg) != "quantum":
        raise UserError("compare needs a quantum model with entanglement: set model.embedding "
                        "or model.attention to 'quantum' and circuit.entangling = true")
    return {
        "quantum": cfg,
        "classical": update(cfg, model={"embedding": "classical", "attention": "classical"}),
        "no_entanglement": update(cfg, circuit={"entangling": False}),
    }


def default_compare_dir(cfg: Config) -> Path:
    """``<run.out_dir>/compare-<run.name or task>``."""
    return Path(cfg.run.out_dir) / f"compare-{cfg.run.name or cfg.data.task}"


def default_seeds(n_train: int) -> int:
    """Seeds ``qepi compare`` runs unless told: 10 below 200 training examples (small test
    sets make single runs noisy), 5 below 2000, else 3.

    >>> default_seeds(59), default_seeds(800), default_seeds(5000)
    (10, 5, 3)
    """
    return 10 if n_train < 200 else 5 if n_train < 2000 else 3


def compare(cfg: Config, seeds: int | None = None, out: str | Path | None = None, *,
            overwrite: bool = False, progress: bool = True, callbacks=(),
            references: bool = True) -> dict[str, Any]:
    """Train the three models for seeds ``run.seed, run.seed + 1, ...`` (``seeds`` None: as
    many as :func:`default_seeds` says for the training-set size) and, with ``references``,
    the classical references; write and return the comparison (see :func:`summarize`)."""
    from qepi.experiments.baselines import reference_names, run_references
    from qepi.experiments.report import render_compare_report

    if seeds is not None and seeds < 1:
        raise UserError(f"--seeds: must be >= 1, got {seeds}")
    configs = variant_configs(cfg)
    dataset = load_dataset(cfg.data, cfg.run.seed)
    dataset.check_not_empty()  # bad data fails before writing
    seeds = default_seeds(len(dataset.train)) if seeds is None else seeds
    out = Path(out) if out is not None else default_compare_dir(cfg)
    seed_list = [cfg.run.seed + i for i in range(seeds)]
    names = reference_names(dataset) if references else ()
    with new_run_dir(out, MANIFEST, overwrite, what="comparison"):
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out / "config.toml", to_toml(cfg))
        manifest = {"seeds": seed_list, "runs": {v: [f"{v}-s{s}" for s in seed_list] for v in VARIANTS},
                    "references": {r: [f"{r}-s{s}" for s in seed_list] for r in names}}
        atomic_write_text(out / MANIFEST, json.dumps(manifest, indent=2) + "\n")
        for seed in seed_list:
            for variant in VARIANTS:
                name = f"{variant}-s{seed}"
                run(update(configs[variant], run={"seed": seed, "name": name}), out / name,
                    progress=progress, report=False, callbacks=callbacks)
            if names:
                run_references(update(cfg, run={"seed": seed}), out)
        comparison = summarize(out)
        render_compare_report(out, comparison)
    return comparison


def _fmt(x: float, digits: int = 3) -> str:
    return "n/a" if x is None or math.isnan(x) else f"{x:.{digits}f}"


def _p_text(test: dict[str, float]) -> str:
    return f"paired t-test p = {_fmt(test['p'])}, n = {test['n']}" if not math.isnan(test["p"]) \
        else f"{test['note']}, n = {test['n']}"


def verdict(models: dict[str, Any], tests: dict[str, Any], chance: float) -> list[str]:
    """Plain sentences on who won; the classical twin's win is stated first when it happens."""
    qa = models["quantum"]["test_acc"]["mean"]
    ca = models["classical"]["test_acc"]["mean"]
    na = models["no_entanglement"]["test_acc"]["mean"]
    qp, cp = models["quantum"]["params"], models["classical"]["params"]
    tc, tn = tests["classical"]["acc"], tests["no_entanglement"]["acc"]
    significant = lambda t: not math.isnan(t["p"]) and t["p"] < 0.05  # noqa: E731
    lines = []
    if ca > qa:
        lines.append(f"**The classical twin wins**: mean test accuracy {_fmt(ca)} against "
                     f"{_fmt(qa)} for the quantum model, with {cp} parameters against {qp} "
                     f"({_p_text(tc)}).")
    elif ca == qa:
        lines.append(f"The quantum model and its classical twin tie at {_fmt(qa)} mean test accuracy.")
    else:
        strength = "" if significant(tc) else " The difference is not significant at the 5% level."
        lines.append(f"The quantum model scores higher than its classical twin: {_fmt(qa)} against {_fmt(ca)} "
                     f"mean test accuracy ({qp} vs {cp} parameters; {_p_text(tc)}).{strength}")
    if na >= qa:
        lines.append(f"Entanglement does not help here: the no-entanglement control reaches "
                     f"{_fmt(na)} against {_fmt(qa)} with entanglement ({_p_text(tn)}).")
    else:
        strength = "" if significant(tn) else " The difference is not significant at the 5% level."
        lines.append(f"Removing every entangling gate lowers mean test accuracy from {_fmt(qa)} to "
                     f"{_fmt(na)} ({_p_text(tn)}).{strength}")
    lines.append(f"Chance (always the majority class) is {_fmt(chance)}; the quantum model is "
                 f"{'above' if qa > chance else 'not above'} it.")
    n = tc["n"]
    if n < 2:
        lines.append("With one seed there is no paired test; run `--seeds 5` or more.")
    elif n < 5:
        lines.append(f"With only {n} seeds the paired t-test has little power: treat the "
                     f"p-values as rough and run more seeds before drawing conclusions.")
    return lines


def summarize(out: str | Path) -> dict[str, Any]:
    """Recompute the comparison from the saved run summaries of a comparison directory."""
    from qepi.config import load

    out = Path(out)
    manifest_path = out / MANIFEST
    if not manifest_path.is_file():
        raise UserError(f"{out}: not a comparison directory (no {MANIFEST})")
    try:
        manifest = json.loads(manifest_path.read_text())
        runs = {v: manifest["runs"][v] for v in VARIANTS}
    except (json.JSONDecodeError, KeyError, TypeError):
        raise UserError(f"{manifest_path}: malformed comparison manifest") from None
    summaries: dict[str, list[dict[str, Any]]] = {}
    for variant, names in runs.items():
        summaries[variant] = []
        for name in names:
            path = out / name / "summary.json"
            if not path.is_file():
                raise UserError(f"{out / name}: run did not finish (no summary.json)")
            try:
                summary = json.loads(path.read_text())
                missing = {"name", "params", "test_acc", "test_loss", "circuits", "shots",
                           "wall_time_s", "seed", "chance_acc"} - set(summary)
            except (json.JSONDecodeError, TypeError):
                missing = {"valid JSON"}
            if missing:
                raise UserError(f"{path}: malformed run summary (missing {', '.join(sorted(missing))})")
            summaries[variant].append(summary)
    models = {}
    for variant, rows in summaries.items():
        column = lambda key: [r[key] for r in rows]  # noqa: E731
        models[variant] = {
            "label": LABELS[variant],
            "runs": [r["name"] for r in rows],
            "test_acc": mean_ci(column("test_acc")),
            "test_loss": mean_ci(column("test_loss")),
            "params": rows[0]["params"],
            "circuits": sum(column("circuits")) / len(rows),
            "shots": sum(column("shots")) / len(rows),
            "wall_time_s": sum(column("wall_time_s")) / len(rows),
            "per_seed": {k: column(k) for k in ("seed", "test_acc", "test_loss")},
        }
    q = summaries["quantum"]
    tests = {
        other: {key: paired_test([r[f"test_{key}"] for r in q],
                                 [r[f"test_{key}"] for r in summaries[other]])
                for key in ("acc", "loss")}
        for other in ("classical", "no_entanglement")
    }
    chance = sum(r["chance_acc"] for r in q) / len(q)
    cfg = load(out / "config.toml")
    comparison = {
        "task": cfg.data.task, "seeds": manifest["seeds"], "config": to_dict(cfg),
        "chance_acc": chance, "n_train": q[0].get("n_train", cfg.data.n_train), "models": models, "tests": tests,
        "verdict": verdict(models, tests, chance), "dev": q[0].get("dev", ""),
        "budget": q[0].get("budget", ""),
        "selection": [r.get("selection", "") for r in q],
    }
    if manifest.get("references"):
        from qepi.experiments.baselines import reference_verdict, summarize_references

        comparison["references"] = summarize_references(out, manifest["references"],
                                                        [r["test_acc"] for r in q])
        comparison["verdict"].append(reference_verdict(models["quantum"]["test_acc"],
                                                       comparison["references"]))
    return comparison
