"""Typed, frozen experiment configuration: TOML in, TOML out.

A :class:`Config` has one section per concern (``backend``, ``circuit``, ``model``,
``data``, ``train``, ``run``, ``regulation``). Every allowed value is declared here, in the
field's annotation: ``Literal[...]`` for a fixed set of names, ``Annotated[int, AtLeast(1)]``
for a range. Sections check them whenever they are built (from TOML, overrides, ``update``
or directly), so an unknown key, a wrong type or a value out of its set is an error that
names the key, the same everywhere. The one open choice, ``backend.name``, is a string
checked against the backend registry (:func:`qepi.backends.backend_names`) by whoever uses
it: the commands when they load a config, a quantum layer when it is built.

Example:
    >>> cfg = Config()
    >>> cfg = apply_overrides(cfg, ["train.lr=0.05", "circuit.n_qubits=3"])
    >>> cfg.train.lr, cfg.circuit.n_qubits
    (0.05, 3)
    >>> from_toml(to_toml(cfg)) == cfg
    True
    >>> apply_overrides(cfg, ["train.lr=fast"])
    Traceback (most recent call last):
    ...
    qepi.config.ConfigError: train.lr: expected a number, got 'fast'
    >>> apply_overrides(cfg, ["model.pooling=max"])
    Traceback (most recent call last):
    ...
    qepi.config.ConfigError: model.pooling: unknown value 'max' (known: 'mean', 'first', 'last')
"""

from __future__ import annotations

import dataclasses
import tomllib
import typing
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Annotated, Any, Literal

import tomli_w

from qepi.errors import UserError


CLAUSE_NOUNS = ("dog", "cat", "bird", "horse", "fox", "mouse", "lion", "bear", "wolf", "goat",
                "duck", "frog")
CLAUSE_VERBS = ("sees", "chases", "likes", "follows", "bites", "helps", "finds", "watches")


class ConfigError(UserError):
    """A configuration problem; the message names the offending key."""


@dataclass(frozen=True)
class AtLeast:
    """A lower bound on a number, as ``Annotated`` metadata: ``Annotated[int, AtLeast(1)]``."""

    low: float

    def check(self, key: str, value: float) -> None:
        if value < self.low:
            raise ConfigError(f"{key}: must be >= {self.low}, got {value}")


@dataclass(frozen=True)
class Between:
    """An interval, as ``Annotated`` metadata; ``open`` excludes both ends."""

    low: float
    high: float
    open: bool = False

    def check(self, key: str, value: float) -> None:
        inside = self.low < value < self.high if self.open else self.low <= value <= self.high
        if not inside:
            ends = "()" if self.open else "[]"
            raise ConfigError(f"{key}: must lie in {ends[0]}{self.low}, {self.high}{ends[1]}, got {value}")


PositiveInt = Annotated[int, AtLeast(1)]
Fraction = Annotated[float, Between(0.0, 1.0)]
OpenFraction = Annotated[float, Between(0.0, 1.0, open=True)]
Dtype = Literal["float64", "float32"]
Strategy = Literal["auto", "fold", "gates"]
OptimizationLevel = Annotated[int, Between(0, 3)]
Encoding = Literal["angle", "iqp"]  # the names of qepi.circuits.ENCODINGS
AnsatzName = Literal["strongly_entangling", "hardware_efficient", "basic_entangler", "sim14"]  # qepi.circuits.ANSATZE
LayerKind = Literal["quantum", "classical"]
AttentionStyle = Literal["qkv", "gaussian"]
Pooling = Literal["mean", "first", "last"]
Task = Literal["motif", "digits", "parity", "text", "clauses", "topics"]  # the loaders of qepi.data.TASKS
Tokens = Literal["rows", "patches"]
Punctuation = Literal["split", "strip", "keep"]
Optimizer = Literal["adam", "adamw", "spsa", "rosalin"]
Schedule = Literal["constant", "cosine", "linear"]
RegulationKind = Literal["", "epigenetic", "experts"]
MitigationKind = Literal["readout", "zne"]  # the mitigations of qepi.backends.mitigation
Extrapolation = Literal["richardson", "linear"]


