"""Data encodings: classical features -> rotation angles on the wires.

Each encoding takes ``inputs`` of shape (..., n_features) (a leading batch dimension is
broadcast by PennyLane) and needs exactly one feature per wire: a mismatch is an error,
never a silent truncation.
"""

from __future__ import annotations

from collections.abc import Sequence

import pennylane as qml


def _check_features(name: str, inputs, wires: Sequence) -> None:
    n_features = inputs.shape[-1]
    if n_features != len(wires):
        raise ValueError(
            f"{name} encoding needs one feature per wire: got {n_features} features "
            f"for {len(wires)} wires"
        )


def angle_encoding(inputs, wires: Sequence, entangling: bool = True) -> None:
    """RY(x_i) on wire i: each feature is a rotation angle.

    ``entangling`` is accepted for a uniform signature; angle encoding never entangles.

    >>> tape = qml.tape.make_qscript(angle_encoding)(qml.numpy.array([0.1, 0.2]), wires=[0, 1])
    >>> [op.name for op in tape.operations]
    ['RY', 'RY']
    """
    _check_features("angle", inputs, wires)
    for i, wire in enumerate(wires):
        qml.RY(inputs[..., i], wires=wire)


def iqp_encoding(inputs, wires: Sequence, entangling: bool = True) -> None:
    """IQP-style encoding: H, RZ(x_i), then ZZ phases exp(-i x_i x_{i+1} Z Z / 2) on a chain.

    With ``entangling=False`` the ZZ phases (the only entangling gates) are left out.

    >>> tape = qml.tape.make_qscript(iqp_encoding)(qml.numpy.array([0.1, 0.2]), wires=[0, 1])
    >>> [op.name for op in tape.operations]
    ['Hadamard', 'Hadamard', 'RZ', 'RZ', 'IsingZZ']
    """
    _check_features("iqp", inputs, wires)
    for wire in wires:
        qml.Hadamard(wires=wire)
    for i, wire in enumerate(wires):
        qml.RZ(inputs[..., i], wires=wire)
    if entangling:
        for i in range(len(wires) - 1):
            qml.IsingZZ(inputs[..., i] * inputs[..., i + 1], wires=[wires[i], wires[i + 1]])
