"""The evaluation pipeline: translate test inputs per scenario, compute every metric.

:func:`evaluate` runs each translator on each :class:`EvalCase` under each
robustness scenario (noise is added to the *source* image, seeded per case and
scenario, so every model sees the same corrupted inputs) and gathers:

- paired MAE/PSNR/SSIM/NMAE inside the body mask (mean over cases),
- SWD and FRD between the translated and the real target slices (pooled over cases),
- FID/KID when local feature-extractor weights are given,
- Dice per tissue of the target-domain segmenter on the translated images against
  the source labels (and, once, on the real target images: the ceiling),
- the σ-vs-error Pearson correlation where the translator provides a scale map.

A metric that cannot be computed is ``None`` and its reason is kept in
:attr:`EvaluationResult.reasons`. :mod:`napari_medtrans.evaluation_report` writes
``metrics.json``, ``report.md`` and the plots.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from skimage.filters import threshold_otsu

from napari_medtrans import metrics
from napari_medtrans.inference import Translator
from napari_medtrans.io import Volume, read_volume, volume_suffix
from napari_medtrans.segmenter import Segmenter

#: First phantom seed of held-out evaluation subjects
#: (translators train from seed 0, demo checks use 1000…, segmenters 2000…).
HELD_OUT_SEED = 5000
#: Slices drawn per set for FRD (radiomics extraction is the slow part).
FRD_MAX_SLICES = 32

Progress = Callable[[str], None]


@dataclass
class EvalCase:
    """One test subject: the source image, its aligned target image and tissue labels."""

    name: str
    source: Volume
    target: Volume | None = None
    labels: np.ndarray | None = None


@dataclass
class EvalSettings:
    """What to compute; ``None`` paths mean "not available" (reported, never faked)."""

    scenarios: Sequence[str] = tuple(metrics.SCENARIOS)
    seed: int = 0
    segmenter: Segmenter | None = None
    label_names: dict[int, str] = field(default_factory=dict)   # tissues scored by Dice (no background)
    fid_weights: Path | None = None
    frd: bool = True
    frd_image_types: Sequence[str] | None = None
    frd_max_slices: int = FRD_MAX_SLICES
    pcc_min_foreground: float = 0.1   # σ–error correlation over slices with ≥ this body fraction (0: all)


@dataclass
class EvaluationResult:
    """All numbers of one evaluation (JSON-ready) plus the arrays behind the plots."""

    models: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    reference: dict[str, Any] = field(default_factory=dict)          # Dice of the segmenter on real targets
    reasons: dict[str, str] = field(default_factory=dict)            # "model/scenario/metric" → why null
    per_slice: dict[str, dict[str, dict[str, list[float | None]]]] = field(default_factory=dict)
    uncertainty: dict[str, dict[str, dict[str, list[float]]]] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The ``metrics.json`` document."""
        return {"models": self.models, "reference": self.reference, "reasons": self.reasons,
                "settings": self.settings}


# ----------------------------------------------------------------------------- cases


def phantom_cases(n: int, source: str, target: str, *, seed: int = HELD_OUT_SEED,
                  shape: tuple[int, int, int] = (32, 128, 128)) -> list[EvalCase]:
    """``n`` held-out phantom subjects (seeds ``seed``, ``seed+1``, …), aligned source/target."""
    from napari_medtrans.phantom import generate_subject

    cases = []
    for i in range(n):
        subject = generate_subject(seed + i, shape=shape)
        cases.append(EvalCase(subject.name, subject.volume(source.lower()), subject.volume(target.lower()),
                              subject.labels))
    return cases


def _files(folder: Path) -> dict[str, Path]:
    found = {}
    for path in sorted(folder.iterdir()) if folder.is_dir() else []:
        suffix = volume_suffix(path.name)
        if suffix:
            found[path.name[: -len(suffix)]] = path
    return found


