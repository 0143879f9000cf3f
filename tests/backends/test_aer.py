"""The aer parameter-shift engine against independent paths: default.qubit backprop,
Qiskit's statevector, closed-form noise channels and shot statistics."""

from __future__ import annotations

import math

import numpy as np
import pennylane as qml
import pytest
import torch

from qepi.backends import make_executor
from qepi.backends.aer import AerExecutor
from qepi.backends.translate import bind_row, to_qiskit, trace_gates
from qepi.circuits import ANSATZE, ENCODINGS, build_circuit
from qepi.config import Backend, Circuit, Config, update
from qepi.errors import UserError

F64 = torch.float64


def _values_and_grads(executor, x, w):
    """Outputs and gradients of a fixed weighted sum w.r.t. inputs and weights."""
    x = x.detach().clone().requires_grad_(True)
    w = {name: t.detach().clone().requires_grad_(True) for name, t in w.items()}
    y = executor(x, w)
    scale = torch.linspace(0.5, 1.5, y.shape[-1], dtype=F64)
    grads = torch.autograd.grad((y * scale).sum(), [x, *w.values()])
    return y.detach(), grads


def _mixed_circuit(inputs, weights):
    qml.RY(inputs[..., 0], wires=0)
    qml.Hadamard(1)
    qml.CRY(weights[0], wires=[1, 0])
    qml.IsingXX(weights[1] * inputs[..., 1], wires=[0, 2])
    qml.U3(weights[0], weights[1], inputs[..., 1], wires=2)
    qml.MultiRZ(weights[1], wires=[0, 1, 2])
    qml.adjoint(qml.S(1))
    qml.PhaseShift(torch.sin(weights[0]), wires=1)
    qml.CZ(wires=[2, 0])
    return [
        qml.expval(qml.PauliX(0) @ qml.PauliY(2)),
        qml.expval(qml.PauliZ(0)),
        qml.expval(0.5 * qml.PauliX(1) + 2 * qml.PauliZ(2) @ qml.PauliY(1)),
        qml.expval(qml.PauliY(1)),
    ]


