"""Epigenetic circuit layer: silencing, expression ratio, mark sets, expressed-only shift, twin."""

import math
from unittest.mock import patch

import pennylane as qml
import pytest
import torch

from qepi.circuits import build_circuit
from qepi.config import Backend, Circuit, Config, Regulation, update
from qepi.layers import (
    ClassicalEpigeneticMap,
    EpigeneticMap,
    ForwardRecord,
    RegulatedAttention,
    RegulatedEmbedding,
)
from qepi.layers.epigenetic import (
    add_mark_set,
    epigenetic_qfunc,
    erase_marks,
    freeze_genome,
    mark_sets,
    regulation_report,
    use_marks,
)
from qepi.models import HybridTransformer, InputSpec, count_parameters

CIRCUIT = Circuit(n_qubits=2, n_layers=1)  # strongly entangling: 6 angles


def set_logits(core, bias, weight_std=0.0, seed=0):
    """Make the transcription factor emit ``bias`` (+ a context-dependent part)."""
    gen = torch.Generator().manual_seed(seed)
    last = core.tf.net[-1]
    with torch.no_grad():
        last.weight.copy_(torch.randn(last.weight.shape, generator=gen) * weight_std)
        last.bias.copy_(torch.as_tensor(bias, dtype=last.bias.dtype).expand_as(last.bias))


class TestSilencing:
    @pytest.mark.parametrize("circuit", [
        Circuit(n_qubits=3, n_layers=2, ansatz="sim14"),  # every gate is a rotation
        Circuit(n_qubits=3, n_layers=2, entangling=False),
    ])
    def test_marks_at_zero_give_the_identity_circuit(self, circuit):
        # the ansatz is silenced: only RY(x_i) remains, so <Z_i> = cos(x_i) by hand
        spec = build_circuit(circuit)
        shape = spec.weight_shapes["weights"]
        qfunc = epigenetic_qfunc(spec.qfunc, 3, shape, offsets=False)
        dev = qml.device("default.qubit", wires=3)
        x = torch.tensor([0.3, 1.1, -0.7], dtype=torch.float64)
        inputs = torch.cat([x, torch.zeros(math.prod(shape), dtype=torch.float64)])
        weights = torch.rand(shape, dtype=torch.float64) * 6
        out = torch.stack(qml.QNode(qfunc, dev)(inputs, weights))
        torch.testing.assert_close(out, torch.cos(x), atol=1e-12, rtol=0)

    def test_marks_at_zero_leave_only_the_fixed_entangling_gates(self):
        spec = build_circuit(Circuit(n_qubits=3, n_layers=2))
        qfunc = epigenetic_qfunc(spec.qfunc, 3, (2, 3, 3), offsets=False)
        dev = qml.device("default.qubit", wires=3)
        x = torch.tensor([0.3, 1.1, -0.7], dtype=torch.float64)

        def skeleton():  # RY encoding, then the two CNOT rings of ranges 1 and 2
            for i in range(3):
                qml.RY(x[i], wires=i)
            for r in (1, 2):
                for i in range(3):
                    qml.CNOT(wires=[i, (i + r) % 3])
            return [qml.expval(qml.PauliZ(i)) for i in range(3)]

        inputs = torch.cat([x, torch.zeros(18, dtype=torch.float64)])
        out = torch.stack(qml.QNode(qfunc, dev)(inputs, torch.rand(2, 3, 3, dtype=torch.float64)))
        torch.testing.assert_close(out, torch.stack(qml.QNode(skeleton, dev)()), atol=1e-12, rtol=0)

    @pytest.mark.parametrize("hard", [True, False])
    def test_silencing_logits_give_the_identity_layer(self, hard):
        core = EpigeneticMap(Circuit(n_qubits=2, n_layers=1, ansatz="sim14"), regulation=Regulation(hard=hard))
        set_logits(core, -60.0)  # soft marks ~1e-26, hard marks exactly 0
        x = torch.rand(4, 1, 2)
        record = ForwardRecord()
        torch.testing.assert_close(core(x, record=record), torch.cos(x), atol=1e-6, rtol=0)
        assert core.expression_ratio(record) == 0.0

    def test_marks_at_one_give_the_genome_circuit(self):
        core = EpigeneticMap(CIRCUIT, regulation=Regulation(hard=True))
        set_logits(core, 5.0)
        dev = qml.device("default.qubit", wires=2)
        qnode = qml.QNode(build_circuit(CIRCUIT).qfunc, dev)
        x = torch.rand(3, 1, 2, dtype=torch.float64)
        expected = torch.stack(qnode(x[:, 0], core.layer.weights.detach().double()), -1)
        torch.testing.assert_close(core(x)[:, 0].double(), expected, atol=1e-6, rtol=0)

    def test_offsets_shift_the_angles(self):
        spec = build_circuit(Circuit(n_qubits=1, n_layers=1, ansatz="basic_entangler"))
        qfunc = epigenetic_qfunc(spec.qfunc, 1, (1, 1, 1), offsets=True)
        tape = qml.tape.make_qscript(qfunc)(torch.tensor([0.2, 0.5, 0.3]), torch.full((1, 1, 1), 2.0))
        assert [float(op.parameters[0]) for op in tape.operations] == pytest.approx([0.2, 1.3])


