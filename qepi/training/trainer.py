"""A plain training loop: Adam/AdamW, a warmup + cosine/linear schedule, gradient clipping,
a budget sized to the data, early stopping on dev with the best dev epoch's weights restored,
word dropout to ``<unk>``, metrics per step, atomic checkpoints, and exact resumption.

Model selection looks at dev only, never at test: an epoch is better when its dev accuracy
is higher, or equal with a lower dev loss (small dev sets tie often). ``fit``'s summary says
in words how the budget was set (``budget``) and which epoch was tested and why
(``selection``).

Callbacks plug extra behaviour (for example gradient-flow logging) into the loop without
editing it. A callback is any object with some of these methods; missing ones are skipped:

- ``on_train_start(trainer)``
- ``on_step(trainer, step, metrics)``: after the optimizer step. Parameters' ``.grad``
  still hold this step's (clipped) gradients. Keys added to ``metrics`` are logged.
- ``on_epoch_end(trainer, epoch, metrics)``: after the dev evaluation (``metrics`` holds
  ``train_loss``, ``train_acc`` and, with a dev split, ``dev_loss`` and ``dev_acc``).
- ``on_checkpoint(trainer, path)``: after ``checkpoint.pt`` is written (each epoch's end,
  after ``on_epoch_end``, and every ``train.checkpoint_every`` steps).
- ``on_train_end(trainer, summary)``

Example:
    >>> from qepi.config import Config, update
    >>> from qepi.data import load_dataset
    >>> from qepi.models import HybridTransformer
    >>> cfg = update(Config(), model={"embedding": "classical", "attention": "classical"},
    ...              data={"task": "parity", "seq_len": 4, "n_train": 16, "n_dev": 0, "n_test": 8},
    ...              train={"epochs": 1, "batch_size": 8})
    >>> ds = load_dataset(cfg.data)  # n_dev = 0: 20% of train is carved off as dev
    >>> trainer = Trainer(HybridTransformer(cfg, ds.spec), cfg, ds, progress=False)
    >>> summary = trainer.fit()
    >>> summary["steps"], sorted(summary["test"]), summary["best_epoch"]
    (2, ['acc', 'loss'], 1)
"""

from __future__ import annotations

import contextlib
import copy
import inspect
import math
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from qepi.config import Config
from qepi.data import UNK, Dataset, Split, batch_order
from qepi.errors import UserError
from qepi.layers import ForwardRecord
from qepi.training.checkpoint import model_record, rng_state, save_checkpoint, set_rng_state
from qepi.training.metrics import MetricsLog, summary_writer_class
from qepi.training.progress import progress_bar
from qepi.training.shot_frugal import SPSA, QuantumOptimizer, Rosalin, make_quantum_optimizer

# the optimiser of every weight; spsa and rosalin train circuit weights, adam the others
OPTIMIZERS = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW, "spsa": SPSA, "rosalin": Rosalin}
QUANTUM_OPTIMIZERS = ("spsa", "rosalin")
SCHEDULES = ("constant", "cosine", "linear")


class Callback:
    """Base class with every hook as a no-op; subclass and override what you need."""

    def on_train_start(self, trainer: Trainer) -> None: ...

    def on_step(self, trainer: Trainer, step: int, metrics: dict[str, Any]) -> None: ...

    def on_epoch_end(self, trainer: Trainer, epoch: int, metrics: dict[str, Any]) -> None: ...

    def on_checkpoint(self, trainer: Trainer, path: Path) -> None: ...

    def on_train_end(self, trainer: Trainer, summary: dict[str, Any]) -> None: ...


def make_optimizer(model: nn.Module, cfg: Config,
                   exclude: frozenset[int] = frozenset()) -> torch.optim.Optimizer:
    """Adam or AdamW over the trainable parameters, as ``cfg.train`` says (Adam for
    ``spsa`` / ``rosalin``, which train the circuit weights), except those whose ``id`` is in
    ``exclude``."""
    t = cfg.train
    if t.optimizer not in OPTIMIZERS:
        raise UserError(f"train.optimizer: unknown optimizer {t.optimizer!r} (known: {', '.join(OPTIMIZERS)})")
    if t.lr <= 0:
        raise UserError(f"train.lr: must be > 0, got {t.lr}")
    params = [p for p in model.parameters() if p.requires_grad and id(p) not in exclude]
    kind = OPTIMIZERS["adam"] if t.optimizer in QUANTUM_OPTIMIZERS else OPTIMIZERS[t.optimizer]
    return kind(params, lr=t.lr, weight_decay=t.weight_decay)


