"""QuantumLayer, quantum embedding/attention and their classical twins."""

import pennylane as qml
import pytest
import torch

from qepi.config import Backend, Circuit
from qepi.layers import (
    ClassicalAttention,
    ClassicalEmbedding,
    ForwardRecord,
    QuantumAttention,
    QuantumEmbedding,
    QuantumLayer,
)
from qepi.models import count_parameters

CIRCUIT = Circuit(n_qubits=3, n_layers=2)


def user_circuit(inputs, weights):
    qml.AngleEmbedding(inputs, wires=range(3))
    qml.StronglyEntanglingLayers(weights, wires=range(3))
    return [qml.expval(qml.PauliZ(i)) for i in range(3)]


class CountingExecutor:
    """Wraps an executor and counts how often the simulator is called."""

    def __init__(self, inner):
        self.inner, self.calls = inner, 0

    def __call__(self, inputs, weights):
        self.calls += 1
        return self.inner(inputs, weights)


class TestQuantumLayer:
    def test_matches_pennylane_torchlayer(self):
        torch.manual_seed(0)
        dev = qml.device("default.qubit", wires=3)
        qnode = qml.QNode(user_circuit, dev, interface="torch")
        reference = qml.qnn.TorchLayer(qnode, {"weights": (2, 3, 3)})
        ours = QuantumLayer(qnode, {"weights": (2, 3, 3)})  # the one-line change
        ours.load_state_dict(reference.state_dict())
        x = torch.rand(5, 3, dtype=torch.float64)
        torch.testing.assert_close(ours(x), reference(x).to(torch.float64), atol=1e-6, rtol=0)

    @pytest.mark.parametrize("shape", [(3,), (4, 3), (2, 5, 3), (2, 2, 2, 3)])
    def test_any_leading_batch_dims(self, shape):
        layer = QuantumLayer(user_circuit, {"weights": (1, 3, 3)}, n_qubits=3)
        assert layer(torch.rand(shape)).shape == shape

    @pytest.mark.parametrize("backend", ["default.qubit", "lightning.qubit"])
    def test_one_batched_execution_per_forward(self, backend):
        layer = QuantumLayer(user_circuit, {"weights": (1, 3, 3)}, n_qubits=3, backend=backend)
        counter = CountingExecutor(layer.executor)
        layer.set_executor(counter)
        out = layer(torch.rand(4, 6, 3))
        out.sum().backward()
        assert counter.calls == 1
        assert counter.inner.stats.circuits == 24

    def test_copies_use_their_own_weights(self):
        layer = QuantumLayer(user_circuit, {"weights": (1, 3, 3)}, n_qubits=3, copies=2)
        x = torch.rand(4, 2, 3, dtype=torch.float64)
        out = layer(x)  # (4, 2, 3)
        for k in range(2):
            single = QuantumLayer(user_circuit, {"weights": (1, 3, 3)}, n_qubits=3)
            single.weights.data = layer.weights.data[k].clone()
            torch.testing.assert_close(out[:, k], single(x[:, k]))

    def test_backends_agree_on_values_and_gradients(self):
        x = torch.rand(6, 3, dtype=torch.float64, requires_grad=True)
        results = []
        for backend in ["default.qubit", "lightning.qubit"]:
            torch.manual_seed(1)
            layer = QuantumLayer(user_circuit, {"weights": (2, 3, 3)}, n_qubits=3, backend=backend)
            out = layer(x)
            (gx,) = torch.autograd.grad(out.pow(2).sum(), x)
            results.append((out.detach(), gx))
        # lightning.qubit 0.45 evaluates rotations to ~3e-8 (seen on a single RY against cos)
        torch.testing.assert_close(results[0][0], results[1][0], atol=1e-6, rtol=0)
        torch.testing.assert_close(results[0][1], results[1][1], atol=1e-6, rtol=0)

    def test_plain_function_takes_its_wires_from_the_circuit(self):
        layer = QuantumLayer(user_circuit, {"weights": (1, 3, 3)}, backend="exact")
        assert layer.n_qubits is None
        x = torch.rand(4, 3, dtype=torch.float64)
        qnode = qml.QNode(user_circuit, qml.device("default.qubit", wires=3))
        expected = torch.stack(qnode(x, layer.weights.double()), -1)
        torch.testing.assert_close(layer(x), expected)
        assert layer.n_qubits == 3

    def test_shots_on_exact_pennylane_devices_are_refused(self):
        with pytest.raises(ValueError, match="backend.shots"):  # when the layer is built
            QuantumLayer(user_circuit, {"weights": (1, 3, 3)}, n_qubits=3,
                         backend=Backend(name="lightning.qubit", shots=100))


