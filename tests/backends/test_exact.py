"""The exact backend against PennyLane default.qubit: values and gradients of every circuit."""

from __future__ import annotations

import itertools

import numpy as np
import pennylane as qml
import pytest
import torch

from qepi.backends import make_executor
from qepi.backends.support import per_row_reference
from qepi.backends.exact import ExactExecutor, estimate_costs
from qepi.circuits import ANSATZE, ENCODINGS, build_circuit
from qepi.config import Backend, Circuit, Config, update
from qepi.errors import UserError
from qepi.models import HybridTransformer, InputSpec

TOL = 1e-10


def run_with_grads(qfunc, n_qubits, backend, inputs, weights):
    """Outputs and gradients of a fixed random projection w.r.t. inputs and every weight."""
    inputs = inputs.detach().clone().requires_grad_(True)
    weights = {k: w.detach().clone().requires_grad_(True) for k, w in weights.items()}
    executor = make_executor(qfunc, n_qubits, backend)
    out = executor(inputs, weights)
    probe = torch.linspace(-1, 1, out.numel(), dtype=out.dtype).reshape(out.shape)
    grads = torch.autograd.grad((out * probe).sum(), [inputs, *weights.values()])
    return out.detach(), grads, executor


def assert_same(a, b, tol=TOL):
    out_a, grads_a, _ = a
    out_b, grads_b, _ = b
    assert out_a.shape == out_b.shape
    torch.testing.assert_close(out_a, out_b, rtol=0, atol=tol)
    for ga, gb in zip(grads_a, grads_b):
        torch.testing.assert_close(ga, gb, rtol=0, atol=tol)


def reference_with_grads(qfunc, n_qubits, inputs, weights):
    """:func:`run_with_grads` of :func:`per_row_reference`."""
    inputs = inputs.detach().clone().requires_grad_(True)
    weights = {k: w.detach().clone().requires_grad_(True) for k, w in weights.items()}
    out = per_row_reference(qfunc, n_qubits, inputs, weights)
    probe = torch.linspace(-1, 1, out.numel(), dtype=out.dtype).reshape(out.shape)
    grads = torch.autograd.grad((out * probe).sum(), [inputs, *weights.values()])
    return out.detach(), grads, None


def random_case(spec, n_rows, copies, seed=0):
    gen = torch.Generator().manual_seed(seed)
    inputs = torch.rand(n_rows, copies, spec.n_qubits, generator=gen, dtype=torch.float64) * 3 - 1
    weights = {
        name: torch.rand(copies, *shape, generator=gen, dtype=torch.float64) * 2 * np.pi
        for name, shape in spec.weight_shapes.items()
    }
    return inputs, weights


class TestShippedCircuits:
    @pytest.mark.parametrize(
        "encoding,ansatz,reupload,entangling",
        list(itertools.product(ENCODINGS, ANSATZE, [False, True], [True, False])),
    )
    def test_values_and_gradients_match_default_qubit(self, encoding, ansatz, reupload, entangling):
        spec = build_circuit(Circuit(n_qubits=3, n_layers=2, encoding=encoding, ansatz=ansatz,
                                     reupload=reupload, entangling=entangling))
        for copies in (1, 3):
            inputs, weights = random_case(spec, 4, copies, seed=copies)
            ref = run_with_grads(spec.qfunc, 3, Backend(name="default.qubit"), inputs, weights)
            for strategy in ("fold", "gates"):
                got = run_with_grads(spec.qfunc, 3, Backend(name="exact", strategy=strategy),
                                     inputs, weights)
                assert got[2].strategy == strategy
                assert_same(got, ref)

    @pytest.mark.parametrize("n_qubits", [1, 2, 5])
    def test_other_widths(self, n_qubits):
        spec = build_circuit(Circuit(n_qubits=n_qubits, n_layers=3, encoding="iqp", reupload=True))
        inputs, weights = random_case(spec, 3, 2)
        ref = run_with_grads(spec.qfunc, n_qubits, Backend(name="default.qubit"), inputs, weights)
        got = run_with_grads(spec.qfunc, n_qubits, Backend(name="exact"), inputs, weights)
        assert_same(got, ref)

    def test_float32_option(self):
        spec = build_circuit(Circuit(n_qubits=3, encoding="iqp"))
        inputs, weights = random_case(spec, 5, 2)
        ref = run_with_grads(spec.qfunc, 3, Backend(name="exact"), inputs, weights)
        executor = make_executor(spec.qfunc, 3, Backend(name="exact", dtype="float32"))
        out = executor(inputs.float(), {k: w.float() for k, w in weights.items()})
        assert out.dtype == torch.float32
        torch.testing.assert_close(out.double(), ref[0], rtol=0, atol=1e-5)

    def test_stats_count_circuits(self):
        spec = build_circuit(Circuit(n_qubits=2, n_layers=1))
        executor = make_executor(spec.qfunc, 2, Backend(name="exact"))
        inputs, weights = random_case(spec, 5, 3)
        executor(inputs, weights)
        executor(inputs[:2], weights)
        assert executor.stats.circuits == 5 * 3 + 2 * 3


