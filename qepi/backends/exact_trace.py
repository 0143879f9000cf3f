"""Recording a circuit function for the ``exact`` backend, and proving what it recorded.

:func:`trace_circuit` runs ``qfunc(inputs, **weights)`` into a PennyLane tape while a
:class:`torch.overrides.TorchFunctionMode` watches every torch operation. Each tensor
computed from the inputs or weights carries an :class:`Origin`: which of them it depends
on, and whether it is a plain *selection* (indexing, reshaping) of one of them. A value of
theirs that leaves torch for Python (``bool(t)``, ``t.item()``, ``float(t)``, ``t.numpy()``,
…) is recorded as an *escape*: the circuit's structure may then depend on the values, and
nothing traced once can be trusted for other values.

Example:
    >>> import pennylane as qml, torch
    >>> def circuit(inputs, weights):
    ...     qml.RX(inputs[..., 0], wires=0)
    ...     qml.RY(torch.relu(weights[0]), wires=0)
    ...     if weights[1] > 0:
    ...         qml.Hadamard(wires=0)
    ...     return qml.expval(qml.PauliZ(0))
    >>> trace = trace_circuit(circuit, torch.rand(3, 1), {"weights": torch.ones(2)})
    >>> [trace.origin(op.data[0]) for op in trace.ops[:2]]  # doctest: +NORMALIZE_WHITESPACE
    [Origin(sources=frozenset({'inputs'}), selection='inputs'),
     Origin(sources=frozenset({'weights'}), selection=None)]
    >>> trace.escapes
    ['Tensor.__bool__ of a value computed from weights']
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch.overrides import TorchFunctionMode

from qepi.errors import UserError

SKIPPED_OPS = {"Barrier", "Snapshot", "GlobalPhase", "Identity"}  # no effect on any readout

# Functions that hand a tensor's values to Python (or make shapes depend on them).
_ESCAPES = {
    torch.Tensor.__bool__, torch.Tensor.__float__, torch.Tensor.__int__, torch.Tensor.__index__,
    torch.Tensor.__complex__, torch.Tensor.item, torch.Tensor.tolist, torch.Tensor.numpy,
    torch.Tensor.__array__, torch.Tensor.__contains__, torch.equal, torch.allclose,
    torch.is_nonzero, torch.nonzero, torch.Tensor.nonzero, torch.argwhere, torch.Tensor.argwhere,
    torch.unique, torch.Tensor.unique, torch.masked_select, torch.Tensor.masked_select,
}
# Functions whose result is a plain selection of their first argument's entries.
_SELECTIONS = {
    torch.Tensor.__getitem__, torch.Tensor.select, torch.select, torch.Tensor.unbind,
    torch.unbind, torch.Tensor.reshape, torch.reshape, torch.Tensor.view, torch.Tensor.flatten,
    torch.flatten, torch.Tensor.squeeze, torch.squeeze, torch.Tensor.unsqueeze, torch.unsqueeze,
    torch.Tensor.narrow, torch.narrow, torch.Tensor.clone, torch.clone, torch.Tensor.contiguous,
}
_IN_PLACE_DUNDERS = {"__setitem__", "__iadd__", "__isub__", "__imul__", "__itruediv__",
                     "__ifloordiv__", "__ipow__", "__imod__", "__iand__", "__ior__", "__ixor__"}


@dataclass(frozen=True)
class Origin:
    """Where a traced tensor's value comes from."""

    sources: frozenset[str]  # "inputs" and/or weight names it is computed from
    selection: str | None  # the one source it is a plain selection of, if it is


def _tensors(tree) -> list[torch.Tensor]:
    """Every tensor inside nested tuples, lists and dicts."""
    if isinstance(tree, torch.Tensor):
        return [tree]
    if isinstance(tree, (tuple, list)):
        return [t for item in tree for t in _tensors(item)]
    if isinstance(tree, dict):
        return [t for item in tree.values() for t in _tensors(item)]
    return []


def _name(func) -> str:
    name = getattr(func, "__name__", repr(func))
    return f"Tensor.{name}" if "Tensor" in getattr(func, "__qualname__", "") else f"torch.{name}"


class _Watch(TorchFunctionMode):
    """Propagates :class:`Origin` through every torch call and records escapes."""

    def __init__(self, roots: dict[str, torch.Tensor]):
        super().__init__()
        self.origins: dict[int, Origin] = {}
        self.alive: list[torch.Tensor] = []  # keeps ids unique while the trace runs
        self.escapes: list[str] = []
        for name, tensor in roots.items():
            self._mark(tensor, Origin(frozenset({name}), name))

    def _mark(self, tensor: torch.Tensor, origin: Origin) -> None:
        self.origins[id(tensor)] = origin
        self.alive.append(tensor)

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        found = [self.origins[id(t)] for t in _tensors((args, kwargs)) if id(t) in self.origins]
        if not found:
            return func(*args, **kwargs)
        sources = frozenset().union(*(o.sources for o in found))
        if func in _ESCAPES:
            self.escapes.append(f"{_name(func)} of a value computed from {', '.join(sorted(sources))}")
        result = func(*args, **kwargs)
        first = args[0] if args and isinstance(args[0], torch.Tensor) else None
        selection = None
        if func in _SELECTIONS and first is not None and len(found) == 1:
            selection = self.origins.get(id(first), Origin(sources, None)).selection
        for tensor in _tensors(result):
            if id(tensor) not in self.origins:
                self._mark(tensor, Origin(sources, selection))
        name = getattr(func, "__name__", "")
        in_place = (name.endswith("_") and not name.startswith("__")) or name in _IN_PLACE_DUNDERS
        if in_place and first is not None:
            before = self.origins.get(id(first), Origin(frozenset(), None)).sources
            self._mark(first, Origin(before | sources, None))
        return result


