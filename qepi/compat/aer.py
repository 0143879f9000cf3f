"""Qiskit Aer's private fast run path, in one place, behind a version check.

qepi's aer engine evaluates thousands of small circuits per step. The public call,
``AerSimulator.run(circuits, parameter_binds=...)``, assembles every circuit again and builds
a qiskit ``Result`` each time. The private path assembles each template once
(``aer_compiler.assemble_circuits``), re-binds only the angles (Aer's runtime parameter
binding) and calls Aer's C++ controller directly (``AerSimulator._controller.execute`` with
``aer_compiler.generate_aer_config`` and ``backend_utils.LIBRARY_DIR``), reading its result
dict as it comes. Those names are private: they are used only when the installed qiskit-aer
lies in :data:`PRIVATE_VERSIONS` (the releases whose sources were checked; tested on
:data:`TESTED_VERSION`) and they import. Otherwise, or with ``path="public"``, the public
call runs and gives the same numbers.

A *template* is a ``QuantumCircuit`` whose angles are the Parameters ``params[j]`` (or affine
functions of one of them, e.g. after transpiling to a device) and which ends with
``save_probabilities(qubits, label="p")``.

Example:
    >>> import numpy as np
    >>> import qiskit_aer  # adds QuantumCircuit.save_probabilities
    >>> from qiskit import QuantumCircuit
    >>> from qiskit.circuit import Parameter
    >>> theta = Parameter("t0")
    >>> qc = QuantumCircuit(1)
    >>> _ = qc.ry(theta, 0)
    >>> _ = qc.save_probabilities([0], label="p")
    >>> values = np.array([[0.0], [np.pi]])  # (C, P): two circuits
    >>> for path in ("private", "public"):
    ...     runner = TemplateRunner([qc], [theta], {"method": "statevector"}, path=path)
    ...     print(runner.path, np.round(runner.probabilities(values)[0], 12).tolist())
    private [[1.0, 0.0], [0.0, 1.0]]
    public [[1.0, 0.0], [0.0, 1.0]]
"""

from __future__ import annotations

import functools
import gc
from collections.abc import Sequence

import numpy as np

from qepi.errors import UserError

PRIVATE_VERSIONS = ((0, 17), (0, 19))  # [lowest, first untested) releases of qiskit-aer
TESTED_VERSION = "0.18.2"
PATHS = ("auto", "private", "public")
_MIN_ROWS_PER_COPY = 64  # fewer rows per parallel experiment cost more than they gain


def installed_version() -> tuple[int, ...]:
    """qiskit-aer's version as a tuple of ints, e.g. ``(0, 18, 2)``."""
    import qiskit_aer

    parts = []
    for part in qiskit_aer.__version__.split(".")[:3]:
        digits = "".join(ch for ch in part if ch.isdigit())
        parts.append(int(digits) if digits else 0)
    return tuple(parts)


@functools.lru_cache(maxsize=1)
def private_path_available() -> bool:
    """True when the installed qiskit-aer is in :data:`PRIVATE_VERSIONS` and its private
    names import."""
    low, high = PRIVATE_VERSIONS
    if not low <= installed_version()[:2] < high:
        return False
    try:
        from qiskit_aer import AerSimulator
        from qiskit_aer.backends.aer_compiler import (  # noqa: F401
            assemble_circuits, generate_aer_config)
        from qiskit_aer.backends.backend_utils import LIBRARY_DIR  # noqa: F401
    except ImportError:
        return False
    return hasattr(AerSimulator(), "_controller")


def resolve_path(path: str) -> str:
    """``"private"`` or ``"public"`` for one of :data:`PATHS` (``"auto"``: private where
    :func:`private_path_available`)."""
    if path not in PATHS:
        raise UserError(f"aer path must be one of {', '.join(PATHS)}, got {path!r}")
    if path == "auto":
        return "private" if private_path_available() else "public"
    return path