class _Section:
    """A config section checks its values when it is built (directly, too)."""

    def __post_init__(self) -> None:
        section = _SECTION_NAMES[type(self)]
        hints = typing.get_type_hints(type(self), include_extras=True)
        for f in fields(self):
            _check_value(f"{section}.{f.name}", hints[f.name], getattr(self, f.name))


@dataclass(frozen=True)
class Backend(_Section):
    """Where circuits run and how their expectation values are estimated."""

    name: str = "default.qubit"  # default.qubit | lightning.qubit | exact | aer | runtime
    shots: int = 0  # 0 = exact expectation values; > 0 = sampled estimate (aer, exact; runtime needs it)
    noise: str = ""  # "" | "depolarizing" | a fake IBM backend, e.g. "FakeManilaV2" (aer, exact)
    depolarizing_1q: float = 0.0  # depolarizing probability after each 1-qubit gate
    depolarizing_2q: float = 0.0  # depolarizing probability after each 2-qubit gate
    readout_error: float = 0.0  # probability of flipping each measured bit
    dtype: Dtype = "float64"  # float64 | float32 (exact backend)
    threads: int = 0  # simulator threads (aer; runtime in local testing mode); 0 = all cores
    chunk_rows: int = 20000  # max circuits per Aer call (bounds memory)
    strategy: Strategy = "auto"  # exact backend: auto | fold (dense weight blocks) | gates (gate by gate)
    mitigation: list[MitigationKind] = field(default_factory=list)  # aer / exact with shots and noise: "readout" (M3 on sampled counts), "zne" (gate folding + extrapolation)
    zne_scale_factors: list[float] = field(default_factory=lambda: [1.0, 3.0, 5.0])  # zne: noise scale factors (>= 1) the circuits are folded to
    zne_extrapolation: Extrapolation = "richardson"  # zne: richardson | linear (mitiq's factories)
    readout_cal_shots: PositiveInt = 10000  # readout: shots of each of the two calibration circuits (all |0>, all |1>)
    device: str = ""  # runtime: a fake IBM backend ("FakeManilaV2", local testing), "aer_simulator" or a device of the saved account ("ibm_torino")
    optimization_level: OptimizationLevel = 1  # runtime: preset transpiler level 0-3, once per circuit structure


@dataclass(frozen=True)
class Circuit(_Section):
    """The variational circuit used by every quantum layer."""

    n_qubits: PositiveInt = 4  # wires per circuit; also the width of the angle vector
    encoding: Encoding = "angle"  # angle | iqp
    ansatz: AnsatzName = "strongly_entangling"  # see qepi.circuits.ANSATZE
    n_layers: PositiveInt = 2  # ansatz layers
    reupload: bool = False  # re-encode the inputs before every ansatz layer
    entangling: bool = True  # False removes every entangling gate (the product-state control)


@dataclass(frozen=True)
class Model(_Section):
    """HybridTransformer shape; ``embedding``/``attention`` pick quantum or classical layers."""

    embedding: LayerKind = "quantum"  # quantum | classical
    attention: LayerKind = "quantum"  # quantum | classical
    attention_style: AttentionStyle = "qkv"  # qkv (circuit Q, K, V + softmax) | gaussian (QSANN)
    d_model: int = 8  # width of the token vectors
    n_heads: int = 2  # attention heads
    n_blocks: int = 1  # transformer blocks
    d_ff: int = 16  # feed-forward hidden width
    dropout: float = 0.0  # dropout after embeddings and in feed-forward layers
    pooling: Pooling = "mean"  # mean | first | last
    causal: bool = False  # causal attention mask
    match_params: bool = False  # widen classical layers to the quantum layer's parameter count


