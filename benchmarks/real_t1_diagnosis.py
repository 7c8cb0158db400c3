"""Why a phantom-trained translator paints bone into a real T1's brain: spacing, interventions, nearest phantom tissue.

    python benchmarks/real_t1_diagnosis.py [--model t1-ct-regression] [--threads 2]

Issue 18 asks that no brain voxel of a real T1 come out above 300 HU. This benchmark looks at the brain
interior's voxels above 300 HU of nilearn's MNI152 template (the rim of
:data:`~benchmarks.real_t1_normalisation.RIM_VOXELS` voxels left out, as in ``real_t1_normalisation.py``) and
their largest connected cluster, three ways, and (4.) what a 1 mm rendering of the phantom does to the translator:

1. Slice spacing: the template translated with its own 1 mm slices (as a user's file is), and with the context
   slices 2 and 4 mm apart (every 2nd or 4th slice translated as one volume, the phases interleaved back); the
   phantom's slices, which the translator learnt from, are 4 mm apart.
2. Interventions: parts of the input near the cluster changed and the template translated again. The dark
   spaces are the brain voxels in the cluster's box (padded by :data:`BOX_PAD` voxels) darker than
   :data:`DARK` of the brain's 1–99 % range; the band is the cluster, dilated by one voxel, outside them.
   Each change says which part of the picture the translator reads as bone.
3. Nearest phantom tissue: the decoder's features at 1/:data:`FEATURE_STRIDE` of the resolution (a forward hook
   on the translator's U-Net) at the hot voxels, against the same features of :data:`PHANTOMS` validation
   phantoms (cohort seed 77, never the test seeds) by cosine similarity. The labels and true CT of the most
   similar phantom cells say what the translator takes the cluster for.
4. The phantom at 1 mm: the translator's MAE (body mask) on :data:`PHANTOM_SUBJECTS` validation phantoms rendered
   as they were learnt (32 slices, 4 mm apart), rendered with 128 slices (1 mm apart) and every 4th slice taken
   (context slices 4 mm apart again), and with all 128 slices. The phantom's partial-volume blur is set in voxels
   (``PARTIAL_VOLUME_SIGMA``), so the 1 mm rendering is sharper through the slices (0.45 mm against 1.8 mm):
   the middle row says what that alone costs a translator trained on 4 mm slices.

Writes ``benchmarks/results/real_t1_diagnosis.md``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from scipy import ndimage
from torch.utils.hooks import RemovableHandle

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._machine import load_note, write_result
from benchmarks.real_t1_normalisation import HOT_HU, RIM_VOXELS, RealT1, real_t1s
from benchmarks.regression_recipe import VALIDATION_COHORT_SEED
from napari_medtrans.inference import Translator, load_translator
from napari_medtrans.io import Volume

RESULTS = Path(__file__).resolve().parent / "results" / "real_t1_diagnosis.md"
STEPS = (1, 2, 4)
"""Distances (slices of the template, mm) between the context slices of section 1."""
BOX_PAD = 12
"""Voxels added on each side of the cluster's bounding box for the interventions."""
DARK = 0.4
"""Dark spaces: below this fraction of the brain's 1–99 % intensity range."""
FEATURE_STRIDE = 4
"""Resolution of the decoder features compared in section 3 (the decoder stage at 1/4 of the input)."""
PHANTOMS = 6
"""Validation phantoms searched in section 3."""
NEIGHBOUR_STEPS = (1, 4)
"""Distances (mm) between the template's context slices at which section 3 looks: its own and the phantom's."""
SIGNAL = -0.99
"""Network input above which a voxel shows signal (background and the stripped skull are −1)."""
NEAREST = 100
"""Most similar phantom cells whose labels section 3 sums."""
PHANTOM_SUBJECTS = 3
"""Validation phantoms of section 4."""
FINE_DEPTH = 128
"""Slices of section 4's 1 mm rendering (the phantom's 128 mm through the slices)."""


def translated(translator: Translator, volume: Volume, step: int = 1) -> np.ndarray:
    """``volume`` translated with context slices ``step`` slices apart (HU on its own grid)."""
    out = np.empty(volume.array.shape, np.float32)
    sx, sy, sz = volume.spacing
    for phase in range(step):
        part = replace(volume, array=volume.array[phase::step], spacing=(sx, sy, step * sz))
        out[phase::step] = translator.translate_volume(part, batch_size=8).image
    return out


