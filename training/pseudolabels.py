"""Pseudo labels through translation: tutorship and adaptation.

Labels exist for images of a *source* modality; the *target* modality has none.

- **tutorship**: translate the labelled source images into the target modality
  (translator source→target), train a segmenter on (translated image, source
  label) and apply it to the real target images;
- **adaptation**: train a segmenter on the real source images and apply it to
  the target images translated into the source modality (translator
  target→source).

Both give, per target volume, a label map, a per-voxel confidence (segmenter
margin with a test-time flip, times ``1 − flip disagreement``; in adaptation
also times the boundary factor and, where the translated image carries a
scale map, the translator's reliability ``exp(-σ/σ_ref)``) and per-slice scores
(:mod:`napari_medtrans.confidence`); the review queue uses :data:`QUEUE_SCORE`.
Adaptation uses the shipped segmenter of the labelled modality when its
tissues are the run's (it *is* a segmenter trained on real labelled images),
unless ``SegmenterSettings.shipped`` is off. Where ground truth exists, each
result also carries per-slice Dice, how well the scores rank it (Spearman ρ)
and the voxel AUROC of the confidence for "label wrong"; :func:`ceiling` gives
the Dice of the shipped target-modality segmenter on the real target images,
the best any strategy can hope for.

:func:`write_results` writes ``<name>_labels.nii.gz``,
``<name>_confidence.nii.gz`` and ``<name>_image.nii.gz`` (all inside the output
folder, which the Review widget requires) plus ``summary.json``; the Review
widget opens that summary.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TypeVar

import numpy as np
from skimage.filters import threshold_otsu

from napari_medtrans.confidence import (
    BOUNDARY_SCALE,
    slice_dice,
    slice_scores,
    slice_spearman,
    voxel_auroc,
    voxel_confidence,
)
from napari_medtrans.inference import Translator
from napari_medtrans.io import Volume, read_volume, write_volume
from napari_medtrans.label_names import write_label_names
from napari_medtrans.metrics import dice_per_label, mean_dice
from napari_medtrans.phantom import DEFAULT_SHAPE, TISSUES, generate_subject
from napari_medtrans.progress import Progress
from napari_medtrans.rundir import atomic_write_json
from napari_medtrans.segmenter import Segmenter, load_segmenter, shipped_segmenter
from training.data import find_volumes as volume_files
from training.segmenter import segmenter_spec, train_segmenter

#: Phantom tissues merged into five classes (index: phantom label value).
COARSE_NAMES = {0: "background", 1: "soft tissue", 2: "bone", 3: "brain", 4: "csf"}
COARSE_LUT = np.array([0, 1, 2, 2, 3, 3, 4, 0, 1, 1], np.uint8)  # air fat bone marrow gm wm csf sinus eye soft

#: σ_ref as a fraction of the translator's output intensity range (network range 2).
SIGMA_REF_FRACTION = 0.1

#: The per-slice score that orders the review queue: fewest slices to fix in the simulated review
#: (benchmarks/results/pseudolabel_comparison.md); "expected_dice" predicts the per-slice Dice best.
QUEUE_SCORE = "volume_impact"


class PseudoLabelError(ValueError):
    """Inputs that do not fit the chosen strategy (direction, modalities, files)."""


@dataclass
class LabelledImage:
    """A source-modality image with its labels."""

    name: str
    image: Volume
    labels: np.ndarray


@dataclass
class TargetImage:
    """A target-modality image to label; ``truth`` is its ground truth when known."""

    name: str
    image: Volume
    truth: np.ndarray | None = None


@dataclass
class SegmenterSettings:
    """How the segmenter of either strategy is trained (``train_segmenter``) and applied."""

    iterations: int = 300
    """Training iterations."""
    batch_size: int = 8
    """Crops per iteration."""
    seed: int = 0
    """Seed of initialisation and sampling."""
    device: str = "auto"
    """auto, cpu, cuda or mps."""
    crop: int = 64
    """Training window size (pixels)."""
    features: int = 16
    """U-Net width."""
    depth: int = 4
    """U-Net levels."""
    context: int = 1
    """Neighbouring slices on either side as input channels (2.5-D)."""
    flip: bool = True
    """Average with a left-right flipped pass; its disagreement lowers the confidence."""
    shipped: bool = True
    """Use the shipped segmenter of the labelled modality where its tissues fit: adaptation applies it
    (no training), tutorship starts its training from it (where the network matches too)."""

    def training(self) -> dict:
        """The keyword arguments of ``train_segmenter``."""
        return {k: v for k, v in asdict(self).items() if k not in ("flip", "shipped")}


#: ``--quality`` presets: ``fast`` gives labels in minutes on a CPU, ``good`` trains five times longer.
QUALITY = {
    "fast": SegmenterSettings(),
    "good": SegmenterSettings(iterations=1500, crop=96),
}


def settings_for(quality: str, *, iterations: int | None = None, **changes: object) -> SegmenterSettings:
    """The :data:`QUALITY` preset ``quality`` with ``changes`` (``iterations=None`` keeps the preset's)."""
    if quality not in QUALITY:
        raise PseudoLabelError(f"unknown quality {quality!r}; choose one of {', '.join(QUALITY)}")
    return replace(QUALITY[quality], **changes, **({} if iterations is None else {"iterations": iterations}))


@dataclass
class PseudoLabels:
    """The result for one target volume.

    ``slice_scores`` holds every per-slice score of
    :data:`napari_medtrans.confidence.SLICE_SCORES`; with ground truth,
    ``slice_dice`` is the Dice per slice and ``voxel_auroc`` the AUROC of the
    voxel confidence for "label wrong".
    """

    name: str
    image: Volume
    labels: np.ndarray
    confidence: np.ndarray
    slice_scores: dict[str, np.ndarray]
    dice: dict[str, float | None] | None = None
    slice_dice: list[float | None] | None = None
    voxel_auroc: float | None = None

    @property
    def slice_confidence(self) -> np.ndarray:
        """The score that orders the review queue (:data:`QUEUE_SCORE`)."""
        return self.slice_scores[QUEUE_SCORE]

    @property
    def mean_dice(self) -> float | None:
        """Mean Dice over the tissues present (``None`` without ground truth)."""
        return None if self.dice is None else mean_dice(self.dice)

    def slice_spearman(self) -> dict[str, float | None]:
        """Spearman ρ of each slice score against the per-slice Dice (empty without ground truth)."""
        if self.slice_dice is None:
            return {}
        return {score: slice_spearman(values, self.slice_dice) for score, values in self.slice_scores.items()}


# --- strategies -------------------------------------------------------------------
def _translate(translator: Translator, volume: Volume, modality: str) -> tuple[Volume, np.ndarray | None]:
    """Translated image (same geometry, tagged ``modality``) and its scale map, if any."""
    result = translator.translate_volume(volume)
    return volume.with_array(result.image.astype(np.float32), modality=modality), result.scale


def _sigma_ref(translator: Translator) -> float:
    mapping = translator.output_mapping
    return SIGMA_REF_FRACTION * (mapping.hi - mapping.lo)


T = TypeVar("T")


def _each(progress: Progress, stage: str, items: Sequence[T]) -> Iterator[T]:
    """``items`` one by one, reported as the stage ``stage`` of ``progress`` (one step a volume)."""
    progress.begin(stage, len(items), unit="volume")
    for done, item in enumerate(items, 1):
        yield item
        progress.update(done)


def train_segmenter_on(
    sources: list[LabelledImage],
    modality: str,
    names: dict[int, str],
    settings: SegmenterSettings,
    init: Segmenter | None = None,
    progress: Progress | None = None,
) -> Segmenter:
    """Train a segmenter for ``modality`` on labelled images (:func:`training.segmenter.train_segmenter`)."""
    bar = progress or Progress(None)
    bar.begin(f"training the {modality} segmenter", settings.iterations, unit="it")
    return train_segmenter(
        [s.image for s in sources],
        [s.labels for s in sources],
        modality=modality,
        label_names=names,
        name=f"pseudolabel-{modality.lower()}",
        init=init,
        progress=lambda step, loss: bar.update(step, loss=loss),
        **settings.training(),
    )


def fitting_shipped_segmenter(modality: str, names: dict[int, str], device: str = "auto") -> Segmenter | None:
    """The shipped segmenter of ``modality`` if it labels exactly the tissues ``names``."""
    path = shipped_segmenter(modality)
    if path is None:
        return None
    segmenter = load_segmenter(path, device=device)
    return segmenter if segmenter.metadata.labels == names else None


def _label(
    segmenter: Segmenter,
    target: TargetImage,
    seen: Volume,
    names: dict[int, str],
    settings: SegmenterSettings,
    sigma: np.ndarray | None = None,
    sigma_ref: float | None = None,
) -> PseudoLabels:
    """Segment ``seen`` (the target image or its translation) into pseudo labels for ``target``.

    A translation (``seen`` is not the target image: adaptation) gets the boundary factor in its confidence.
    """
    result = segmenter.segment(seen.array, flip=settings.flip)
    labels = result.labels.astype(np.uint8)
    boundary = None if seen is target.image else BOUNDARY_SCALE
    confidence = voxel_confidence(result.probabilities, sigma, sigma_ref, result.flip_disagreement, boundary)
    scores = slice_scores(result.probabilities, labels, confidence)
    if target.truth is None:
        return PseudoLabels(target.name, target.image, labels, confidence, scores)
    tissues = {k: v for k, v in names.items() if k != 0}
    return PseudoLabels(
        target.name,
        target.image,
        labels,
        confidence,
        scores,
        dice_per_label(labels, target.truth, tissues),
        slice_dice(labels, target.truth, tissues),
        voxel_auroc(confidence, labels, target.truth),
    )


def tutorship(
    translator: Translator,
    sources: list[LabelledImage],
    targets: list[TargetImage],
    names: dict[int, str],
    settings: SegmenterSettings,
    progress: Progress | None = None,
) -> list[PseudoLabels]:
    """Train on translated source images, segment the real target images.

    With ``settings.shipped`` the training starts from the shipped segmenter of
    the labelled modality when its tissues and network fit.
    """
    bar = progress or Progress(None)
    modality = translator.metadata.target
    translated = [
        LabelledImage(s.name, _translate(translator, s.image, modality)[0], s.labels)
        for s in _each(bar, f"translating the labelled images to {modality}", sources)
    ]
    init = fitting_shipped_segmenter(translator.metadata.source, names, settings.device) if settings.shipped else None
    spec = segmenter_spec(max(names) + 1, settings.features, settings.depth, settings.context)
    segmenter = train_segmenter_on(
        translated, modality, names, settings, init if init is not None and init.metadata.network == spec else None, bar
    )
    return [_label(segmenter, t, t.image, names, settings) for t in _each(bar, "labelling the targets", targets)]


def adaptation(
    translator: Translator,
    sources: list[LabelledImage],
    targets: list[TargetImage],
    names: dict[int, str],
    settings: SegmenterSettings,
    progress: Progress | None = None,
) -> list[PseudoLabels]:
    """Segment the target images translated into the source modality with a segmenter of real source images.

    That segmenter is the shipped one when ``settings.shipped`` and its tissues
    fit, else one trained on ``sources``.
    """
    bar = progress or Progress(None)
    modality = translator.metadata.target
    segmenter = fitting_shipped_segmenter(modality, names, settings.device) if settings.shipped else None
    if segmenter is None:
        segmenter = train_segmenter_on(sources, modality, names, settings, progress=bar)
    sigma_ref = _sigma_ref(translator)
    results = []
    for target in _each(bar, f"translating the targets to {modality} and labelling them", targets):
        seen, sigma = _translate(translator, target.image, modality)
        results.append(_label(segmenter, target, seen, names, settings, sigma, sigma_ref))
    return results


@dataclass(frozen=True)
class Strategy:
    """A strategy and which way its translator must point."""

    run: Callable[..., list[PseudoLabels]]
    reverse: bool  # the translator maps target → source

    def modalities(self, translator: Translator) -> tuple[str, str]:
        """(source, target) modality of the labelled and the unlabelled images."""
        md = translator.metadata
        return (md.target, md.source) if self.reverse else (md.source, md.target)


STRATEGIES: dict[str, Strategy] = {
    "tutorship": Strategy(tutorship, reverse=False),
    "adaptation": Strategy(adaptation, reverse=True),
}


# --- inputs -------------------------------------------------------------------------
def phantom_inputs(
    source_modality: str,
    target_modality: str,
    *,
    n_source: int = 4,
    n_target: int = 2,
    shape: tuple[int, int, int] = DEFAULT_SHAPE,
    seed: int = 100,
    coarse: bool = False,
) -> tuple[list[LabelledImage], list[TargetImage], dict[int, str]]:
    """Labelled source and unlabelled target phantoms (disjoint subjects, truth kept for Dice).

    ``seed`` should differ from the seeds the translator and the shipped
    segmenters were trained on (the trainer's phantom uses 0, 1, …, the
    segmenters 2000…). The default shape is the one they were trained at. ``coarse`` merges the tissues into
    :data:`COARSE_NAMES` (fewer, larger classes: a tiny segmenter learns them fast).
    """
    keys = (source_modality.lower(), target_modality.lower())
    lut, names = (COARSE_LUT, COARSE_NAMES) if coarse else (np.arange(len(TISSUES), dtype=np.uint8), dict(TISSUES))
    subjects = [generate_subject(seed + i, shape=shape) for i in range(n_source + n_target)]
    sources = [LabelledImage(s.name, s.volume(keys[0]), lut[s.labels]) for s in subjects[:n_source]]
    targets = [TargetImage(s.name, s.volume(keys[1]), lut[s.labels]) for s in subjects[n_source:]]
    return sources, targets, names


def folder_inputs(
    source_images: Path,
    source_labels: Path,
    target_images: Path,
    target_labels: Path | None = None,
    *,
    source_modality: str,
    target_modality: str,
) -> tuple[list[LabelledImage], list[TargetImage], dict[int, str]]:
    """Volumes from folders; labels are matched to images by file name."""
    src, src_lab, tgt = (volume_files(Path(p)) for p in (source_images, source_labels, target_images))
    tgt_lab = volume_files(Path(target_labels)) if target_labels else {}
    missing = sorted(set(src) ^ set(src_lab))
    if missing:
        raise PseudoLabelError(f"source images and labels do not match by name: {', '.join(missing[:10])}")
    sources = [
        LabelledImage(n, read_volume(src[n], modality=source_modality), _labels(read_volume(src_lab[n]).array))
        for n in sorted(src)
    ]
    targets = [
        TargetImage(
            n,
            read_volume(p, modality=target_modality),
            _labels(read_volume(tgt_lab[n]).array) if n in tgt_lab else None,
        )
        for n, p in sorted(tgt.items())
    ]
    values = sorted(set().union(*(np.unique(s.labels).tolist() for s in sources)) - {0})
    return sources, targets, {0: "background"} | {v: f"label {v}" for v in values}


def _labels(array: np.ndarray) -> np.ndarray:
    if not np.array_equal(array, np.round(array)) or array.min() < 0 or array.max() > 255:
        raise PseudoLabelError("label volumes must hold integers 0–255")
    return array.astype(np.uint8)


# --- baseline, run, output ----------------------------------------------------------
def threshold_baseline(image: np.ndarray, sources: list[LabelledImage]) -> np.ndarray:
    """Otsu foreground of ``image`` labelled with the most frequent non-zero source label."""
    counts = np.bincount(np.concatenate([s.labels.ravel() for s in sources]), minlength=2)
    counts[0] = 0
    return np.where(image > threshold_otsu(image), int(counts.argmax()), 0).astype(np.uint8)


def run(
    strategy: str,
    translator: Translator,
    sources: list[LabelledImage],
    targets: list[TargetImage],
    names: dict[int, str],
    settings: SegmenterSettings | None = None,
    progress: Progress | None = None,
) -> list[PseudoLabels]:
    """Check the translator's direction against the images, then run ``strategy``.

    ``names`` maps every label value (0 = background) to its name; Dice is
    reported for the non-zero labels. ``progress`` reports each stage.
    """
    if strategy not in STRATEGIES:
        raise PseudoLabelError(f"unknown strategy {strategy!r}; choose one of {', '.join(STRATEGIES)}")
    chosen = STRATEGIES[strategy]
    source_modality, target_modality = chosen.modalities(translator)
    for item, expected in [*((s, source_modality) for s in sources), *((t, target_modality) for t in targets)]:
        if item.image.modality not in (None, expected):
            raise PseudoLabelError(
                f"{strategy} with translator {translator.metadata.source}→{translator.metadata.target} needs "
                f"{source_modality} labelled images and {target_modality} targets, but {item.name} is "
                f"{item.image.modality}"
            )
    if not sources or not targets:
        raise PseudoLabelError("need at least one labelled source image and one target image")
    return chosen.run(translator, sources, targets, names, settings or SegmenterSettings(), progress)


def ceiling(
    targets: list[TargetImage], names: dict[int, str], modality: str, settings: SegmenterSettings
) -> dict | None:
    """Mean Dice of the shipped ``modality`` segmenter on the real target images: the strategies' ceiling.

    ``None`` without ground truth or without a shipped segmenter of these tissues.
    """
    labelled = [t for t in targets if t.truth is not None]
    segmenter = fitting_shipped_segmenter(modality, names, settings.device)
    if segmenter is None or not labelled:
        return None
    tissues = {k: v for k, v in names.items() if k != 0}
    per_case = {
        t.name: mean_dice(dice_per_label(segmenter.segment(t.image.array, flip=settings.flip).labels, t.truth, tissues))
        for t in labelled
    }
    return {
        "segmenter": segmenter.metadata.name,
        "mean_dice": float(np.mean(list(per_case.values()))),
        "per_case": per_case,
    }


def confidence_quality(results: list[PseudoLabels]) -> dict | None:
    """Slice Spearman ρ of each score over the slices of all volumes pooled, and the mean voxel AUROC."""
    labelled = [r for r in results if r.slice_dice is not None]
    if not labelled:
        return None
    dice = [d for r in labelled for d in r.slice_dice]
    aurocs = [r.voxel_auroc for r in labelled if r.voxel_auroc is not None]
    return {
        "queue_score": QUEUE_SCORE,
        "slice_spearman": {
            score: slice_spearman(np.concatenate([r.slice_scores[score] for r in labelled]), dice)
            for score in labelled[0].slice_scores
        },
        "voxel_auroc": float(np.mean(aurocs)) if aurocs else None,
    }


def describe(strategy: str, translator: Translator, settings: SegmenterSettings) -> dict:
    """The run description stored at the top of ``summary.json``."""
    source_modality, target_modality = STRATEGIES[strategy].modalities(translator)
    md = translator.metadata
    return {
        "strategy": strategy,
        "translator": {"name": md.name, "method": md.method, "source": md.source, "target": md.target},
        "source_modality": source_modality,
        "target_modality": target_modality,
        "segmenter": asdict(settings),
        "queue_score": QUEUE_SCORE,
    }


def _rounded(values: np.ndarray) -> list[float]:
    return [round(float(v), 6) for v in values]


def write_results(
    results: list[PseudoLabels],
    out_dir: Path,
    info: dict,
    *,
    ceiling: dict | None = None,
    overwrite: bool = False,
    names: dict[int, str] | None = None,
) -> dict:
    """Write labels, confidence and the target image per volume plus ``summary.json``.

    ``names`` (label value → tissue) go to each labels file's ``.names.json``, which the
    Review widget shows as its legend.

    The summary carries the mean Dice, the ``ceiling`` (see :func:`ceiling`)
    and their ratio, and the confidence quality (:func:`confidence_quality`)
    where ground truth exists.
    """
    out_dir = Path(out_dir)
    summary_path = out_dir / "summary.json"
    if summary_path.exists() and not overwrite:
        raise FileExistsError(f"{summary_path} exists; pass overwrite=True to replace the results")
    cases = []
    for r in results:
        files = {name: f"{r.name}_{name}.nii.gz" for name in ("image", "labels", "confidence")}
        write_volume(r.image, out_dir / files["image"], overwrite=overwrite)
        write_volume(r.image.with_array(r.labels, modality=None), out_dir / files["labels"], overwrite=overwrite)
        if names:
            write_label_names(out_dir / files["labels"], names)
        write_volume(
            r.image.with_array(r.confidence, modality=None), out_dir / files["confidence"], overwrite=overwrite
        )
        cases.append(
            {
                "name": r.name,
                **files,
                "mean_confidence": round(float(r.confidence[r.labels > 0].mean() if r.labels.any() else 0.0), 6),
                "slice_confidence": _rounded(r.slice_confidence),
                "slice_scores": {score: _rounded(values) for score, values in r.slice_scores.items()},
                "dice": r.dice,
                "mean_dice": r.mean_dice,
                "slice_dice": r.slice_dice,
                "slice_spearman": r.slice_spearman(),
                "voxel_auroc": r.voxel_auroc,
            }
        )
    dices = [c["mean_dice"] for c in cases if c["mean_dice"] is not None]
    mean = float(np.mean(dices)) if dices else None
    summary = {
        **info,
        "cases": cases,
        "mean_dice": mean,
        "ceiling": ceiling,
        "ratio_to_ceiling": mean / ceiling["mean_dice"] if mean is not None and ceiling else None,
        "confidence": confidence_quality(results),
    }
    atomic_write_json(summary_path, summary)
    return summary
