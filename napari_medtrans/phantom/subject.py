"""Phantom subjects: synthesis from a seed, and misaligned copies (RegGAN noise levels).

A subject is a function of physical space: each voxel centre p is mapped to the
canonical anatomical frame by the subject's pose (rotation, translation) and a
smooth elastic deformation, and the anatomy and its texture are evaluated
there. A misaligned copy puts one more random affine + elastic map in front of
that chain and renders again; the scanner-frame effects (MR bias field, noise)
stay where they are, so level 0 reproduces the subject exactly.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

import numpy as np

from ..io import IDENTITY_DIRECTION, Volume
from .anatomy import Anatomy
from .fields import Affine, FourierField, Grid, Warp, compose, rotation
from .render import MODALITIES, Appearance, blur, population_base, render_ct, render_mr

Kind = Literal["t1", "t2", "ct", "labels"]
MODALITY_TAGS: dict[str, str | None] = {"t1": "T1", "t2": "T2", "ct": "CT", "labels": None}
DEFAULT_SHAPE = (32, 128, 128)
MAX_LEVEL = 5

# Misalignment at level L (each parameter uniform in ±max): see ``misalign``.
_MISALIGN_PER_LEVEL = {
    "rotation_deg": (0.4, 0.4, 2.0),  # uniform in ±L×, about x, y, z (in-plane is about z)
    "translation_mm": (2.0, 2.0, 0.4),  # uniform in ±L×, along x, y, z
    "scale": 0.02,  # uniform in ±L×, isotropic, relative
    "elastic_mm": (0.8, 0.8, 0.2),  # L× the σ of the smooth displacement along x, y, z
}
MISALIGN_ELASTIC_WAVELENGTH_MM = 40.0


@dataclass
class PhantomSubject:
    """One phantom head: tissue labels and its T1, T2 and CT renderings on one grid."""

    name: str
    labels: np.ndarray  # uint8, values of TISSUES
    t1: np.ndarray  # float32, arbitrary units
    t2: np.ndarray  # float32, arbitrary units
    ct: np.ndarray  # float32, HU
    spacing: tuple[float, float, float]  # (x, y, z) mm
    origin: tuple[float, float, float]  # (x, y, z) mm
    direction: tuple[float, ...]
    seed: int
    misalignment: dict | None = None  # parameters drawn by ``misalign``; None if not moved

    @property
    def shape(self) -> tuple[int, int, int]:
        """Array shape (z, y, x)."""
        return self.labels.shape

    def volume(self, kind: Kind) -> Volume:
        """One image (``"t1"``, ``"t2"``, ``"ct"``) or the labels as a :class:`Volume`."""
        if kind not in MODALITY_TAGS:
            raise ValueError(f"unknown phantom image {kind!r}; choose one of {', '.join(MODALITY_TAGS)}")
        return Volume(
            getattr(self, kind),
            self.spacing,
            self.origin,
            self.direction,
            modality=MODALITY_TAGS[kind],
            metadata={"phantom": {"subject": self.name, "seed": self.seed, "misalignment": self.misalignment}},
        )


def _check_shape(shape) -> tuple[int, int, int]:
    shape = tuple(int(n) for n in shape)
    if len(shape) != 3 or min(shape) < 4:
        raise ValueError(f"phantom shape must be 3 sizes (z, y, x) of at least 4, got {shape}")
    return shape


def _check_seed(seed) -> int:
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"a phantom seed must be a non-negative integer, got {seed!r}")
    return int(seed)


def _subject_stages(rng: np.random.Generator) -> tuple[Anatomy, list[Warp]]:
    """A subject's anatomy and the map from scanner space to its canonical frame."""
    anatomy = Anatomy.sample(rng)
    angles = (rng.uniform(-8, 8), rng.uniform(-4, 4), rng.uniform(-7, 7))
    shift = np.array([rng.uniform(-5, 5), rng.uniform(-5, 5), rng.uniform(-4, 4)])
    inverse_rotation = rotation(angles).T
    pose = Warp(Affine(inverse_rotation, -inverse_rotation @ shift))
    elastic = Warp(Affine.identity(), tuple(FourierField.sample(rng, 80.0) for _ in range(3)), (1.5, 1.5, 1.5))
    return anatomy, [pose, elastic]


def _misalignment(level: int, seed: int) -> tuple[dict, Warp]:
    """Random misalignment parameters for ``level`` and the warp they define."""
    if not (isinstance(level, (int, np.integer)) and 0 <= level <= MAX_LEVEL):
        raise ValueError(f"misalignment level must be an integer 0..{MAX_LEVEL}, got {level!r}")
    rng = np.random.default_rng(_check_seed(seed))
    limits = {k: np.asarray(v, float) * level for k, v in _MISALIGN_PER_LEVEL.items()}
    params = {
        "level": int(level),
        "seed": int(seed),
        **{
            k: np.asarray(rng.uniform(-limits[k], limits[k])).tolist()
            for k in ("rotation_deg", "translation_mm", "scale")
        },
        "elastic_mm": limits["elastic_mm"].tolist(),
    }
    matrix = rotation(params["rotation_deg"]) * (1 + params["scale"])
    fields = tuple(FourierField.sample(rng, MISALIGN_ELASTIC_WAVELENGTH_MM) for _ in range(3))
    warp = Warp(Affine(matrix, np.asarray(params["translation_mm"])), fields, params["elastic_mm"])
    return params, warp


