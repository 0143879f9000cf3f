"""Property-based tests: config round trips, physical invariants of random circuits, and
parameter-shift gradients on Aer equal to backprop on default.qubit."""

import dataclasses
import typing

import numpy as np
import pennylane as qml
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from qepi.backends.aer import AerExecutor
from qepi.circuits import ANSATZE, ENCODINGS, build_circuit
from qepi.config import AtLeast, Backend, Circuit, Config, from_toml, to_toml

_LEAVES = {
    bool: st.booleans(),
    int: st.integers(-(2**62), 2**62),
    float: st.floats(allow_nan=False, allow_infinity=False),
    str: st.text(max_size=20),
}


def _leaf(annotation):
    """Any value the config accepts for ``annotation``: a Literal's names, a bounded range."""
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        return st.sampled_from(typing.get_args(annotation))
    if origin is list:
        return st.lists(_leaf(typing.get_args(annotation)[0]), max_size=5)
    if origin is typing.Annotated:
        base, bound = typing.get_args(annotation)
        if isinstance(bound, AtLeast):
            return st.integers(int(bound.low), 2**62) if base is int else st.floats(min_value=bound.low)
        if base is int:
            return st.integers(int(bound.low) + bound.open, int(bound.high) - bound.open)
        return st.floats(bound.low, bound.high, exclude_min=bound.open, exclude_max=bound.open)
    return _LEAVES[annotation]


def _section(cls):
    hints = typing.get_type_hints(cls, include_extras=True)
    return st.builds(cls, **{f.name: _leaf(hints[f.name]) for f in dataclasses.fields(cls)})


configs = st.builds(Config, **{
    f.name: _section(typing.get_type_hints(Config)[f.name]) for f in dataclasses.fields(Config)
})


@settings(max_examples=60, deadline=None)
@given(configs)
def test_any_config_survives_a_toml_round_trip(cfg):
    assert from_toml(to_toml(cfg)) == cfg


circuits = st.builds(
    Circuit,
    n_qubits=st.integers(1, 4),
    encoding=st.sampled_from(sorted(ENCODINGS)),
    ansatz=st.sampled_from(sorted(ANSATZE)),
    n_layers=st.integers(1, 3),
    reupload=st.booleans(),
    entangling=st.booleans(),
)


@settings(max_examples=40, deadline=None)
@given(circuits, st.integers(0, 2**32 - 1))
def test_random_circuits_keep_states_normalised_and_values_bounded(circuit, seed):
    spec = build_circuit(circuit)
    rng = np.random.default_rng(seed)
    inputs = rng.uniform(-np.pi, np.pi, (3, spec.n_qubits))  # a broadcast batch of 3
    weights = rng.uniform(-2 * np.pi, 2 * np.pi, spec.weight_shapes["weights"])
    dev = qml.device("default.qubit", wires=spec.n_qubits)

    gates = qml.tape.make_qscript(spec.qfunc)(inputs, weights).operations
    (states,) = qml.execute([qml.tape.QuantumScript(gates, [qml.state()])], dev)  # (3, 2**n)
    np.testing.assert_allclose(np.linalg.norm(states, axis=-1), 1.0, atol=1e-12)
    values = np.stack(qml.QNode(spec.qfunc, dev)(inputs, weights))  # (n_outputs, 3)
    assert np.all(np.abs(values) <= 1 + 1e-12)


@settings(max_examples=12, deadline=None)
@given(st.builds(Circuit, n_qubits=st.integers(1, 3), encoding=st.sampled_from(sorted(ENCODINGS)),
                 ansatz=st.sampled_from(sorted(ANSATZE)), n_layers=st.integers(1, 2),
                 reupload=st.booleans(), entangling=st.booleans()),
       st.integers(0, 2**32 - 1))
def test_parameter_shift_on_aer_equals_backprop_on_default_qubit(circuit, seed):
    spec = build_circuit(circuit)
    rng = np.random.default_rng(seed)
    inputs = torch.tensor(rng.uniform(-np.pi, np.pi, (3, spec.n_qubits)), requires_grad=True)  # (N, F)
    weights = torch.tensor(rng.uniform(-np.pi, np.pi, spec.weight_shapes["weights"]), requires_grad=True)
    probe = torch.tensor(rng.normal(size=(3, spec.n_outputs)))  # a random direction of the Jacobian

    qnode = qml.QNode(spec.qfunc, qml.device("default.qubit", wires=spec.n_qubits),
                      interface="torch", diff_method="backprop")
    ref = torch.stack(list(qnode(inputs, weights)), dim=-1)  # (N, n_outputs)
    ref_gx, ref_gw = torch.autograd.grad((ref * probe).sum(), [inputs, weights])

    run = AerExecutor(spec.qfunc, spec.n_qubits, Backend(name="aer", threads=1))
    out = run(inputs[:, None], {"weights": weights[None]})[:, 0]  # (N, 1, F) -> (N, n_outputs)
    gx, gw = torch.autograd.grad((out * probe).sum(), [inputs, weights])

    torch.testing.assert_close(out, ref, atol=1e-9, rtol=0)
    torch.testing.assert_close(gx, ref_gx, atol=1e-9, rtol=0)
    torch.testing.assert_close(gw, ref_gw, atol=1e-9, rtol=0)
