"""Reports of runs, comparisons and sweeps: Markdown with plots, and the tables printed on
stdout. Everything is rendered from a directory's saved files and aggregates only, so
``qepi report DIR`` can draw them again at any time.

The drivers call these at their end (:func:`qepi.experiments.run`,
:func:`qepi.experiments.compare`, :func:`qepi.experiments.sweep.sweep`); nothing here runs
an experiment.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from qepi.experiments.baselines import reference_markdown, reference_rows, selection_markdown
from qepi.experiments.plots import plot_accuracy_vs_params, plot_grid_accuracy, plot_learning_curves
from qepi.experiments.rundir import (
    ACCURACY_VS_PARAMS,
    COMPARISON,
    CONFIG,
    LEARNING_CURVES,
    REPORT,
    SWEEP,
    SWEEP_ACCURACY,
    TRIALS,
    read_summary,
)
from qepi.experiments.tables import fmt, md_table, num, pm, text_table, to_json, value_text
from qepi.training import atomic_write_text


# ---------------------------------------------------------------------- one run
def render_run_report(run_dir: str | Path) -> Path:
    """Write ``report.md`` and ``learning_curves.png`` of one finished run."""
    run_dir = Path(run_dir)
    s = read_summary(run_dir)
    plot_learning_curves(run_dir / LEARNING_CURVES, {s["kind"]: [run_dir]}, {s["kind"]: s["kind"]})
    rows = [["test acc", "test loss", "best dev acc", "chance", "params", "steps", "circuits",
             "shots", "wall s"],
            [fmt(s["test_acc"]), fmt(s["test_loss"]), fmt(s["best_dev_acc"]), fmt(s["chance_acc"]),
             str(s["params"]), str(s["steps"]), str(s["circuits"]), str(s["shots"]),
             fmt(s["wall_time_s"], 1)]]
    notes = []
    if "mitigation_circuits" in s:
        notes.append(f"Error mitigation: {s['mitigation_circuits']} of the circuits and "
                     f"{s['mitigation_shots']} of the shots were its overhead (readout "
                     f"calibration, folded circuits).")
    if s.get("warm_start"):
        notes.append(f"Warm-started from `{s['warm_start']}`.")
    if s.get("selection"):
        notes += [f"Dev split: {s['dev'] or 'none'}.", f"Budget: {s['budget']}.",
                  f"Model selection (on dev, never on test): {s['selection']}."]
    elif s.get("stopped_early"):
        notes.append("Stopped early on dev accuracy; the weights are those of the best dev epoch.")
    text = "\n".join([f"# Run {s['name']}", "",
                      f"{s['kind']} model on `{s['task']}`, seed {s['seed']}, backend {s['backend']}.",
                      "", md_table(rows), "", *(f"{n}\n" for n in notes),
                      f"![learning curves]({LEARNING_CURVES})", ""])
    atomic_write_text(run_dir / REPORT, text)
    return run_dir / REPORT


# ---------------------------------------------------------------------- a comparison
def table_rows(comparison: dict[str, Any]) -> list[list[str]]:
    """Header and one row per model: accuracy and loss (mean ± 95% CI), the per-seed range of
    accuracy, params, circuits, shots and wall time (means per run)."""
    rows = [["model", "test acc", "per-seed min–max", "test loss", "params", "circuits", "shots",
             "wall s"]]
    for m in comparison["models"].values():
        per_seed = m["per_seed"]["test_acc"]
        rows.append([m["label"], pm(m["test_acc"]), f"{min(per_seed):.3f}–{max(per_seed):.3f}",
                     pm(m["test_loss"]), str(m["params"]), f"{m['circuits']:.0f}",
                     f"{m['shots']:.0f}", fmt(m["wall_time_s"], 1)])
    return rows


def format_table(comparison: dict[str, Any]) -> str:
    """The comparison as a plain-text table with the verdict below it (for stdout)."""
    n = len(comparison["seeds"])
    out = [f"{comparison['task']}: {n} seed(s), mean ± 95% CI", *text_table(table_rows(comparison))]
    references = reference_rows(comparison)
    if references:
        out += ["", "classical references (not parameter-matched): test acc, per-seed min–max, "
                    "quantum minus reference (paired test)"]
        width = max(len(r[0]) for r in references)
        out += [f"{r[0].ljust(width)}  {r[1]}  {r[4]}  {r[6]}" for r in references]
    out += [""] + [v.replace("**", "") for v in comparison["verdict"]]
    return "\n".join(out)


def render_compare_report(out: str | Path, comparison: dict[str, Any]) -> Path:
    """Write ``comparison.json``, ``learning_curves.png``, ``accuracy_vs_params.png`` and
    ``report.md`` in the comparison directory ``out``; returns the report's path."""
    out = Path(out)
    runs = {v: [out / name for name in m["runs"]] for v, m in comparison["models"].items()}
    plot_learning_curves(out / LEARNING_CURVES, runs,
                         {v: m["label"] for v, m in comparison["models"].items()})
    plot_accuracy_vs_params(out / ACCURACY_VS_PARAMS, comparison)
    cfg = comparison["config"]
    tests = [["quantum vs", "metric", "mean difference", "95% CI", "t", "p"]]
    for other, by_metric in comparison["tests"].items():
        for metric, t in by_metric.items():
            tests.append([comparison["models"][other]["label"], f"test {metric}", num(t["diff"]),
                          num(t["ci"]), num(t["t"]), num(t["p"])])
    c, m, tr, b = cfg["circuit"], cfg["model"], cfg["train"], cfg["backend"]
    shots = f" ({b['shots']} shots)" if b["shots"] else ""
    text = "\n".join([
        f"# Comparison: {comparison['task']}",
        "",
        f"Seeds {comparison['seeds']}; every model trained on the same data split per seed with the "
        f"same budget ({comparison.get('budget') or str(tr['epochs']) + ' epochs'}, batch {tr['batch_size']}, "
        f"{tr['optimizer']} lr {tr['lr']}, "
        f"{comparison['n_train']} training examples). Quantum layers: embedding={m['embedding']}, "
        f"attention={m['attention']}; {c['n_qubits']} qubits, {c['n_layers']} layer(s) of "
        f"{c['ansatz']} with {c['encoding']} encoding on {b['name']}"
        f"{shots}.",
        "",
        "## Verdict",
        "",
        *[f"- {v}" for v in comparison["verdict"]],
        "",
        "## Results (mean ± 95% CI over seeds, Student t)",
        "",
        md_table(table_rows(comparison)),
        "",
        "Circuits, shots and wall time are means per run (training and evaluation).",
        "",
        "## Paired tests over seeds",
        "",
        md_table(tests),
        "",
        reference_markdown(comparison),
        selection_markdown(comparison),
        "## Plots",
        "",
        f"![learning curves]({LEARNING_CURVES})",
        "",
        f"![accuracy against parameter count]({ACCURACY_VS_PARAMS})",
        "",
    ])
    atomic_write_text(out / COMPARISON, to_json(comparison) + "\n")
    atomic_write_text(out / REPORT, text)
    return out / REPORT