@dataclass(frozen=True)
class Data(_Section):
    """Dataset choice and generation knobs (all datasets are offline and seeded)."""

    task: Task = "motif"  # motif | digits | parity | text | clauses | topics
    n_train: int = 256  # training examples (generated tasks)
    n_dev: int = 64  # dev examples for early stopping (generated tasks); 0 = carve dev_fraction of train
    dev_fraction: Fraction = 0.2  # share of train held out as dev (stratified by class) when no dev split is given; 0 = no dev
    n_test: int = 128  # held-out test examples (generated tasks)
    seq_len: int = 12  # motif / parity sequence length
    motif_len: int = 4  # motif: binding-site length
    pwm_entropy: float = 0.5  # motif: bits per PWM column (0 = fixed site, 2 = random)
    classes: list[int] = field(default_factory=lambda: [0, 1])  # digits: classes to keep
    tokens: Tokens = "rows"  # digits: rows | patches
    train: str = ""  # text: path of the training file
    dev: str = ""  # text: optional path of the dev file
    test: str = ""  # text: path of the test file
    max_len: int = 32  # text: sentences are cut or padded to this many tokens
    lowercase: bool = True  # text tasks (text, clauses, topics): lower-case every word
    punctuation: Punctuation = "split"  # text tasks: split (marks become tokens of their own) | strip (marks dropped) | keep (tokens as written)
    nouns: list[str] = field(default_factory=lambda: list(CLAUSE_NOUNS))  # clauses: the nouns phrases are made of
    verbs: list[str] = field(default_factory=lambda: list(CLAUSE_VERBS))  # clauses: the transitive verbs phrases are made of
    unseen_fraction: Fraction = 0.15  # clauses / topics: share of test examples holding a word never seen in training


@dataclass(frozen=True)
class Train(_Section):
    """Optimisation settings."""

    optimizer: Optimizer = "adam"  # adam | adamw | spsa | rosalin (spsa and rosalin train the circuit weights; the classical weights keep adam)
    lr: float = 0.02  # peak learning rate
    weight_decay: float = 0.0  # decoupled for adamw, L2 for adam
    epochs: int = 0  # passes over the training set; 0 = from the training-set size (at least 10, and enough for min_steps)
    min_steps: int = 400  # with epochs = 0: the fewest optimisation steps a run plans (small data sets get more epochs)
    batch_size: int = 32  # examples per optimisation step
    max_steps: int = 0  # 0 = no limit beyond epochs
    schedule: Schedule = "cosine"  # constant | cosine | linear
    warmup_steps: int = 0  # linear warm-up steps before the schedule
    grad_clip: float = 1.0  # max gradient norm; 0 = off
    patience: int = 30  # stop after this many epochs without a better dev score (accuracy, ties by loss); 0 = off
    restore_best: bool = True  # test the weights of the best dev epoch; false = the last epoch's
    word_dropout: Fraction = 0.0  # text tasks: share of training words replaced by `<unk>` at each step (teaches unknown words)
    checkpoint_every: int = 0  # steps between checkpoints; 0 = end of each epoch only
    tensorboard: bool = False  # also log to TensorBoard (needs the tensorboard extra)
    diagnostics: bool = False  # log per-layer gradient flow (warns when it vanishes) and entropies
    threads: int = 1  # torch CPU threads while training; 0 = torch's default (small models are fastest on 1)
    spsa_lr: float = 0.2  # spsa: gain a, step a_k = a / (k + 1 + spsa_stability) ** spsa_alpha
    spsa_perturbation: float = 0.15  # spsa: perturbation c, c_k = c / (k + 1) ** spsa_gamma
    spsa_alpha: float = 0.602  # spsa: decay exponent of a_k (Spall's standard value)
    spsa_gamma: float = 0.101  # spsa: decay exponent of c_k (Spall's standard value)
    spsa_stability: float = 0.0  # spsa: stability constant A (Spall suggests ~10% of the steps)
    spsa_samples: PositiveInt = 1  # spsa: random perturbations averaged per step (2 loss evaluations each)
    rosalin_lr: float = 0.1  # rosalin: gradient-descent step size (rosalin_lr * rosalin_lipschitz < 2)
    rosalin_lipschitz: float = 1.0  # rosalin: Lipschitz bound L of the loss gradient
    rosalin_mu: float = 0.99  # rosalin: decay of the running gradient mean and variance
    rosalin_b: float = 1e-6  # rosalin: bias b regularising the allocation while the means are young
    rosalin_min_shots: Annotated[int, AtLeast(2)] = 10  # rosalin: fewest shots of a shifted circuit (every weight's count at the first step)


@dataclass(frozen=True)
class Run(_Section):
    """Run bookkeeping."""

    name: str = ""  # run directory name under out_dir; "" = derived from the config
    out_dir: str = "runs"  # parent directory of run directories
    seed: int = 0  # seeds torch, numpy, data generation and the simulator


