"""QuantumLayer with K copies: each copy runs its own weights, or the layer refuses."""

import pennylane as qml
import pytest
import torch

from qepi.errors import UserError
from qepi.layers import QuantumLayer


def _first_weight_by_copy_axis(inputs, weights):
    qml.RY(inputs[..., 0], wires=0)
    qml.RX(weights[0], wires=0)  # with copies, weights[0] is copy 0's whole weight set
    return qml.expval(qml.PauliZ(0))


def _first_weight_by_last_axis(inputs, weights):
    qml.RY(inputs[..., 0], wires=0)
    qml.RX(weights[..., 0], wires=0)
    qml.StronglyEntanglingLayers(weights[..., 1:].reshape(*weights.shape[:-1], 1, 1, 3), wires=[0])
    return qml.expval(qml.PauliZ(0))


@pytest.mark.parametrize("backend", ["default.qubit", "exact", "aer"])
def test_weights_read_across_the_copies_axis_are_refused(backend):
    """copies=K gives the circuit (K, ...) weights: weights[0] would run copy 0's weights in
    every copy (silently, on batched simulators); the layer names the gate instead."""
    with pytest.raises(UserError, match=r"RX on wires \[0\].*weights\[\.\.\., 0\]"):
        QuantumLayer(_first_weight_by_copy_axis, {"weights": 2}, n_qubits=1, copies=2,
                     backend=backend)(torch.rand(3, 2, 1))
    layer = QuantumLayer(_first_weight_by_last_axis, {"weights": 4}, n_qubits=1, copies=3,
                         backend=backend)
    x = torch.rand(5, 3, 1)
    out = layer(x)  # (5, 3): each copy equals a one-copy layer holding that copy's weights
    for c in range(3):
        single = QuantumLayer(_first_weight_by_last_axis, {"weights": 4}, n_qubits=1,
                              backend=backend, init_method={"weights": layer.weights[c].detach()})
        torch.testing.assert_close(out[:, c], single(x[:, c]), atol=1e-6, rtol=0)
