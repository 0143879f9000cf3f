"""Error mitigation's accuracy and cost: mean |error| of ⟨Z⟩ without, with readout, ZNE, both.

On one layer (angle encoding + one strongly entangling layer, ⟨Z⟩ on each of 4 wires),
``rows`` random inputs and weights (seeded), noise ``depolarizing_1q=0.01``,
``depolarizing_2q=0.05`` and ``readout_error=0.02``, on ``backend.name="exact"`` with
``shots`` shots (the aer backend gives the same draws), for each mitigation
(``none``, ``readout``, ``zne``, ``readout+zne``; ZNE with factors 1, 3, 5 and Richardson):

- ``value_error``: mean |estimate - exact| of the ⟨Z⟩ values, exact = ``default.qubit``;
- ``grad_error``: mean |∂ - exact ∂| of the gradient of Σ⟨Z⟩ over ``grad_rows`` rows with
  respect to the 12 weights (parameter shift of the mitigated values);
- ``circuits`` / ``shots`` of the value run (calibration and folded circuits included) and
  ``mitigation_circuits`` / ``mitigation_shots``, the part mitigation added;

each the mean over ``seeds`` sampler seeds (``value_error_sd``: their standard deviation).

Run ``python -m qepi.bench.mitigation [--shots 1000 10000] [--rows 64] [--seeds 3] [--json]``.

Example:
    >>> result = measure(shots=200, rows=2, grad_rows=1, seeds=1, mitigations=("none",))
    >>> sorted(result["results"][0])
    ['circuits', 'grad_error', 'mitigation', 'mitigation_circuits', 'mitigation_shots', 'shots', 'value_error', 'value_error_sd']
    >>> result["results"][0]["circuits"]
    2
"""

from __future__ import annotations

import argparse
import json
import statistics
from typing import Any

import torch

from qepi.backends import make_executor
from qepi.circuits import build_circuit
from qepi.config import Backend, Circuit

NOISE = {"noise": "depolarizing", "depolarizing_1q": 0.01, "depolarizing_2q": 0.05,
         "readout_error": 0.02}
MITIGATIONS = {"none": [], "readout": ["readout"], "zne": ["zne"], "readout+zne": ["readout", "zne"]}
N_QUBITS = 4


def _outputs(backend: Backend, x: torch.Tensor, w: torch.Tensor, seed: int, grad: bool):
    """Outputs (N, 1, 4), the weights' gradient of their sum (or None), and the stats."""
    spec = build_circuit(Circuit(n_qubits=N_QUBITS, n_layers=1))
    run = make_executor(spec.qfunc, N_QUBITS, backend, seed=seed)
    w = w.clone().requires_grad_(grad)
    out = run(x, {"weights": w})  # (N, 1, 4)
    if grad:
        out.sum().backward()
    return out.detach(), w.grad, run.stats


def measure(shots: int = 10000, rows: int = 64, grad_rows: int = 8, seeds: int = 3,
            mitigations=tuple(MITIGATIONS)) -> dict[str, Any]:
    """The errors and costs described in the module docs, for each of ``mitigations``."""
    g = torch.Generator().manual_seed(0)
    x = torch.rand(rows, 1, N_QUBITS, generator=g, dtype=torch.float64) * 3  # (N, 1, 4)
    w = torch.rand(1, 1, N_QUBITS, 3, generator=g, dtype=torch.float64) * 6  # (K, 1, 4, 3)
    exact, _, _ = _outputs(Backend(name="default.qubit"), x, w, 0, grad=False)
    _, exact_grad, _ = _outputs(Backend(name="default.qubit"), x[:grad_rows], w, 0, grad=True)
    results = []
    for label in mitigations:
        backend = Backend(name="exact", shots=shots, **NOISE, mitigation=MITIGATIONS[label])
        value_errors, grad_errors = [], []
        for seed in range(seeds):
            out, _, stats = _outputs(backend, x, w, seed, grad=False)
            value_errors.append(float((out - exact).abs().mean()))
            _, grad, _ = _outputs(backend, x[:grad_rows], w, seed, grad=True)
            grad_errors.append(float((grad - exact_grad).abs().mean()))
        results.append({
            "mitigation": label, "value_error": statistics.fmean(value_errors),
            "value_error_sd": statistics.stdev(value_errors) if seeds > 1 else 0.0,
            "grad_error": statistics.fmean(grad_errors), "circuits": stats.circuits,
            "shots": stats.shots, "mitigation_circuits": stats.mitigation_circuits,
            "mitigation_shots": stats.mitigation_shots})
    return {"qubits": N_QUBITS, "rows": rows, "grad_rows": grad_rows, "shots": shots,
            "seeds": seeds, **NOISE, "zne_scale_factors": Backend().zne_scale_factors,
            "zne_extrapolation": Backend().zne_extrapolation, "results": results}


def table(result: dict[str, Any]) -> str:
    """:func:`measure`'s result as a plain-text table."""
    lines = [f"{result['qubits']} qubits, {result['rows']} rows (gradients: {result['grad_rows']}), "
             f"{result['shots']} shots, {result['seeds']} seeds; depolarizing 1q "
             f"{result['depolarizing_1q']}, 2q {result['depolarizing_2q']}, readout "
             f"{result['readout_error']}",
             f"{'mitigation':<12} {'mean |err| <Z>':>16} {'mean |err| grad':>16} "
             f"{'circuits':>9} {'shots':>10} {'of them mitigation':>22}"]
    for r in result["results"]:
        lines.append(f"{r['mitigation']:<12} {r['value_error']:>9.4f} ± {r['value_error_sd']:.4f} "
                     f"{r['grad_error']:>16.4f} {r['circuits']:>9} {r['shots']:>10} "
                     f"{r['mitigation_circuits']:>9} / {r['mitigation_shots']:>10}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Measure for each ``--shots`` and print a table (or one JSON object each with ``--json``)."""
    parser = argparse.ArgumentParser(prog="python -m qepi.bench.mitigation", description=__doc__.split("\n")[0])
    parser.add_argument("--shots", type=int, nargs="+", default=[10000])
    parser.add_argument("--rows", type=int, default=64)
    parser.add_argument("--grad-rows", type=int, default=8)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if min(*args.shots, args.rows, args.grad_rows, args.seeds) < 1:
        parser.error("--shots, --rows, --grad-rows and --seeds must be >= 1")
    torch.set_num_threads(1)
    for shots in args.shots:
        result = measure(shots, args.rows, args.grad_rows, args.seeds)
        print(json.dumps(result) if args.json else table(result))
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
