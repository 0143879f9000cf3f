"""QuantumLayer behaves as ``qml.qnn.TorchLayer`` on every backend.

Each case builds a real TorchLayer on ``default.qubit`` as the reference, loads its state
dict into a QuantumLayer on the backend under test and compares outputs, shapes and
gradients (w.r.t. inputs and every weight).
"""

import numpy as np
import pennylane as qml
import pytest
import torch

from qepi.errors import UserError
from qepi.layers import QuantumLayer
from qepi.layers.quantum_layer import ENV_BACKEND

BACKENDS = ["default.qubit", "lightning.qubit", "exact", "aer"]
SHAPES = {"w": 1, "layers": (1, 2, 3)}  # a scalar weight (TorchLayer: 1 -> ()) and a tensor
RETURNS = {
    "expval": lambda: qml.expval(qml.PauliZ(0)),
    "expval_list": lambda: [qml.expval(qml.PauliZ(0))],
    "var": lambda: qml.var(qml.PauliX(1)),
    "probs": lambda: qml.probs(wires=[1, 0]),
    "probs_all": lambda: qml.probs(),
    "mixed": lambda: [qml.expval(qml.PauliZ(0)), qml.probs(wires=[1]), qml.var(qml.PauliY(0))],
}


@pytest.fixture(autouse=True)
def no_backend_switch(monkeypatch):
    monkeypatch.delenv(ENV_BACKEND, raising=False)


def qnode_for(measure, device=None, **qnode_kwargs):
    def circuit(inputs, w, layers):
        qml.AngleEmbedding(inputs, wires=range(2))
        qml.RX(w, wires=0)
        qml.StronglyEntanglingLayers(layers, wires=range(2))
        return measure()

    device = device or qml.device("default.qubit", wires=2)
    return qml.QNode(circuit, device, interface="torch", **qnode_kwargs)


def values_and_grads(layer, x, call=None):
    """Outputs for x, and the gradients of a fixed projection of them w.r.t. x and weights."""
    x = x.clone().requires_grad_()
    out = (call or layer)(x)
    cotangent = torch.linspace(-1.0, 1.0, out.numel(), dtype=out.dtype).reshape(out.shape)
    params = [x, *layer.parameters()]
    grads = torch.autograd.grad((out * cotangent).sum(), params)
    return out.detach(), [g.detach() for g in grads]


def pair(measure, backend, **qnode_kwargs):
    torch.manual_seed(0)
    qnode = qnode_for(measure, **qnode_kwargs)
    reference = qml.qnn.TorchLayer(qnode, SHAPES)
    ours = QuantumLayer(qnode, SHAPES, backend=backend)
    ours.load_state_dict(reference.state_dict())  # a TorchLayer state dict loads as it is
    return reference, ours


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("returns", list(RETURNS))
def test_values_shapes_and_gradients_match_torchlayer(backend, returns):
    reference, ours = pair(RETURNS[returns], backend)
    x = torch.rand(4, 3, 2, dtype=torch.float64)  # two batch dimensions
    expected, expected_grads = values_and_grads(reference, x)
    out, grads = values_and_grads(ours, x)
    assert out.shape == expected.shape
    torch.testing.assert_close(out, expected, atol=1e-6, rtol=0)
    for g, e in zip(grads, expected_grads):
        torch.testing.assert_close(g, e.to(g.dtype), atol=1e-6, rtol=0)
    single = ours(x[0, 0])  # one unbatched sample: TorchLayer's () or (n_outputs,)
    assert single.shape == reference(x[0, 0]).shape


@pytest.mark.parametrize("backend", BACKENDS)
def test_float32_stays_float32(backend):
    _, ours = pair(RETURNS["expval_list"], backend)
    x = torch.rand(3, 2, requires_grad=True)  # float32, like the weights
    out = ours(x)
    out.sum().backward()
    assert out.dtype == x.grad.dtype == ours.layers.grad.dtype == torch.float32


