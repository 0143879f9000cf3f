"""Run PennyLane's own TorchLayer test suite against qepi.QuantumLayer, once per backend.

The suite is not shipped with qepi (other licence, other project): point this script at a
PennyLane checkout of the installed version, e.g.

    git clone --depth 1 --branch v0.45.1 https://github.com/PennyLaneAI/pennylane /tmp/pennylane
    python benchmarks/torchlayer_suite.py /tmp/pennylane
    python benchmarks/torchlayer_suite.py /tmp/pennylane/tests/qnn/test_qnn_torch.py --backends exact

The script downloads nothing. It copies ``tests/qnn/test_qnn_torch.py`` and the fixtures
of ``tests/qnn/conftest.py`` into a temporary directory, replaces every reference to
``qml.qnn.TorchLayer`` (``from pennylane.qnn.torch import TorchLayer``, ``qp.qnn.TorchLayer``,
``qp.qnn.torch.TorchLayer``) by ``qepi.QuantumLayer`` and changes nothing else. PennyLane's
root ``tests/conftest.py`` pulls in plugins the suite does not need; the one fixture used
from it, ``tol``, is recreated with PennyLane's value (1e-3). Each backend runs in its own
pytest process with ``QEPI_BACKEND=<backend>``, the documented switch that puts unmodified
TorchLayer code on another qepi backend. ``--reference`` also runs the untouched file
against ``qml.qnn.TorchLayer`` itself. Output: passed/total per backend and the failures.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path

BACKENDS = ("default.qubit", "lightning.qubit", "exact", "aer")
TEST_FILE = Path("tests/qnn/test_qnn_torch.py")
ROOT_CONFTEST = '''\
import pytest

TOL = 1e-3  # PennyLane's tests/conftest.py


@pytest.fixture(scope="session")
def tol():
    return TOL
'''
PYTEST_INI = """\
[pytest]
markers =
    torch: PennyLane's torch tests
    all_interfaces: PennyLane's mixed-interface tests
"""
_TORCHLAYER = re.compile(r"\b(?:qml|qp|pennylane)\.qnn(?:\.torch)?\.TorchLayer\b")


def rewrite(source: str) -> str:
    """``qml.qnn.TorchLayer`` -> ``qepi.QuantumLayer`` (however it is spelled), nothing else.

    >>> print(rewrite("from pennylane.qnn.torch import TorchLayer\\nx = qp.qnn.TorchLayer(c, w)"))
    import qepi
    from qepi import QuantumLayer as TorchLayer
    x = qepi.QuantumLayer(c, w)
    """
    source = source.replace("from pennylane.qnn.torch import TorchLayer",
                            "from qepi import QuantumLayer as TorchLayer")
    return "import qepi\n" + _TORCHLAYER.sub("qepi.QuantumLayer", source)


def locate(path: Path) -> tuple[Path, Path]:
    """The test file and the qnn conftest beside it, from a checkout or the file itself."""
    test_file = path / TEST_FILE if path.is_dir() else path
    conftest = test_file.parent / "conftest.py"
    for needed in (test_file, conftest):
        if not needed.is_file():
            sys.exit(f"torchlayer_suite: {needed} not found (give a PennyLane checkout or "
                     f"its {TEST_FILE})")
    return test_file, conftest


def run_suite(test_source: str, conftest: Path, backend: str | None, workdir: Path,
              extra: list[str]) -> tuple[int, int, list[str]]:
    """Run one copy of the suite; returns (passed, total, failed test ids)."""
    name = backend or "reference"
    folder = workdir / name.replace(".", "_")
    (folder / "qnn").mkdir(parents=True)
    (folder / "conftest.py").write_text(ROOT_CONFTEST)
    (folder / "pytest.ini").write_text(PYTEST_INI)
    (folder / "qnn" / "conftest.py").write_text(conftest.read_text())
    (folder / "qnn" / "test_qnn_torch.py").write_text(test_source)
    env = {k: v for k, v in os.environ.items() if k != "QEPI_BACKEND"}
    if backend:
        env["QEPI_BACKEND"] = backend
    report = folder / "report.xml"
    subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                    f"--junitxml={report}", "qnn", *extra],
                   cwd=folder, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    cases = ET.parse(report).getroot().iter("testcase")
    passed, total, failed = 0, 0, []
    for case in cases:
        outcome = {child.tag for child in case}
        if "skipped" in outcome:
            continue
        total += 1
        if outcome & {"failure", "error"}:
            failed.append(f"{case.get('classname').split('.')[-1]}::{case.get('name')}")
        else:
            passed += 1
    return passed, total, failed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("pennylane", type=Path, help="PennyLane checkout or its test_qnn_torch.py")
    parser.add_argument("--backends", nargs="+", default=list(BACKENDS), choices=BACKENDS)
    parser.add_argument("--reference", action="store_true",
                        help="also run the untouched suite against qml.qnn.TorchLayer")
    parser.add_argument("pytest_args", nargs="*", help="passed on to pytest (after --)")
    args = parser.parse_args(argv)
    test_file, conftest = locate(args.pennylane)
    original = test_file.read_text()
    runs = ([(None, original)] if args.reference else []) + [
        (backend, rewrite(original)) for backend in args.backends]
    with tempfile.TemporaryDirectory() as tmp:
        for backend, source in runs:
            passed, total, failed = run_suite(source, conftest, backend, Path(tmp),
                                              args.pytest_args)
            label = backend or "qml.qnn.TorchLayer"
            print(f"{label:<20} {passed:>4}/{total} passed", flush=True)
            for test in failed:
                print(f"    failed: {test}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
