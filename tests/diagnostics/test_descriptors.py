"""Meyer–Wallach and expressibility (Sim et al. 2019) against known values."""

import numpy as np
import pennylane as qml
import pytest

from qepi.circuits import get_ansatz
from qepi.diagnostics.descriptors import (
    circuit_structure,
    entangling_capability,
    expressibility,
    fidelity_kl,
    haar_fidelity_bins,
    meyer_wallach,
)


def ghz(n):
    psi = np.zeros(2**n, dtype=complex)
    psi[[0, -1]] = 2**-0.5
    return psi


def random_product(n, rng):
    psi = np.ones(1, dtype=complex)
    for _ in range(n):
        q = rng.normal(size=2) + 1j * rng.normal(size=2)
        psi = np.kron(psi, q / np.linalg.norm(q))
    return psi


class TestMeyerWallach:
    @pytest.mark.parametrize("n", [2, 3, 5])
    def test_ghz_is_one(self, n):
        assert meyer_wallach(ghz(n))[0] == pytest.approx(1.0)

    def test_product_state_is_zero(self):
        rng = np.random.default_rng(0)
        states = np.stack([random_product(4, rng) for _ in range(5)])
        assert np.allclose(meyer_wallach(states), 0.0, atol=1e-12)

    def test_matches_pennylane_purities(self):
        rng = np.random.default_rng(1)
        psi = rng.normal(size=8) + 1j * rng.normal(size=8)
        psi /= np.linalg.norm(psi)
        dm = qml.math.dm_from_state_vector(psi)
        purities = [qml.math.purity(dm, indices=[k]) for k in range(3)]
        assert meyer_wallach(psi)[0] == pytest.approx(2 * (1 - np.mean(purities)))

    def test_entangling_capability_of_circuits(self):
        def product(w):
            for i in range(3):
                qml.RY(w[..., i], wires=i)

        assert entangling_capability(product, 3, (3,), n_samples=50) == pytest.approx(0.0, abs=1e-12)

        def ghz_circuit(w):
            qml.Hadamard(0)
            qml.CNOT([0, 1])
            qml.CNOT([1, 2])
            qml.RZ(w[..., 0], wires=0)  # a phase: still GHZ-like

        assert entangling_capability(ghz_circuit, 3, (1,), n_samples=20) == pytest.approx(1.0)


class TestExpressibility:
    def test_haar_bins_sum_to_one(self):
        assert haar_fidelity_bins(3).sum() == pytest.approx(1.0)

    def test_haar_random_states_score_near_zero(self):
        rng = np.random.default_rng(0)
        n, pairs = 3, 3000
        psi = rng.normal(size=(2 * pairs, 2**n)) + 1j * rng.normal(size=(2 * pairs, 2**n))
        psi /= np.linalg.norm(psi, axis=1, keepdims=True)
        f = np.abs(np.sum(psi[:pairs].conj() * psi[pairs:], axis=1)) ** 2
        assert fidelity_kl(f, n) < 0.05

    def test_idle_wires_are_far_less_expressive_than_a_deep_random_circuit(self):
        def idle(w):
            for i in range(3):
                qml.Identity(i)

        sim14 = get_ansatz("sim14")

        def deep(w):
            sim14(w, range(3))

        idle_kl = expressibility(idle, 3, (1,), n_pairs=500)
        deep_kl = expressibility(deep, 3, sim14.shape(3, 3), n_pairs=500)
        assert idle_kl > 10.0
        assert deep_kl < 0.1
        assert idle_kl > 100 * deep_kl

    def test_seeded(self):
        def ry(w):
            qml.RY(w[..., 0], 0)

        assert expressibility(ry, 1, (1,), 200, seed=3) == expressibility(ry, 1, (1,), 200, seed=3)


def test_circuit_structure_counts_gates_as_written():
    ansatz = get_ansatz("strongly_entangling")
    s = circuit_structure(lambda w: ansatz(w, range(3)), np.zeros(ansatz.shape(2, 3)))
    # per layer: 3 Rot (depth 1) then a CNOT ring on 3 wires (depth 3)
    assert s == {"gates": 12, "two_qubit_gates": 6, "depth": 8}
