"""Small real-sized sentence sets: does the shipped configuration train on them?

Writes a generated two-topic set (70 training and 30 test sentences, written like real text
with capitals and punctuation; 15% of the test sentences hold a word never seen in
training) as text files, then runs ``qepi compare`` on them with the shipped
``configs/text.toml`` unchanged except for the file paths, and on ``configs/clauses.toml``
(word order decides; bag-of-words is at chance). Seeds default to what ``qepi compare``
picks for the data size (10 here). Prints both comparison tables.

    PYTHONPATH=$PWD .venv/bin/python benchmarks/small_text.py --out runs/small-text
    PYTHONPATH=$PWD .venv/bin/python benchmarks/small_text.py --only topics --set train.epochs=15
"""

from __future__ import annotations

import argparse
from pathlib import Path

from qepi.config import Data, apply_overrides, load
from qepi.data import topic_examples, write_text_file
from qepi.experiments.compare import compare
from qepi.experiments.report import format_table

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def write_topics(directory: Path, seed: int = 0) -> tuple[Path, Path]:
    """Write the 70 + 30 two-topic sentences generated with ``seed``; returns (train, test) paths."""
    directory.mkdir(parents=True, exist_ok=True)
    train, _, test = topic_examples(Data(task="topics", n_train=70, n_dev=0, n_test=30), seed)
    paths = directory / "topics_train.txt", directory / "topics_test.txt"
    write_text_file(paths[0], train)
    write_text_file(paths[1], test)
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/small-text", help="parent directory of the comparisons")
    parser.add_argument("--only", choices=("topics", "clauses"), help="run one of the two sets")
    parser.add_argument("--seeds", type=int, default=None, help="seeds (default: as qepi compare picks)")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="extra config overrides")
    args = parser.parse_args()
    out = Path(args.out)
    runs = {}
    if args.only in (None, "topics"):
        train, test = write_topics(out / "data")
        runs["topics"] = apply_overrides(load(CONFIGS / "text.toml"),
                                         [f'data.train="{train}"', f'data.test="{test}"', *args.set])
    if args.only in (None, "clauses"):
        runs["clauses"] = apply_overrides(load(CONFIGS / "clauses.toml"), args.set)
    for name, cfg in runs.items():
        comparison = compare(cfg, args.seeds, out / name, overwrite=True, progress=False)
        print(f"== {name} ==")
        print(format_table(comparison))
        print()


if __name__ == "__main__":
    main()
