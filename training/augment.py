"""Training augmentations for real T1s: skull stripping, small fields of view, intensity, tissue contrast, CSF pools.

Phantom-trained translators read tissue from the whole head around it (air, scalp, skull, brain); a
skull-stripped template or a scan of the central brain lacks that context. Eight options of
:class:`~napari_medtrans.contract.DataConfig`, each a probability per training slice (0, the default,
leaves the batches and the sampler's random stream exactly as without them):

- ``augment_skull_strip``: the source keeps only the brain (grey and white matter, CSF; needs label
  maps, i.e. the phantom) and is normalised again as inference normalises a skull-stripped volume; the
  target is air outside the brain of its own label map, so a stripped input has a defined answer.
- ``augment_fov_crop``: only a random box of the head is seen (a slab of slices and an in-plane
  rectangle inside the head's bounding box); source and target are background outside it, and the
  source is normalised again on the box alone, as inference normalises a scan of that field of view.
- ``augment_intensity``: a random gamma, global contrast and smooth multiplicative bias field on the
  source, about as large as what separates real T1s from the phantom's after normalisation.
- ``augment_tissue_contrast``: an independent gain on each brain tissue of the source (grey and white
  matter, CSF; needs label maps), so the grey/white contrast varies around the phantom's (its GM/WM ratio
  is 0.68, the MNI152 template's about 0.77) and the network learns to read tissue from more than one
  fixed intensity; and a darkening gain on cortical bone, which gives almost no T1 signal in a real scan
  but as much as CSF in the phantom (0.39 and 0.41 of the head's median), so that the network does not
  learn "as dark as CSF" as "bone". The target is unchanged: the tissue, not its T1 signal, sets the CT value.
- ``augment_csf_pools``: one to three ellipsoids deep in the brain, turned in-plane and half of them as
  mirrored pairs either side of the midline, become CSF in source, target and labels (needs label maps
  and paired data), as enlarged ventricles and basal cisterns do in a real brain. The phantom's
  ventricles are small, its only dark midline structures are the sinuses, and a grey band between two
  dark ones is its skull (marrow between two tables), so a real T1's third ventricle, cisterns and septum
  came out as bone and air. A pool takes the subject's own CSF value and noise (median and robust spread
  of its CSF, in source and target) and the phantom's partial-volume blur.
- ``augment_dark_pools``: a view's pools are darker in the source than the subject's CSF (the target keeps
  CSF HU). Normalised by a brain-only field of view, a real T1's ventricles sit below the phantom's CSF
  (nibabel's ``anatomical.nii``: s = (x + 1) / 2 about 0.06–0.14 against 0.18–0.19), where the phantom
  shows only cortical bone; deep in the brain the pools say that dark is CSF there.
- ``augment_pool_septum``: a view's mirrored pairs of pools lie in white matter (source, target and labels): an
  ellipsoid of the subject's own white matter from one pool's centre to the other's, painted before the pools,
  so a wall of white matter stands between them. The phantom's midline is grey matter either side of a CSF
  cleft, so without it the wall of a pair is grey and dark, never the bright band of a real septum under the
  corpus callosum; a bright band between two dark ones was still only the skull's marrow between its tables.
- ``augment_grey_septum``: a view's septa are grey matter instead of white, as thin as a real septum reads (the
  MNI152's about 0.7 of the white matter around it, much like the phantom's grey/white ratio 0.68).

A view also carries the step between its context slices, drawn from ``data.context_strides`` (not a
probability: a tuple of steps, ``(1,)`` by default, which draws nothing).

Label maps follow the target: label 0 (air) wherever the target became air. Normalising again works
on network values: every MR intensity model maps a scanner's values affinely (then clips) to [-1, 1],
so fitting the source's model to ``x + 1`` finds the mapping inference would fit to the stripped or
cropped volume itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
from scipy import ndimage

from napari_medtrans.intensity import IntensityMapping, IntensityModel
from napari_medtrans.phantom.anatomy import BONE, CSF, GM, WM
from napari_medtrans.phantom.render import blur
from training.config import ConfigError, DataConfig
from training.data import FOREGROUND_LEVEL, Subject, context_stack

BRAIN_LABELS = (GM, WM, CSF)
"""Phantom labels a skull-stripped T1 keeps."""
FOV_SIDE = (0.3, 0.8)
"""In-plane side of a field-of-view box, as a fraction of the head's bounding box (rows and columns drawn apart)."""
FOV_HALF_DEPTH = (3, 12)
"""Slices a field-of-view box reaches on each side of the sampled slice (drawn uniformly, inclusive)."""
GAMMA = (0.7, 1.4)
"""Range of the gamma on source values in [0, 1] (drawn log-uniformly): grey/white ratio 0.68 → 0.58–0.76."""
CONTRAST = (0.8, 1.25)
"""Range of the global contrast factor (log-uniform): the MNI152 brain's tissues sit ×0.85 of the phantom's."""
BIAS = 0.15
"""Largest coefficient of the smooth log bias field a·x + b·y + c·x·y over the window (x, y in [-1, 1])."""
TISSUE_GAINS: dict[int, tuple[float, float]] = {GM: (0.87, 1.15), WM: (0.87, 1.15), CSF: (0.87, 1.15), BONE: (0.2, 1.0)}
"""Range of the source gain per tissue (log-uniform, drawn apart): the GM/WM ratio 0.68 spans 0.51–0.90;
cortical bone goes from the phantom's CSF-like signal down to a fifth of it."""
POOLS = (1, 3)
"""Fewest and most CSF pools of one view."""
POOL_SEMI_AXES = ((0.75, 2.5), (1.5, 12.0), (1.5, 12.0))
"""Range of a pool's semi-axes (slices, rows, columns; voxels, log-uniform, drawn apart): at the phantom's
4 × 1.2 × 1.2 mm, 3–10 mm through the slices and 2–14 mm in-plane (slits to round pools)."""
POOL_DEPTH = 5.0
"""Least in-plane distance (voxels) of a pool's centre from the brain's edge."""
POOL_ANGLE = np.pi / 4
"""Largest in-plane rotation of a pool (radians, drawn uniformly either way)."""
POOL_PAIRED = 0.5
"""Probability that a pool comes with its mirror image across the brain's midline, a thin wall of brain
between them, as the lateral ventricles lie either side of the septum (a grey band between two dark
spaces is otherwise only ever the phantom's skull: marrow between two tables)."""
POOL_GAP = (1.0, 5.0)
"""Range of the wall between the pools of a pair (voxels, uniform)."""
DARK_POOL_GAIN = (0.3, 1.0)
"""Range of the gain on a dark pool's source signal s = (x + 1) / 2 (log-uniform): the phantom's CSF at s 0.18–0.19
goes down to 0.06, as dark as a real T1's ventricles after normalisation."""


