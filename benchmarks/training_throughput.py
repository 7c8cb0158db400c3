"""CycleGAN training throughput: the project's step vs a naive reference step.

The reference step is written the way the public CycleGAN code
(junyanz/pytorch-CycleGAN-and-pix2pix, ``CycleGANModel.optimize_parameters``)
does it: six separate generator calls (translation, reconstruction and identity
for each direction), separate discriminator calls on real and fake images, and
Adam with PyTorch's default implementation on CPU. Both steps use the same
networks (``build_network``: ResNet generators, 70×70 PatchGANs), the same
losses and the same weights, at 128² batch 1.

The project step (:class:`training.methods.cyclegan.CycleGAN`) computes the same
losses with batched generator calls (3 instead of 6), one discriminator call on
[real, fake], foreach Adam, ``zero_grad(set_to_none=True)`` and no per-step
host syncs. Variants (``--variants``) add options of the trainer measured here:
flushing denormals on CPU, channels_last, and ``project+bf16`` = the trainer's
``--precision bf16`` (bfloat16 autocast: convolutions in bf16, weights, Adam
and losses in float32). bf16 is only fast on CPUs with bf16 matrix
instructions (AMX / AVX-512-BF16); the report says whether this one has them.

Timing: after warm-up, the variants are run in alternating rounds (to share any
background load evenly) and the median of the per-round rates is reported.

    python benchmarks/training_throughput.py                # ngf 64, 9 blocks (the paper's)
    python benchmarks/training_throughput.py --ngf 32 --rounds 5
"""

from __future__ import annotations

import argparse
import itertools
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _machine import bf16_native, load_note, write_result

from training.config import options_from_dict
from training.losses import ImagePool
from training.methods import get_method
from training.methods.base import StepContext, set_requires_grad


class NaiveCycleGAN:
    """The reference repository's optimisation step, on our networks."""

    def __init__(self, nets: dict[str, torch.nn.Module], lr: float = 2e-4) -> None:
        self.g_a, self.g_b, self.d_a, self.d_b = nets["G_AB"], nets["G_BA"], nets["D_B"], nets["D_A"]
        self.opt_g = torch.optim.Adam(
            itertools.chain(self.g_a.parameters(), self.g_b.parameters()), lr=lr, betas=(0.5, 0.999)
        )
        self.opt_d = torch.optim.Adam(
            itertools.chain(self.d_a.parameters(), self.d_b.parameters()), lr=lr, betas=(0.5, 0.999)
        )
        self.pool_a, self.pool_b = ImagePool(50), ImagePool(50)
        self.real_label, self.fake_label = torch.tensor(1.0), torch.tensor(0.0)

    def crit(self, pred: torch.Tensor, real: bool) -> torch.Tensor:
        target = (self.real_label if real else self.fake_label).expand_as(pred)
        return F.mse_loss(pred, target)

    def backward_d_basic(self, net, real, fake) -> torch.Tensor:
        loss_real = self.crit(net(real), True)
        loss_fake = self.crit(net(fake.detach()), False)
        loss = (loss_real + loss_fake) * 0.5
        loss.backward()
        return loss

    def step(self, real_a: torch.Tensor, real_b: torch.Tensor) -> None:
        lam_a = lam_b = 10.0
        lam_idt = 0.5
        fake_b = self.g_a(real_a)
        rec_a = self.g_b(fake_b)
        fake_a = self.g_b(real_b)
        rec_b = self.g_a(fake_a)
        set_requires_grad([self.d_a, self.d_b], False)
        self.opt_g.zero_grad()
        idt_a = self.g_a(real_b)
        loss_idt_a = F.l1_loss(idt_a, real_b) * lam_b * lam_idt
        idt_b = self.g_b(real_a)
        loss_idt_b = F.l1_loss(idt_b, real_a) * lam_a * lam_idt
        loss_g_a = self.crit(self.d_a(fake_b), True)
        loss_g_b = self.crit(self.d_b(fake_a), True)
        loss_cycle_a = F.l1_loss(rec_a, real_a) * lam_a
        loss_cycle_b = F.l1_loss(rec_b, real_b) * lam_b
        loss_g = loss_g_a + loss_g_b + loss_cycle_a + loss_cycle_b + loss_idt_a + loss_idt_b
        loss_g.backward()
        self.opt_g.step()
        set_requires_grad([self.d_a, self.d_b], True)
        self.opt_d.zero_grad()
        self.backward_d_basic(self.d_a, real_b, self.pool_b.query(fake_b))
        self.backward_d_basic(self.d_b, real_a, self.pool_a.query(fake_a))
        self.opt_d.step()


