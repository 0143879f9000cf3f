"""Parameter-shift rows on the torch template simulator: the shortcut against every row.

:meth:`TorchTemplateRunner.shifted_probabilities` simulates a few states per row instead of
one per shifted row (leading, final and turned angles, see :mod:`qepi.backends.torchsim`).
On random templates (hypothesis) it must agree with simulating every row on its own
(:meth:`~TorchTemplateRunner.probabilities`) to rounding, and with Aer to 1e-10, for any
shift pattern, row order, shared or per-row angles and block size.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from qepi.backends import torchsim
from qepi.backends.aer import shifted_rows
from qepi.backends.torchsim import TorchTemplateRunner

from .test_torchsim_fuzz import ANGLE_GATES, CONSTANT_GATES, _aer_probabilities, _build

EXAMPLES = int(os.environ.get("QEPI_FUZZ_EXAMPLES", "40"))


@st.composite
def shift_problems(draw):
    """A noiseless template whose angle gates mostly have angles of their own, rows with
    some angles shared by every row (weights) and some not (inputs), and a shift mask."""
    n = draw(st.integers(1, 5))
    ops, n_params = [], 0
    for _ in range(draw(st.integers(1, 16))):
        table = draw(st.sampled_from([ANGLE_GATES, ANGLE_GATES, CONSTANT_GATES]))
        name = draw(st.sampled_from(sorted(g for g, k in table.items() if k <= n)))
        qubits = tuple(draw(st.permutations(range(n)))[:table[name]])
        angle = None
        if table is ANGLE_GATES:
            reuse = n_params and draw(st.integers(0, 5)) == 0  # now and then a shared angle
            j = draw(st.integers(0, n_params - 1)) if reuse else n_params
            n_params = max(n_params, j + 1)
            angle = (j, draw(st.sampled_from([1.0, -0.5, 2.0])), draw(st.floats(-3, 3)))
        ops.append((name, qubits, angle))
    if draw(st.booleans()):  # a last layer of rotations, then a permutation of basis states
        for q in range(n):
            ops.append((draw(st.sampled_from(["rx", "ry", "rz"])), (q,), (n_params, 1.0, 0.0)))
            n_params += 1
        if n > 1:
            ops.append((draw(st.sampled_from(["cx", "swap", "cz"])), (0, n - 1), None))
    measured = list(draw(st.permutations(range(n)))[:draw(st.integers(1, n))])
    rows = draw(st.integers(1, 5))
    shared = draw(st.lists(st.booleans(), min_size=n_params, max_size=n_params))
    mask = draw(st.lists(st.lists(st.booleans(), min_size=n_params, max_size=n_params),
                         min_size=rows, max_size=rows))
    return n, max(n_params, 1), ops, measured, shared, mask


def _rows(n_params, shared, mask, seed):
    rng = np.random.default_rng(seed)
    theta = rng.uniform(-np.pi, np.pi, (len(mask), n_params))  # (B, P)
    for j, same in enumerate(shared):
        if same:
            theta[:, j] = theta[0, j]
    shift = np.zeros((len(mask), n_params), dtype=bool)
    shift[:, :len(shared)] = np.array(mask, dtype=bool).reshape(len(mask), -1)
    return shifted_rows(theta, shift)


@pytest.mark.fuzz
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
@given(problem=shift_problems(), seed=st.integers(0, 2**16), block=st.sampled_from([1, 3, None]),
       reorder=st.booleans(), layers=st.booleans())
def test_shifted_rows_agree_with_every_row_and_with_aer(problem, seed, block, reorder, layers,
                                                       monkeypatch):
    n, n_params, ops, measured, shared, mask = problem
    qc, params = _build(n, n_params, ops, measured)
    values, rows, cols = _rows(n_params, shared, mask, seed)
    b, m = len(mask), len(rows)
    if reorder:  # the pairs in another order than shifted_rows lists them
        order = np.random.default_rng(seed).permutation(m)
        rows, cols = rows[order], cols[order]
        values = np.concatenate([values[:b], values[b:b + m][order], values[b + m:][order]])
    if block is not None:  # blocks of about `block` rows
        monkeypatch.setattr(torchsim, "BLOCK_ENTRIES", block * 2**n)
    # one-qubit steps on several qubits as one layer at any size, or never
    monkeypatch.setattr(torchsim, "LAYER_QUBITS", range(2, 20) if layers else range(0))
    runner = TorchTemplateRunner([qc], params)
    got = runner.shifted_probabilities(values, b, rows, cols)[0]
    np.testing.assert_allclose(got, runner.probabilities(values)[0], atol=1e-12, rtol=0)
    np.testing.assert_allclose(got, _aer_probabilities(qc, params, values, None), atol=1e-10,
                               rtol=0)


def _strongly_entangling(n, layers):
    """Angle embedding and ``layers`` layers of Rot + CNOT ring, one Parameter per angle."""
    ops, j = [], 0
    for q in range(n):
        ops.append(("rx", (q,), (j, 1.0, 0.0)))
        j += 1
    for _ in range(layers):
        for q in range(n):
            for name in ("rz", "ry", "rz"):
                ops.append((name, (q,), (j, 1.0, 0.0)))
                j += 1
        for q in range(n):
            ops.append(("cx", (q, (q + 1) % n), None))
    return _build(n, j, ops, list(range(n))), j


@pytest.mark.parametrize("n", [4, 6])
@pytest.mark.parametrize("layers", [1, 2, 3])
def test_a_strongly_entangling_template_is_not_simulated_row_by_row(n, layers, monkeypatch):
    """Embedding, Rot layers and CNOT rings: every shifted angle is leading, final or a
    turned rotation, so no shifted row is simulated on its own; the result is Aer's."""
    (qc, params), n_params = _strongly_entangling(n, layers)
    values, rows, cols = _rows(n_params, [j >= n for j in range(n_params)],
                               [[j >= n for j in range(n_params)]] * 3, seed=1)
    runner = TorchTemplateRunner([qc], params)
    expected = _aer_probabilities(qc, params, values, None)

    def every_row(*_):
        raise AssertionError("shifted rows simulated one by one")

    monkeypatch.setattr(torchsim._Program, "probabilities", every_row)
    got = runner.shifted_probabilities(values, 3, rows, cols)[0]
    np.testing.assert_allclose(got, expected, atol=1e-10, rtol=0)


def test_noise_and_shared_angles_fall_back_to_every_row():
    """In the density picture, or when a shifted angle enters two gates in different steps,
    every row is simulated: still the same probabilities as Aer's."""
    from .test_torchsim_fuzz import _noise_model

    ops = [("ry", (0,), (0, 1.0, 0.0)), ("cx", (0, 1), None), ("ry", (1,), (0, -0.5, 0.2)),
           ("rzz", (0, 1), (1, 1.0, 0.0))]
    qc, params = _build(2, 2, ops, [0, 1])
    values, rows, cols = _rows(2, [False, True], [[True, True], [True, False]], seed=3)
    for model in (None, _noise_model("depolarizing")):
        got = TorchTemplateRunner([qc], params, model).shifted_probabilities(values, 2, rows,
                                                                             cols)[0]
        np.testing.assert_allclose(got, _aer_probabilities(qc, params, values, model),
                                   atol=1e-10, rtol=0)
