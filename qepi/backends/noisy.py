"""``exact`` with shots or noise: qepi's parameter-shift engine on its own torch simulator.

With ``backend.shots > 0`` or ``backend.noise`` set, ``backend.name = "exact"`` builds a
:class:`NoisyExactExecutor`: the aer engine's whole pipeline (:mod:`qepi.backends.aer`: the
traced gate list, every unshifted and ±π/2-shifted angle row, the qubit-wise commuting
measurement groups, readout confusion matrices, error mitigation, the counter-based
:class:`~qepi.backends.sampling.ShotSampler` keyed by the same circuit ids, and the
parameter-shift Jacobian) with the exact outcome probabilities computed by
:class:`qepi.backends.torchsim.TorchTemplateRunner` instead of Aer: all circuits of a call
at once, as a batched statevector, or a batched density matrix in the Pauli basis when
gates are noisy (``"depolarizing"`` or a fake IBM device's noise model, transpiled to the
device as aer does). Values and gradients are therefore estimates exactly as on a device, with the same
distribution as ``backend.name = "aer"`` with the same settings (and, without shots, the
same exact noisy values to rounding).

Example:
    >>> import torch
    >>> from qepi.circuits import build_circuit
    >>> from qepi.config import Backend, Circuit
    >>> spec = build_circuit(Circuit(n_qubits=2, n_layers=1))
    >>> run = NoisyExactExecutor(spec.qfunc, 2, Backend(name="exact", shots=100), seed=1)
    >>> w = torch.zeros(1, 1, 2, 3, requires_grad=True)
    >>> out = run(torch.zeros(3, 1, 2, dtype=torch.float64), {"weights": w})  # (N, K, n_outputs)
    >>> out.shape, run.stats.circuits, run.stats.shots  # 3 rows + 3 x 6 angles x 2 shifts
    (torch.Size([3, 1, 2]), 39, 3900)
"""

from __future__ import annotations

from collections.abc import Callable

from qepi.backends.aer import AerExecutor, check_backend as check_aer_backend
from qepi.backends.aer import validate as validate_aer
from qepi.backends.torchsim import TorchTemplateRunner
from qepi.config import Backend
from qepi.errors import UserError


def check_backend(backend: Backend) -> None:
    """The aer engine's checks, and the exact backend's own settings that shots and noise
    cannot honour (float32, a forced strategy)."""
    check_aer_backend(backend)
    if backend.dtype != "float64":
        raise UserError(f"backend.dtype={backend.dtype!r}: shots and noise on the exact backend "
                        f"simulate in float64; leave backend.dtype='float64'")
    if getattr(backend, "strategy", "auto") != "auto":
        raise UserError(f"backend.strategy={backend.strategy!r}: shots and noise on the exact "
                        f"backend simulate gate by gate; leave backend.strategy='auto'")


def validate(backend: Backend) -> None:
    """:func:`check_backend`, and the fake IBM backend named by ``backend.noise`` exists."""
    check_backend(backend)
    validate_aer(backend)


def _torch_simulator(templates: list, params: list, noise_model) -> TorchTemplateRunner:
    return TorchTemplateRunner(templates, params, noise_model)


class NoisyExactExecutor(AerExecutor):
    """Executor for ``backend.name == "exact"`` with shots or noise (see the module docs).

    ``backend.threads`` and Aer's run path do not apply: the simulation runs in torch on
    the calling thread's torch thread pool.
    """

    check_settings = staticmethod(check_backend)

    def __init__(self, qfunc: Callable, n_qubits: int, backend: Backend, seed: int = 0):
        super().__init__(qfunc, n_qubits, backend, seed=seed, simulator=_torch_simulator)


__all__ = ["NoisyExactExecutor", "check_backend", "validate"]