EMBEDDINGS = [QuantumEmbedding, ClassicalEmbedding]
ATTENTIONS = [QuantumAttention, ClassicalAttention]


class TestTwins:
    @pytest.mark.parametrize("cls", EMBEDDINGS)
    @pytest.mark.parametrize("d_model", [3, 8])
    def test_embedding_shapes_for_tokens_and_features(self, cls, d_model):
        tokens = cls(d_model, CIRCUIT, vocab_size=5)
        features = cls(d_model, CIRCUIT, n_features=7)
        assert tokens(torch.randint(0, 5, (2, 4))).shape == (2, 4, d_model)
        assert features(torch.rand(2, 4, 7)).shape == (2, 4, d_model)
        assert features(torch.rand(6, 7)).shape == (6, d_model)

    @pytest.mark.parametrize("cls", EMBEDDINGS)
    def test_embedding_core_output_lies_in_expectation_range(self, cls):
        emb = cls(3, CIRCUIT, n_features=2)  # d_model == n_qubits: no projection
        out = emb(10 * torch.randn(50, 2))
        assert out.abs().max() <= 1.0 + 1e-6

    @pytest.mark.parametrize("cls", ATTENTIONS)
    @pytest.mark.parametrize("style", ["qkv", "gaussian"])
    def test_attention_shapes_and_weights(self, cls, style):
        attn = cls(8, n_heads=2, circuit=CIRCUIT, style=style)
        record = ForwardRecord()
        out = attn(torch.rand(3, 5, 8), record=record)
        assert out.shape == (3, 5, 8)
        weights = record.attention[attn]
        assert weights.shape == (3, 2, 5, 5)
        torch.testing.assert_close(weights.sum(-1), torch.ones(3, 2, 5))

    @pytest.mark.parametrize("cls", ATTENTIONS)
    def test_padding_and_causal_masks(self, cls):
        torch.manual_seed(0)
        attn = cls(8, n_heads=1, circuit=CIRCUIT, causal=True)
        x = torch.rand(1, 5, 8, dtype=torch.float32)
        mask = torch.tensor([[True, True, True, False, False]])
        record = ForwardRecord()
        out = attn(x, mask, record)
        weights = record.attention[attn][0, 0]
        assert torch.all(weights.triu(1) == 0)  # no query looks ahead
        assert torch.all(weights[:, 3:] == 0)  # nobody attends to padding
        changed = x.clone()
        changed[0, 3:] = torch.rand(2, 8)
        torch.testing.assert_close(attn(changed, mask)[0, :3], out[0, :3])

    def test_gaussian_weights_follow_the_formula(self):
        attn = QuantumAttention(6, n_heads=1, circuit=CIRCUIT, style="gaussian")
        x = torch.rand(1, 4, 6)
        record = ForwardRecord()
        attn(x, record=record)
        values = attn.core(attn.to_angles(x).view(1, 4, 3, 3))  # (1, T, 3, n_qubits)
        q, k = values[0, :, 0, 0], values[0, :, 1, 0]
        expected = torch.softmax(-(q[:, None] - k[None, :]) ** 2, dim=-1)
        torch.testing.assert_close(record.attention[attn][0, 0], expected)

    @pytest.mark.parametrize("quantum, classical", [(QuantumEmbedding, ClassicalEmbedding),
                                                    (QuantumAttention, ClassicalAttention)])
    def test_match_params_brings_counts_closer(self, quantum, classical):
        kwargs = {"n_features": 3} if quantum is QuantumEmbedding else {}
        q = count_parameters(quantum(8, circuit=Circuit(n_qubits=4, n_layers=4), **kwargs).core)
        plain = count_parameters(classical(8, circuit=Circuit(n_qubits=4, n_layers=4), **kwargs).core)
        matched = count_parameters(
            classical(8, circuit=Circuit(n_qubits=4, n_layers=4), match_params=True, **kwargs).core)
        assert abs(matched - q) < abs(plain - q)
        assert abs(matched - q) <= 0.25 * q