def test_weight_shapes_state_dict_and_init_follow_torchlayer():
    qnode = qnode_for(RETURNS["expval"])
    shapes = {"w": np.int64(1), "layers": (np.int64(1), 2, 3)}  # numpy integers, as from numpy
    init = {"w": torch.tensor(0.25), "layers": torch.nn.init.ones_}
    ours = QuantumLayer(qnode, shapes, init)  # TorchLayer's positional order
    reference = qml.qnn.TorchLayer(qnode, shapes, init_method=init)
    assert {k: v.shape for k, v in ours.state_dict().items()} == \
        {k: v.shape for k, v in reference.state_dict().items()} == \
        {"w": torch.Size([]), "layers": torch.Size([1, 2, 3])}
    assert ours.w.item() == 0.25 and torch.all(ours.layers == 1)
    assert ours.qnode is qnode and set(ours.qnode_weights) == {"w", "layers"}
    assert ours.input_arg == "inputs"
    with pytest.raises(KeyError):
        QuantumLayer(qnode=qnode, weight_shapes=shapes, init_method={"w": torch.tensor(0.1)})
    with pytest.raises(ValueError, match="'layers'"):
        QuantumLayer(qnode, shapes, init_method={"w": torch.tensor(0.1), "layers": torch.ones(3)})


@pytest.mark.parametrize("backend", BACKENDS)
def test_signatures_torchlayer_accepts(backend):
    """Inputs not first, inputs by default, or weights through **kwargs."""
    torch.manual_seed(1)
    reference = qml.qnn.TorchLayer(qnode_for(RETURNS["expval_list"]), SHAPES)

    def shuffled(w, inputs, layers):
        return qnode_for(RETURNS["expval_list"]).func(inputs, w, layers)

    def keywords(inputs, **weights):
        return qnode_for(RETURNS["expval_list"]).func(inputs, **weights)

    x = torch.rand(3, 2, dtype=torch.float64)
    for func in (shuffled, keywords):
        ours = QuantumLayer(func, SHAPES, n_qubits=2, backend=backend)
        ours.load_state_dict(reference.state_dict())
        torch.testing.assert_close(ours(x), reference(x), atol=1e-6, rtol=0)


def test_signatures_torchlayer_refuses():
    def no_inputs(w, layers):
        return qml.expval(qml.PauliZ(0))

    def star_args(inputs, w, *layers):
        return qml.expval(qml.PauliZ(0))

    with pytest.raises(TypeError, match="argument with name inputs"):
        QuantumLayer(no_inputs, SHAPES)
    with pytest.raises(TypeError, match="variable number of positional"):
        QuantumLayer(star_args, SHAPES)
    with pytest.raises(ValueError, match="missing: layers"):
        QuantumLayer(qnode_for(RETURNS["expval"]), {"w": 1})
    with pytest.raises(ValueError, match="should not have its dimension"):
        QuantumLayer(qnode_for(RETURNS["expval"]), {**SHAPES, "inputs": 2})
    with pytest.raises(ValueError, match="Invalid interface 'jax'"):
        QuantumLayer(qml.QNode(no_inputs, qml.device("default.qubit", wires=1), interface="jax"),
                     {})


@pytest.mark.parametrize("backend", BACKENDS)
def test_device_without_wires_takes_them_from_the_circuit(backend):
    torch.manual_seed(2)
    reference = qml.qnn.TorchLayer(qnode_for(RETURNS["expval_list"]), SHAPES)
    ours = QuantumLayer(qnode_for(RETURNS["expval_list"], qml.device("default.qubit")), SHAPES,
                        backend=backend)
    ours.load_state_dict(reference.state_dict())
    x = torch.rand(3, 2, dtype=torch.float64)
    torch.testing.assert_close(ours(x), reference(x), atol=1e-6, rtol=0)
    assert ours.n_qubits == 2


def shots_qnode(shots):
    return qml.set_shots(qnode_for(RETURNS["expval_list"]), shots)


@pytest.mark.parametrize("backend", ["default.qubit", "aer", "exact", None])
def test_qnode_shots_are_sampled(backend):
    """Outputs are frequencies of 50 shots: ⟨Z⟩ = 2 n₀/50 - 1 with n₀ a whole count."""
    layer = QuantumLayer(shots_qnode(50), SHAPES, backend=backend)
    counts = (layer(torch.rand(8, 2, dtype=torch.float64)) + 1) * 25
    torch.testing.assert_close(counts, counts.round(), atol=1e-9, rtol=0)
    shots = layer.execution_stats().shots  # aer also samples the shifted circuits
    assert shots % 50 == 0 and shots >= 8 * 50