def make_optimizers(model: nn.Module, cfg: Config) -> tuple[torch.optim.Optimizer, QuantumOptimizer | None]:
    """The optimiser of the classical weights (all weights for adam/adamw) and, for
    ``train.optimizer`` spsa or rosalin, the one of the circuit weights (else None)."""
    t = cfg.train
    if t.optimizer not in QUANTUM_OPTIMIZERS:
        return make_optimizer(model, cfg), None
    layers = getattr(model, "quantum_layers", list)()
    quantum = make_quantum_optimizer(t.optimizer, layers, t, seed=cfg.run.seed)
    owned = frozenset(id(p) for group in quantum.param_groups for p in group["params"])
    return make_optimizer(model, cfg, exclude=owned), quantum


def lr_factor(step: int, total: int, schedule: str, warmup: int) -> float:
    """Learning-rate multiplier at ``step``: linear warmup, then constant, cosine or linear decay.

    >>> [round(lr_factor(s, 10, "cosine", 2), 3) for s in (0, 1, 2, 6, 10)]
    [0.5, 1.0, 1.0, 0.5, 0.0]
    """
    if step < warmup:
        return (step + 1) / warmup
    if schedule == "constant":
        return 1.0
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    if schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    return 1.0 - progress


def planned_epochs(train: Any, n_train: int) -> tuple[int, str]:
    """The epochs a run plans for ``n_train`` examples, and why, in words.

    ``train.epochs`` > 0 is taken as given; 0 picks at least 10 epochs and enough for
    ``train.min_steps`` optimisation steps, so small training sets get more passes.

    >>> from qepi.config import Train
    >>> planned_epochs(Train(epochs=0, min_steps=300, batch_size=16), 59)[0]  # 4 steps an epoch
    75
    >>> planned_epochs(Train(epochs=15, batch_size=16), 59)
    (15, 'train.epochs = 15 (60 steps of batch 16)')
    """
    steps_per_epoch = math.ceil(n_train / train.batch_size)
    if train.epochs > 0:
        return train.epochs, (f"train.epochs = {train.epochs} ({train.epochs * steps_per_epoch} steps "
                              f"of batch {train.batch_size})")
    epochs = max(10, math.ceil(train.min_steps / steps_per_epoch))
    return epochs, (f"{epochs} epochs of {steps_per_epoch} steps, sized from the training set by "
                    f"train.epochs = 0: at least 10 epochs and train.min_steps = {train.min_steps} "
                    f"steps for {n_train} examples at batch {train.batch_size}")


def predict(model: nn.Module, split: Split, batch_size: int = 256) -> torch.Tensor:
    """Logits (N, n_classes) of ``model`` on ``split``, in eval mode, without gradients."""
    was_training = model.training
    model.eval()
    out = []
    with torch.no_grad():
        for start in range(0, len(split), batch_size):
            batch = split.take(torch.arange(start, min(start + batch_size, len(split))))
            out.append(model(batch.x, batch.mask))  # (b, n_classes)
    model.train(was_training)
    return torch.cat(out)


def evaluate(model: nn.Module, split: Split, batch_size: int = 256) -> dict[str, float]:
    """Mean cross-entropy ``loss`` and accuracy ``acc`` of ``model`` on ``split``."""
    logits = predict(model, split, batch_size)
    return {"loss": F.cross_entropy(logits, split.y).item(),
            "acc": (logits.argmax(-1) == split.y).float().mean().item()}


