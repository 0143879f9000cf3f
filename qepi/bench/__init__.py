"""Side-by-side benchmarks behind `qepi bench` (figures for the README).

Every benchmark runs torch on ``--threads`` threads (default 1, as ``train.threads``
trains) and states the machine's load: with other busy processes on the same cores the
times grow by large and unequal factors, so the ratios between them stop meaning much.

Example:
    >>> load = machine_load(threads=1)
    >>> sorted(load)
    ['busy', 'cpus', 'load_average', 'threads']
    >>> machine_load(threads=1, cpus=2, load_average=3.0)["busy"]
    True
"""

from __future__ import annotations

import os
import sys
from typing import Any

BUSY_RULE = ("busy: 1-minute load average above cores - threads - 0.5 (at least 0.5), i.e. other "
             "processes use cores the benchmark's threads would need")


def machine_load(threads: int, cpus: int | None = None, load_average: float | None = None) -> dict[str, Any]:
    """The benchmark's torch ``threads``, the machine's cores and 1-minute load average, and
    whether it is busy (:data:`BUSY_RULE`: one other busy process on 2 cores is); ``cpus``
    and ``load_average`` default to this machine now."""
    cpus = cpus or os.cpu_count() or 1
    load_average = os.getloadavg()[0] if load_average is None else load_average
    return {"threads": threads, "cpus": cpus, "load_average": round(load_average, 2),
            "busy": load_average > max(cpus - threads - 0.5, 0.5)}


def set_threads(threads: int) -> int:
    """Run torch on ``threads`` threads (0: torch's default); returns the count in use."""
    import torch

    if threads > 0:
        torch.set_num_threads(threads)
    return torch.get_num_threads()


def describe_load(load: dict[str, Any]) -> str:
    """One line for a benchmark's header."""
    return (f"torch threads {load['threads']}, {load['cpus']} cores, load average "
            f"{load['load_average']:.2f} at the start")


def warn_if_busy(load: dict[str, Any]) -> None:
    """One warning line on stderr when the machine was busy as the benchmark started."""
    if load["busy"]:
        print(f"qepi: warning: load average {load['load_average']:.2f} on {load['cpus']} cores with "
              f"{load['threads']} torch thread(s) ({BUSY_RULE}): times are inflated and ratios "
              f"unreliable; measure on an idle machine", file=sys.stderr)


__all__ = ["BUSY_RULE", "describe_load", "machine_load", "set_threads", "warn_if_busy"]
