"""Handlers of ``qepi bench exact``, ``qepi bench aer``, ``qepi bench noisy`` and ``qepi bench shots``.

The benchmarks' own entry points (:func:`qepi.bench.exact.main`, :func:`qepi.bench.aer.main`)
read their options as attributes of one object; the handlers hand them exactly the options
the command line defines.
"""

from __future__ import annotations

from types import SimpleNamespace


def exact(*, qubits: list[int], batch: int, tokens: int, repeats: int, layers: int, loop_batch: int,
          strategies: bool, threads: int, cpu_time: bool, as_json: bool) -> int:
    """``qepi bench exact``: training-step time on exact simulators vs the classical twin."""
    from qepi.bench import exact as exact_bench

    return exact_bench.main(SimpleNamespace(
        qubits=qubits, batch=batch, tokens=tokens, repeats=repeats, layers=layers,
        loop_batch=loop_batch, strategies=strategies, threads=threads, cpu_time=cpu_time, json=as_json))


def aer(*, qubits: int, layers: int, tokens: int, shots: int, repeats: int, pennylane_tokens: int,
        expression: list[float] | None, threads: int, as_json: bool) -> int:
    """``qepi bench aer``: a parameter-shift step on Aer vs raw Aer and PennyLane."""
    from qepi.bench import aer as aer_bench

    return aer_bench.main(SimpleNamespace(
        qubits=qubits, layers=layers, tokens=tokens, shots=shots, repeats=repeats,
        pennylane_tokens=pennylane_tokens, expression=expression, threads=threads, json=as_json))


def noisy(*, qubits: list[int], layers: int, tokens: int, shots: int, repeats: int, threads: int,
          as_json: bool) -> int:
    """``qepi bench noisy``: a shot-based parameter-shift step on aer vs exact, with and
    without depolarizing noise."""
    from qepi.bench import noisy as noisy_bench

    return noisy_bench.main(SimpleNamespace(
        qubits=qubits, layers=layers, tokens=tokens, shots=shots, repeats=repeats,
        threads=threads, json=as_json))


def shots(*, config: str, overrides: list[str], shots: int, epochs: int, train: int, batch: int,
          seed: int, optimizers: list[str], threads: int, mitigation_shots: int,
          as_json: bool) -> int:
    """``qepi bench shots``: training shots Adam, SPSA and Rosalin spend to reach a dev
    accuracy, then mitigated against unmitigated estimate error."""
    from qepi.bench import shots as shots_bench

    return shots_bench.main(SimpleNamespace(
        config=config, overrides=overrides, shots=shots, epochs=epochs, train=train, batch=batch,
        seed=seed, optimizers=optimizers, threads=threads, mitigation_shots=mitigation_shots,
        json=as_json))
