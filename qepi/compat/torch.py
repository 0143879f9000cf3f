"""torch's experimental graph recorder (``torch.fx.experimental.proxy_tensor.make_fx``).

:func:`record_graph` records a function of tensors as a torch graph of the aten operations
it ran, so that later calls skip the Python code (PennyLane tape construction) entirely.
The recording is only as faithful as the function is free of value-dependent Python
control flow; callers must establish that (qepi's circuit tracer does).

Example:
    >>> import torch
    >>> graph = record_graph(lambda a: [a.sin() * 2], (torch.zeros(3),))
    >>> graph(torch.full((3,), torch.pi / 2))
    [tensor([2., 2., 2.])]
"""

from __future__ import annotations

from collections.abc import Callable

import torch

TESTED_TORCH = ((2, 1), (3, 0))  # make_fx's behaviour was checked on torch >= 2.1, < 3


def _torch_version() -> tuple[int, int]:
    major, minor = torch.__version__.split(".")[:2]
    return int(major), int(minor)


def record_graph(fn: Callable, args: tuple) -> Callable:
    """``fn`` recorded as a torch graph on ``args``, or ``fn`` itself when this torch version
    is untested or the recording fails."""
    low, high = TESTED_TORCH
    if not low <= _torch_version() < high:
        return fn
    try:
        from torch.fx.experimental.proxy_tensor import make_fx

        graph = make_fx(fn)(*args)
        graph.graph.eliminate_dead_code()
        graph.recompile()
        return graph
    except Exception:  # noqa: BLE001 - any recording failure falls back to calling fn
        return fn


__all__ = ["record_graph"]
