"""The method interface and the registry.

A method declares its networks (as :func:`napari_medtrans.nets.build_network`
specs), its optimisers and one optimisation step; :class:`training.loop.Trainer`
does everything else. Methods register by name with :func:`register`; nothing
dispatches on method names.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

import torch
from torch import Tensor, nn

from napari_medtrans.contract import DataConfig

REGISTRY: dict[str, type[Method]] = {}
"""Method name → class; filled by :func:`register` when ``training.methods`` is imported."""

M = TypeVar("M", bound=type["Method"])


def register(name: str) -> Callable[[M], M]:
    """Class decorator adding a :class:`Method` subclass to :data:`REGISTRY` under ``name``."""

    def decorate(cls: M) -> M:
        if name in REGISTRY and REGISTRY[name] is not cls:
            raise ValueError(f"method {name!r} is registered twice ({REGISTRY[name].__name__}, {cls.__name__})")
        cls.name = name
        REGISTRY[name] = cls
        return cls

    return decorate


@dataclass
class GeneratorOptions:
    """Options every method shares: the translator generator and the learning-rate policy."""

    generator: str = "resnet"
    """Generator architecture: ``resnet`` (CycleGAN's) or ``unet``."""
    ngf: int = 64
    """Filters of the generator's first layer."""
    n_blocks: int = 9
    """Residual blocks of the ResNet generator (9 in the papers at 256²)."""
    generator_options: dict[str, Any] = dataclasses.field(default_factory=dict)
    """Further generator hyper-parameters, e.g. ``{"depth": 4}`` for the U-Net."""
    lr_decay_start: float = 0.5
    """Fraction of the iterations after which the learning rate decays linearly to 0 (1 = constant)."""


def option_deviations(options: Any) -> dict[str, Any]:
    """Options whose value differs from the registered default (the paper's value,
    see docs/training.md), as recorded in a translator's ``deviations``.
    """
    defaults = type(options)()
    return {
        f.name: getattr(options, f.name)
        for f in dataclasses.fields(options)
        if getattr(options, f.name) != getattr(defaults, f.name)
    }


class StepContext:
    """What the loop lends a method for one step: autocast, scaled backward and
    optimiser steps with gradient averaging across ranks.

    Args:
        device: the training device.
        scaler: a ``torch.amp.GradScaler`` (enabled only for float16).
        dtype: the autocast dtype (``torch.bfloat16`` / ``torch.float16``), or
            None for plain float32.
        reduce_gradients: averages gradients across ranks (no-op on one process).
        generator: the torch RNG for method-side randomness (crops etc.).
    """

    def __init__(
        self,
        device: torch.device,
        scaler: torch.amp.GradScaler,
        dtype: torch.dtype | None,
        reduce_gradients: Callable[[list[nn.Parameter]], None],
        generator: torch.Generator | None = None,
    ) -> None:
        self.device = device
        self.scaler = scaler
        self.dtype = dtype
        self._reduce = reduce_gradients
        self.generator = generator
        self.iteration = 0
        self.iterations = 0
        """Total iterations of the run (for schedules inside a method, e.g. MaskGAN's shape-loss ramp)."""

    def autocast(self) -> AbstractContextManager[Any]:
        """Mixed precision region (a no-op when the step runs in float32)."""
        return torch.autocast(self.device.type, dtype=self.dtype or torch.float32, enabled=self.dtype is not None)

    def backward(self, loss: Tensor) -> None:
        """Backward through the (possibly) scaled loss."""
        self.scaler.scale(loss).backward()

    def step(self, optimizer: torch.optim.Optimizer) -> None:
        """Average gradients across ranks, then step (skipped by the scaler on inf/NaN)."""
        params = [p for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        self._reduce(params)
        self.scaler.step(optimizer)

    @staticmethod
    def zero_grad(*optimizers: torch.optim.Optimizer) -> None:
        for optimizer in optimizers:
            optimizer.zero_grad(set_to_none=True)


def set_requires_grad(nets: list[nn.Module] | nn.Module, flag: bool) -> None:
    """Freeze/unfreeze networks (e.g. the discriminator during the generator step)."""
    for net in nets if isinstance(nets, list) else [nets]:
        for param in net.parameters():
            param.requires_grad_(flag)


class Method:
    """Base class of a translation method.

    Subclasses set the class attributes, define ``Options`` (a dataclass whose
    defaults are the paper's), :meth:`network_specs`, :meth:`build_optimizers`
    and :meth:`train_step`.

    Batches are dicts of tensors: ``source`` (B, k, H, W) (k = context slices),
    ``target`` (B, 1, H, W) — aligned for paired data, misaligned for
    ``misaligned`` data, an unrelated slice for unpaired data.
    """

    name: ClassVar[str] = ""
    Options: ClassVar[type] = GeneratorOptions
    needs_pairs: ClassVar[bool] = False
    """True when a batch's target must show the same anatomy as its source."""
    supports_context: ClassVar[bool] = True
    """False when the method also maps target→source (2.5D input impossible)."""
    outputs: ClassVar[tuple[str, ...]] = ("image",)
    default_lr: ClassVar[float] = 2e-4
    betas: ClassVar[tuple[float, float]] = (0.5, 0.999)
    generator_net: ClassVar[str] = "G"
    registration_net: ClassVar[str | None] = None
    init_type: ClassVar[str] = "normal"
    """Weight initialisation of the reference code (:func:`napari_medtrans.nets.init.init_weights`)."""

    def __init__(self, options: Any, *, in_channels: int, out_channels: int, lr: float, device: torch.device) -> None:
        from napari_medtrans.nets import build_network
        from napari_medtrans.nets.init import init_weights

        self.options = options
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.lr = lr
        self.device = device
        self.specs: dict[str, dict[str, Any]] = self.network_specs()
        self.nets: dict[str, nn.Module] = {
            name: build_network(dict(spec)).to(device) for name, spec in self.specs.items()
        }
        self.nets.update({name: module.to(device) for name, module in self.extra_networks().items()})
        for net in self.nets.values():
            init_weights(net, self.init_type)  # type: ignore[arg-type]
        self.optimizers: dict[str, torch.optim.Optimizer] = self.build_optimizers()

    def deviations(self) -> dict[str, Any]:
        """Settings of this run that differ from the method's paper defaults."""
        found = option_deviations(self.options)
        if self.lr != self.default_lr:
            found["lr"] = self.lr
        return found

    @property
    def pairs_required(self) -> bool:
        """Whether this configured method needs aligned/misaligned pairs (default: ``needs_pairs``)."""
        return self.needs_pairs

    # --- to define -------------------------------------------------------
    def network_specs(self) -> dict[str, dict[str, Any]]:
        """Network name → ``build_network`` spec."""
        raise NotImplementedError

    def extra_networks(self) -> dict[str, nn.Module]:
        """Trainable modules that are not translator networks (e.g. CUT's MLP head)."""
        return {}

    def build_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        raise NotImplementedError

    def patch_3d(self, data: DataConfig) -> tuple[int, int, int] | None:
        """The (slices, rows, cols) training patch of a 3-D generator; None for slice-wise training."""
        return None

    def train_step(self, batch: dict[str, Tensor], ctx: StepContext) -> dict[str, Tensor]:
        """One optimisation step; returns detached scalar losses (no ``.item()``)."""
        raise NotImplementedError

    # --- helpers ------------------------------------------------------------
    def generator_spec(self, in_channels: int, out_channels: int, **extra: Any) -> dict[str, Any]:
        """Spec of a generator from the shared options."""
        opts = self.options
        spec: dict[str, Any] = {
            "arch": opts.generator,
            "in_channels": in_channels,
            "out_channels": out_channels,
            "ngf": opts.ngf,
        }
        if opts.generator == "resnet":
            spec["n_blocks"] = opts.n_blocks
        spec.update(extra)
        spec.update(opts.generator_options)
        return spec

    def adam(
        self, *names: str, lr: float | None = None, betas: tuple[float, float] | None = None
    ) -> torch.optim.Optimizer:
        """Adam over the named networks (``foreach`` multi-tensor implementation)."""
        params = [p for name in names for p in self.nets[name].parameters()]
        return torch.optim.Adam(
            params, lr=self.lr if lr is None else lr, betas=self.betas if betas is None else betas, foreach=True
        )

    def train(self, mode: bool = True) -> None:
        for net in self.nets.values():
            net.train(mode)

    def parameters(self) -> Iterator[nn.Parameter]:
        for net in self.nets.values():
            yield from net.parameters()

    # --- inference / previews -------------------------------------------
    def network_input(self, source: Tensor, labels: Tensor | None) -> Tensor:
        """What the translator's generator takes for ``source`` with its label map (B, H, W) or None:
        ``source`` itself, except for label-conditioned methods (SPADE).
        """
        return source

    @property
    def generator(self) -> nn.Module:
        return self.nets[self.generator_net]

    def translate(self, source: Tensor) -> dict[str, Tensor]:
        """Translation (and scale map where the generator has one) of a source batch."""
        generator = self.generator
        if getattr(generator, "provides_scale", False):
            image, scale = generator.forward_with_scale(source)
            return {"image": image, "scale": scale}
        return {"image": generator(source)}

    def preview(self, source: Tensor, target: Tensor) -> dict[str, Tensor]:
        """Outputs shown in previews: the translation, scale and (registration methods) field."""
        out = self.translate(source)
        if self.registration_net is not None:
            out["field"] = self.nets[self.registration_net](out["image"], target)
        return out

    def translator_modules(self) -> dict[str, nn.Module]:
        """Role → module saved in the translator file."""
        modules = {"generator": self.generator}
        if self.registration_net is not None:
            modules["registration"] = self.nets[self.registration_net]
        return modules

    def translator_specs(self) -> dict[str, dict[str, Any]]:
        """Role → spec, matching :meth:`translator_modules`."""
        specs = {"generator": self.specs[self.generator_net]}
        if self.registration_net is not None:
            specs["registration"] = self.specs[self.registration_net]
        return specs

    # --- state beyond nets and optimisers (image pools) ------------------------
    def extra_state(self) -> dict[str, Tensor]:
        return {}

    def load_extra_state(self, tensors: dict[str, Tensor]) -> None:
        pass
