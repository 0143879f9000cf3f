"""`qepi config show/reference`: resolved configs and the key reference."""

import dataclasses

from qepi.cli import main
from qepi.config import Config, from_toml


def test_show_prints_the_resolved_config(tmp_path, capsys):
    path = tmp_path / "c.toml"
    path.write_text("[train]\nlr = 0.5\n")
    assert main(["config", "show", str(path), "--set", "circuit.n_qubits=3"]) == 0
    cfg = from_toml(capsys.readouterr().out)
    assert cfg.train.lr == 0.5 and cfg.circuit.n_qubits == 3


def test_bad_override_is_one_line_and_exit_2(tmp_path, capsys):
    path = tmp_path / "c.toml"
    path.write_text("")
    assert main(["config", "show", str(path), "--set", "train.nope=1"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "train.nope" in err


def test_reference_lists_every_key_with_a_meaning(capsys):
    assert main(["config", "reference"]) == 0
    lines = capsys.readouterr().out.splitlines()[2:]
    keys = {
        f"{section.name}.{f.name}"
        for section in dataclasses.fields(Config)
        for f in dataclasses.fields(section.type if isinstance(section.type, type) else
                                    type(getattr(Config(), section.name)))
    }
    listed = {line.split("`")[1] for line in lines}
    assert listed == keys
    assert all(not line.endswith("|  |") for line in lines), "every key needs a comment"