def user_circuits():
    """(name, qfunc, n_qubits, weight_shapes) of circuits written the way users write them."""

    def templates(inputs, weights):
        qml.AngleEmbedding(inputs, wires=range(3), rotation="X")
        qml.StronglyEntanglingLayers(weights, wires=range(3))
        return [qml.expval(qml.PauliZ(i)) for i in range(3)]

    def mixed(inputs, weights, scale):
        # data gates whose angles also depend on weights; data-dependent entanglers
        qml.Hadamard(wires=0)
        qml.RY(scale[..., 0] * inputs[..., 0], wires=0)
        qml.RX(inputs[..., 1] ** 2, wires=1)
        qml.IsingXX(inputs[..., 0] - inputs[..., 2], wires=[1, 2])
        qml.CRX(weights[..., 0], wires=[0, 2])
        qml.Rot(weights[..., 1], 0.3, weights[..., 2], wires=1)
        qml.Toffoli(wires=[0, 1, 2])
        qml.S(wires=2)
        qml.CRY(inputs[..., 2], wires=[2, 0])
        qml.PhaseShift(weights[..., 3], wires=1)
        qml.MultiRZ(inputs[..., 1], wires=[0, 1, 2])
        qml.CZ(wires=[0, 2])
        qml.T(wires=0)
        qml.U3(weights[..., 0], weights[..., 1], weights[..., 2], wires=2)
        return [
            qml.expval(qml.PauliX(0)),
            qml.expval(qml.PauliY(1) @ qml.PauliZ(2)),
            qml.expval(qml.Hermitian(np.array([[1.0, 0.5j], [-0.5j, -0.3]]), wires=2)),
            qml.expval(qml.Hamiltonian([0.4, -1.1],
                                       [qml.PauliZ(0), qml.PauliX(1) @ qml.PauliX(2)])),
            qml.expval(qml.PauliZ(1)),
        ]

    def single(inputs, weights):
        qml.IQPEmbedding(inputs, wires=range(2), n_repeats=2)
        qml.BasicEntanglerLayers(weights, wires=range(2))
        return qml.expval(qml.PauliZ(0) @ qml.PauliZ(1))

    return [
        ("templates", templates, 3, {"weights": (2, 3, 3)}),
        ("mixed", mixed, 3, {"weights": (4,), "scale": (1,)}),
        ("single", single, 2, {"weights": (2, 2)}),
    ]


