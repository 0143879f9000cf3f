"""One command at a time per output directory: a second one is refused with the holder's pid."""

import signal
import subprocess
import sys
from pathlib import Path

import pytest

from qepi.cli import main
from qepi.experiments.rundir import exclusive, lock_path

ROOT = Path(__file__).resolve().parents[2]
TINY = ROOT / "tests" / "tiny.toml"
# qepi/experiments/rundir.py alone (without the package's torch imports): quick to start
HOLD = """import importlib.util, sys
spec = importlib.util.spec_from_file_location("rundir", "qepi/experiments/rundir.py")
rundir = sys.modules["rundir"] = importlib.util.module_from_spec(spec)
spec.loader.exec_module(rundir)
with rundir.exclusive(sys.argv[1]):
    print("held", flush=True)
    sys.stdin.read()
"""


@pytest.fixture
def holder(tmp_path):
    """Another process that holds the lock of tmp_path/out until its stdin closes."""
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path / "out")], cwd=ROOT,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline() == "held\n"
    yield proc
    if proc.poll() is None:
        proc.stdin.close()
        proc.wait(timeout=60)


@pytest.mark.parametrize("command", [
    ["sweep", str(TINY), "--grid", "train.lr=0.01,0.02"],
    ["train", str(TINY)],
    ["compare", str(TINY), "--seeds", "1"],
])
def test_a_second_command_on_a_held_directory_is_refused(tmp_path, capsys, holder, command):
    assert main([*command, "--out", str(tmp_path / "out"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"in use by process {holder.pid}" in err, err
    assert not (tmp_path / "out").exists()  # the refused command wrote nothing


def test_the_lock_goes_with_its_holder(tmp_path, capsys, holder):
    holder.stdin.close()
    holder.wait(timeout=60)
    assert not lock_path(tmp_path / "out").exists()  # removed at the end
    assert main(["train", str(TINY), "--out", str(tmp_path / "out"), "--quiet"]) == 0
    assert not lock_path(tmp_path / "out").exists()


def test_a_killed_holder_leaves_a_file_but_no_lock(tmp_path, holder):
    holder.send_signal(signal.SIGKILL)
    holder.wait(timeout=60)
    assert lock_path(tmp_path / "out").exists()
    with exclusive(tmp_path / "out") as lock:
        assert lock.read_text().strip().isdigit()
    assert not lock.exists()