@dataclass
class Trace:
    """A circuit recorded on given tensors: its gates, measurements and what they depend on."""

    ops: list  # gates, templates decomposed
    measurements: list
    escapes: list[str]  # values of the inputs or weights that reached Python
    origins: dict[int, Origin] = field(repr=False)
    alive: list = field(repr=False)

    def origin(self, value) -> Origin | None:
        """The origin of a gate or observable parameter (None: a constant)."""
        return self.origins.get(id(value)) if isinstance(value, torch.Tensor) else None


def trace_circuit(qfunc: Callable, inputs: torch.Tensor, weights: dict[str, torch.Tensor]) -> Trace:
    """Record ``qfunc(inputs, **weights)`` and the origin of every tensor it computed."""
    import pennylane as qml

    watch = _Watch({"inputs": inputs, **weights})
    try:
        with watch:
            tape = qml.tape.make_qscript(qfunc)(inputs, **weights)
            ops = expand_ops(tape.operations)
    except UserError:
        raise
    except Exception as error:  # noqa: BLE001 - name the escape that most likely caused it
        if not watch.escapes:
            raise
        raise UserError(
            f"exact backend: the circuit failed on a batch of inputs after "
            f"{watch.escapes[0]} ({type(error).__name__}); branch with tensor operations "
            f"(torch.where) instead of Python on input values") from None
    return Trace(ops, list(tape.measurements), watch.escapes, watch.origins, watch.alive)


def record(qfunc: Callable, inputs: torch.Tensor, weights: dict[str, torch.Tensor]):
    """(gates, measurements) of ``qfunc(inputs, **weights)``, without watching."""
    import pennylane as qml

    tape = qml.tape.make_qscript(qfunc)(inputs, **weights)
    return expand_ops(tape.operations), list(tape.measurements)


def expand_ops(ops) -> list:
    """Decompose templates until every op has a matrix; a UserError names any op that has
    neither a matrix nor a decomposition (mid-circuit measurements, noise channels, …)."""
    import pennylane as qml

    out = []
    for op in ops:
        if isinstance(op, qml.measurements.MidMeasureMP) or op.name == "Conditional":
            raise UserError(f"exact backend: mid-circuit measurements ({op.name}) are not "
                            f"supported; use backend.name='default.qubit'")
        if op.name in SKIPPED_OPS or len(op.wires) == 0:
            continue
        if op.has_matrix:
            out.append(op)
        elif isinstance(op, qml.operation.Channel):
            raise UserError(f"exact backend: {op.name} is a noise channel and exact simulates "
                            f"pure states; use backend.name='aer' with backend.noise")
        elif op.has_decomposition:
            try:
                parts = op.decomposition()
            except Exception as error:  # noqa: BLE001 - PennyLane's own failure, named
                raise UserError(f"exact backend: cannot decompose {op.name} "
                                f"({type(error).__name__}); use backend.name='default.qubit'"
                                ) from None
            out.extend(expand_ops(parts))
        else:
            raise UserError(f"exact backend: cannot simulate {op.name} (it has no matrix and no "
                            f"decomposition); use backend.name='default.qubit'")
    return out


_MEASUREMENT_NAMES = {"StateMP": "qml.state()", "DensityMatrixMP": "qml.density_matrix()",
                      "SampleMP": "qml.sample()", "CountsMP": "qml.counts()",
                      "MutualInfoMP": "qml.mutual_info()", "VnEntropyMP": "qml.vn_entropy()",
                      "PurityMP": "qml.purity()", "ClassicalShadowMP": "qml.classical_shadow()",
                      "ShadowExpvalMP": "qml.shadow_expval()"}


def measurement_kind(mp) -> str:
    """``expval``, ``var`` or ``probs``; a one-line UserError for any other measurement."""
    import pennylane as qml

    kinds = {qml.measurements.ExpectationMP: "expval", qml.measurements.VarianceMP: "var",
             qml.measurements.ProbabilityMP: "probs"}
    kind = kinds.get(type(mp))
    name = type(mp).__name__
    if kind is None:
        raise UserError(f"exact backend: {_MEASUREMENT_NAMES.get(name, name)} is not supported "
                        f"(supported: expval, var, probs); use backend.name='default.qubit'")
    if mp.mv is not None:
        raise UserError(f"exact backend: qml.{kind}() of a mid-circuit measurement is not "
                        f"supported; use backend.name='default.qubit'")
    if kind != "probs" and mp.obs is None:
        raise UserError(f"exact backend: qml.{kind}() needs an observable")
    return kind


__all__ = ["Origin", "SKIPPED_OPS", "Trace", "expand_ops", "measurement_kind", "record",
           "trace_circuit"]