class TestUserCircuits:
    @pytest.mark.parametrize("name,qfunc,n_qubits,shapes", user_circuits(), ids=lambda v: v
                             if isinstance(v, str) else "")
    def test_matches_default_qubit(self, name, qfunc, n_qubits, shapes):
        gen = torch.Generator().manual_seed(7)
        for copies in (1, 2):
            inputs = torch.rand(5, copies, n_qubits, generator=gen, dtype=torch.float64)
            weights = {k: torch.rand(copies, *s, generator=gen, dtype=torch.float64) * 3
                       for k, s in shapes.items()}
            ref = run_with_grads(qfunc, n_qubits, Backend(name="default.qubit"), inputs, weights)
            for strategy in ("fold", "gates"):
                got = run_with_grads(qfunc, n_qubits, Backend(name="exact", strategy=strategy),
                                     inputs, weights)
                assert_same(got, ref)

    def test_gates_are_classified_by_what_their_angles_depend_on(self):
        _, qfunc, n, shapes = user_circuits()[1]
        executor = ExactExecutor(qfunc, n, Backend(name="exact"))
        weights = {k: torch.rand(1, *s, dtype=torch.float64) for k, s in shapes.items()}
        executor(torch.rand(2, 1, n, dtype=torch.float64), weights)
        program = executor._program
        gates = program.product + program.prefix + [g for _, run in program.segments for g in run]
        assert {g.name for g in gates if g.data} == {"RY", "RX", "IsingXX", "CRY", "MultiRZ"}
        folded = {g.name for run in program.weight_runs for g in run}
        assert {"CRX", "Rot", "PhaseShift", "U3"} <= folded
        # leading single-qubit gates build a product state
        assert [g.name for g in program.product] == ["Hadamard", "RY", "RX"]

    def test_selections_need_no_graph_and_products_are_recorded(self):
        spec = build_circuit(Circuit(n_qubits=3, encoding="angle"))
        executor = make_executor(spec.qfunc, 3, Backend(name="exact"))
        executor(*random_case(spec, 2, 1))
        assert executor._program.graph_slots == []
        spec = build_circuit(Circuit(n_qubits=3, encoding="iqp"))
        executor = make_executor(spec.qfunc, 3, Backend(name="exact"))
        inputs, weights = random_case(spec, 4, 2)
        first = executor(inputs, weights)
        program = executor._program
        assert len(program.graph_slots) == 2  # the x_i * x_{i+1} phases
        # another row count re-uses the compiled program and gives the same rows
        torch.testing.assert_close(executor(inputs[:3], weights), first[:3], rtol=0, atol=TOL)
        torch.testing.assert_close(executor(torch.cat([inputs] * 3), weights)[:4], first,
                                   rtol=0, atol=TOL)
        assert executor._program is program

    def test_value_dependent_python_is_retraced(self):
        def circuit(inputs, weights):
            angle = weights[0] if bool(weights[1].detach() > 0) else -weights[0]
            qml.RY(inputs[..., 0] * angle, wires=0)
            return qml.expval(qml.PauliZ(0))

        x = torch.rand(3, 1, 1, dtype=torch.float64)
        for sign in (1.0, -1.0):
            w = {"weights": torch.tensor([[0.7, sign]], dtype=torch.float64)}
            ref = run_with_grads(circuit, 1, Backend(name="default.qubit"), x, w)
            assert_same(run_with_grads(circuit, 1, Backend(name="exact"), x, w), ref)


