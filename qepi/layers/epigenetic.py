"""Epigenetic regulation: context-gated circuit gates and reversible task marks.

The trained circuit angles θ are the *genome*: fixed, shared by every token. A small
classical *transcription-factor* network (Linear -> GELU -> Linear -> sigmoid) reads each
token's context and emits a *mark* m ∈ [0, 1] per gate (and, optionally, an angle offset
δ); the gate runs with the effective angle m·θ + δ. A mark of 0 silences its gate (a
rotation by 0 is the identity). The *expression ratio* is the fraction of a token's gates
whose mark exceeds ``threshold``; a penalty (mean mark - target)² steers it toward the
target set in ``config.Regulation``.

Hard marks (``hard=True``) make the gating exact: a gate is on (angle θ + δ) or off
(angle exactly 0, no gradient); the transcription factor still learns through the
expressed gates by the straight-through estimator. On the Aer engine the silenced angles
are then not shifted, so circuits per token fall with the expression ratio.

Per-token marks reach the circuit as circuit *inputs* (angles, marks, offsets): the
executor contract (weights per copy) and every backend work unchanged, in ONE batched
execution per forward.

Named *mark sets* are static logits per gate added to the transcription factor's logits:
learn one per task with the genome frozen (:func:`freeze_genome`), switch among them
(:func:`use_marks`) and erase them (:func:`erase_marks`) to get the base model back bit
for bit.

What a forward expressed, and its penalty, go into a :class:`~qepi.layers.record.ForwardRecord`
passed to it; :func:`regulation_report` reads them from there.

Example:
    >>> import torch
    >>> from qepi.config import Circuit, Regulation
    >>> from qepi.layers.record import ForwardRecord
    >>> core = EpigeneticMap(Circuit(n_qubits=2, n_layers=1), regulation=Regulation(hard=True))
    >>> record = ForwardRecord()
    >>> core(torch.rand(5, 1, 2), record=record).shape  # angles (N, K, n_qubits) -> <Z> (N, K, n_qubits)
    torch.Size([5, 1, 2])
    >>> record.expressed[core].shape, core.n_marks  # one mark per gate angle: 1 layer x 2 wires x 3
    (torch.Size([5, 1, 6]), 6)
    >>> 0.0 <= core.expression_ratio(record) <= 1.0
    True
"""

from __future__ import annotations

import math

import torch
from torch import nn

from qepi.circuits import build_circuit
from qepi.config import AttentionStyle, Backend, Circuit, Regulation
from qepi.errors import UserError
from qepi.layers.attention import AttentionLayer
from qepi.layers.embedding import EmbeddingLayer
from qepi.layers.experts import Routed
from qepi.layers.feature_maps import ClassicalMap
from qepi.layers.quantum_layer import QuantumLayer
from qepi.layers.record import ForwardRecord

OFFSET_SCALE = math.pi  # offsets δ = π·tanh(·) lie in (-π, π)
INITIAL_LOGIT = 3.0  # marks start near sigmoid(3) ≈ 0.95: every gate expressed


def epigenetic_qfunc(qfunc, n_qubits: int, shape: tuple[int, ...], offsets: bool):
    """Wrap ``qfunc(angles, weights)`` into ``circuit(inputs, weights)`` with
    inputs = [angles (n_qubits), marks (P), offsets (P, if ``offsets``)] per row, running
    ``qfunc(angles, weights * marks + offsets)`` (P = prod(shape)).

    >>> import pennylane as qml, torch
    >>> spec = build_circuit(Circuit(n_qubits=1, n_layers=1, ansatz="basic_entangler"))
    >>> wrapped = epigenetic_qfunc(spec.qfunc, 1, (1, 1, 1), offsets=False)
    >>> tape = qml.tape.make_qscript(wrapped)(torch.tensor([0.1, 0.5]), torch.full((1, 1, 1), 2.0))
    >>> [(op.name, round(float(op.parameters[0]), 3)) for op in tape.operations]
    [('RY', 0.1), ('RX', 1.0)]
    """
    n_marks = math.prod(shape)
    width = n_qubits + n_marks * (2 if offsets else 1)

    def circuit(inputs, weights):
        if inputs.shape[-1] != width:
            raise ValueError(f"epigenetic circuit: expected {width} inputs per row, got {inputs.shape[-1]}")
        lead = inputs.shape[:-1]
        marks = inputs[..., n_qubits:n_qubits + n_marks].reshape(*lead, *shape)  # (R, *shape)
        effective = weights * marks  # weights (*shape) or (R, *shape)
        if offsets:
            effective = effective + inputs[..., n_qubits + n_marks:].reshape(*lead, *shape)
        return qfunc(inputs[..., :n_qubits], effective)

    circuit.__name__ = f"epigenetic_{getattr(qfunc, '__name__', 'circuit')}"
    return circuit


