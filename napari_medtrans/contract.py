"""The typed contract between the GUI and the trainer, each piece defined once.

Free of torch and Qt: the trainer (:mod:`training`), the launcher, the Train
form and the tests all import these dataclasses.

- :class:`TrainConfig` / :class:`DataConfig`: a run's configuration
  (``config.json``; resolved from files and flags by :mod:`training.config`).
- :class:`RunStatus` with :class:`State`: what ``status.json`` holds.
- :class:`MethodSpec` / :class:`OptionSpec`: what
  ``python -m training --list-methods --json`` answers.

:func:`from_dict` builds any of them from JSON-like data, checking every value
against the type hints; :func:`option_help` reads the attribute docstrings of a
dataclass (a string literal on the line after a field), which are the one
source of option help for ``--help``, the Train form's tooltips and the docs.
"""

from __future__ import annotations

import ast
import dataclasses
import enum
import inspect
import textwrap
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar, get_args, get_origin, get_type_hints

from napari_medtrans.constants import PAIRED_REGIMES, REGIMES

T = TypeVar("T")


class ConfigError(ValueError):
    """A config file, override or contract document that does not fit the schema."""


# --------------------------------------------------------------------------- run configuration
@dataclass
class DataConfig:
    """Where the training slices come from and how they are sampled.

    Either ``source``/``target`` folders of volumes (``paired`` matches them by
    file name) or ``phantom`` (an in-memory cohort from
    :func:`napari_medtrans.phantom.generate_cohort`).
    """

    source: str | None = None
    """Folder of source volumes (NIfTI, MetaImage, NRRD files or DICOM series folders)."""
    target: str | None = None
    """Folder of target volumes."""
    paired: bool = False
    """Source and target volumes are pairs matched by file name."""
    phantom: Literal["paired", "unpaired", "misaligned"] | None = None
    """Train on a generated phantom cohort of this data regime instead of folders."""
    phantom_subjects: int = 6
    """Number of phantom subjects (some are held out for validation)."""
    phantom_level: int = 3
    """Misalignment level 0–5 of the ``misaligned`` phantom regime."""
    phantom_seed: int = 0
    """Seed of the phantom cohort."""
    phantom_depth: int = 24
    """Slices per phantom volume."""
    source_modality: str = "T1"
    """Image domain of the source volumes, e.g. T1, T2, MR, CT."""
    target_modality: str = "CT"
    """Image domain of the target volumes."""
    slice_axis: int = 0
    """Array axis along which 2-D training slices are taken."""
    context_slices: int = 1
    """Neighbouring source slices stacked as input channels (2.5-D input; 1 = plain 2-D)."""
    context_strides: tuple[int, ...] = (1,)
    """Slices between neighbouring context slices of a training window, drawn per window from this tuple (needs
    ``context_slices`` > 1; training only: inference stacks a volume's own neighbouring slices). With a phantom
    rendered at 1 mm (``phantom_depth=128``), ``[1, 4]`` trains for slices 1 mm apart, as a 1 mm T1 is translated,
    and 4 mm apart, as the default phantom's are."""
    size: int = 128
    """Side of the square training crops, in pixels."""
    crop_scale: float = 1.0
    """Random zoom range of the crops (1 = no zoom)."""
    flip: bool = True
    """Random left–right flips."""
    min_foreground: float = 0.1
    """Minimum fraction of foreground pixels for a slice to be sampled."""
    val_fraction: float = 0.2
    """Fraction of the subjects held out for validation."""
    val_slices: int = 8
    """Validation slices scored at each validation step."""
    source_intensity: Literal["percentile", "median"] = "percentile"
    """Per-volume normalisation of an MR source: ``percentile`` (foreground 0.5–99.5 % → ±1) or ``median``
    (ratio to the head's median tissue, scanner-robust; see :mod:`napari_medtrans.intensity`). Stored in the
    translator, so inference normalises the same way."""
    augment_skull_strip: float = 0.0
    """Probability that a training slice keeps only the brain of the source (grey and white matter, CSF;
    needs label maps: the phantom), normalised again as a skull-stripped volume is, with air in the target
    outside the brain (see :mod:`training.augment`). 0 = off."""
    augment_fov_crop: float = 0.0
    """Probability that a training slice shows only a random box of the head (a slab of slices, 30–80 % of the
    head in-plane), with background outside it in source and target and the source normalised on the box
    alone, like a scan with a small field of view. 0 = off."""
    augment_intensity: float = 0.0
    """Probability of a random gamma (0.7–1.4), global contrast (×0.8–1.25) and smooth multiplicative bias
    field (up to ±15 % per term) on the source of a training slice. 0 = off."""
    augment_tissue_contrast: float = 0.0
    """Probability of an independent gain on each brain tissue of the source of a training slice (grey and white
    matter, CSF: ×0.87–1.15, so the grey/white contrast varies) and on cortical bone (×0.2–1: darker than the
    phantom's CSF-like bone, as in a real T1); needs label maps (the phantom); the target is unchanged. 0 = off."""
    augment_csf_pools: float = 0.0
    """Probability that one to three ellipsoids deep in the brain become CSF in source, target and labels, like
    the enlarged ventricles and basal cisterns of a real brain (the subject's own CSF values; needs label maps
    and paired data: the phantom; see :mod:`training.augment`). 0 = off."""
    augment_dark_pools: float = 0.0
    """Probability that a slice's CSF pools are darker in the source than the subject's CSF (a gain of ×0.3–1 on
    their T1 signal; the target unchanged), as a real T1's ventricles are after normalisation; needs
    ``augment_csf_pools``. 0 = off."""
    augment_pool_septum: float = 0.0
    """Probability that a slice's mirrored pairs of CSF pools lie in white matter: a wall of white matter between
    the two (a septum) and around them, in source, target and labels, instead of the phantom's midline (grey
    matter either side of a CSF cleft), as a real brain's lateral ventricles lie either side of the septum
    under the corpus callosum; needs ``augment_csf_pools``. 0 = off."""
    augment_grey_septum: float = 0.0
    """Probability that a slice's septa (``augment_pool_septum``) are grey matter instead of white: a thin septum
    reads between grey and white matter in a real T1 (the MNI152's: about 0.7 of the white matter around it,
    the phantom's grey/white ratio 0.68); needs ``augment_pool_septum``. 0 = off."""


