"""Batches whose states exceed memory: split into blocks that fit (same values and gradients),
or one line when not even one row fits. Memory is a monkeypatched figure, never exhausted."""

from types import SimpleNamespace

import pennylane as qml
import pytest
import torch

import qepi.backends
from qepi.backends import rows_that_fit, state_bytes
from qepi.config import Backend
from qepi.errors import UserError
from qepi.layers import QuantumLayer

N_QUBITS, COPIES = 3, 2


def circuit(inputs, weights):
    qml.AngleEmbedding(inputs, wires=range(N_QUBITS))
    qml.StronglyEntanglingLayers(weights, wires=range(N_QUBITS))
    return [qml.expval(qml.PauliZ(i)) for i in range(N_QUBITS)]


def available(monkeypatch, bytes_free: int) -> None:
    """Pretend ``bytes_free`` bytes are free and check every execution against it."""
    monkeypatch.setattr("psutil.virtual_memory", lambda: SimpleNamespace(available=bytes_free))
    monkeypatch.setattr(qepi.backends, "MEMORY_CHECK_BYTES", 0)


class Counting:
    """An executor that records the rows of every call it passes on."""

    def __init__(self, inner):
        self.inner, self.calls = inner, []
        self.capabilities, self.stats = inner.capabilities, inner.stats

    def __call__(self, inputs, weights):
        self.calls.append(inputs.shape[0])
        return self.inner(inputs, weights)


def layer_on(backend: str) -> QuantumLayer:
    torch.manual_seed(0)
    return QuantumLayer(circuit, {"weights": (2, N_QUBITS, 3)}, backend=backend, n_qubits=N_QUBITS,
                        copies=COPIES)


def values_and_gradients(layer, x):
    x = x.clone().requires_grad_(True)
    out = layer(x)  # (B, T, K, n_outputs)
    (out * torch.linspace(-1, 1, out.numel()).view_as(out)).sum().backward()
    return out.detach(), x.grad, layer.weights.grad


def test_a_batch_too_large_for_memory_runs_in_blocks_with_the_same_values_and_gradients(monkeypatch):
    x = torch.rand(5, 7, COPIES, N_QUBITS, dtype=torch.float64)  # 35 rows of 2 circuits
    reference = values_and_gradients(layer_on("default.qubit"), x)  # unsplit, another simulator
    layer = layer_on("exact")
    counting = Counting(layer.executor)
    layer.set_executor(counting)
    per_row = COPIES * state_bytes(N_QUBITS, Backend(name="exact"))
    available(monkeypatch, 2 * 8 * per_row)  # half of it holds 8 rows
    chunked = values_and_gradients(layer, x)
    assert counting.calls[:5] == [8, 8, 8, 8, 3]  # forward in blocks (then recomputed in backward)
    for got, want in zip(chunked, reference):
        torch.testing.assert_close(got, want)


def test_without_gradients_blocks_run_once(monkeypatch):
    layer = layer_on("exact")
    counting = Counting(layer.executor)
    layer.set_executor(counting)
    available(monkeypatch, 2 * 4 * COPIES * state_bytes(N_QUBITS, Backend(name="exact")))
    with torch.no_grad():
        layer(torch.rand(10, COPIES, N_QUBITS, dtype=torch.float64))
    assert counting.calls == [4, 4, 2]


def test_not_even_one_row_fits_is_one_line(monkeypatch):
    layer = layer_on("exact")
    layer.executor  # built while the memory is there; it shrinks before the batch runs
    available(monkeypatch, COPIES * state_bytes(N_QUBITS, Backend(name="exact")))  # twice too little
    with pytest.raises(UserError) as err:
        layer(torch.rand(4, COPIES, N_QUBITS, dtype=torch.float64))
    message = str(err.value)
    assert "\n" not in message and message.startswith("circuit.n_qubits=3: one input row (2 circuit(s))")
    assert "more than half of the" in message and "lower circuit.n_qubits" in message


def test_rows_that_fit_by_hand(monkeypatch):
    backend = Backend(name="default.qubit")  # 16 bytes per amplitude
    available(monkeypatch, 10 * 2 * 16 * 2**4)  # half of it: 10 rows of one 4-qubit state
    assert rows_that_fit(4, backend, n_rows=100) == 10
    assert rows_that_fit(4, backend, n_rows=7) == 7
    assert rows_that_fit(4, backend, n_rows=100, copies=3) == 3


def test_aer_bounds_its_own_memory_so_its_rows_are_not_split(monkeypatch):
    layer = layer_on("aer")
    counting = Counting(layer.executor)
    layer.set_executor(counting)
    available(monkeypatch, 1)  # would refuse any row, were aer's rows split here
    layer(torch.rand(6, COPIES, N_QUBITS, dtype=torch.float64))
    assert counting.calls == [6]