class TranscriptionFactor(nn.Module):
    """Context (..., d_context) -> marks (..., K, P) in [0, 1] and optional offsets (..., K, P).

    ``forward`` returns ``(scale, offset, soft)``: ``scale`` multiplies the genome (the soft
    marks, or in hard mode 0/1 with straight-through gradients), ``offset`` is added to the
    angles (None without offsets) and ``soft`` are the sigmoid marks the penalty reads.
    An active named mark set adds its static logits before the sigmoid.
    """

    def __init__(self, d_context: int, copies: int, n_marks: int, regulation: Regulation):
        super().__init__()
        self.copies, self.n_marks = copies, n_marks
        self.offsets, self.hard, self.threshold = regulation.offsets, regulation.hard, regulation.threshold
        self.width = n_marks * (2 if self.offsets else 1)  # logits per copy
        self.net = nn.Sequential(
            nn.Linear(d_context, regulation.tf_hidden), nn.GELU(),
            nn.Linear(regulation.tf_hidden, copies * self.width),
        )
        last = self.net[-1]
        with torch.no_grad():
            last.weight.mul_(0.1)  # near-constant marks at the start ...
            bias = last.bias.view(copies, self.width)
            bias[:, :n_marks] = INITIAL_LOGIT  # ... with every gate expressed
            bias[:, n_marks:] = 0.0  # and no offsets
        self.mark_sets = nn.ParameterDict()  # name -> static logits (K, width)
        self.active: str | None = None

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # a checkpoint's mark sets are made here, so a rebuilt model loads them
        head = f"{prefix}mark_sets."
        for key, value in state_dict.items():
            name = key[len(head):] if key.startswith(head) else None
            if name and name not in self.mark_sets:
                self.mark_sets[name] = nn.Parameter(torch.zeros_like(value))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def forward(self, context: torch.Tensor):
        logits = self.net(context).unflatten(-1, (self.copies, self.width))  # (..., K, width)
        if self.active is not None:
            logits = logits + self.mark_sets[self.active]
        soft = torch.sigmoid(logits[..., :self.n_marks])  # (..., K, P)
        offset = OFFSET_SCALE * torch.tanh(logits[..., self.n_marks:]) if self.offsets else None
        if not self.hard:
            return soft, offset, soft
        on = (soft > self.threshold).to(soft.dtype)  # (..., K, P) 0/1, no gradient
        scale = on * (1.0 + soft - soft.detach())  # value 0/1; expressed gates pass d/dsoft
        return scale, None if offset is None else on * offset, soft