class TestExpressionRatio:
    def test_matches_a_hand_count_of_fixed_marks(self):
        core = EpigeneticMap(CIRCUIT, regulation=Regulation(hard=True))
        set_logits(core, [2.0, -1.0, 0.5, -3.0, -0.2, -4.0])  # 2 of 6 marks above 0.5
        record = ForwardRecord()
        core(torch.rand(5, 1, 2), record=record)
        assert core.expression_ratio(record) == pytest.approx(2 / 6)
        assert core.expression_per_token(record).tolist() == pytest.approx([2 / 6] * 5)
        assert core.report(record)["expressed_params_per_token"] == pytest.approx(2)

    def test_matches_a_hand_count_per_token(self):
        core = EpigeneticMap(CIRCUIT, copies=3, regulation=Regulation(threshold=0.7))
        set_logits(core, 0.0, weight_std=2.0)
        x = torch.rand(4, 7, 3, 2)
        record = ForwardRecord()
        core(x, record=record)
        net = core.tf.net
        hidden = torch.nn.functional.gelu(x.flatten(-2) @ net[0].weight.T + net[0].bias)
        logits = (hidden @ net[2].weight.T + net[2].bias).view(4, 7, 3, 6)
        hand = (logits > math.log(0.7 / 0.3)).float().mean(dim=(-2, -1))  # sigmoid(l) > 0.7
        torch.testing.assert_close(core.expression_per_token(record), hand)
        assert 0 < core.expression_ratio(record) < 1

    @pytest.mark.parametrize("hard", [True, False])
    def test_penalty_steers_the_expression_toward_the_target(self, hard):
        torch.manual_seed(0)
        core = ClassicalEpigeneticMap(CIRCUIT, regulation=Regulation(target=0.2, penalty=1.0, hard=hard))
        # Adam for the piecewise-constant hard penalty, plain gradient descent for the smooth one
        optimizer = (torch.optim.Adam(core.parameters(), lr=0.05) if hard
                     else torch.optim.SGD(core.parameters(), lr=10.0))
        x = torch.rand(32, 1, 2)

        def forward() -> ForwardRecord:
            record = ForwardRecord()
            core(x, record=record)
            return record

        assert core.expression_ratio(forward()) == 1.0  # every gate starts expressed
        for _ in range(60):
            optimizer.zero_grad()
            forward().regularization_loss().backward()
            optimizer.step()
        record = forward()
        if hard:  # the expression ratio itself
            assert core.expression_ratio(record) == pytest.approx(0.2, abs=0.03)
        else:  # the mean mark: the penalty is 1 · (mean mark - 0.2)²
            assert math.sqrt(record.regularization_loss().item()) <= 0.03


