"""What every command does with the config it is given."""

from __future__ import annotations

from qepi.backends import backend_entry
from qepi.config import Backend, Config, apply_overrides, load
from qepi.errors import UserError


def check_backend_settings(backend: Backend) -> None:
    """Check a backend section with the backend registry: a known ``backend.name``
    (:func:`qepi.backends.backend_names`) and settings that backend can honour. Raises the
    same UserError a quantum layer raises when it is built on ``backend``."""
    backend_entry(backend.name).validate(backend)


def load_config(path: str | None, overrides: list[str]) -> Config:
    """The config file ``path`` with ``--set`` overrides applied, checked like every config
    (:mod:`qepi.config`) and by the backend registry (:func:`check_backend_settings`)."""
    if path is None:
        raise UserError("give a CONFIG.toml (or --resume RUN_DIR)")
    cfg = apply_overrides(load(path), overrides)
    check_backend_settings(cfg.backend)
    return cfg
