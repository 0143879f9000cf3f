"""`qepi diagnose ...` and `qepi circuits ...` end to end on tiny trained runs."""

import json

import pytest
from qiskit import qasm3

from qepi.cli import main
from qepi.config import Config, update
from qepi.experiments import compare


@pytest.fixture(scope="module")
def comparison(tmp_path_factory):
    out = tmp_path_factory.mktemp("cmp") / "compare"
    cfg = update(Config(), circuit={"n_qubits": 2, "n_layers": 1},
                 model={"d_model": 4, "n_heads": 1, "d_ff": 8},
                 data={"task": "parity", "seq_len": 3, "n_train": 8, "n_dev": 4, "n_test": 6},
                 train={"epochs": 1, "batch_size": 4})
    compare(cfg, seeds=1, out=out, progress=False)
    return out


def test_plateau(tmp_path, capsys):
    assert main(["diagnose", "plateau", "--ansatz", "hardware_efficient", "--qubits", "2-3",
                 "--layers", "1,2", "--samples", "10", "--out", str(tmp_path)]) == 0
    assert "decay rate" in capsys.readouterr().out
    data = json.loads((tmp_path / "plateau.json").read_text())
    assert data["qubits"] == [2, 3] and data["layers"] == [1, 2]
    assert (tmp_path / "plateau.png").stat().st_size > 1000


def test_user_errors_exit_2(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:  # argparse refuses a name that is not an ansatz
        main(["diagnose", "plateau", "--ansatz", "nope", "--qubits", "2", "--out", str(tmp_path)])
    assert exit_.value.code == 2 and "invalid choice: 'nope'" in capsys.readouterr().err
    assert main(["diagnose", "landscape", str(tmp_path / "missing")]) == 2


def test_landscape_and_attention_of_a_comparison(comparison, tmp_path, capsys):
    assert main(["diagnose", "landscape", str(comparison), "--steps", "3", "--examples", "4",
                 "--out", str(tmp_path)]) == 0
    lands = json.loads((tmp_path / "landscape.json").read_text())
    assert sorted(lands) == ["classical-s0", "quantum-s0"]  # quantum beside classical
    assert main(["diagnose", "attention", str(comparison), "--examples", "2", "--out", str(tmp_path)]) == 0
    assert (tmp_path / "attention.png").stat().st_size > 1000


def test_entropy_calibration_gradients(comparison, capsys):
    run = str(comparison / "quantum-s0")
    assert main(["diagnose", "entropy", run, "--examples", "4", "--json"]) == 0
    row = json.loads(capsys.readouterr().out)["quantum-s0"]
    assert "entanglement/embedding.core.layer" in row
    assert main(["diagnose", "calibration", run, "--json"]) == 0
    cal = json.loads(capsys.readouterr().out)["quantum-s0"]
    assert cal["temperature"] > 0 and cal["fitted_on"] == "dev"
    assert main(["diagnose", "gradients", run, "--examples", "4", "--groups", "2"]) == 0
    assert "embedding.core.layer" in capsys.readouterr().out


def test_circuits_model_export(comparison, tmp_path):
    assert main(["circuits", "model", str(comparison / "quantum-s0"), "--out", str(tmp_path)]) == 0
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    for item in manifest:
        assert qasm3.loads((tmp_path / item["file"]).read_text()).num_qubits == 2
    assert main(["circuits", "model", str(comparison / "classical-s0"), "--out", str(tmp_path / "c")]) == 2


def test_circuits_export_and_check(tmp_path, capsys):
    small = ["--qubits", "2", "--layers", "1", "--pairs", "50", "--samples", "20"]
    assert main(["circuits", "export", str(tmp_path), *small]) == 0
    assert main(["circuits", "export", str(tmp_path), "--check", *small]) == 0
    (tmp_path / "README.md").write_text("stale\n")
    assert main(["circuits", "export", str(tmp_path), "--check", *small]) == 1
    assert "out of date: README.md" in capsys.readouterr().out