class Regulated(nn.Module):
    """Shared bookkeeping of the epigenetic cores: the transcription factor, the penalty and
    the expression ratio (read from a :class:`ForwardRecord` of a forward)."""

    def __init__(self, regulation: Regulation, d_context: int, copies: int, n_marks: int):
        super().__init__()
        self.regulation = regulation
        self.copies, self.n_marks = copies, n_marks
        self.tf = TranscriptionFactor(d_context, copies, n_marks, regulation)

    def _marks(self, angles: torch.Tensor, context: torch.Tensor | None, record: ForwardRecord | None):
        """(scale, offset, expressed) for the tokens of ``angles``, each (..., K, P); ``record``
        receives the penalty and the expressed gates."""
        context = angles.flatten(-2) if context is None else context  # (..., d_context)
        scale, offset, soft = self.tf(context.to(self.tf.net[0].weight.dtype))
        expressed = (soft > self.regulation.threshold).detach()  # (..., K, P) bool
        if record is not None:
            r = self.regulation
            # hard marks: the penalty reads the expression itself (0/1 values, soft gradients)
            marks = soft if not r.hard else expressed.to(soft.dtype) + soft - soft.detach()
            record.losses[self] = r.penalty * (marks.mean() - r.target) ** 2
            record.expressed[self] = expressed
        return scale, offset, expressed

    def _expressed(self, record: ForwardRecord) -> torch.Tensor:
        if self not in record.expressed:
            raise UserError(f"{type(self).__name__}: the record holds no forward of this layer")
        return record.expressed[self]

    def expression_ratio(self, record: ForwardRecord) -> float:
        """Fraction of gates expressed (mark > threshold), averaged over the record's tokens."""
        return self._expressed(record).float().mean().item()

    def expression_per_token(self, record: ForwardRecord) -> torch.Tensor:
        """Fraction of each token's gates expressed in the recorded forward: (...,)."""
        return self._expressed(record).float().mean(dim=(-2, -1))

    def report(self, record: ForwardRecord) -> dict[str, float]:
        """Expression ratio and expressed genome parameters per token (all copies)."""
        ratio = self.expression_ratio(record)
        return {"expression_ratio": ratio, "params_per_token": self.copies * self.n_marks,
                "expressed_params_per_token": ratio * self.copies * self.n_marks}


class EpigeneticMap(Regulated):
    """K copies of the configured circuit with context-gated gates (a drop-in for CircuitMap).

    ``forward(angles, context=None, record=None)``: angles (..., K, n_qubits) -> ⟨Z_i⟩
    (..., K, n_qubits). The transcription factor reads ``context`` (..., d_context), by
    default the token's angles of every copy (d_context = K·n_qubits). On the aer backend
    with hard marks the silenced gate angles are not shifted.
    """

    def __init__(self, circuit: Circuit, backend: Backend = Backend(), copies: int = 1,
                 regulation: Regulation = Regulation(), d_context: int | None = None, seed: int = 0):
        spec = build_circuit(circuit)
        shape = spec.weight_shapes["weights"]
        n = spec.n_qubits
        super().__init__(regulation, d_context or copies * n, copies, math.prod(shape))
        self.n_inputs = self.n_outputs = spec.n_outputs
        self.shape = shape
        self.layer = QuantumLayer(
            epigenetic_qfunc(spec.qfunc, n, shape, regulation.offsets), spec.weight_shapes,
            n_qubits=n, backend=backend, copies=copies, seed=seed,
        )
        self._angle_marks: torch.Tensor | None = None  # (P_traced, P) bool, for the aer engine

    def forward(self, angles: torch.Tensor, context: torch.Tensor | None = None,
                record: ForwardRecord | None = None) -> torch.Tensor:
        scale, offset, expressed = self._marks(angles, context, record)  # (..., K, P) each
        parts = [angles, scale.to(angles.dtype)] + ([] if offset is None else [offset.to(angles.dtype)])
        inputs = torch.cat(parts, dim=-1)  # (..., K, n_qubits + P [+ P])
        executor = self.layer.executor
        if self.regulation.hard and executor.capabilities.shift_mask and torch.is_grad_enabled():
            with executor.shifting(self.shift_mask(expressed, angles.requires_grad)):
                return self._run(inputs)
        return self._run(inputs)

    def _run(self, inputs: torch.Tensor) -> torch.Tensor:
        if self.copies == 1:
            return self.layer(inputs.squeeze(-2)).unsqueeze(-2)
        return self.layer(inputs)

    def angle_marks(self) -> torch.Tensor:
        """(P_traced, P) bool: which marks each angle of the engine's traced circuit depends on
        (found once by differentiating a probe trace)."""
        if self._angle_marks is None:
            n, p = self.layer.n_qubits, self.n_marks
            marks = torch.linspace(0.5, 1.5, p, dtype=torch.float64).view(1, 1, p).requires_grad_()
            extra = [torch.full((1, 1, p), 0.1, dtype=torch.float64)] if self.regulation.offsets else []
            inputs = torch.cat([torch.full((1, 1, n), 0.3, dtype=torch.float64), marks, *extra], -1)
            weights = {"weights": torch.linspace(0.7, 1.9, p, dtype=torch.float64).view(1, *self.shape)}
            angles = self.layer.executor.trace(inputs, weights).angle_matrix()[0]  # (P_traced,)
            rows = []
            for a in angles:
                (grad,) = torch.autograd.grad(a, marks, retain_graph=True, allow_unused=True)
                rows.append(torch.zeros(p, dtype=torch.bool) if grad is None else grad.flatten() != 0)
            self._angle_marks = torch.stack(rows)
        return self._angle_marks

    def shift_mask(self, expressed: torch.Tensor, angles_need_grad: bool = True) -> torch.Tensor:
        """Expressed marks (..., K, P) -> the engine's shift mask (N, K, P_traced): a gate angle
        is shifted when a mark it depends on is expressed; an angle that depends on no mark
        (the encoding) when ``angles_need_grad``."""
        depends = self.angle_marks().to(torch.float64)  # (P_traced, P)
        rows = expressed.reshape(-1, self.copies, self.n_marks).to(torch.float64)  # (N, K, P)
        return (rows @ depends.T > 0) | ((depends.sum(-1) == 0) & angles_need_grad)  # (N, K, P_traced)


