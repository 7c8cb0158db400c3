"""The evaluation pipeline: translate test inputs per scenario, compute every metric.

:func:`evaluate` runs each translator on each :class:`EvalCase` under each
robustness scenario (noise is added to the *source* image, seeded per case and
scenario, so every model sees the same corrupted inputs) and gathers:

- the paired metrics of :data:`napari_medtrans.metrics.METRICS` per case (body mask and,
  for CT, the air outside it), their mean over cases and 95 % bootstrap interval over cases,
- SWD and FRD between the translated and the real target slices (pooled over cases; the
  intervals resample subjects),
- FID/KID when local feature-extractor weights are given,
- Dice per tissue of the target-domain segmenter on the translated images against
  the source labels (and, once, on the real target images: the ceiling),
- the σ-vs-error Pearson correlation per subject where the translator provides a scale
  map (median over subjects and its interval).

Each row of ``metrics.json`` keeps its summary keys and adds ``cases`` {case: {metric:
value}} and ``ci95`` {metric: [low, high]}. Volumes translated elsewhere are scored by the
same code (:func:`evaluate` with ``translated``).

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
from napari_medtrans.io import Volume, read_volume, require_same_grid, volume_files
from napari_medtrans.progress import Progress
from napari_medtrans.segmenter import Segmenter

#: First phantom seed of held-out evaluation subjects
#: (translators train from seed 0, demo checks use 1000…, segmenters 2000…).
HELD_OUT_SEED = 5000
#: Slices drawn per set for FRD (radiomics extraction is the slow part); the covariance uses
#: at most half as many features, so more slices let more features count.
FRD_MAX_SLICES = 96
#: Bootstrap resamples of subjects for the set metrics (SWD, FRD).
SET_BOOTSTRAP = 50

Say = Callable[[str], None]


@dataclass
class EvalCase:
    """One test subject: the source image, its aligned target image and tissue labels."""

    name: str
    source: Volume | None
    target: Volume | None = None
    labels: np.ndarray | None = None


@dataclass
class EvalSettings:
    """What to compute; ``None`` paths mean "not available" (reported, never faked)."""

    scenarios: Sequence[str] = tuple(metrics.SCENARIOS)
    seed: int = 0
    segmenter: Segmenter | None = None
    label_names: dict[int, str] = field(default_factory=dict)  # tissues scored by Dice (no background)
    fid_weights: Path | None = None
    frd: bool = True
    frd_image_types: Sequence[str] | None = None
    frd_max_slices: int = FRD_MAX_SLICES
    set_bootstrap: int = SET_BOOTSTRAP  # subject resamples for the SWD/FRD intervals
    frd_scenarios: Sequence[str] | None = None  # FRD only under these scenarios (None: all); it is the slow one
    pcc_min_foreground: float = 0.1  # σ–error correlation over slices with ≥ this body fraction (0: all)


@dataclass
class EvaluationResult:
    """All numbers of one evaluation (JSON-ready) plus the arrays behind the plots."""

    models: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    reference: dict[str, Any] = field(default_factory=dict)  # Dice of the segmenter on real targets
    reasons: dict[str, str] = field(default_factory=dict)  # "model/scenario/metric" → why null
    per_slice: dict[str, dict[str, dict[str, list[float | None]]]] = field(default_factory=dict)
    uncertainty: dict[str, dict[str, dict[str, list[float]]]] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The ``metrics.json`` document."""
        return {"models": self.models, "reference": self.reference, "reasons": self.reasons, "settings": self.settings}


# ----------------------------------------------------------------------------- cases


def phantom_cases(
    n: int, source: str, target: str, *, seed: int = HELD_OUT_SEED, shape: tuple[int, int, int] = (32, 128, 128)
) -> list[EvalCase]:
    """``n`` held-out phantom subjects (seeds ``seed``, ``seed+1``, …), aligned source/target."""
    from napari_medtrans.phantom import generate_subject

    cases = []
    for i in range(n):
        subject = generate_subject(seed + i, shape=shape)
        cases.append(
            EvalCase(subject.name, subject.volume(source.lower()), subject.volume(target.lower()), subject.labels)
        )
    return cases


