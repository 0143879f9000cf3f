"""The runtime backend in Qiskit Runtime's local testing mode: its estimates against exact
values (default.qubit) on a noiseless device with a line of qubits, and against aer's exact
noisy values on the same fake device; one transpilation per structure, one SamplerV2 job per
call, reproducible draws, settings refused, service errors as one line. No network."""

import math

import numpy as np
import pennylane as qml
import pytest
import torch

from qepi.backends import make_executor
from qepi.backends.runtime import RuntimeExecutor
from qepi.config import Backend, Config, apply_overrides, inert_keys
from qepi.errors import UserError

LINE = [[a, b] for i in range(4) for a, b in ((i, i + 1), (i + 1, i))]  # 0-1-2-3-4


@pytest.fixture(scope="module")
def line_device():
    """A noiseless 5-qubit device whose qubits form a line (IBM's rz, sx, x, cx basis)."""
    from qiskit.providers.fake_provider import GenericBackendV2

    return GenericBackendV2(num_qubits=5, basis_gates=["cx", "rz", "sx", "x", "id"],
                            coupling_map=LINE, noise_info=False, seed=0)


def runtime(qfunc, n_qubits, shots, device="FakeManilaV2", level=1, target=None, seed=0):
    backend = Backend(name="runtime", device=device, shots=shots, optimization_level=level, threads=1)
    return RuntimeExecutor(qfunc, n_qubits, backend, seed=seed, target=target)


def eigenstates(inputs):
    """|1⟩ ⊗ |+⟩ ⊗ |-i⟩, then CNOT pairs (identities) between every two wires, which a line
    of qubits must route."""
    qml.PauliX(wires=0)
    qml.Hadamard(wires=1)
    qml.Hadamard(wires=2)
    qml.adjoint(qml.S)(wires=2)
    for a, b in [(0, 2), (1, 2), (0, 1)]:
        qml.CNOT(wires=[a, b])
        qml.CNOT(wires=[a, b])
    return [qml.expval(qml.PauliZ(0)), qml.expval(qml.PauliX(1)), qml.expval(qml.PauliY(2)),
            qml.probs(wires=[0]), qml.probs(wires=[2, 0])]


@pytest.mark.parametrize("level", [0, 1, 2, 3])
def test_bits_are_read_through_the_layout_at_every_optimization_level(line_device, level):
    run = runtime(eigenstates, 3, shots=200, level=level, target=line_device)
    out = run(torch.zeros(2, 1, 1, dtype=torch.float64), {})[:, 0]  # (N, 1 + 1 + 1 + 2 + 4)
    # deterministic outcomes: Z0 = -1, X1 = +1, Y2 = -1, wire 0 is 1; wire 2 is random in Z
    torch.testing.assert_close(out[:, :5], torch.tensor([[-1.0, 1.0, -1.0, 0.0, 1.0]] * 2,
                                                        dtype=torch.float64), rtol=0, atol=0)
    assert out[:, 5].eq(0).all() and out[:, 7].eq(0).all()  # (wire 2, wire 0) = (b, 0) never
    torch.testing.assert_close(out[:, 6] + out[:, 8], torch.ones(2, dtype=torch.float64))
    layout = run.details()["structures"][0]["layout"]
    assert len(set(layout)) == 3 and set(layout) <= set(range(5))


def mixed(inputs, weights):
    qml.RY(inputs[..., 0], wires=0)
    qml.RX(inputs[..., 1], wires=1)
    qml.RY(weights[0], wires=2)
    qml.CNOT(wires=[0, 2])
    qml.CRX(weights[1], wires=[2, 1])
    qml.RZ(weights[2], wires=0)
    qml.CNOT(wires=[1, 0])
    return [qml.expval(qml.PauliZ(0) @ qml.PauliX(2)), qml.expval(0.5 * qml.PauliY(1) - qml.PauliZ(2)),
            qml.var(qml.PauliX(0)), qml.probs(wires=[2, 1])]


def jacobians(outputs, leaves):
    """d output column / d each leaf, one backward per column: (n_outputs, *leaf.shape) each."""
    flat = outputs.reshape(-1, outputs.shape[-1]).sum(0)
    rows = [torch.autograd.grad(flat[o], leaves, retain_graph=True) for o in range(flat.numel())]
    return [torch.stack([row[i] for row in rows]) for i in range(len(leaves))]