@dataclass
class TrainConfig:
    """Everything a run needs; ``model`` holds the method's own options."""

    method: str = "pix2pix"
    """Registered method name (``python -m training --list-methods``)."""
    run_dir: str = "runs/default"
    """Run directory: config, status, metrics, previews, checkpoints, translator."""
    iterations: int = 2000
    """Total training iterations."""
    batch_size: int = 1
    """Slices per training step (per process)."""
    lr: float | None = None
    """Learning rate (default: the method's)."""
    seed: int = 0
    """Seed of weights, sampling and augmentation."""
    device: str = "auto"
    """Device: auto (CUDA when present, else CPU), cpu, cuda, cuda:1, mps."""
    num_threads: int = 0
    """CPU threads for PyTorch (0: its default; on a shared CPU, 1 is often fastest)."""
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    """Autocast dtype of the training step: ``auto`` = fp16 with gradient scaling
    on CUDA, fp32 elsewhere; ``bf16`` = bfloat16 autocast on any device (weights
    and optimiser stay float32; fast on CPUs with AMX/AVX-512-BF16); ``fp16``
    needs CUDA. See :func:`training.loop.autocast_dtype`."""
    force_precision: bool = False
    """Train in ``precision`` even where the device only emulates it (bf16 on a CPU without
    AMX/AVX-512-BF16 is many times slower than fp32); without it such a run is refused."""
    log_every: int = 10
    """Add a point to the loss curves every N iterations."""
    checkpoint_every: int = 200
    """Save ``checkpoints/last`` every N iterations."""
    checkpoint_minutes: float = 10.0
    """Also checkpoint when this many minutes passed since the last checkpoint (0: only every
    ``checkpoint_every`` iterations), so that a killed CPU run loses at most this much time."""
    preview_every: int = 100
    """Write a validation preview every N iterations."""
    val_every: int = 0
    """Score the validation slices every N iterations (0 = never)."""
    name: str | None = None
    """Translator name (default: the run directory's name)."""
    init: str | None = None
    """Start from the weights of this translator file (safetensors; same networks and source normalisation
    as this run builds) instead of random weights, to fine-tune it; the optimisers start fresh. Ignored when
    resuming from a checkpoint."""
    data: DataConfig = field(default_factory=DataConfig)
    """Where the training data comes from."""
    model: dict[str, Any] = field(default_factory=dict)
    """The method's own options (``--list-methods --json``)."""

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-serialisable dict (what ``config.json`` holds)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """Build from a (possibly partial) dict; unknown keys raise :class:`ConfigError`.

        A run directory written before ``precision`` existed holds ``amp: true|false``
        instead; it reads as ``precision: auto|fp32`` so that such runs still resume.
        """
        if "amp" in data and "precision" not in data:
            data = {k: v for k, v in data.items() if k != "amp"} | {"precision": "auto" if data["amp"] else "fp32"}
        return from_dict(cls, data)


