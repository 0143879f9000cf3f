"""`qepi evaluate`: a trained run's weights on its own backend reproduce the run's test
figures; on another backend (shots, noise) they are evaluated there; bad input exits 2."""

import json
from pathlib import Path

import pytest

from qepi.cli import main

TINY = (Path(__file__).parent / "tiny.toml").read_text()


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("evaluate")
    config = root / "tiny.toml"
    config.write_text(TINY + "[backend]\nname = \"exact\"\n")
    out = root / "run"
    assert main(["train", str(config), "--out", str(out), "--quiet"]) == 0
    return out


def _evaluate(capsys, *argv):
    assert main(["evaluate", *argv, "--json"]) == 0
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


def test_the_runs_own_backend_gives_the_runs_test_figures(run_dir, capsys):
    summary = json.loads((run_dir / "summary.json").read_text())
    (result,) = _evaluate(capsys, str(run_dir))
    assert result["backend"]["name"] == "exact" and result["shots"] == 0
    assert result["acc"] == pytest.approx(summary["test_acc"], abs=1e-12)
    assert result["loss"] == pytest.approx(summary["test_loss"], abs=1e-9)


def test_another_backend_with_shots_and_noise(run_dir, capsys):
    before = sorted(p.name for p in run_dir.iterdir())
    (result,) = _evaluate(capsys, str(run_dir), "--set", "backend.name=aer", "--set",
                          "backend.shots=300", "--set", "backend.noise=depolarizing",
                          "--split", "train")
    assert result["backend"]["name"] == "aer" and result["split"] == "train"
    assert result["circuits"] > 0 and result["shots"] == 300 * result["circuits"]
    assert 0.0 <= result["acc"] <= 1.0
    assert sorted(p.name for p in run_dir.iterdir()) == before  # nothing written


@pytest.mark.parametrize("argv, needle", [
    (["--set", "train.lr=1"], "only backend.* keys"),
    (["--set", "backend.name=qpu"], "backend.name"),
    (["--set", "backend.shots=-1"], "backend.shots"),
])
def test_bad_input_is_one_line_and_exit_2(run_dir, capsys, argv, needle):
    assert main(["evaluate", str(run_dir), *argv]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and needle in err, err


def test_a_missing_run_directory_exits_2(tmp_path, capsys):
    assert main(["evaluate", str(tmp_path / "nowhere")]) == 2
    assert "not a run directory" in capsys.readouterr().err
