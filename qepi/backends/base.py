"""The executor contract every backend implements, and the registry that builds executors.

An *executor* evaluates ``K`` copies of one circuit (same structure, separate weights) on
``N`` rows of inputs in one batched execution::

    executor(inputs, weights) -> outputs
        inputs:  (N, K, F) tensor
        weights: {name: (K, *weight_shape) tensor}
        returns: (N, K, n_outputs) tensor, differentiable in inputs and weights

``n_outputs`` is the circuit's measurements flattened and concatenated in order, as
``qml.qnn.TorchLayer`` does: ``expval`` and ``var`` give one column each, ``probs(wires)``
gives ``2 ** len(wires)`` columns (PennyLane's outcome order, first wire most significant).

A backend is one module that defines its executor class and registers a
:class:`BackendEntry`; :func:`qepi.backends.make_executor` only looks names up.

Example:
    >>> import torch
    >>> class Zeros:
    ...     capabilities = Capabilities(measurements=frozenset({"expval"}))
    ...     def __init__(self, qfunc, n_qubits, backend, seed=0):
    ...         self.stats, self.n_qubits = ExecutionStats(), n_qubits
    ...     def __call__(self, inputs, weights):
    ...         self.stats.add(inputs.shape[0] * inputs.shape[1])
    ...         return torch.zeros(*inputs.shape[:2], self.n_qubits)
    >>> register_backend(BackendEntry("zeros", build=Zeros, summary="always zero"))
    >>> backend_entry("zeros").build(None, 2, None)(torch.ones(3, 1, 2), {}).shape
    torch.Size([3, 1, 2])
    >>> unregister_backend("zeros")
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import torch

from qepi.errors import UserError

if TYPE_CHECKING:  # pragma: no cover
    from qepi.config import Backend

MEASUREMENT_KINDS = ("expval", "var", "probs")


@dataclass
class ExecutionStats:
    """Running totals of what an executor asked a simulator to do."""

    circuits: int = 0  # circuit evaluations, shifted ones included
    shots: int = 0  # shots spent (0 for exact expectation values)
    mitigation_circuits: int = 0  # of `circuits`, those error mitigation added (calibration, folded)
    mitigation_shots: int = 0  # of `shots`, those error mitigation spent

    def add(self, circuits: int, shots_per_circuit: int = 0, mitigation: bool = False) -> None:
        """Count ``circuits`` of ``shots_per_circuit`` shots each (``mitigation``: overhead of
        error mitigation, counted in the totals and in the ``mitigation_*`` parts)."""
        self.circuits += circuits
        self.shots += circuits * shots_per_circuit
        if mitigation:
            self.mitigation_circuits += circuits
            self.mitigation_shots += circuits * shots_per_circuit


@dataclass(frozen=True)
class Capabilities:
    """What an executor can do; callers ask this instead of probing attributes."""

    measurements: frozenset[str] = frozenset(MEASUREMENT_KINDS)  # subset of MEASUREMENT_KINDS
    shots: bool = False  # estimates from backend.shots > 0 samples
    noise: bool = False  # backend.noise (gate and readout noise)
    shift_mask: bool = False  # `shifting(mask)` restricts which angles parameter shift evaluates
    shift_shots: bool = False  # `spending(shots)` sets the shots of each angle's shifted circuits
    trace: bool = False  # `trace(inputs, weights)` returns the gate list with its angles
    bounds_memory: bool = False  # executes large batches in blocks itself (callers need not split rows)
    mitigation: bool = False  # backend.mitigation: readout correction and ZNE (qepi.backends.mitigation)


@runtime_checkable
class Executor(Protocol):
    """What :func:`qepi.backends.make_executor` returns. Optional methods are declared in
    ``capabilities`` (``shifting``, ``spending`` and ``trace``); ``reseed``, ``state_dict`` and
    ``load_state_dict`` default to no-ops in :class:`ExecutorBase`."""

    capabilities: Capabilities
    stats: ExecutionStats

    def __call__(self, inputs: torch.Tensor, weights: dict[str, torch.Tensor]) -> torch.Tensor: ...


class ExecutorBase:
    """Defaults for the optional parts of the executor contract.

    ``details()`` describes where the circuits ran, as plain data; ``reseed(seed)`` restarts the executor's random stream (shot sampling) at ``seed``;
    ``state_dict()`` / ``load_state_dict()`` carry whatever a resumed run needs to continue
    bit-identically (e.g. how many draws the sampler made), as plain ints and strings.
    """

    capabilities = Capabilities()
    stats: ExecutionStats

    def reseed(self, seed: int) -> None:
        """Restart the random stream at ``seed`` (no-op for deterministic backends)."""

    def state_dict(self) -> dict[str, Any]:
        """What a checkpoint must keep to resume this executor bit-identically."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""

    def details(self) -> dict[str, Any]:
        """Plain data on where the circuits ran (e.g. a device's qubit layout), kept in a
        run's summary.json; empty when there is nothing to say."""
        return {}

    @contextlib.contextmanager
    def shifting(self, mask) -> Iterator[None]:
        """Within the block, restrict parameter shift to ``mask`` (capability ``shift_mask``)."""
        raise UserError(f"{type(self).__name__} cannot restrict parameter shift to a mask")
        yield  # pragma: no cover

    @contextlib.contextmanager
    def spending(self, shots) -> Iterator[Any]:
        """Within the block, give each angle's shifted circuits their own shot count
        (capability ``shift_shots``)."""
        raise UserError(f"{type(self).__name__} cannot set shots per shifted angle")
        yield  # pragma: no cover

    def trace(self, inputs: torch.Tensor, weights: dict[str, torch.Tensor]):
        """The traced gates and angles (capability ``trace``)."""
        raise UserError(f"{type(self).__name__} does not expose its traced gates")


