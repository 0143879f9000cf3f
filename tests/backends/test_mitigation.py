"""Error mitigation (``backend.mitigation``) in the aer/exact parameter-shift engine.

Estimates are compared with ``default.qubit``'s exact noiseless values and gradients; the
pieces with independent paths: folding with Qiskit's ``Operator`` and mitiq's own
``fold_global`` on Cirq, the extrapolation weights with mitiq's factories called per value,
the M3 correction with the inverse of the tensored confusion matrix.
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

from qepi.backends import make_executor
from qepi.backends.mitigation import Mitigation, extrapolation_weights, fold
from qepi.circuits import build_circuit
from qepi.config import Backend, Circuit, Config, ConfigError, apply_overrides, replace
from qepi.errors import UserError

SPEC = build_circuit(Circuit(n_qubits=4, n_layers=1))  # angle encoding + one strongly entangling layer
NOISE = {"noise": "depolarizing", "depolarizing_1q": 0.01, "depolarizing_2q": 0.05,
         "readout_error": 0.02}


def _rows(n: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 1, 4, generator=g, dtype=torch.float64) * 3  # (N, K, F)
    w = torch.rand(1, 1, 4, 3, generator=g, dtype=torch.float64) * 6  # (K, layers, wires, 3)
    return x, w


def _run(backend: Backend, x, w, seed: int = 0, grad: bool = False):
    """Outputs (N, K, 4) and, with ``grad``, d(sum of outputs)/d weights; and the executor."""
    run = make_executor(SPEC.qfunc, 4, backend, seed=seed)
    w = w.clone().requires_grad_(grad)
    out = run(x, {"weights": w})
    if not grad:
        return out.detach(), None, run
    out.sum().backward()
    return out.detach(), w.grad, run


def _exact(x, w, grad: bool = False):
    out, g, _ = _run(Backend(name="default.qubit"), x, w, grad=grad)
    return out, g


@pytest.mark.parametrize("seed", [0, 1])
def test_readout_and_zne_at_least_halve_the_error_of_z_estimates(seed):
    # 10**5 shots: the mitigated estimate's shot noise (~2.3/sqrt(shots) with Richardson on
    # factors 1, 3, 5) stays well under the noise bias it removes (~0.025 on average here)
    x, w = _rows(64)
    exact, _ = _exact(x, w)
    noisy = Backend(name="exact", shots=10**5, **NOISE)
    plain, _, _ = _run(noisy, x, w, seed)
    mitigated, _, run = _run(replace(noisy, mitigation=["readout", "zne"]), x, w, seed)
    before, after = (plain - exact).abs().mean(), (mitigated - exact).abs().mean()
    assert after <= 0.5 * before, (float(before), float(after))
    # every row ran at the three scale factors, plus M3's two calibration circuits
    assert run.stats.circuits == 64 * 3 + 2
    assert run.stats.mitigation_circuits == 64 * 2 + 2
    assert run.stats.shots == 64 * 3 * 10**5 + 2 * 10000
    assert run.stats.mitigation_shots == 64 * 2 * 10**5 + 2 * 10000


def test_gradients_are_parameter_shift_of_mitigated_values():
    x, w = _rows(8, seed=3)
    _, exact = _exact(x, w, grad=True)
    noisy = Backend(name="exact", shots=10**6, **NOISE)  # the gradient sums 32 estimates' noise
    _, plain, _ = _run(noisy, x, w, grad=True)
    _, mitigated, run = _run(replace(noisy, mitigation=["readout", "zne"]),
                             x, w, grad=True)
    before, after = (plain - exact).abs().mean(), (mitigated - exact).abs().mean()
    assert after <= 0.5 * before, (float(before), float(after))
    assert run.stats.circuits == 8 * (1 + 2 * 12) * 3 + 2  # 12 weight angles shifted


def test_readout_correction_removes_the_readout_bias():
    # readout error only: a measured <Z> is (1 - 2r) <Z>, pulled towards 0; M3 undoes it. The
    # statistic: errors signed towards the exact value's sign, whose mean is -2r·mean|<Z>|
    # before correction and 0 after (k-sigma with the errors' own spread)
    x, w = _rows(64, seed=5)
    exact, _ = _exact(x, w)
    noisy = Backend(name="exact", shots=4000, noise="depolarizing", readout_error=0.05)

    def t_statistic(out):
        signed = ((out - exact) * torch.sign(exact)).flatten()
        return float(signed.mean() / (signed.std() / len(signed) ** 0.5))

    plain, _, _ = _run(noisy, x, w)
    corrected, _, _ = _run(replace(noisy, mitigation=["readout"],
                                      readout_cal_shots=10**6), x, w)
    assert t_statistic(plain) < -10
    assert abs(t_statistic(corrected)) < 5


def test_aer_and_exact_give_the_same_mitigated_estimates_on_a_fake_device():
    # one engine, one sampler: the same draws on Aer and on the torch density matrix, with
    # the folded circuits transpiled to the device and calibration on its physical qubits
    spec = build_circuit(Circuit(n_qubits=2, n_layers=1))
    x, w = torch.rand(3, 1, 2, dtype=torch.float64), torch.rand(1, 1, 2, 3, dtype=torch.float64)
    outs = []
    for name in ("aer", "exact"):
        backend = Backend(name=name, shots=1000, noise="FakeManilaV2",
                          mitigation=["readout", "zne"], zne_scale_factors=[1.0, 2.0, 3.0])
        run = make_executor(spec.qfunc, 2, backend, seed=4)
        outs.append(run(x, {"weights": w}).detach())
    np.testing.assert_allclose(outs[0].numpy(), outs[1].numpy(), atol=1e-9)


def test_a_resumed_executor_continues_the_same_mitigated_draws():
    x, w = _rows(4)
    backend = Backend(name="exact", shots=500, **NOISE, mitigation=["readout", "zne"],
                      zne_extrapolation="linear")
    first = make_executor(SPEC.qfunc, 4, backend, seed=2)
    first(x, {"weights": w})
    state = first.state_dict()
    expected = first(x, {"weights": w})
    resumed = make_executor(SPEC.qfunc, 4, backend, seed=0)
    resumed.load_state_dict(state)
    torch.testing.assert_close(resumed(x, {"weights": w}), expected, rtol=0, atol=0)


@pytest.mark.parametrize("scale", [1.0, 1.5, 2.0, 3.0, 3.7, 5.0])
def test_folding_keeps_the_unitary_and_counts_gates_as_mitiq(scale):
    import cirq
    from mitiq.zne.scaling import fold_global
    from qiskit import QuantumCircuit
    from qiskit.circuit import Parameter
    from qiskit.quantum_info import Operator

    theta = Parameter("t0")
    qc = QuantumCircuit(2)
    qc.rx(theta, 0)
    qc.sx(1)
    qc.cx(0, 1)
    qc.rzz(2 * theta + 0.3, 0, 1)
    qc.s(0)
    folded = fold(qc, scale)
    assert Operator(folded.assign_parameters({theta: 0.7})).equiv(
        Operator(qc.assign_parameters({theta: 0.7})))
    q = cirq.LineQubit.range(2)
    same_length = cirq.Circuit(cirq.X(q[0]), cirq.Y(q[1]), cirq.CNOT(*q), cirq.CZ(*q), cirq.S(q[0]))
    assert len(folded.data) == len(list(fold_global(same_length, scale).all_operations()))


@pytest.mark.parametrize("method", ["richardson", "linear"])
def test_extrapolation_weights_reproduce_mitiq_factories(method):
    from mitiq.zne.inference import LinearFactory, RichardsonFactory

    factory = {"richardson": RichardsonFactory, "linear": LinearFactory}[method]
    factors = [1.0, 2.5, 3.0, 5.0]
    weights = extrapolation_weights(factors, method)
    for values in np.random.default_rng(0).normal(size=(5, 4)):
        assert weights @ values == pytest.approx(factory.extrapolate(factors, list(values)))


def test_m3_correction_inverts_the_tensored_confusion():
    confusions = [np.array([[0.97, 0.03], [0.05, 0.95]]), np.array([[0.9, 0.1], [0.02, 0.98]])]
    calibration = np.stack([np.stack([c[0] for c in confusions]),
                            np.stack([c[1] for c in confusions])])  # (prepared, Q, read)
    true = np.random.default_rng(1).dirichlet(np.ones(4), size=3)  # (C, 4), bit 0 = qubit 0
    measured = true @ np.kron(confusions[1], confusions[0])  # qubit 1 is the high bit
    shots = 10**6
    measured = np.rint(measured * shots) / shots
    mitigation = Mitigation(readout=True)
    corrected = mitigation.correct_readout(measured, [0, 1], shots, lambda qubits: calibration)
    expected = np.linalg.solve(np.kron(confusions[1], confusions[0]).T, measured.T).T
    np.testing.assert_allclose(corrected, expected, atol=1e-5)


REFUSED = [
    ({"name": "default.qubit", "mitigation": ["zne"]}, "default.qubit computes exact noiseless"),
    ({"name": "lightning.qubit", "mitigation": ["readout"]}, "nothing to mitigate"),
    ({"name": "exact", "mitigation": ["zne"]}, "set backend.shots > 0"),
    ({"name": "aer", **NOISE, "mitigation": ["zne"]}, "set backend.shots > 0"),
    ({"name": "aer", "shots": 10, "mitigation": ["readout"]}, "backend.noise is ''"),
    ({"name": "exact", "shots": 10, **NOISE, "readout_error": 0.0, "mitigation": ["readout"]},
     "no readout error to correct"),
    ({"name": "aer", "shots": 10, "noise": "depolarizing", "readout_error": 0.02,
      "mitigation": ["zne"]}, "no gate noise"),
    ({"name": "aer", "shots": 10, **NOISE, "mitigation": ["zne", "zne"]}, "named once"),
    ({"name": "aer", "shots": 10, **NOISE, "mitigation": ["zne"], "zne_scale_factors": [1.0]},
     "at least two distinct"),
    ({"name": "aer", "shots": 10, **NOISE, "mitigation": ["zne"],
      "zne_scale_factors": [0.5, 1.0]}, "each >= 1"),
    ({"name": "aer", "shots": 10, **NOISE, "zne_extrapolation": "linear"},
     "needs 'zne' in backend.mitigation"),
    ({"name": "default.qubit", "zne_scale_factors": [1.0, 2.0]}, "needs 'zne'"),
    ({"name": "exact", "readout_cal_shots": 5}, "needs 'readout'"),
]


@pytest.mark.parametrize("settings, message", REFUSED)
def test_settings_mitigation_cannot_honour_are_refused(settings, message):
    with pytest.raises(UserError, match=message) as err:
        make_executor(SPEC.qfunc, 4, Backend(**settings))
    assert "\n" not in str(err.value)


def test_an_unknown_mitigation_is_a_config_error():
    with pytest.raises(ConfigError, match="backend.mitigation\\[0\\]: unknown value 'pec'"):
        apply_overrides(Config(), ["backend.mitigation=['pec']"])


@pytest.mark.parametrize("kind, package", [("zne", "mitiq"), ("readout", "mthree")])
def test_a_missing_optional_package_names_the_extra(monkeypatch, kind, package):
    monkeypatch.setitem(sys.modules, package, None)  # import fails, find_spec finds nothing
    backend = Backend(name="aer", shots=10, **NOISE, mitigation=[kind])
    with pytest.raises(UserError, match=rf"needs {package}, which is not installed: "
                                        rf"pip install 'qepi\[mitigation\]'"):
        make_executor(SPEC.qfunc, 4, backend)


def test_backends_without_mitigation_never_import_mitiq_or_mthree():
    code = ("import sys, torch, qepi\n"
            "from qepi.backends import make_executor\n"
            "from qepi.circuits import build_circuit\n"
            "from qepi.config import Backend, Circuit\n"
            "spec = build_circuit(Circuit(n_qubits=2, n_layers=1))\n"
            "for name in ('exact', 'aer'):\n"
            "    b = Backend(name=name, shots=10, noise='depolarizing', readout_error=0.1)\n"
            "    make_executor(spec.qfunc, 2, b)(torch.zeros(2, 1, 2), {'weights': torch.zeros(1, 1, 2, 3)})\n"
            "print(sorted(m for m in ('mitiq', 'mthree') if m in sys.modules))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_var_and_probs_outputs_come_from_the_mitigated_counts():
    import pennylane as qml

    def circuit(inputs, weights):
        qml.RY(inputs[..., 0], wires=0)
        qml.RX(weights[..., 0], wires=1)
        qml.CNOT(wires=[0, 1])
        qml.RY(weights[..., 1], wires=1)
        return qml.expval(qml.PauliX(0)), qml.var(qml.PauliZ(1)), qml.probs(wires=[0, 1])

    x = torch.tensor([[[0.4]], [[1.9]]], dtype=torch.float64)  # (N, K, F)
    w = torch.tensor([[0.7, -0.3]], dtype=torch.float64)  # (K, 2)
    exact = make_executor(circuit, 2, Backend(name="default.qubit"))(x, {"weights": w})
    noisy = Backend(name="aer", shots=10**5, **NOISE)
    plain = make_executor(circuit, 2, noisy, seed=1)(x, {"weights": w})
    mitigated = make_executor(circuit, 2, replace(noisy, mitigation=["readout", "zne"]),
                              seed=1)(x, {"weights": w})  # (N, K, 1 + 1 + 4)
    torch.testing.assert_close(mitigated[..., 2:].sum(-1), torch.ones(2, 1, dtype=torch.float64))
    assert (mitigated - exact).abs().mean() <= 0.5 * (plain - exact).abs().mean()