def simulation_failure(detail: object) -> Exception:
    """The exception for a failed Aer run: a UserError for running out of memory (the user's
    circuit is too large), else a RuntimeError (qepi built something Aer rejects: a bug)."""
    line = str(detail).strip().splitlines()[0] if str(detail).strip() else "no detail"
    if "memory" in line.lower():
        return UserError(f"Aer ran out of memory ({line}); lower circuit.n_qubits or "
                         f"backend.chunk_rows")
    return RuntimeError(f"Aer failed on a circuit qepi built, a qepi bug: {line}")


def restrict_noise(noise: dict, qubits: set[int]) -> dict:
    """Aer's serialised noise model keeping only errors on ``qubits`` (readout errors dropped:
    qepi applies them to the probabilities as confusion matrices)."""
    errors = []
    for error in noise.get("errors", []):
        if error["type"] == "roerror":
            continue
        if "gate_qubits" in error:
            kept = [q for q in error["gate_qubits"] if set(q) <= qubits]
            if not kept:
                continue
            error = {**error, "gate_qubits": kept}
        errors.append(error)
    return {"errors": errors} if errors else {}


class TemplateRunner:
    """Evaluates templates on rows of angle values; ``path`` says which Aer call it uses.

    ``options`` are ``AerSimulator`` options (``method``, ``max_parallel_threads``, ...);
    ``noise_model`` is a qiskit-aer ``NoiseModel`` or None; on the private path each template
    is assembled ``copies`` times and a call's rows are split between the copies, which Aer
    runs as parallel experiments.
    """

    def __init__(self, templates: Sequence, params: Sequence, options: dict,
                 noise_model=None, copies: int = 1, path: str = "auto"):
        from qiskit.exceptions import QiskitError

        self.path = path = resolve_path(path)
        self.templates = list(templates)
        self.params = list(params)
        self.parameterized = [bool(qc.parameters) for qc in self.templates]
        try:
            if path == "private":
                self._private_setup(options, noise_model, copies)
            else:
                from qiskit_aer import AerSimulator

                self._sim = AerSimulator(**options, noise_model=noise_model)
        except QiskitError as err:  # AerError is a QiskitError
            raise simulation_failure(err) from None

    def probabilities(self, values: np.ndarray) -> list[np.ndarray]:
        """Saved probabilities (C, 2**m) of every template for angle rows ``values`` (C, P)."""
        run = self._run_private if self.path == "private" else self._run_public
        return run(np.asarray(values, dtype=np.float64))

    def shifted_probabilities(self, values: np.ndarray, n_unshifted: int, rows: np.ndarray,
                              cols: np.ndarray) -> list[np.ndarray]:
        """:meth:`probabilities` of parameter-shift rows laid out as
        :func:`qepi.backends.aer.shifted_rows` lists them (``n_unshifted`` rows, then the
        shifts of ``rows`` at ``cols`` up, then down); Aer simulates every row."""
        return self.probabilities(values)

    # -- public path ----------------------------------------------------------------
    def _run_public(self, values: np.ndarray) -> list[np.ndarray]:
        from qiskit.exceptions import QiskitError

        index = {p: j for j, p in enumerate(self.params)}
        binds = [{p: values[:, index[p]].tolist() for p in qc.parameters}
                 for qc in self.templates]
        try:
            result = self._sim.run(self.templates, parameter_binds=binds, shots=1).result()
        except QiskitError as err:  # AerError is a QiskitError
            raise simulation_failure(err) from None
        if not result.success:
            raise simulation_failure(result.status)
        out, start = [], 0
        for parameterized in self.parameterized:
            count = len(values) if parameterized else 1
            probs = np.stack([result.data(i)["p"] for i in range(start, start + count)])
            out.append(probs if parameterized else np.repeat(probs, len(values), axis=0))
            start += count
        return out

    # -- private path ---------------------------------------------------------------
    def _private_setup(self, options: dict, noise_model, copies: int) -> None:
        from qiskit.circuit import ParameterExpression
        from qiskit_aer import AerSimulator
        from qiskit_aer.backends.aer_compiler import assemble_circuits
        from qiskit_aer.backends.backend_utils import LIBRARY_DIR

        self._sim = AerSimulator(**options)
        self._library_dir = LIBRARY_DIR
        self.copies = copies
        used = {qc.find_bit(q).index for qc in self.templates for inst in qc.data
                for q in inst.qubits}
        noise = noise_model.to_dict(serializable=True) if noise_model is not None else {}
        self._noise = restrict_noise(noise, used)  # Aer's noise dict, only for used qubits
        assembled, idx_maps = assemble_circuits(
            [qc for qc in self.templates for _ in range(copies)])
        self._assembled = [assembled[t * copies:(t + 1) * copies]
                           for t in range(len(self.templates))]
        # per template: ((op, pos), j, a, b): Aer's op parameter at (op, pos) is a·θ_j + b
        self._bindings: list[list[tuple[tuple[int, int], int, float, float]]] = []
        for t, qc in enumerate(self.templates):
            bindings = []
            for i, inst in enumerate(qc.data):
                for pos, value in enumerate(inst.operation.params):
                    if isinstance(value, ParameterExpression) and value.parameters:
                        where = (idx_maps[t * copies][i], pos)
                        bindings.append((where, *self._affine(value)))
            self._bindings.append(bindings)

    def _affine(self, expr) -> tuple[int, float, float]:
        """``expr`` as a·θ_j + b (a transpiled angle); anything else is an error."""
        if len(expr.parameters) != 1:
            raise UserError(f"transpiled angle {expr} depends on several gate angles")
        (p,) = expr.parameters
        b = float(expr.bind({p: 0.0}))
        a = float(expr.bind({p: 1.0})) - b
        if abs(float(expr.bind({p: 2.0})) - (2 * a + b)) > 1e-9:
            raise UserError(f"transpiled angle {expr} is not affine in {p}")
        return self.params.index(p), a, b

    def _run_private(self, values: np.ndarray) -> list[np.ndarray]:
        # Aer's own run path minus its per-call work: the templates were assembled once, the
        # noise model serialised once, and the result dict is read directly instead of
        # becoming a qiskit Result (AerSimulator._execute_circuits and
        # AerBackend._execute_circuits_job do the same steps on every call).
        from qiskit_aer.backends.aer_compiler import generate_aer_config

        c = len(values)
        copies = max(1, min(self.copies, c // _MIN_ROWS_PER_COPY))
        parts = np.array_split(np.arange(c), copies)
        circuits, parameterizations = [], []
        for t, bindings in enumerate(self._bindings):
            if not bindings:  # a template without angles runs once
                circuits.append(self._assembled[t][0])
                parameterizations.append([])
                continue
            columns = [(where, a * values[:, j] + b) for where, j, a, b in bindings]
            for copy, rows in enumerate(parts):
                circuits.append(self._assembled[t][copy])
                parameterizations.append([[where, col[rows].tolist()] for where, col in columns])
        config = generate_aer_config(self.templates, self._sim.options, shots=1)
        config.library_dir = self._library_dir
        config.parameterizations = parameterizations
        gc_was_enabled = gc.isenabled()
        gc.disable()  # the result holds one small dict per circuit: no need to scan them
        try:
            output = self._sim._controller.execute(circuits, self._noise, config)
        finally:
            if gc_was_enabled:
                gc.enable()
        if not output.get("success", False):
            raise simulation_failure(output.get("status"))
        results = output["results"]  # binds of every copy of template 0, then of template 1...
        out, start = [], 0
        for bindings in self._bindings:
            if bindings:
                out.append(np.stack([res["data"]["p"] for res in results[start:start + c]]))
                start += c
            else:
                out.append(np.repeat(results[start]["data"]["p"][None], c, axis=0))
                start += 1
        return out


__all__ = ["PATHS", "PRIVATE_VERSIONS", "TESTED_VERSION", "TemplateRunner", "installed_version",
           "private_path_available", "resolve_path", "restrict_noise", "simulation_failure"]
