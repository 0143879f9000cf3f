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

from qepi.config import Config, load, to_dict, to_toml, update
from qepi.data import load_dataset
from qepi.errors import UserError
from qepi.experiments.baselines import (reference_names, reference_verdict, run_references,
                                        summarize_references)
from qepi.experiments.report import render_compare_report
from qepi.experiments.rundir import COMPARE_MANIFEST, COMPARISON_DIR, CONFIG, fresh_dir, read_summary
from qepi.experiments.runner import model_kind, run
from qepi.experiments.stats import over_seeds, paired_by_seed
from qepi.experiments.tables import fmt
from qepi.training import atomic_write_text

VARIANTS = ("quantum", "classical", "no_entanglement")
LABELS = {"quantum": "quantum", "classical": "classical twin",
          "no_entanglement": "no-entanglement control"}
SUMMARY_KEYS = ("name", "params", "test_acc", "test_loss", "circuits", "shots", "wall_time_s", "seed",
                "chance_acc")


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
    if seeds is not None and seeds < 1:
        raise UserError(f"--seeds: must be >= 1, got {seeds}")
    configs = variant_configs(cfg)
    dataset = load_dataset(cfg.data, cfg.run.seed)
    dataset.check_not_empty()  # bad data fails before writing
    seeds = default_seeds(len(dataset.train)) if seeds is None else seeds
    out = Path(out) if out is not None else default_compare_dir(cfg)
    seed_list = [cfg.run.seed + i for i in range(seeds)]
    names = reference_names(dataset) if references else ()
    with fresh_dir(out, COMPARISON_DIR, overwrite):
        atomic_write_text(out / CONFIG, to_toml(cfg))
        manifest = {"seeds": seed_list, "runs": {v: [f"{v}-s{s}" for s in seed_list] for v in VARIANTS},
                    "references": {r: [f"{r}-s{s}" for s in seed_list] for r in names}}
        atomic_write_text(out / COMPARE_MANIFEST, json.dumps(manifest, indent=2) + "\n")
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


def _p_text(test: dict[str, float]) -> str:
    return f"paired t-test p = {fmt(test['p'])}, n = {test['n']}" if not math.isnan(test["p"]) \
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
        lines.append(f"**The classical twin wins**: mean test accuracy {fmt(ca)} against "
                     f"{fmt(qa)} for the quantum model, with {cp} parameters against {qp} "
                     f"({_p_text(tc)}).")
    elif ca == qa:
        lines.append(f"The quantum model and its classical twin tie at {fmt(qa)} mean test accuracy.")
    else:
        strength = "" if significant(tc) else " The difference is not significant at the 5% level."
        lines.append(f"The quantum model scores higher than its classical twin: {fmt(qa)} against {fmt(ca)} "
                     f"mean test accuracy ({qp} vs {cp} parameters; {_p_text(tc)}).{strength}")
    if na >= qa:
        lines.append(f"Entanglement does not help here: the no-entanglement control reaches "
                     f"{fmt(na)} against {fmt(qa)} with entanglement ({_p_text(tn)}).")
    else:
        strength = "" if significant(tn) else " The difference is not significant at the 5% level."
        lines.append(f"Removing every entangling gate lowers mean test accuracy from {fmt(qa)} to "
                     f"{fmt(na)} ({_p_text(tn)}).{strength}")
    lines.append(f"Chance (always the majority class) is {fmt(chance)}; the quantum model is "
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
    out = Path(out)
    manifest_path = out / COMPARE_MANIFEST
    if not manifest_path.is_file():
        raise UserError(f"{out}: not a comparison directory (no {COMPARE_MANIFEST})")
    try:
        manifest = json.loads(manifest_path.read_text())
        runs = {v: manifest["runs"][v] for v in VARIANTS}
    except (json.JSONDecodeError, KeyError, TypeError):
        raise UserError(f"{manifest_path}: malformed comparison manifest") from None
    summaries = {variant: [read_summary(out / name, SUMMARY_KEYS) for name in names]
                 for variant, names in runs.items()}
    models = {}
    for variant, rows in summaries.items():
        seeds = over_seeds(rows)
        models[variant] = {
            "label": LABELS[variant], "runs": seeds["runs"],
            "test_acc": seeds["test_acc"], "test_loss": seeds["test_loss"], "params": seeds["params"],
            "circuits": seeds["circuits"], "shots": seeds["shots"],
            "wall_time_s": seeds["wall_time_s"]["mean"], "per_seed": seeds["per_seed"],
        }
    q = summaries["quantum"]
    tests = {other: paired_by_seed(models["quantum"]["per_seed"], models[other]["per_seed"])
             for other in ("classical", "no_entanglement")}
    chance = sum(r["chance_acc"] for r in q) / len(q)
    cfg = load(out / CONFIG)
    comparison = {
        "task": cfg.data.task, "seeds": manifest["seeds"], "config": to_dict(cfg),
        "chance_acc": chance, "n_train": q[0].get("n_train", cfg.data.n_train), "models": models, "tests": tests,
        "verdict": verdict(models, tests, chance), "dev": q[0].get("dev", ""),
        "budget": q[0].get("budget", ""),
        "selection": [r.get("selection", "") for r in q],
    }
    if manifest.get("references"):
        comparison["references"] = summarize_references(out, manifest["references"],
                                                        [r["test_acc"] for r in q])
        comparison["verdict"].append(reference_verdict(models["quantum"]["test_acc"],
                                                       comparison["references"]))
    return comparison
