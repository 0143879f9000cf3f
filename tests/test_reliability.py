"""Reliability: bad input, killed runs, untrusted files.

- A real ``qepi train`` process is killed with SIGKILL after its first checkpoint, resumed
  with ``qepi train --resume`` and compared bit for bit with an uninterrupted run.
- Every kind of bad input gives exit code 2 and one line naming the problem (``--debug``
  gives the traceback), and nothing is written for a run that could not start.
- A failed command leaves an existing run directory byte-identical.
- Configs are data: a value that looks like Python stays a string; a checkpoint that would
  run code when unpickled is refused.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from qepi import config
from qepi.cli import main

TINY = (Path(__file__).parent / "tiny.toml").read_text()  # the smallest config that trains

# 32 steps over 2 epochs, a checkpoint every 3; dropout makes the weights depend on torch's RNG
KILLED = TINY.replace("d_ff = 8", "d_ff = 8\ndropout = 0.1").replace("n_train = 8", "n_train = 32") \
    .replace("epochs = 1\nbatch_size = 4", "epochs = 2\nbatch_size = 2\ncheckpoint_every = 3")


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def one_line_error(capsys, *needles) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("qepi: error: ") and "Traceback" not in err, err
    for needle in needles:
        assert needle in err, err
    return err.strip()


def snapshot(directory: Path) -> dict[str, bytes]:
    """Every file under ``directory`` (relative path -> bytes)."""
    return {str(p.relative_to(directory)): p.read_bytes()
            for p in sorted(directory.rglob("*")) if p.is_file()}


def train_records(run_dir: Path) -> list[dict]:
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k != "time"} for r in records]


class TestKilledRunResumes:
    """SIGKILL a ``qepi train`` process mid-run; ``--resume`` ends with an uninterrupted run's weights."""

    BACKENDS = {
        "default.qubit": [],
        "aer-shots": ["--set", "backend.name=aer", "--set", "backend.shots=32",
                      "--set", "backend.threads=1"],
    }

    @staticmethod
    def _kill_after_first_checkpoint(proc: subprocess.Popen, run_dir: Path) -> None:
        deadline = time.monotonic() + 120
        while not (run_dir / "checkpoint.pt").exists():
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "no checkpoint written"
            time.sleep(0.005)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert proc.returncode == -signal.SIGKILL

    def test_sigkill_then_resume_matches_an_uninterrupted_run(self, tmp_path, capsys):
        cfg = write(tmp_path, "killed.toml", KILLED)
        procs = {}
        for name, overrides in self.BACKENDS.items():  # both killed runs start side by side
            argv = [sys.executable, "-m", "qepi.cli", "train", str(cfg), "--out",
                    str(tmp_path / f"{name}-killed"), "--quiet", *overrides]
            procs[name] = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            for name, proc in procs.items():
                self._kill_after_first_checkpoint(proc, tmp_path / f"{name}-killed")
        finally:
            for proc in procs.values():
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()

        for name, overrides in self.BACKENDS.items():
            killed, full = tmp_path / f"{name}-killed", tmp_path / f"{name}-full"
            state = torch.load(killed / "checkpoint.pt", weights_only=True)
            assert not (killed / "summary.json").exists() and not (killed / "model.pt").exists()
            assert 0 < state["step"] < 32, state["step"]  # killed mid-run, after a checkpoint

            assert main(["train", "--resume", str(killed), "--quiet"]) == 0
            assert main(["train", str(cfg), "--out", str(full), "--quiet", *overrides]) == 0
            capsys.readouterr()

            resumed_summary = json.loads((killed / "summary.json").read_text())
            assert resumed_summary["resumed_at_step"] == state["step"]
            a = torch.load(killed / "model.pt", weights_only=True)["model"]
            b = torch.load(full / "model.pt", weights_only=True)["model"]
            assert list(a) == list(b)
            for key in a:
                assert torch.equal(a[key], b[key]), (name, key)
            # the metrics log holds each step once, with the uninterrupted run's numbers
            assert train_records(killed) == train_records(full), name
            if name == "aer-shots":
                assert resumed_summary["shots"] > 0


MISSING = "<no config file>"