def test_values_and_gradients_agree_with_default_qubit_within_five_sigma(line_device):
    shots = 20000
    generator = torch.Generator().manual_seed(3)
    x = (torch.rand(2, 1, 2, generator=generator, dtype=torch.float64) * math.pi).requires_grad_()
    w = (torch.rand(1, 3, generator=generator, dtype=torch.float64) * math.pi).requires_grad_()
    run = runtime(mixed, 3, shots=shots, level=3, target=line_device)
    got = run(x, {"weights": w})  # (N, 1, 7)
    reference = make_executor(mixed, 3, Backend(name="default.qubit"))
    want = reference(x, {"weights": w})
    # a column's standard deviation is at most: Σ|c| / √S for expval, 2/√S for var(X)
    # (1 - m² from one mean), 1/2√S for a probability; a gradient's (difference of two
    # estimates of angles entering with weight <= 1, CRX's two halves) at most twice that
    sigma = torch.tensor([1.0, 1.5, 2.0, 0.5, 0.5, 0.5, 0.5], dtype=torch.float64) / math.sqrt(shots)
    assert torch.all((got - want).abs() <= 5 * sigma), (got - want).abs() / sigma
    for got_j, want_j in zip(jacobians(got, (x, w)), jacobians(want, (x, w))):
        bound = 5 * 2 * sigma.view(-1, *[1] * (got_j.dim() - 1))
        assert torch.all((got_j - want_j).abs() <= bound), (got_j - want_j).abs().amax()
    assert run.jobs == 1 and run.transpilations == 1


def rotations(inputs, weights):
    qml.RY(inputs[..., 0], wires=0)
    qml.RX(weights[0], wires=1)
    qml.CNOT(wires=[0, 1])
    qml.RY(weights[1], wires=0)
    return [qml.expval(qml.PauliZ(0)), qml.expval(qml.PauliX(1)), qml.expval(qml.PauliZ(0) @ qml.PauliZ(1))]


def test_device_noise_matches_aer_with_the_same_noise_model():
    """Aer's simulator of FakeManilaV2 (its noise model, ``NoiseModel.from_backend``, is the
    one backend.noise='FakeManilaV2' uses) at optimization level 0 (aer's layout and gates):
    the counts' means agree with aer's exact noisy values (no shots) to 5σ, and the test can
    fail: the noiseless values, and those of the fake device's own noise model (its
    calibration properties, asymmetric readout errors: what local testing mode simulates),
    differ from aer's by more than that."""
    from qiskit_aer import AerSimulator
    from qiskit_ibm_runtime.fake_provider import FakeManilaV2

    shots = 100000
    x = torch.tensor([[[0.4]], [[2.1]]], dtype=torch.float64)
    w = torch.tensor([[0.7, -1.1]], dtype=torch.float64)
    target = AerSimulator.from_backend(FakeManilaV2())
    got = runtime(rotations, 2, shots=shots, level=0, target=target)(x, {"weights": w})
    noisy = make_executor(rotations, 2, Backend(name="aer", noise="FakeManilaV2"))(x, {"weights": w})
    ideal = make_executor(rotations, 2, Backend(name="default.qubit"))(x, {"weights": w})
    fake = runtime(rotations, 2, shots=shots, level=0)(x, {"weights": w})
    tolerance = 5 / math.sqrt(shots)
    assert (got - noisy).abs().max() <= tolerance, (got - noisy).abs().max()
    assert (ideal - noisy).abs().max() > tolerance
    assert (fake - noisy).abs().max() > tolerance


def structures(inputs, weights):
    if weights[0] > 0:  # a copy's weights choose its gates: two structures in one call
        qml.Hadamard(wires=0)
    qml.RY(inputs[..., 0] * weights[1], wires=1)
    qml.CNOT(wires=[1, 0])
    return [qml.expval(qml.PauliZ(0)), qml.expval(qml.PauliX(1))]