def folder_cases(data: str | Path, source: str, target: str) -> list[EvalCase]:
    """Cases from ``DATA/<source>/NAME.ext``, ``DATA/<target>/NAME.ext`` and ``DATA/labels/NAME.ext``.

    Folder names are the modality tags in lower case (``t1``, ``ct``); the target
    and labels folders are optional, files are matched by name.
    """
    data = Path(data)
    sources = _files(data / source.lower())
    if not sources:
        raise FileNotFoundError(f"no volumes in {data / source.lower()} (expected DATA/<modality>/NAME.nii.gz)")
    targets, labels = _files(data / target.lower()), _files(data / "labels")
    return [
        EvalCase(
            name,
            read_volume(path, modality=source),
            read_volume(targets[name], modality=target) if name in targets else None,
            read_volume(labels[name]).array.astype(np.int32) if name in labels else None,
        )
        for name, path in sources.items()
    ]


# ----------------------------------------------------------------------------- helpers


def foreground_mask(reference: np.ndarray | None, modality: str | None,
                    labels: np.ndarray | None = None) -> np.ndarray | None:
    """Body mask: labels > 0 where labels exist, else a threshold of the reference (CT: -500 HU, else Otsu)."""
    if labels is not None:
        return np.asarray(labels) > 0
    if reference is None:
        return None
    threshold = -500.0 if modality == "CT" else float(threshold_otsu(reference))
    return metrics.body_mask(reference, threshold)


def case_mask(case: EvalCase) -> np.ndarray | None:
    """The body mask of a case (see :func:`foreground_mask`)."""
    target = case.target
    return foreground_mask(None if target is None else target.array, None if target is None else target.modality,
                           case.labels)


def data_range(modality: str | None, reference: np.ndarray, mask: np.ndarray) -> tuple[float, float]:
    """CT: the SynthRAD HU range; otherwise the reference's min/max inside the mask."""
    if modality == "CT":
        return metrics.CT_RANGE
    values = reference[mask]
    return float(values.min()), float(values.max())


def _slices_for_frd(images: list[np.ndarray], masks: list[np.ndarray], limit: int) -> tuple[list, list]:
    keep = [i for i, m in enumerate(masks) if m.sum() > 16]
    chosen = [keep[i] for i in np.linspace(0, len(keep) - 1, min(limit, len(keep))).round().astype(int)] if keep else []
    return [images[i] for i in chosen], [masks[i] for i in chosen]


def _try(result: dict[str, Any], reasons: dict[str, str], where: str, keys: Sequence[str],
         compute: Callable[[], Sequence[Any]]) -> None:
    """Store ``compute()`` under ``keys``; on :class:`MetricUnavailable` store None and the reason."""
    try:
        values = compute()
    except metrics.MetricUnavailable as exc:
        values = [None] * len(keys)
        for key in keys:
            reasons[f"{where}/{key}"] = str(exc)
    result.update(zip(keys, values))


# ----------------------------------------------------------------------------- evaluation


def _distribution(out: dict, reasons: dict, where: str, translated: list[np.ndarray],
                  cases: Sequence[EvalCase], modality: str | None, settings: EvalSettings,
                  extractor: Callable | None) -> None:
    """SWD, FRD and FID/KID between translated and real target slices, pooled over cases."""
    pairs = [(t, c.target.array, case_mask(c)) for t, c in zip(translated, cases) if c.target is not None]
    if not pairs:
        for key in ("swd", "frd", "fid", "kid"):
            out[key] = None
            reasons[f"{where}/{key}"] = "no real target images to compare with"
        return
    rng = data_range(modality, np.concatenate([p[1].ravel() for p in pairs]),
                     np.concatenate([p[2].ravel() for p in pairs]))
    fake = [s for p in pairs for s in p[0]]
    real = [s for p in pairs for s in p[1]]
    masks = [s for p in pairs for s in p[2]]
    _try(out, reasons, where, ["swd"], lambda: [metrics.swd(fake, real, rng, seed=settings.seed)])
    if settings.frd:
        fake_s, masks_s = _slices_for_frd(fake, masks, settings.frd_max_slices)
        real_s, _ = _slices_for_frd(real, masks, settings.frd_max_slices)
        _try(out, reasons, where, ["frd"], lambda: [
            metrics.frd(fake_s, real_s, masks_s, masks_s, image_types=settings.frd_image_types)])
    else:
        out["frd"] = None
        reasons[f"{where}/frd"] = "FRD switched off (--no-frd)"
    if extractor is None:
        out["fid"] = out["kid"] = None
        reasons[f"{where}/fid"] = reasons[f"{where}/kid"] = "no local feature-extractor weights (--fid-weights)"
    else:
        _try(out, reasons, where, ["fid", "kid"], lambda: metrics.fid_kid(fake, real, extractor, rng))


