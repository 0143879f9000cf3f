"""Output directories of every qepi command: file names, kinds, and the guards around them.

Each command writes one kind of directory and, before anything else, its *marker*: the
file that says which kind of qepi directory it is. A directory is never written over
unasked:

- :func:`fresh_dir` (``qepi train``, ``compare``, ``marks``): the directory must be absent
  or empty, or, with ``overwrite``, an earlier directory of the same kind. That one is
  moved aside to ``<dir>.replaced`` and deleted only once the new one is complete; if the
  command fails, the partial new directory is dropped and the earlier one put back (after
  a hard kill it survives as ``<dir>.replaced``).
- :func:`continued_dir` (``qepi sweep``, ``sweep --tune``): started again in the same
  directory, a command continues where it stopped, provided the directory holds the same
  kind of work (the same base config, the same plan).
- :func:`exclusive`: one command at a time per directory. The commands hold an ``flock`` on
  ``.<name>.lock`` beside the directory (beside, because a replaced directory is renamed)
  while they run; a second one is refused with the process id of the first. The file
  holds that process id and is removed when the command ends.

Example:
    >>> import tempfile
    >>> from pathlib import Path
    >>> with tempfile.TemporaryDirectory() as d:
    ...     out = Path(d) / "run"
    ...     with fresh_dir(out, RUN, overwrite=False):
    ...         _ = (out / CONFIG).write_text("")
    ...     kind_of(out).what
    'run'
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qepi.config import load
from qepi.errors import UserError

# file names (checkpoint.pt, model.pt and metrics.jsonl are written by qepi.training)
CONFIG = "config.toml"  # the resolved config, written first
METRICS = "metrics.jsonl"
CHECKPOINT = "checkpoint.pt"
MODEL = "model.pt"
SUMMARY = "summary.json"  # a run's final figures; its presence marks the run as finished
REPORT = "report.md"
LEARNING_CURVES = "learning_curves.png"
ACCURACY_VS_PARAMS = "accuracy_vs_params.png"
COMPARE_MANIFEST = "compare.json"  # seeds and run names of a comparison
COMPARISON = "comparison.json"
SWEEP_PLAN = "sweep-plan.json"  # the grid, the seeds and every trial of a sweep
SWEEP = "sweep.json"
SWEEP_ACCURACY = "accuracy.png"
TRIALS = "runs"  # the run directories of a sweep's or a search's trials
TUNE_PLAN = "tune-plan.json"
TUNE_STATE = "tune"  # Ray Tune's experiment directory
HISTORY = "history.jsonl"
SEARCH = "search.json"
BEST = "best.toml"
MARKS_PLAN = "marks-plan.json"  # task A's config name and task B's overrides
MARKS = "marks.json"


@dataclass(frozen=True)
class DirKind:
    """One kind of output directory: what to call it, the file written first (the marker)
    and the file whose presence means the work finished."""

    what: str
    marker: str
    finished: str


RUN = DirKind("run", CONFIG, SUMMARY)
COMPARISON_DIR = DirKind("comparison", COMPARE_MANIFEST, COMPARISON)
SWEEP_DIR = DirKind("sweep", SWEEP_PLAN, SWEEP)
SEARCH_DIR = DirKind("Tune search", TUNE_PLAN, SEARCH)
MARKS_DIR = DirKind("marks experiment", MARKS_PLAN, MARKS)
KINDS = (SWEEP_DIR, SEARCH_DIR, COMPARISON_DIR, MARKS_DIR, RUN)  # RUN last: every kind holds config.toml


def kind_of(path: str | Path) -> DirKind | None:
    """The kind of qepi directory ``path`` is, by its marker; None for anything else."""
    path = Path(path)
    return next((kind for kind in KINDS if (path / kind.marker).is_file()), None)


def _free_or_replaceable(path: Path, kind: DirKind, overwrite: bool) -> Path | None:
    """Check ``path`` for :func:`fresh_dir`; move an earlier ``kind`` directory aside when
    ``overwrite`` allows it and return where it went (None when there was none)."""
    if path.exists() and not path.is_dir():
        raise UserError(f"{path}: exists and is not a directory")
    if not path.exists() or not any(path.iterdir()):
        return None
    if kind_of(path) != kind:
        raise UserError(f"{path}: directory is not empty and is not a qepi {kind.what} directory; "
                        f"choose another --out")
    if not overwrite:
        finished = (path / kind.finished).exists()
        hint = " (continue it with --resume)" if not finished and kind == RUN else ""
        raise UserError(f"{path}: holds {'a finished' if finished else 'an unfinished'} {kind.what}"
                        f"{hint}; pass --overwrite to replace it or choose another --out")
    backup = path.with_name(path.name + ".replaced")
    if backup.exists():
        if kind_of(backup) != kind:
            raise UserError(f"{backup}: exists and is not a qepi {kind.what} directory; move it away")
        shutil.rmtree(backup)
    path.rename(backup)
    return backup


@contextmanager
def fresh_dir(path: str | Path, kind: DirKind, overwrite: bool) -> Iterator[Path]:
    """Create ``path`` for a new ``kind`` directory, which the body writes (its marker
    first). An earlier directory of the same kind is replaced only with ``overwrite``, and
    atomically: it is deleted once the body has finished and put back if the body fails."""
    path = Path(path)
    backup = _free_or_replaceable(path, kind, overwrite)
    try:
        path.mkdir(parents=True, exist_ok=True)
        yield path
    except BaseException:
        if backup is not None:
            shutil.rmtree(path, ignore_errors=True)
            backup.rename(path)
        raise
    if backup is not None:
        shutil.rmtree(backup)


def lock_path(path: str | Path) -> Path:
    """The lock file of output directory ``path``: ``.<name>.lock`` beside it."""
    path = Path(path).absolute()
    return path.parent / f".{path.name}.lock"


def _holder(fd: int) -> str:
    pid = os.pread(fd, 32, 0).decode(errors="replace").strip()
    return f"process {pid}" if pid.isdigit() else "another process"


@contextmanager
def exclusive(path: str | Path) -> Iterator[Path]:
    """Hold the lock of output directory ``path`` for the block; a UserError names the
    process that holds it already. Yields the lock file.

    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as d, exclusive(f"{d}/run") as lock:
    ...     with exclusive(f"{d}/run"):
    ...         pass
    Traceback (most recent call last):
    ...
    qepi.errors.UserError: .../run: in use by process ... (another qepi command writes there); wait for it to end or choose another --out
    """
    lock = lock_path(path)
    lock.parent.mkdir(parents=True, exist_ok=True)
    while True:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(fd)
            os.close(fd)
            raise UserError(f"{path}: in use by {holder} (another qepi command writes there); "
                            f"wait for it to end or choose another --out") from None
        try:  # the previous holder may have removed the file between our open and flock
            current = os.stat(lock).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            current = False
        if current:
            break
        os.close(fd)
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield lock
    finally:
        os.unlink(lock)  # still held: a waiting opener sees a removed file and retries
        os.close(fd)


def _saved(path: Path) -> Any:
    return load(path) if path.suffix == ".toml" else json.loads(path.read_text())


def continued_dir(path: str | Path, kind: DirKind, expected: dict[str, Any], differs: str) -> Path:
    """Create ``path`` for a command that continues where it stopped: it must be absent or
    empty, or a ``kind`` directory whose files named in ``expected`` hold the given values
    (a Config for ``.toml``, JSON data otherwise); ``differs`` names those values in the
    error. The caller then writes its marker and those files."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise UserError(f"{path}: exists and is not a directory")
    if path.exists() and any(path.iterdir()):
        if kind_of(path) != kind:
            raise UserError(f"{path}: directory is not empty and is not a qepi {kind.what} "
                            f"directory; choose another --out")
        if any(not (path / name).is_file() or _saved(path / name) != value
               for name, value in expected.items()):
            raise UserError(f"{path}: holds a {kind.what} of a different {differs}; choose another "
                            f"--out (or delete the directory to start over)")
    path.mkdir(parents=True, exist_ok=True)
    return path