class TestMarkSets:
    def model(self):
        torch.manual_seed(0)
        cfg = update(Config(), circuit={"n_qubits": 2, "n_layers": 1},
                     regulation={"embedding": "epigenetic", "attention": "epigenetic", "offsets": True})
        return HybridTransformer(cfg, InputSpec(seq_len=4, n_classes=2, vocab_size=4))

    def test_erasing_restores_the_base_model_bit_for_bit(self):
        model = self.model()
        x = torch.randint(0, 4, (3, 4))
        base_out = model(x).detach()
        base_state = {k: v.clone() for k, v in model.state_dict().items()}
        for name in ("a", "b"):
            add_mark_set(model, name)
            with torch.no_grad():
                for module_name, p in model.named_parameters():
                    if f"mark_sets.{name}" in module_name:
                        p.normal_(0, 2.0)
        assert mark_sets(model) == ["a", "b"]
        assert not torch.equal(model(x), base_out)
        use_marks(model, None)
        assert torch.equal(model(x), base_out)  # switching off is exact
        erase_marks(model, "a")
        erase_marks(model, "b")
        assert torch.equal(model(x), base_out)
        state = model.state_dict()
        assert state.keys() == base_state.keys()
        assert all(torch.equal(state[k], base_state[k]) for k in state)

    def test_freeze_genome_leaves_only_the_marks_trainable(self):
        model = self.model()
        add_mark_set(model, "task")
        count = freeze_genome(model, "task")
        # embedding: 1 copy x 6 angles x (mark + offset); attention: 6 copies x 6 x 2
        assert count == count_parameters(model) == 1 * 12 + 6 * 12
        names = [n for n, p in model.named_parameters() if p.requires_grad]
        assert names and all("mark_sets.task" in n for n in names)

    def test_switching_mark_sets_switches_behaviour(self):
        # task "a": class = <Z> > 0; task "b": the opposite, on the same inputs
        torch.manual_seed(0)
        core = EpigeneticMap(Circuit(n_qubits=1, n_layers=1), regulation=Regulation(offsets=True))
        x = torch.rand(64, 1, 1) * 2 * math.pi
        labels = {"a": (torch.cos(x[:, 0, 0]) > 0).float(), "b": (torch.cos(x[:, 0, 0]) <= 0).float()}
        for name, y in labels.items():
            add_mark_set(core, name)
            freeze_genome(core, name)
            optimizer = torch.optim.Adam([core.tf.mark_sets[name]], lr=0.3)
            for _ in range(20):
                optimizer.zero_grad()
                loss = torch.nn.functional.binary_cross_entropy_with_logits(3 * core(x)[:, 0, 0], y)
                loss.backward()
                optimizer.step()

        def accuracy(name, task):
            use_marks(core, name)
            with torch.no_grad():
                return ((core(x)[:, 0, 0] > 0).float() == labels[task]).float().mean().item()

        assert accuracy("a", "a") > 0.9 and accuracy("b", "b") > 0.9
        assert accuracy("a", "b") < 0.1 and accuracy("b", "a") < 0.1

    def test_a_rebuilt_model_loads_the_mark_sets(self):
        model = self.model()
        add_mark_set(model, "task")
        with torch.no_grad():
            for name, p in model.named_parameters():
                if "mark_sets" in name:
                    p.normal_()
        x = torch.randint(0, 4, (2, 4))
        rebuilt = self.model()
        rebuilt.load_state_dict(model.state_dict())
        assert mark_sets(rebuilt) == ["task"]
        use_marks(rebuilt, "task")
        assert torch.equal(rebuilt(x), model(x))

    def test_unknown_mark_set_is_an_error(self):
        model = self.model()
        with pytest.raises(ValueError, match="no mark set 'x'"):
            use_marks(model, "x")


class TestExpressedOnlyShift:
    def test_gradients_equal_full_shift_restricted_to_expressed_gates(self):
        torch.manual_seed(1)
        reg = Regulation(hard=True)
        aer = EpigeneticMap(CIRCUIT, Backend(name="aer"), copies=2, regulation=reg)
        set_logits(aer, 0.0, weight_std=3.0)
        x = torch.rand(3, 2, 2, requires_grad=True)

        record = ForwardRecord()

        def grads(core, masked=True):
            core.zero_grad()
            x.grad = None
            if masked:
                out = core(x, record=record)
            else:  # full parameter shift: every angle of every row
                with patch.object(core, "shift_mask", lambda *args: torch.tensor(True)):
                    out = core(x)
            out.pow(2).sum().backward()
            return [p.grad.clone() for p in core.parameters()] + [x.grad.clone()]

        masked = grads(aer)
        expressed = record.expressed[aer]
        assert 0 < expressed.float().mean() < 1
        # rows x (1 + 2 x (2 encoding angles + expressed gates)): a hand count
        assert aer.layer.executor.stats.circuits == 6 + 2 * (6 * 2 + int(expressed.sum()))
        before = aer.layer.executor.stats.circuits
        full = grads(aer, masked=False)
        assert aer.layer.executor.stats.circuits - before == 6 + 2 * 6 * 8
        exact = EpigeneticMap(CIRCUIT, Backend(name="default.qubit"), copies=2, regulation=reg)
        exact.load_state_dict(aer.state_dict())
        reference = grads(exact)
        for m, f, r in zip(masked, full, reference):
            torch.testing.assert_close(m, f, atol=1e-6, rtol=0)
            torch.testing.assert_close(m, r, atol=1e-5, rtol=0)
        genome = masked[-2]  # (K, L, n, 3): silenced gates get no gradient
        silenced = ~expressed.view(3, 2, 1, 2, 3).any(0)
        assert torch.all(genome[silenced] == 0)

    def test_shift_mask_follows_the_traced_angles(self):
        core = EpigeneticMap(Circuit(n_qubits=2, n_layers=1, ansatz="sim14"),
                             Backend(name="aer"), regulation=Regulation(hard=True))
        depends = core.angle_marks()  # CRX decomposes into two angles per weight
        assert depends.shape[1] == 8 and depends.any(1).sum() > 8
        set_logits(core, -60.0)  # every gate silenced
        core(torch.rand(3, 1, 2, requires_grad=True)).sum().backward()
        assert core.layer.executor.stats.circuits == 3 * (1 + 2 * 2)  # encoding angles only
        core(torch.rand(3, 1, 2)).sum().backward()  # inputs without gradient: no shifts at all
        assert core.layer.executor.stats.circuits == 3 * (1 + 2 * 2) + 3


