"""``runtime``: qepi's parameter-shift engine on IBM Quantum devices through Qiskit Runtime.

``backend.name = "runtime"`` runs the :mod:`qepi.backends.aer` engine's circuits (the traced
gate list, every unshifted and ±π/2-shifted angle row, the qubit-wise commuting measurement
groups, the parameter-shift Jacobian, observable coefficients by the chain rule) on the
device ``backend.device`` with Qiskit Runtime's ``SamplerV2``:

- ``backend.device`` names the target: a fake IBM backend of
  ``qiskit_ibm_runtime.fake_provider`` (``"FakeManilaV2"``, ``"FakeTorino"``...) runs in
  Qiskit Runtime's *local testing mode* (the fake device's noise simulated by Aer on this
  machine, no account, no network); ``"aer_simulator"`` is a noiseless local target;
  any other name is a device of the saved IBM Quantum account
  (``QiskitRuntimeService().backend(name)``, see below). ``backend.threads`` sets the local
  simulator's threads (0 = every core; 1 is fastest for small circuits on a busy machine).
- Each circuit structure is transpiled ONCE to the target's ISA with
  ``generate_preset_pass_manager(backend.optimization_level, backend=target,
  seed_transpiler=0)``: the traced circuit, angles as Parameters. Each measurement group
  then appends its basis change on the physical qubits the wires end on (the transpiled
  circuit's final layout: X as ``rz(π/2)·sx``, Y as ``sx``, both native on IBM devices)
  and measures them into classical bits 0..m-1 in wire order, so outcome bit i is the
  i-th measured wire whatever the layout. :meth:`RuntimeExecutor.details` reports the
  layout, depth and gate counts per structure (a run's ``summary.json`` keeps them).
- Every circuit a call needs, unshifted and shifted rows of every structure, is ONE
  SamplerV2 job of parameter-bound PUBs ``(isa_circuit, parameter_values (C, P))``, one PUB
  per structure and measurement group, ``backend.shots`` shots each. Calls that
  differentiate (training) run inside a ``Session``, others (evaluation) inside a
  ``Batch``, each opened on first use and kept while the executor lives; where the mode
  refuses one (e.g. an account plan without sessions) jobs run in job mode.
- Counts become outcome frequencies, and those the same estimates and gradients as the
  aer engine computes from its sampled frequencies. The device's gate and readout errors
  are in the counts, corrected only where ``backend.mitigation`` asks
  (:mod:`qepi.backends.mitigation`: ``"readout"`` calibrates M3 with one device job of two
  circuits; ``"zne"`` runs the folded circuits too and needs ``optimization_level = 0``,
  since higher levels cancel the folds). Local testing mode simulates a fake device with
  its own noise model (built from its calibration properties, asymmetric readout errors
  included), not the ``NoiseModel.from_backend`` that ``backend.name = "aer"`` with
  ``backend.noise`` uses: on FakeManilaV2 the two differ by ~0.04 in ⟨Z⟩.

Reproducibility. In local testing mode each job's ``simulator.seed_simulator`` is derived
from qepi's seed and the call number (:class:`~qepi.backends.sampling.ShotSampler`'s
counter), and Aer seeds circuit c of a job with seed + c, so identical rows and repeated
calls draw independently, a seed reproduces the same counts, and a run resumed from
:meth:`RuntimeExecutor.state_dict` (saved in training checkpoints) continues the same
draws. On a real device nothing makes counts reproducible: the seed is not sent, and
calibrations drift between jobs; the transpilation (seed 0) and the call numbering are
still reproduced.

Errors from the service (a missing account, an unknown device, a failed or cancelled
job, a queue limit, a network error) become one :class:`~qepi.errors.UserError` line. A
training run stopped by one keeps its last checkpoint: ``qepi train --resume RUN_DIR``
continues it (``train.checkpoint_every`` sets how much can be lost).

Running on a device: save an account once with
``QiskitRuntimeService.save_account(channel="ibm_quantum_platform", token=..., instance=...)``,
then set ``backend.device = "ibm_torino"`` (any device the account can use); the config is
otherwise the one that ran on ``"FakeTorino"``.

Example:
    >>> import torch
    >>> from qepi.circuits import build_circuit
    >>> from qepi.config import Backend, Circuit
    >>> spec = build_circuit(Circuit(n_qubits=2, n_layers=1))
    >>> run = RuntimeExecutor(spec.qfunc, 2, Backend(name="runtime", device="FakeManilaV2",
    ...                                              shots=100), seed=1)
    >>> w = torch.zeros(1, 1, 2, 3, requires_grad=True)
    >>> out = run(torch.zeros(3, 1, 2, dtype=torch.float64), {"weights": w})  # (N, K, n_outputs)
    >>> out.shape, run.stats.circuits, run.jobs  # 3 rows + 3 x 6 angles x 2 shifts, one job
    (torch.Size([3, 1, 2]), 39, 1)
    >>> run.details()["transpilations"], run.details()["structures"][0]["layout"]  # wire -> qubit
    (1, [0, 1])
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Callable
from typing import Any

import numpy as np

from qepi.backends.aer import AerExecutor, Plan, shift_estimates, shifted_rows
from qepi.backends.base import BackendEntry, Capabilities, register_backend
from qepi.backends.mitigation import CALIBRATION_CALL, check_mitigation
from qepi.config import Backend
from qepi.errors import UserError

IDEAL_DEVICE = "aer_simulator"  # backend.device for a noiseless local target
_NOISE_KEYS = ("depolarizing_1q", "depolarizing_2q", "readout_error")


def check_backend(backend: Backend) -> None:
    """Raise UserError naming the first ``backend`` value the runtime backend cannot honour."""
    if backend.shots < 1:
        raise UserError(f"backend.shots={backend.shots}: the runtime backend samples a device; "
                        f"set backend.shots > 0")
    if not backend.device:
        raise UserError("backend.device: name the target of backend.name='runtime', e.g. "
                        "'FakeManilaV2' (local testing) or 'ibm_torino'")
    if backend.noise or any(getattr(backend, key) for key in _NOISE_KEYS):
        key = "noise" if backend.noise else next(k for k in _NOISE_KEYS if getattr(backend, k))
        raise UserError(f"backend.{key}={getattr(backend, key)!r}: the runtime backend's noise is "
                        f"the device's own; leave it unset (backend.name='aer' simulates noise)")
    check_mitigation(backend, device_noise=True)
    if "zne" in backend.mitigation and backend.optimization_level > 0:
        raise UserError(f"backend.mitigation={list(backend.mitigation)} with "
                        f"backend.optimization_level={backend.optimization_level}: the transpiler "
                        f"would cancel the folded gates of 'zne'; set backend.optimization_level=0")


def validate(backend: Backend) -> None:
    """:func:`check_backend`, and a fake device named by ``backend.device`` exists (a real
    device is looked up when the executor first runs)."""
    check_backend(backend)
    if backend.device.startswith("Fake"):
        fake_device_class(backend.device)


def state_bytes(n_qubits: int, backend: Backend) -> int:
    """A statevector on this machine in local testing mode; nothing for a real device."""
    local = backend.device.startswith("Fake") or backend.device == IDEAL_DEVICE
    return 16 * 2**n_qubits if local else 0


def fake_device_class(name: str) -> type:
    """The class of the fake IBM backend ``name`` in ``qiskit_ibm_runtime.fake_provider``."""
    try:
        from qiskit_ibm_runtime import fake_provider
    except ImportError:  # pragma: no cover - depends on the install
        raise UserError(f"backend.device={name!r} needs qiskit-ibm-runtime: "
                        f"pip install 'qepi[ibm]'") from None
    cls = getattr(fake_provider, name, None)
    if cls is None or not isinstance(cls, type):
        raise UserError(f"backend.device={name!r}: no such fake backend in qiskit_ibm_runtime")
    return cls


def service_error(device: str, err: BaseException) -> UserError:
    """One line for a failure of Qiskit Runtime or of the way to it."""
    text = str(getattr(err, "message", err)).strip()  # a QiskitError's str is a repr
    first = text.splitlines()[0] if text else "no detail"
    return UserError(f"backend.device={device!r}: IBM Runtime failed ({type(err).__name__}: "
                     f"{first}); a training run continues with qepi train --resume RUN_DIR")


def resolve_device(name: str):
    """The target ``name`` names: a fake backend, the noiseless ``aer_simulator`` (both local)
    or a device of the saved IBM Quantum account."""
    if name.startswith("Fake"):
        return fake_device_class(name)()
    if name == IDEAL_DEVICE:
        from qiskit_aer import AerSimulator

        return AerSimulator()
    from qiskit.exceptions import QiskitError
    from qiskit_ibm_runtime import QiskitRuntimeService
    from qiskit_ibm_runtime.accounts import AccountNotFoundError

    try:
        return QiskitRuntimeService().backend(name)
    except AccountNotFoundError:
        raise UserError(f"backend.device={name!r}: no saved IBM Quantum account; run "
                        f"QiskitRuntimeService.save_account(...) once, or name a fake "
                        f"device such as 'FakeTorino'") from None
    except (QiskitError, OSError) as err:  # unknown device, no access, network
        raise service_error(name, err) from None


def measured_in_basis(isa, basis: list[str], layout: list[int]):
    """``isa`` (a transpiled circuit without measurements) followed by the change to
    ``basis`` (one letter of ``IXYZ`` per wire) on the physical qubits ``layout[wire]`` and
    measurements of them into bits 0..m-1 in wire order; also returns those qubits.

    >>> from qiskit import QuantumCircuit
    >>> qc, physical = measured_in_basis(QuantumCircuit(3), ["X", "I", "Y"], layout=[2, 0, 1])
    >>> physical, [inst.operation.name for inst in qc.data]
    ([2, 1], ['rz', 'sx', 'measure', 'sx', 'measure'])
    """
    from qiskit import ClassicalRegister

    qc = isa.copy()
    measured = [q for q, letter in enumerate(basis) if letter != "I"]
    physical = [layout[q] for q in measured]
    bits = ClassicalRegister(len(measured), "meas")
    qc.add_register(bits)
    for bit, (wire, qubit) in enumerate(zip(measured, physical)):
        if basis[wire] == "X":  # measures X as Z: (sx·rz(π/2))† Z (sx·rz(π/2)) = X
            qc.rz(math.pi / 2, qubit)
            qc.sx(qubit)
        elif basis[wire] == "Y":  # sx† Z sx = Y
            qc.sx(qubit)
        qc.measure(qubit, bits[bit])
    return qc, physical


class SamplerTemplates:
    """A plan's measured ISA circuits and, per circuit, which angle columns its Parameters
    read (the transpiler may drop some); :meth:`pubs` binds angle rows to them."""

    def __init__(self, templates: list, params: list, noise_model=None):
        index = {p: j for j, p in enumerate(params)}
        self.templates = templates
        self.columns = [np.array([index[p] for p in qc.parameters], dtype=np.int64)
                        for qc in templates]

    def pubs(self, values: np.ndarray) -> list[tuple]:
        """One PUB ``(circuit, parameter values (C, P_t))`` per template for angle rows (C, P)."""
        from qiskit.primitives.containers.bindings_array import BindingsArray

        out = []
        for qc, cols in zip(self.templates, self.columns):
            if len(cols):
                out.append((qc, values[:, cols]))
            else:  # no angle survives: C bindings of nothing, so each row still draws
                out.append((qc, BindingsArray(shape=(len(values),))))
        return out


def frequencies(bit_array, n_bits: int) -> np.ndarray:
    """Outcome frequencies (C, 2**m) of a PUB's measured bits (C rows of shots), outcome
    index bit i = classical bit i."""
    bits = bit_array.to_bool_array(order="little")  # (C, S, m), column i = bit i
    c, s = bits.shape[:2]
    outcome = bits.astype(np.int64) @ (1 << np.arange(n_bits, dtype=np.int64))  # (C, S)
    flat = outcome + (np.arange(c, dtype=np.int64) << n_bits)[:, None]
    counts = np.bincount(flat.ravel(), minlength=c << n_bits).reshape(c, 1 << n_bits)
    return counts / s


class RuntimeExecutor(AerExecutor):
    """Executor for ``backend.name == "runtime"`` (see the module docs).

    ``target``, when given, is the BackendV2 to run on instead of the one ``backend.device``
    names (e.g. a simulator built in a test), used as it is; ``jobs`` counts the SamplerV2 jobs submitted
    and ``transpilations`` the structures transpiled.
    """

    capabilities = Capabilities(measurements=frozenset({"expval", "var", "probs"}), shots=True,
                                noise=False, shift_mask=True, trace=True,
                                bounds_memory=True,  # one job per call; no states held here
                                mitigation=True)  # readout and zne on the device's counts

    check_settings = staticmethod(check_backend)

    def __init__(self, qfunc: Callable, n_qubits: int, backend: Backend, seed: int = 0,
                 target=None):
        super().__init__(qfunc, n_qubits, backend, seed=seed, simulator=SamplerTemplates)
        self._target = target
        self._modes: dict[str, tuple] = {}  # "session" / "batch" -> (close(), SamplerV2)
        self.jobs = 0
        self.transpilations = 0
        self._structures: list[dict[str, Any]] = []  # details() per transpiled structure

    # -- where it runs --------------------------------------------------------------
    @property
    def target(self):
        """The BackendV2 the circuits run on (looked up on first use); in local testing mode
        its simulator runs on ``backend.threads`` threads (0: Aer's default, every core)."""
        if self._target is None:
            target = resolve_device(self.backend.device)
            if self.backend.threads and hasattr(target.options, "max_parallel_threads"):
                target.set_options(max_parallel_threads=self.backend.threads)
            self._target = target
        return self._target

    @property
    def local(self) -> bool:
        """True in local testing mode (anything but a device of the IBM Quantum service)."""
        from qiskit_ibm_runtime import IBMBackend

        return not isinstance(self.target, IBMBackend)

    def details(self) -> dict[str, Any]:
        """Plain data on where the circuits ran: the device, the optimisation level, the
        transpilations and, per structure, the physical qubit of each wire (``layout``),
        the transpiled depth and gate counts (without the measurement basis changes)."""
        return {"device": self.backend.device, "optimization_level": self.backend.optimization_level,
                "local": self._target is not None and self.local, "jobs": self.jobs,
                "transpilations": self.transpilations, "structures": list(self._structures)}

    def build_templates(self, body, bases: list[list[str]]) -> list[tuple[Any, list[int]]]:
        """``body`` transpiled once to the target's ISA, then one measured circuit per basis
        (:func:`measured_in_basis` on the final layout)."""
        from qiskit.exceptions import QiskitError
        from qiskit.transpiler import generate_preset_pass_manager

        target, name = self.target, self.backend.device
        if body.num_qubits > target.num_qubits:
            raise UserError(f"backend.device={name!r}: the device has {target.num_qubits} "
                            f"qubits, the circuit {body.num_qubits}")
        try:
            manager = generate_preset_pass_manager(self.backend.optimization_level,
                                                   backend=target, seed_transpiler=0)
            isa = manager.run(body)
        except QiskitError as err:
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise UserError(f"backend.device={name!r}: the circuit does not transpile to the "
                            f"device ({first})") from None
        self.transpilations += 1
        layout = (isa.layout.final_index_layout() if isa.layout is not None
                  else list(range(body.num_qubits)))[:body.num_qubits]  # wire -> physical qubit
        self._structures.append({"wires": body.num_qubits, "layout": layout,
                                 "depth": isa.depth(), "ops": dict(isa.count_ops())})
        return [measured_in_basis(isa, basis, layout) for basis in bases]

    def _sampler(self, training: bool):
        """The SamplerV2 to submit with: a Session opened by the first call that trains and
        used by every call after it (a Batch would queue behind the session on a device);
        before that, a Batch. Job mode where the service refuses the mode."""
        from qiskit.exceptions import QiskitError
        from qiskit_ibm_runtime import Batch, SamplerV2, Session

        kind = "session" if training or "session" in self._modes else "batch"
        if kind not in self._modes:
            if kind == "session" and "batch" in self._modes:
                self._modes.pop("batch")[0]()  # close the evaluation batch
            try:
                mode = (Session if kind == "session" else Batch)(backend=self.target)
            except (QiskitError, OSError):  # e.g. a plan without sessions: job mode
                close, sampler = (lambda: None), SamplerV2(mode=self.target)
            else:
                close, sampler = weakref.finalize(self, mode.close), SamplerV2(mode=mode)
            self._modes[kind] = (close, sampler)
        return self._modes[kind][1]

    def close(self) -> None:
        """Close the Session or Batch (jobs already submitted still finish)."""
        for close, _ in self._modes.values():
            close()
        self._modes.clear()

    def job_seed(self, call: int) -> int:
        """``simulator.seed_simulator`` of call ``call`` (local testing mode): 1 + 62 bits
        derived from (seed, call); Aer seeds circuit c of the job with it + c.

        >>> run = RuntimeExecutor(lambda inputs: None, 1,
        ...                       Backend(name="runtime", device="FakeManilaV2", shots=1), seed=3)
        >>> run.job_seed(0) == run.job_seed(0) != run.job_seed(1)
        True
        """
        words = np.random.SeedSequence([self.seed & (2**64 - 1), call]).generate_state(2)
        return 1 + ((int(words[0]) << 30) ^ int(words[1]))

    # -- the step -------------------------------------------------------------------
    def evaluate_segments(self, plans: list[Plan], thetas: list[np.ndarray],
                          shifts: list[np.ndarray], row_ids: list[np.ndarray], call: int,
                          id_angles: int, shift_shots: list | None = None,
                          recorders: list | None = None) -> list[tuple[np.ndarray, np.ndarray]]:
        """Every circuit of the call as one SamplerV2 job; estimates as the aer engine's
        (readout-corrected and extrapolated where ``backend.mitigation`` asks). Shots per
        shifted circuit are not offered (``capabilities.shift_shots`` is False)."""
        if any(x is not None for x in (shift_shots or []) + (recorders or [])):
            raise UserError("the runtime backend runs every circuit with backend.shots; shots per "
                            "weight element need backend.name='aer' or 'exact'")
        shots = self.backend.shots
        batches, pubs = [], []
        for plan, theta, shift in zip(plans, thetas, shifts):
            every, rows, cols = shifted_rows(theta, shift)  # (G + 2M, P)
            batches.append((every, rows, cols))
            if plan.runner is not None:
                pubs.extend(plan.runner.pubs(every))
        results = self._submit(pubs, shots, call, training=any(s.any() for s in shifts))
        scales = len(self.mitigation.scale_factors)
        estimates, start = [], 0
        for plan, theta, (every, rows, cols) in zip(plans, thetas, batches):
            outputs = np.zeros((scales, len(every), plan.n_quantities))  # (S, G + 2M, L)
            for group in plan.groups:
                data = results[start].data.meas
                probs = frequencies(data, data.num_bits)  # (G + 2M, 2**m)
                if self.mitigation.readout:
                    probs = self.mitigation.correct_readout(probs, group.qubits, shots,
                                                            self._calibration)
                outputs[group.scale][:, group.columns] = probs @ group.matrix
                start += 1
            estimates.append(shift_estimates(self.mitigation.extrapolate(outputs), len(theta),
                                             rows, cols, theta.shape[1]))
            self.stats.add(len(every), shots)
            self.stats.add(len(every) * (scales - 1), shots, mitigation=True)
        return estimates

    def _submit(self, pubs: list, shots: int, call: int, training: bool) -> list:
        """The results of ``pubs`` run as one SamplerV2 job (none for no PUBs)."""
        from qiskit.exceptions import QiskitError

        if not pubs:
            return []
        sampler = self._sampler(training=training)
        if self.local:
            sampler.options.simulator.seed_simulator = self.job_seed(call)
        try:
            results = list(sampler.run(pubs, shots=shots).result())
        except (QiskitError, OSError) as err:
            raise service_error(self.backend.device, err) from None
        self.jobs += 1
        return results

    def _calibration(self, qubits: list[int]) -> np.ndarray:
        """Readout calibration of physical ``qubits`` on the device, as one job of two
        circuits (all |0⟩; all flipped to |1⟩ by X) of ``backend.readout_cal_shots`` shots:
        (2, Q, 2), the frequency each qubit read 0 and 1."""
        from qiskit import QuantumCircuit

        circuits = []
        for prepared in (0, 1):
            qc = QuantumCircuit(self.target.num_qubits, len(qubits))
            for q in qubits if prepared else ():
                qc.x(q)
            qc.measure(qubits, range(len(qubits)))
            circuits.append((qc,))
        shots = self.backend.readout_cal_shots
        results = self._submit(circuits, shots, CALIBRATION_CALL, training=False)
        read = np.empty((2, len(qubits), 2))  # (prepared, Q, read value)
        for prepared, result in enumerate(results):
            bits = result.data.c.to_bool_array(order="little").reshape(-1, len(qubits))  # (S, Q)
            read[prepared, :, 1] = bits.mean(axis=0)
            read[prepared, :, 0] = 1 - read[prepared, :, 1]
        self.stats.add(2, shots, mitigation=True)
        return read


register_backend(BackendEntry(
    "runtime",
    build=lambda qfunc, n_qubits, backend, seed=0: RuntimeExecutor(qfunc, n_qubits, backend,
                                                                   seed=seed),
    validate=validate,
    state_bytes=state_bytes,
    summary="qepi's parameter-shift engine on IBM devices via Qiskit Runtime SamplerV2 "
            "(fake devices in local testing mode)",
    capabilities=RuntimeExecutor.capabilities,
    probed=False,
))

__all__ = ["IDEAL_DEVICE", "RuntimeExecutor", "SamplerTemplates", "check_backend",
           "fake_device_class", "frequencies", "measured_in_basis", "resolve_device",
           "service_error", "state_bytes", "validate"]