@dataclass(frozen=True)
class Pool:
    """A CSF pool: an ellipsoid with ``centre`` (slice, row, column) and ``semi_axes`` (slices, rows, columns)
    in voxels, turned by ``angle`` (radians) in the slice plane.
    """

    centre: tuple[float, float, float]
    semi_axes: tuple[float, float, float]
    angle: float = 0.0

    @property
    def reach(self) -> tuple[float, float, float]:
        """Half the extent of the pool along slices, rows and columns."""
        z, a, b = self.semi_axes
        c, s = abs(np.cos(self.angle)), abs(np.sin(self.angle))
        return z, float(np.hypot(a * c, b * s)), float(np.hypot(a * s, b * c))

    def mirrored(self, column: float) -> Pool:
        """This pool reflected across the column ``column`` (rows and slices kept)."""
        z, row, col = self.centre
        return Pool((z, row, 2 * column - col), self.semi_axes, -self.angle)

    def inside(self, grid: Sequence[np.ndarray]) -> np.ndarray:
        """Where the open grid ``grid`` (slices, rows, columns; voxel indices) lies inside the pool."""
        (z, row, col), (az, a, b) = self.centre, self.semi_axes
        c, s = np.cos(self.angle), np.sin(self.angle)
        dr, dc = grid[1] - row, grid[2] - col
        u, v = dr * c + dc * s, dc * c - dr * s
        return ((grid[0] - z) / az) ** 2 + (u / a) ** 2 + (v / b) ** 2 < 1


