"""Handler of ``qepi sweep`` (a grid over seeds on Ray, or with ``--tune`` a Ray Tune search)."""

from __future__ import annotations

from qepi.commands.common import check_backend_settings, load_config, warn_inert
from qepi.errors import UserError


def sweep(*, config: str, overrides: list[str], grid: list[str], seeds: int, address: str | None,
          out: str | None, cpus_per_trial: int, retries: int, tune: str | None, samples: int,
          as_json: bool, quiet: bool) -> int:
    """``qepi sweep CONFIG --grid key=v1,v2 ... --seeds N [--address ADDR] [--tune asha|pbt]``."""
    from qepi.experiments.grid import parse_grid, plan_trials
    from qepi.experiments.report import format_sweep
    from qepi.experiments.rundir import REPORT, exclusive
    from qepi.experiments.sweep import default_sweep_dir
    from qepi.experiments.sweep import sweep as run_sweep
    from qepi.experiments.tables import to_json
    from qepi.experiments.tune import default_tune_dir, format_search, search

    cfg = load_config(config, overrides, warn=False)
    values = parse_grid(grid, cfg)
    trials = plan_trials(cfg, values, seeds=1)
    for trial in trials:  # a grid may vary the backend too
        check_backend_settings(trial.cfg.backend)
    warn_inert(trial.cfg for trial in trials)  # keys no grid point reads
    _warn_overridden(overrides, grid)
    progress = not (quiet or as_json)
    if tune:
        if seeds != 1:
            raise UserError("--seeds: a Tune search trains every sample at run.seed; sweep the "
                            "best config over seeds afterwards")
        out = out or default_tune_dir(cfg)
        with exclusive(out):
            found = search(cfg, values, tune, samples=samples, out=out, address=address,
                           cpus_per_trial=cpus_per_trial, retries=retries, progress=progress)
        print(to_json(found) if as_json else format_search(found))
        return 0
    out = out or default_sweep_dir(cfg)
    with exclusive(out):
        result = run_sweep(cfg, values, seeds, out, address=address, cpus_per_trial=cpus_per_trial,
                           retries=retries, progress=progress)
    if as_json:
        print(to_json(result.aggregate))
    else:
        print(format_sweep(result.aggregate))
        print(f"\nreport: {result.out / REPORT}")
    if result.failed:
        name, error = next(iter(result.failed.items()))
        raise UserError(f"{len(result.failed)} trial(s) failed (first: {name}: {error}); finished "
                        f"trials are kept: fix the cause and start the sweep again")
    return 0


def _warn_overridden(overrides: list[str], grid: list[str]) -> None:
    """One warning line per ``--set`` key that a ``--grid`` of the same key replaces."""
    import sys

    varied = {item.split("=", 1)[0].strip() for item in grid}
    for item in overrides:
        key = item.split("=", 1)[0].strip()
        if key in varied:
            print(f"qepi: warning: --set {key} has no effect: --grid {key} sets it in every trial",
                  file=sys.stderr)