class TestFaithful:
    """Circuits one trace cannot stand for: compiled only where proven, re-traced otherwise."""

    @staticmethod
    def case(copies, sign=1.0):
        gen = torch.Generator().manual_seed(3)
        inputs = torch.rand(4, copies, 2, generator=gen, dtype=torch.float64) * 4 - 2
        weights = {"weights": sign * (torch.rand(copies, 2, generator=gen,
                                                 dtype=torch.float64) * 2 - 0.5)}
        return inputs, weights

    def test_nonlinear_angles_are_computed_not_selected(self):
        def circuit(inputs, weights):
            qml.RX(torch.relu(inputs[..., 0]), wires=0)
            qml.RY(torch.abs(weights[..., 0]), wires=1)
            qml.CNOT(wires=[0, 1])
            qml.RZ(torch.clamp(weights[..., 1], -0.1, 0.1), wires=1)
            qml.RY(inputs[..., 1], wires=1)
            return qml.expval(qml.PauliZ(0)), qml.expval(qml.PauliX(1))

        for copies, sign in ((1, 1.0), (1, -1.0), (2, -1.0)):
            inputs, weights = self.case(copies, sign)
            assert (inputs[..., 0] < 0).any() and (weights["weights"][..., 0] < 0).any() == (
                sign < 0)
            ref = run_with_grads(circuit, 2, Backend(name="default.qubit"), inputs, weights)
            got = run_with_grads(circuit, 2, Backend(name="exact"), inputs, weights)
            assert_same(got, ref)
            assert got[2].strategy in ("fold", "gates")  # proven: still compiled

    def test_trainable_observable_coefficients_get_gradients(self):
        def circuit(inputs, weights):
            qml.RY(inputs[..., 0], wires=0)
            qml.RX(inputs[..., 1], wires=1)
            qml.CNOT(wires=[0, 1])
            return qml.expval(weights[..., 0] * qml.PauliZ(0) + weights[..., 1] * qml.PauliZ(1))

        inputs, weights = self.case(1)
        ref = run_with_grads(circuit, 2, Backend(name="default.qubit"), inputs, weights)
        got = run_with_grads(circuit, 2, Backend(name="exact"), inputs, weights)
        assert_same(got, ref)
        assert got[1][1].abs().min() > 1e-3  # every coefficient gets a gradient
        assert got[2].strategy == "traced"
        assert "observable" in got[2].describe()

    def test_observable_coefficients_from_inputs_and_variances(self):
        def circuit(inputs, weights):
            qml.RY(inputs[..., 0], wires=0)
            qml.RX(weights[..., 1], wires=1)
            qml.CNOT(wires=[0, 1])
            return (qml.expval(inputs[..., 1] * qml.PauliX(0) + weights[..., 0] * qml.PauliZ(1)),
                    qml.var(weights[..., 0] * qml.PauliZ(0) @ qml.PauliY(1) + 0.3 * qml.PauliX(0)))

        inputs, weights = self.case(2, -1.0)
        ref = reference_with_grads(circuit, 2, inputs, weights)
        assert_same(run_with_grads(circuit, 2, Backend(name="exact"), inputs, weights), ref)

    def test_structure_that_depends_on_weights_is_retraced(self):
        def circuit(inputs, weights):
            qml.RX(inputs[..., 0], wires=0)
            if weights[..., 0] > 0:
                qml.Hadamard(wires=0)
            qml.RY(weights[..., 1], wires=0)
            return qml.expval(qml.PauliZ(0))

        for sign in (1.0, -1.0):
            inputs, weights = self.case(1, sign)
            ref = run_with_grads(circuit, 1, Backend(name="default.qubit"), inputs, weights)
            got = run_with_grads(circuit, 1, Backend(name="exact"), inputs, weights)
            assert_same(got, ref)
            assert got[2].strategy == "traced"
            assert "Tensor.__bool__" in got[2].describe()

    def test_copies_with_different_structure(self):
        def circuit(inputs, weights):
            qml.RX(inputs[..., 0], wires=0)
            if weights[..., 0] > 0:
                qml.Hadamard(wires=0)
            qml.RY(weights[..., 1], wires=0)
            return qml.expval(qml.PauliZ(0)), qml.probs(wires=[0])

        inputs, weights = self.case(2)
        weights["weights"][:, 0] = torch.tensor([0.5, -0.5], dtype=torch.float64)
        ref = reference_with_grads(circuit, 1, inputs, weights)
        assert_same(run_with_grads(circuit, 1, Backend(name="exact"), inputs, weights), ref)

    def test_branching_on_inputs_is_refused_with_the_reason(self):
        def circuit(inputs, weights):
            if inputs[..., 0] > 0:
                qml.Hadamard(wires=0)
            qml.RY(weights[..., 0], wires=0)
            return qml.expval(qml.PauliZ(0))

        with pytest.raises(UserError, match="Tensor.__bool__ of a value computed from inputs"):
            make_executor(circuit, 1, "exact")(*self.case(1))

    def test_a_forced_strategy_is_refused_when_the_circuit_cannot_be_compiled(self):
        def circuit(inputs, weights):
            qml.RY(inputs[..., 0], wires=0)
            return qml.expval(weights[..., 0] * qml.PauliZ(0))

        executor = make_executor(circuit, 1, Backend(name="exact", strategy="fold"))
        with pytest.raises(UserError, match="backend.strategy='fold'.*observable"):
            executor(*self.case(1))


