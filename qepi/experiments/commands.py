"""Handlers of ``qepi train``, ``qepi compare`` and ``qepi report`` (called by qepi.cli)."""

from __future__ import annotations

import argparse

from qepi.config import apply_overrides, load
from qepi.errors import UserError


def _config(args: argparse.Namespace):
    if args.config is None:
        raise UserError("give a CONFIG.toml (or --resume RUN_DIR)")
    return apply_overrides(load(args.config), args.overrides)


def _summary_line(s: dict) -> str:
    return (f"{s['name']}: test acc {s['test_acc']:.3f} (chance {s['chance_acc']:.3f}), "
            f"loss {s['test_loss']:.3f} | {s['params']} params | {s['circuits']} circuits, "
            f"{s['shots']} shots | {s['wall_time_s']:.1f} s")


def train(args: argparse.Namespace) -> int:
    """``qepi train CONFIG [--set k=v] [--out DIR] [--from RUN_DIR] | --resume RUN_DIR``."""
    from qepi.experiments.runner import resume, run

    if args.resume:
        if args.config or args.overrides or args.warm_start or args.out:
            raise UserError("--resume continues with the run's saved config: drop CONFIG, "
                            "--set, --from and --out")
        result = resume(args.resume, progress=not args.quiet)
    else:
        result = run(_config(args), args.out, warm_start=args.warm_start,
                     progress=not args.quiet, overwrite=args.overwrite)
    print(_summary_line(result.summary))
    print(f"run directory: {result.run_dir}")
    return 0


def compare(args: argparse.Namespace) -> int:
    """``qepi compare CONFIG --seeds N [--json]``: prints the table (or JSON) and writes the report."""
    from qepi.experiments.compare import compare as run_compare, default_compare_dir
    from qepi.experiments.report import format_table, to_json

    cfg = _config(args)
    out = args.out or default_compare_dir(cfg)
    comparison = run_compare(cfg, args.seeds, out, overwrite=args.overwrite,
                             progress=not (args.quiet or args.json), references=args.references)
    if args.json:
        print(to_json(comparison))
    else:
        print(format_table(comparison))
        print(f"\nreport: {out}/report.md")
    return 0


def report(args: argparse.Namespace) -> int:
    """``qepi report RUN_DIR``: render the report again from saved metrics."""
    from qepi.experiments.report import render

    print(f"report: {render(args.run_dir)}")
    return 0