def test_one_transpilation_per_structure_and_one_job_per_call():
    run = runtime(structures, 2, shots=32)
    w = torch.tensor([[1.0, 0.3], [-1.0, 0.8]], dtype=torch.float64, requires_grad=True)  # K = 2
    optimizer = torch.optim.SGD([w], lr=0.01)
    for step in range(3):  # forward + backward
        optimizer.zero_grad()
        run(torch.rand(4, 2, 1, dtype=torch.float64), {"weights": w}).sum().backward()
        optimizer.step()
        assert run.jobs == step + 1
    with torch.no_grad():
        run(torch.rand(5, 2, 1, dtype=torch.float64), {"weights": w})
    assert run.jobs == 4 and run.transpilations == 2
    assert [s["wires"] for s in run.details()["structures"]] == [2, 2]
    assert w.grad is not None and torch.all(w.grad[:, 1] != 0)


def test_draws_are_independent_reproducible_and_resume_from_state_dict():
    x = torch.full((6, 1, 1), 1.1, dtype=torch.float64)  # six identical rows
    w = torch.tensor([[1.0, 1.0]], dtype=torch.float64)
    first = runtime(structures, 2, shots=50, seed=5)
    calls = [first(x, {"weights": w}) for _ in range(2)]
    assert len({tuple(row.tolist()) for row in calls[0][:, 0]}) > 1  # identical rows differ
    assert not torch.equal(calls[0], calls[1])  # so do two calls
    again = runtime(structures, 2, shots=50, seed=5)
    assert torch.equal(again(x, {"weights": w}), calls[0])
    resumed = runtime(structures, 2, shots=50, seed=99)
    resumed.load_state_dict(again.state_dict())
    assert torch.equal(resumed(x, {"weights": w}), calls[1])


@pytest.mark.parametrize("override, message", [
    ("backend.shots=0", "backend.shots=0: the runtime backend samples a device"),
    ("backend.device=''", "backend.device: name the target"),
    ("backend.device=FakeAtlantisV2", "backend.device='FakeAtlantisV2': no such fake backend"),
    ("backend.noise=depolarizing", "backend.noise='depolarizing': the runtime backend's noise"),
])
def test_settings_it_cannot_honour_are_refused(override, message):
    from qepi.commands.common import check_backend_settings

    cfg = apply_overrides(Config(), ["backend.name=runtime", "backend.device=FakeManilaV2",
                                     "backend.shots=10", override])
    with pytest.raises(UserError, match=message):
        check_backend_settings(cfg.backend)


def test_keys_other_backends_do_not_read_are_named():
    on_aer = apply_overrides(Config(), ["backend.name=aer", "backend.device=FakeTorino",
                                        "backend.optimization_level=3"])
    assert set(inert_keys(on_aer)) == {"backend.device", "backend.optimization_level"}
    on_runtime = apply_overrides(Config(), ["backend.name=runtime", "backend.device=FakeTorino",
                                            "backend.shots=10", "backend.chunk_rows=5",
                                            "backend.dtype=float32", "backend.threads=1"])
    assert set(inert_keys(on_runtime)) == {"backend.chunk_rows", "backend.dtype"}
    with pytest.raises(UserError, match="optimization_level: must lie in"):
        apply_overrides(Config(), ["backend.optimization_level=4"])


def test_service_errors_are_one_line(monkeypatch):
    import qiskit_ibm_runtime
    from qiskit_ibm_runtime.accounts import AccountNotFoundError
    from qiskit_ibm_runtime.exceptions import IBMRuntimeError

    def failing_run(self, pubs, **kwargs):
        raise IBMRuntimeError("Error code 3458; You have reached the limit of pending jobs\nmore")

    monkeypatch.setattr(qiskit_ibm_runtime.SamplerV2, "run", failing_run)
    run = runtime(rotations, 2, shots=10)
    with pytest.raises(UserError) as err:
        run(torch.zeros(1, 1, 1, dtype=torch.float64), {"weights": torch.zeros(1, 2)})
    assert str(err.value) == ("backend.device='FakeManilaV2': IBM Runtime failed (IBMRuntimeError: "
                              "Error code 3458; You have reached the limit of pending jobs); "
                              "a training run continues with qepi train --resume RUN_DIR")

    def no_account(*args, **kwargs):
        raise AccountNotFoundError("Unable to find account.")

    monkeypatch.setattr(qiskit_ibm_runtime, "QiskitRuntimeService", no_account)
    device = runtime(rotations, 2, shots=10, device="ibm_torino")
    with pytest.raises(UserError, match="^backend.device='ibm_torino': no saved IBM Quantum account"):
        device(torch.zeros(1, 1, 1, dtype=torch.float64), {"weights": torch.zeros(1, 2)})