class TestExactMode:
    @pytest.mark.parametrize("ansatz", list(ANSATZE))
    @pytest.mark.parametrize("encoding", list(ENCODINGS))
    def test_shipped_circuits_match_default_qubit(self, ansatz, encoding):
        cfg = Circuit(n_qubits=3, n_layers=2, ansatz=ansatz, encoding=encoding,
                      reupload=encoding == "iqp")
        spec = build_circuit(cfg)
        gen = torch.Generator().manual_seed(1)
        x = torch.rand(3, 2, 3, generator=gen, dtype=F64)  # (N, K, F)
        w = {"weights": torch.rand(2, *spec.weight_shapes["weights"], generator=gen, dtype=F64)}
        ref_y, ref_g = _values_and_grads(make_executor(spec.qfunc, 3, "default.qubit"), x, w)
        backend = Backend(name="aer", threads=3)  # rows split between 3 parallel experiments
        y, g = _values_and_grads(make_executor(spec.qfunc, 3, backend), x, w)
        torch.testing.assert_close(y, ref_y, atol=1e-8, rtol=0)
        for a, b in zip(g, ref_g):
            torch.testing.assert_close(a, b, atol=1e-8, rtol=0)

    def test_custom_circuit_with_mixed_gates_and_pauli_sums(self):
        gen = torch.Generator().manual_seed(2)
        x = torch.rand(4, 1, 2, generator=gen, dtype=F64)
        w = {"weights": torch.rand(1, 2, generator=gen, dtype=F64)}
        ref_y, ref_g = _values_and_grads(make_executor(_mixed_circuit, 3, "default.qubit"), x, w)
        for backend in [Backend(name="aer"), Backend(name="aer", chunk_rows=40)]:
            y, g = _values_and_grads(make_executor(_mixed_circuit, 3, backend), x, w)
            torch.testing.assert_close(y, ref_y, atol=1e-8, rtol=0)
            for a, b in zip(g, ref_g):
                torch.testing.assert_close(a, b, atol=1e-8, rtol=0)

    def test_circuit_count_and_no_shifts_without_grad(self):
        spec = build_circuit(Circuit(n_qubits=2, n_layers=1))  # 2 input + 6 weight angles
        run = make_executor(spec.qfunc, 2, Backend(name="aer"))
        x = torch.rand(5, 1, 2, dtype=F64)
        w = {"weights": torch.rand(1, 1, 2, 3, dtype=F64, requires_grad=True)}
        run(x, w)  # inputs need no gradient: only the 6 weight angles are shifted
        assert run.stats.circuits == 5 * (1 + 2 * 6)
        with torch.no_grad():
            run(x, w)
        assert run.stats.circuits == 5 * 13 + 5

    def test_shift_mask_zeroes_masked_columns(self):
        spec = build_circuit(Circuit(n_qubits=2, n_layers=1))
        run = AerExecutor(spec.qfunc, 2, Backend(name="aer"))
        x = torch.rand(3, 1, 2, dtype=F64, requires_grad=True)
        w = torch.rand(1, 1, 2, 3, dtype=F64, requires_grad=True)
        traced = run.trace(x, {"weights": w})
        assert [g.name for g in traced.gates if g.angle is not None][:2] == ["RY", "RY"]
        mask = torch.ones(len(traced.angles), dtype=torch.bool)
        mask[0] = False  # RY(x_0): no gradient for input feature 0
        mask[2:5] = False  # the Rot of wire 0: no gradient for weights[0, 0, :]
        with run.shifting(mask):
            run(x, {"weights": w}).sum().backward()
        assert run.stats.circuits == 3 * (1 + 2 * 4)
        full = make_executor(spec.qfunc, 2, "default.qubit")
        gx, gw = torch.autograd.grad(full(x, {"weights": w}).sum(), [x, w])
        assert torch.all(x.grad[..., 0] == 0) and torch.all(w.grad[0, 0, 0] == 0)
        torch.testing.assert_close(x.grad[..., 1], gx[..., 1], atol=1e-8, rtol=0)
        torch.testing.assert_close(w.grad[0, 0, 1], gw[0, 0, 1], atol=1e-8, rtol=0)

    def test_float32_parameters(self):
        spec = build_circuit(Circuit(n_qubits=2, n_layers=1))
        run = make_executor(spec.qfunc, 2, Backend(name="aer"))
        w = torch.rand(1, 1, 2, 3, requires_grad=True)  # float32, like nn.Parameter
        y = run(torch.rand(4, 1, 2), {"weights": w})
        y.sum().backward()
        assert y.dtype == torch.float32 and w.grad.dtype == torch.float32


class TestErrors:
    def test_unshiftable_gate_is_named(self):
        class Mystery(qml.operation.Operation):
            num_wires = 1
            num_params = 1

        def circuit(inputs, weights):
            Mystery(weights[0], wires=0)
            return [qml.expval(qml.PauliZ(0))]

        run = make_executor(circuit, 1, Backend(name="aer"))
        with pytest.raises(UserError, match="gate Mystery"):
            run(torch.rand(2, 1, 1), {"weights": torch.rand(1, 1)})

    @pytest.mark.parametrize(
        "backend, message",
        [
            (Backend(name="aer", readout_error=0.1), "readout_error needs"),
            (Backend(name="aer", noise="depolarizing", depolarizing_1q=1.5), "depolarizing_1q"),
            (Backend(name="aer", noise="loud"), "noise='loud'"),
            (Backend(name="aer", shots=-1), "shots"),
        ],
    )
    def test_bad_backend_config(self, backend, message):
        with pytest.raises(UserError, match=message):
            make_executor(_mixed_circuit, 3, backend)

    def test_unknown_fake_backend(self):
        with pytest.raises(UserError, match="FakeNowhereV2"):  # refused before anything runs
            make_executor(_mixed_circuit, 3, Backend(name="aer", noise="FakeNowhereV2"))