class Trainer:
    """Trains ``model`` on ``dataset`` as ``cfg.train`` says.

    With ``run_dir`` it appends metrics to ``run_dir/metrics.jsonl`` and writes
    ``run_dir/checkpoint.pt`` every ``train.checkpoint_every`` steps and at each epoch's end.
    ``load_state`` restores such a checkpoint; ``fit`` then continues and ends with the
    weights an uninterrupted run would have (the data order depends on (seed, epoch) only).
    """

    def __init__(self, model: nn.Module, cfg: Config, dataset: Dataset,
                 run_dir: str | Path | None = None, callbacks=(), progress: bool = True):
        t = cfg.train
        if t.schedule not in SCHEDULES:
            raise UserError(f"train.schedule: unknown schedule {t.schedule!r} (known: {', '.join(SCHEDULES)})")
        if t.threads < 0:
            raise UserError(f"train.threads: must be >= 0, got {t.threads}")
        if t.batch_size < 1:
            raise UserError(f"train.batch_size: must be >= 1, got {t.batch_size}")
        for key in ("epochs", "min_steps", "patience"):
            if getattr(t, key) < 0:
                raise UserError(f"train.{key}: must be >= 0, got {getattr(t, key)}")
        if not 0.0 <= t.word_dropout < 1.0:
            raise UserError(f"train.word_dropout: must be >= 0 and < 1, got {t.word_dropout}")
        if t.word_dropout > 0 and UNK not in dataset.vocab:
            raise UserError(f"train.word_dropout: the {dataset.task} task has no {UNK} token to drop "
                            f"words to (text tasks have one); set it to 0")
        dataset.check_not_empty()
        if (t.patience > 0 or t.restore_best) and (dataset.dev is None or len(dataset.dev) == 0):
            why = f" ({dataset.dev_source})" if dataset.dev_source else ""
            raise UserError(f"train.patience / train.restore_best select on dev, but there is no dev "
                            f"split{why}: give data.dev, data.n_dev or data.dev_fraction > 0, or set "
                            f"train.patience = 0 and train.restore_best = false")
        if t.tensorboard:
            summary_writer_class()  # fail before training if TensorBoard is missing
        self.model, self.cfg, self.dataset = model, cfg, dataset
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.callbacks = list(callbacks)
        self.progress = progress
        self.seed = cfg.run.seed
        self.optimizer, self.quantum_optimizer = make_optimizers(model, cfg)
        # a model whose forward takes a ForwardRecord reports its auxiliary losses there
        self.records_losses = "record" in inspect.signature(model.forward).parameters
        self.steps_per_epoch = math.ceil(len(dataset.train) / t.batch_size)
        self.epochs, self.budget = planned_epochs(t, len(dataset.train))
        self.total_steps = self.epochs * self.steps_per_epoch
        if t.max_steps > 0:
            self.total_steps = min(self.total_steps, t.max_steps)
            if t.max_steps < self.epochs * self.steps_per_epoch:
                self.budget += f", cut to train.max_steps = {t.max_steps} steps"
        self.scheduler = self._make_scheduler()
        self.step = 0  # optimizer steps taken
        self.epoch = 0  # epochs finished
        self.batch_in_epoch = 0  # batches of the current epoch already taken
        self.best_dev_acc: float | None = None
        self.best_dev_loss: float | None = None
        self.best_epoch: int | None = None  # 1-based epoch of the best dev score
        self.best_state: dict[str, torch.Tensor] | None = None
        self.bad_epochs = 0
        self.stopped_early = False
        self.counts_offset = {"circuits": 0, "shots": 0}  # executions before a resume
        self.train_shots = 0  # shots spent by training steps (evaluations excluded), resumes included
        self.elapsed_offset = 0.0  # wall seconds before a resume
        self.metrics_lines: int | None = None  # metrics.jsonl lines at the checkpoint
        self._epoch_loss = self._epoch_correct = self._epoch_seen = 0.0
        self._start = time.perf_counter()
        self.log: MetricsLog | None = None

    def _make_scheduler(self, last_epoch: int = -1) -> torch.optim.lr_scheduler.LambdaLR:
        t = self.cfg.train
        return torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda s: lr_factor(s, self.total_steps, t.schedule, t.warmup_steps),
            last_epoch=last_epoch)

    def apply_train_settings(self) -> None:
        """Put this trainer's ``train.lr`` and ``train.weight_decay`` into the optimizer at the
        current schedule position, e.g. after :meth:`load_state` of a state trained with other
        settings (a PBT member continuing from a stronger member's checkpoint)."""
        t = self.cfg.train
        for group in self.optimizer.param_groups:
            group.update(initial_lr=t.lr, weight_decay=t.weight_decay)
        self.scheduler = self._make_scheduler(last_epoch=self.scheduler.last_epoch - 1)

    # ------------------------------------------------------------------ bookkeeping
    def execution_counts(self) -> dict[str, int]:
        """Circuit executions and shots spent so far (training and evaluation, resumes
        included); with ``backend.mitigation`` also ``mitigation_circuits`` and
        ``mitigation_shots``, the part of them error mitigation added."""
        keys = ("circuits", "shots")
        if self.cfg.backend.mitigation:
            keys += ("mitigation_circuits", "mitigation_shots")
        counts = {key: self.counts_offset.get(key, 0) for key in keys}
        for layer in getattr(self.model, "quantum_layers", list)():
            stats = layer.execution_stats()
            for key in keys:
                counts[key] += getattr(stats, key)
        return counts

    def elapsed(self) -> float:
        """Wall seconds spent training, resumes included."""
        return self.elapsed_offset + time.perf_counter() - self._start

    def state(self) -> dict[str, Any]:
        """Everything a checkpoint holds (tensors and plain data only)."""
        return {
            **model_record(self.model, self.cfg, self.seed),
            "optimizer": self.optimizer.state_dict(),
            "quantum_optimizer": (None if self.quantum_optimizer is None
                                  else self.quantum_optimizer.state_dict()),
            "scheduler": self.scheduler.state_dict(),
            "step": self.step, "epoch": self.epoch, "batch_in_epoch": self.batch_in_epoch,
            "epoch_sums": [self._epoch_loss, self._epoch_correct, self._epoch_seen],
            "best_dev_acc": self.best_dev_acc, "best_state": self.best_state,
            "best_dev_loss": self.best_dev_loss, "best_epoch": self.best_epoch,
            "bad_epochs": self.bad_epochs, "stopped_early": self.stopped_early,
            "counts": self.execution_counts(), "train_shots": self.train_shots,
            "elapsed": self.elapsed(),
            "metrics_lines": None if self.log is None else self.log.lines,
            "rng": rng_state(),
            "executors": [layer.executor.state_dict()  # e.g. how many shot draws were made
                          for layer in getattr(self.model, "quantum_layers", list)()],
        }

    def load_state(self, state: dict[str, Any]) -> None:
        """Continue from a checkpoint written by :meth:`save_checkpoint`."""
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.quantum_optimizer is not None:
            if state.get("quantum_optimizer") is None:
                raise UserError(f"the checkpoint has no {self.cfg.train.optimizer} state (it was "
                                f"trained with another train.optimizer)")
            self.quantum_optimizer.load_state_dict(state["quantum_optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.step, self.epoch, self.batch_in_epoch = state["step"], state["epoch"], state["batch_in_epoch"]
        self._epoch_loss, self._epoch_correct, self._epoch_seen = state["epoch_sums"]
        self.best_dev_acc, self.best_state = state["best_dev_acc"], state["best_state"]
        self.best_dev_loss, self.best_epoch = state.get("best_dev_loss"), state.get("best_epoch")
        self.bad_epochs, self.stopped_early = state["bad_epochs"], state["stopped_early"]
        self.counts_offset = dict(state["counts"])
        self.train_shots = state.get("train_shots", 0)
        self.elapsed_offset = state["elapsed"]
        self.metrics_lines = state["metrics_lines"]
        set_rng_state(state["rng"])
        layers = getattr(self.model, "quantum_layers", list)()
        for layer, executor_state in zip(layers, state.get("executors", [])):
            layer.executor.load_state_dict(executor_state)

    def save_checkpoint(self) -> None:
        """Write ``run_dir/checkpoint.pt`` atomically (nothing without a run directory)."""
        if self.run_dir is not None:
            save_checkpoint(self.run_dir / "checkpoint.pt", self.state())
            self._emit("on_checkpoint", self.run_dir / "checkpoint.pt")

    def _emit(self, hook: str, *args) -> None:
        for callback in self.callbacks:
            method = getattr(callback, hook, None)
            if method is not None:
                method(self, *args)

    def _log(self, record: dict[str, Any]) -> None:
        if self.log is not None:
            self.log.write(record)

    # ------------------------------------------------------------------ training
    def _loss(self, batch: Split) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(logits (B, n_classes), cross-entropy, cross-entropy + regularisation) on ``batch``."""
        if self.records_losses:  # e.g. the expression penalty of regulated layers
            record = ForwardRecord()
            logits = self.model(batch.x, batch.mask, record=record)  # (B, n_classes)
            loss = F.cross_entropy(logits, batch.y)
            return logits, loss, loss + record.regularization_loss()
        logits = self.model(batch.x, batch.mask)  # (B, n_classes)
        loss = F.cross_entropy(logits, batch.y)
        return logits, loss, loss

    def train_step(self, batch: Split) -> dict[str, Any]:
        """One optimizer step on ``batch``; returns the step's metrics.

        With spsa or rosalin the forward and backward pass run inside the circuit-weight
        optimiser's ``measuring`` block; it steps first (SPSA evaluates the loss at
        perturbed circuit weights, with the classical weights of this pass), then Adam.
        Gradient clipping applies to the gradients Adam uses.
        """
        self.model.train()
        shots_before = self.execution_counts()["shots"]
        self.optimizer.zero_grad(set_to_none=True)
        quantum = self.quantum_optimizer
        if quantum is not None:
            quantum.zero_grad(set_to_none=True)
        with quantum.measuring() if quantum is not None else contextlib.nullcontext():
            logits, loss, objective = self._loss(batch)
            objective.backward()
        clip = self.cfg.train.grad_clip
        params = [p for group in self.optimizer.param_groups for p in group["params"]
                  if p.grad is not None]
        grad_norm = torch.nn.utils.clip_grad_norm_(params, clip if clip > 0 else float("inf"))
        lr = self.scheduler.get_last_lr()[0]
        extra: dict[str, Any] = {}
        if quantum is not None:
            def closure() -> torch.Tensor:
                with torch.no_grad():
                    return self._loss(batch)[2]

            quantum.step(closure)
            extra = quantum.step_metrics()
        self.optimizer.step()
        self.scheduler.step()
        self.step += 1
        correct = (logits.argmax(-1) == batch.y).sum().item()
        self._epoch_loss += loss.item() * len(batch)
        self._epoch_correct += correct
        self._epoch_seen += len(batch)
        counts = self.execution_counts()
        step_shots = counts["shots"] - shots_before
        self.train_shots += step_shots
        return {"kind": "train", "step": self.step, "epoch": self.epoch, "loss": loss.item(),
                "acc": correct / len(batch), "lr": lr, "grad_norm": grad_norm.item(), **extra,
                **counts, "step_shots": step_shots, "train_shots": self.train_shots,
                "time": round(self.elapsed(), 4)}

    def _better(self, acc: float, loss: float) -> bool:
        """Is a dev result better than the best so far: higher accuracy, or equal with lower loss?"""
        if self.best_dev_acc is None:
            return True
        lower_loss = self.best_dev_loss is None or loss < self.best_dev_loss  # None: an older checkpoint
        return acc > self.best_dev_acc or (acc == self.best_dev_acc and lower_loss)

    def drop_words(self, batch: Split) -> Split:
        """``batch`` with each real token replaced by ``<unk>`` with probability
        ``train.word_dropout``, drawn from a generator fixed by (seed, step), so a resumed run
        drops the same words."""
        rate = self.cfg.train.word_dropout
        if rate == 0:
            return batch
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.step)
        drop = torch.rand(batch.x.shape, generator=generator) < rate  # (B, T)
        if batch.mask is not None:
            drop &= batch.mask
        unk = self.dataset.vocab.index(UNK)
        return Split(batch.x.masked_fill(drop, unk), batch.y, batch.mask)

    def selection(self) -> str:
        """Which weights the test sees and why, in words (for the summary and reports)."""
        t = self.cfg.train
        if self.best_epoch is None:
            return f"no dev split: trained {self.epoch} epochs and tested the last weights"
        best = (f"best dev acc {self.best_dev_acc:.3f} (loss {self.best_dev_loss:.3f}) at epoch "
                f"{self.best_epoch} of {self.epochs}")
        if self.stopped_early:
            ran = f"stopped after {t.patience} epochs without improvement (epoch {self.epoch})"
        elif self.epoch < self.epochs:
            ran = f"stopped at epoch {self.epoch} by train.max_steps = {t.max_steps}"
        else:
            ran = f"trained all {self.epoch} epochs"
        tested = (f"tested the epoch-{self.best_epoch} weights" if t.restore_best
                  else "tested the last epoch's weights (train.restore_best = false)")
        return f"{best}; {ran}; {tested}"

    def _end_epoch(self) -> dict[str, Any]:
        seen = max(self._epoch_seen, 1)
        metrics = {"train_loss": self._epoch_loss / seen, "train_acc": self._epoch_correct / seen}
        dev = self.dataset.dev
        if dev is not None and len(dev):
            result = evaluate(self.model, dev)
            metrics.update(dev_loss=result["loss"], dev_acc=result["acc"])
            self._log({"kind": "eval", "split": "dev", "step": self.step, "epoch": self.epoch, **result})
            if self._better(result["acc"], result["loss"]):
                self.best_dev_acc, self.best_dev_loss, self.bad_epochs = result["acc"], result["loss"], 0
                self.best_epoch = self.epoch + 1
                if self.cfg.train.restore_best:
                    self.best_state = copy.deepcopy(self.model.state_dict())
            else:
                self.bad_epochs += 1
                if 0 < self.cfg.train.patience <= self.bad_epochs:
                    self.stopped_early = True
        self._emit("on_epoch_end", self.epoch, metrics)
        self.epoch += 1
        self.batch_in_epoch = 0
        self._epoch_loss = self._epoch_correct = self._epoch_seen = 0.0
        return metrics

    def fit(self) -> dict[str, Any]:
        """Train until the epochs, ``max_steps`` or early stopping end it; evaluate on test.

        Sets torch's CPU thread count to ``train.threads`` (when > 0) first.
        Returns a summary: steps, epochs, planned_epochs, budget, stopped_early,
        best_dev_acc, best_epoch, selection, train/dev/test metrics, circuits, shots (all
        executions), train_shots (training steps only) and wall_time_s. With ``train.restore_best`` the final weights are those of the best dev
        epoch.
        """
        t = self.cfg.train
        if t.threads > 0:
            torch.set_num_threads(t.threads)  # intra-op threads cost more than they save here
        if self.run_dir is not None:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            tb = self.run_dir / "tensorboard" if t.tensorboard else None
            self.log = MetricsLog(self.run_dir / "metrics.jsonl", tb, keep_lines=self.metrics_lines)
        self._start = time.perf_counter()
        self._emit("on_train_start")
        train = self.dataset.train
        bar = progress_bar(self.total_steps, self.step, self.steps_per_epoch,  # a line per epoch in a log
                           self.cfg.run.name or self.dataset.task, enabled=self.progress)
        epoch_metrics: dict[str, Any] = {}
        try:
            while self.epoch < self.epochs and not self.stopped_early and self.step < self.total_steps:
                order = batch_order(len(train), self.seed, self.epoch)
                for b in range(self.batch_in_epoch, self.steps_per_epoch):
                    if self.step >= self.total_steps:
                        break
                    batch = self.drop_words(train.take(order[b * t.batch_size:(b + 1) * t.batch_size]))
                    metrics = self.train_step(batch)
                    self.batch_in_epoch = b + 1
                    self._emit("on_step", self.step, metrics)
                    self._log(metrics)
                    bar.set_postfix(loss=f"{self._epoch_loss / self._epoch_seen:.3f}",
                                    acc=f"{self._epoch_correct / self._epoch_seen:.3f}",
                                    refresh=False)  # drawn by update(), at most every 0.1 s
                    bar.update(1)
                    if t.checkpoint_every > 0 and self.step % t.checkpoint_every == 0:
                        self.save_checkpoint()
                epoch_metrics = self._end_epoch()
                self.save_checkpoint()
        except BaseException:
            if self.log is not None:
                self.log.close()
            raise
        finally:
            bar.close()
        if self.best_state is not None:
            self.model.load_state_dict(self.best_state)
        summary = {
            "steps": self.step, "epochs": self.epoch, "planned_epochs": self.epochs,
            "budget": self.budget, "stopped_early": self.stopped_early,
            "best_dev_acc": self.best_dev_acc, "best_epoch": self.best_epoch,
            "selection": self.selection(), "last_epoch": epoch_metrics,
            "test": evaluate(self.model, self.dataset.test),
        }
        self._log({"kind": "eval", "split": "test", "step": self.step, "epoch": self.epoch,
                   **summary["test"]})
        summary.update(self.execution_counts(), train_shots=self.train_shots,
                       wall_time_s=round(self.elapsed(), 3))
        self._emit("on_train_end", summary)
        if self.log is not None:
            self.log.close()
        return summary