def test_evaluation_runs_in_a_batch_and_training_in_a_session(monkeypatch):
    import qiskit_ibm_runtime

    events = []

    def recording(kind, base):
        class Mode(base):
            def __init__(self, *args, **kwargs):
                events.append(f"open {kind}")
                super().__init__(*args, **kwargs)

            def close(self):
                events.append(f"close {kind}")
                super().close()
        return Mode

    monkeypatch.setattr(qiskit_ibm_runtime, "Session", recording("session", qiskit_ibm_runtime.Session))
    monkeypatch.setattr(qiskit_ibm_runtime, "Batch", recording("batch", qiskit_ibm_runtime.Batch))
    run = runtime(rotations, 2, shots=8)
    x = torch.rand(2, 1, 1, dtype=torch.float64)
    w = torch.zeros(1, 2, dtype=torch.float64, requires_grad=True)
    with torch.no_grad():
        run(x, {"weights": w})
    assert events == ["open batch"]
    run(x, {"weights": w}).sum().backward()  # training: the batch closes, a session opens
    with torch.no_grad():
        run(x, {"weights": w})  # evaluation between steps stays in the session
    assert events == ["open batch", "close batch", "open session"]
    run.close()
    assert events[-1] == "close session" and run.jobs == 3


def test_a_mode_the_service_refuses_falls_back_to_job_mode(monkeypatch):
    import qiskit_ibm_runtime
    from qiskit_ibm_runtime.exceptions import IBMRuntimeError

    def refused(*args, **kwargs):
        raise IBMRuntimeError("You are not authorized to run a session when using the open plan.")

    monkeypatch.setattr(qiskit_ibm_runtime, "Session", refused)
    run = runtime(rotations, 2, shots=8)
    w = torch.zeros(1, 2, dtype=torch.float64, requires_grad=True)
    run(torch.rand(2, 1, 1, dtype=torch.float64), {"weights": w}).sum().backward()
    assert run.jobs == 1 and w.grad is not None


def _flipped(inputs):
    qml.PauliX(wires=0)
    return [qml.expval(qml.PauliZ(0)), qml.expval(qml.PauliZ(1))]  # exactly -1, +1


def test_readout_mitigation_on_the_device_removes_its_readout_bias():
    """FakeManilaV2's readout errors bias ⟨Z⟩ towards 0 by a few percent; M3, calibrated by
    one device job, removes that bias (the X gate's own error is ~1e-4)."""
    x = torch.zeros(4, 1, 1, dtype=torch.float64)
    exact = torch.tensor([-1.0, 1.0], dtype=torch.float64)
    plain = runtime(_flipped, 2, shots=20000)(x, {})[:, 0]  # (4, 2)
    backend = Backend(name="runtime", device="FakeManilaV2", shots=20000, threads=1,
                      mitigation=["readout"])
    run = RuntimeExecutor(_flipped, 2, backend)
    mitigated = run(x, {})[:, 0]
    bias, left = (plain - exact).abs().mean(), (mitigated - exact).abs().mean()
    assert bias > 0.01 and left < bias / 3, (bias, left)
    assert run.stats.mitigation_circuits == 2 and run.jobs == 2  # calibration + the call


def test_zne_on_the_device_folds_at_optimization_level_0_and_is_refused_above():
    backend = Backend(name="runtime", device="FakeManilaV2", shots=100, threads=1,
                      optimization_level=0, mitigation=["zne"])
    run = RuntimeExecutor(_flipped, 2, backend)
    run(torch.zeros(3, 1, 1, dtype=torch.float64), {})
    assert run.stats.circuits == 9 and run.stats.mitigation_circuits == 6  # scales 1, 3, 5
    assert run.details()["transpilations"] == 3 and run.jobs == 1
    ops = [s["ops"].get("x", 0) for s in run.details()["structures"]]
    assert ops == [1, 3, 5]  # X folded as X (X† X)^k, kept by a level-0 transpile
    with pytest.raises(UserError, match="optimization_level=0"):
        make_executor(_flipped, 2, Backend(name="runtime", device="FakeManilaV2", shots=100,
                                           optimization_level=1, mitigation=["zne"]))
