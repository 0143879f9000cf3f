"""Variational ansätze. Each owns its weight shape and validates the weights it is given.

An ansatz is called as ``ansatz(weights, wires, entangling=True)`` with ``weights`` of
shape ``ansatz.shape(n_layers, n_qubits)`` or with one extra leading batch dimension.
``entangling=False`` drops every entangling gate and keeps the single-qubit rotations:
the product-state control of an experiment.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import pennylane as qml


@dataclass(frozen=True)
class Ansatz:
    """A layered ansatz: ``layer(weights_of_one_layer, wires, entangling, layer_index)``."""

    name: str
    params_per_qubit: int  # weights per wire per layer
    layer: Callable[..., None]
    doc: str

    def shape(self, n_layers: int, n_qubits: int) -> tuple[int, int, int]:
        """Weight shape for ``n_layers`` layers on ``n_qubits`` wires."""
        if n_layers < 1 or n_qubits < 1:
            raise ValueError(f"{self.name}: n_layers and n_qubits must be >= 1")
        return (n_layers, n_qubits, self.params_per_qubit)

    def validate(self, weights, n_qubits: int) -> None:
        """Raise ValueError unless ``weights`` is (L, n_qubits, p) or (batch, L, n_qubits, p)."""
        shape = tuple(weights.shape)
        if len(shape) not in (3, 4) or shape[-2:] != (n_qubits, self.params_per_qubit):
            raise ValueError(
                f"{self.name}: weights must have shape (n_layers, {n_qubits}, "
                f"{self.params_per_qubit}) with an optional batch dimension, got {shape}"
            )

    def __call__(self, weights, wires: Sequence, entangling: bool = True) -> None:
        self.validate(weights, len(wires))
        for index in range(weights.shape[-3]):
            self.apply_layer(weights, index, wires, entangling)

    def apply_layer(self, weights, index: int, wires: Sequence, entangling: bool = True) -> None:
        """Apply layer ``index`` of ``weights`` (used for data re-uploading)."""
        self.layer(weights[..., index, :, :], list(wires), entangling, index)


def _strongly_entangling(w, wires, entangling, index):
    n = len(wires)
    for i, wire in enumerate(wires):
        qml.Rot(w[..., i, 0], w[..., i, 1], w[..., i, 2], wires=wire)
    if entangling and n > 1:
        r = index % (n - 1) + 1  # the range grows with depth, as in qml.StronglyEntanglingLayers
        for i in range(n):
            qml.CNOT(wires=[wires[i], wires[(i + r) % n]])


def _hardware_efficient(w, wires, entangling, index):
    for i, wire in enumerate(wires):
        qml.RY(w[..., i, 0], wires=wire)
        qml.RZ(w[..., i, 1], wires=wire)
    if entangling:
        for i in range(len(wires) - 1):
            qml.CZ(wires=[wires[i], wires[i + 1]])


def _basic_entangler(w, wires, entangling, index):
    n = len(wires)
    for i, wire in enumerate(wires):
        qml.RX(w[..., i, 0], wires=wire)
    if entangling and n > 1:
        pairs = [(0, 1)] if n == 2 else [(i, (i + 1) % n) for i in range(n)]
        for a, b in pairs:
            qml.CNOT(wires=[wires[a], wires[b]])


def _sim14(w, wires, entangling, index):
    n = len(wires)
    for i, wire in enumerate(wires):
        qml.RY(w[..., i, 0], wires=wire)
    if entangling and n > 1:
        # first CRX ring, control i -> target i+1, from the last qubit down
        for i in reversed(range(n)):
            qml.CRX(w[..., i, 1], wires=[wires[i], wires[(i + 1) % n]])
    for i, wire in enumerate(wires):
        qml.RY(w[..., i, 2], wires=wire)
    if entangling and n > 1:
        # second CRX ring, control i -> target i-1, starting at the last qubit
        for i in [n - 1, *range(n - 1)]:
            qml.CRX(w[..., i, 3], wires=[wires[i], wires[(i - 1) % n]])


ANSATZE: dict[str, Ansatz] = {
    a.name: a
    for a in [
        Ansatz(
            "strongly_entangling",
            3,
            _strongly_entangling,
            "Rot on every wire, then a CNOT ring whose range grows with depth "
            "(equal to qml.StronglyEntanglingLayers).",
        ),
        Ansatz(
            "hardware_efficient",
            2,
            _hardware_efficient,
            "RY and RZ on every wire, then a CZ ladder between neighbours.",
        ),
        Ansatz(
            "basic_entangler",
            1,
            _basic_entangler,
            "RX on every wire, then a CNOT ring (equal to qml.BasicEntanglerLayers).",
        ),
        Ansatz(
            "sim14",
            4,
            _sim14,
            "Circuit 14 of Sim et al. 2019: RY layer, CRX ring, RY layer, reversed CRX ring.",
        ),
    ]
}
