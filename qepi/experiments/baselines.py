"""Strong classical references for ``qepi compare``, deliberately not parameter-matched.

The classical twin answers "is the circuit better than a classical layer of its size?";
these answer "is the quantum model any good on this data?". Each trains on the same split
as the quantum model for the same seed (dev for choices, never test):

- ``lr_unigram`` / ``lr_bigram`` (token tasks with words: text, clauses, topics): scikit-learn
  logistic regression on binary bags of n-grams, n = 1 and n = 1..2, its inverse
  regularisation C picked from :data:`C_GRID` on dev accuracy (ties by dev log-loss);
- ``lr_flat`` (every other task): the same on the flattened inputs (one-hot tokens per
  position, or the feature vectors);
- ``transformer``: a standard-width classical transformer (:class:`StandardTransformer`,
  d_model 32, 4 heads) trained by the same Trainer with the same budget, early stopping and
  best-dev restore as the quantum model.

Example:
    >>> from qepi.config import Config, update
    >>> from qepi.data import load_dataset
    >>> cfg = update(Config(), data={"task": "clauses", "n_train": 40, "n_dev": 0, "n_test": 20,
    ...                              "max_len": 4})
    >>> ds = load_dataset(cfg.data, seed=0)
    >>> reference_names(ds)
    ('lr_unigram', 'lr_bigram', 'transformer')
    >>> logistic_reference(ds, "lr_unigram")["test_acc"]  # bag-of-words: at chance by construction
    0.5
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from qepi.config import Config, update
from qepi.data import PAD, TEXT_TASKS, Dataset, Split, load_dataset
from qepi.experiments.rundir import SUMMARY, read_summary
from qepi.experiments.stats import mean_ci, paired_test
from qepi.experiments.tables import fmt, md_table, pm
from qepi.models import InputSpec, count_parameters
from qepi.training import Trainer, atomic_write_text, seed_everything

C_GRID = (0.01, 0.1, 1.0, 10.0, 100.0)  # inverse regularisation strengths tried on dev
TRANSFORMER_WIDTH = {"d_model": 32, "n_heads": 4, "d_ff": 64}  # a standard small transformer
LABELS = {
    "lr_unigram": "bag-of-words LR (n = 1)",
    "lr_bigram": "bag-of-n-grams LR (n = 1..2)",
    "lr_flat": "LR on flattened inputs",
    "transformer": "classical transformer (d_model 32)",
}
NOT_MATCHED = "not parameter-matched"


def reference_names(dataset: Dataset) -> tuple[str, ...]:
    """The references ``qepi compare`` runs for ``dataset``'s task."""
    if dataset.task in TEXT_TASKS:
        return ("lr_unigram", "lr_bigram", "transformer")
    return ("lr_flat", "transformer")


def sentences(split: Split, vocab: tuple[str, ...]) -> list[str]:
    """The words of every example (padding dropped), joined by spaces: the n-gram models' input.

    >>> sentences(Split(torch.tensor([[2, 3, 0]]), torch.tensor([1]), torch.tensor([[True, True, False]])),
    ...           ("<pad>", "<unk>", "good", "film"))
    ['good film']
    """
    real = split.mask if split.mask is not None else torch.ones_like(split.x, dtype=torch.bool)  # (N, T)
    rows = []
    for ids, keep_row in zip(split.x.tolist(), real.tolist()):
        rows.append(" ".join(vocab[i] for i, keep in zip(ids, keep_row) if keep and vocab[i] != PAD))
    return rows


def flat_features(split: Split, spec: InputSpec) -> np.ndarray:
    """(N, T * V) one-hot tokens per position, or (N, T * F) features, for ``lr_flat``."""
    if spec.vocab_size:
        return nn.functional.one_hot(split.x, spec.vocab_size).flatten(1).numpy().astype(np.float64)
    return split.x.flatten(1).numpy().astype(np.float64)