@dataclass(frozen=True)
class Regulation(_Section):
    """Epigenetic regulation of the circuit layers; a classical twin gets the same on its weights."""

    embedding: RegulationKind = ""  # "" (none) | epigenetic (marked gates) | experts (routed circuits)
    attention: RegulationKind = ""  # "" (none) | epigenetic | experts, for the attention's Q, K, V circuits
    target: Fraction = 0.2  # expression ratio (fraction of gates on per token) the penalty steers to
    penalty: float = 0.1  # weight of (mean mark - target)^2 in the loss
    hard: bool = False  # threshold the marks (straight-through); silenced gates are not shifted
    threshold: OpenFraction = 0.5  # a gate is expressed when its mark exceeds this
    offsets: bool = False  # the transcription-factor network also emits an angle offset per gate
    tf_hidden: PositiveInt = 16  # hidden width of the transcription-factor network
    n_experts: PositiveInt = 4  # experts: circuits per layer copy
    top_k: PositiveInt = 1  # experts: experts each token is routed to
    balance: float = 0.01  # experts: weight of the load-balancing loss


@dataclass(frozen=True)
class Config:
    """The whole experiment configuration."""

    backend: Backend = field(default_factory=Backend)
    circuit: Circuit = field(default_factory=Circuit)
    model: Model = field(default_factory=Model)
    data: Data = field(default_factory=Data)
    train: Train = field(default_factory=Train)
    run: Run = field(default_factory=Run)
    regulation: Regulation = field(default_factory=Regulation)


_SECTION_NAMES = {typing.get_type_hints(Config)[f.name]: f.name for f in fields(Config)}


def _check_value(key: str, annotation: Any, value: Any) -> Any:
    """Return ``value`` coerced to ``annotation`` or raise a ConfigError naming ``key``."""
    origin = typing.get_origin(annotation)
    if origin is Annotated:
        base, *constraints = typing.get_args(annotation)
        value = _check_value(key, base, value)
        for constraint in constraints:
            constraint.check(key, value)
        return value
    if origin is Literal:
        choices = typing.get_args(annotation)
        if not isinstance(value, str) or value not in choices:
            raise ConfigError(f"{key}: unknown value {value!r} (known: {', '.join(map(repr, choices))})")
        return value
    if annotation is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true or false, got {value!r}")
        return value
    if annotation is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        return value
    if annotation is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        return float(value)
    if annotation is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected a string, got {value!r}")
        return value
    if origin is list:
        (item,) = typing.get_args(annotation)
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        return [_check_value(f"{key}[{i}]", item, v) for i, v in enumerate(value)]
    raise ConfigError(f"{key}: unsupported annotation {annotation}")  # pragma: no cover


def _section_from_dict(cls: type, data: dict[str, Any], prefix: str) -> Any:
    hints = typing.get_type_hints(cls, include_extras=True)
    known = {f.name for f in fields(cls)}
    for key in data:
        if key not in known:
            raise ConfigError(f"{prefix}{key}: unknown key (known: {', '.join(sorted(known))})")
    values = {}
    for name, value in data.items():
        annotation = hints[name]
        if dataclasses.is_dataclass(annotation):
            if not isinstance(value, dict):
                raise ConfigError(f"{prefix}{name}: expected a table, got {value!r}")
            values[name] = _section_from_dict(annotation, value, f"{prefix}{name}.")
        else:
            values[name] = _check_value(f"{prefix}{name}", annotation, value)
    return cls(**values)


def from_dict(data: dict[str, Any]) -> Config:
    """Build a Config from nested dicts, e.g. the result of ``tomllib.load``."""
    return _section_from_dict(Config, data, "")


def to_dict(cfg: Config) -> dict[str, Any]:
    """Nested plain dicts of every value (the resolved configuration)."""
    return dataclasses.asdict(cfg)


