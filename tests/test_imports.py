"""Import-direction contracts, checked in a fresh interpreter."""

import subprocess
import sys


def _modules_after(statement: str) -> set[str]:
    code = f"import sys; {statement}; print('\\n'.join(sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return set(out.stdout.split())


def test_import_qepi_does_not_import_qiskit():
    modules = _modules_after("import qepi, qepi.layers, qepi.models")
    assert "qepi.layers" in modules
    assert not any(m == "qiskit" or m.startswith("qiskit.") for m in modules)


def test_circuits_do_not_import_torch():
    modules = _modules_after("import qepi.circuits")
    assert "qepi.circuits" in modules
    assert "torch" not in modules