def make_project(
    ngf: int, blocks: int, channels_last: bool = False, dtype: torch.dtype | None = None
) -> Callable[[torch.Tensor, torch.Tensor], None]:
    """The trainer's CycleGAN step; ``dtype`` is the autocast dtype (``--precision bf16``)."""
    cls = get_method("cyclegan")
    options = options_from_dict(cls.Options, {"ngf": ngf, "n_blocks": blocks}, "cyclegan")
    method = cls(options, in_channels=1, out_channels=1, lr=2e-4, device=torch.device("cpu"))
    if channels_last:
        for net in method.nets.values():
            net.to(memory_format=torch.channels_last)
    ctx = StepContext(
        torch.device("cpu"),
        torch.amp.GradScaler("cpu", enabled=False),
        dtype,
        lambda p: None,
        torch.Generator().manual_seed(0),
    )

    def step(a: torch.Tensor, b: torch.Tensor) -> None:
        if channels_last:
            a, b = a.contiguous(memory_format=torch.channels_last), b.contiguous(memory_format=torch.channels_last)
        method.train_step({"source": a, "target": b}, ctx)

    step.method = method  # type: ignore[attr-defined]
    return step


def make_naive(ngf: int, blocks: int) -> Callable[[torch.Tensor, torch.Tensor], None]:
    torch.manual_seed(0)
    project = make_project(ngf, blocks).method  # type: ignore[attr-defined]
    return NaiveCycleGAN(project.nets).step


#: variant name → (step builder taking (ngf, blocks), flush denormals)
VARIANTS: dict[str, tuple[Callable[[int, int], Callable[[torch.Tensor, torch.Tensor], None]], bool]] = {
    "naive": (make_naive, False),
    "project": (make_project, False),
    "project+denormal": (make_project, True),
    "project+channels_last": (lambda ngf, blocks: make_project(ngf, blocks, channels_last=True), False),
    "project+bf16": (lambda ngf, blocks: make_project(ngf, blocks, dtype=torch.bfloat16), False),
}


def sgemm_peak(threads: int, n: int = 2048, repeats: int = 10) -> float:
    """This CPU's float32 matrix-multiply rate in GFLOP/s (the practical ceiling for convolutions)."""
    torch.set_num_threads(threads)
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * n**3 * repeats / (time.perf_counter() - start) / 1e9


