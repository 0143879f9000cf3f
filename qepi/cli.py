"""The ``qepi`` command line: parses arguments, calls the package, prints. No logic of its own.

Every command's handler lives in the module that owns the feature and is imported only
when that command runs, so ``qepi --help`` stays fast. A user error (bad config, missing
file, impossible option) prints one line naming the problem and exits with code 2;
``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from qepi.errors import UserError

EXIT_USER_ERROR = 2


def _handler(target: str):
    """'module:function' -> a handler that imports the module on first call."""

    def run(args: argparse.Namespace) -> int:
        module, function = target.split(":")
        return getattr(importlib.import_module(module), function)(args)

    return run


def _add_overrides(p: argparse.ArgumentParser) -> None:
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set train.lr=0.01 (repeatable)")


def _add_experiment_commands(sub) -> None:
    p = sub.add_parser(
        "train", help="train one model from a TOML config",
        description="Train one model; writes runs/<name>/ (config, metrics, checkpoints, "
                    "summary, report). Continue an interrupted run with --resume RUN_DIR.")
    p.add_argument("config", nargs="?", help="TOML config file (omit with --resume)")
    _add_overrides(p)
    p.add_argument("--out", help="run directory (default: <run.out_dir>/<run.name>)")
    p.add_argument("--from", dest="warm_start", metavar="RUN_DIR",
                   help="start from the final weights of an earlier run (staged training)")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue an interrupted run from its last checkpoint")
    p.add_argument("--overwrite", action="store_true", help="replace an earlier run in the run directory")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(run=_handler("qepi.experiments.commands:train"))

    p = sub.add_parser(
        "compare", help="quantum vs classical twin vs no-entanglement control over seeds",
        description="Train the configured quantum model, its classical twin and the "
                    "no-entanglement control on the same data, seeds and budget; print the "
                    "comparison and write report.md with plots.")
    p.add_argument("config", help="TOML config file")
    _add_overrides(p)
    p.add_argument("--seeds", type=int, default=3, help="number of seeds (default 3)")
    p.add_argument("--out", help="comparison directory (default: <run.out_dir>/compare-<name>)")
    p.add_argument("--overwrite", action="store_true", help="replace an earlier comparison in --out")
    p.add_argument("--json", action="store_true", help="print the comparison as JSON")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(run=_handler("qepi.experiments.commands:compare"))

    p = sub.add_parser("report", help="render the report of a run or comparison directory again")
    p.add_argument("run_dir", help="a directory written by `qepi train` or `qepi compare`")
    p.set_defaults(run=_handler("qepi.experiments.commands:report"))


def _config_show(args: argparse.Namespace) -> int:
    from qepi import config

    print(config.to_toml(config.apply_overrides(config.load(args.config), args.overrides)), end="")
    return 0


def _config_reference(args: argparse.Namespace) -> int:
    from qepi import config

    print(config.reference_markdown(), end="")
    return 0


def _add_config_commands(sub) -> None:
    commands = sub.add_parser("config", help="inspect configurations").add_subparsers(
        dest="config_command", required=True, metavar="{show,reference}")
    p = commands.add_parser("show", help="print the resolved config (every key, overrides applied)")
    p.add_argument("config", help="TOML config file")
    _add_overrides(p)
    p.set_defaults(run=_config_show)
    p = commands.add_parser("reference", help="print every config key with its default and meaning")
    p.set_defaults(run=_config_reference)


def _add_bench_commands(sub) -> None:
    bench = sub.add_parser("bench", help="side-by-side performance measurements").add_subparsers(
        dest="bench", required=True, metavar="{exact,aer}")

    p = bench.add_parser("exact", help="training-step time on exact simulators vs the classical twin")
    p.add_argument("--qubits", type=int, nargs="+", default=[4], help="qubit counts to measure")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--tokens", type=int, default=16)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(run=_handler("qepi.bench.exact:main"))

    p = bench.add_parser("aer", help="parameter-shift step on Aer vs raw Aer and PennyLane")
    p.add_argument("--qubits", type=int, default=6)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--tokens", type=int, default=32, help="circuit inputs (rows) per step")
    p.add_argument("--shots", type=int, default=0)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(run=_handler("qepi.bench.aer:main"))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="qepi", description="Hybrid quantum-classical transformers on simulators.")
    parser.add_argument("--debug", action="store_true", help="show tracebacks of errors")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_experiment_commands(sub)
    _add_config_commands(sub)
    _add_bench_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.run(args) or 0)
    except (UserError, ValueError, FileNotFoundError, NotImplementedError) as err:
        if args.debug:
            raise
        print(f"qepi: error: {err}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("qepi: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