def _volumes(folder: Path) -> dict[str, Path]:
    return volume_files(folder) if folder.is_dir() else {}


def folder_cases(data: str | Path, source: str | None, target: str) -> list[EvalCase]:
    """Cases from ``DATA/<source>/NAME.ext``, ``DATA/<target>/NAME.ext`` and ``DATA/labels/NAME.ext``.

    Folder names are the modality tags in lower case (``t1``, ``ct``); files are matched by
    name. With ``source`` None (translations made elsewhere) the cases are the target
    volumes; otherwise the target and labels folders are optional. Targets and labels must
    lie on the grid of their source (or target) volume.
    """
    data = Path(data)
    key = (source or target).lower()
    anchors = _volumes(data / key)
    if not anchors:
        raise FileNotFoundError(f"no volumes in {data / key} (expected DATA/<modality>/NAME.nii.gz)")
    targets, labels = _volumes(data / target.lower()), _volumes(data / "labels")
    cases = []
    for name, path in anchors.items():
        source_volume = read_volume(path, modality=source) if source else None
        target_volume = read_volume(targets[name], modality=target) if name in targets else None
        label_volume = read_volume(labels[name]) if name in labels else None
        reference = source_volume or target_volume
        if source_volume is not None and target_volume is not None:
            require_same_grid(source_volume, target_volume, what="target image")
        if label_volume is not None:
            require_same_grid(reference, label_volume, what="labels")
        cases.append(
            EvalCase(
                name,
                source_volume,
                target_volume,
                None if label_volume is None else label_volume.array.astype(np.int32),
            )
        )
    return cases


