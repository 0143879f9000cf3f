"""Differential fuzz test: every backend against PennyLane default.qubit on random circuits.

A *program* is a plain description drawn by hypothesis (wires, gates with parameter
expressions, observables, measurements); :func:`build_qfunc` turns it into a circuit
function, so failing examples shrink to small programs. Each backend runs the circuit
through :func:`qepi.backends.make_executor` on inputs (N, K, F) and weights (K, ...) in
float64 and must give default.qubit's values and gradients (inputs and weights) to 1e-8,
or raise a one-line :class:`~qepi.errors.UserError`.

The reference runs the same circuit function on default.qubit one row and one copy at a
time (no broadcasting), with PennyLane's eigendecomposition cache emptied before every run
(:mod:`qepi.compat.pennylane`).

Quick profile: 60 examples per backend, derandomized. Long profile:
``QEPI_FUZZ_EXAMPLES=10000 pytest -m fuzz tests/backends/test_fuzz.py -k exact``.
"""

from __future__ import annotations

import inspect
import math
import os

import numpy as np
import pennylane as qml
import pytest
import torch
from hypothesis import HealthCheck, event, given, reject, settings
from hypothesis import strategies as st
from hypothesis.control import currently_in_test_context

from qepi.backends import make_executor
from qepi.backends.support import per_row_reference
from qepi.errors import UserError

pytestmark = pytest.mark.fuzz

EXAMPLES = int(os.environ.get("QEPI_FUZZ_EXAMPLES", "60"))
TOL = 1e-8
BACKENDS = ["exact", "aer", "lightning.qubit"]

# ----------------------------------------------------------------------------- gates

# Operations that are not unitary gates on qubits (or need more than 3 wires).
NOT_GATES = {"Barrier", "Snapshot", "WireCut", "QubitDensityMatrix", "QubitCarry",
             "DoubleExcitation", "DoubleExcitationMinus", "DoubleExcitationPlus",
             "OrbitalRotation", "StatePrep", "BasisState", "Identity"}


