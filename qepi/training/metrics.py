"""Metrics as they come: one JSON object a line in ``metrics.jsonl``, optionally TensorBoard.

Every record has ``kind`` (``train`` for a step, ``eval`` for an evaluation), ``step`` and
``epoch``; train records add loss, acc, lr, grad_norm, circuits, shots and time, eval
records add ``split``, loss and acc.

Example:
    >>> import tempfile, os
    >>> with tempfile.TemporaryDirectory() as d:
    ...     log = MetricsLog(os.path.join(d, "metrics.jsonl"))
    ...     log.write({"kind": "train", "step": 1, "epoch": 0, "loss": 0.7})
    ...     log.close()
    ...     read_metrics(os.path.join(d, "metrics.jsonl"))
    [{'kind': 'train', 'step': 1, 'epoch': 0, 'loss': 0.7}]
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from qepi.errors import UserError


def summary_writer_class():
    """torch's TensorBoard ``SummaryWriter``, or a UserError saying how to install it."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise UserError("train.tensorboard = true needs TensorBoard: "
                        "pip install 'qepi[tensorboard]'") from None
    return SummaryWriter


class MetricsLog:
    """Appends records to ``path`` (flushed per line); mirrors numbers to TensorBoard if asked.

    ``keep_lines`` first cuts the file to that many lines: a resumed run drops what was
    logged after its checkpoint, so no step appears twice.
    """

    def __init__(self, path: str | Path, tensorboard_dir: str | Path | None = None,
                 keep_lines: int | None = None):
        self.path = Path(path)
        writer_class = summary_writer_class() if tensorboard_dir is not None else None
        if keep_lines is not None and self.path.exists():
            from qepi.training.checkpoint import atomic_write_text

            lines = self.path.read_text().splitlines(keepends=True)[:keep_lines]
            atomic_write_text(self.path, "".join(lines))
        self.lines = len(self.path.read_text().splitlines()) if self.path.exists() else 0
        self.handle = self.path.open("a")
        self.tensorboard = writer_class(log_dir=str(tensorboard_dir)) if writer_class else None

    def write(self, record: dict[str, Any]) -> None:
        """Append one record (and its numbers to TensorBoard under ``kind[/split]/name``)."""
        self.handle.write(json.dumps(record) + "\n")
        self.handle.flush()
        self.lines += 1
        if self.tensorboard is not None:
            prefix = record["kind"] + (f"/{record['split']}" if "split" in record else "")
            for name, value in record.items():
                if name not in ("kind", "split", "step", "epoch") and isinstance(value, (int, float)):
                    self.tensorboard.add_scalar(f"{prefix}/{name}", value, record["step"])

    def close(self) -> None:
        self.handle.close()
        if self.tensorboard is not None:
            self.tensorboard.close()


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """Every record of a ``metrics.jsonl`` file; a malformed line names the file and line."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: metrics file not found")
    records = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if line.strip():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as err:
                raise UserError(f"{path}:{number}: malformed metrics line ({err.msg})") from None
    return records