@pytest.mark.parametrize("backend", ["default.qubit", "aer", "exact"])
def test_a_shot_vector_gives_one_estimate_per_entry(backend):
    layer = QuantumLayer(shots_qnode([20, 30]), SHAPES, backend=backend)
    out = layer(torch.rand(5, 2, dtype=torch.float64))
    assert out.shape == (2, 5, 1)
    torch.testing.assert_close((out[0] + 1) * 10, ((out[0] + 1) * 10).round(), atol=1e-9, rtol=0)
    torch.testing.assert_close((out[1] + 1) * 15, ((out[1] + 1) * 15).round(), atol=1e-9, rtol=0)


@pytest.mark.parametrize("backend", ["lightning.qubit"])
def test_qnode_shots_are_refused_where_values_are_exact(backend):
    with pytest.raises(UserError, match=r"QNode shots=\[50\]: .* pass backend=Backend\(name='aer'\)"):
        QuantumLayer(shots_qnode(50), SHAPES, backend=backend)


def test_qnode_settings_without_a_backend(monkeypatch):
    mixed = qnode_for(RETURNS["expval"], qml.device("default.mixed", wires=2))
    with pytest.raises(UserError, match="device default.mixed: .*Backend\\(name='aer', noise="):
        QuantumLayer(mixed, SHAPES)
    shift = qnode_for(RETURNS["var"], diff_method="parameter-shift")
    with pytest.raises(UserError, match="diff_method='parameter-shift': exact differentiates"):
        QuantumLayer(shift, SHAPES, backend="exact")
    assert QuantumLayer(shift, SHAPES).executor.diff_method == "parameter-shift"  # honoured
    monkeypatch.setenv(ENV_BACKEND, "exact")
    assert QuantumLayer(qnode_for(RETURNS["expval"]), SHAPES).backend.name == "exact"
    layer = QuantumLayer(shots_qnode(50), SHAPES)  # exact samples the QNode's shots itself
    layer(torch.rand(4, 2, dtype=torch.float64))
    assert layer.backend.name == "exact" and layer.execution_stats().shots >= 4 * 50
    monkeypatch.setenv(ENV_BACKEND, "lightning.qubit")
    with pytest.warns(UserWarning, match="QEPI_BACKEND=lightning.qubit not applied: QNode shots"):
        layer = QuantumLayer(shots_qnode(50), SHAPES)
    assert layer.executor.shots == 50  # sampled on the QNode's own device


def test_parameter_shift_through_pennylane_matches_torchlayer():
    """Row by row for TorchLayer: PennyLane's parameter shift cannot differentiate a batch."""
    reference, ours = pair(RETURNS["mixed"], None, diff_method="parameter-shift")
    x = torch.rand(3, 2, dtype=torch.float64)
    expected, expected_grads = values_and_grads(
        reference, x, call=lambda rows: torch.stack([reference(row) for row in rows]))
    out, grads = values_and_grads(ours, x)
    torch.testing.assert_close(out, expected, atol=1e-6, rtol=0)
    for g, e in zip(grads, expected_grads):
        torch.testing.assert_close(g, e.to(g.dtype), atol=1e-6, rtol=0)


def test_pennylane_inspection_works_on_the_layer():
    reference, ours = pair(RETURNS["mixed"], "exact")
    x = torch.rand(3, 2)
    assert qml.draw(ours)(x) == qml.draw(reference)(x)
    tape, expected = qml.workflow.construct_tape(ours)(x), qml.workflow.construct_tape(reference)(x)
    assert [op.name for op in tape.operations] == [op.name for op in expected.operations]
    assert len(tape.trainable_params) == len(expected.trainable_params) == 2
    _, ax = qml.draw_mpl(ours)(x)
    assert [t.get_text() for t in ax.texts][:3] == ["0", "1", "AngleEmbedding"]
    info = qml.specs(ours.qnode)(x, **ours.qnode_weights)  # specs accepts QNodes and TorchLayers
    assert info["device_name"] == "default.qubit"