def read_summary(run_dir: str | Path, required: tuple[str, ...] = ()) -> dict[str, Any]:
    """The ``summary.json`` of a finished run, with at least the ``required`` keys."""
    path = Path(run_dir) / SUMMARY
    if not path.is_file():
        raise UserError(f"{run_dir}: run did not finish (no {SUMMARY})")
    try:
        summary = json.loads(path.read_text())
        missing = set(required) - set(summary)
    except (json.JSONDecodeError, TypeError):
        missing = {"valid JSON"}
    if missing:
        raise UserError(f"{path}: malformed run summary (missing {', '.join(sorted(missing))})")
    return summary


__all__ = [
    "ACCURACY_VS_PARAMS", "BEST", "CHECKPOINT", "COMPARE_MANIFEST", "COMPARISON", "COMPARISON_DIR",
    "CONFIG", "HISTORY", "KINDS", "LEARNING_CURVES", "MARKS", "MARKS_DIR", "MARKS_PLAN", "METRICS",
    "MODEL", "REPORT", "RUN", "SEARCH", "SEARCH_DIR", "SUMMARY", "SWEEP", "SWEEP_ACCURACY",
    "SWEEP_DIR", "SWEEP_PLAN", "TRIALS", "TUNE_PLAN", "TUNE_STATE", "DirKind", "continued_dir",
    "exclusive", "fresh_dir", "kind_of", "lock_path", "read_summary",
]
