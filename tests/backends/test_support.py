"""The support matrix: no backend gives a wrong answer or a raw error on any probe, and the
README's table is the one the code produces today."""

import re
from pathlib import Path

import pytest

from qepi.backends.support import probed_names, probes, support_markdown, support_matrix

README = Path(__file__).resolve().parents[2] / "README.md"


@pytest.fixture(scope="module")
def matrix():
    return support_matrix()


def test_every_probe_matches_default_qubit_or_is_refused(matrix):
    bad = {(label, name): result for label, row in matrix.items()
           for name, result in row.items() if result not in ("yes", "refused")}
    assert not bad


def test_the_reference_backend_supports_every_probe(matrix):
    assert all(row["default.qubit"] == "yes" for row in matrix.values())


def test_a_wrong_backend_is_caught():
    import torch

    from qepi.backends.base import (BackendEntry, Capabilities, ExecutionStats, ExecutorBase,
                                    register_backend, unregister_backend)
    from qepi.backends.support import probe

    class OffByOne(ExecutorBase):
        capabilities = Capabilities()

        def __init__(self, qfunc, n_qubits, backend, seed=0):
            self.inner = backend_entry_build("default.qubit")(qfunc, n_qubits, backend)
            self.stats = ExecutionStats()

        def __call__(self, inputs, weights):
            return self.inner(inputs, weights) + 1e-6 * torch.ones(())

    def backend_entry_build(name):
        from qepi.backends.base import backend_entry
        from qepi.config import Backend

        return lambda qfunc, n, backend: backend_entry(name).build(qfunc, n, Backend(name=name))

    register_backend(BackendEntry("off-by-one", build=OffByOne))
    try:
        assert probe("off-by-one", probes()["Pauli-word expval"]) == "WRONG"
    finally:
        unregister_backend("off-by-one")


def test_readme_shows_the_matrix_the_code_produces(matrix):
    text = README.read_text()
    block = re.search(r"<!-- support-matrix:start -->\n(.*?)<!-- support-matrix:end -->", text, re.S)
    assert block, "README.md lost its support-matrix markers"
    assert tuple(next(iter(matrix.values()))) == probed_names()
    assert block.group(1) == support_markdown(matrix)
