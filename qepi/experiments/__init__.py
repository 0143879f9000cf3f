"""Experiments: one run (:func:`run`, :func:`resume`), the three-way comparison over seeds
(:func:`compare`), grid sweeps on Ray (:mod:`qepi.experiments.sweep`), Tune searches
(:mod:`qepi.experiments.tune`) and the task-marks experiment (:mod:`qepi.experiments.marks`).

Every driver writes one kind of output directory laid out by :mod:`qepi.experiments.rundir`
and its report with :mod:`qepi.experiments.report`; numbers and tables are formatted by
:mod:`qepi.experiments.tables`, runs over seeds aggregated by :mod:`qepi.experiments.stats`.
The command-line handlers live above this package, in :mod:`qepi.commands`.
"""

from qepi.experiments.compare import VARIANTS, compare, summarize, variant_configs
from qepi.experiments.report import format_table
from qepi.experiments.runner import RunResult, default_run_dir, model_kind, resume, run
from qepi.experiments.stats import mean_ci, over_seeds, paired_test

__all__ = [
    "VARIANTS",
    "RunResult",
    "compare",
    "default_run_dir",
    "format_table",
    "mean_ci",
    "model_kind",
    "over_seeds",
    "paired_test",
    "resume",
    "run",
    "summarize",
    "variant_configs",
]
