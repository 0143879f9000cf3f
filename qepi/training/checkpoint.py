"""Atomic files and checkpoints that hold tensors and plain data only.

A checkpoint is a dict of tensors, numbers, strings, lists and dicts, so it loads with
``torch.load(..., weights_only=True)``: a file holding anything else (a crafted pickle)
is refused. Models are rebuilt from the resolved config and the InputSpec stored next
to their state_dict; devices and circuits are never pickled.

Example:
    >>> import tempfile, os, torch
    >>> with tempfile.TemporaryDirectory() as d:
    ...     path = os.path.join(d, "ck.pt")
    ...     save_checkpoint(path, {"model": {"w": torch.ones(2)}, "step": 3})
    ...     load_checkpoint(path)["step"]
    3
"""

from __future__ import annotations

import dataclasses
import io
import os
import pickle
import random
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from qepi.errors import UserError

FORMAT = "qepi-checkpoint-1"


def atomic_write_bytes(path: str | Path, payload: bytes) -> None:
    """Write ``payload`` to ``path`` through a temporary file in the same directory and
    ``os.replace``: readers see the old file or the new one, never a torn one."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    """:func:`atomic_write_bytes` for UTF-8 text."""
    atomic_write_bytes(path, text.encode("utf-8"))


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    """Write ``state`` (tensors and plain data) atomically, tagged with the checkpoint format."""
    buffer = io.BytesIO()
    torch.save({"format": FORMAT, **state}, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint with ``weights_only=True``; anything else is a one-line UserError."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: checkpoint not found")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise UserError(f"{path}: refused to load: the file holds objects other than tensors "
                        f"and plain data (not a qepi checkpoint)") from None
    except (RuntimeError, EOFError, ValueError, OSError) as err:
        first = str(err).splitlines()[0] if str(err) else err.__class__.__name__
        raise UserError(f"{path}: not a readable checkpoint ({first})") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise UserError(f"{path}: not a qepi checkpoint (format {FORMAT!r} expected)")
    return state


def rng_state() -> dict[str, Any]:
    """torch, numpy and Python RNG states as tensors and plain numbers."""
    _, keys, pos, has_gauss, gauss = np.random.get_state()
    version, py_state, py_gauss = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "numpy": {"keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "gauss": float(gauss)},
        "python": {"version": version, "state": torch.tensor(py_state, dtype=torch.int64),
                   "gauss": py_gauss},
    }


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` returned."""
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"],
                         n["has_gauss"], n["gauss"]))
    p = state["python"]
    random.setstate((p["version"], tuple(int(v) for v in p["state"].tolist()), p["gauss"]))


def seed_everything(seed: int) -> None:
    """Seed torch, numpy and Python's ``random``."""
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)


def model_record(model, cfg, seed: int) -> dict[str, Any]:
    """What rebuilding ``model`` needs: state_dict, resolved config, InputSpec, seeds, version."""
    from qepi import __version__
    from qepi.config import to_dict

    return {
        "model": model.state_dict(),
        "config": to_dict(cfg),
        "input_spec": dataclasses.asdict(model.inputs),
        "seeds": {"run": seed},
        "qepi_version": __version__,
    }


def load_model(path: str | Path, backend=None):
    """Rebuild a HybridTransformer from a checkpoint file or a run directory (its ``model.pt``,
    else its last ``checkpoint.pt``). Returns ``(model, cfg)``; ``backend`` (a
    ``qepi.config.Backend``) replaces the saved one, e.g. to continue on Aer."""
    from qepi.config import ConfigError, from_dict
    from qepi.models import HybridTransformer, InputSpec

    path = Path(path)
    if path.is_dir():
        path = path / "model.pt" if (path / "model.pt").is_file() else path / "checkpoint.pt"
    state = load_checkpoint(path)
    try:
        cfg = from_dict(state["config"])
        spec = InputSpec(**state["input_spec"])
    except (KeyError, TypeError, ConfigError) as err:
        raise UserError(f"{path}: checkpoint lacks a valid config or InputSpec ({err})") from None
    if backend is not None:
        cfg = dataclasses.replace(cfg, backend=backend)
    model = HybridTransformer(cfg, spec)
    model.load_state_dict(state["model"])
    return model, cfg
