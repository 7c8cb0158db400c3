"""The training loop shared by every method.

:class:`Trainer` owns data, device, mixed precision, logging, validation,
previews, checkpoints, cancellation (stop file, SIGTERM/SIGINT), resume and
distributed training; a :class:`~training.methods.base.Method` only declares
networks, optimisers and one step. Everything a watcher needs is written to the
run directory (see :mod:`napari_medtrans.rundir`); only rank 0 writes.
"""

from __future__ import annotations

import math
import os
import random
import signal
import socket
import sys
import time
import traceback
import warnings
from datetime import datetime, timezone
from types import FrameType
from typing import Any

import numpy as np
import torch

import napari_medtrans
from napari_medtrans import cpu_features
from napari_medtrans.checkpoint import CheckpointError, TranslatorMetadata, read_metadata, save_translator
from napari_medtrans.inference import PRECISIONS
from napari_medtrans.model_card import annotate
from napari_medtrans.progress import Progress
from napari_medtrans.rundir import RunDir, RunLockedError, require_writable_folder
from training import distributed as dist_utils
from training.augment import description as augmentation_description
from training.checkpointing import (
    checkpoint_bytes,
    init_from_translator,
    load_checkpoint,
    rank_state,
    save_checkpoint,
)
from training.config import ConfigError, TrainConfig, options_from_dict
from training.data import (
    FOREGROUND_LEVEL,
    SliceSampler,
    ValidationSet,
    check_context,
    load_cohort,
    to_device,
    validation_set,
)
from training.methods import Method, StepContext, get_method
from training.patches import PatchSampler, check_patch, patch_crop


class NonFiniteLossError(RuntimeError):
    """A loss became NaN or infinite; the run stops without overwriting the last checkpoint."""


class StopTraining(Exception):
    """Raised inside the loop when a stop was requested (file or signal)."""


def autocast_dtype(precision: str, device: torch.device, *, force: bool = False) -> torch.dtype | None:
    """The autocast dtype for ``TrainConfig.precision`` on ``device`` (None = float32).

    ``auto`` keeps the usual choice: float16 AMP with gradient scaling on CUDA,
    float32 elsewhere. ``bf16`` is opt-in on CPU: on CPUs with AMX or
    AVX-512-BF16 it makes a CycleGAN step about 2.3× faster than fp32
    (``benchmarks/results/training_throughput.md``); without them it is emulated
    and many times slower than float32, so an explicit precision the device only
    emulates is refused unless ``force`` (``--force-precision``).
    """
    if precision == "auto":
        return torch.float16 if device.type == "cuda" else None
    if precision == "fp16" and device.type != "cuda":
        raise ConfigError(f"precision fp16 needs a CUDA device (training on {device}); use bf16 or fp32")
    try:
        warning = cpu_features.check_precision(precision, device, force=force, how_to_force="add --force-precision")
    except cpu_features.EmulatedPrecisionError as exc:
        raise ConfigError(f"precision {precision}: {exc}") from exc
    if warning:
        warnings.warn(warning, RuntimeWarning, stacklevel=2)
    return PRECISIONS[precision]


def resolve_method(cfg: TrainConfig) -> tuple[type[Method], Any]:
    """The method class and its options dataclass (defaults ← ``cfg.model``)."""
    cls = get_method(cfg.method)
    return cls, options_from_dict(cls.Options, cfg.model, cfg.method)


def decay_factor(iteration: int, total: int, start: float, schedule: str = "linear") -> float:
    """The share of the learning rate's decay left at ``iteration`` (1 … ``total``).

    1 until ``start``·``total`` iterations (``start`` ≥ 1: constant), then down to 0 at the end:
    linearly (pytorch-CycleGAN-and-pix2pix's ``linear`` policy) or along a half cosine
    (``CosineAnnealingLR`` with ``T_max`` = the decaying iterations, stepped every iteration).
    """
    begin = start * total
    if iteration <= begin or start >= 1.0:
        return 1.0
    if schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * (iteration - 1 - begin) / (total - begin)))
    return max(0.0, 1.0 - (iteration - begin) / (total - begin + 1))


