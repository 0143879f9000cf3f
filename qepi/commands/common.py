"""What every command does with the config it is given.

Handler modules import only :mod:`qepi.config` and :mod:`qepi.errors` at their top; the
library (torch, PennyLane, Ray) is imported inside the handlers, so that ``qepi --help``
and ``qepi config show`` start in a fraction of a second.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable

from qepi.config import (BUILTIN_BACKENDS, NEEDS_SETTINGS, Backend, Config, apply_overrides,
                         check_run_name, inert_keys, load)
from qepi.errors import UserError


def check_backend_settings(backend: Backend) -> None:
    """Check a backend section with the backend registry: a known ``backend.name``
    (:func:`qepi.backends.backend_names`) and settings that backend can honour. Raises the
    same UserError a quantum layer raises when it is built on ``backend``.

    A built-in backend with every other setting at its default needs no check (every
    built-in backend but those of ``NEEDS_SETTINGS`` accepts its defaults), so this does
    not import the registry (torch).
    """
    if (backend.name in BUILTIN_BACKENDS and backend.name not in NEEDS_SETTINGS
            and backend == Backend(name=backend.name)):
        return
    from qepi.backends import backend_entry

    backend_entry(backend.name).validate(backend)


def warn_inert(configs: Iterable[Config]) -> None:
    """Print one warning line per key that changes nothing in every one of ``configs`` (see
    :func:`qepi.config.inert_keys`), naming the key and why."""
    found = None
    for cfg in configs:
        keys = inert_keys(cfg)
        found = keys if found is None else {k: v for k, v in found.items() if k in keys}
    for key, why in (found or {}).items():
        print(f"qepi: warning: {key} has no effect: {why}", file=sys.stderr)


def load_config(path: str | None, overrides: list[str], *, warn: bool = True) -> Config:
    """The config file ``path`` with ``--set`` overrides applied, checked like every config
    (:mod:`qepi.config`), by the backend registry (:func:`check_backend_settings`) and for a
    ``run.name`` inside ``run.out_dir``; with ``warn``, keys that change nothing are named
    on stderr (:func:`warn_inert`)."""
    if path is None:
        raise UserError("give a CONFIG.toml (or --resume RUN_DIR)")
    cfg = apply_overrides(load(path), overrides)
    check_run_name(cfg.run.name)
    check_backend_settings(cfg.backend)
    if warn:
        warn_inert([cfg])
    return cfg


__all__ = ["check_backend_settings", "load_config", "warn_inert"]
