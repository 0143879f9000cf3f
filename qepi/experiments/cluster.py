"""Ray for sweeps and Tune searches: the session, and the CPUs each trial reserves.

Ray is an optional dependency (``pip install 'qepi[distributed]'``), imported only here and
only when a sweep or search starts.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch

from qepi.config import Config
from qepi.errors import UserError

INSTALL_HINT = "qepi sweep needs Ray: pip install 'qepi[distributed]'"


def import_ray():
    """The ``ray`` module, or a UserError with the install hint when Ray is missing."""
    try:
        import ray
    except ImportError:
        raise UserError(INSTALL_HINT) from None
    return ray


def trial_cpus(cfg: Config, node_cpus: int, default: int = 1) -> int:
    """CPUs a trial reserves: as many as its threads use, at least ``default``.

    Its threads are ``train.threads`` (torch) and, on Aer, ``backend.threads``, where Aer's
    0 (all cores) reserves a whole node: ``node_cpus``, the largest node's CPU count. Torch
    with ``train.threads = 0`` (its default) runs on the CPUs the trial reserved.

    >>> from qepi.config import Config, update
    >>> aer = update(Config(), backend={"name": "aer", "threads": 3})
    >>> trial_cpus(aer, node_cpus=8), trial_cpus(update(aer, backend={"threads": 0}), node_cpus=8)
    (3, 8)
    >>> trial_cpus(Config(), node_cpus=8), trial_cpus(update(Config(), train={"threads": 2}), node_cpus=8)
    (1, 2)
    """
    if not 1 <= default <= node_cpus:
        raise UserError(f"--cpus-per-trial: must be between 1 and the largest Ray node's "
                        f"{node_cpus} CPUs, got {default}")
    threads = {"train.threads": cfg.train.threads}
    if cfg.backend.name == "aer":
        threads["backend.threads"] = cfg.backend.threads or node_cpus
    for key, need in threads.items():
        if need > node_cpus:
            raise UserError(f"{key} = {need}: a trial cannot reserve more CPUs than the largest "
                            f"Ray node has ({node_cpus})")
    return max(default, *threads.values())


@contextmanager
def ray_session(address: str | None = None) -> Iterator[Any]:
    """Yield the ``ray`` module connected to a cluster (``address``, e.g. ``"auto"`` or
    ``"10.0.0.5:6379"``) or to a new local instance sized to this machine's cores; an
    already initialised Ray is used as it is. Only an instance started here is shut down."""
    ray = import_ray()
    if ray.is_initialized():
        yield ray
        return
    try:
        if address:
            ray.init(address=address, log_to_driver=False, logging_level=logging.WARNING)
        else:
            ray.init(address="local", num_cpus=os.cpu_count(), include_dashboard=False,
                     log_to_driver=False, logging_level=logging.ERROR)
    except ConnectionError as err:
        raise UserError(f"--address {address}: cannot connect to a Ray cluster ({err}); check the "
                        f"address, and for a cluster with token authentication set "
                        f"RAY_AUTH_MODE=token with its token in ~/.ray/auth_token") from None
    try:
        yield ray
    finally:
        ray.shutdown()


def largest_node_cpus(ray) -> int:
    """CPU count of the largest live node of the connected Ray cluster."""
    return int(max(n["Resources"].get("CPU", 0) for n in ray.nodes() if n["Alive"]))


def use_assigned_cpus(ray) -> int:
    """Inside a Ray task or actor: set torch's threads to the CPUs Ray assigned (the trainer
    then applies ``train.threads`` when it is > 0); returns them."""
    cpus = max(1, int(ray.get_runtime_context().get_assigned_resources().get("CPU", 1)))
    torch.set_num_threads(cpus)
    return cpus


__all__ = ["INSTALL_HINT", "import_ray", "largest_node_cpus", "ray_session", "trial_cpus",
           "use_assigned_cpus"]