# --------------------------------------------------------------------------- run status
class State(str, enum.Enum):
    """Life cycle of a run, as ``status.json["state"]``."""

    QUEUED = "queued"
    RUNNING = "running"
    STOPPING = "stopping"
    FINISHED = "finished"
    FAILED = "failed"
    STOPPED = "stopped"

    def __str__(self) -> str:
        return self.value

    @property
    def final(self) -> bool:
        """True when the trainer no longer writes (finished, failed or stopped)."""
        return self in FINAL_STATES


FINAL_STATES = (State.FINISHED, State.FAILED, State.STOPPED)
"""States after which the trainer process no longer writes (a tuple: ``"failed" in FINAL_STATES`` holds)."""


@dataclass
class RunStatus:
    """What ``status.json`` holds; the trainer writes it, everyone else reads it.

    A reader accepts (and drops) keys it does not know, so an older GUI can
    follow a newer trainer; the writer accepts only these fields.
    """

    state: State = State.QUEUED
    """Where the run is in its life cycle."""
    iteration: int = 0
    """Last completed iteration."""
    total_iterations: int | None = None
    """Length of the run."""
    it_per_s: float | None = None
    """Recent training speed."""
    eta_seconds: float | None = None
    """Estimated seconds to the end (None while unknown)."""
    message: str = ""
    """One line for people: what the trainer is doing."""
    last_error: str | None = None
    """Why the run failed (exception type and message)."""
    losses: dict[str, float] = field(default_factory=dict)
    """Mean of each loss over the last logging interval."""
    val_mae: float | None = None
    """Validation MAE in network units ([-1, 1])."""
    val_mae_units: float | None = None
    """Validation MAE in target units (HU for CT)."""
    best_val_mae: float | None = None
    """Best validation MAE so far (network units)."""
    last_checkpoint_iteration: int | None = None
    """Iteration of ``checkpoints/last``."""
    translator: str | None = None
    """Path of the translator written at the end."""
    method: str | None = None
    """Method being trained."""
    world_size: int | None = None
    """Number of training processes."""
    pid: int | None = None
    """Process id of the trainer (rank 0)."""
    host: str | None = None
    """Host name of the trainer (rank 0)."""
    started_at: float | None = None
    """Unix time the trainer (re)started."""
    updated_at: float | None = None
    """Unix time of the last write."""

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, strict: bool = False) -> RunStatus:
        """Validate ``status.json`` content; unknown keys raise only when ``strict``."""
        if not strict and isinstance(data, dict):
            known = {f.name for f in dataclasses.fields(cls)}
            data = {k: v for k, v in data.items() if k in known}
        return from_dict(cls, data, "status.")

    @property
    def final(self) -> bool:
        """True when the trainer no longer writes."""
        return self.state.final