class ClassicalEpigeneticMap(Regulated):
    """The classical twin of :class:`EpigeneticMap`: the same transcription factor gates the
    twin's own weights per token, W_eff = m ⊙ W (+ δ), with the same penalty.

    Example:
        >>> import torch
        >>> twin = ClassicalEpigeneticMap(Circuit(n_qubits=2), copies=3)
        >>> twin(torch.rand(4, 5, 3, 2)).shape, twin.n_marks  # one mark per weight (2x2)
        (torch.Size([4, 5, 3, 2]), 4)
    """

    def __init__(self, circuit: Circuit, copies: int = 1, regulation: Regulation = Regulation(),
                 d_context: int | None = None, match_params: bool = False):
        twin = ClassicalMap(circuit, copies=copies, match_params=match_params)
        n_marks = sum(w[0].numel() for w in twin.weights)
        super().__init__(regulation, d_context or copies * circuit.n_qubits, copies, n_marks)
        self.n_inputs = self.n_outputs = circuit.n_qubits
        self.twin = twin

    def forward(self, angles: torch.Tensor, context: torch.Tensor | None = None,
                record: ForwardRecord | None = None) -> torch.Tensor:
        scale, offset, _ = self._marks(angles, context, record)  # (..., K, P)
        x, start = angles, 0  # (..., K, n_qubits)
        for w, b in zip(self.twin.weights, self.twin.biases):
            size = w[0].numel()
            gate = scale[..., start:start + size].unflatten(-1, w.shape[1:])  # (..., K, in, out)
            w_eff = w * gate
            if offset is not None:
                w_eff = w_eff + offset[..., start:start + size].unflatten(-1, w.shape[1:])
            x = torch.tanh(torch.einsum("...ki,...kio->...ko", x, w_eff) + b)  # (..., K, out)
            start += size
        return x


class RegulatedEmbedding(EmbeddingLayer):
    """An embedding whose core is regulated: an :class:`EpigeneticMap` or
    :class:`~qepi.layers.experts.ExpertsMap`, or their classical twins (one copy).

    Example:
        >>> import torch
        >>> core = EpigeneticMap(Circuit(n_qubits=2, n_layers=1))
        >>> emb = RegulatedEmbedding(8, core, vocab_size=4)
        >>> emb(torch.randint(0, 4, (2, 5))).shape
        torch.Size([2, 5, 8])
    """

    def __init__(self, d_model: int, core: Regulated | Routed, vocab_size: int | None = None,
                 n_features: int | None = None):
        super().__init__(core, d_model, core.n_inputs, vocab_size, n_features)

    def run_core(self, angles: torch.Tensor, record: ForwardRecord | None) -> torch.Tensor:
        return self.core(angles, record=record)


