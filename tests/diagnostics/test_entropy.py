"""Entanglement, Shannon and attention entropies against PennyLane and hand calculations."""

import math

import numpy as np
import pennylane as qml
import pytest
import torch

from qepi.config import Config, update
from qepi.diagnostics.entropy import (
    EntropyMonitor,
    attention_entropy,
    entanglement_entropy,
    predictive_entropy,
    shannon_entropy,
    token_entanglement_entropy,
)
from qepi.diagnostics.states import circuit_states
from qepi.layers import ForwardRecord
from qepi.models import HybridTransformer, InputSpec


def random_states(n_qubits, count, seed=0):
    rng = np.random.default_rng(seed)
    psi = rng.normal(size=(count, 2**n_qubits)) + 1j * rng.normal(size=(count, 2**n_qubits))
    return psi / np.linalg.norm(psi, axis=1, keepdims=True)


def tiny_model(entangling=True, attention="quantum"):
    cfg = update(Config(), circuit={"n_qubits": 2, "n_layers": 1, "entangling": entangling},
                 model={"d_model": 4, "n_heads": 2, "d_ff": 8, "attention": attention})
    torch.manual_seed(0)
    return HybridTransformer(cfg, InputSpec(seq_len=4, n_classes=2, vocab_size=3))


class TestEntanglementEntropy:
    def test_bell_pair_is_ln2(self):
        def bell(_):
            qml.Hadamard(0)
            qml.CNOT([0, 1])

        state = circuit_states(bell, 2, np.zeros(1))
        assert entanglement_entropy(state, [0])[0] == pytest.approx(math.log(2), abs=1e-12)
        assert entanglement_entropy(state, [1])[0] == pytest.approx(math.log(2), abs=1e-12)

    def test_product_state_is_zero(self):
        def product(x):
            qml.RY(x[..., 0], 0)
            qml.RX(x[..., 1], 1)
            qml.RY(x[..., 2], 2)

        states = circuit_states(product, 3, np.random.default_rng(1).uniform(0, 6, (5, 3)))
        assert np.allclose(entanglement_entropy(states, [0, 2]), 0.0, atol=1e-10)

    @pytest.mark.parametrize("wires_a", [[0], [1], [0, 2], [1, 2, 3]])
    def test_matches_pennylane_vn_entropy(self, wires_a):
        states = random_states(4, 6)
        expected = [qml.math.vn_entropy(qml.math.dm_from_state_vector(s), indices=wires_a)
                    for s in states]
        assert np.allclose(entanglement_entropy(states, wires_a), expected, atol=1e-10)

    def test_bad_partition_is_an_error(self):
        with pytest.raises(ValueError, match="wires_a"):
            entanglement_entropy(random_states(2, 1), [2])


class TestShannon:
    def test_values(self):
        p = torch.tensor([[0.25, 0.25, 0.25, 0.25], [1.0, 0.0, 0.0, 0.0], [0.5, 0.5, 0.0, 0.0]])
        assert shannon_entropy(p).tolist() == pytest.approx([math.log(4), 0.0, math.log(2)])

    def test_predictive_entropy_of_equal_logits_is_log_classes(self):
        assert float(predictive_entropy(torch.zeros(5, 3))) == pytest.approx(math.log(3))

    def test_attention_entropy_respects_the_mask(self):
        model = tiny_model()
        x = torch.randint(0, 3, (3, 4))
        mask = torch.tensor([[True] * 4, [True, True, True, False], [True, True, False, False]])
        record = ForwardRecord()
        model(x, mask, record)
        (name, heads), = attention_entropy(model, record, mask).items()
        w = record.attention[model.blocks[0].attention].double()  # (B, H, T, T)
        ent = -(w * w.clamp_min(1e-300).log()).sum(-1)  # (B, H, T)
        expected = [np.mean([ent[b, h, t].item() for b in range(3) for t in range(4) if mask[b, t]])
                    for h in range(2)]
        assert heads.tolist() == pytest.approx(expected)
        assert all(0 <= v <= math.log(4) + 1e-12 for v in heads.tolist())


class TestTokenEntanglement:
    def test_matches_an_independent_qnode(self):
        model = tiny_model()
        x = torch.randint(0, 3, (2, 4))
        ent = token_entanglement_entropy(model, x)
        assert ent["embedding.core.layer"].shape == (2, 4)
        assert ent["blocks.0.attention.core.layer"].shape == (2, 4, 6)  # 3 circuits x 2 heads
        # token (1, 2) of the embedding, recomputed with a QNode measuring qml.vn_entropy
        layer = model.embedding.core.layer
        angles = model.embedding.to_angles(x)[1, 2].detach().double()

        tape = qml.tape.make_qscript(layer.qfunc)(angles, weights=layer.weights.detach().double())

        @qml.qnode(qml.device("default.qubit", wires=2))
        def entropy():
            for op in tape.operations:
                qml.apply(op)
            return qml.vn_entropy(wires=[0])

        assert ent["embedding.core.layer"][1, 2] == pytest.approx(float(entropy()), abs=1e-9)
        assert ent["embedding.core.layer"].max() > 1e-3  # the comparison is not 0 == 0

    def test_no_entanglement_control_has_zero_entropy(self):
        ent = token_entanglement_entropy(tiny_model(entangling=False), torch.randint(0, 3, (2, 4)))
        assert all(np.allclose(v, 0.0, atol=1e-10) for v in ent.values())


class TestEntropyMonitor:
    def test_epoch_rows(self):
        model = tiny_model()
        monitor = EntropyMonitor(torch.randint(0, 3, (4, 4)))

        class FakeTrainer:
            pass

        trainer = FakeTrainer()
        trainer.model = model
        metrics = {"train_loss": 1.0}
        monitor.on_epoch_end(trainer, 0, metrics)
        assert monitor.history[0]["epoch"] == 0
        assert 0 <= metrics["predictive_entropy"] <= math.log(2) + 1e-12
        expected = {"attention_entropy/blocks.0.attention/head1", "entanglement/embedding.core.layer"}
        assert expected <= set(metrics)


def test_importing_diagnostics_does_not_import_qiskit():
    import subprocess
    import sys

    code = "import sys, qepi.diagnostics; print(any(m.startswith('qiskit') for m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_monitor_leaves_padding_out_of_the_entanglement_mean():
    model = tiny_model()
    x = torch.randint(0, 3, (2, 4))
    mask = torch.tensor([[True, True, True, True], [True, False, False, False]])
    row = EntropyMonitor(x, mask).measure(model)
    ent = token_entanglement_entropy(model, x, mask)["embedding.core.layer"]  # (B, T)
    expected = np.mean([ent[0, 0], ent[0, 1], ent[0, 2], ent[0, 3], ent[1, 0]])
    assert row["entanglement/embedding.core.layer"] == pytest.approx(expected)