# ---------------------------------------------------------------------- a sweep
def sweep_table_rows(agg: dict[str, Any]) -> list[list[str]]:
    """Header and one row per grid point: the grid values, model kind, test accuracy, test
    loss and wall time (mean ± 95% CI over seeds), parameters and finished seeds."""
    keys = list(agg["grid"])
    rows = [[*keys, "kind", "test acc", "test loss", "params", "wall s", "seeds"]]
    for p in agg["points"]:
        rows.append([*(value_text(p["point"][k]) for k in keys), p["kind"], pm(p["test_acc"]),
                     pm(p["test_loss"]), "n/a" if p["params"] is None else str(p["params"]),
                     pm(p["wall_time_s"], 1), f"{p['test_acc']['n']}/{len(agg['seeds'])}"])
    return rows


def comparison_lines(agg: dict[str, Any]) -> list[str]:
    """One sentence per quantum-vs-classical comparison of a sweep."""
    lines = []
    for r in agg["quantum_vs_classical"]:
        where = f"At {r['setting']}: " if r["setting"] else ""
        if "note" in r:
            lines.append(f"{where}{r['note']}.")
            continue
        a = r["acc"]
        p = f"p = {fmt(a['p'])}" if not math.isnan(a["p"]) else "no paired test"
        kind = "" if r["kind"] == "quantum" else f" ({r['kind']})"
        lines.append(f"{where}{r['quantum']}{kind} vs {r['classical']}: mean test accuracy "
                     f"difference {fmt(a['diff'])} (95% CI ± {fmt(a['ci'])}, {p}, n = {a['n']} "
                     f"seeds); {r['params']['quantum']} vs {r['params']['classical']} parameters.")
    return lines