class TestTwinAndLayers:
    def test_twin_gates_its_own_weights(self):
        twin = ClassicalEpigeneticMap(CIRCUIT, regulation=Regulation(hard=True))
        set_logits(twin, -60.0)
        x = torch.rand(5, 1, 2)
        expected = torch.tanh(twin.twin.biases[0]).expand(5, 1, 2)  # W_eff = 0
        torch.testing.assert_close(twin(x), expected)
        set_logits(twin, 60.0)
        torch.testing.assert_close(twin(x), twin.twin(x))  # W_eff = W

    @pytest.mark.parametrize("quantum", [True, False])
    @pytest.mark.parametrize("kind", ["epigenetic", "experts"])
    def test_model_kinds_and_the_twin_share_the_regulation(self, kind, quantum):
        cfg = update(Config(), circuit={"n_qubits": 2, "n_layers": 1},
                     model={"embedding": "quantum" if quantum else "classical",
                            "attention": "quantum" if quantum else "classical"},
                     regulation={"embedding": kind, "attention": kind})
        model = HybridTransformer(cfg, InputSpec(seq_len=3, n_classes=2, n_features=5))
        assert isinstance(model.embedding, RegulatedEmbedding)
        assert isinstance(model.blocks[0].attention, RegulatedAttention)
        record = ForwardRecord()
        out = model(torch.rand(2, 3, 5), record=record)
        loss = record.regularization_loss()
        assert out.shape == (2, 2) and loss.requires_grad
        report = regulation_report(model, record)
        assert set(report) == {"embedding.core", "blocks.0.attention.core"}
        assert (len(model.quantum_layers()) == 2) == quantum

    def test_unregulated_model_has_no_regularization(self):
        cfg = update(Config(), circuit={"n_qubits": 2, "n_layers": 1})
        model = HybridTransformer(cfg, InputSpec(seq_len=3, n_classes=2, vocab_size=2))
        record = ForwardRecord()
        model(torch.tensor([[0, 1, 1]]), record=record)
        assert record.regularization_loss().item() == 0.0

    def test_an_extra_forward_leaves_a_record_as_it_was(self):
        cfg = update(Config(), circuit={"n_qubits": 2, "n_layers": 1},
                     regulation={"embedding": "epigenetic", "hard": True})
        model = HybridTransformer(cfg, InputSpec(seq_len=3, n_classes=2, vocab_size=2))
        set_logits(model.embedding.core, [5.0, -5.0, -5.0, -5.0, -5.0, -5.0])  # 1 of 6 expressed
        record = ForwardRecord()
        model(torch.zeros(2, 3, dtype=torch.long), record=record)
        set_logits(model.embedding.core, 5.0)  # every gate expressed from now on
        model(torch.zeros(2, 3, dtype=torch.long))
        model(torch.zeros(2, 3, dtype=torch.long), record=ForwardRecord())
        assert regulation_report(model, record)["embedding.core"]["expression_ratio"] == pytest.approx(1 / 6)


def test_training_adds_the_penalty_to_the_loss():
    from qepi.data import load_dataset
    from qepi.training import Trainer

    cfg = update(Config(), circuit={"n_qubits": 2, "n_layers": 1},
                 model={"embedding": "classical", "attention": "classical"},
                 regulation={"embedding": "epigenetic", "hard": True, "target": 0.0, "penalty": 10.0},
                 data={"task": "parity", "seq_len": 3, "n_train": 16, "n_dev": 0, "n_test": 4},
                 train={"epochs": 4, "batch_size": 8, "lr": 0.1})
    dataset = load_dataset(cfg.data)
    torch.manual_seed(0)
    model = HybridTransformer(cfg, dataset.spec)

    def expression() -> float:
        record = ForwardRecord()
        model(dataset.train.x, record=record)
        return model.embedding.core.expression_ratio(record)

    assert expression() == 1.0
    Trainer(model, cfg, dataset, progress=False).fit()
    assert expression() < 0.5
