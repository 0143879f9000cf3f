"""Handlers of ``qepi config show`` and ``qepi config reference``."""

from __future__ import annotations

from qepi.commands.common import load_config
from qepi.config import reference_markdown, to_toml


def show(*, config: str, overrides: list[str]) -> int:
    """``qepi config show CONFIG [--set k=v]``: the resolved config, every key."""
    print(to_toml(load_config(config, overrides)), end="")
    return 0


def reference() -> int:
    """``qepi config reference``: every config key with its default and meaning."""
    print(reference_markdown(), end="")
    return 0