def _ry_rx(inputs, weights):
    qml.RY(inputs[..., 0], wires=0)
    qml.RX(weights[0], wires=0)
    return [qml.expval(qml.PauliZ(0))]  # cos(x) cos(w)


class TestShots:
    def test_estimates_and_gradients_are_unbiased_with_right_variance(self):
        x, w0, shots, seeds = 0.7, 0.4, 200, 300
        values, grads, mirrored = [], [], []
        for seed in range(seeds):
            run = make_executor(_ry_rx, 1, Backend(name="aer", shots=shots), seed=seed)
            w = torch.tensor([[w0]], dtype=F64, requires_grad=True)
            y = run(torch.tensor([[[x]], [[-x]]], dtype=F64), {"weights": w})  # equal <Z>
            y[0].sum().backward()
            values.append(y[0].item())
            mirrored.append(y[1].item())
            grads.append(w.grad.item())
        values, grads = np.array(values), np.array(grads)
        # circuits with equal outcome distributions draw independent shots
        assert abs(np.corrcoef(values, mirrored)[0, 1]) < 0.2
        exact, exact_grad = math.cos(x) * math.cos(w0), -math.cos(x) * math.sin(w0)
        assert abs(grads.mean() - exact_grad) < 3 * grads.std(ddof=1) / math.sqrt(seeds)
        assert abs(values.mean() - exact) < 3 * values.std(ddof=1) / math.sqrt(seeds)
        # a ±1 outcome averaged over S shots has variance (1 - <Z>^2) / S
        assert values.var(ddof=1) == pytest.approx((1 - exact**2) / shots, rel=0.25)
        assert run.stats.shots == 6 * shots


class TestNoise:
    def test_depolarizing_and_readout_scale_z_as_the_channels_predict(self):
        p1, p2, r = 0.1, 0.2, 0.05

        def circuit(inputs, weights):
            qml.RY(inputs[..., 0], wires=0)
            qml.CNOT(wires=[0, 1])
            return [qml.expval(qml.PauliZ(1))]

        x = torch.tensor([[[0.3]], [[1.1]], [[2.5]]], dtype=F64)
        ideal = torch.cos(x)
        for backend, factor in [
            (Backend(name="aer", noise="depolarizing", depolarizing_1q=p1), 1 - p1),
            (Backend(name="aer", noise="depolarizing", depolarizing_1q=p1, depolarizing_2q=p2),
             (1 - p1) * (1 - p2)),
            (Backend(name="aer", noise="depolarizing", readout_error=r), 1 - 2 * r),
        ]:
            y = make_executor(circuit, 2, backend)(x, {"weights": torch.zeros(1, 1)})
            torch.testing.assert_close(y, ideal * factor, atol=1e-10, rtol=0)

    def test_fake_backend_matches_aer_sampling_with_its_noise(self):
        from qiskit import transpile
        from qiskit_aer import AerSimulator
        from qiskit_ibm_runtime.fake_provider import FakeManilaV2

        x = torch.tensor([[[0.4, 1.2]]], dtype=F64)
        w = torch.tensor([[0.9, 0.3]], dtype=F64)

        def circuit(inputs, weights):
            qml.RY(inputs[..., 0], wires=0)
            qml.RX(inputs[..., 1], wires=1)
            qml.CNOT(wires=[0, 1])
            qml.RY(weights[0], wires=1)
            return [qml.expval(qml.PauliZ(0)), qml.expval(qml.PauliZ(1))]

        y = make_executor(circuit, 2, Backend(name="aer", noise="FakeManilaV2"))(x, {"weights": w})
        ideal = make_executor(circuit, 2, "default.qubit")(x, {"weights": w})
        qc = bind_row(trace_gates(circuit, x[:, 0], {"weights": w[0]}, 2))
        qc.measure_all()
        device = FakeManilaV2()
        shots = 20000
        counts = AerSimulator.from_backend(device, seed_simulator=0).run(
            transpile(qc, device, optimization_level=0, seed_transpiler=0), shots=shots
        ).result().get_counts()
        z = [sum(c * (1 if k[::-1][q] == "0" else -1) for k, c in counts.items()) / shots
             for q in range(2)]
        se = 1 / math.sqrt(shots)
        assert np.all(np.abs(y.flatten().numpy() - np.array(z)) < 5 * se)
        assert (y - ideal).abs().max() > 10 * se  # the noise is visible