def _paired(out: dict, reasons: dict, where: str, translated: list[np.ndarray], cases: Sequence[EvalCase],
            modality: str | None) -> list[float | None]:
    """Mean paired metrics over cases; returns the per-slice MAE curve (all cases, in order)."""
    results = []
    for image, case in zip(translated, cases):
        if case.target is None:
            continue
        mask = case_mask(case)
        try:
            results.append(metrics.paired_metrics(image, case.target.array, mask,
                                                  data_range(modality, case.target.array, mask)))
        except metrics.MetricUnavailable as exc:
            reasons[f"{where}/{case.name}/paired"] = str(exc)
    keys = ("mae", "psnr", "ssim", "nmae")
    if not results:
        for key in keys:
            out[key] = None
            reasons[f"{where}/{key}"] = "no aligned target image (paired metrics need one)"
        return []
    out.update({k: float(np.mean([getattr(r, k) for r in results])) for k in keys})
    return [None if np.isnan(v) else float(v) for r in results for v in r.per_slice["mae"]]


def _dice(out: dict, reasons: dict, where: str, translated: list[np.ndarray], cases: Sequence[EvalCase],
          settings: EvalSettings) -> None:
    """Dice per tissue of the segmenter on the translated images against the source labels."""
    labelled = [(t, c.labels) for t, c in zip(translated, cases) if c.labels is not None]
    if settings.segmenter is None or not labelled:
        out["dice_mean"], out["dice"] = None, None
        reasons[f"{where}/dice"] = ("no segmenter for the target modality (medtrans train-segmenter)"
                                    if settings.segmenter is None else "no source labels")
        return
    predicted = np.concatenate([settings.segmenter.segment(t).labels.ravel() for t, _ in labelled])
    truth = np.concatenate([np.asarray(labels).ravel() for _, labels in labelled])
    out["dice"] = metrics.dice_per_label(predicted, truth, settings.label_names)
    out["dice_mean"] = metrics.mean_dice(out["dice"])


def evaluate(translators: dict[str, Translator], cases: Sequence[EvalCase], settings: EvalSettings,
             progress: Progress | None = None) -> EvaluationResult:
    """Run every translator on every case under every scenario and compute all metrics."""
    say = progress or (lambda message: None)
    extractor = metrics.feature_extractor_from_file(settings.fid_weights) if settings.fid_weights else None
    result = EvaluationResult(settings={"scenarios": list(settings.scenarios), "seed": settings.seed,
                                        "cases": [c.name for c in cases], "frd": settings.frd,
                                        "frd_image_types": settings.frd_image_types,
                                        "fid_weights": str(settings.fid_weights) if settings.fid_weights else None,
                                        "pcc_min_foreground": settings.pcc_min_foreground})
    _reference_dice(result, cases, settings)
    for s_index, scenario in enumerate(settings.scenarios):
        seeds = [settings.seed + 1000 * s_index + i for i in range(len(cases))]
        inputs = [c.source.with_array(metrics.apply_scenario(scenario, c.source.array, seed))
                  for c, seed in zip(cases, seeds)]
        for name, translator in translators.items():
            say(f"{name} {scenario}: translating {len(cases)} volume(s)")
            outputs = [translator.translate_volume(v) for v in inputs]
            translated = [o.image for o in outputs]
            where, out = f"{name}/{scenario}", {}
            modality = translator.metadata.target
            curve = _paired(out, result.reasons, where, translated, cases, modality)
            say(f"{name} {scenario}: distribution metrics")
            _distribution(out, result.reasons, where, translated, cases, modality, settings, extractor)
            _dice(out, result.reasons, where, translated, cases, settings)
            if translator.provides_scale:
                _uncertainty(out, result, where, outputs, cases, settings.pcc_min_foreground)
            result.models.setdefault(name, {})[scenario] = out
            result.per_slice.setdefault(name, {})[scenario] = {"mae": curve}
    return result


