"""Command line of the trainer: ``python -m training`` ≡ ``medtrans train``.

The one definition of the training flags. ``medtrans train`` forwards its
arguments here unparsed.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, get_type_hints

from napari_medtrans.contract import MethodSpec, methods_document, option_specs, regimes_for
from training.config import ConfigError, TrainConfig, load_config_file, parse_override, set_path

EPILOG = """examples:
  python -m training --method pix2pix --phantom paired --run-dir runs/p2p --iterations 500
  python -m training --method cyclegan --source mr/ --target ct/ --run-dir runs/cg --set model.ngf=32
  python -m training --run-dir runs/cg --resume            # continue from checkpoints/last.safetensors
  python -m training --method regression --phantom paired --run-dir runs/ft --init model.safetensors  # fine-tune
  torchrun --nproc_per_node=2 -m training --method pix2pix --phantom paired --run-dir runs/ddp
"""


_FLAG_PATHS: dict[str, list[str]] = {}
"""Flag destination → config path; filled by :func:`build_parser` (one definition per flag)."""


def _config_flag(group: Any, flag: str, path: str, **kwargs: Any) -> None:
    """Add ``flag`` setting config field ``path`` (dotted); type, choices and help come from the contract."""
    *sections, key = path.split(".")
    cls: type = TrainConfig
    for section in sections:
        cls = get_type_hints(cls)[section]
    spec = next(o for o in option_specs(cls) if o.name == key)
    if spec.type in ("int", "float"):
        kwargs.setdefault("type", int if spec.type == "int" else float)
    if spec.choices:
        kwargs.setdefault("choices", [c for c in spec.choices if c is not None])
    kwargs.setdefault("help", spec.help.replace("%", "%%"))
    dest = flag.lstrip("-").replace("-", "_")
    group.add_argument(flag, dest=dest, **kwargs)
    _FLAG_PATHS[dest] = path.split(".")


def build_parser(prog: str = "python -m training") -> argparse.ArgumentParser:
    """The trainer's argument parser (flag help from the config's attribute docstrings)."""
    p = argparse.ArgumentParser(
        prog=prog,
        description="Train an image-to-image translator.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--list-methods", action="store_true", help="print the registered methods and exit")
    p.add_argument(
        "--json",
        action="store_true",
        help="with --list-methods: JSON with each method's options, for programs (the Train widget)",
    )
    _config_flag(p, "--method", "method", help="method name (see --list-methods)")
    p.add_argument("--run-dir", type=Path, help="run directory (created; config, status, checkpoints…)")
    p.add_argument("--config", type=Path, help="YAML/JSON config file (TrainConfig fields)")
    p.add_argument("--resume", action="store_true", help="continue the run in --run-dir from its last checkpoint")
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace the run already in --run-dir (its config, checkpoints, metrics, translator)",
    )
    data = p.add_argument_group("data")
    _config_flag(data, "--source", "data.source")
    _config_flag(data, "--target", "data.target")
    data.add_argument("--paired", action="store_true", help="source/target files match by name")
    _config_flag(data, "--phantom", "data.phantom")
    _config_flag(data, "--level", "data.phantom_level")
    _config_flag(data, "--subjects", "data.phantom_subjects")
    _config_flag(data, "--source-modality", "data.source_modality")
    _config_flag(data, "--target-modality", "data.target_modality")
    _config_flag(data, "--size", "data.size")
    loop = p.add_argument_group("loop")
    for flag in (
        "iterations",
        "batch-size",
        "lr",
        "device",
        "seed",
        "precision",
        "checkpoint-every",
        "checkpoint-minutes",
        "preview-every",
        "log-every",
        "name",
    ):
        _config_flag(loop, f"--{flag}", flag.replace("-", "_"))
    _config_flag(loop, "--threads", "num_threads")
    _config_flag(loop, "--init", "init", metavar="TRANSLATOR")
    _config_flag(loop, "--force-precision", "force_precision", action="store_true", default=None)
    loop.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override any config field, e.g. --set model.ngf=32 --set data.flip=false",
    )
    return p


def build_config(args: argparse.Namespace) -> TrainConfig:
    """Resolve defaults ← method defaults ← config file ← flags ← ``--set`` into a TrainConfig."""
    from training.loop import resolve_method

    data: dict[str, Any] = {}
    if args.resume and args.run_dir is not None and (args.run_dir / "config.json").is_file():
        from napari_medtrans.rundir import RunDir

        data = RunDir(args.run_dir).read_config()
        if args.method and args.method != data.get("method"):
            raise ConfigError(f"--resume: {args.run_dir} is a {data.get('method')!r} run, not {args.method!r}")
        data["run_dir"] = str(args.run_dir)  # the run is where it is, not where its config says
        # a resumed run keeps its config; only the length may change
        if args.iterations is not None:
            data["iterations"] = args.iterations
        for text in args.overrides:
            path, value = parse_override(text)
            set_path(data, path, value)
        return _finish(data, resolve_method)
    if args.config is not None:
        data = load_config_file(args.config)
    for attr, path in _FLAG_PATHS.items():
        value = getattr(args, attr)
        if value is not None:
            set_path(data, path, value)
    if args.paired:
        set_path(data, ["data", "paired"], True)
    if args.run_dir is not None:
        data["run_dir"] = str(args.run_dir)
    for text in args.overrides:
        path, value = parse_override(text)
        set_path(data, path, value)
    if not data.get("method"):
        raise ConfigError("--method is required (see --list-methods)")
    if not data.get("run_dir"):
        raise ConfigError("--run-dir is required")
    return _finish(data, resolve_method)


def _finish(data: dict[str, Any], resolve_method: Any) -> TrainConfig:
    import dataclasses

    cfg = TrainConfig.from_dict(data)
    _, options = resolve_method(cfg)
    cfg.model = dataclasses.asdict(options)  # the resolved method options are part of the saved config
    for name in ("iterations", "batch_size", "log_every", "checkpoint_every"):
        if getattr(cfg, name) < 1:
            raise ConfigError(f"{name} must be ≥ 1, got {getattr(cfg, name)}")
    if not 0 <= cfg.checkpoint_minutes < float("inf"):
        raise ConfigError(f"checkpoint_minutes must be a number ≥ 0, got {cfg.checkpoint_minutes}")
    return cfg


def _summary(cls: type) -> str:
    """First line of the docstring of the module defining a method."""
    return ((cls.__module__ and sys.modules[cls.__module__].__doc__) or "").strip().splitlines()[0]


def method_specs() -> list[MethodSpec]:
    """The registered methods as contract :class:`~napari_medtrans.contract.MethodSpec` s, by name."""
    from training.methods import REGISTRY

    return [
        MethodSpec(
            name=name,
            summary=_summary(cls),
            regimes=regimes_for(cls.needs_pairs),
            outputs=tuple(cls.outputs),
            options=option_specs(cls.Options),
        )
        for name, cls in sorted(REGISTRY.items())
    ]


def list_methods() -> str:
    """One line per registered method: name, data it needs, outputs, summary."""
    return "\n".join(
        f"{m.name:<10} {'/'.join(m.regimes):<26} outputs: {','.join(m.outputs):<12} {m.summary}" for m in method_specs()
    )


def methods_json() -> str:
    """``--list-methods --json``: :func:`napari_medtrans.contract.methods_document` of :func:`method_specs`."""
    return json.dumps(methods_document(method_specs()), indent=1)


def main(argv: Sequence[str] | None = None, prog: str = "python -m training") -> int:
    """Parse ``argv`` and train (or list methods); returns the exit code."""
    parser = build_parser(prog)
    args = parser.parse_args(argv)
    if args.list_methods:
        print(methods_json() if args.json else list_methods())
        return 0
    if args.resume and args.overwrite:
        parser.error("--resume continues the run in --run-dir, --overwrite replaces it: choose one")
    try:
        cfg = build_config(args)
    except (ConfigError, ValueError) as exc:
        parser.error(str(exc))
    from training.loop import train

    return train(cfg, resume=args.resume, overwrite=args.overwrite)
