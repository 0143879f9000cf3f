"""The quantum core of every qepi layer and its classical twin.

Both map angle vectors (..., K, n_qubits) to values in [-1, 1] of shape (..., K, n_outputs),
for K independent copies (e.g. the Q, K and V circuits of every head).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from qepi.circuits import build_circuit
from qepi.config import Backend, Circuit
from qepi.layers.quantum_layer import QuantumLayer


class CircuitMap(nn.Module):
    """K copies of the configured circuit: angles (..., K, n_qubits) -> ⟨Z_i⟩ (..., K, n_qubits)."""

    def __init__(self, circuit: Circuit, backend: Backend, copies: int = 1, seed: int = 0):
        super().__init__()
        spec = build_circuit(circuit)
        self.n_inputs = self.n_outputs = spec.n_outputs
        self.copies = copies
        self.layer = QuantumLayer(
            spec.qfunc, spec.weight_shapes, n_qubits=spec.n_qubits, backend=backend,
            copies=copies, seed=seed,
        )

    def forward(self, angles: torch.Tensor) -> torch.Tensor:
        if self.copies == 1:
            return self.layer(angles.squeeze(-2)).unsqueeze(-2)
        return self.layer(angles)


def matched_hidden_width(n_in: int, n_out: int, target_params: int) -> int:
    """Hidden width h whose two-layer map n_in -> h -> n_out has about ``target_params`` weights."""
    return max(1, round((target_params - n_out) / (n_in + 1 + n_out)))


class ClassicalMap(nn.Module):
    """The classical twin of :class:`CircuitMap`: per copy ``tanh(Linear(x))``.

    With ``match_params`` the per-copy map gets a hidden tanh layer sized so that its
    parameter count is as close as possible to the circuit's.
    """

    def __init__(self, circuit: Circuit, copies: int = 1, match_params: bool = False):
        super().__init__()
        n = circuit.n_qubits
        self.n_inputs = self.n_outputs = n
        self.copies = copies
        widths = [n, n]
        if match_params:
            target = math.prod(build_circuit(circuit).weight_shapes["weights"])
            widths = [n, matched_hidden_width(n, n, target), n]
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        for fan_in, fan_out in zip(widths[:-1], widths[1:]):
            bound = 1 / math.sqrt(fan_in)
            self.weights.append(nn.Parameter(torch.empty(copies, fan_in, fan_out).uniform_(-bound, bound)))
            self.biases.append(nn.Parameter(torch.empty(copies, fan_out).uniform_(-bound, bound)))

    def forward(self, angles: torch.Tensor) -> torch.Tensor:
        x = angles  # (..., K, n_qubits)
        for w, b in zip(self.weights, self.biases):
            x = torch.tanh(torch.einsum("...ki,kio->...ko", x, w) + b)  # (..., K, width)
        return x
