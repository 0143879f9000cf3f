"""Training progress on stderr: a live bar on a terminal, plain lines in a log.

A bar redraws itself many times a second; written to a file (CI, ``nohup``, Ray workers,
``2> log``) every redraw stays in the file as a fragment. So :func:`progress_bar` draws
tqdm's bar only when the stream is a terminal, and otherwise writes one line at the end of
an epoch, at most one every ``min_interval`` seconds (the first and the last epoch always).

Example:
    >>> import io
    >>> log = io.StringIO()
    >>> bar = progress_bar(total=4, initial=0, steps_per_epoch=2, desc="demo", file=log, min_interval=0)
    >>> for step in range(4):
    ...     bar.set_postfix(loss="0.500", acc="0.750")
    ...     bar.update(1)
    >>> bar.close()
    >>> print(log.getvalue(), end="")  # doctest: +ELLIPSIS
    demo: epoch 1/2, step 2/4, loss 0.500, acc 0.750, ... s
    demo: epoch 2/2, step 4/4, loss 0.500, acc 0.750, ... s
"""

from __future__ import annotations

import math
import sys
import time
from typing import IO, Any

MIN_INTERVAL_S = 10.0  # between two epoch lines in a log


class EpochLines:
    """tqdm's ``set_postfix`` / ``update`` / ``close`` as one line per finished epoch."""

    def __init__(self, total: int, initial: int, steps_per_epoch: int, desc: str, file: IO[str],
                 min_interval: float = MIN_INTERVAL_S):
        self.total, self.n, self.steps_per_epoch = total, initial, max(1, steps_per_epoch)
        self.desc, self.file, self.min_interval = desc, file, min_interval
        self.epochs = math.ceil(total / self.steps_per_epoch)
        self.postfix: dict[str, Any] = {}
        self._start = time.perf_counter()
        self._last: float | None = None  # when the latest line was written

    def set_postfix(self, refresh: bool = False, **values: Any) -> None:
        self.postfix = values

    def update(self, n: int = 1) -> None:
        self.n += n
        if self.n % self.steps_per_epoch and self.n < self.total:
            return  # inside an epoch
        now = time.perf_counter()
        epoch = math.ceil(self.n / self.steps_per_epoch)
        due = self._last is None or now - self._last >= self.min_interval
        if due or self.n >= self.total:
            values = "".join(f", {key} {value}" for key, value in self.postfix.items())
            print(f"{self.desc}: epoch {epoch}/{self.epochs}, step {self.n}/{self.total}{values}, "
                  f"{now - self._start:.1f} s", file=self.file, flush=True)
            self._last = now

    def close(self) -> None:
        """Nothing to clean up: every line is complete."""


class NoProgress:
    """``--quiet``: the same methods, no output."""

    def set_postfix(self, refresh: bool = False, **values: Any) -> None: ...

    def update(self, n: int = 1) -> None: ...

    def close(self) -> None: ...


def progress_bar(total: int, initial: int, steps_per_epoch: int, desc: str, enabled: bool = True,
                 file: IO[str] | None = None, min_interval: float = MIN_INTERVAL_S):
    """A progress display over ``total`` steps starting at ``initial``: tqdm's bar when
    ``file`` (default stderr) is a terminal, :class:`EpochLines` otherwise, nothing when not
    ``enabled``."""
    if not enabled:
        return NoProgress()
    file = sys.stderr if file is None else file
    if getattr(file, "isatty", lambda: False)():
        from tqdm import tqdm

        return tqdm(total=total, initial=initial, desc=desc, unit="step", leave=False, file=file)
    return EpochLines(total, initial, steps_per_epoch, desc, file, min_interval)


__all__ = ["MIN_INTERVAL_S", "EpochLines", "NoProgress", "progress_bar"]
