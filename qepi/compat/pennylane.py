"""PennyLane internals qepi has to touch.

``CompositeOp`` (``Sum``, ``Prod``) keeps a class-wide cache of eigendecompositions keyed by
``Operator.hash``, which prints torch parameters to 4 decimals: an observable whose
coefficients are torch tensors gets the eigenvalues (and the autograd graph) of an earlier
observable whose coefficients printed the same. qepi's ``exact`` backend never reads that
cache; :func:`forget_eigendecompositions` empties it, so that a reference computed with
PennyLane itself (``default.qubit`` in qepi's tests) is not served stale entries.

Example:
    >>> import pennylane as qml, torch
    >>> def top_eigenvalue(scale):
    ...     return float(qml.var(torch.tensor(scale) * qml.Z(0) + qml.X(0)).obs.eigvals().max())
    >>> first = top_eigenvalue(0.7)
    >>> top_eigenvalue(0.70001) == first  # served the eigenvalues of 0.7 Z + X
    True
    >>> forget_eigendecompositions()
    >>> top_eigenvalue(0.70001) > first
    True
"""

from __future__ import annotations

TESTED_PENNYLANE = ((0, 40), (0, 46))  # the cache was checked on PennyLane >= 0.40, < 0.46


def _pennylane_version() -> tuple[int, int]:
    import pennylane as qml

    major, minor = qml.__version__.split(".")[:2]
    return int(major), int(minor)


def forget_eigendecompositions() -> None:
    """Empty PennyLane's class-wide eigendecomposition cache of composite operators (a no-op
    on PennyLane versions where qepi has not checked it)."""
    from pennylane.ops.op_math import CompositeOp

    low, high = TESTED_PENNYLANE
    cache = getattr(CompositeOp, "_eigs", None)
    if low <= _pennylane_version() < high and isinstance(cache, dict):
        cache.clear()


__all__ = ["forget_eigendecompositions"]