def from_toml(text: str) -> Config:
    """Parse TOML text into a Config."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"malformed TOML: {err}") from None
    return from_dict(data)


def to_toml(cfg: Config) -> str:
    """The resolved configuration as TOML text (every key, defaults included)."""
    return tomli_w.dumps(to_dict(cfg))


def load(path: str | Path) -> Config:
    """Read a TOML config file; errors name the file."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except (IsADirectoryError, UnicodeDecodeError, PermissionError) as err:
        raise ConfigError(f"{path}: cannot read config ({err.__class__.__name__})") from None
    try:
        return from_toml(text)
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}") from None


def _parse_override_value(raw: str) -> Any:
    try:
        return tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        return raw  # a bare word is a string: backend.name=aer


def apply_overrides(cfg: Config, overrides: list[str] | tuple[str, ...]) -> Config:
    """Return ``cfg`` with ``section.key=value`` overrides applied (values parsed as TOML)."""
    data = to_dict(cfg)
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r}: expected section.key=value")
        dotted, raw = item.split("=", 1)
        parts = dotted.strip().split(".")
        node = data
        for depth, part in enumerate(parts[:-1]):
            if not isinstance(node.get(part), dict):
                sections = sorted(k for k, v in node.items() if isinstance(v, dict))
                raise ConfigError(f"{'.'.join(parts[: depth + 1])}: unknown section (known: "
                                  f"{', '.join(sections)})")
            node = node[part]
        if parts[-1] not in node:
            raise ConfigError(f"{dotted.strip()}: unknown key (known: {', '.join(sorted(node))})")
        node[parts[-1]] = _parse_override_value(raw.strip())
    return from_dict(data)


def update(cfg: Config, **sections: dict[str, Any]) -> Config:
    """Return ``cfg`` with some keys of some sections replaced, checked like any other input.

    >>> update(Config(), model={"embedding": "classical"}).model.embedding
    'classical'
    """
    data = to_dict(cfg)
    for section, values in sections.items():
        if section not in data:
            raise ConfigError(f"{section}: unknown section")
        data[section].update(values)
    return from_dict(data)


BUILTIN_BACKENDS = ("default.qubit", "lightning.qubit", "exact", "aer", "runtime")  # qepi.backends.backend_names()
NEEDS_SETTINGS = ("runtime",)  # built-in backends that refuse their defaults (a device and shots)
# backend keys beside `name` and the built-in backends that read them (others ignore them;
# backend.shots and the mitigation keys are not listed: the others refuse them)
BACKEND_READERS = {  # shots, noise and mitigation are refused, not ignored, where a backend cannot do them
    "dtype": ("default.qubit", "lightning.qubit", "exact"),
    "threads": ("aer", "runtime"),
    "chunk_rows": ("aer", "exact"),
    "strategy": ("exact",),
    "device": ("runtime",),
    "optimization_level": ("runtime",),
}
# data keys beside `task` and the tasks that read them
TASK_READERS = {
    "n_train": ("motif", "digits", "parity"),
    "n_dev": ("motif", "digits", "parity"),
    "n_test": ("motif", "digits", "parity"),
    "seq_len": ("motif", "parity"),
    "motif_len": ("motif",),
    "pwm_entropy": ("motif",),
    "classes": ("digits",),
    "tokens": ("digits",),
    "train": ("text",),
    "dev": ("text",),
    "test": ("text",),
    "max_len": ("text",),
}
# regulation keys beside `embedding`/`attention` and the regulation kind that reads them
REGULATION_READERS = {
    "target": "epigenetic", "penalty": "epigenetic", "hard": "epigenetic",
    "threshold": "epigenetic", "offsets": "epigenetic", "tf_hidden": "epigenetic",
    "n_experts": "experts", "top_k": "experts", "balance": "experts",
}


def check_run_name(name: str) -> str:
    """``run.name`` when it is one plain directory name inside ``run.out_dir``; a ConfigError
    for a path separator, ``.``, ``..``, ``~`` or an absolute path (they would write elsewhere).

    >>> check_run_name("demo")
    'demo'
    >>> check_run_name("../elsewhere")
    Traceback (most recent call last):
    ...
    qepi.config.ConfigError: run.name='../elsewhere': must be one directory name inside run.out_dir (no path separator, '..' or '~'); set run.out_dir or --out to write elsewhere
    """
    if "/" in name or "\\" in name or name in (".", "..") or name.startswith("~"):
        raise ConfigError(f"run.name={name!r}: must be one directory name inside run.out_dir "
                          f"(no path separator, '..' or '~'); set run.out_dir or --out to write elsewhere")
    return name