# --------------------------------------------------------------------------- methods
OptionType = Literal["float", "int", "bool", "str", "choice", "other"]
"""How an option is edited: ``choice`` is a ``Literal``; ``other`` (dicts…) only with ``--set``."""


@dataclass(frozen=True)
class OptionSpec:
    """One option of a method (config section ``model``), as the trainer lists it."""

    name: str
    """Key under ``model.`` in the training config."""
    type: OptionType
    """Editor kind."""
    default: Any = None
    """The method's default value (None for optional values)."""
    help: str = ""
    """What it does and its paper default (from the option's attribute docstring)."""
    choices: tuple[Any, ...] = ()
    """Allowed values of a ``choice``."""


@dataclass(frozen=True)
class MethodSpec:
    """A translation method the trainer offers."""

    name: str
    """Registry name, passed as ``--method``."""
    summary: str = ""
    """One line describing the method (first line of its module docstring)."""
    regimes: tuple[str, ...] = REGIMES
    """Data regimes it can train on (pair-based methods: paired and misaligned only)."""
    outputs: tuple[str, ...] = ("image",)
    """What its translator provides (``image``, ``scale``, ``field``)."""
    options: tuple[OptionSpec, ...] = ()
    """Its own options (config section ``model``)."""

    @property
    def paired(self) -> bool:
        """True when the method needs paired (or misaligned paired) data."""
        return "unpaired" not in self.regimes

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable dict (one entry of ``--list-methods --json``)."""
        return dataclasses.asdict(self)


def regimes_for(needs_pairs: bool) -> tuple[str, ...]:
    """The data regimes of a method that does (or does not) need pairs."""
    return PAIRED_REGIMES if needs_pairs else REGIMES


def methods_document(methods: list[MethodSpec]) -> dict[str, Any]:
    """The ``--list-methods --json`` document: ``{"methods": [MethodSpec dicts]}``."""
    return {"methods": [m.to_dict() for m in methods]}


def parse_methods_document(data: Any) -> tuple[MethodSpec, ...]:
    """Validate and parse a ``--list-methods --json`` document (ConfigError on a bad one)."""
    if not isinstance(data, dict) or not isinstance(data.get("methods"), list):
        raise ConfigError('expected {"methods": [...]}')
    return tuple(from_dict(MethodSpec, entry, f"methods[{i}].") for i, entry in enumerate(data["methods"]))


def option_specs(cls: type) -> tuple[OptionSpec, ...]:
    """The fields of an options dataclass as :class:`OptionSpec` (help from attribute docstrings)."""
    hints = get_type_hints(cls)
    helps = option_help(cls)
    specs = []
    for f in dataclasses.fields(cls):
        hint = _strip_optional(hints[f.name])
        literal = get_origin(hint) is Literal
        default = f.default_factory() if f.default is dataclasses.MISSING else f.default  # type: ignore[operator]
        kind = "choice" if literal else _KINDS.get(hint, "other")
        specs.append(
            OptionSpec(
                name=f.name,
                type=kind,
                default=default,
                help=helps.get(f.name, ""),
                choices=tuple(get_args(hint)) if literal else (),
            )
        )
    return tuple(specs)


_KINDS: dict[Any, OptionType] = {bool: "bool", int: "int", float: "float", str: "str"}


def _strip_optional(hint: Any) -> Any:
    """``X | None`` → ``X`` (other hints unchanged)."""
    args = get_args(hint)
    if get_origin(hint) is not Literal and type(None) in args:
        rest = [a for a in args if a is not type(None)]
        return rest[0] if len(rest) == 1 else hint
    return hint


# --------------------------------------------------------------------------- attribute docstrings
def option_help(cls: type) -> dict[str, str]:
    """Field name → attribute docstring (whitespace folded) of a class and its bases.

    An attribute docstring is a string literal on the line right after an
    annotated field. Classes whose source cannot be read give no help.
    """
    helps: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if klass is not object:
            helps.update(_class_attribute_docs(klass))
    return helps


def _class_attribute_docs(klass: type) -> dict[str, str]:
    try:
        source = textwrap.dedent(inspect.getsource(klass))
    except (OSError, TypeError):
        return {}
    tree = ast.parse(source)
    node = next((n for n in tree.body if isinstance(n, ast.ClassDef)), None)
    if node is None:
        return {}
    docs: dict[str, str] = {}
    for stmt, following in zip(node.body, node.body[1:]):
        if (
            isinstance(stmt, ast.AnnAssign)
            and isinstance(stmt.target, ast.Name)
            and isinstance(following, ast.Expr)
            and isinstance(following.value, ast.Constant)
            and isinstance(following.value.value, str)
        ):
            docs[stmt.target.id] = " ".join(following.value.value.split())
    return docs


# --------------------------------------------------------------------------- validation
def from_dict(cls: type[T], data: Any, prefix: str = "") -> T:
    """Build dataclass ``cls`` from JSON-like ``data``, checking every value against its type hint.

    Handles nested dataclasses, ``Literal``, ``X | None``, enums, ``tuple[X, ...]``,
    ``list[X]``, ``dict[str, X]`` and the scalars; an ``int`` is accepted for a
    ``float``. Unknown or missing required keys raise :class:`ConfigError`
    naming the key as ``prefix + key``.
    """
    if not isinstance(data, dict):
        raise ConfigError(f"{prefix.rstrip('.') or cls.__name__}: expected a mapping, got {type(data).__name__}")
    hints = get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(f"unknown key(s) {', '.join(prefix + k for k in unknown)}; expected one of {sorted(fields)}")
    missing = sorted(
        name
        for name, f in fields.items()
        if name not in data and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    )
    if missing:
        raise ConfigError(f"missing key(s) {', '.join(prefix + k for k in missing)}")
    kwargs = {key: coerce(value, hints[key], prefix + key) for key, value in data.items()}
    return cls(**kwargs)


def coerce(value: Any, hint: Any, name: str) -> Any:
    """Check/convert one value against a type hint (see :func:`from_dict`); ``name`` is for errors."""
    origin, args = get_origin(hint), get_args(hint)
    if hint is Any:
        return value
    if dataclasses.is_dataclass(hint):
        return from_dict(hint, value, name + ".")  # type: ignore[arg-type]
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        try:
            return hint(value)
        except ValueError:
            raise ConfigError(f"{name}: {value!r} is not one of {[m.value for m in hint]}") from None
    if origin is Literal:
        if not any(value == a and type(value) is type(a) for a in args):
            raise ConfigError(f"{name}: {value!r} is not one of {list(args)}")
        return value
    if args and type(None) in args:  # X | None
        if value is None:
            return None
        rest = tuple(a for a in args if a is not type(None))
        return coerce(value, rest[0], name) if len(rest) == 1 else value
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{name}: expected a list, got {value!r}")
        item = args[0] if args else Any
        items = [coerce(v, item, f"{name}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict or hint is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{name}: expected a mapping, got {value!r}")
        item = args[1] if len(args) == 2 else Any
        return {k: coerce(v, item, f"{name}.{k}") for k, v in value.items()}
    return _coerce_scalar(value, hint, name)


def _coerce_scalar(value: Any, hint: Any, name: str) -> Any:
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{name}: expected true/false, got {value!r}")
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or int(value) != value:
            raise ConfigError(f"{name}: expected an integer, got {value!r}")
        return int(value)
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{name}: expected a number, got {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{name}: expected a string, got {value!r}")
        return value
    return value


__all__ = [
    "FINAL_STATES",
    "ConfigError",
    "DataConfig",
    "MethodSpec",
    "OptionSpec",
    "OptionType",
    "RunStatus",
    "State",
    "TrainConfig",
    "coerce",
    "from_dict",
    "methods_document",
    "option_help",
    "option_specs",
    "parse_methods_document",
    "regimes_for",
]
