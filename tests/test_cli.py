"""`qepi train / compare / report`: exit codes, one-line errors, --help everywhere."""

import json
from pathlib import Path

import pytest

from qepi.cli import main

TINY = (Path(__file__).parent / "tiny.toml").read_text()  # the smallest config that trains


@pytest.fixture
def config(tmp_path):
    path = tmp_path / "tiny.toml"
    path.write_text(TINY)
    return path


def one_line_error(capsys, *needles):
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("qepi: error: ") and "Traceback" not in err, err
    for needle in needles:
        assert needle in err, err
    return err


@pytest.mark.parametrize("argv", [["--help"], ["train", "--help"], ["compare", "--help"], ["report", "--help"]])
def test_help_everywhere(argv, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 0 and "usage: qepi" in capsys.readouterr().out


def test_train_then_report_exit_0(config, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", str(config), "--out", str(out), "--quiet", "--set", "train.lr=0.05"]) == 0
    printed = capsys.readouterr().out
    assert "test acc" in printed and str(out) in printed
    assert main(["report", str(out)]) == 0
    assert main(["train", str(config), "--out", str(out), "--quiet"]) == 2  # finished run kept
    one_line_error(capsys, "--overwrite")
    assert main(["train", "--resume", str(out)]) == 2
    one_line_error(capsys, "already finished")


def test_compare_json_for_scripts(config, tmp_path, capsys):
    out = tmp_path / "cmp"
    assert main(["compare", str(config), "--seeds", "1", "--out", str(out), "--json"]) == 0
    comparison = json.loads(capsys.readouterr().out)
    assert set(comparison["models"]) == {"quantum", "classical", "no_entanglement"}
    assert comparison["tests"]["classical"]["acc"]["p"] is None  # one seed: no test
    assert (out / "report.md").exists()


@pytest.mark.parametrize("text, needles", [
    ("[train\nlr = 1", ["malformed TOML"]),
    ("[train]\nlearning_rate = 0.1", ["train.learning_rate", "unknown key"]),
    ("[train]\nepochs = 'ten'", ["train.epochs", "integer"]),
    ("[data]\ntask = 'imagenet'", ["data.task", "imagenet"]),
    ("[data]\ntask = 'text'\ntrain = 'missing.txt'\ntest = 'missing.txt'", ["missing.txt", "not found"]),
    ("[data]\nn_train = 0", ["data.n_train"]),
    ("[run]\nname = '../elsewhere'", ["run.name='../elsewhere'", "one directory name inside run.out_dir"]),
    ("[run]\nname = '/tmp/abs'", ["run.name='/tmp/abs'", "no path separator"]),
    ("[run]\nname = '..'", ["run.name='..'"]),
])
def test_bad_input_exits_2_with_one_line(tmp_path, capsys, text, needles):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    assert main(["train", str(path), "--out", str(tmp_path / "r"), "--quiet"]) == 2
    one_line_error(capsys, *needles)
    assert not (tmp_path / "r").exists()  # nothing written for a run that could not start


@pytest.mark.parametrize("argv, needles", [
    (["compare", "{config}", "--set", "run.name=../elsewhere"], ["run.name='../elsewhere'"]),
    (["sweep", "{config}", "--set", "run.name=a/b", "--grid", "train.lr=0.1,0.2"], ["run.name='a/b'"]),
    (["config", "show", "{config}", "--set", "run.name=~x"], ["run.name='~x'"]),
    (["bench", "exact", "--threads", "-1"], ["--threads must be >= 0, got -1"]),
    (["bench", "aer", "--threads", "-1"], ["--threads must be >= 0, got -1"]),
])
def test_more_bad_input_exits_2_with_one_line(config, tmp_path, monkeypatch, capsys, argv, needles):
    monkeypatch.chdir(tmp_path)  # run.out_dir = runs, here
    assert main([a.format(config=config) for a in argv]) == 2
    one_line_error(capsys, *needles)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny.toml"]  # nothing written


def test_malformed_data_line_and_missing_config(tmp_path, capsys):
    data = tmp_path / "train.txt"
    data.write_text("1 fine words\nnot-a-label words\n")
    path = tmp_path / "text.toml"
    path.write_text(f"[data]\ntask = 'text'\ntrain = '{data}'\ntest = '{data}'\n")
    assert main(["train", str(path), "--quiet"]) == 2
    one_line_error(capsys, "train.txt:2", "integer label")
    assert main(["train", str(tmp_path / "nope.toml")]) == 2
    one_line_error(capsys, "nope.toml", "not found")
    assert main(["train"]) == 2
    one_line_error(capsys, "CONFIG")
    assert main(["report", str(tmp_path)]) == 2
    one_line_error(capsys, "not a qepi run")
    assert main(["compare", str(path), "--seeds", "0"]) == 2
    one_line_error(capsys, "--seeds")


def test_unknown_option_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["train", "--bogus"])
    assert exit_.value.code == 2


@pytest.mark.parametrize("command", [["config", "show"], ["train"], ["compare"], ["marks"], ["sweep"]])
def test_every_command_refuses_an_unknown_backend_the_same_way(config, tmp_path, capsys, command):
    argv = [*command, str(config), "--set", "backend.name=qpu"]
    assert main([*argv, "--out", str(tmp_path / "out")] if command[0] != "config" else argv) == 2
    err = one_line_error(capsys, "backend.name", "'qpu'")
    assert "known: default.qubit, lightning.qubit, exact, aer" in err
    assert not (tmp_path / "out").exists()


def test_an_internal_error_keeps_its_traceback(config, tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise ValueError("a bug in qepi, not in the config")

    monkeypatch.setattr("qepi.experiments.runner.run", broken)
    with pytest.raises(ValueError, match="a bug in qepi"):  # not turned into exit code 2
        main(["train", str(config), "--out", str(tmp_path / "run"), "--quiet"])


def test_an_operating_system_error_is_one_line(config, capsys):
    assert main(["train", str(config), "--out", "/dev/null/run", "--quiet"]) == 2
    one_line_error(capsys, "/dev/null")
