"""The only place where devices and simulators are made.

:func:`make_executor` turns a PennyLane ``qfunc(inputs, **weights)`` into an *executor*: a
callable that evaluates ``K`` copies of the circuit (same structure, separate weights) on
``N`` rows of inputs in one batched execution::

    executor(inputs, weights) -> expectation values
        inputs:  (N, K, F) tensor
        weights: {name: (K, *weight_shape) tensor}
        returns: (N, K, n_outputs) tensor, differentiable in inputs and weights

Backends: ``default.qubit`` (torch backprop with parameter broadcasting),
``lightning.qubit`` (adjoint differentiation), ``exact`` (qepi's compiled torch simulator),
``aer`` (qepi's parameter-shift engine on Qiskit Aer) and ``runtime`` (the same engine on
IBM devices through Qiskit Runtime, fake devices in local testing mode). Each lives in its own module and
registers a :class:`~qepi.backends.base.BackendEntry`; the contract is in
:mod:`qepi.backends.base`. Nothing is created at import time; heavy simulators are imported
when first asked for.

Example:
    >>> import torch
    >>> from qepi.circuits import build_circuit
    >>> from qepi.config import Backend, Circuit
    >>> spec = build_circuit(Circuit(n_qubits=2, n_layers=1))
    >>> run = make_executor(spec.qfunc, spec.n_qubits, Backend(name="default.qubit"))
    >>> run(torch.zeros(3, 1, 2), {"weights": torch.zeros(1, 1, 2, 3)}).shape
    torch.Size([3, 1, 2])
"""

from __future__ import annotations

from collections.abc import Callable

from qepi.backends.base import (BackendEntry, Capabilities, ExecutionStats, Executor, ExecutorBase,
                                backend_entry, backend_names, broadcast_weights, register_backend,
                                unregister_backend)
from qepi.config import Backend
from qepi.errors import UserError

# each backend module registers itself; this order is the order `backend_names()` lists
from qepi.backends import pennylane  # noqa: E402,F401  isort: skip
from qepi.backends import exact  # noqa: E402,F401  isort: skip
from qepi.backends import aer  # noqa: E402,F401  isort: skip
from qepi.backends import runtime  # noqa: E402,F401  isort: skip

def state_bytes(n_qubits: int, backend: Backend) -> int:
    """Bytes of the simulator state one circuit row needs on ``backend`` (a statevector of
    2ⁿ amplitudes, or a 4ⁿ density matrix for Aer with gate noise).

    >>> state_bytes(10, Backend(name="default.qubit"))
    16384
    >>> state_bytes(10, Backend(name="exact", dtype="float32"))
    8192
    >>> state_bytes(10, Backend(name="aer", noise="depolarizing", depolarizing_1q=0.01))
    16777216
    """
    return backend_entry(backend.name).state_bytes(n_qubits, backend)


def check_backend(backend: Backend, n_qubits: int) -> None:
    """Raise a UserError naming the first problem of running ``n_qubits`` wires on ``backend``:
    an unknown name, a setting the backend cannot honour (e.g. shots on an exact backend),
    or a state larger than the memory available now. Nothing is simulated.

    >>> check_backend(Backend(name="lightning.qubit", shots=100), 2)
    Traceback (most recent call last):
    ...
    qepi.errors.UserError: backend.shots=100: lightning.qubit (adjoint differentiation) computes ...
    """
    import psutil

    backend_entry(backend.name).validate(backend)
    if n_qubits < 1:
        raise UserError(f"circuit.n_qubits must be >= 1, got {n_qubits}")
    need, available = state_bytes(n_qubits, backend), psutil.virtual_memory().available
    if need > available:
        kind = "density matrix" if need > 16 * 2**n_qubits else "statevector"
        raise UserError(f"circuit.n_qubits={n_qubits}: one {kind} on {backend.name} needs "
                        f"{need / 2**30:,.1f} GiB, more than the {available / 2**30:,.1f} GiB "
                        f"of memory available")


MEMORY_SHARE = 0.5  # of the memory available now, what one execution's states may take
MEMORY_CHECK_BYTES = 64 * 2**20  # smaller executions are not checked against free memory


def rows_that_fit(n_qubits: int, backend: Backend, n_rows: int, copies: int = 1) -> int:
    """How many of ``n_rows`` input rows (each ``copies`` circuits) to execute at once so their
    states take at most :data:`MEMORY_SHARE` of the memory available now: ``n_rows`` when all
    fit; a UserError when not even one row does. Executions under
    :data:`MEMORY_CHECK_BYTES` are not checked (no system call).

    >>> rows_that_fit(4, Backend(name="exact"), n_rows=32, copies=3)
    32
    """
    per_row = copies * state_bytes(n_qubits, backend)
    if n_rows * per_row <= MEMORY_CHECK_BYTES:
        return n_rows
    import psutil

    available = psutil.virtual_memory().available
    fit = int(available * MEMORY_SHARE) // per_row
    if fit < 1:
        raise UserError(f"circuit.n_qubits={n_qubits}: one input row ({copies} circuit(s)) on "
                        f"{backend.name} needs {per_row / 2**30:,.2f} GiB of states, more than half "
                        f"of the {available / 2**30:,.2f} GiB of memory available; lower "
                        f"circuit.n_qubits or model.n_heads")
    return min(fit, n_rows)


def make_executor(qfunc: Callable, n_qubits: int, backend: Backend | str = "default.qubit",
                  seed: int = 0) -> Executor:
    """Build the executor for ``qfunc`` on ``n_qubits`` wires and the chosen backend
    (after :func:`check_backend`)."""
    if isinstance(backend, str):
        backend = Backend(name=backend)
    check_backend(backend, n_qubits)
    return backend_entry(backend.name).build(qfunc, n_qubits, backend, seed)


__all__ = ["BackendEntry", "Capabilities", "ExecutionStats", "Executor", "ExecutorBase",
           "backend_entry", "backend_names", "broadcast_weights", "check_backend", "make_executor",
           "register_backend", "rows_that_fit", "state_bytes", "unregister_backend"]