def largest_cluster(hot: np.ndarray) -> np.ndarray:
    """The largest 26-connected component of ``hot`` (all false when ``hot`` is)."""
    labels, count = ndimage.label(hot, structure=np.ones((3, 3, 3), bool))
    if count == 0:
        return hot.copy()
    sizes = ndimage.sum(hot, labels, range(1, count + 1))
    return labels == 1 + int(np.argmax(sizes))


@dataclass
class SpacingResult:
    """Section 1: its table, what the template's own spacing gave, and the hot cells section 3 looks up."""

    lines: list[str]
    own: np.ndarray
    """The template translated with its own 1 mm slices (HU)."""
    cluster: np.ndarray
    """The largest cluster of ``own``'s hot brain-interior voxels."""
    queries: dict[int, np.ndarray]
    """Context-slice distance of :data:`NEIGHBOUR_STEPS` → :func:`hot_cells` of that translation."""


def spacing_lines(translator: Translator, real: RealT1) -> SpacingResult:
    """Section 1: the template translated at each of :data:`STEPS`, the hot cells' features caught on the way."""
    lines = [
        "## 1. Slice spacing",
        "",
        f"| context slices apart | interior voxels > {HOT_HU:.0f} HU | largest cluster | its peak (HU) |",
        "|---|---|---|---|",
    ]
    own, cluster, queries = np.empty(0), np.empty(0, bool), {}
    with DecoderFeatures(translator) as hook:
        for step in STEPS:
            out = translated(translator, real.mni, step)
            caught = hook.take()
            if step in NEIGHBOUR_STEPS:
                queries[step] = hot_cells(translator, *caught)
            hot = (out > HOT_HU) & real.brain_interior
            biggest = largest_cluster(hot)
            peak = f"{out[biggest].max():.0f}" if biggest.any() else "–"
            lines.append(f"| {step} mm | {hot.sum()} | {biggest.sum()} | {peak} |")
            if step == 1:
                own, cluster = out, biggest
    return SpacingResult([*lines, ""], own, cluster, queries)


def cluster_box(cluster: np.ndarray) -> tuple[slice, ...]:
    """The bounding box of ``cluster`` padded by :data:`BOX_PAD` voxels on each side."""
    found = ndimage.find_objects(cluster.astype(np.int32))[0]
    return tuple(slice(max(s.start - BOX_PAD, 0), s.stop + BOX_PAD) for s in found)


def interventions(image: np.ndarray, real: RealT1, cluster: np.ndarray) -> dict[str, tuple[np.ndarray, float]]:
    """Named changes of the template (``image``, float32) near ``cluster``: the voxels changed and their value."""
    low, high = np.percentile(image[real.brain], [1, 99])
    box = np.zeros(image.shape, bool)
    box[cluster_box(cluster)] = True
    dark = ndimage.binary_opening(box & real.brain & (image < low + DARK * (high - low)))
    band = ndimage.binary_dilation(cluster) & ~dark
    white, grey = float(np.median(image[real.wm])), float(np.median(image[real.gm]))
    return {
        "band → white-matter median": (band, white),
        "band → dark spaces' median (one space)": (band, float(np.median(image[dark]))),
        "dark spaces → white-matter median": (dark, white),
        "dark spaces → grey-matter median": (dark, grey),
        "dark spaces → middle of the range": (dark, float(low + 0.5 * (high - low))),
    }


def intervention_lines(translator: Translator, real: RealT1, spacing: SpacingResult) -> list[str]:
    """Section 2's table (its first row: section 1's translation at the template's own spacing)."""
    box = cluster_box(spacing.cluster)
    lines = [
        "## 2. Interventions (1 mm slices)",
        "",
        f"| input | interior voxels > {HOT_HU:.0f} HU | of them in the cluster's box | peak in the box (HU) |",
        "|---|---|---|---|",
    ]
    image = real.mni.array.astype(np.float32)
    outputs = {"unchanged": spacing.own}
    for name, (voxels, value) in interventions(image, real, spacing.cluster).items():
        outputs[name] = translated(translator, replace(real.mni, array=np.where(voxels, np.float32(value), image)))
    for name, out in outputs.items():
        hot = (out > HOT_HU) & real.brain_interior
        lines.append(f"| {name} | {hot.sum()} | {hot[box].sum()} | {out[box].max():.0f} |")
    return [*lines, ""]


