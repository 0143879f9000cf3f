"""Progress output: a bar on a terminal, a few whole lines in a log, nothing with --quiet."""

import io
import re
import subprocess
import sys
from pathlib import Path

from qepi.cli import main
from qepi.training.progress import EpochLines, NoProgress, progress_bar

ROOT = Path(__file__).resolve().parents[2]
LINE = re.compile(r"^\S+: epoch (\d+)/(\d+), step (\d+)/(\d+), loss \d\.\d{3}, acc \d\.\d{3}, \d+\.\d s$")


def test_a_log_gets_whole_lines_not_bar_fragments(tmp_path):
    log = tmp_path / "train.log"
    with log.open("w") as stderr:  # `qepi train ... 2> train.log`
        done = subprocess.run(
            [sys.executable, "-m", "qepi.cli", "train", str(ROOT / "tests" / "tiny.toml"),
             "--out", str(tmp_path / "run"), "--set", "train.epochs=40"],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=stderr, text=True, timeout=300)
    text = log.read_text()
    assert done.returncode == 0, text
    assert "\r" not in text and "\x1b" not in text  # no redraws, no terminal codes
    assert len(text) < 2000, text  # 40 epochs: a handful of lines
    lines = text.splitlines()
    assert lines and all(LINE.match(line) for line in lines), text
    assert LINE.match(lines[-1]).groups() == ("40", "40", "80", "80")  # the last epoch is always shown


def test_quiet_writes_nothing(tmp_path, capsys):
    assert main(["train", str(ROOT / "tests" / "tiny.toml"), "--out", str(tmp_path / "run"),
                 "--set", "train.epochs=3", "--quiet"]) == 0
    assert capsys.readouterr().err == ""
    assert main(["train", str(ROOT / "tests" / "tiny.toml"), "--out", str(tmp_path / "loud"),
                 "--set", "train.epochs=3"]) == 0
    assert LINE.match(capsys.readouterr().err.splitlines()[-1])


def feed(bar, steps: int) -> None:
    for step in range(steps):
        bar.set_postfix(loss=f"{1 / (step + 1):.3f}", acc="0.500")
        bar.update(1)
    bar.close()


def test_one_line_per_epoch_without_an_interval():
    log = io.StringIO()
    feed(EpochLines(total=10, initial=0, steps_per_epoch=3, desc="run", file=log, min_interval=0), 10)
    epochs = [LINE.match(line).group(1, 3) for line in log.getvalue().splitlines()]
    assert epochs == [("1", "3"), ("2", "6"), ("3", "9"), ("4", "10")]  # the last epoch is short


def test_a_resumed_run_counts_from_its_step():
    log = io.StringIO()
    feed(EpochLines(total=6, initial=4, steps_per_epoch=2, desc="run", file=log, min_interval=0), 2)
    assert [LINE.match(line).group(1, 3) for line in log.getvalue().splitlines()] == [("3", "6")]


def test_the_interval_thins_lines_but_keeps_the_first_and_last():
    log = io.StringIO()
    feed(EpochLines(total=100, initial=0, steps_per_epoch=1, desc="run", file=log, min_interval=3600), 100)
    assert [LINE.match(line).group(1) for line in log.getvalue().splitlines()] == ["1", "100"]


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_terminal_gets_the_bar_and_quiet_gets_nothing():
    assert type(progress_bar(4, 0, 2, "run", file=Terminal())).__name__ == "tqdm"
    assert isinstance(progress_bar(4, 0, 2, "run", file=io.StringIO()), EpochLines)
    assert isinstance(progress_bar(4, 0, 2, "run", enabled=False), NoProgress)