def _random_unitary(d: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    q, r = np.linalg.qr(rng.normal(size=(d, d)) + 1j * rng.normal(size=(d, d)))
    return q * (np.diag(r) / np.abs(np.diag(r)))


def _phases(params, d):
    """(…,) angles -> (…, d) unit phases exp(i θ_j), θ_j cycling through ``params``."""
    angles = torch.stack(torch.broadcast_tensors(*[params[j % len(params)] for j in range(d)]), -1)
    return torch.polar(torch.ones_like(angles), angles * (1 + torch.arange(d) / d))


def _trainable_unitary(params, wires, seed):
    """V diag(exp(i θ)) V† with the θ computed from the inputs and weights."""
    d = 2 ** len(wires)
    v = torch.as_tensor(_random_unitary(d, seed))
    return qml.QubitUnitary(v @ torch.diag_embed(_phases(params, d)) @ v.conj().T, wires=wires)


# name -> (wires: (min, max), parameters, builder(params, wires, seed))
SPECIAL: dict[str, tuple] = {
    "QubitUnitary": ((1, 3), 0, lambda p, w, s: qml.QubitUnitary(
        _random_unitary(2 ** len(w), s), wires=w)),
    "TrainableQubitUnitary": ((1, 2), 2, _trainable_unitary),
    "DiagonalQubitUnitary": ((1, 3), 2, lambda p, w, s: qml.DiagonalQubitUnitary(
        _phases(p, 2 ** len(w)), wires=w)),
    "SpecialUnitary": ((1, 2), 3, lambda p, w, s: qml.SpecialUnitary(
        torch.stack(torch.broadcast_tensors(*[p[j % 3] * (j + 1) / 7 for j in range(
            4 ** len(w) - 1)]), -1), wires=w)),
    "BlockEncode": ((2, 2), 0, lambda p, w, s: qml.BlockEncode(
        _random_unitary(2, s)[:1, :2] * 0.8, wires=w)),
    "PCPhase": ((1, 3), 1, lambda p, w, s: qml.PCPhase(p[0], dim=s % 2 ** len(w), wires=w)),
    "PauliRot": ((1, 3), 1, lambda p, w, s: qml.PauliRot(
        p[0], "".join("IXYZ"[(s >> (2 * i)) % 4] for i in range(len(w))), wires=w)),
    "MultiRZ": ((1, 3), 1, lambda p, w, s: qml.MultiRZ(p[0], wires=w)),
    "GlobalPhase": ((1, 2), 1, lambda p, w, s: qml.GlobalPhase(p[0], wires=w)),
    "MultiControlledX": ((2, 3), 0, lambda p, w, s: qml.MultiControlledX(
        wires=w, control_values=[bool((s >> i) & 1) for i in range(len(w) - 1)])),
    "ControlledQubitUnitary": ((2, 3), 0, lambda p, w, s: qml.ControlledQubitUnitary(
        _random_unitary(2, s), wires=w)),
    "IntegerComparator": ((2, 3), 0, lambda p, w, s: qml.IntegerComparator(
        s % 4, geq=bool(s & 1), wires=w)),
}


def _plain_gates() -> dict[str, tuple]:
    """Every qml.ops operation on a fixed number (<= 3) of qubits with scalar parameters."""
    gates = {}
    for name in sorted(qml.ops.__all__):
        cls = getattr(qml.ops, name)
        module = getattr(cls, "__module__", "")
        if (not inspect.isclass(cls) or not issubclass(cls, qml.operation.Operation)
                or issubclass(cls, qml.operation.Channel) or ".cv" in module
                or "qutrit" in module or name in NOT_GATES or name in SPECIAL):
            continue
        n_wires, n_params = cls.num_wires, cls.num_params
        if isinstance(n_wires, int) and n_wires <= 3 and isinstance(n_params, int):
            gates[name] = ((n_wires, n_wires), n_params,
                           lambda p, w, s, cls=cls: cls(*p, wires=w))
    return gates


GATES = {**_plain_gates(), **SPECIAL}


def test_the_catalogue_covers_every_qubit_gate_of_pennylane():
    """Every qml.ops operation of <= 3 qubits is fuzzed, or listed as not a gate."""
    names = set()
    for name in qml.ops.__all__:
        cls = getattr(qml.ops, name)
        if (inspect.isclass(cls) and issubclass(cls, qml.operation.Operation)
                and not issubclass(cls, qml.operation.Channel)
                and ".cv" not in cls.__module__ and "qutrit" not in cls.__module__):
            n_wires = cls.num_wires
            if not isinstance(n_wires, int) or n_wires <= 3:
                names.add(name)
    aliases = {"H", "X", "Y", "Z", "CPhase"}  # other names of catalogued classes
    assert names - set(GATES) - NOT_GATES - aliases == set()
    assert len(GATES) > 50


# ----------------------------------------------------------------------------- programs

UNARY = {"sin": torch.sin, "relu": torch.relu, "abs": torch.abs, "square": torch.square}


def _leaves():
    return st.one_of(
        st.tuples(st.just("x"), st.integers(0, 2)),
        st.tuples(st.just("w"), st.integers(0, 3)),
        st.tuples(st.just("v"), st.integers(0, 1)),
        st.tuples(st.just("const"), st.sampled_from([0.0, 0.5, -1.25, 2.0])),
    )


def expressions(leaves=None):
    """A parameter: inputs/weights entries combined by affine maps, sin, relu, abs, products."""
    return st.recursive(_leaves() if leaves is None else leaves, lambda sub: st.one_of(
        st.tuples(st.just("affine"), st.sampled_from([-1.5, 0.5, 2.0]),
                  st.sampled_from([-0.3, 0.0, 1.0]), sub),
        st.tuples(st.sampled_from(sorted(UNARY)), sub),
        st.tuples(st.sampled_from(["mul", "add"]), sub, sub),
    ), max_leaves=3)


def weight_expressions():
    return expressions(st.one_of(st.tuples(st.just("w"), st.integers(0, 3)),
                                 st.tuples(st.just("v"), st.integers(0, 1))))


def evaluate(expr, x, w, v):
    kind = expr[0]
    if kind == "x":
        return x[..., expr[1] % x.shape[-1]]
    if kind == "w":
        return w[..., expr[1] % w.shape[-1]]
    if kind == "v":
        return v[..., expr[1]]
    if kind == "const":
        return torch.tensor(expr[1], dtype=torch.float64)
    if kind == "affine":
        return expr[1] * evaluate(expr[3], x, w, v) + expr[2]
    if kind in UNARY:
        return UNARY[kind](evaluate(expr[1], x, w, v))
    a, b = evaluate(expr[1], x, w, v), evaluate(expr[2], x, w, v)
    return a * b if kind == "mul" else a + b


@st.composite
def gate_steps(draw, n_wires: int):
    """One gate: (name, wires, parameter expressions, seed, wrapper)."""
    fits = [name for name, ((low, _), _, _) in GATES.items() if low <= n_wires]
    name = draw(st.sampled_from(sorted(fits)))
    (low, high), n_params, _ = GATES[name]
    k = draw(st.integers(low, min(high, n_wires)))
    wires = draw(st.permutations(range(n_wires)))[:k]
    params = draw(st.lists(expressions(), min_size=n_params, max_size=n_params))
    seed = draw(st.integers(0, 2**16))
    wrappers = ["none", "adjoint"] + (["ctrl"] if k < n_wires else [])
    wrapper = draw(st.sampled_from(wrappers))
    return ("gate", name, tuple(wires), tuple(params), seed, wrapper)


PAULIS = {"X": qml.PauliX, "Y": qml.PauliY, "Z": qml.PauliZ}


@st.composite
def observables(draw, n_wires: int):
    """(kind, ...): a Pauli word, a constant Hamiltonian, a sum with trainable coefficients,
    a constant Hermitian, or a scaled word."""
    def word():
        k = draw(st.integers(1, n_wires))
        wires = draw(st.permutations(range(n_wires)))[:k]
        return tuple((w, draw(st.sampled_from("XYZ"))) for w in wires)

    kind = draw(st.sampled_from(["word", "hamiltonian", "trainable", "hermitian", "scaled"]))
    if kind in ("word", "scaled"):
        return (kind, word(), draw(st.sampled_from([-0.5, 2.0])))
    if kind == "hermitian":
        k = draw(st.integers(1, min(2, n_wires)))
        wires = draw(st.permutations(range(n_wires)))[:k]
        return (kind, tuple(wires), draw(st.integers(0, 2**16)))
    terms = [(word(), draw(expressions())) for _ in range(draw(st.integers(1, 3)))]
    if kind == "hamiltonian":
        return (kind, tuple((w, float(i) - 0.7) for i, (w, _) in enumerate(terms)))
    return (kind, tuple(terms))


def build_observable(obs, x, w, v):
    kind = obs[0]

    def word(pairs):
        return qml.prod(*[PAULIS[p](wire) for wire, p in pairs]) if len(pairs) > 1 else \
            PAULIS[pairs[0][1]](pairs[0][0])

    if kind == "word":
        return word(obs[1])
    if kind == "scaled":
        return obs[2] * word(obs[1])
    if kind == "hermitian":
        d = 2 ** len(obs[1])
        rng = np.random.default_rng(obs[2])
        a = rng.normal(size=(d, d)) + 1j * rng.normal(size=(d, d))
        return qml.Hermitian(a + a.conj().T, wires=list(obs[1]))
    if kind == "hamiltonian":
        return qml.Hamiltonian([c for _, c in obs[1]], [word(p) for p, _ in obs[1]])
    terms = [evaluate(e, x, w, v) * word(p) for p, e in obs[1]]
    return qml.sum(*terms) if len(terms) > 1 else terms[0]


@st.composite
def measurements(draw, n_wires: int):
    kind = draw(st.sampled_from(["expval", "var", "probs"]))
    if kind == "probs":
        if draw(st.booleans()):
            return ("probs", None)
        k = draw(st.integers(1, n_wires))
        return ("probs", tuple(draw(st.permutations(range(n_wires)))[:k]))
    return (kind, draw(observables(n_wires)))


@st.composite
def programs(draw):
    n_wires = draw(st.integers(1, 5))
    steps = draw(st.lists(st.one_of(
        gate_steps(n_wires),
        st.tuples(st.just("branch"), weight_expressions(), gate_steps(n_wires)),
    ), max_size=6))
    reads = draw(st.lists(measurements(n_wires), min_size=1, max_size=3))
    return {"wires": n_wires, "steps": steps, "measurements": reads,
            "features": draw(st.integers(1, 3)), "weights": draw(st.integers(1, 4)),
            "rows": draw(st.integers(1, 3)), "copies": draw(st.integers(1, 2)),
            "seed": draw(st.integers(0, 2**16))}


def _apply_step(step, x, w, v, n_wires):
    if step[0] == "branch":  # value-dependent circuit structure
        if evaluate(step[1], x, w, v) > 0:
            _apply_step(step[2], x, w, v, n_wires)
        return
    _, name, wires, params, seed, wrapper = step
    build = GATES[name][2]
    values = [evaluate(p, x, w, v) for p in params]
    if wrapper == "adjoint":
        qml.adjoint(build)(values, list(wires), seed)
    elif wrapper == "ctrl":
        free = min(set(range(n_wires)) - set(wires))
        qml.ctrl(build, control=free, control_values=bool(seed & 2))(values, list(wires), seed)
    else:
        build(values, list(wires), seed)


def build_qfunc(program):
    """The circuit function a program describes: qfunc(inputs, weights, extra)."""
    n_wires = program["wires"]

    def qfunc(inputs, weights, extra):
        for step in program["steps"]:
            _apply_step(step, inputs, weights, extra, n_wires)
        out = []
        for kind, what in program["measurements"]:
            if kind == "probs":
                out.append(qml.probs(wires=list(what)) if what else qml.probs())
            else:
                obs = build_observable(what, inputs, weights, extra)
                out.append(qml.expval(obs) if kind == "expval" else qml.var(obs))
        return out

    return qfunc


def case(program):
    gen = torch.Generator().manual_seed(program["seed"])
    n, k = program["rows"], program["copies"]
    inputs = torch.rand(n, k, program["features"], generator=gen, dtype=torch.float64) * 4 - 2
    weights = {"weights": torch.rand(k, program["weights"], generator=gen, dtype=torch.float64)
               * 4 - 2, "extra": torch.rand(k, 2, generator=gen, dtype=torch.float64) * 4 - 2}
    return inputs, weights


# ----------------------------------------------------------------------------- runs


def with_grads(run, inputs, weights):
    inputs = inputs.detach().clone().requires_grad_(True)
    weights = {m: w.detach().clone().requires_grad_(True) for m, w in weights.items()}
    out = run(inputs, weights)
    probe = torch.linspace(-1, 1, out.numel(), dtype=out.dtype).reshape(out.shape)
    leaves = [inputs, *weights.values()]
    if not out.requires_grad:  # the circuit ignores its inputs and weights
        return out.detach(), [torch.zeros_like(t) for t in leaves]
    grads = torch.autograd.grad((out * probe).sum(), leaves, allow_unused=True)
    return out.detach(), [torch.zeros_like(t) if g is None else g for t, g in zip(leaves, grads)]


def check(backend: str, program) -> None:
    """``backend`` gives default.qubit's values and gradients, or a one-line UserError."""
    qfunc, n_wires = build_qfunc(program), program["wires"]
    inputs, weights = case(program)
    try:
        want, want_grads = with_grads(lambda x, w: per_row_reference(qfunc, n_wires, x, w), inputs,
                                      weights)
    except Exception as error:  # noqa: BLE001 - default.qubit cannot run it: nothing to compare
        if not currently_in_test_context():
            raise
        event(f"default.qubit failed: {type(error).__name__}: {str(error)[:50]}")
        reject()
    if not all(torch.isfinite(t).all() for t in [want, *want_grads]):
        # e.g. eigh's gradient at degenerate eigenvalues (var of a sum of equal words)
        event("default.qubit: not finite")
        reject()
    try:
        executor = make_executor(qfunc, n_wires, backend)
        got, got_grads = with_grads(executor, inputs, weights)
    except UserError as error:
        assert "\n" not in str(error), f"a UserError of more than one line: {error}"
        if currently_in_test_context():
            event(f"{backend} refused: {str(error)[:60]}")
        return
    assert got.shape == want.shape
    torch.testing.assert_close(got, want, rtol=0, atol=TOL)
    for name, g, h in zip(["inputs", *weights], got_grads, want_grads):
        torch.testing.assert_close(g, h, rtol=0, atol=TOL, msg=lambda m, name=name: f"{name}: {m}")


@pytest.mark.parametrize("backend", BACKENDS)
@settings(max_examples=EXAMPLES, deadline=None, derandomize=EXAMPLES <= 100,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(program=programs())
def test_backend_matches_default_qubit(backend, program):
    check(backend, program)


GATE_GROUPS = [sorted(GATES)[i : i + 8] for i in range(0, len(GATES), 8)]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("names", GATE_GROUPS, ids=lambda names: f"{names[0]}-{names[-1]}")
def test_every_gate_plain_adjoint_and_controlled(backend, names):
    """Every catalogued gate after a layer of input rotations, with its adjoint and its
    controlled form, parameters x_j * w_j + 0.3; eight gates per circuit on 4 wires."""
    steps = [("gate", "RY", (wire,), (("x", wire),), 0, "none") for wire in range(4)]
    for name in names:
        (low, _), n_params, _ = GATES[name]
        params = tuple(("affine", 1.0, 0.3, ("mul", ("x", j), ("w", j))) for j in range(n_params))
        steps += [("gate", name, tuple(range(low)), params, 11, wrapper)
                  for wrapper in ("none", "adjoint", "ctrl")]
    word = ((0, "X"), (1, "Y"), (2, "Z"), (3, "X"))
    check(backend, {"wires": 4, "steps": steps, "features": 3, "weights": 4, "rows": 2,
                    "copies": 2, "seed": 5,
                    "measurements": [("expval", ("word", word, 1.0)), ("probs", None)]})
