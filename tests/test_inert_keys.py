"""Keys that change nothing are named, once each: and the claim is checked by building the
data and the model with and without the key (identical tensors, identical outputs)."""

from pathlib import Path

import pytest
import torch

from qepi.cli import main
from qepi.commands.common import warn_inert
from qepi.config import BUILTIN_BACKENDS, Config, apply_overrides, inert_keys, update
from qepi.data import load_dataset
from qepi.errors import UserError
from qepi.models import HybridTransformer
from qepi.training import seed_everything

TEXT = Path(__file__).resolve().parents[1] / "configs" / "data" / "text_train.txt"
SMALL = update(Config(), circuit={"n_qubits": 2, "n_layers": 1},
               model={"d_model": 4, "n_heads": 1, "d_ff": 4})
GENERATED = ["data.n_train=6", "data.n_dev=2", "data.n_test=4"]

# how each model is set up, and a value away from the default for every key under test
SCENARIOS = {
    "motif on exact": ["backend.name=exact", *GENERATED, "data.seq_len=4", "data.motif_len=2"],
    "parity on default.qubit, epigenetic": ["data.task=parity", *GENERATED, "data.seq_len=4",
                                            "regulation.embedding=epigenetic"],
    "digits on aer, experts": ["backend.name=aer", "data.task=digits", *GENERATED,
                               "regulation.attention=experts"],
    "text, classical": ["data.task=text", f"data.train='{TEXT}'", f"data.test='{TEXT}'",
                        "data.max_len=6", "model.embedding=classical", "model.attention=classical"],
}
AWAY = ["backend.shots=64", "backend.noise=depolarizing", "backend.depolarizing_1q=0.01",
        "backend.readout_error=0.02", "backend.dtype=float32", "backend.threads=1",
        "backend.chunk_rows=3", "backend.strategy=gates", "backend.name=lightning.qubit",
        "data.n_train=7", "data.n_dev=3", "data.n_test=5", "data.seq_len=5", "data.motif_len=3",
        "data.pwm_entropy=1.0", "data.classes=[3, 8]", "data.tokens=patches", f"data.dev='{TEXT}'",
        "data.max_len=5", "regulation.target=0.5", "regulation.penalty=1.0", "regulation.hard=true",
        "regulation.threshold=0.3", "regulation.offsets=true", "regulation.tf_hidden=3",
        "regulation.n_experts=3", "regulation.top_k=2", "regulation.balance=0.5",
        "model.match_params=true"]


def built(cfg: Config):
    """The dataset's tensors and the freshly seeded model's test outputs."""
    data = load_dataset(cfg.data, cfg.run.seed)
    seed_everything(0)
    model = HybridTransformer(cfg, data.spec).eval()
    with torch.no_grad():
        out = model(data.test.x, data.test.mask)
    tensors = [data.train.x, data.train.y, data.test.x, data.test.y]
    return tensors + [out.to(torch.float64)]


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_a_key_named_inert_changes_nothing(scenario):
    base = apply_overrides(SMALL, SCENARIOS[scenario])
    assert inert_keys(base) == {}
    reference, named = built(base), 0
    for item in AWAY:
        cfg = apply_overrides(base, [item])
        if item.split("=")[0] not in inert_keys(cfg):
            continue
        try:
            changed = built(cfg)
        except UserError:  # refused, not ignored (e.g. shots on an exact backend)
            continue
        named += 1
        for got, want in zip(changed, reference):
            assert torch.equal(got, want), f"{scenario}: {item} is named inert but changes the model"
    assert named >= 8, f"{scenario}: only {named} keys named"


def test_reasons_name_the_setting_that_makes_the_key_inert():
    cfg = apply_overrides(Config(), ["data.train=x.txt", "backend.shots=100", "backend.strategy=fold",
                                     "regulation.penalty=1.0", "model.embedding=classical",
                                     "model.attention=classical"])
    found = inert_keys(cfg)
    assert found["data.train"] == "data.task='motif' does not read it (only 'text' does)"
    assert found["backend.shots"].startswith("no layer is quantum")
    assert "'epigenetic'" in found["regulation.penalty"]
    on_aer = inert_keys(apply_overrides(Config(), ["backend.name=aer", "backend.strategy=fold"]))
    assert on_aer == {"backend.strategy": "backend.name='aer' does not read it (only 'exact' does)"}


def test_defaults_are_never_named():
    for task in ("motif", "digits", "parity", "text"):
        for name in BUILTIN_BACKENDS:
            assert inert_keys(update(Config(), data={"task": task}, backend={"name": name})) == {}


def test_commands_warn_once_per_key_on_stderr(tmp_path, capsys):
    path = tmp_path / "c.toml"
    path.write_text("[data]\ntask = 'parity'\npwm_entropy = 1.0\n")
    assert main(["config", "show", str(path), "--set", "data.train=mine.txt",
                 "--set", "data.train=other.txt"]) == 0
    err = capsys.readouterr().err.splitlines()
    assert err == ["qepi: warning: data.pwm_entropy has no effect: data.task='parity' does not read it "
                   "(only 'motif' does)",
                   "qepi: warning: data.train has no effect: data.task='parity' does not read it "
                   "(only 'text' does)"]


def test_a_sweep_names_only_keys_that_no_grid_point_reads(capsys):
    base = update(Config(), regulation={"penalty": 1.0}, data={"train": "x.txt"})
    warn_inert([base, update(base, regulation={"embedding": "epigenetic"})])
    assert capsys.readouterr().err.splitlines() == [
        "qepi: warning: data.train has no effect: data.task='motif' does not read it (only 'text' does)"]


def test_a_set_key_that_the_grid_replaces_is_named(tmp_path, capsys):
    path = tmp_path / "c.toml"
    path.write_text("")
    # --tune with --seeds 2 is refused after the config and grid are read: no Ray needed
    assert main(["sweep", str(path), "--set", "train.lr=0.5", "--grid", "train.lr=0.1,0.2",
                 "--tune", "asha", "--seeds", "2", "--out", str(tmp_path / "s")]) == 2
    warning, error = capsys.readouterr().err.splitlines()
    assert warning == "qepi: warning: --set train.lr has no effect: --grid train.lr sets it in every trial"
    assert error.startswith("qepi: error: --seeds")
