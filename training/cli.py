"""Command line of the trainer: ``python -m training`` ≡ ``medtrans train``.

The one definition of the training flags. ``medtrans train`` forwards its
arguments here unparsed.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, get_args, get_type_hints

from training.config import ConfigError, TrainConfig, load_config_file, merge, parse_override, set_path

EPILOG = """examples:
  python -m training --method pix2pix --phantom paired --run-dir runs/p2p --iterations 500
  python -m training --method cyclegan --source mr/ --target ct/ --run-dir runs/cg --set model.ngf=32
  python -m training --run-dir runs/cg --resume            # continue from checkpoints/last.safetensors
  torchrun --nproc_per_node=2 -m training --method pix2pix --phantom paired --run-dir runs/ddp
"""


def build_parser(prog: str = "python -m training") -> argparse.ArgumentParser:
    """The trainer's argument parser."""
    p = argparse.ArgumentParser(prog=prog, description="Train an image-to-image translator.",
                                epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--list-methods", action="store_true", help="print the registered methods and exit")
    p.add_argument("--json", action="store_true",
                   help="with --list-methods: JSON with each method's options, for programs (the Train widget)")
    p.add_argument("--method", help="method name (see --list-methods)")
    p.add_argument("--run-dir", type=Path, help="run directory (created; config, status, checkpoints…)")
    p.add_argument("--config", type=Path, help="YAML/JSON config file (TrainConfig fields)")
    p.add_argument("--resume", action="store_true", help="continue the run in --run-dir from its last checkpoint")
    data = p.add_argument_group("data")
    data.add_argument("--source", help="folder of source volumes")
    data.add_argument("--target", help="folder of target volumes")
    data.add_argument("--paired", action="store_true", help="source/target files match by name")
    data.add_argument("--phantom", choices=("paired", "unpaired", "misaligned"), help="use the phantom cohort")
    data.add_argument("--level", type=int, help="phantom misalignment level 0–5 (misaligned regime)")
    data.add_argument("--subjects", type=int, help="number of phantom subjects")
    data.add_argument("--source-modality", help="e.g. T1, T2, MR, CT (default T1)")
    data.add_argument("--target-modality", help="e.g. CT (default CT)")
    data.add_argument("--size", type=int, help="training crop size in pixels")
    loop = p.add_argument_group("loop")
    loop.add_argument("--iterations", type=int, help="total training iterations")
    loop.add_argument("--batch-size", type=int)
    loop.add_argument("--lr", type=float, help="learning rate (default: the method's)")
    loop.add_argument("--device", help="auto (default), cpu, cuda, cuda:1 …")
    loop.add_argument("--seed", type=int)
    loop.add_argument("--threads", type=int, help="CPU threads for PyTorch (0: its default)")
    loop.add_argument("--precision", choices=get_args(get_type_hints(TrainConfig)["precision"]),
                      help="autocast dtype: auto (fp16 AMP on CUDA, fp32 elsewhere), fp32, bf16 (fast on CPUs "
                           "with AMX), fp16 (CUDA)")
    loop.add_argument("--force-precision", action="store_true", default=None,
                      help="keep --precision even where the device only emulates it (refused otherwise)")
    loop.add_argument("--checkpoint-every", type=int)
    loop.add_argument("--preview-every", type=int)
    loop.add_argument("--log-every", type=int)
    loop.add_argument("--name", help="translator name (default: the run directory's name)")
    loop.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                      help="override any config field, e.g. --set model.ngf=32 --set data.flip=false")
    return p


_FLAG_PATHS = {
    "method": ["method"], "source": ["data", "source"], "target": ["data", "target"],
    "phantom": ["data", "phantom"], "level": ["data", "phantom_level"], "subjects": ["data", "phantom_subjects"],
    "source_modality": ["data", "source_modality"], "target_modality": ["data", "target_modality"],
    "size": ["data", "size"], "iterations": ["iterations"], "batch_size": ["batch_size"], "lr": ["lr"],
    "device": ["device"], "threads": ["num_threads"], "precision": ["precision"], "seed": ["seed"],
    "force_precision": ["force_precision"],
    "checkpoint_every": ["checkpoint_every"],
    "preview_every": ["preview_every"], "log_every": ["log_every"], "name": ["name"],
}


def build_config(args: argparse.Namespace) -> TrainConfig:
    """Resolve defaults ← method defaults ← config file ← flags ← ``--set`` into a TrainConfig."""
    from training.loop import resolve_method

    data: dict[str, Any] = {}
    if args.resume and args.run_dir is not None and (args.run_dir / "config.json").is_file():
        from napari_medtrans.rundir import RunDir

        data = RunDir(args.run_dir).read_config()
        if args.method and args.method != data.get("method"):
            raise ConfigError(f"--resume: {args.run_dir} is a {data.get('method')!r} run, not {args.method!r}")
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
    return cfg


def _summary(cls: type) -> str:
    """First line of the docstring of the module defining a method."""
    return (cls.__module__ and sys.modules[cls.__module__].__doc__ or "").strip().splitlines()[0]


def list_methods() -> str:
    """One line per registered method: name, data it needs, outputs, first docstring line."""
    from training.methods import REGISTRY

    lines = []
    for name in sorted(REGISTRY):
        cls = REGISTRY[name]
        needs = "paired/misaligned" if cls.needs_pairs else "unpaired or paired"
        lines.append(f"{name:<10} {needs:<19} outputs: {','.join(cls.outputs):<12} {_summary(cls)}")
    return "\n".join(lines)


def methods_json() -> str:
    """The registry for programs: ``{"methods": [{name, description, paired, outputs, options}]}``.

    Each option is ``{name, type, default, choices}`` with ``type`` one of
    ``float``, ``int``, ``bool``, ``str``, ``choice`` (a ``Literal``) or
    ``other`` (e.g. dicts, settable with ``--set``); defaults are the method's.
    """
    import dataclasses
    import json
    from typing import Literal, get_args, get_origin, get_type_hints

    from training.methods import REGISTRY

    kinds = {bool: "bool", int: "int", float: "float", str: "str"}

    def option(field: dataclasses.Field, hint: Any) -> dict[str, Any]:
        args = get_args(hint)
        if get_origin(hint) is not Literal and type(None) in args:  # X | None
            hint = next(a for a in args if a is not type(None))
        literal = get_origin(hint) is Literal
        default = (field.default_factory() if field.default is dataclasses.MISSING  # type: ignore[misc]
                   else field.default)
        return {"name": field.name, "type": "choice" if literal else kinds.get(hint, "other"),
                "default": default, "choices": list(get_args(hint)) if literal else []}

    methods = []
    for name in sorted(REGISTRY):
        cls = REGISTRY[name]
        hints = get_type_hints(cls.Options)
        methods.append({
            "name": name, "description": _summary(cls), "paired": cls.needs_pairs,
            "outputs": list(cls.outputs),
            "options": [option(f, hints[f.name]) for f in dataclasses.fields(cls.Options)],
        })
    return json.dumps({"methods": methods}, indent=1)


def main(argv: Sequence[str] | None = None, prog: str = "python -m training") -> int:
    """Parse ``argv`` and train (or list methods); returns the exit code."""
    parser = build_parser(prog)
    args = parser.parse_args(argv)
    if args.list_methods:
        print(methods_json() if args.json else list_methods())
        return 0
    try:
        cfg = build_config(args)
    except (ConfigError, ValueError) as exc:
        parser.error(str(exc))
    from training.loop import train

    return train(cfg, resume=args.resume)
