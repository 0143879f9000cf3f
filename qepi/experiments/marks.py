"""Epigenetic experiments: reversible task marks (two timescales) and the expression benchmark.

**Task marks** (:func:`marks_experiment`, ``qepi marks``). The slow timescale trains the
whole model (the genome) on task A. The fast one freezes it and learns a named mark set
per new task (B, then C): static logits (and offsets) per gate added to the transcription
factors, the only trainable parameters. Both mark sets stay in the one model and are
switched by name at inference. Against them stand full fine-tuning of the A model on B and
training on B from scratch, with the same budget. The report gives every method's
accuracy on A, B and C and its trainable-parameter count, and checks that switching the
marks off and erasing them give the A model back bit for bit.

Tasks B and C are task A's ``data`` section with ``task_b`` overrides applied, generated
with seeds ``run.seed + 1`` and ``+ 2``: for ``motif`` that alone gives new PWMs (other
transcription factors' binding sites on the same kind of sequences).

**Expression benchmark** (:func:`expression_bench`, ``qepi bench aer --expression 1 0.2``).
One epigenetic layer with hard marks on the Aer engine, a fixed random subset of the
gates expressed: circuits and time of a parameter-shift step per expression ratio.

Example:
    >>> rows = expression_bench(qubits=2, layers=1, tokens=2, expressions=(1.0, 0.5), repeats=1)
    >>> [(r["expression"], r["expressed_angles"], r["circuits"]) for r in rows]  # 2 x (1 + 2 x angles)
    [(1.0, 6, 26), (0.5, 3, 14)]
"""

from __future__ import annotations

import copy
import json
import time
from pathlib import Path
from typing import Any

import torch

from qepi.config import Backend, Circuit, Config, Regulation, apply_overrides, to_toml
from qepi.data import load_dataset
from qepi.errors import UserError
from qepi.experiments.rundir import CONFIG, MARKS, MARKS_DIR, MARKS_PLAN, REPORT, fresh_dir
from qepi.experiments.tables import fmt, md_table
from qepi.layers.epigenetic import (
    EpigeneticMap,
    add_mark_set,
    erase_marks,
    freeze_genome,
    regulation_on,
    use_marks,
)
from qepi.layers.record import ForwardRecord
from qepi.models import HybridTransformer, count_parameters
from qepi.training import Trainer, atomic_write_text, evaluate, load_model, predict, seed_everything

MARK_SETS = ("B", "C")  # task name = mark set name; task A is the base model