def _features(dataset: Dataset, name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Train, test and dev feature matrices (dev None without a dev split)."""
    splits = [dataset.train, dataset.test, dataset.dev]
    if name == "lr_flat":
        return tuple(None if s is None else flat_features(s, dataset.spec) for s in splits)
    from sklearn.feature_extraction.text import CountVectorizer

    n = {"lr_unigram": 1, "lr_bigram": 2}[name]
    vectorizer = CountVectorizer(tokenizer=str.split, token_pattern=None, lowercase=False,
                                 ngram_range=(1, n), binary=True)
    train = vectorizer.fit_transform(sentences(dataset.train, dataset.vocab))
    return (train, *(None if s is None else vectorizer.transform(sentences(s, dataset.vocab))
                     for s in splits[1:]))


def logistic_reference(dataset: Dataset, name: str) -> dict[str, Any]:
    """Fit logistic regression ``name`` (``lr_unigram``, ``lr_bigram`` or ``lr_flat``) on train,
    pick C on dev (C = 1 without a dev split), and score it on test."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import log_loss

    start = time.perf_counter()
    x_train, x_test, x_dev = _features(dataset, name)
    y_train, y_test = dataset.train.y.numpy(), dataset.test.y.numpy()
    labels = np.arange(dataset.spec.n_classes)
    fits = []
    for c in (C_GRID if x_dev is not None else (1.0,)):
        model = LogisticRegression(C=c, max_iter=5000).fit(x_train, y_train)
        if x_dev is None:
            fits.append(((0.0, 0.0), c, model))
            continue
        y_dev = dataset.dev.y.numpy()
        dev_acc = float((model.predict(x_dev) == y_dev).mean())
        dev_loss = log_loss(y_dev, model.predict_proba(x_dev), labels=model.classes_)
        fits.append(((dev_acc, -dev_loss), c, model))
    _, c, model = max(fits, key=lambda fit: fit[0])  # the first C of the best dev score
    proba = np.zeros((len(y_test), len(labels)))  # (N, n_classes); classes absent from train stay 0
    proba[:, model.classes_] = model.predict_proba(x_test)
    return {
        "test_acc": float((labels[proba.argmax(1)] == y_test).mean()),
        "test_loss": float(log_loss(y_test, np.clip(proba, 1e-12, 1.0), labels=labels)),
        "params": int(model.coef_.size + model.intercept_.size), "C": c,
        "n_features": int(x_train.shape[1]), "wall_time_s": round(time.perf_counter() - start, 3),
    }


class StandardTransformer(nn.Module):
    """A small classical transformer of standard width: embedding + learned positions ->
    ``model.n_blocks`` pre-norm ``nn.TransformerEncoderLayer`` blocks -> norm -> pooling ->
    classifier; dropout and pooling as ``cfg.model`` says.

    Example:
        >>> model = StandardTransformer(Config(), InputSpec(seq_len=5, n_classes=2, vocab_size=7))
        >>> model(torch.randint(0, 7, (3, 5))).shape  # (B, T) token ids -> (B, n_classes)
        torch.Size([3, 2])
    """

    def __init__(self, cfg: Config, inputs: InputSpec, d_model: int = 32, n_heads: int = 4, d_ff: int = 64):
        super().__init__()
        m = cfg.model
        if m.pooling not in ("mean", "first", "last"):
            raise ValueError(f"model.pooling: unknown pooling {m.pooling!r} (mean, first, last)")
        self.inputs, self.pooling = inputs, m.pooling
        self.embed = (nn.Embedding(inputs.vocab_size, d_model) if inputs.vocab_size
                      else nn.Linear(inputs.n_features, d_model))
        self.position = nn.Parameter(torch.zeros(inputs.seq_len, d_model))
        self.dropout = nn.Dropout(m.dropout)
        layer = nn.TransformerEncoderLayer(d_model, n_heads, d_ff, dropout=m.dropout, activation="gelu",
                                           batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, m.n_blocks, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, inputs.n_classes)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """x: token ids (B, T) or features (B, T, F); mask: (B, T) True for real tokens."""
        h = self.dropout(self.embed(x) + self.position[:x.shape[1]])  # (B, T, d_model)
        h = self.norm(self.encoder(h, src_key_padding_mask=None if mask is None else ~mask))
        if self.pooling == "first":
            return self.head(h[:, 0])
        if self.pooling == "last":
            return self.head(h[:, -1])
        weights = torch.ones(h.shape[:2]) if mask is None else mask.to(h.dtype)  # (B, T)
        pooled = (h * weights.unsqueeze(-1)).sum(1) / weights.sum(1, keepdim=True).clamp(min=1)
        return self.head(pooled)  # (B, n_classes)


def transformer_reference(cfg: Config, dataset: Dataset) -> dict[str, Any]:
    """Train a :class:`StandardTransformer` with ``cfg.train`` (same budget, early stopping
    and best-dev restore as the quantum model) and score it on test."""
    seed_everything(cfg.run.seed)
    model = StandardTransformer(cfg, dataset.spec, **TRANSFORMER_WIDTH)
    fit = Trainer(model, cfg, dataset, progress=False).fit()
    return {"test_acc": fit["test"]["acc"], "test_loss": fit["test"]["loss"],
            "params": count_parameters(model), "selection": fit["selection"], "budget": fit["budget"],
            "wall_time_s": fit["wall_time_s"], **TRANSFORMER_WIDTH}


def run_references(cfg: Config, out: str | Path) -> dict[str, dict[str, Any]]:
    """Run every reference for ``cfg`` (its ``run.seed`` fixes data and weights) and write each
    one's ``<out>/<name>-s<seed>/summary.json``; returns the summaries by name."""
    dataset = load_dataset(cfg.data, cfg.run.seed)
    dataset.check_not_empty()
    summaries = {}
    for name in reference_names(dataset):
        if name == "transformer":
            result = transformer_reference(update(cfg, run={"name": f"{name}-s{cfg.run.seed}"}), dataset)
        else:
            result = logistic_reference(dataset, name)
        summary = {"name": f"{name}-s{cfg.run.seed}", "reference": name,
                   "label": f"{LABELS[name]}, {NOT_MATCHED}", "kind": "reference",
                   "task": cfg.data.task, "seed": cfg.run.seed, "n_train": len(dataset.train),
                   "chance_acc": dataset.majority_rate(), "circuits": 0, "shots": 0, **result}
        run_dir = Path(out) / summary["name"]
        run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(run_dir / SUMMARY, json.dumps(summary, indent=2) + "\n")
        summaries[name] = summary
    return summaries


def summarize_references(out: str | Path, runs: dict[str, list[str]],
                         quantum_acc: list[float]) -> dict[str, dict[str, Any]]:
    """Mean ± 95% CI of every reference over seeds from its saved summaries, with a paired test
    of the quantum model's test accuracy (``quantum_acc``, same seed order) against it."""
    references = {}
    for name, names in runs.items():
        rows = [read_summary(Path(out) / run_name, ("label", "params", "test_acc", "test_loss",
                                                    "wall_time_s", "seed"))
                for run_name in names]
        acc = [r["test_acc"] for r in rows]
        references[name] = {
            "label": rows[0]["label"], "runs": list(names), "params": rows[0]["params"],
            "test_acc": mean_ci(acc), "test_loss": mean_ci([r["test_loss"] for r in rows]),
            "wall_time_s": sum(r["wall_time_s"] for r in rows) / len(rows),
            "per_seed": {"seed": [r["seed"] for r in rows], "test_acc": acc},
            "vs_quantum": paired_test(quantum_acc, acc),
        }
    return references


def reference_verdict(quantum: dict[str, float], references: dict[str, dict[str, Any]]) -> str:
    """One sentence on where the quantum model stands against the best reference.

    >>> refs = {"lr_bigram": {"label": "bag-of-n-grams LR (n = 1..2), not parameter-matched",
    ...                       "test_acc": {"mean": 0.9, "ci": 0.02},
    ...                       "vs_quantum": {"diff": -0.1, "p": 0.01, "n": 10, "note": ""}}}
    >>> reference_verdict({"mean": 0.8, "ci": 0.05}, refs)  # doctest: +NORMALIZE_WHITESPACE
    'Against the strongest classical reference (bag-of-n-grams LR (n = 1..2), not
    parameter-matched: 0.900), the quantum model is 0.100 lower (paired t-test p = 0.010, n = 10).'
    """
    name = max(references, key=lambda k: references[k]["test_acc"]["mean"])
    best = references[name]
    test = best["vs_quantum"]
    gap = quantum["mean"] - best["test_acc"]["mean"]
    where = "level with it" if abs(gap) < 1e-9 else f"{abs(gap):.3f} {'higher' if gap > 0 else 'lower'}"
    p = f"{test['note'] if math.isnan(test['p']) else 'paired t-test ' + _p_value(test)}, n = {test['n']}"
    return (f"Against the strongest classical reference ({best['label']}: "
            f"{best['test_acc']['mean']:.3f}), the quantum model is {where} ({p}).")


def _p_value(test: dict[str, Any]) -> str:
    """``p = 0.123``, ``p < 0.001``, or why there is no test."""
    if math.isnan(test["p"]):
        return test["note"]
    return "p < 0.001" if test["p"] < 0.001 else f"p = {fmt(test['p'])}"


def _paired_text(test: dict[str, Any]) -> str:
    diff = test["diff"] if abs(test["diff"]) >= 5e-4 else 0.0  # no "-0.000" for what rounds to zero
    return f"{diff:+.3f} ({_p_value(test)})"


def reference_rows(comparison: dict[str, Any]) -> list[list[str]]:
    """Table rows (label, test acc ± CI, test loss ± CI, params, per-seed min–max, wall s,
    quantum minus reference with its paired test) of the references in ``comparison``; empty
    without any."""
    rows = []
    for ref in comparison.get("references", {}).values():
        acc, loss = ref["test_acc"], ref["test_loss"]
        per_seed = ref["per_seed"]["test_acc"]
        rows.append([ref["label"], pm(acc), pm(loss), str(ref["params"]),
                     f"{min(per_seed):.3f}–{max(per_seed):.3f}", f"{ref['wall_time_s']:.1f}",
                     _paired_text(ref["vs_quantum"])])
    return rows


def reference_markdown(comparison: dict[str, Any]) -> str:
    """The report section on the classical references ("" without any)."""
    rows = reference_rows(comparison)
    if not rows:
        return ""
    header = ["reference", "test acc", "test loss", "params", "per-seed min–max", "wall s",
              "quantum − reference (paired t-test)"]
    lines = ["## Classical references (not parameter-matched)", "",
             "Strong classical models on the same splits and seeds, for scale: logistic regression "
             "(C chosen on dev) and a standard-width classical transformer trained with the same "
             "budget. They are not parameter-matched; the classical twin above is.", "",
             md_table([header, *rows])]
    return "\n".join(lines) + "\n"


def selection_markdown(comparison: dict[str, Any]) -> str:
    """The report section on how dev was made and which epoch each seed's quantum model was
    tested at ("" for comparisons saved before selection was recorded)."""
    selections = [s for s in comparison.get("selection", []) if s]
    if not selections:
        return ""
    lines = ["## Dev split and model selection", "",
             f"Dev split of seed {comparison['seeds'][0]} (each seed draws its own): "
             f"{comparison.get('dev') or 'none'}. Every choice (epoch, C) is made on dev, never on "
             f"test. Budget: {comparison.get('budget', '')}.", "",
             "Quantum model, per seed:", ""]
    lines += [f"- seed {seed}: {text}" for seed, text in zip(comparison["seeds"], selections)]
    return "\n".join(lines) + "\n"