def _canonical_points(grid: Grid, stages: list[Warp]):
    """Canonical coordinates of the full grid's voxels and of the coarse grid's points.

    The smooth part of the map is evaluated exactly on the coarse grid and
    upsampled; only its affine part is applied at full resolution.
    """
    affine = Affine.identity()
    for stage in stages:
        affine = affine.then(stage.affine)
    coarse = grid.points(coarse=True)
    canonical = compose(coarse, stages)
    residual = [grid.upsample(c - a) for c, a in zip(canonical, affine(coarse))]
    return tuple(a + r for a, r in zip(affine(grid.points()), residual)), canonical


@dataclass
class _Latent:
    """What a subject's images are rendered from: labels, appearance, evaluated fields, noise generator."""

    grid: Grid
    labels: np.ndarray
    appearance: Appearance
    fields: dict[str, np.ndarray]  # texture fields "shared", "own_<modality>" (and anatomy fields)
    bias: dict[str, np.ndarray]  # MR bias fields (scanner frame)
    noise_rng: np.random.Generator


def _latent(seed: int, shape, misalignment: tuple[dict, Warp] | None) -> _Latent:
    grid = Grid(_check_shape(shape))
    anatomy_rng, appearance_rng, noise_rng = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(3))
    anatomy, stages = _subject_stages(anatomy_rng)
    appearance = Appearance.sample(appearance_rng)
    if misalignment is not None:
        stages = [misalignment[1], *stages]
    points, canonical = _canonical_points(grid, stages)
    smooth = {
        "thickness": anatomy.thickness,
        "gyri": anatomy.gyri,
        "sulci": anatomy.sulci,
        "shared": appearance.shared,
        **{f"own_{k}": f for k, f in appearance.own.items()},
    }
    fields = {key: grid.upsample(field(*canonical)) for key, field in smooth.items()}
    scanner = grid.points(coarse=True)  # the bias field stays with the scanner
    bias = {
        k: grid.upsample(np.exp(appearance.bias_strength * np.clip(f(*scanner), -2.5, 2.5)))
        for k, f in appearance.bias.items()
    }
    labels = anatomy.labels(points, fields["thickness"], fields["gyri"], fields["sulci"])
    return _Latent(grid, labels, appearance, fields, bias, noise_rng)


def _synthesize(seed: int, shape, name: str, misalignment: tuple[dict, Warp] | None) -> PhantomSubject:
    latent = _latent(seed, shape, misalignment)
    appearance, fields, labels = latent.appearance, latent.fields, latent.labels
    images = {k: appearance.tissue_image(k, labels, fields["shared"], fields[f"own_{k}"]) for k in MODALITIES}
    return PhantomSubject(
        name=name,
        labels=labels,
        t1=render_mr(images["t1"], appearance.gain, latent.bias["t1"], latent.noise_rng),
        t2=render_mr(images["t2"], appearance.gain, latent.bias["t2"], latent.noise_rng),
        ct=render_ct(images["ct"], latent.noise_rng),
        spacing=latent.grid.spacing,
        origin=latent.grid.origin,
        direction=IDENTITY_DIRECTION,
        seed=seed,
        misalignment=None if misalignment is None else misalignment[0],
    )


def expected_ct(seed: int, shape=DEFAULT_SHAPE, known: tuple[str, ...] = ("shared",)) -> np.ndarray:
    """The best CT prediction for subject ``seed`` from its true labels and the ``known`` latent factors.

    ``known`` may hold ``"shared"`` (the texture field the MR images also carry),
    ``"own"`` (the CT-only texture field) and ``"jitter"`` (the subject's own
    tissue HU values). Factors not known take their expected value: the
    population tissue HU, a zero field. The image is blurred like the rendered
    CT but gets no noise, so ``expected_ct(seed, shape, ("shared", "own",
    "jitter"))`` differs from ``generate_subject(seed, shape).ct`` by the noise
    (and clipping) only. Unknown names raise ``ValueError``.
    """
    unknown = set(known) - {"shared", "own", "jitter"}
    if unknown:
        raise ValueError(f"unknown latent factors {sorted(unknown)}; choose from shared, own, jitter")
    latent = _latent(_check_seed(seed), shape, None)
    appearance = latent.appearance
    if "jitter" not in known:
        appearance = replace(appearance, base={**appearance.base, "ct": population_base("ct")})
    zero = np.zeros(latent.labels.shape, np.float32)
    shared = latent.fields["shared"] if "shared" in known else zero
    own = latent.fields["own_ct"] if "own" in known else zero
    return blur(appearance.tissue_image("ct", latent.labels, shared, own))


def generate_subject(seed: int, shape=DEFAULT_SHAPE, name: str | None = None) -> PhantomSubject:
    """Generate the phantom head of ``seed`` on a grid of ``shape`` (z, y, x).

    The field of view is fixed (153.6 × 153.6 × 128 mm, x × y × z), so the
    default shape (32, 128, 128) has a spacing of (1.2, 1.2, 4.0) mm. The same
    seed and shape give the same arrays.
    """
    seed = _check_seed(seed)
    return _synthesize(seed, shape, name or f"phantom-{seed}", None)


def misalign(subject: PhantomSubject, level: int, seed: int) -> PhantomSubject:
    """A copy of ``subject`` moved by a random affine + elastic map (the target of a misaligned pair).

    ``level`` 0..5 as RegGAN's noise levels; at level L every parameter is
    uniform in ± L × (rotation 0.4°, 0.4°, 2° about x, y, z; translation 2, 2,
    0.4 mm along x, y, z; scale 2 %; elastic displacement σ 0.8, 0.8, 0.2 mm,
    wavelength ~40 mm). Level 5 is thus up to ±10° in-plane, ±10 mm, ±10 %
    and ~4 mm elastic. Level 0 returns identical arrays. All images and the
    labels move; the scanner's bias field and noise do not. The parameters are
    in ``misalignment`` of the result.
    """
    return _synthesize(subject.seed, subject.shape, subject.name, _misalignment(level, seed))
