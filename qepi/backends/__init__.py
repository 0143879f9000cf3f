"""The only place where devices and simulators are made.

:func:`make_executor` turns a PennyLane ``qfunc(inputs, **weights)`` into an *executor*: a
callable that evaluates ``K`` copies of the circuit (same structure, separate weights) on
``N`` rows of inputs in one batched execution::

    executor(inputs, weights) -> expectation values
        inputs:  (N, K, F) tensor
        weights: {name: (K, *weight_shape) tensor}
        returns: (N, K, n_outputs) tensor, differentiable in inputs and weights

Backends: ``default.qubit`` (torch backprop with parameter broadcasting),
``lightning.qubit`` (adjoint differentiation), ``exact`` (qepi's compiled torch simulator)
and ``aer`` (qepi's parameter-shift engine on Qiskit Aer). Nothing is created at import
time; heavy simulators are imported when first asked for.

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
from dataclasses import dataclass

import torch

from qepi.config import Backend
from qepi.errors import UserError

BACKEND_NAMES = ("default.qubit", "lightning.qubit", "exact", "aer")


@dataclass
class ExecutionStats:
    """Running totals of what an executor asked a simulator to do."""

    circuits: int = 0  # circuit evaluations, shifted ones included
    shots: int = 0  # shots spent (0 for exact expectation values)

    def add(self, circuits: int, shots_per_circuit: int = 0) -> None:
        self.circuits += circuits
        self.shots += circuits * shots_per_circuit


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


class PennyLaneExecutor:
    """Runs the circuit as a broadcast QNode on a PennyLane device (one execution per call)."""

    def __init__(self, qfunc: Callable, n_qubits: int, backend: Backend, diff_method: str):
        import pennylane as qml

        self.backend = backend
        self.stats = ExecutionStats()
        self.device = qml.device(backend.name, wires=n_qubits)
        self.qnode = qml.QNode(qfunc, self.device, interface="torch", diff_method=diff_method)
        self.dtype = torch.float32 if backend.dtype == "float32" else torch.float64

    def __call__(self, inputs: torch.Tensor, weights: dict[str, torch.Tensor]) -> torch.Tensor:
        n, k, f = inputs.shape
        rows = inputs.reshape(n * k, f).to(self.dtype)  # (N*K, F)
        row_weights = broadcast_weights({m: w.to(self.dtype) for m, w in weights.items()}, n)
        result = self.qnode(rows, **row_weights)
        if isinstance(result, (list, tuple)):
            values = torch.stack(list(result), dim=-1)  # (N*K, n_outputs)
        else:
            values = result.unsqueeze(-1)
        if values.dim() == 1:  # a single row comes back without its batch dimension
            values = values.unsqueeze(0)
        self.stats.add(n * k)
        return values.reshape(n, k, -1).to(inputs.dtype)


def state_bytes(n_qubits: int, backend: Backend) -> int:
    """Bytes of the simulator state one circuit row needs: a complex statevector of 2ⁿ
    amplitudes, or a 4ⁿ density matrix for Aer with gate noise.

    >>> state_bytes(10, Backend(name="default.qubit"))
    16384
    >>> state_bytes(10, Backend(name="exact", dtype="float32"))
    8192
    >>> state_bytes(10, Backend(name="aer", noise="depolarizing", depolarizing_1q=0.01))
    16777216
    """
    per_amplitude = 8 if backend.name == "exact" and backend.dtype == "float32" else 16
    noisy = backend.name == "aer" and (
        backend.noise.startswith("Fake")
        or (backend.noise == "depolarizing" and (backend.depolarizing_1q or backend.depolarizing_2q))
    )
    return per_amplitude * (4 if noisy else 2) ** n_qubits


def check_backend(backend: Backend, n_qubits: int) -> None:
    """Raise a UserError naming the first problem of running ``n_qubits`` wires on ``backend``:
    an unknown name, shots on an exact backend (adjoint differentiation on lightning.qubit
    included), a bad option of the aer or exact backend, an unknown fake IBM backend, or a
    state larger than the memory available now. Nothing is simulated.

    >>> check_backend(Backend(name="lightning.qubit", shots=100), 2)
    Traceback (most recent call last):
    ...
    qepi.errors.UserError: backend.shots=100: lightning.qubit (adjoint differentiation) computes ...
    """
    import psutil

    if backend.name not in BACKEND_NAMES:
        raise UserError(f"backend.name: unknown backend {backend.name!r} (known: {', '.join(BACKEND_NAMES)})")
    if backend.shots and backend.name != "aer":
        how = {"default.qubit": " (backprop)", "lightning.qubit": " (adjoint differentiation)"}
        raise UserError(f"backend.shots={backend.shots}: {backend.name}{how.get(backend.name, '')} "
                        f"computes exact expectation values; use backend.name='aer' for shots")
    if backend.name == "aer":
        from qepi.backends.aer import check_backend as check_aer, fake_backend_class

        check_aer(backend)
        if backend.noise.startswith("Fake"):
            fake_backend_class(backend.noise)
    if backend.name == "exact":
        from qepi.backends.exact import check_backend as check_exact

        check_exact(backend)
    if n_qubits < 1:
        raise UserError(f"circuit.n_qubits must be >= 1, got {n_qubits}")
    need, available = state_bytes(n_qubits, backend), psutil.virtual_memory().available
    if need > available:
        kind = "density matrix" if need > 16 * 2**n_qubits else "statevector"
        raise UserError(f"circuit.n_qubits={n_qubits}: one {kind} on {backend.name} needs "
                        f"{need / 2**30:,.1f} GiB, more than the {available / 2**30:,.1f} GiB "
                        f"of memory available")


def make_executor(
    qfunc: Callable, n_qubits: int, backend: Backend | str = "default.qubit", seed: int = 0
) -> Callable[[torch.Tensor, dict[str, torch.Tensor]], torch.Tensor]:
    """Build the executor for ``qfunc`` on ``n_qubits`` wires and the chosen backend
    (after :func:`check_backend`)."""
    if isinstance(backend, str):
        backend = Backend(name=backend)
    check_backend(backend, n_qubits)
    if backend.name == "default.qubit":
        return PennyLaneExecutor(qfunc, n_qubits, backend, diff_method="backprop")
    if backend.name == "lightning.qubit":
        return PennyLaneExecutor(qfunc, n_qubits, backend, diff_method="adjoint")
    if backend.name == "exact":
        from qepi.backends.exact import ExactExecutor

        return ExactExecutor(qfunc, n_qubits, backend)
    from qepi.backends.aer import AerExecutor  # the last name check_backend lets through

    return AerExecutor(qfunc, n_qubits, backend, seed=seed)


__all__ = ["BACKEND_NAMES", "ExecutionStats", "broadcast_weights", "check_backend", "make_executor",
           "state_bytes"]