# (what is wrong, TOML text (None: TINY, MISSING: no file), extra argv, needles of the message)
BAD_INPUTS = [
    ("malformed TOML", "[train\nlr = 1", [], ["malformed TOML"]),
    ("unknown key", "[train]\nlearning_rate = 0.1", [], ["train.learning_rate", "unknown key"]),
    ("wrong type", "[train]\nepochs = 'ten'", [], ["train.epochs", "expected an integer"]),
    ("unknown key in --set", None, ["--set", "train.speed=2"], ["train.speed", "unknown key"]),
    ("wrong type in --set", None, ["--set", "circuit.n_layers=two"], ["circuit.n_layers", "integer"]),
    ("adjoint differentiation with shots", None,
     ["--set", "backend.name=lightning.qubit", "--set", "backend.shots=100"],
     ["backend.shots=100", "lightning.qubit", "adjoint"]),
    ("backprop with shots", None, ["--set", "backend.shots=100"], ["backend.shots=100", "default.qubit"]),
    ("negative shots", None, ["--set", "backend.name=aer", "--set", "backend.shots=-5"],
     ["backend.shots", "-5"]),
    ("more qubits than memory allows (statevector)", None, ["--set", "circuit.n_qubits=40"],
     ["circuit.n_qubits=40", "statevector", "GiB", "memory available"]),
    ("more qubits than memory allows (noisy Aer density matrix)", None,
     ["--set", "backend.name=aer", "--set", "backend.noise=depolarizing",
      "--set", "backend.depolarizing_1q=0.01", "--set", "circuit.n_qubits=20"],
     ["circuit.n_qubits=20", "density matrix", "memory available"]),
    ("no qubits", None, ["--set", "circuit.n_qubits=0"], ["circuit.n_qubits", ">= 1"]),
    ("unknown backend", None, ["--set", "backend.name=qpu"], ["backend.name", "'qpu'"]),
    ("unknown ansatz", None, ["--set", "circuit.ansatz=spiral"], ["circuit.ansatz", "'spiral'"]),
    ("unknown encoding", None, ["--set", "circuit.encoding=amplitude"], ["circuit.encoding", "'amplitude'"]),
    ("unknown noise model", None, ["--set", "backend.name=aer", "--set", "backend.noise=loud"],
     ["backend.noise='loud'"]),
    ("unknown fake IBM backend", None,
     ["--set", "backend.name=aer", "--set", "backend.noise=FakeAtlantisV2"],
     ["backend.noise='FakeAtlantisV2'", "no such fake backend"]),
    ("unknown task", "[data]\ntask = 'imagenet'", [], ["data.task", "imagenet"]),
    ("empty dataset", None, ["--set", "data.n_train=0"], ["data.n_train", ">= 1"]),
    ("missing data file", "[data]\ntask = 'text'\ntrain = 'missing.txt'\ntest = 'missing.txt'", [],
     ["missing.txt", "data file not found"]),
    ("malformed data file", "[data]\ntask = 'text'\ntrain = '{dir}/bad.txt'\ntest = '{dir}/bad.txt'", [],
     ["bad.txt:2", "integer label"]),
    ("empty data file", "[data]\ntask = 'text'\ntrain = '{dir}/empty.txt'\ntest = '{dir}/empty.txt'", [],
     ["empty.txt", "no examples"]),
    ("binary data file", "[data]\ntask = 'text'\ntrain = '{dir}/binary.txt'\ntest = '{dir}/binary.txt'", [],
     ["binary.txt", "cannot read data file"]),
    ("missing config file", MISSING, [], ["bad.toml", "config file not found"]),
    ("bad learning rate", None, ["--set", "train.lr=-1"], ["train.lr", "> 0"]),
]


@pytest.fixture
def data_files(tmp_path):
    (tmp_path / "bad.txt").write_text("1 fine words\nnot-a-label words\n")
    (tmp_path / "empty.txt").write_text("")
    (tmp_path / "binary.txt").write_bytes(b"\xff\xfe\x00\x81 not text")
    return tmp_path


def bad_argv(tmp_path: Path, text, extra: list[str]) -> list[str]:
    path = tmp_path / "bad.toml"
    path.unlink(missing_ok=True)
    if text is not MISSING:
        path.write_text(TINY if text is None else text.format(dir=tmp_path))
    return ["train", str(path), "--out", str(tmp_path / "run"), "--quiet", *extra]


class TestBadInput:
    @pytest.mark.parametrize("what, text, extra, needles", BAD_INPUTS, ids=[row[0] for row in BAD_INPUTS])
    def test_one_line_exit_2_nothing_written(self, data_files, capsys, what, text, extra, needles):
        tmp_path = data_files
        argv = bad_argv(tmp_path, text, extra)
        assert main(argv) == 2, what
        one_line_error(capsys, *needles)
        assert not (tmp_path / "run").exists()  # a run that could not start writes nothing
        with pytest.raises((ValueError, FileNotFoundError)):  # --debug: the exception propagates
            main(["--debug", *argv])

    def test_debug_prints_the_traceback(self, tmp_path):
        path = write(tmp_path, "bad.toml", "[train]\nepochs = 'ten'")
        argv = [sys.executable, "-m", "qepi.cli", "config", "show", str(path)]
        plain = subprocess.run(argv, capture_output=True, text=True)
        debug = subprocess.run(argv[:3] + ["--debug"] + argv[3:], capture_output=True, text=True)
        assert plain.returncode == 2 and plain.stderr.count("\n") == 1 and "Traceback" not in plain.stderr
        assert debug.returncode != 0 and "Traceback" in debug.stderr and "train.epochs" in debug.stderr