class TestMeasurements:
    @staticmethod
    def circuit(inputs, weights):
        qml.AngleEmbedding(inputs, wires=range(3), rotation="Y")
        qml.StronglyEntanglingLayers(weights, wires=range(3))
        return [
            qml.probs(wires=[2, 0]),
            qml.var(qml.PauliX(1)),
            qml.expval(qml.PauliZ(0) @ qml.PauliY(2)),
            qml.var(qml.Hermitian(np.array([[1.0, 0.5j], [-0.5j, -0.3]]), wires=1)),
            qml.probs(),
            qml.var(qml.Hamiltonian([0.4, -1.1], [qml.PauliZ(0), qml.PauliX(1) @ qml.PauliX(2)])),
            qml.probs(op=qml.PauliX(1)),
        ]

    def case(self, copies):
        gen = torch.Generator().manual_seed(copies)
        inputs = torch.rand(5, copies, 3, generator=gen, dtype=torch.float64) * 3
        return inputs, {"weights": torch.rand(copies, 2, 3, 3, generator=gen,
                                              dtype=torch.float64) * 6}

    @pytest.mark.parametrize("strategy", ["fold", "gates"])
    def test_var_probs_and_mixed_lists_match_default_qubit(self, strategy):
        for copies in (1, 2):
            inputs, weights = self.case(copies)
            ref = reference_with_grads(self.circuit, 3, inputs, weights)
            got = run_with_grads(self.circuit, 3, Backend(name="exact", strategy=strategy),
                                 inputs, weights)
            assert got[0].shape == (5, copies, 4 + 1 + 1 + 1 + 8 + 1 + 2)
            assert_same(got, ref)

    def test_probabilities_sum_to_one_in_pennylane_order(self):
        def circuit(inputs, weights):
            qml.PauliX(wires=0)  # |10>: wire 0 is the most significant bit
            qml.RY(weights[..., 0] * 0, wires=1)
            return qml.probs(wires=[0, 1]), qml.probs(wires=[1, 0])

        out = make_executor(circuit, 2, "exact")(torch.zeros(1, 1, 1), {"weights": torch.ones(1, 1)})
        assert out.flatten().tolist() == [0, 0, 1, 0, 0, 1, 0, 0]

    def test_float32_keeps_every_measurement_in_float32(self):
        inputs, weights = self.case(2)
        ref = run_with_grads(self.circuit, 3, Backend(name="exact"), inputs, weights)
        executor = make_executor(self.circuit, 3, Backend(name="exact", dtype="float32"))
        x = inputs.float().requires_grad_(True)
        w = weights["weights"].float().requires_grad_(True)
        out = executor(x, {"weights": w})
        assert out.dtype == torch.float32
        torch.testing.assert_close(out.double(), ref[0], rtol=0, atol=1e-5)
        out.sum().backward()
        assert x.grad.dtype == w.grad.dtype == torch.float32

    def test_float32_on_the_traced_path(self):
        def circuit(inputs, weights):
            qml.RY(inputs[..., 0], wires=0)
            return qml.var(weights[..., 0] * qml.PauliX(0)), qml.probs(wires=[0])

        executor = make_executor(circuit, 1, Backend(name="exact", dtype="float32"))
        out = executor(torch.rand(3, 1, 1), {"weights": torch.rand(1, 1)})
        assert executor.strategy == "traced" and out.dtype == torch.float32


class TestStrategy:
    def test_cost_model_folds_small_circuits_and_simulates_large_ones_gate_by_gate(self):
        def program(n):
            spec = build_circuit(Circuit(n_qubits=n, n_layers=2))
            executor = make_executor(spec.qfunc, n, Backend(name="exact"))
            executor(*random_case(spec, 1, 1))
            return executor

        small, large = program(4), program(10)
        assert small.choose_strategy(512, 3) == "fold"
        assert large.choose_strategy(512, 3) == "gates"
        costs = estimate_costs(small._program, 512, 3)
        assert costs["fold"] < costs["gates"]
        assert "strategy" in small.describe()

    def test_forced_strategy(self):
        spec = build_circuit(Circuit(n_qubits=2))
        executor = make_executor(spec.qfunc, 2, Backend(name="exact", strategy="gates"))
        executor(*random_case(spec, 2, 1))
        assert executor.strategy == "gates"


