"""Experiments: one run (:func:`run`, :func:`resume`), the three-way comparison over seeds
(:func:`compare`), grid sweeps on Ray (:mod:`qepi.experiments.sweep`), and reports
rendered from saved metrics (:func:`render`)."""

from qepi.experiments.compare import VARIANTS, compare, summarize, variant_configs
from qepi.experiments.report import format_table, render
from qepi.experiments.runner import RunResult, default_run_dir, model_kind, resume, run
from qepi.experiments.stats import mean_ci, paired_test

__all__ = [
    "VARIANTS",
    "RunResult",
    "compare",
    "default_run_dir",
    "format_table",
    "mean_ci",
    "model_kind",
    "paired_test",
    "render",
    "resume",
    "run",
    "summarize",
    "variant_configs",
]