@dataclass(frozen=True)
class BackendEntry:
    """One backend: how to validate its settings, size its state and build its executor.

    ``build(qfunc, n_qubits, backend, seed)`` returns an executor; ``validate(backend)``
    raises a UserError naming the first unusable setting; ``state_bytes(n_qubits, backend)``
    is the memory one circuit row needs.
    """

    name: str
    build: Callable[..., Executor]
    validate: Callable[[Backend], None] = lambda backend: None
    state_bytes: Callable[[int, Backend], int] = lambda n_qubits, backend: 16 * 2**n_qubits
    summary: str = ""  # one line for `qepi` help and the README's backend table
    capabilities: Capabilities = field(default_factory=Capabilities)
    probed: bool = True  # in the support matrix (False: it only samples, so 1e-8 comparisons cannot apply)


_REGISTRY: dict[str, BackendEntry] = {}


def register_backend(entry: BackendEntry) -> None:
    """Make ``entry.name`` usable as ``backend.name`` everywhere (layers, configs, CLI)."""
    _REGISTRY[entry.name] = entry


def unregister_backend(name: str) -> None:
    """Remove a backend registered with :func:`register_backend`."""
    _REGISTRY.pop(name, None)


def backend_names() -> tuple[str, ...]:
    """Names of every registered backend, in registration order."""
    return tuple(_REGISTRY)


def backend_entry(name: str) -> BackendEntry:
    """The registered backend ``name``; a UserError lists the known names otherwise."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UserError(
            f"backend.name: unknown backend {name!r} (known: {', '.join(_REGISTRY)})"
        ) from None


def broadcast_weights(weights: dict[str, torch.Tensor], n_rows: int) -> dict[str, torch.Tensor]:
    """Per-copy weights (K, *shape) -> per-row weights (N*K, *shape) matching (N, K) row order.

    With one copy the weights stay unbatched, so the simulator can share them across rows.
    """
    out = {}
    for name, w in weights.items():
        if w.shape[0] == 1:
            out[name] = w[0]
        else:
            out[name] = w.unsqueeze(0).expand(n_rows, *w.shape).reshape(-1, *w.shape[1:])
    return out


__all__ = ["MEASUREMENT_KINDS", "BackendEntry", "Capabilities", "ExecutionStats", "Executor",
           "ExecutorBase", "backend_entry", "backend_names", "broadcast_weights",
           "register_backend", "unregister_backend"]