def step_profile(
    step: Callable[[torch.Tensor, torch.Tensor], None], a: torch.Tensor, b: torch.Tensor
) -> tuple[float, float]:
    """(GFLOP per step, fraction of the step's CPU time spent in convolutions) of one step."""
    from torch.profiler import profile
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        step(a, b)
    with profile() as prof:
        step(a, b)
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events)
    conv = sum(
        e.self_cpu_time_total for e in events if e.key in ("aten::mkldnn_convolution", "aten::convolution_backward")
    )
    return counter.get_total_flops() / 1e9, conv / total


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ngf", type=int, default=64)
    parser.add_argument("--blocks", type=int, default=9)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--iters", type=int, default=3, help="iterations per round and variant")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument(
        "--variants", default="naive,project,project+bf16", help="comma-separated: " + ", ".join(VARIANTS)
    )
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "training_throughput.md")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    a = torch.rand(1, 1, args.size, args.size) * 2 - 1
    b = torch.rand(1, 1, args.size, args.size) * 2 - 1
    variants = [v.strip() for v in args.variants.split(",")]
    steps = {}
    for name in variants:
        if name not in VARIANTS:
            parser.error(f"unknown variant {name!r}; known: {', '.join(VARIANTS)}")
        torch.manual_seed(0)
        build, denormal = VARIANTS[name]
        steps[name] = (build(args.ngf, args.blocks), denormal)
    import os

    load_before = os.getloadavg()[0]
    rates: dict[str, list[float]] = {name: [] for name in variants}
    for step, denormal in steps.values():  # warm-up (allocator, oneDNN primitives, pools)
        torch.set_flush_denormal(denormal)
        for _ in range(2):
            step(a, b)
    for _ in range(args.rounds):
        for name, (step, denormal) in steps.items():
            torch.set_flush_denormal(denormal)
            start = time.perf_counter()
            for _ in range(args.iters):
                step(a, b)
            rates[name].append(args.iters / (time.perf_counter() - start))
        print({k: round(v[-1], 3) for k, v in rates.items()}, flush=True)
    torch.set_flush_denormal(False)
    median = {k: statistics.median(v) for k, v in rates.items()}
    base = median.get("naive")
    peak = sgemm_peak(args.threads)
    roofline = {name: step_profile(step, a, b) for name, (step, _) in steps.items()}
    lines = [
        "# CycleGAN training throughput (CPU)",
        "",
        f"Command: `python benchmarks/training_throughput.py --ngf {args.ngf} --blocks {args.blocks} "
        f"--size {args.size} --iters {args.iters} --rounds {args.rounds} --threads {args.threads} "
        f"--variants {args.variants}`",
        "",
        f"Networks: ResNet generators (ngf {args.ngf}, {args.blocks} blocks) and 70×70 PatchGANs (ndf 64), "
        f"{args.size}² batch 1, LSGAN, cycle 10, identity 0.5, pool 50; "
        f"{platform.processor() or platform.machine()}, torch {torch.__version__}, {args.threads} thread(s). "
        "Median of per-round rates; rounds alternate between variants. "
        f"{load_note(load_before, os.getloadavg()[0])} bf16 matrix instructions (amx_bf16/avx512_bf16): "
        f"{'yes' if bf16_native() else 'no (bf16 is emulated)'}.",
        "",
        "| variant | it/s (median) | per-round it/s | speed-up vs naive |",
        "|---|---|---|---|",
    ]
    for name in variants:
        speed = f"{median[name] / base:.2f}×" if base else "—"
        lines.append(f"| {name} | {median[name]:.3f} | {', '.join(f'{r:.3f}' for r in rates[name])} | {speed} |")
    lines += [
        "",
        f"Roofline: float32 matrix multiply runs at {peak:.0f} GFLOP/s on this CPU with "
        f"{args.threads} thread(s) (2048² sgemm), the practical ceiling for convolutions.",
        "",
        "| variant | GFLOP per step | achieved GFLOP/s | share of CPU time in convolutions | "
        "time at the sgemm rate (s) |",
        "|---|---|---|---|---|",
    ]
    for name in variants:
        gflop, conv_share = roofline[name]
        lines.append(f"| {name} | {gflop:.1f} | {gflop * median[name]:.0f} | {conv_share:.0%} | {gflop / peak:.2f} |")
    if base:
        gflop, conv_share = roofline["naive"]
        conv_rate = gflop / (conv_share / base)
        lines += [
            "",
            f"The naive step spends {conv_share:.0%} of its time in convolutions, which run at "
            f"{conv_rate:.0f} GFLOP/s ({conv_rate / peak:.0%} of the sgemm rate). With the same arithmetic, "
            f"removing *all* other work would make it at most {1 / conv_share:.2f}× faster; even convolutions "
            f"at the full sgemm rate would give at most {peak / (gflop * base):.2f}×.",
        ]
    lines.append("")
    text = "\n".join(lines)
    print(text)
    write_result(args.out, text)
    record = {
        "args": vars(args) | {"out": str(args.out)},
        "rates": rates,
        "median": median,
        "sgemm_gflops": peak,
        "roofline": roofline,
    }
    write_result(args.out.with_suffix(".json"), json.dumps(record, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