class TestErrors:
    def test_bad_options(self):
        spec = build_circuit(Circuit(n_qubits=2))
        with pytest.raises(UserError, match="backend.strategy"):
            ExactExecutor(spec.qfunc, 2, Backend(name="exact", strategy="fast"))
        with pytest.raises(UserError, match="shots"):
            ExactExecutor(spec.qfunc, 2, Backend(name="exact", shots=10))
        with pytest.raises(UserError, match="dtype"):
            ExactExecutor(spec.qfunc, 2, Backend(name="exact", dtype="float16"))

    @pytest.mark.parametrize("measure,name", [
        (lambda: qml.state(), "qml.state()"),
        (lambda: qml.density_matrix(wires=0), "qml.density_matrix()"),
        (lambda: qml.sample(qml.PauliZ(0)), "qml.sample()"),
        (lambda: qml.counts(qml.PauliZ(0)), "qml.counts()"),
    ])
    def test_other_measurements_are_refused_in_one_line(self, measure, name):
        def circuit(inputs, weights):
            qml.RY(inputs[..., 0] + weights[0], wires=0)
            return measure()

        executor = ExactExecutor(circuit, 1, Backend(name="exact"))
        with pytest.raises(UserError, match="expval, var, probs") as error:
            executor(torch.rand(2, 1, 1), {"weights": torch.rand(1, 1)})
        assert name in str(error.value) and "\n" not in str(error.value)

    def test_mid_circuit_measurements_are_refused(self):
        def circuit(inputs, weights):
            qml.RY(inputs[..., 0] + weights[0], wires=0)
            qml.cond(qml.measure(0), qml.PauliX)(wires=1)
            return qml.expval(qml.PauliZ(1))

        with pytest.raises(UserError, match="mid-circuit"):
            make_executor(circuit, 2, "exact")(torch.rand(2, 1, 1), {"weights": torch.rand(1, 1)})

    @pytest.mark.parametrize("op", [lambda: qml.AmplitudeDamping(0.1, wires=0),
                                    lambda: qml.TRX(0.3, wires=0)])
    def test_operations_it_cannot_simulate_are_named(self, op):
        def circuit(inputs, weights):
            qml.RY(inputs[..., 0] + weights[0], wires=0)
            op()
            return qml.expval(qml.PauliZ(0))

        with pytest.raises(UserError, match="exact backend: (AmplitudeDamping|TRX)"):
            make_executor(circuit, 1, "exact")(torch.rand(2, 1, 1), {"weights": torch.rand(1, 1)})


class TestModel:
    def test_hybrid_transformer_step_matches_default_qubit(self):
        spec = InputSpec(seq_len=5, n_classes=2, n_features=3)
        x = torch.randn(2, 5, 3, generator=torch.Generator().manual_seed(0))
        grads = {}
        for name in ("default.qubit", "exact"):
            cfg = update(Config(), backend={"name": name},
                         circuit={"n_qubits": 3, "n_layers": 1, "encoding": "iqp"},
                         model={"n_heads": 1, "d_model": 6})
            torch.manual_seed(0)
            model = HybridTransformer(cfg, spec).double()
            model(x.double()).sum().backward()
            grads[name] = [p.grad for p in model.parameters()]
        for a, b in zip(grads["default.qubit"], grads["exact"]):
            torch.testing.assert_close(a, b, rtol=0, atol=TOL)

    @pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
    def test_cuda_matches_cpu(self):
        spec = build_circuit(Circuit(n_qubits=3, encoding="iqp", reupload=True))
        inputs, weights = random_case(spec, 6, 2)
        cpu = run_with_grads(spec.qfunc, 3, Backend(name="exact"), inputs, weights)
        gpu = run_with_grads(spec.qfunc, 3, Backend(name="exact"), inputs.cuda(),
                             {k: w.cuda() for k, w in weights.items()})
        assert gpu[0].device.type == "cuda"
        assert_same((gpu[0].cpu(), [g.cpu() for g in gpu[1]], None), cpu)


class TestBench:
    def test_bench_exact_runs_every_variant(self, capsys):
        import json

        from qepi.cli import main

        code = main(["bench", "exact", "--qubits", "2", "--batch", "2", "--tokens", "2",
                     "--repeats", "1", "--loop-batch", "1", "--strategies", "--json"])
        assert code == 0
        (row,) = json.loads(capsys.readouterr().out)["rows"]
        assert row["circuits_per_step"] == 2 * 2 * 4  # embedding + Q, K, V per token
        for key in ("classical_s", "exact_s", "exact_fold_s", "exact_gates_s",
                    "default_qubit_s", "loop_s"):
            assert row[key] > 0