class TestTranslate:
    def test_template_follows_pennylane_wire_order(self):
        from qiskit.quantum_info import SparsePauliOp, Statevector

        x = torch.tensor([[0.3, 1.0, 2.0]], dtype=F64)

        def circuit(inputs, weights):
            qml.RY(inputs[..., 0], wires=0)
            qml.RX(inputs[..., 1], wires=2)
            qml.CNOT(wires=[2, 1])
            return [qml.expval(qml.PauliZ(1)), qml.expval(qml.PauliX(0) @ qml.PauliZ(2))]

        traced = trace_gates(circuit, x, {"weights": torch.zeros(1)}, 3)
        qc, params = to_qiskit(traced, save_expectation_values=False)
        bound = qc.assign_parameters(dict(zip(params, traced.angle_matrix()[0].tolist())))
        state = Statevector(bound)
        got = [state.expectation_value(SparsePauliOp(w)).real for w in ["IZI", "ZIX"]]
        ref = make_executor(circuit, 3, "default.qubit")(x[:, None], {"weights": torch.zeros(1, 1)})
        np.testing.assert_allclose(got, ref.flatten().numpy(), atol=1e-12)

    def test_bound_row_exports_to_openqasm3(self):
        from qiskit.qasm3 import dumps

        spec = build_circuit(Circuit(n_qubits=2, n_layers=1, ansatz="sim14"))
        traced = trace_gates(spec.qfunc, torch.rand(2, 2), {"weights": torch.rand(1, 2, 4)}, 2)
        text = dumps(bind_row(traced, row=1))
        assert "OPENQASM 3" in text and "ry(" in text and "cx " in text


class TestTraining:
    def test_quantum_layer_loss_decreases(self):
        from qepi.layers import QuantumLayer

        torch.manual_seed(0)
        spec = build_circuit(Circuit(n_qubits=2, n_layers=1))
        layer = QuantumLayer(spec.qfunc, spec.weight_shapes, n_qubits=2,
                             backend=Backend(name="aer", shots=500))
        x, target = torch.rand(8, 2), torch.full((8, 2), -0.5)
        opt = torch.optim.Adam(layer.parameters(), lr=0.1)
        losses = []
        for _ in range(5):
            opt.zero_grad()
            loss = ((layer(x) - target) ** 2).mean()
            loss.backward()
            opt.step()
            losses.append(loss.item())
        assert losses[-1] < losses[0]

    def test_hybrid_transformer_trains_on_aer(self):
        from qepi.models import HybridTransformer, InputSpec

        torch.manual_seed(0)
        cfg = update(Config(), backend={"name": "aer", "noise": "depolarizing",
                                        "depolarizing_1q": 0.01},
                     circuit={"n_qubits": 2, "n_layers": 1},
                     model={"d_model": 4, "n_heads": 1, "d_ff": 8})
        model = HybridTransformer(cfg, InputSpec(seq_len=3, n_classes=2, vocab_size=4))
        tokens, labels = torch.randint(0, 4, (4, 3)), torch.tensor([0, 1, 0, 1])
        opt = torch.optim.Adam(model.parameters(), lr=0.05)
        losses = []
        for _ in range(4):
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(tokens), labels)
            loss.backward()
            opt.step()
            losses.append(loss.item())
        assert losses[-1] < losses[0]