class Trainer:
    """Runs one training job described by ``cfg`` in ``cfg.run_dir``.

    Args:
        cfg: the resolved config (``cfg.model`` holds every method option).
        resume: continue from ``checkpoints/last.safetensors`` when it exists.
        overwrite: replace a run already in ``cfg.run_dir`` (without it or
            ``resume``, such a run is refused).
    """

    last_name = "last.safetensors"
    best_name = "best.safetensors"

    def __init__(self, cfg: TrainConfig, *, resume: bool = False, overwrite: bool = False) -> None:
        self.cfg = cfg
        self.resume = resume
        self.overwrite = overwrite
        if cfg.num_threads > 0:  # CPU intra-op threads (0: PyTorch's default)
            torch.set_num_threads(cfg.num_threads)
        self.dist = dist_utils.init_distributed(cfg.device)
        self.device = dist_utils.select_device(cfg.device, self.dist)
        self.run = RunDir(cfg.run_dir)
        self.is_main = self.dist.is_main
        # a bar with the loss and it/s on a terminal; elsewhere the log lines below are the output
        self.progress = Progress(sys.stderr if self.is_main else None, plain_steps=0)
        self._signal: int | None = None
        self.iteration = 0
        self.best: float | None = None
        self.last_checkpoint_iteration: int | None = None
        self.elapsed_before = 0.0
        self._best_pending = False
        self._last_checkpoint_time = time.time()

    # --- small helpers ------------------------------------------------------
    def log(self, message: str, *, count: bool = False) -> None:
        """Log to the run directory and standard output; a ``count`` line skips the terminal while its bar shows it."""
        if self.is_main:
            self.run.log(message)
            if not (count and self.progress.bar_active):
                self.progress.note(message, file=sys.stdout)

    def status(self, **fields: Any) -> None:
        if self.is_main:
            self.run.write_status(**fields)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self._signal = signum

    def _install_signal_handlers(self) -> dict[int, Any]:
        previous = {}
        for signum in (signal.SIGTERM, signal.SIGINT):
            try:
                previous[signum] = signal.signal(signum, self._on_signal)
            except ValueError:  # not the main thread (e.g. embedded use)
                pass
        return previous

    # --- main entry ---------------------------------------------------------
    def _claim_run(self) -> str | None:
        """Lock the run directory and check this trainer may write it; a refusal message or None."""
        try:
            require_writable_folder(self.run.path)
            self.run.acquire_lock()
        except RunLockedError as exc:
            return str(exc)
        except OSError as exc:
            return exc.strerror or str(exc)
        if not self.resume and not self.overwrite and self.run.has_run_files():
            self.run.release_lock()
            state = self.run.read_status().get("state", "?") if self.run.status_path.is_file() else "?"
            return (
                f"{self.run.path} already holds a run (state {state}); continue it with --resume, "
                "replace it with --overwrite, or choose another --run-dir"
            )
        if self.overwrite:
            self.run.remove_run_files()
        for temp in self.run.remove_orphan_temps():
            self.log(f"removed {temp.name}, a temp file left by a killed writer")
        return None

    def run_training(self) -> int:
        """Train; returns the exit code (0 finished or stopped, 1 failed, 2 refused)."""
        if self.is_main:
            refusal = self._claim_run()
            if refusal:
                print(f"error: {refusal}", file=sys.stderr, flush=True)
                dist_utils.shutdown(self.dist, clean=False)
                return 2
        previous = self._install_signal_handlers()
        started = time.time()
        code = 1
        try:
            if self.is_main:
                self.run.clear_stop()
                self._write_config()
                self.status(
                    state="running",
                    iteration=0,
                    total_iterations=self.cfg.iterations,
                    eta_seconds=None,
                    it_per_s=None,
                    pid=os.getpid(),
                    host=socket.gethostname(),
                    started_at=started,
                    last_error=None,
                    method=self.cfg.method,
                    world_size=self.dist.world_size,
                    message="preparing data",
                )
            self._setup()
            state = self._loop()
            code = 0 if state in ("finished", "stopped") else 1
            return code
        except Exception as exc:  # noqa: BLE001 - every failure must reach status.json
            message = f"{type(exc).__name__}: {exc}"
            if self.last_checkpoint_iteration is not None:
                message += f" (last good checkpoint: iteration {self.last_checkpoint_iteration})"
            self.log(f"training failed: {message}")
            if self.is_main:
                self.run.log(traceback.format_exc())
            self.status(state="failed", last_error=message, message="failed", eta_seconds=None)
            return 1
        finally:
            self.progress.close()
            for signum, handler in previous.items():
                signal.signal(signum, handler)
            if self.is_main:
                self.run.release_lock()
            dist_utils.shutdown(self.dist, clean=code == 0)

    def _write_config(self) -> None:
        """Save the resolved config; on resume, rewrite it only when it was changed
        (e.g. ``--iterations``), logging what changed.
        """
        new = self.cfg.to_dict()
        if self.resume and self.run.config_path.exists():
            old = self.run.read_config()
            if old == new:
                return
            changed = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
            self.log("config changed on resume: " + ", ".join(f"{k}: {old.get(k)!r} → {new.get(k)!r}" for k in changed))
        self.run.write_config(new)

    # --- setup ----------------------------------------------------------------
    def _setup(self) -> None:
        cfg = self.cfg
        # per-rank streams from (seed, rank): runs and ranks never share a seed
        py_seed, np_seed, torch_seed, method_seed = dist_utils.rank_seeds(cfg.seed, self.dist.rank).generate_state(4)
        random.seed(int(py_seed))
        np.random.seed(int(np_seed))
        torch.manual_seed(int(torch_seed))
        cls, options = resolve_method(cfg)
        data = cfg.data
        check_context(data)
        if data.context_slices > 1 and not cls.supports_context:
            raise ConfigError(f"method {cfg.method!r} maps both ways and needs data.context_slices 1")
        t0 = time.time()
        self.cohort = load_cohort(data, seed=cfg.seed)
        lr = cfg.lr if cfg.lr is not None else cls.default_lr
        self.method = cls(options, in_channels=data.context_slices, out_channels=1, lr=lr, device=self.device)
        if self.method.pairs_required and not self.cohort.aligned:
            raise ConfigError(
                f"method {cfg.method!r} needs paired (or misaligned) data; use --paired or --phantom paired|misaligned"
            )
        if cfg.init is not None and not (self.resume and (self.run.checkpoints_dir / self.last_name).exists()):
            init_from_translator(self.method, cfg.init, self.cohort.source_intensity.to_dict())
            self.log(f"weights from {cfg.init}")
        self.patch = self.method.patch_3d(data)
        sampler_seed = dist_utils.rank_seeds(cfg.seed, self.dist.rank, 1)
        self.sampler: SliceSampler | PatchSampler
        if self.patch is None:
            self.sampler = SliceSampler(self.cohort, data, seed=sampler_seed)
            self.valset: ValidationSet = validation_set(self.cohort, data)
        else:
            check_patch(self.patch, self.method.generator, data)
            self.sampler = PatchSampler(self.cohort, data, self.patch, seed=sampler_seed)
            self.valset = validation_set(self.cohort, data, patch_crop(self.patch))
            self.log(f"3-D patches of {'×'.join(map(str, self.patch))} voxels")
        self.log(
            f"data: {len(self.cohort.train)} training / {len(self.cohort.val)} validation subjects, "
            f"{len(self.sampler.source_index)} source slices ({time.time() - t0:.1f} s)"
        )
        for opt in self.method.optimizers.values():
            for group in opt.param_groups:
                group.setdefault("initial_lr", group["lr"])
        configured_lrs = {
            name: [g["initial_lr"] for g in opt.param_groups] for name, opt in self.method.optimizers.items()
        }
        dtype = autocast_dtype(cfg.precision, self.device, force=cfg.force_precision)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=dtype == torch.float16)
        self.method_rng = torch.Generator().manual_seed(int(method_seed))
        self.ctx = StepContext(
            self.device,
            self.scaler,
            dtype,
            lambda params: dist_utils.average_gradients(params, self.dist),
            self.method_rng,
        )
        self.ctx.iterations = cfg.iterations
        dist_utils.broadcast_modules(list(self.method.nets.values()), self.dist)
        n_params = sum(p.numel() for p in self.method.parameters())
        self.log(
            f"method {cfg.method} on {self.device} (world size {self.dist.world_size}, "
            f"precision {str(dtype or torch.float32).removeprefix('torch.')}): "
            f"{', '.join(self.method.nets)} — {n_params / 1e6:.2f} M parameters"
        )
        last = self.run.checkpoints_dir / self.last_name
        if self.resume and last.exists():
            meta = load_checkpoint(
                last, method=self.method, scaler=self.scaler, method_generator=self.method_rng, rank=self.dist.rank
            )
            self.iteration = int(meta["iteration"])
            self.best = meta.get("best")
            self.elapsed_before = float(meta.get("elapsed", 0.0))
            self.last_checkpoint_iteration = self.iteration
            self._apply_configured_lrs(configured_lrs)
            if meta["rng"] is not None:  # this rank's own streams, pools restored above
                self.sampler.set_state(meta["rng"]["sampler"])
            else:  # a rank the checkpoint has no state of: fresh streams that differ from the first run's
                self.sampler.rng = np.random.default_rng(
                    dist_utils.rank_seeds(cfg.seed, self.dist.rank, self.iteration)
                )
                self.method_rng.manual_seed(
                    int(dist_utils.rank_seeds(cfg.seed, self.dist.rank, self.iteration).generate_state(1)[0])
                )
            if self.is_main:
                self.run.truncate_metrics(self.iteration)
            self.log(f"resumed from {last} at iteration {self.iteration}")
        elif self.resume:
            self.log("--resume: no checkpoint yet, starting from iteration 0")

    def _apply_configured_lrs(self, configured: dict[str, list[float]]) -> None:
        """After loading optimiser state, use the learning rates of this config (``--resume --set lr=…``)."""
        for name, opt in self.method.optimizers.items():
            for group, lr in zip(opt.param_groups, configured[name]):
                if group.get("initial_lr") != lr:
                    self.log(f"optimiser {name}: learning rate {group.get('initial_lr')} → {lr} (config)")
                group["initial_lr"] = lr

    # --- the loop -------------------------------------------------------------
    def _set_lr(self, iteration: int) -> float:
        """Set every optimiser's learning rate for ``iteration`` from its configured one; returns the factor.

        The rate goes from the configured one to ``lr_min`` (the method's option; 0 without it).
        """
        options = self.method.options
        factor = decay_factor(
            iteration,
            self.cfg.iterations,
            getattr(options, "lr_decay_start", 1.0),
            getattr(options, "lr_schedule", "linear"),
        )
        floor = getattr(options, "lr_min", 0.0)
        for opt in self.method.optimizers.values():
            for group in opt.param_groups:
                group["lr"] = floor + (group["initial_lr"] - floor) * factor
        return factor

    def _loop(self) -> str:
        cfg = self.cfg
        total = cfg.iterations
        val_every = cfg.val_every or cfg.checkpoint_every
        sums: dict[str, torch.Tensor] = {}
        counts: dict[str, int] = {}
        start_iter = self.iteration
        t_start = time.time()
        t_mark, it_mark, it_per_s = t_start, self.iteration, None
        last_status = 0.0
        self.status(state="running", iteration=self.iteration, message="training")
        self.method.train()
        state = "finished"
        self.progress.begin("train", total, unit="it", initial=self.iteration)
        while self.iteration < total:
            if self._stop_requested():
                state = "stopped"
                break
            it = self.iteration + 1
            factor = self._set_lr(it)
            batch = to_device(self.sampler.sample(cfg.batch_size), self.device)
            self.ctx.iteration = it
            losses = self.method.train_step(batch, self.ctx)
            self.scaler.update()
            for key, value in losses.items():
                sums[key] = sums[key] + value.float() if key in sums else value.float()
                counts[key] = counts.get(key, 0) + 1
            self.iteration = it
            now = time.time()
            due_log = it % cfg.log_every == 0 or it == total
            due_ckpt = it % cfg.checkpoint_every == 0 or it == total
            if due_log or due_ckpt:
                means = self._flush_losses(sums, counts, it)
                sums, counts = {}, {}
                if now > t_mark and it > it_mark:
                    it_per_s = (it - it_mark) / (now - t_mark)
                    t_mark, it_mark = now, it
                record = {"iteration": it, "time": now, "lr": self.method.lr * factor, "it_per_s": it_per_s, **means}
                if self.is_main:
                    self.run.append_metrics(record)
                eta = (total - it) / it_per_s if it_per_s else None
                self.status(iteration=it, it_per_s=it_per_s, eta_seconds=eta, losses=means)
                last_status = now
                self.progress.update(it, **means)
                if due_log:
                    shown = ", ".join(f"{k} {v:.4g}" for k, v in means.items())
                    self.log(f"it {it}/{total} ({it_per_s or 0:.2f} it/s): {shown}", count=True)
            elif now - last_status > 5.0:
                rate = (it - start_iter) / (now - t_start)
                self.status(iteration=it, it_per_s=rate, eta_seconds=(total - it) / rate if rate else None)
                last_status = now
            if cfg.preview_every and (it % cfg.preview_every == 0 or it == total):
                self._preview(it)
            if val_every and (it % val_every == 0 or it == total):
                self._validate(it)
            if due_ckpt or self._checkpoint_due_by_time():
                self._checkpoint(it, time.time() - t_start)
            self.progress.update(it)
        self.progress.close()
        if state == "stopped":
            self.status(state="stopping", message="saving checkpoint")
            self._flush_losses(sums, counts, self.iteration)
            self._checkpoint(self.iteration, time.time() - t_start)
            self._write_translator()
            reason = f"signal {signal.Signals(self._signal).name}" if self._signal else "stop file"
            self.log(f"stopped at iteration {self.iteration} ({reason}); resume with --resume")
            if self.is_main:
                self.run.clear_stop()
            self.status(
                state="stopped",
                iteration=self.iteration,
                eta_seconds=None,
                message=f"stopped at iteration {self.iteration} ({reason})",
            )
            return state
        path = self._write_translator()
        self.log(f"finished {total} iterations; translator written to {path}")
        self.status(
            state="finished", iteration=self.iteration, eta_seconds=0.0, message="finished", translator=str(path)
        )
        return state

    def _checkpoint_due_by_time(self) -> bool:
        """``checkpoint_minutes`` passed since the last checkpoint (rank 0 alone writes; no collective)."""
        minutes = self.cfg.checkpoint_minutes
        return minutes > 0 and time.time() - self._last_checkpoint_time >= 60 * minutes

    def _stop_requested(self) -> bool:
        local = self._signal is not None or (self.is_main and self.run.stop_requested())
        return dist_utils.any_rank(local, self.dist, self.device)

    def _flush_losses(self, sums: dict[str, torch.Tensor], counts: dict[str, int], it: int) -> dict[str, float]:
        """Mean losses since the last flush (one device sync), checked for NaN/inf."""
        if not sums:
            return {}
        keys = sorted(sums)
        stacked = torch.stack([sums[k] / counts[k] for k in keys])
        values = dist_utils.mean_across_ranks(stacked, self.dist).tolist()
        means = dict(zip(keys, values))
        bad = {k: v for k, v in means.items() if not math.isfinite(v)}
        if bad:
            names = ", ".join(f"{k}={v}" for k, v in bad.items())
            raise NonFiniteLossError(
                f"non-finite loss at iteration {it}: {names}; training stopped "
                "(lower the learning rate or check the data)"
            )
        return means

    # --- validation and previews --------------------------------------------------
    @torch.no_grad()
    def _translate_val(
        self, source: np.ndarray, target: np.ndarray | None, labels: np.ndarray | None = None
    ) -> dict[str, np.ndarray]:
        self.method.train(False)
        try:
            src = torch.from_numpy(source).to(self.device)
            src = self.method.network_input(src, None if labels is None else torch.from_numpy(labels).to(self.device))
            if target is not None and self.method.registration_net is not None:
                out = self.method.preview(src, torch.from_numpy(target).to(self.device))
            else:
                out = self.method.translate(src)
            return {k: v.float().cpu().numpy() for k, v in out.items()}
        finally:
            self.method.train(True)

    def _validate(self, it: int) -> None:
        val = self.valset
        if val.truth is None:
            return
        out = self._translate_val(val.source, None, val.source_labels)
        centre = val.source[:, val.source.shape[1] // 2]
        mask = centre > FOREGROUND_LEVEL
        err = np.abs(out["image"][:, 0] - val.truth[:, 0])
        mae = float(err[mask].mean()) if mask.any() else float(err.mean())
        mapping = self.cohort.target_intensity.output_mapping()
        mae_units = float(mapping.scale_from_network(mae))
        improved = self.best is None or mae < self.best
        if improved:
            self.best = mae
        if self.is_main:
            self.run.append_metrics({"iteration": it, "time": time.time(), "val_mae": mae, "val_mae_units": mae_units})
        self.status(val_mae=mae, val_mae_units=mae_units, best_val_mae=self.best)
        self._best_pending = improved

    def _preview(self, it: int) -> None:
        if not self.is_main:
            return
        val = self.valset
        target = val.target[:1] if val.target is not None else None
        labels = val.source_labels[:1] if val.source_labels is not None else None
        out = self._translate_val(val.source[:1], target, labels)
        mapping = self.cohort.target_intensity.output_mapping()
        arrays: dict[str, np.ndarray] = {
            "input": val.source[0, val.source.shape[1] // 2],
            "output": mapping.from_network(out["image"][0, 0]),
        }
        reference = val.truth if val.truth is not None else val.target
        if reference is not None:
            arrays["target"] = mapping.from_network(reference[0, 0])
        if "scale" in out:
            arrays["scale"] = mapping.scale_from_network(out["scale"][0, 0])
        if self.patch is not None:  # the middle slice of a 3-D patch
            arrays = {name: array[array.shape[0] // 2] for name, array in arrays.items()}
        if "field" in out:
            arrays["field"] = out["field"][0]
            arrays["registration_target"] = mapping.from_network(val.target[0, 0])
        self.run.write_preview(it, arrays)

    # --- checkpoints and the translator ---------------------------------------------
    def _checkpoint(self, it: int, elapsed: float) -> None:
        own = rank_state(self.method, self.sampler.state(), self.method_rng)
        states = dist_utils.gather_to_main(own, self.dist)  # collective: every rank sends its state
        if not self.is_main:
            return
        data = checkpoint_bytes(
            method=self.method,
            scaler=self.scaler,
            sampler_state=self.sampler.state(),
            iteration=it,
            config=self.cfg.to_dict(),
            best=self.best,
            method_generator=self.method_rng,
            elapsed=self.elapsed_before + elapsed,
            other_ranks=states[1:],
        )
        save_checkpoint(self.run.checkpoints_dir / self.last_name, data)
        if getattr(self, "_best_pending", False):
            save_checkpoint(self.run.checkpoints_dir / self.best_name, data)
            self._best_pending = False
        self._last_checkpoint_time = time.time()
        self.last_checkpoint_iteration = it
        self._last_checkpoint_time = time.time()
        self.status(last_checkpoint_iteration=it)

    def translator_metadata(self) -> TranslatorMetadata:
        cfg, method = self.cfg, self.method
        metadata = TranslatorMetadata(
            name=cfg.name or self.run.path.name,
            method=cfg.method,
            source=cfg.data.source_modality,
            target=cfg.data.target_modality,
            networks={role: dict(spec) for role, spec in method.translator_specs().items()},
            source_intensity=self.cohort.source_intensity.to_dict(),
            target_intensity=self.cohort.target_intensity.to_dict(),
            slice_axis=cfg.data.slice_axis,
            size=cfg.data.size,
            context_slices=cfg.data.context_slices,
            patch=None if self.patch is None else list(self.patch),
            outputs=list(method.outputs),
            regime=cfg.data.phantom or ("paired" if cfg.data.paired else "unpaired"),
            deviations=method.deviations() | self._augmentation(),
            provenance={
                "run": str(self.run.path.resolve()),
                "iterations": self.iteration,
                "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "data": self.cohort.description,
                "version": napari_medtrans.__version__,
                "best_val_mae": self.best,
                "config": cfg.to_dict(),
            }
            | self._augmentation()
            | self._fine_tuning(),
        )
        best = (
            None
            if self.best is None
            else {"mae": float(self.cohort.target_intensity.output_mapping().scale_from_network(self.best))}
        )
        annotate(
            metadata,
            (s.source for s in self.cohort.train if s.source is not None),
            held_out=best,
            held_out_data="the run's validation slices (best during training)",
            parameters=sum(p.numel() for m in method.translator_modules().values() for p in m.parameters()),
        )
        return metadata

    def _fine_tuning(self) -> dict[str, Any]:
        """When the run started from a translator (``--init``): its name and the iterations of both together."""
        if not self.cfg.init:
            return {}
        try:
            before = read_metadata(self.cfg.init)
        except (CheckpointError, OSError):  # moved or removed since the run started
            return {"init": {"file": str(self.cfg.init)}}
        earlier = before.provenance.get("total_iterations", before.provenance.get("iterations"))
        return {
            "init": {"file": str(self.cfg.init), "name": before.name, "total_iterations": earlier},
            "total_iterations": None if earlier is None else int(earlier) + self.iteration,
        }

    def _augmentation(self) -> dict[str, Any]:
        """``{"augmentation": probabilities}`` when training augmented its sources (every paper trains without)."""
        found = augmentation_description(self.cfg.data)
        return {"augmentation": found} if found else {}

    def _write_translator(self):
        if not self.is_main:
            return None
        return save_translator(
            self.run.translator_path, self.method.translator_modules(), self.translator_metadata(), overwrite=True
        )


def train(cfg: TrainConfig, *, resume: bool = False, overwrite: bool = False) -> int:
    """Run training for ``cfg``; returns the process exit code."""
    return Trainer(cfg, resume=resume, overwrite=overwrite).run_training()


__all__ = ["NonFiniteLossError", "Trainer", "resolve_method", "train"]