def task_b_config(cfg: Config, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """The config of tasks B and C: ``cfg`` with ``overrides`` (``data.*`` keys only) applied."""
    for item in overrides:
        if not item.strip().startswith("data."):
            raise UserError(f"--task-b {item!r}: only data.* keys may differ between the tasks")
    return apply_overrides(cfg, list(overrides))


def _fit(model, cfg: Config, dataset, progress: bool) -> dict[str, Any]:
    summary = Trainer(model, cfg, dataset, progress=progress).fit()
    return {"steps": summary["steps"], "wall_time_s": summary["wall_time_s"]}


def _equal_states(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def default_marks_dir(cfg: Config) -> Path:
    """``<run.out_dir>/marks-<run.name or task>``."""
    return Path(cfg.run.out_dir) / f"marks-{cfg.run.name or cfg.data.task}"


def marks_experiment(cfg: Config, task_b: list[str] | tuple[str, ...] = (),
                     out: str | Path | None = None, progress: bool = True,
                     overwrite: bool = False) -> dict[str, Any]:
    """Train on task A; learn mark sets B and C (tasks B and C: data seeds ``run.seed + 1``
    and ``+ 2``) with the genome frozen, kept side by side and switched by name; compare
    with full fine-tuning and training from scratch on B. With ``out``, writes a marks
    directory (``marks-plan.json``, ``config.toml``, then ``marks.json`` and ``report.md``;
    an earlier one is replaced only with ``overwrite``). Returns the figures.

    Example:
        >>> from qepi.config import Config, update
        >>> cfg = update(Config(), model={"embedding": "classical", "attention": "classical"},
        ...              regulation={"embedding": "epigenetic"},
        ...              data={"task": "parity", "seq_len": 3, "n_train": 8, "n_dev": 0, "n_test": 8},
        ...              train={"epochs": 1, "batch_size": 8})
        >>> result = marks_experiment(cfg, progress=False)
        >>> result["checks"]
        {'marks_off_equals_base': True, 'erased_equals_base': True, 'state_restored': True}
        >>> [m["method"] for m in result["methods"]]  # doctest: +NORMALIZE_WHITESPACE
        ['base (trained on A)', 'mark set B (genome frozen)', 'mark set C (genome frozen)',
         'full fine-tuning on B', 'from scratch on B']
    """
    if not (cfg.regulation.embedding == "epigenetic" or cfg.regulation.attention == "epigenetic"):
        raise UserError("the marks experiment needs regulation.embedding or regulation.attention "
                        "= 'epigenetic'")
    cfg_b = task_b_config(cfg, task_b)
    seed = cfg.run.seed
    data = {"A": load_dataset(cfg.data, seed)}
    data.update({name: load_dataset(cfg_b.data, seed + i) for i, name in enumerate(MARK_SETS, 1)})
    if data["A"].spec != data["B"].spec:
        raise UserError(f"tasks A and B need the same input shape: {data['A'].spec} vs {data['B'].spec}")
    if out is None:
        return _experiment(cfg, cfg_b, list(task_b), data, progress)
    out = Path(out)
    with fresh_dir(out, MARKS_DIR, overwrite):
        plan = {"task_b_overrides": list(task_b), "data_seeds": {"A": seed, "B": seed + 1, "C": seed + 2}}
        atomic_write_text(out / MARKS_PLAN, json.dumps(plan, indent=2) + "\n")
        atomic_write_text(out / CONFIG, to_toml(cfg))
        result = _experiment(cfg, cfg_b, list(task_b), data, progress)
        atomic_write_text(out / MARKS, json.dumps(result, indent=2) + "\n")
        atomic_write_text(out / REPORT, format_report(result))
    return result


def _experiment(cfg: Config, cfg_b: Config, task_b: list[str], data: dict[str, Any],
                progress: bool) -> dict[str, Any]:
    """The body of :func:`marks_experiment` on the loaded datasets of tasks A, B and C."""
    seed = cfg.run.seed

    def accuracies(model) -> dict[str, float]:
        return {f"acc_{task.lower()}": evaluate(model, ds.test)["acc"] for task, ds in data.items()}

    seed_everything(seed)
    base = HybridTransformer(cfg, data["A"].spec)
    fit = _fit(base, cfg, data["A"], progress)
    base_logits = predict(base, data["A"].test)
    base_state = {k: v.clone() for k, v in base.state_dict().items()}
    rows = [{"method": "base (trained on A)", "trainable_params": count_parameters(base),
             **fit, **accuracies(base)}]

    marked = copy.deepcopy(base)  # one genome, several named mark sets
    for name in MARK_SETS:
        add_mark_set(marked, name)
        n_marks = freeze_genome(marked, name)
        rows.append({"method": f"mark set {name} (genome frozen)", "trainable_params": n_marks,
                     **_fit(marked, cfg_b, data[name], progress)})
    expression = {"A (base)": _expression(base, data["A"])}
    for row, name in zip(rows[1:], MARK_SETS):
        use_marks(marked, name)  # switch at inference
        row.update(accuracies(marked))
        expression[f"{name} (mark set {name})"] = _expression(marked, data[name])
    use_marks(marked, None)
    checks = {"marks_off_equals_base": torch.equal(predict(marked, data["A"].test), base_logits)}
    for name in MARK_SETS:
        erase_marks(marked, name)
    checks["erased_equals_base"] = torch.equal(predict(marked, data["A"].test), base_logits)
    checks["state_restored"] = _equal_states(marked.state_dict(), base_state)

    tuned = copy.deepcopy(base)
    rows.append({"method": "full fine-tuning on B", "trainable_params": count_parameters(tuned),
                 **_fit(tuned, cfg_b, data["B"], progress), **accuracies(tuned)})
    seed_everything(seed + 1)
    scratch = HybridTransformer(cfg_b, data["B"].spec)
    rows.append({"method": "from scratch on B", "trainable_params": count_parameters(scratch),
                 **_fit(scratch, cfg_b, data["B"], progress), **accuracies(scratch)})
    return {"task_a": cfg.data.task, "task_b_overrides": task_b, "seed": seed,
            "methods": rows, "checks": checks, "expression": expression}


def _expression(model, dataset) -> dict[str, float]:
    """Mean expression ratio of every epigenetic layer on the test split."""
    report = regulation_on(model, dataset.test.x, dataset.test.mask)
    return {name: round(r["expression_ratio"], 4) for name, r in report.items()}


def format_report(result: dict[str, Any]) -> str:
    """The experiment as Markdown: one table row per method, then the reversibility checks."""
    seed = result["seed"]
    lines = [
        "# Task marks: two timescales",
        "",
        f"Task A: `{result['task_a']}`, data seed {seed}. Tasks B and C: the same"
        f"{' with ' + ', '.join(f'`{o}`' for o in result['task_b_overrides']) if result['task_b_overrides'] else ''}"
        f", data seeds {seed + 1} and {seed + 2}.",
        "",
    ]
    rows = [["method", "trainable params", "test acc A", "test acc B", "test acc C", "steps"]]
    rows += [[row["method"], str(row["trainable_params"]), fmt(row["acc_a"]), fmt(row["acc_b"]),
              fmt(row["acc_c"]), str(row["steps"])] for row in result["methods"]]
    checks = result["checks"]
    lines += [
        md_table(rows, right=1),
        "",
        "Each row is evaluated with its own weights and marks: both mark sets live in one model "
        "on one frozen genome and are switched by name; with the marks off it is the base row.",
        "",
        "Marks switched off give the base model's logits bit for bit: "
        f"**{checks['marks_off_equals_base']}**; after erasing both mark sets: "
        f"**{checks['erased_equals_base']}**; state_dict restored exactly: **{checks['state_restored']}**.",
        "",
        "Expression ratio (fraction of gates with mark > threshold) on each task's test split:",
        "",
    ]
    lines += [f"- {task}: {ratios}" for task, ratios in result["expression"].items()]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- expression benchmark
def aer_check(run_dir: str | Path, batch_size: int = 8) -> dict[str, Any]:
    """A finished run's model on its own backend and on Aer: test accuracy on both, the
    expression ratio per regulated layer, and the circuits and wall time of one Aer
    training step (task loss + regularization) on ``batch_size`` training examples."""
    model, cfg = load_model(run_dir)
    dataset = load_dataset(cfg.data, cfg.run.seed)
    result: dict[str, Any] = {"run_dir": str(run_dir), "backend": cfg.backend.name,
                              "test_acc": evaluate(model, dataset.test)["acc"]}
    result["expression"] = _expression(model, dataset)
    model.set_backend(Backend(name="aer"))
    result["aer_test_acc"] = evaluate(model, dataset.test)["acc"]
    batch = dataset.train.take(torch.arange(min(batch_size, len(dataset.train))))
    layers = model.quantum_layers()
    before = sum(layer.executor.stats.circuits for layer in layers)
    model.train()
    start = time.perf_counter()
    record = ForwardRecord()
    loss = torch.nn.functional.cross_entropy(model(batch.x, batch.mask, record), batch.y)
    (loss + record.regularization_loss()).backward()
    result["aer_step_s"] = time.perf_counter() - start
    result["aer_step_circuits"] = sum(layer.executor.stats.circuits for layer in layers) - before
    result["aer_step_tokens"] = batch.x.shape[0] * batch.x.shape[1]
    return result


def expression_bench(qubits: int = 6, layers: int = 2, tokens: int = 32,
                     expressions=(1.0, 0.2), repeats: int = 3, shots: int = 0,
                     seed: int = 0) -> list[dict[str, Any]]:
    """Time one parameter-shift step (forward + backward) of an :class:`EpigeneticMap` with
    hard marks on Aer per expression ratio. Inputs need no gradient, so every circuit
    beyond the ``tokens`` unshifted ones shifts an expressed gate angle."""
    if min(qubits, layers, tokens, repeats) < 1:
        raise UserError("bench aer: --qubits, --layers, --tokens and --repeats must be >= 1")
    if not expressions or any(not 0.0 <= e <= 1.0 for e in expressions):
        raise UserError(f"--expression: ratios must lie in [0, 1], got {list(expressions)}")
    rows = []
    for expression in expressions:
        torch.manual_seed(seed)
        core = EpigeneticMap(Circuit(n_qubits=qubits, n_layers=layers), Backend(name="aer", shots=shots),
                             regulation=Regulation(hard=True), seed=seed)
        n_on = round(expression * core.n_marks)
        on = torch.randperm(core.n_marks)[:n_on]
        last = core.tf.net[-1]
        with torch.no_grad():  # the same random subset of gates expressed for every token
            last.weight.zero_()
            last.bias.fill_(-5.0)
            last.bias[on] = 5.0
        x = torch.rand(tokens, 1, qubits, dtype=torch.float64)  # (N, K=1, n_qubits)

        def step(record: ForwardRecord | None = None):
            core.zero_grad()
            core(x, record=record).sum().backward()

        record = ForwardRecord()
        step(record)  # traces, finds the angle map and assembles the template once
        stats = core.layer.executor.stats
        times, before = [], stats.circuits
        for _ in range(repeats):
            start = time.perf_counter()
            step()
            times.append(time.perf_counter() - start)
        circuits = (stats.circuits - before) // repeats
        rows.append({"expression": expression, "expressed_angles": n_on, "angles": core.n_marks,
                     "measured_expression": core.expression_ratio(record), "circuits": circuits,
                     "circuits_per_token": circuits / tokens, "step_s": min(times)})
    for row in rows:
        row["circuits_vs_first"] = row["circuits"] / rows[0]["circuits"]
        row["time_vs_first"] = row["step_s"] / rows[0]["step_s"]
    return rows


__all__ = ["aer_check", "default_marks_dir", "expression_bench", "format_report", "marks_experiment",
           "task_b_config"]