def _names(names: tuple[str, ...]) -> str:
    return " or ".join(repr(n) for n in names)


def inert_keys(cfg: Config) -> dict[str, str]:
    """Keys set away from their default that change nothing in the model ``cfg`` describes,
    each with the reason: a data key the task does not read, a backend key the backend
    does not read (or any backend key when no layer is quantum), a regulation key with
    no such regulation, ``model.match_params`` without a classical layer.

    >>> inert_keys(update(Config(), data={"train": "mine.txt"}))
    {'data.train': "data.task='motif' does not read it (only 'text' does)"}
    >>> list(inert_keys(update(Config(), regulation={"penalty": 1.0})))
    ['regulation.penalty']
    """
    default, found = Config(), {}

    def changed(section: str, key: str) -> bool:
        return getattr(getattr(cfg, section), key) != getattr(getattr(default, section), key)

    kinds = (cfg.model.embedding, cfg.model.attention)
    if "quantum" not in kinds:
        for f in fields(Backend):
            if changed("backend", f.name):
                found[f"backend.{f.name}"] = ("no layer is quantum (model.embedding and "
                                              "model.attention are 'classical')")
    elif cfg.backend.name in BUILTIN_BACKENDS:
        for key, readers in BACKEND_READERS.items():
            if cfg.backend.name not in readers and changed("backend", key):
                found[f"backend.{key}"] = (f"backend.name={cfg.backend.name!r} does not read it "
                                           f"(only {_names(readers)} does)")
    for key, readers in TASK_READERS.items():
        if cfg.data.task not in readers and changed("data", key):
            found[f"data.{key}"] = f"data.task={cfg.data.task!r} does not read it (only {_names(readers)} does)"
    regulations = (cfg.regulation.embedding, cfg.regulation.attention)
    for key, kind in REGULATION_READERS.items():
        if kind not in regulations and changed("regulation", key):
            found[f"regulation.{key}"] = (f"only an {kind!r} regulation reads it (regulation.embedding "
                                          f"and regulation.attention are not {kind!r})")
    for f in fields(Train):
        prefix = f.name.split("_")[0]
        if prefix in ("spsa", "rosalin") and cfg.train.optimizer != prefix and changed("train", f.name):
            found[f"train.{f.name}"] = (f"only train.optimizer={prefix!r} reads it (train.optimizer "
                                        f"is {cfg.train.optimizer!r})")
    if "classical" not in kinds and changed("model", "match_params"):
        found["model.match_params"] = "no layer is classical (model.embedding and model.attention are 'quantum')"
    return found


__all__ = [
    "BUILTIN_BACKENDS",
    "NEEDS_SETTINGS",
    "AtLeast",
    "check_run_name",
    "Backend",
    "Between",
    "Circuit",
    "Config",
    "ConfigError",
    "Data",
    "Model",
    "Regulation",
    "Run",
    "Train",
    "apply_overrides",
    "from_dict",
    "from_toml",
    "inert_keys",
    "load",
    "replace",
    "to_dict",
    "to_toml",
    "update",
]


def reference_markdown() -> str:
    """A Markdown table of every config key with its default and the comment beside it."""
    import inspect

    rows = ["| key | default | meaning |", "| --- | --- | --- |"]
    defaults = to_dict(Config())
    for section in fields(Config):
        cls = typing.get_type_hints(Config)[section.name]
        comments = {}
        for line in inspect.getsource(cls).splitlines():
            name, sep, rest = line.strip().partition(":")
            if sep and "#" in rest and name.isidentifier():
                comments[name] = rest.split("#", 1)[1].strip()
        for f in fields(cls):
            value = defaults[section.name][f.name]
            items = value if isinstance(value, list) else [value]
            default = ", ".join(tomli_w.dumps({"v": v})[4:].strip() for v in items)
            default = f"[{default}]" if isinstance(value, list) else default
            meaning = comments.get(f.name, "").replace("|", "\\|")
            rows.append(f"| `{section.name}.{f.name}` | `{default}` | {meaning} |")
    return "\n".join(rows) + "\n"