class RegulatedAttention(AttentionLayer):
    """Multi-head attention whose Q, K, V core (3·n_heads copies, quantum or twin) is
    regulated. The transcription factor (or router) reads the token's angles of every copy,
    a linear function of the token's attention input.

    Example:
        >>> import torch
        >>> from qepi.layers.experts import ClassicalExpertsMap
        >>> core = ClassicalExpertsMap(Circuit(n_qubits=2, n_layers=1), copies=3 * 2)
        >>> attn = RegulatedAttention(8, 2, core)
        >>> attn(torch.rand(3, 5, 8)).shape
        torch.Size([3, 5, 8])
    """

    def __init__(self, d_model: int, n_heads: int, core: Regulated | Routed,
                 style: AttentionStyle = "qkv", causal: bool = False):
        super().__init__(core, d_model, n_heads, core.n_inputs, style, causal)

    def run_core(self, angles: torch.Tensor, record: ForwardRecord | None) -> torch.Tensor:
        return self.core(angles, record=record)


# ---------------------------------------------------------------- model-level helpers
def regulated_modules(model: nn.Module) -> dict[str, nn.Module]:
    """Every regulated core in ``model`` by its module name."""
    return {name: m for name, m in model.named_modules() if isinstance(m, (Regulated, Routed))}


def regulation_report(model: nn.Module, record: ForwardRecord) -> dict[str, dict[str, float]]:
    """Per regulated module, in the forward ``record`` holds: expression ratio (or k/E) and
    parameters per token, expressed (or active) and in all."""
    return {name: m.report(record) for name, m in regulated_modules(model).items()}


@torch.no_grad()
def regulation_on(model: nn.Module, x: torch.Tensor,
                  mask: torch.Tensor | None = None) -> dict[str, dict[str, float]]:
    """:func:`regulation_report` of one forward of ``model`` on ``x`` (eval mode, no
    gradients; the model's mode is restored); ``{}`` without a regulated module."""
    if not regulated_modules(model):
        return {}
    was_training = model.training
    model.eval()
    record = ForwardRecord()
    try:
        model(x, mask, record=record)
    finally:
        model.train(was_training)
    return regulation_report(model, record)


def _factors(model: nn.Module) -> list[TranscriptionFactor]:
    factors = [m for m in model.modules() if isinstance(m, TranscriptionFactor)]
    if not factors:
        raise UserError("the model has no epigenetic layer (set regulation.embedding or regulation.attention)")
    return factors


def mark_sets(model: nn.Module) -> list[str]:
    """Names of the mark sets the model holds."""
    return list(_factors(model)[0].mark_sets)


def add_mark_set(model: nn.Module, name: str) -> None:
    """Add an all-zero mark set ``name`` to every transcription factor and make it active."""
    for tf in _factors(model):
        if name in tf.mark_sets:
            raise UserError(f"mark set {name!r} exists already")
        ref = tf.net[-1].weight
        tf.mark_sets[name] = nn.Parameter(torch.zeros(tf.copies, tf.width, dtype=ref.dtype, device=ref.device))
    use_marks(model, name)


def use_marks(model: nn.Module, name: str | None) -> None:
    """Switch to mark set ``name`` (None: the base model)."""
    for tf in _factors(model):
        if name is not None and name not in tf.mark_sets:
            raise UserError(f"no mark set {name!r} (known: {', '.join(tf.mark_sets) or 'none'})")
        tf.active = name


def erase_marks(model: nn.Module, name: str) -> None:
    """Remove mark set ``name``; if it was active the model is the base model again."""
    for tf in _factors(model):
        if name not in tf.mark_sets:
            raise UserError(f"no mark set {name!r} to erase")
        del tf.mark_sets[name]
        if tf.active == name:
            tf.active = None


def freeze_genome(model: nn.Module, name: str) -> int:
    """Make mark set ``name`` the only trainable parameters; returns their count."""
    for p in model.parameters():
        p.requires_grad_(False)
    count = 0
    for tf in _factors(model):
        if name not in tf.mark_sets:
            raise UserError(f"no mark set {name!r} to train")
        tf.mark_sets[name].requires_grad_(True)
        count += tf.mark_sets[name].numel()
    return count


__all__ = [
    "ClassicalEpigeneticMap",
    "EpigeneticMap",
    "Regulated",
    "RegulatedAttention",
    "RegulatedEmbedding",
    "TranscriptionFactor",
    "add_mark_set",
    "epigenetic_qfunc",
    "erase_marks",
    "freeze_genome",
    "mark_sets",
    "regulated_modules",
    "regulation_on",
    "regulation_report",
    "use_marks",
]
