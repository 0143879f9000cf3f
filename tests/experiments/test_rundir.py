"""Output directories: kinds by marker, fresh directories replaced atomically, continued ones."""

import json

import pytest

from qepi.config import Config, to_toml, update
from qepi.errors import UserError
from qepi.experiments.rundir import (
    COMPARE_MANIFEST,
    COMPARISON_DIR,
    CONFIG,
    RUN,
    SUMMARY,
    SWEEP_DIR,
    SWEEP_PLAN,
    continued_dir,
    fresh_dir,
    kind_of,
    read_summary,
)


def write_run(path, finished=True):
    path.mkdir(parents=True, exist_ok=True)
    (path / CONFIG).write_text(to_toml(Config()))
    if finished:
        (path / SUMMARY).write_text(json.dumps({"name": path.name}))


def test_kinds_by_marker(tmp_path):
    write_run(tmp_path / "run")
    (tmp_path / "cmp").mkdir()
    (tmp_path / "cmp" / CONFIG).write_text("")
    (tmp_path / "cmp" / COMPARE_MANIFEST).write_text("{}")
    assert kind_of(tmp_path / "run") == RUN
    assert kind_of(tmp_path / "cmp") == COMPARISON_DIR  # holds config.toml too
    assert kind_of(tmp_path) is None


class TestFreshDir:
    def test_refuses_an_earlier_run_unless_asked(self, tmp_path):
        write_run(tmp_path / "r")
        with pytest.raises(UserError, match="holds a finished run; pass --overwrite"):
            with fresh_dir(tmp_path / "r", RUN, overwrite=False):
                pass
        write_run(tmp_path / "u", finished=False)
        with pytest.raises(UserError, match="unfinished run \\(continue it with --resume\\)"):
            with fresh_dir(tmp_path / "u", RUN, overwrite=False):
                pass

    def test_never_replaces_another_kind_or_foreign_files(self, tmp_path):
        (tmp_path / "notes").mkdir()
        (tmp_path / "notes" / "keep.txt").write_text("mine")
        write_run(tmp_path / "r")
        for path, kind in ((tmp_path / "notes", RUN), (tmp_path / "r", COMPARISON_DIR)):
            with pytest.raises(UserError, match="is not a qepi"):
                with fresh_dir(path, kind, overwrite=True):
                    pass
        assert (tmp_path / "notes" / "keep.txt").read_text() == "mine"

    def test_replacement_is_kept_only_when_the_new_run_finishes(self, tmp_path):
        out = tmp_path / "r"
        write_run(out)
        with pytest.raises(RuntimeError):
            with fresh_dir(out, RUN, overwrite=True):
                (out / CONFIG).write_text("partial")
                raise RuntimeError("the new run failed")
        assert read_summary(out) == {"name": "r"}  # the earlier run is back
        assert not (tmp_path / "r.replaced").exists()
        with fresh_dir(out, RUN, overwrite=True):
            (out / CONFIG).write_text("new")
        assert (out / CONFIG).read_text() == "new" and not (out / SUMMARY).exists()
        assert not (tmp_path / "r.replaced").exists()


class TestContinuedDir:
    def test_same_base_continues_a_different_one_is_refused(self, tmp_path):
        out = tmp_path / "s"
        continued_dir(out, SWEEP_DIR, {CONFIG: Config()}, "base config")
        (out / CONFIG).write_text(to_toml(Config()))
        (out / SWEEP_PLAN).write_text("{}")
        assert continued_dir(out, SWEEP_DIR, {CONFIG: Config()}, "base config") == out
        changed = update(Config(), train={"lr": 0.5})
        with pytest.raises(UserError, match="holds a sweep of a different base config"):
            continued_dir(out, SWEEP_DIR, {CONFIG: changed}, "base config")

    def test_a_foreign_directory_is_refused(self, tmp_path):
        write_run(tmp_path / "r")
        with pytest.raises(UserError, match="not a qepi sweep directory"):
            continued_dir(tmp_path / "r", SWEEP_DIR, {}, "base config")


def test_read_summary_names_what_is_missing(tmp_path):
    write_run(tmp_path / "r", finished=False)
    with pytest.raises(UserError, match="run did not finish"):
        read_summary(tmp_path / "r")
    (tmp_path / "r" / SUMMARY).write_text('{"name": "r"}')
    with pytest.raises(UserError, match="missing test_acc"):
        read_summary(tmp_path / "r", ("name", "test_acc"))