@dataclass(frozen=True)
class View:
    """What one training slice shows: the brain only, a box of the head, and the source's intensity change.

    ``box`` is (first slice, last slice + 1, top, bottom, left, right) on the subject's full slices.
    """

    strip: bool = False
    box: tuple[int, int, int, int, int, int] | None = None
    gamma: float = 1.0
    contrast: float = 1.0
    bias: tuple[float, float, float] | None = None
    tissue_gain: tuple[float, ...] | None = None
    """Gain of each tissue of :data:`TISSUE_GAINS` on the source (in its order), or None."""
    pools: tuple[Pool, ...] = ()
    """CSF pools painted into source, target and labels (:meth:`SourceAugmentation.with_pools`)."""
    pool_seed: int = 0
    """Seed of the pools' noise."""
    pool_gain: float = 1.0
    """Gain of the pools' source signal s = (x + 1) / 2 (below 1: darker than the subject's CSF)."""
    septa: tuple[Pool, ...] = ()
    """Ellipsoids of ``septum_tissue`` painted before the pools, one per mirrored pair (:func:`csf_pools`)."""
    septum_tissue: int = WM
    """The septa's label: white (or grey) matter."""
    stride: int = 1
    """Slices between the context slices of the source (``data.context_strides``)."""

    @property
    def masks(self) -> bool:
        """True when part of the image becomes background."""
        return self.strip or self.box is not None


