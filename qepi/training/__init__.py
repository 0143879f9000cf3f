"""Training: the loop (:class:`Trainer`), metrics files, and checkpoints.

See :mod:`qepi.training.trainer` for the callback hooks that extend the loop.
"""

from qepi.training.checkpoint import (
    atomic_write_bytes,
    atomic_write_text,
    load_checkpoint,
    load_model,
    model_record,
    save_checkpoint,
    seed_everything,
)
from qepi.training.metrics import MetricsLog, read_metrics
from qepi.training.trainer import Callback, Trainer, evaluate, lr_factor, make_optimizer, predict

__all__ = [
    "Callback",
    "MetricsLog",
    "Trainer",
    "atomic_write_bytes",
    "atomic_write_text",
    "evaluate",
    "load_checkpoint",
    "load_model",
    "lr_factor",
    "make_optimizer",
    "model_record",
    "predict",
    "read_metrics",
    "save_checkpoint",
    "seed_everything",
]