def format_sweep(agg: dict[str, Any]) -> str:
    """The sweep's aggregate as a plain-text table with the comparisons below it (for stdout)."""
    out = [f"{agg['task']}: {len(agg['points'])} grid point(s) x {len(agg['seeds'])} seed(s), "
           f"mean ± 95% CI", *text_table(sweep_table_rows(agg), left=len(agg["grid"]) + 1)]
    comparisons = comparison_lines(agg)
    if comparisons:
        out += ["", *comparisons]
    if agg["missing"]:
        out += ["", f"{len(agg['missing'])} trial(s) not finished: {', '.join(agg['missing'])}"]
    return "\n".join(out)


def render_sweep_report(out: str | Path, agg: dict[str, Any]) -> Path:
    """Write ``sweep.json``, ``accuracy.png``, ``learning_curves.png`` and ``report.md`` in
    the sweep directory ``out``; returns the report's path."""
    out = Path(out)
    finished = [p for p in agg["points"] if p["runs"]]
    if finished:
        plot_grid_accuracy(out / SWEEP_ACCURACY, agg)
        runs = {p["label"]: [out / TRIALS / name for name in p["runs"]] for p in finished}
        plot_learning_curves(out / LEARNING_CURVES, runs, {k: k for k in runs})
    tr, b = agg["config"]["train"], agg["config"]["backend"]
    budget = (f"{tr['epochs']} epochs" if tr["epochs"]
              else f"epochs sized from the data (train.epochs = 0, at least {tr['min_steps']} steps)")
    grid = [f"- `{k}`: {', '.join(f'`{value_text(v)}`' for v in values)}" for k, values in agg["grid"].items()]
    lines = [
        f"# Sweep: {agg['task']}", "",
        f"{len(agg['points'])} grid point(s) × seeds {agg['seeds']}; base budget {budget}, "
        f"batch {tr['batch_size']}, {tr['optimizer']} lr {tr['lr']}, backend {b['name']}. "
        f"Base config: `{CONFIG}`; one run directory per trial under `{TRIALS}/`.", "",
        "## Grid", "", *(grid or ["(no grid keys: the base config over seeds)"]), "",
        "## Results (mean ± 95% CI over seeds, Student t)", "",
        md_table(sweep_table_rows(agg)), "",
    ]
    comparisons = comparison_lines(agg)
    if comparisons:
        lines += ["## Quantum vs classical (paired over seeds)", "", *[f"- {c}" for c in comparisons], ""]
    if agg["missing"]:
        lines += ["## Unfinished trials", "", "Start the sweep again to finish them:", "",
                  *[f"- `{name}`" for name in agg["missing"]], ""]
    if finished:
        lines += ["## Plots", "", f"![test accuracy per grid point]({SWEEP_ACCURACY})", "",
                  f"![learning curves]({LEARNING_CURVES})", ""]
    atomic_write_text(out / SWEEP, to_json(agg) + "\n")
    atomic_write_text(out / REPORT, "\n".join(lines))
    return out / REPORT


__all__ = ["comparison_lines", "format_sweep", "format_table", "render_compare_report",
           "render_run_report", "render_sweep_report", "sweep_table_rows", "table_rows"]