class SourceAugmentation:
    """Draws and applies :class:`View` s for the slices of a :class:`~training.data.SliceSampler`.

    Args:
        cfg: data options (the ``augment_*`` probabilities).
        model: the source's intensity model (how inference normalises a volume).
        aligned: the cohort pairs each source with its own anatomy's target.
        labelled: every training subject has label maps.
    """

    def __init__(self, cfg: DataConfig, model: IntensityModel, *, aligned: bool, labelled: bool) -> None:
        self.p_strip, self.p_box, self.p_intensity, self.p_tissue = (
            cfg.augment_skull_strip,
            cfg.augment_fov_crop,
            cfg.augment_intensity,
            cfg.augment_tissue_contrast,
        )
        self.p_pools, self.p_dark, self.p_septum, self.p_grey = (
            cfg.augment_csf_pools,
            cfg.augment_dark_pools,
            cfg.augment_pool_septum,
            cfg.augment_grey_septum,
        )
        for name, p in description(cfg, every=True).items():
            if not 0 <= p <= 1:
                raise ConfigError(f"data.augment_{name} is a probability in [0, 1], got {p}")
        for name, p in (("skull_strip", self.p_strip), ("tissue_contrast", self.p_tissue), ("csf_pools", self.p_pools)):
            if p > 0 and not labelled:
                raise ConfigError(f"data.augment_{name} needs label maps of every training subject (the phantom)")
        if (self.p_strip > 0 or self.p_box > 0 or self.p_pools > 0) and not aligned:
            raise ConfigError(
                "data.augment_skull_strip, data.augment_fov_crop and data.augment_csf_pools change the target too: "
                "they need paired (or, the first two, misaligned) data"
            )
        for name, p, needed, p_needed in (
            ("dark_pools", self.p_dark, "csf_pools", self.p_pools),  # darkens the pools
            ("pool_septum", self.p_septum, "csf_pools", self.p_pools),  # walls the pools' pairs
            ("grey_septum", self.p_grey, "pool_septum", self.p_septum),  # greys the septa
        ):
            if p > 0 and p_needed == 0:
                raise ConfigError(
                    f"data.augment_{name} changes what data.augment_{needed} paints: it needs data.augment_{needed} > 0"
                )
        self.strides = tuple(cfg.context_strides)  # checked with the other context options (data.check_context)
        self.model = model
        self._brain_mapping: dict[int, IntensityMapping] = {}
        self._tissue: dict[tuple[int, int], tuple[tuple[float, float], tuple[float, float]]] = {}

    def draw(self, rng: np.random.Generator, source: np.ndarray, z: int, labels: np.ndarray | None = None) -> View:
        """The view of slice ``z`` of ``source`` (normalised, slice axis first; ``labels``: its label map, needed
        for CSF pools); draws only for options that are on.
        """
        strip = self.p_strip > 0 and rng.random() < self.p_strip
        box = fov_box(rng, source, z) if self.p_box > 0 and rng.random() < self.p_box else None
        stride = int(rng.choice(self.strides)) if len(self.strides) > 1 else self.strides[0]
        view = View(strip, box, stride=stride)
        if self.p_intensity > 0 and rng.random() < self.p_intensity:
            gamma, contrast = np.exp(rng.uniform(*np.log(GAMMA))), np.exp(rng.uniform(*np.log(CONTRAST)))
            a, b, c = rng.uniform(-BIAS, BIAS, 3)
            view = replace(view, gamma=float(gamma), contrast=float(contrast), bias=(float(a), float(b), float(c)))
        if self.p_tissue > 0 and rng.random() < self.p_tissue:
            low, high = np.log(np.array(list(TISSUE_GAINS.values()))).T
            gains = np.exp(rng.uniform(low, high))
            view = replace(view, tissue_gain=tuple(float(g) for g in gains))
        if self.p_pools > 0 and rng.random() < self.p_pools:
            pools, septa = csf_pools(rng, labels, z)
            view = replace(view, pools=pools, pool_seed=int(rng.integers(2**31)))
            if view.pools and self.p_dark > 0 and rng.random() < self.p_dark:
                view = replace(view, pool_gain=float(np.exp(rng.uniform(*np.log(DARK_POOL_GAIN)))))
            if septa and self.p_septum > 0 and rng.random() < self.p_septum:
                view = replace(view, septa=septa)
                if self.p_grey > 0 and rng.random() < self.p_grey:
                    view = replace(view, septum_tissue=GM)
        return view

    def with_pools(self, view: View, key: int, subject: Subject) -> Subject:
        """``subject`` with ``view``'s CSF pools in its source, target and labels (itself when there are none),
        painted over its septa (white or grey matter) when it has them; the source's pools scaled by
        ``view.pool_gain`` on s = (x + 1) / 2.

        ``key`` identifies the subject (its tissue statistics are cached); ``truth`` is left as it was.
        """
        if not view.pools:
            return subject
        labels = subject.source_labels
        if labels is None or subject.source is None or subject.target is None:
            raise ConfigError("CSF pools need a subject with source, target and label maps")
        rng = np.random.default_rng(view.pool_seed)
        images, pooled = [subject.source.copy(), subject.target.copy()], labels.copy()
        for shapes, tissue, source_gain in ((view.septa, view.septum_tissue, 1.0), (view.pools, CSF, view.pool_gain)):
            if not shapes:
                continue
            box, share = pool_share(shapes, labels)
            if (key, tissue) not in self._tissue:  # the subject's own values of the tissue, in source and target
                if subject.target_labels is None or not np.array_equal(labels, subject.target_labels):
                    raise ConfigError(f"data.augment_csf_pools needs paired data; {subject.name}'s target is moved")
                statistics = (
                    tissue_statistics(subject.source, labels, tissue),
                    tissue_statistics(subject.target, labels, tissue),
                )
                self._tissue[key, tissue] = statistics
            for image, (value, spread), gain in zip(images, self._tissue[key, tissue], (source_gain, 1)):
                part = image[box]
                fill = value + spread * rng.standard_normal(part.shape).astype(np.float32)
                if gain != 1:
                    fill = (fill + np.float32(1)) * np.float32(gain) - np.float32(1)
                image[box] = part + share * (fill - part)
            pooled[box] = np.where(share >= 0.5, tissue, pooled[box])
        return replace(subject, source=images[0], target=images[1], source_labels=pooled, target_labels=pooled)

    def source(self, view: View, key: int, volume: np.ndarray, labels: np.ndarray | None, z: int, k: int) -> np.ndarray:
        """The (k, H, W) context stack of slice ``z`` as ``view`` shows it, normalised again where it masks.

        ``key`` identifies the subject (its brain-only mapping is cached); intensity changes come later
        (:meth:`change_intensity`, on the window); tissue gains are applied here, where the labels are.
        """
        stack = context_stack(volume, z, k, view.stride)
        if not (view.masks or view.tissue_gain):
            return stack
        ids = context_stack(np.arange(volume.shape[0]), z, k, view.stride)
        stack_labels = None if labels is None else labels[ids]
        if view.masks:
            keep = self.keep(view, stack_labels, ids, volume.shape)
            mapping = self._mapping(view, key, volume, labels)
            stack = np.where(keep, mapping.to_network(stack + np.float32(1.0)), np.float32(-1.0))
        if view.tissue_gain:
            stack = tissue_contrast(stack, stack_labels, view.tissue_gain)
        return stack

    def _mapping(self, view: View, key: int, volume: np.ndarray, labels: np.ndarray | None) -> IntensityMapping:
        """The source model fitted to what ``view`` keeps of the whole volume (network values + 1)."""
        if view.box is None:  # the brain alone: the same for every slice of the subject
            if key not in self._brain_mapping:
                self._brain_mapping[key] = self.model.fit(np.where(brain(labels), volume + np.float32(1.0), 0))
            return self._brain_mapping[key]
        z0, z1, r0, r1, c0, c1 = view.box
        region = volume[z0:z1, r0:r1, c0:c1] + np.float32(1.0)
        if view.strip:
            region = np.where(brain(None if labels is None else labels[z0:z1, r0:r1, c0:c1]), region, 0)
        return self.model.fit(region)

    @staticmethod
    def keep(view: View, labels: np.ndarray | None, ids: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
        """Where ``view`` keeps the image on slices ``ids`` of (H, W) ``shape`` (``labels``: their label maps,
        needed when it strips): a boolean (len(ids), H, W) array; the rest becomes background.
        """
        keep = brain(labels) if view.strip else np.ones((len(ids), *shape[-2:]), bool)
        if view.box is not None:
            z0, z1, r0, r1, c0, c1 = view.box
            inside = np.zeros(keep.shape[1:], bool)
            inside[r0:r1, c0:c1] = True
            keep &= inside[None] & ((ids >= z0) & (ids < z1))[:, None, None]
        return keep

    def change_intensity(self, view: View, window: np.ndarray) -> np.ndarray:
        """The source ``window`` (C, S, S, network units) with ``view``'s gamma, contrast and bias field.

        Works on s = (x + 1) / 2 in [0, 1] (background stays 0): s ← clip(contrast · s^gamma · bias, 0, 1).
        """
        if view.bias is None:
            return window
        size_y, size_x = window.shape[-2:]
        y, x = np.meshgrid(np.linspace(-1, 1, size_y), np.linspace(-1, 1, size_x), indexing="ij")
        a, b, c = view.bias
        field = np.exp(a * x + b * y + c * x * y).astype(np.float32)
        s = np.clip((window + 1) / 2, 0, 1) ** np.float32(view.gamma) * np.float32(view.contrast) * field
        return (np.clip(s, 0, 1) * 2 - 1).astype(np.float32)


def tissue_contrast(stack: np.ndarray, labels: np.ndarray | None, gains: tuple[float, ...]) -> np.ndarray:
    """``stack`` (network units) with each tissue of :data:`TISSUE_GAINS` scaled by its gain on s = (x + 1) / 2, clipped."""
    if labels is None:
        raise ConfigError("a tissue contrast change needs a label map")
    factor = np.ones(stack.shape, np.float32)
    for label, gain in zip(TISSUE_GAINS, gains):
        factor[labels == label] = gain
    s = np.clip((stack + 1) / 2 * factor, 0, 1)
    return (s * 2 - 1).astype(np.float32)


def brain(labels: np.ndarray | None) -> np.ndarray:
    """Where a label map shows brain (:data:`BRAIN_LABELS`)."""
    if labels is None:
        raise ConfigError("skull stripping needs a label map")
    return np.isin(labels, BRAIN_LABELS)


def csf_pools(rng: np.random.Generator, labels: np.ndarray | None, z: int) -> tuple[tuple[Pool, ...], tuple[Pool, ...]]:
    """:data:`POOLS` random pools centred on slice ``z`` at least :data:`POOL_DEPTH` inside the brain of
    ``labels`` (none when the slice shows too little brain), semi-axes drawn from :data:`POOL_SEMI_AXES`,
    turned by up to :data:`POOL_ANGLE`; each, with probability :data:`POOL_PAIRED`, moved beside the brain's
    midline (the middle of the columns of its deep part on slice ``z``) with its mirror image on the other side.
    Also the septum of each pair (drawing nothing more): an upright ellipsoid on the midline that reaches the
    centres of both pools, as deep through the slices and as tall in the rows as they are.
    """
    inside = brain(None if labels is None else labels[z])
    rows, cols = np.nonzero(ndimage.distance_transform_edt(inside) >= POOL_DEPTH)
    if rows.size == 0:
        return (), ()
    midline = (cols.min() + cols.max()) / 2
    low, high = np.log(np.array(POOL_SEMI_AXES)).T
    pools: list[Pool] = []
    septa: list[Pool] = []
    for pick in rng.integers(rows.size, size=int(rng.integers(POOLS[0], POOLS[1] + 1))):
        axes = np.exp(rng.uniform(low, high))
        pool = Pool(
            (float(z), float(rows[pick]), float(cols[pick])),
            (float(axes[0]), float(axes[1]), float(axes[2])),
            float(rng.uniform(-POOL_ANGLE, POOL_ANGLE)),
        )
        if rng.random() < POOL_PAIRED:
            side = 1.0 if pool.centre[2] >= midline else -1.0
            offset = pool.reach[2] + rng.uniform(*POOL_GAP) / 2
            pool = Pool((pool.centre[0], pool.centre[1], float(midline + side * offset)), pool.semi_axes, pool.angle)
            pools.append(pool.mirrored(midline))
            depth, height, _ = pool.reach
            septa.append(Pool((pool.centre[0], pool.centre[1], float(midline)), (depth, height, float(offset))))
        pools.append(pool)
    return tuple(pools), tuple(septa)


def pool_share(pools: tuple[Pool, ...], labels: np.ndarray) -> tuple[tuple[slice, slice, slice], np.ndarray]:
    """The box around ``pools`` (with room for the blur) and, in it, the share of each voxel that is pool:
    the ellipsoids inside the brain of ``labels``, blurred as the phantom renders (float32 in [0, 1]).
    """
    centres, reach = np.array([p.centre for p in pools]), np.array([p.reach for p in pools])
    low = np.maximum(np.floor(centres - reach).min(axis=0).astype(int) - 2, 0)
    high = np.minimum(np.ceil(centres + reach).max(axis=0).astype(int) + 3, labels.shape)
    box = tuple(slice(int(a), int(b)) for a, b in zip(low, high))
    grid = np.ogrid[box]
    inside = np.zeros(tuple(b - a for a, b in zip(low, high)), bool)
    for pool in pools:
        inside |= pool.inside(grid)
    return box, blur((inside & brain(labels[box])).astype(np.float32))  # type: ignore[return-value]


def tissue_statistics(image: np.ndarray, labels: np.ndarray, tissue: int = CSF) -> tuple[float, float]:
    """Median and robust spread (1.4826 × the median absolute deviation) of ``image`` in label ``tissue`` of
    ``labels`` away from other tissues (the label eroded in-plane by one voxel, or all of it when that leaves none).
    """
    mask = labels == tissue
    core = ndimage.binary_erosion(mask, structure=np.array([[[0, 1, 0], [1, 1, 1], [0, 1, 0]]], bool))
    values = image[core if core.any() else mask]
    if values.size == 0:
        raise ConfigError(f"CSF pools need a label map with label {tissue}")
    median = float(np.median(values))
    return median, float(1.4826 * np.median(np.abs(values - median)))


def fov_box(rng: np.random.Generator, source: np.ndarray, z: int) -> tuple[int, int, int, int, int, int]:
    """A random field-of-view box around slice ``z``: a slab of slices and a rectangle inside the head's
    bounding box on that slice (the whole slice when it shows no head), see :data:`FOV_SIDE`.
    """
    half = int(rng.integers(FOV_HALF_DEPTH[0], FOV_HALF_DEPTH[1] + 1))
    z0, z1 = max(0, z - half), min(source.shape[0], z + half + 1)
    head = source[z] > FOREGROUND_LEVEL
    rows, cols = np.flatnonzero(head.any(axis=1)), np.flatnonzero(head.any(axis=0))
    if rows.size == 0:
        rows, cols = np.arange(source.shape[1]), np.arange(source.shape[2])
    (r0, r1), (c0, c1) = (_span(rng, int(ids[0]), int(ids[-1]) + 1) for ids in (rows, cols))
    return z0, z1, r0, r1, c0, c1


def _span(rng: np.random.Generator, lo: int, hi: int) -> tuple[int, int]:
    """A random interval inside [lo, hi) whose length is a :data:`FOV_SIDE` fraction of it (at least 1)."""
    length = max(1, int(round(rng.uniform(*FOV_SIDE) * (hi - lo))))
    start = int(rng.integers(lo, hi - length + 1))
    return start, start + length


def description(cfg: DataConfig, *, every: bool = False) -> dict[str, float]:
    """The augmentation probabilities that are on (``{}`` when none), for the translator metadata;
    with ``every``, all of them.
    """
    found = {
        "skull_strip": cfg.augment_skull_strip,
        "fov_crop": cfg.augment_fov_crop,
        "intensity": cfg.augment_intensity,
        "tissue_contrast": cfg.augment_tissue_contrast,
        "csf_pools": cfg.augment_csf_pools,
        "dark_pools": cfg.augment_dark_pools,
        "pool_septum": cfg.augment_pool_septum,
        "grey_septum": cfg.augment_grey_septum,
    }
    return {name: float(p) for name, p in found.items() if every or p > 0}
