"""One backend seam: a backend registered from outside qepi trains a model, and nothing outside
``qepi/backends/`` reaches into an executor's private state."""

import re
from pathlib import Path

import pennylane as qml
import pytest
import torch
from torch import nn

from qepi.backends import (BackendEntry, Capabilities, ExecutionStats, ExecutorBase, backend_names,
                           register_backend, unregister_backend)
from qepi.layers import QuantumLayer

ROOT = Path(__file__).resolve().parents[2]


class CosineExecutor(ExecutorBase):
    """A toy backend: ⟨Z_i⟩ of RY(x_i + w_i)|0⟩ is cos(x_i + w_i), computed without a simulator."""

    capabilities = Capabilities(measurements=frozenset({"expval"}))

    def __init__(self, qfunc, n_qubits, backend, seed=0):
        self.stats = ExecutionStats()

    def __call__(self, inputs, weights):  # (N, K, F), {"weights": (K, F)} -> (N, K, F)
        self.stats.add(inputs.shape[0] * inputs.shape[1])
        return torch.cos(inputs + weights["weights"].unsqueeze(0))


def circuit(inputs, weights):
    for i in range(2):
        qml.RY(inputs[..., i] + weights[i], wires=i)
    return [qml.expval(qml.PauliZ(i)) for i in range(2)]


@pytest.fixture
def cosine_backend():
    register_backend(BackendEntry("cosine", build=CosineExecutor, summary="cos(x + w)",
                                  capabilities=CosineExecutor.capabilities))
    try:
        yield "cosine"
    finally:
        unregister_backend("cosine")


def test_a_backend_registered_from_a_test_trains_a_model(cosine_backend):
    assert cosine_backend in backend_names()
    torch.manual_seed(0)
    layer = QuantumLayer(circuit, {"weights": 2}, n_qubits=2, backend=cosine_backend)
    reference = QuantumLayer(circuit, {"weights": 2}, n_qubits=2, backend="default.qubit")
    reference.load_state_dict(layer.state_dict())
    x = torch.rand(6, 2, dtype=torch.float64)
    torch.testing.assert_close(layer(x), reference(x))  # the toy computes what the circuit does

    model = nn.Sequential(layer, nn.Linear(2, 1)).double()
    teacher = 0.5 * torch.cos(x[:, 0] + 1.0) - 0.3 * torch.cos(x[:, 1] + 0.5) + 0.1
    y = teacher.unsqueeze(1)  # a target the model can fit exactly
    optimizer = torch.optim.Adam(model.parameters(), lr=0.1)
    losses = []
    for _ in range(20):
        optimizer.zero_grad()
        loss = nn.functional.mse_loss(model(x), y)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]
    assert layer.execution_stats().circuits == 6 * (1 + 20)  # the comparison and 20 steps


def test_an_unregistered_backend_is_refused(cosine_backend):
    unregister_backend(cosine_backend)
    with pytest.raises(ValueError, match="unknown backend 'cosine'"):
        QuantumLayer(circuit, {"weights": 2}, n_qubits=2, backend=cosine_backend)


# `layer._executor`, `executor._plan`, `self.layer.executor._sim`, ... but not `executor.stats`
PRIVATE_ACCESS = re.compile(r"\._executors?\b|executor\)?\._[a-z]")


def test_no_private_executor_access_outside_the_backends():
    """Callers use the executor contract (``layer.executor``, ``execution_stats()``,
    ``reseed``, ``set_executor``) and never an executor's private attributes. A backend's
    own tests (tests/backends/) may read its internals."""
    offenders = []
    for folder in ("qepi", "tests", "benchmarks"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            relative = path.relative_to(ROOT).as_posix()
            if relative.startswith(("qepi/backends/", "tests/backends/")) \
                    or relative == "qepi/layers/quantum_layer.py":  # the layer owns its executors
                continue
            for number, line in enumerate(path.read_text().splitlines(), 1):
                if PRIVATE_ACCESS.search(line):
                    offenders.append(f"{relative}:{number}: {line.strip()}")
    assert offenders == []


def test_the_private_access_pattern_catches_what_it_should():
    caught = ["layer._executor = counter", "executor._program.graph_slots",
              "self.layer.executor._sim", "core.layer._executors"]
    allowed = ["layer.executor.stats.circuits", "layer.set_executor(x)", "executor.reseed(3)"]
    assert all(PRIVATE_ACCESS.search(line) for line in caught)
    assert not any(PRIVATE_ACCESS.search(line) for line in allowed)