def translated_volumes(folder: str | Path, cases: Sequence[EvalCase]) -> dict[str, Volume]:
    """Volumes translated elsewhere, ``FOLDER/<case>.nii.gz`` or ``.mha``, matched to ``cases`` by name.

    Every case with a target needs one, on the target's grid; other files are ignored.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"translated folder {folder} does not exist")
    files = volume_files(folder)
    needed = [c for c in cases if c.target is not None]
    missing = [c.name for c in needed if c.name not in files]
    if missing:
        raise FileNotFoundError(
            f"{folder} has no translation of case(s) {', '.join(missing[:10])} "
            f"(expected {folder}/<case>.nii.gz or .mha)"
        )
    volumes = {}
    for case in needed:
        volume = read_volume(files[case.name], modality=case.target.modality)
        require_same_grid(case.target, volume, what="translated volume")
        volumes[case.name] = volume
    return volumes


# ----------------------------------------------------------------------------- helpers


def foreground_mask(
    reference: np.ndarray | None, modality: str | None, labels: np.ndarray | None = None
) -> np.ndarray | None:
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
    return foreground_mask(
        None if target is None else target.array, None if target is None else target.modality, case.labels
    )


def _slices_for_frd(
    images: list[np.ndarray], masks: list[np.ndarray], groups: list[int], limit: int
) -> tuple[list, list, list]:
    """At most ``limit`` slices with more than 16 body pixels, evenly spread over the list."""
    keep = [i for i, m in enumerate(masks) if m.sum() > 16]
    chosen = [keep[i] for i in np.linspace(0, len(keep) - 1, min(limit, len(keep))).round().astype(int)] if keep else []
    return [images[i] for i in chosen], [masks[i] for i in chosen], [groups[i] for i in chosen]


def _unavailable(out: dict, reasons: dict, where: str, keys: Sequence[str], reason: str) -> None:
    for key in keys:
        out[key] = None
        reasons[f"{where}/{key}"] = reason


# ----------------------------------------------------------------------------- scoring one row


@dataclass
class Row:
    """What one model (or folder of translations) gave under one scenario, being scored."""

    where: str  # "model/scenario"
    out: dict[str, Any] = field(default_factory=dict)
    cases: dict[str, dict[str, Any]] = field(default_factory=dict)
    ci95: dict[str, list[float] | None] = field(default_factory=dict)


def _paired(
    row: Row, reasons: dict, translated: list[np.ndarray], cases: Sequence[EvalCase], modality: str | None
) -> dict[str, list[float | None]]:
    """Paired metrics per case, their mean over cases and interval; returns the per-slice curves."""
    curves: dict[str, list[float | None]] = {k: [] for k in metrics.SLICE_METRICS}
    scored = 0
    for image, case in zip(translated, cases):
        if case.target is None:
            continue
        try:
            result = metrics.paired_metrics(image, case.target.array, case_mask(case), modality)
        except metrics.MetricUnavailable as exc:
            reasons[f"{row.where}/{case.name}/paired"] = str(exc)
            continue
        scored += 1
        row.cases.setdefault(case.name, {}).update(result.values)
        for key, reason in result.reasons.items():
            reasons[f"{row.where}/{key}"] = reason
        for key in curves:
            curve = result.per_slice.get(key, np.full(image.shape[0], np.nan))
            curves[key] += [None if np.isnan(v) else float(v) for v in curve]
    if not scored:
        _unavailable(
            row.out, reasons, row.where, metrics.PAIRED_METRICS, "no aligned target image (paired metrics need one)"
        )
        return curves
    for key in metrics.PAIRED_METRICS:
        values = [c[key] for c in row.cases.values() if c.get(key) is not None]
        row.out[key] = float(np.mean(values)) if values else None
        row.ci95[key] = _interval(metrics.bootstrap_ci(values))
    return curves


def _interval(ci: tuple[float, float] | None) -> list[float] | None:
    return None if ci is None else [ci[0], ci[1]]


def _distribution(
    row: Row,
    reasons: dict,
    translated: list[np.ndarray],
    cases: Sequence[EvalCase],
    modality: str | None,
    settings: EvalSettings,
    extractor: Callable | None,
) -> None:
    """SWD, FRD and FID/KID between translated and real target slices, pooled over cases,
    with intervals that resample subjects.
    """
    pairs = [(t, c.target.array, case_mask(c)) for t, c in zip(translated, cases) if c.target is not None]
    if not pairs:
        _unavailable(row.out, reasons, row.where, metrics.SET_METRICS, "no real target images to compare with")
        return
    value_range = metrics.intensity_range(
        modality, np.concatenate([p[1].ravel() for p in pairs]), np.concatenate([p[2].ravel() for p in pairs])
    )
    fake = [s for p in pairs for s in p[0]]
    real = [s for p in pairs for s in p[1]]
    masks = [s for p in pairs for s in p[2]]
    groups = [i for i, p in enumerate(pairs) for _ in p[0]]
    try:
        swd = metrics.swd(
            fake,
            real,
            value_range,
            groups=groups,
            reference_groups=groups,
            bootstrap=settings.set_bootstrap,
            seed=settings.seed,
        )
        row.out["swd"], row.ci95["swd"] = swd.value, _interval(swd.ci95)
    except metrics.MetricUnavailable as exc:
        _unavailable(row.out, reasons, row.where, ["swd"], str(exc))
    scenario = row.where.split("/")[-1]
    if settings.frd_scenarios is not None and scenario not in settings.frd_scenarios:
        _unavailable(row.out, reasons, row.where, ["frd"], "FRD not computed under this scenario (frd_scenarios)")
    elif settings.frd:
        fake_s, masks_s, groups_s = _slices_for_frd(fake, masks, groups, settings.frd_max_slices)
        real_s = _slices_for_frd(real, masks, groups, settings.frd_max_slices)[0]
        try:
            frd = metrics.frd(
                fake_s,
                real_s,
                masks_s,
                masks_s,
                groups=groups_s,
                reference_groups=groups_s,
                image_types=settings.frd_image_types,
                seed=settings.seed,
            )
            row.out["frd"], row.ci95["frd"] = frd.value, _interval(frd.ci95)
            row.out["frd_features"] = [frd.features_used, frd.features]
        except metrics.MetricUnavailable as exc:
            _unavailable(row.out, reasons, row.where, ["frd"], str(exc))
    else:
        _unavailable(row.out, reasons, row.where, ["frd"], "FRD switched off (--no-frd)")
    if extractor is None:
        _unavailable(row.out, reasons, row.where, ("fid", "kid"), "no local feature-extractor weights (--fid-weights)")
    else:
        try:
            row.out["fid"], row.out["kid"] = metrics.fid_kid(fake, real, extractor, value_range)
        except metrics.MetricUnavailable as exc:
            _unavailable(row.out, reasons, row.where, ("fid", "kid"), str(exc))


def _dice(
    row: Row, reasons: dict, translated: list[np.ndarray], cases: Sequence[EvalCase], settings: EvalSettings
) -> None:
    """Dice per tissue of the segmenter on each translated image against the source labels;
    the summary is the mean over subjects.
    """
    labelled = [(t, c) for t, c in zip(translated, cases) if c.labels is not None]
    if settings.segmenter is None or not labelled:
        row.out["dice"] = None
        _unavailable(
            row.out,
            reasons,
            row.where,
            ["dice_mean"],
            "no segmenter for the target modality (medtrans train-segmenter)"
            if settings.segmenter is None
            else "no source labels",
        )
        return
    per_case = {}
    for image, case in labelled:
        per_case[case.name] = metrics.dice_per_label(
            settings.segmenter.segment(image).labels, case.labels, settings.label_names
        )
        row.cases.setdefault(case.name, {})["dice_mean"] = metrics.mean_dice(per_case[case.name])
    tissues = list(settings.label_names.values())
    means = {t: [d[t] for d in per_case.values() if d[t] is not None] for t in tissues}
    row.out["dice"] = {t: float(np.mean(v)) if v else None for t, v in means.items()}
    values = [c["dice_mean"] for c in row.cases.values() if c.get("dice_mean") is not None]
    row.out["dice_mean"] = float(np.mean(values)) if values else None
    row.ci95["dice_mean"] = _interval(metrics.bootstrap_ci(values))


def _uncertainty(
    row: Row, result: EvaluationResult, outputs: list, cases: Sequence[EvalCase], min_foreground: float
) -> None:
    """σ–error Pearson correlation per subject (slices whose body covers ≥ ``min_foreground``);
    the summary is the median over subjects with its bootstrap interval. Every slice with body
    is kept for the scatter plot.
    """
    scale, error, foreground, pccs = [], [], [], []
    for output, case in zip(outputs, cases):
        if case.target is None:
            continue
        try:
            agreement = metrics.uncertainty_pcc(
                output.scale, output.image, case.target.array, case_mask(case), min_foreground
            )
        except metrics.MetricUnavailable as exc:
            result.reasons[f"{row.where}/{case.name}/uncertainty_pcc"] = str(exc)
            continue
        scale += agreement.mean_scale.tolist()
        error += agreement.mean_error.tolist()
        foreground += agreement.foreground.tolist()
        pcc = None if np.isnan(agreement.pcc) else agreement.pcc
        row.cases.setdefault(case.name, {})["uncertainty_pcc"] = pcc
        if pcc is not None:
            pccs.append(pcc)
    name, scenario = row.where.split("/")
    result.uncertainty.setdefault(name, {})[scenario] = {"scale": scale, "error": error, "foreground": foreground}
    if not pccs:
        _unavailable(row.out, result.reasons, row.where, ["uncertainty_pcc"], "no subject with a σ–error correlation")
        return
    row.out["uncertainty_pcc"] = float(np.median(pccs))
    row.ci95["uncertainty_pcc"] = _interval(metrics.bootstrap_ci(pccs, np.median))


# ----------------------------------------------------------------------------- evaluation


@dataclass
class Outputs:
    """Translated volumes of one row, in case order; ``scales`` where the translator gives σ."""

    images: list[np.ndarray]
    scales: list[np.ndarray] | None = None

    @property
    def with_scale(self) -> list[Any]:
        """Objects with ``image`` and ``scale`` attributes, for :func:`_uncertainty`."""
        return [Translated(i, s) for i, s in zip(self.images, self.scales or [])]


@dataclass
class Translated:
    """One translated volume and its scale map."""

    image: np.ndarray
    scale: np.ndarray


def score(
    result: EvaluationResult,
    name: str,
    scenario: str,
    outputs: Outputs,
    cases: Sequence[EvalCase],
    modality: str | None,
    settings: EvalSettings,
    extractor: Callable | None = None,
    progress: Say | None = None,
) -> None:
    """Every metric of one row (a model or a folder of translations under one scenario) into ``result``."""
    say = progress or (lambda message: None)
    row = Row(f"{name}/{scenario}")
    curves = _paired(row, result.reasons, outputs.images, cases, modality)
    say(f"{name} {scenario}: distribution metrics")
    _distribution(row, result.reasons, outputs.images, cases, modality, settings, extractor)
    _dice(row, result.reasons, outputs.images, cases, settings)
    if outputs.scales is not None:
        _uncertainty(row, result, outputs.with_scale, cases, settings.pcc_min_foreground)
    row.out["cases"], row.out["ci95"] = row.cases, row.ci95
    result.models.setdefault(name, {})[scenario] = row.out
    result.per_slice.setdefault(name, {})[scenario] = curves


def evaluate(
    translators: dict[str, Translator],
    cases: Sequence[EvalCase],
    settings: EvalSettings,
    progress: Progress | None = None,
    translated: dict[str, dict[str, Volume]] | None = None,
    modality: str | None = None,
) -> EvaluationResult:
    """Run every translator on every case under every scenario and compute all metrics.

    ``translated`` adds rows of volumes translated elsewhere ({row name: {case name: volume}},
    scored under scenario GN0 only: no model to feed noisy inputs to); their target modality is
    ``modality`` (default: the translators'). ``progress`` counts the rows and notes each stage.
    """
    bar = progress or Progress(None)
    say = bar.note
    extractor = metrics.feature_extractor_from_file(settings.fid_weights) if settings.fid_weights else None
    result = EvaluationResult(
        settings={
            "scenarios": list(settings.scenarios),
            "seed": settings.seed,
            "cases": [c.name for c in cases],
            "frd": settings.frd,
            "frd_image_types": settings.frd_image_types,
            "frd_max_slices": settings.frd_max_slices,
            "frd_scenarios": list(settings.frd_scenarios or settings.scenarios),
            "fid_weights": str(settings.fid_weights) if settings.fid_weights else None,
            "pcc_min_foreground": settings.pcc_min_foreground,
            "conventions": CONVENTIONS,
        }
    )
    _reference_dice(result, cases, settings)
    bar.begin("evaluate", len(settings.scenarios) * len(translators) + len(translated or {}), unit="row")
    for s_index, scenario in enumerate(settings.scenarios):
        seeds = [settings.seed + 1000 * s_index + i for i in range(len(cases))]
        inputs = (
            [
                c.source.with_array(metrics.apply_scenario(scenario, c.source.array, seed))
                for c, seed in zip(cases, seeds)
            ]
            if translators
            else []
        )
        for name, translator in translators.items():
            say(f"{name} {scenario}: translating {len(cases)} volume(s)")
            conditioned = translator.metadata.label_classes > 0  # SPADE: the source's label map goes in too
            made = [
                translator.translate_volume(v, labels=c.labels if conditioned else None) for v, c in zip(inputs, cases)
            ]
            outputs = Outputs([o.image for o in made], [o.scale for o in made] if translator.provides_scale else None)
            score(result, name, scenario, outputs, cases, translator.metadata.target, settings, extractor, say)
            bar.update(sum(map(len, result.models.values())))
    for name, volumes in (translated or {}).items():
        say(f"{name}: scoring {len(volumes)} translated volume(s)")
        target = modality or next(iter(translators.values())).metadata.target
        kept = [c for c in cases if c.name in volumes]
        score(
            result, name, "GN0", Outputs([volumes[c.name].array for c in kept]), kept, target, settings, extractor, say
        )
        bar.update(sum(map(len, result.models.values())))
    bar.close()
    return result


CONVENTIONS = (
    "MAE unclipped in the body mask (SynthRAD 2023); PSNR clipped to the CT range [-1024, 3000] HU; SSIM "
    "SynthRAD 2023-style (clip, fill outside the mask with -1024, +1024 shift, one 3-D 7×7×7 map cropped by "
    "3 voxels, mean over the mask); impulse noise IP replaces pixels by values uniform in the range (UAPI); "
    "SWD with the low-pass level (Karras et al.), reference-normalised descriptors; FRDv1 features with a "
    "full-rank covariance (≥ 2 slices per feature) and a subject bootstrap; per-subject values, mean over "
    "subjects, 95 % bootstrap intervals over subjects; σ PCC per subject, median over subjects."
)
"""The metric conventions in one sentence, for the report header and metrics.json."""


def _reference_dice(result: EvaluationResult, cases: Sequence[EvalCase], settings: EvalSettings) -> None:
    """Dice of the segmenter on the real target images: the ceiling for translated ones."""
    labelled = [c for c in cases if c.target is not None and c.labels is not None]
    if not labelled or settings.segmenter is None:
        result.reference = {"dice_mean": None, "dice": None}
        result.reasons["reference/dice"] = "no segmenter or no labelled real target images"
        return
    row = Row("reference/real")
    _dice(row, result.reasons, [c.target.array for c in labelled], labelled, settings)
    result.reference = {"dice_mean": row.out["dice_mean"], "dice": row.out["dice"], "ci95": row.ci95}


# ----------------------------------------------------------------------------- one volume (the widget)


@dataclass
class VolumeComparison:
    """Paired metrics of one translated volume against its reference, and Dice where possible.

    ``ceiling``: the segmenter's Dice on the reference image itself, the best the translation can reach.
    """

    paired: metrics.PairedMetrics
    dice: dict[str, float | None] | None = None
    ceiling: dict[str, float | None] | None = None
    reasons: dict[str, str] = field(default_factory=dict)


def compare_volume(
    translated: np.ndarray,
    reference: np.ndarray,
    *,
    modality: str | None,
    labels: np.ndarray | None = None,
    segmenter: Segmenter | None = None,
) -> VolumeComparison:
    """Paired metrics (body mask: labels > 0, else a threshold of ``reference``), segmenter Dice and its ceiling."""
    reference = np.asarray(reference)
    mask = foreground_mask(reference, modality, labels)
    paired = metrics.paired_metrics(translated, reference, mask, modality)
    comparison = VolumeComparison(paired, reasons=dict(paired.reasons))
    if labels is None or segmenter is None:
        comparison.reasons["dice"] = "choose a labels layer" if labels is None else f"no segmenter for {modality}"
        return comparison
    names = {k: v for k, v in segmenter.metadata.labels.items() if k}
    comparison.dice = metrics.dice_per_label(segmenter.segment(translated).labels, labels, names)
    comparison.ceiling = metrics.dice_per_label(segmenter.segment(reference).labels, labels, names)
    return comparison