def _uncertainty(out: dict, result: EvaluationResult, where: str, outputs: list, cases: Sequence[EvalCase],
                 min_foreground: float) -> None:
    """Pearson correlation of per-slice mean σ and mean |residual|, pooled over cases, on slices
    whose body covers at least ``min_foreground`` (every slice with body is kept for the plots)."""
    scale, error, foreground = [], [], []
    for output, case in zip(outputs, cases):
        if case.target is None:
            continue
        try:
            agreement = metrics.uncertainty_pcc(output.scale, output.image, case.target.array, case_mask(case))
        except metrics.MetricUnavailable:
            continue
        scale += agreement.mean_scale.tolist()
        error += agreement.mean_error.tolist()
        foreground += agreement.foreground.tolist()
    name, scenario = where.split("/")
    result.uncertainty.setdefault(name, {})[scenario] = {"scale": scale, "error": error, "foreground": foreground}
    used = [i for i, f in enumerate(foreground) if f >= min_foreground]
    _try(out, result.reasons, where, ["uncertainty_pcc"],
         lambda: [metrics.pearson([scale[i] for i in used], [error[i] for i in used])])


def _reference_dice(result: EvaluationResult, cases: Sequence[EvalCase], settings: EvalSettings) -> None:
    """Dice of the segmenter on the real target images: the ceiling for translated ones."""
    real = [c.target.array for c in cases if c.target is not None and c.labels is not None]
    if not real or settings.segmenter is None:
        result.reference = {"dice_mean": None, "dice": None}
        result.reasons["reference/dice"] = "no segmenter or no labelled real target images"
        return
    cases_l = [c for c in cases if c.target is not None and c.labels is not None]
    _dice(result.reference, result.reasons, "reference", real, cases_l, settings)


# ----------------------------------------------------------------------------- one volume (the widget)


@dataclass
class VolumeComparison:
    """Paired metrics of one translated volume against its reference, and Dice where possible."""

    paired: metrics.PairedMetrics
    dice: dict[str, float | None] | None = None
    reasons: dict[str, str] = field(default_factory=dict)


def compare_volume(translated: np.ndarray, reference: np.ndarray, *, modality: str | None,
                   labels: np.ndarray | None = None, segmenter: Segmenter | None = None) -> VolumeComparison:
    """Paired metrics in the body mask (labels > 0, else a threshold of ``reference``) and segmenter Dice."""
    reference = np.asarray(reference)
    mask = foreground_mask(reference, modality, labels)
    paired = metrics.paired_metrics(translated, reference, mask, data_range(modality, reference, mask))
    comparison = VolumeComparison(paired)
    if labels is None or segmenter is None:
        comparison.reasons["dice"] = "choose a labels layer" if labels is None else f"no segmenter for {modality}"
        return comparison
    names = {k: v for k, v in segmenter.metadata.labels.items() if k}
    comparison.dice = metrics.dice_per_label(segmenter.segment(translated).labels, labels, names)
    return comparison