class TestExistingRunsSurviveFailures:
    def test_failed_commands_leave_a_finished_run_byte_identical(self, data_files, capsys):
        tmp_path = data_files
        good = write(tmp_path, "good.toml", TINY)
        run_dir = tmp_path / "existing"
        assert main(["train", str(good), "--out", str(run_dir), "--quiet"]) == 0
        before = snapshot(run_dir)
        for argv in (["train", str(good), "--out", str(run_dir), "--quiet"],  # no --overwrite
                     ["train", "--resume", str(run_dir)]):  # already finished
            assert main(argv) == 2, argv
            assert snapshot(run_dir) == before, argv
        for what, text, extra, _ in BAD_INPUTS:  # every bad input, even with --overwrite
            argv = bad_argv(tmp_path, text, extra)
            argv[argv.index("--out") + 1] = str(run_dir)
            assert main([*argv, "--overwrite"]) == 2, what
            assert snapshot(run_dir) == before, what
        capsys.readouterr()

    def test_crafted_checkpoint_is_refused_and_runs_no_code(self, tmp_path, capsys):
        marker = tmp_path / "pwned"

        class Evil:
            def __reduce__(self):
                return (os.system, (f"touch {marker}",))

        cfg = write(tmp_path, "tiny.toml", TINY.replace("epochs = 1", "epochs = 2"))
        run_dir = tmp_path / "run"
        assert main(["train", str(cfg), "--out", str(run_dir), "--quiet"]) == 0
        (run_dir / "summary.json").unlink()  # as if killed before the end: resumable
        (run_dir / "model.pt").unlink()
        checkpoint = (run_dir / "checkpoint.pt").read_bytes()
        (run_dir / "checkpoint.pt").write_bytes(checkpoint[: len(checkpoint) // 2])  # a torn file
        before = snapshot(run_dir)
        assert main(["train", "--resume", str(run_dir)]) == 2
        one_line_error(capsys, "checkpoint.pt", "not a readable checkpoint")
        assert snapshot(run_dir) == before

        torch.save({"format": "qepi-checkpoint-1", "model": Evil()}, run_dir / "checkpoint.pt")
        before = snapshot(run_dir)
        assert main(["train", "--resume", str(run_dir)]) == 2
        one_line_error(capsys, "checkpoint.pt", "refused to load")
        torch.save({"model": Evil()}, tmp_path / "evil.pt")
        assert main(["train", str(cfg), "--out", str(tmp_path / "warm"), "--from",
                     str(tmp_path / "evil.pt"), "--quiet"]) == 2
        one_line_error(capsys, "evil.pt", "refused to load")
        assert not marker.exists()
        assert snapshot(run_dir) == before and not (tmp_path / "warm").exists()


class TestConfigsAreData:
    PAYLOAD = "__import__('os').system('touch {marker}')"

    def test_python_looking_values_stay_strings(self, tmp_path, capsys):
        marker = tmp_path / "pwned"
        payload = self.PAYLOAD.format(marker=marker)
        path = write(tmp_path, "c.toml", f'[run]\nout_dir = "{payload}"\n[data]\ntrain = "{payload}"\n')
        cfg = config.load(path)
        assert cfg.run.out_dir == payload and cfg.data.train == payload
        assert config.from_toml(config.to_toml(cfg)) == cfg
        assert config.apply_overrides(cfg, [f"run.out_dir={payload}"]).run.out_dir == payload
        assert main(["config", "show", str(path)]) == 0
        assert payload in capsys.readouterr().out
        named = write(tmp_path, "name.toml", f'[run]\nname = "{payload}"\n')  # holds a '/'
        assert main(["config", "show", str(named)]) == 2
        one_line_error(capsys, "run.name=", "inside run.out_dir")
        task = write(tmp_path, "task.toml", f'[data]\ntask = "{payload}"\n')
        assert main(["train", str(task), "--quiet"]) == 2  # an unknown task, named as given
        one_line_error(capsys, "data.task", "__import__")
        with pytest.raises(config.ConfigError, match="train.epochs: expected an integer"):
            config.from_toml(f'[train]\nepochs = "{payload}"')
        assert not marker.exists()
