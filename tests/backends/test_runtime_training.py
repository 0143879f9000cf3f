"""A model trained by `qepi train` on the exact backend is evaluated and fine-tuned on the
runtime backend (FakeManilaV2, local testing mode); a fine-tuning run stopped by a service
error resumes from its checkpoint to the weights of an uninterrupted run."""

import json
from pathlib import Path

import pytest
import torch

from qepi.cli import main
from qepi.config import load, update
from qepi.data import load_dataset
from qepi.models import HybridTransformer
from qepi.training import load_checkpoint

TINY = Path(__file__).resolve().parents[1] / "tiny.toml"
ON_DEVICE = ["--set", "backend.name=runtime", "--set", "backend.device=FakeManilaV2",
             "--set", "backend.shots=64", "--set", "backend.threads=1", "--set", "train.epochs=2",
             "--set", "train.max_steps=3", "--set", "train.checkpoint_every=1", "--quiet"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A run trained for one epoch on the exact backend."""
    out = tmp_path_factory.mktemp("exact") / "run"
    assert main(["train", str(TINY), "--set", "backend.name=exact", "--out", str(out), "--quiet"]) == 0
    return out


def model_on(run_dir: Path, backend: dict):
    """The run's model with its saved weights, its quantum layers on ``backend``."""
    cfg = update(load(run_dir / "config.toml"), backend=backend)
    data = load_dataset(cfg.data, cfg.run.seed)
    model = HybridTransformer(cfg, data.spec)
    model.load_state_dict(load_checkpoint(run_dir / "model.pt")["model"])
    return model.eval(), data


def test_a_trained_model_is_evaluated_on_a_device(trained):
    exact, data = model_on(trained, {"name": "exact"})
    device, _ = model_on(trained, {"name": "runtime", "device": "FakeManilaV2", "shots": 64,
                                   "threads": 1})
    ideal, _ = model_on(trained, {"name": "runtime", "device": "aer_simulator", "shots": 20000,
                                  "threads": 1})
    with torch.no_grad():
        want = exact(data.test.x, data.test.mask)
        noisy = device(data.test.x, data.test.mask)
        sampled = ideal(data.test.x, data.test.mask)
    assert noisy.shape == want.shape and torch.isfinite(noisy).all()
    # noiseless device, 20000 shots: the logits follow the exact ones closely
    torch.testing.assert_close(sampled, want, rtol=0, atol=0.05)
    details = [d for layer in device.quantum_layers() for d in layer.execution_details()]
    assert details and all(d["jobs"] == 1 and d["transpilations"] == 1 for d in details)


def test_fine_tuning_on_a_device_resumes_after_a_service_error(trained, tmp_path, monkeypatch, capsys):
    tuned = tmp_path / "tuned"
    assert main(["train", str(TINY), "--from", str(trained), "--out", str(tuned), *ON_DEVICE]) == 0
    summary = json.loads((tuned / "summary.json").read_text())
    assert summary["steps"] == 3 and summary["shots"] == 64 * summary["circuits"] > 0
    for layers in summary["backend_details"].values():
        (details,) = layers
        assert details["device"] == "FakeManilaV2" and details["transpilations"] == 1
        (structure,) = details["structures"]
        assert len(structure["layout"]) == 2 and structure["depth"] > 0
    before = load_checkpoint(trained / "model.pt")["model"]
    after = load_checkpoint(tuned / "model.pt")["model"]
    assert any(not torch.equal(before[k], after[k]) for k in before)

    import qiskit_ibm_runtime
    from qiskit_ibm_runtime.exceptions import IBMRuntimeError

    real_run, jobs = qiskit_ibm_runtime.SamplerV2.run, []

    def fails_on_the_fifth_job(self, pubs, **kwargs):  # 2 quantum layers: in step 3
        jobs.append(1)
        if len(jobs) == 5:
            raise IBMRuntimeError("Job was cancelled")
        return real_run(self, pubs, **kwargs)

    monkeypatch.setattr(qiskit_ibm_runtime.SamplerV2, "run", fails_on_the_fifth_job)
    stopped = tmp_path / "stopped"
    capsys.readouterr()
    assert main(["train", str(TINY), "--from", str(trained), "--out", str(stopped), *ON_DEVICE]) == 2
    assert capsys.readouterr().err == (
        "qepi: error: backend.device='FakeManilaV2': IBM Runtime failed (IBMRuntimeError: Job was "
        "cancelled); a training run continues with qepi train --resume RUN_DIR\n")
    assert load_checkpoint(stopped / "checkpoint.pt")["step"] == 2
    assert main(["train", "--resume", str(stopped), "--quiet"]) == 0
    resumed = load_checkpoint(stopped / "model.pt")["model"]
    assert all(torch.equal(resumed[k], after[k]) for k in after)
