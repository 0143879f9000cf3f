"""QuantumLayer: any PennyLane circuit as a torch module, on any qepi backend."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from qepi.backends import check_backend, make_executor
from qepi.config import Backend


def _unwrap(circuit) -> tuple[Callable, int | None]:
    """A QNode gives its quantum function and wire count; a plain qfunc gives itself."""
    func = getattr(circuit, "func", None)
    device = getattr(circuit, "device", None)
    if func is not None and device is not None:
        return func, len(device.wires)
    return circuit, None


class QuantumLayer(nn.Module):
    """A variational circuit as an ``nn.Module`` with ``qml.qnn.TorchLayer``'s calling convention.

    ``circuit`` is a quantum function ``circuit(inputs, **weights)`` returning expectation
    values (or a QNode, whose function and wire count are used). Every weight named in
    ``weight_shapes`` becomes an ``nn.Parameter``. Inputs may have any leading batch
    dimensions; they are flattened and run as ONE batched execution on ``backend``.

    With ``copies=K`` the layer holds K independent weight sets of the same circuit and
    expects inputs of shape (..., K, F): row r of copy k runs with weights k.

    Args:
        circuit: quantum function or QNode.
        weight_shapes: weight name -> shape (an int means a 1-D shape).
        n_qubits: wire count (taken from the QNode's device when a QNode is given).
        backend: a backend name or a ``qepi.config.Backend``.
        copies: number of independent weight sets.
        init_method: callable filling a tensor in place; default uniform on [0, 2π).
        seed: simulator seed (shot sampling on ``aer``).

    Example:
        >>> import pennylane as qml, torch
        >>> def circuit(inputs, weights):
        ...     qml.AngleEmbedding(inputs, wires=range(2))
        ...     qml.BasicEntanglerLayers(weights, wires=range(2))
        ...     return [qml.expval(qml.PauliZ(i)) for i in range(2)]
        >>> layer = QuantumLayer(circuit, {"weights": (3, 2)}, n_qubits=2)
        >>> layer(torch.rand(5, 7, 2)).shape  # (B, T, F) -> (B, T, n_outputs)
        torch.Size([5, 7, 2])
    """

    def __init__(
        self,
        circuit,
        weight_shapes: dict[str, int | tuple[int, ...]],
        n_qubits: int | None = None,
        backend: Backend | str = "default.qubit",
        copies: int = 1,
        init_method: Callable[[torch.Tensor], torch.Tensor] | None = None,
        seed: int = 0,
    ):
        super().__init__()
        qfunc, device_wires = _unwrap(circuit)
        n_qubits = n_qubits if n_qubits is not None else device_wires
        if n_qubits is None:
            raise ValueError("QuantumLayer needs n_qubits for a plain quantum function")
        if copies < 1:
            raise ValueError(f"copies must be >= 1, got {copies}")
        self.qfunc = qfunc
        self.n_qubits = n_qubits
        self.backend = Backend(name=backend) if isinstance(backend, str) else backend
        check_backend(self.backend, n_qubits)  # fail when the model is built, before any run
        self.copies = copies
        self.seed = seed
        self.weight_shapes = {
            name: (shape,) if isinstance(shape, int) else tuple(shape)
            for name, shape in weight_shapes.items()
        }
        init = init_method or (lambda t: nn.init.uniform_(t, 0.0, 2 * math.pi))
        for name, shape in self.weight_shapes.items():
            full_shape = shape if copies == 1 else (copies, *shape)
            self.register_parameter(name, nn.Parameter(init(torch.empty(full_shape))))
        self._executor = None

    @property
    def executor(self):
        """The backend executor, built on first use (never pickled, never at import time)."""
        if self._executor is None:
            self._executor = make_executor(self.qfunc, self.n_qubits, self.backend, self.seed)
        return self._executor

    def set_backend(self, backend: Backend | str) -> None:
        """Move the layer to another backend; the weights stay as they are."""
        backend = Backend(name=backend) if isinstance(backend, str) else backend
        check_backend(backend, self.n_qubits)
        self.backend = backend
        self._executor = None

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_executor"] = None
        return state

    def per_copy_weights(self) -> dict[str, torch.Tensor]:
        """Every weight with a leading copies dimension: {name: (K, *shape)}."""
        return {
            name: getattr(self, name) if self.copies > 1 else getattr(self, name).unsqueeze(0)
            for name in self.weight_shapes
        }

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        feature_dims = 2 if self.copies > 1 else 1
        lead = inputs.shape[:-feature_dims]  # any leading batch dims, possibly none
        rows = inputs.reshape(-1, self.copies, inputs.shape[-1])  # (N, K, F)
        values = self.executor(rows, self.per_copy_weights())  # (N, K, n_outputs)
        if self.copies == 1:
            return values.reshape(*lead, values.shape[-1])
        return values.reshape(*lead, self.copies, values.shape[-1])

    def extra_repr(self) -> str:
        return f"n_qubits={self.n_qubits}, backend={self.backend.name!r}, copies={self.copies}"