class DecoderFeatures:
    """While entered: for every batch a translator translates, the U-Net's input, one decoder stage's output and
    the image it gives (forward hooks, removed on exit).
    """

    def __init__(self, translator: Translator) -> None:
        decoders = getattr(translator.generator, "decoders", None)
        if decoders is None:
            raise SystemExit(f"{translator.metadata.name}: the generator has no U-Net decoders to look into")
        self._modules = (translator.generator, decoders[int(np.log2(FEATURE_STRIDE))])
        self._handles: list[RemovableHandle] = []
        self.caught: dict[str, list[np.ndarray]] = {"inputs": [], "features": [], "images": []}

    def __enter__(self) -> DecoderFeatures:
        generator, decoder = self._modules
        self._handles = [
            generator.register_forward_hook(self._catch_generator),
            decoder.register_forward_hook(lambda _m, _a, out: self.caught["features"].append(out.float().numpy())),
        ]
        return self

    def __exit__(self, *_exc: object) -> None:
        for handle in self._handles:
            handle.remove()
        self._clear()

    def _clear(self) -> None:
        for caught in self.caught.values():
            caught.clear()

    def _catch_generator(self, _module: object, args: tuple, out: object) -> None:
        self.caught["inputs"].append(args[0].float().numpy())
        self.caught["images"].append(out.float().numpy()[:, 0])  # type: ignore[attr-defined]

    def take(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Since the last take: the (slices, k, H, W) network inputs, (slices, C, H/stride, W/stride) features
        and (slices, H, W) images (network units).
        """
        taken = tuple(np.concatenate(self.caught[key]) for key in ("inputs", "features", "images"))
        self._clear()
        return taken  # type: ignore[return-value]


def unit_rows(features: np.ndarray) -> np.ndarray:
    """(slices, C, h, w) features as (cells, C) rows of unit length."""
    rows = features.transpose(0, 2, 3, 1).reshape(-1, features.shape[1])
    return rows / (np.linalg.norm(rows, axis=1, keepdims=True) + 1e-8)


def hot_cells(translator: Translator, inputs: np.ndarray, features: np.ndarray, images: np.ndarray) -> np.ndarray:
    """Unit feature rows of the cells that hold a hot brain-interior voxel (what :meth:`DecoderFeatures.take`
    gave for one translation); the brain is where the centre input slice has signal, eroded by the rim, on the
    network's own (resampled, padded) grid.
    """
    centre = inputs[:, inputs.shape[1] // 2]
    hu = translator.output_mapping.from_network(images)
    brain = ndimage.binary_erosion(centre > SIGNAL, iterations=RIM_VOXELS, structure=np.ones((1, 3, 3), bool))
    hot = (hu > HOT_HU) & brain
    s = FEATURE_STRIDE
    cells = hot.reshape(hot.shape[0], hot.shape[1] // s, s, hot.shape[2] // s, s).any(axis=(2, 4))
    return unit_rows(features)[cells.reshape(-1)]


def neighbour_lines(translator: Translator, queries: dict[int, np.ndarray]) -> list[str]:
    """Section 3: the phantom tissue nearest to the hot cells of section 1 (``queries``)."""
    from napari_medtrans.phantom import generate_subject
    from napari_medtrans.phantom.anatomy import TISSUES
    from napari_medtrans.phantom.cohort import subject_seed

    best: dict[int, list[tuple[float, np.ndarray, float]]] = {step: [] for step in queries}
    s = FEATURE_STRIDE
    for index in range(PHANTOMS):
        subject = generate_subject(subject_seed(VALIDATION_COHORT_SEED, index), shape=(32, 128, 128))
        with DecoderFeatures(translator) as hook:
            translator.translate_volume(subject.t1, batch_size=8)  # its own grid: the training spacing
            _, features, _ = hook.take()
        shape = (features.shape[0], features.shape[2], s, features.shape[3], s)
        labels = subject.labels.reshape(shape).transpose(0, 1, 3, 2, 4).reshape(-1, s * s)
        ct = subject.ct.reshape(shape).mean(axis=(2, 4)).reshape(-1)
        rows = unit_rows(features)
        for step, query in queries.items():
            if len(query) == 0:
                continue
            similarity = (query @ rows.T).max(axis=0)
            for cell in np.argsort(similarity)[::-1][:NEAREST]:
                best[step].append((float(similarity[cell]), labels[cell], float(ct[cell])))
    lines = [
        f"## 3. Nearest phantom tissue (decoder features at 1/{s} resolution)",
        "",
        f"Cells of {s}×{s} voxels on the translator's grid holding a hot brain-interior voxel, and the {NEAREST} "
        f"most similar of the cells of {PHANTOMS} validation phantoms (cosine similarity of the features).",
        "",
        "| template slices | hot cells | similarity (most, least of the nearest) | labels of the nearest cells | "
        "their mean true CT (HU) |",
        "|---|---|---|---|---|",
    ]
    for step, found in best.items():
        if not found:
            lines.append(f"| {step} mm apart | 0 | – | – | – |")
            continue
        found = sorted(found, key=lambda item: -item[0])[:NEAREST]
        counts = np.bincount(np.concatenate([f[1] for f in found]), minlength=len(TISSUES))
        share = counts / counts.sum()
        shares = ", ".join(f"{TISSUES[t]} {100 * share[t]:.0f} %" for t in np.argsort(-share) if share[t] >= 0.005)
        lines.append(
            f"| {step} mm apart | {len(queries[step])} | {found[0][0]:.3f}, {found[-1][0]:.3f} | {shares} | "
            f"{np.mean([f[2] for f in found]):.0f} |"
        )
    return [*lines, ""]


def phantom_spacing_lines(translator: Translator) -> list[str]:
    """Section 4: MAE on validation phantoms rendered at 4 mm, at 1 mm taken 4 mm apart, and at 1 mm."""
    from napari_medtrans.metrics import paired_metrics
    from napari_medtrans.phantom import generate_subject
    from napari_medtrans.phantom.cohort import subject_seed

    step = FINE_DEPTH // 32
    renderings = (
        ("4 mm (as trained)", 32, slice(None)),
        ("1 mm, every 4th slice", FINE_DEPTH, slice(step // 2, None, step)),
        ("1 mm, every slice", FINE_DEPTH, slice(None)),
    )
    lines = [
        "## 4. The phantom rendered at 1 mm",
        "",
        f"MAE (HU, body mask) on {PHANTOM_SUBJECTS} validation phantoms (cohort seed {VALIDATION_COHORT_SEED}), "
        "each translated as one volume of the slices taken.",
        "",
        "| rendering, slices taken | MAE per subject | mean |",
        "|---|---|---|",
    ]
    for name, depth, take in renderings:
        maes = []
        for index in range(PHANTOM_SUBJECTS):
            subject = generate_subject(subject_seed(VALIDATION_COHORT_SEED, index), shape=(depth, 128, 128))
            t1, ct, body = subject.t1[take], subject.ct[take], subject.labels[take] > 0
            image = translator.translate_volume(np.ascontiguousarray(t1), batch_size=8).image
            maes.append(float(paired_metrics(image, ct, body).values["mae"] or 0.0))
        lines.append(f"| {name} | {', '.join(f'{m:.1f}' for m in maes)} | {np.mean(maes):.1f} |")
    return [*lines, ""]


def main(argv: list[str] | None = None) -> int:
    import torch

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="t1-ct-regression", help="a shipped name or a path")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    load_start, start = os.getloadavg()[0], time.time()
    real = real_t1s()
    translator = load_translator(args.model, device="cpu")
    lines = [
        "# Why real T1s get bone-level HU in the brain",
        "",
        f"`python benchmarks/real_t1_diagnosis.py {' '.join(argv if argv is not None else sys.argv[1:])}`"
        f" ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}), translator `{args.model}`; the MNI152 template "
        f"(1 mm), its brain interior (more than {RIM_VOXELS} voxels inside the mask). How each section is "
        "measured: the docstring of the script.",
        "",
    ]
    spacing = spacing_lines(translator, real)
    lines += spacing.lines
    if spacing.cluster.any():
        lines += intervention_lines(translator, real, spacing)
        lines += neighbour_lines(translator, spacing.queries)
    else:
        lines += ["No brain-interior voxel above the threshold: nothing to diagnose.", ""]
    lines += phantom_spacing_lines(translator)
    lines += [f"{time.time() - start:.0f} s. " + load_note(load_start, os.getloadavg()[0]), ""]
    write_result(RESULTS, "\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
