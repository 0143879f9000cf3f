"""``default.qubit`` (torch backprop) and ``lightning.qubit`` (adjoint) through PennyLane."""

from __future__ import annotations

from collections.abc import Callable

import torch

from qepi.backends.base import (BackendEntry, Capabilities, ExecutionStats, ExecutorBase,
                                broadcast_weights, register_backend)
from qepi.config import Backend
from qepi.errors import UserError


class PennyLaneExecutor(ExecutorBase):
    """Runs the circuit as a broadcast QNode on a PennyLane device (one execution per call)."""

    capabilities = Capabilities(measurements=frozenset({"expval"}))

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


def _no_shots(backend: Backend) -> None:
    if backend.shots:
        how = {"default.qubit": "backprop", "lightning.qubit": "adjoint differentiation"}
        raise UserError(f"backend.shots={backend.shots}: {backend.name} ({how[backend.name]}) "
                        f"computes exact expectation values; use backend.name='aer' for shots")


register_backend(BackendEntry(
    "default.qubit",
    build=lambda qfunc, n_qubits, backend, seed=0: PennyLaneExecutor(
        qfunc, n_qubits, backend, diff_method="backprop"),
    validate=_no_shots,
    summary="PennyLane's statevector simulator with torch backprop: the reference",
    capabilities=PennyLaneExecutor.capabilities,
))
register_backend(BackendEntry(
    "lightning.qubit",
    build=lambda qfunc, n_qubits, backend, seed=0: PennyLaneExecutor(
        qfunc, n_qubits, backend, diff_method="adjoint"),
    validate=_no_shots,
    summary="PennyLane Lightning's C++ statevector simulator with adjoint differentiation",
    capabilities=PennyLaneExecutor.capabilities,
))

__all__ = ["PennyLaneExecutor"]
