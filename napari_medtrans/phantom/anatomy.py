"""Head anatomy of one phantom subject as implicit shapes in a canonical frame.

The canonical frame is in mm with x to the patient's left, y posterior and z
superior (LPS, as SimpleITK). The head is an egg-shaped ellipsoid; tissues are
layered by depth below the skin (scalp, fat, temporalis muscle, skull tables and
diploë, CSF, cortex, white matter) above an oblique skull base; below it lie the
face structures (eyes in fat-filled orbits, frontal, sphenoid and maxillary
sinuses, nasal cavity, nose) and the brainstem. Per-subject parameters and three
smooth fields (layer thickness, gyral folding, sulci) make every subject
different.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .fields import FourierField

AIR, FAT, BONE, MARROW, GM, WM, CSF, SINUS, EYE, SOFT = range(10)

TISSUES: dict[int, str] = {
    AIR: "air",
    FAT: "scalp/fat",
    BONE: "cortical bone",
    MARROW: "marrow",
    GM: "grey matter",
    WM: "white matter",
    CSF: "csf/ventricles",
    SINUS: "sinus",
    EYE: "eye",
    SOFT: "soft tissue/muscle",
}
"""Label value -> tissue name of every phantom label map."""

SULCUS_WAVELENGTH_MM = 24.0


def _r2(x: np.ndarray, y: np.ndarray, z: np.ndarray, center, semi) -> np.ndarray:
    """Squared normalised ellipsoidal radius: < 1 inside the ellipsoid."""
    return ((x - center[0]) / semi[0]) ** 2 + ((y - center[1]) / semi[1]) ** 2 + ((z - center[2]) / semi[2]) ** 2


def _smoothstep(t: np.ndarray) -> np.ndarray:
    """0 below 0, 1 above 1, smooth (C1) in between."""
    t = np.clip(t, 0, 1)
    return t * t * (3 - 2 * t)


@dataclass(frozen=True)
class Anatomy:
    """Anatomical parameters of one subject (mm unless stated)."""

    radii: tuple[float, float, float]  # head semi-axes (x, y, z)
    center: tuple[float, float, float]
    egg: float  # relative widening of the head towards the back
    skin: float
    scalp: float
    temporalis: float
    outer_table: float
    diploe: float
    inner_table: float
    csf: float
    cortex: float
    folding: float  # extra cortical depth modulated by the gyral field
    fossae: tuple[float, float, float]  # skull base height of the anterior, middle, posterior fossa
    fossa_steps: tuple[float, float]  # y (from the head centre) of the two steps between them
    base_half: float  # half thickness of the skull base
    ventricles: float  # ventricle size factor (1 = young adult)
    eye_radius: float
    eye_offset: float  # |x| of the eye centres
    eye_height: float
    thickness: FourierField  # modulates scalp, diploë and CSF thickness
    gyri: FourierField
    sulci: FourierField

    @classmethod
    def sample(cls, rng: np.random.Generator) -> Anatomy:
        """Draw a random subject."""
        u = rng.uniform
        return cls(
            radii=(u(50, 57), u(61, 68), u(60, 66)),
            center=(0.0, u(0, 4), u(-12, -8)),
            egg=u(0.0, 0.08),
            skin=u(1.2, 1.8),
            scalp=u(4.0, 7.0),
            temporalis=u(3.0, 6.0),
            outer_table=u(1.5, 2.5),
            diploe=u(2.5, 4.5),
            inner_table=u(1.2, 2.0),
            csf=u(1.5, 3.5),
            cortex=u(2.5, 3.5),
            folding=u(4.0, 7.0),
            fossae=(u(-10, -7), u(-34, -28), u(-50, -44)),
            fossa_steps=(u(-28, -22), u(4, 10)),
            base_half=u(3.0, 4.0),
            ventricles=u(0.7, 1.5),
            eye_radius=u(10.5, 12.0),
            eye_offset=u(28, 32),
            eye_height=u(-30, -26),
            thickness=FourierField.sample(rng, 60.0),
            gyri=FourierField.sample(rng, 30.0),
            sulci=FourierField.sample(rng, SULCUS_WAVELENGTH_MM, terms=8),
        )

    def skull_base(self, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Height z of the skull base (middle of the bone) at y, and its slope dz/dy.

        Two smooth steps down from the anterior fossa (above the orbits) to the
        middle and the posterior fossa.
        """
        (anterior, middle, posterior), steps = self.fossae, self.fossa_steps
        height, slope = np.full_like(y, anterior), np.zeros_like(y)
        for drop, step, width in ((middle - anterior, steps[0], 5.0), (posterior - middle, steps[1], 7.0)):
            sigmoid = 1 / (1 + np.exp(-(y - self.center[1] - step) / width))
            height += drop * sigmoid
            slope += drop * sigmoid * (1 - sigmoid) / width
        return height, slope

    def front(self, x: float, z: float) -> float:
        """y of the (anterior) skin surface at (x, z), ignoring the egg shape."""
        (rx, ry, rz), (cx, cy, cz) = self.radii, self.center
        inside = 1 - ((x - cx) / rx) ** 2 - ((z - cz) / rz) ** 2
        return cy - ry * float(np.sqrt(max(inside, 0.0)))

    def labels(self, points, thickness: np.ndarray, gyri: np.ndarray, sulci: np.ndarray) -> np.ndarray:
        """Label map (uint8, values of ``TISSUES``) at canonical points.

        ``thickness``, ``gyri`` and ``sulci`` are this subject's fields already
        evaluated at the same points (unit variance).
        """
        x, y, z = points
        (rx, ry, rz), (cx, cy, cz) = self.radii, self.center
        dx, dy, dz = x - cx, y - cy, z - cz
        rx_eff = rx * (1 + self.egg * dy / ry)
        rho = np.sqrt((dx / rx_eff) ** 2 + (dy / ry) ** 2 + (dz / rz) ** 2)
        depth = (1 - rho) * np.sqrt(dx**2 + dy**2 + dz**2) / np.maximum(rho, 1e-3)

        modulation = 1 + 0.2 * np.clip(thickness, -2, 2)
        lateral = _smoothstep((np.abs(dx) / rx_eff - 0.5) / 0.4) * np.exp(-(((z - cz) / 30) ** 2))
        scalp_end = self.scalp * modulation
        bone_start = scalp_end + self.temporalis * lateral
        outer_end = bone_start + self.outer_table
        diploe_end = outer_end + self.diploe * modulation
        inner_end = diploe_end + self.inner_table
        brain_start = inner_end + self.csf * modulation
        base, base_slope = self.skull_base(y)
        height = (z - base) / np.sqrt(1 + base_slope**2)  # ~ normal distance above the skull base

        lab = np.full(depth.shape, SOFT, np.uint8)
        lab[depth < scalp_end] = FAT
        lab[depth < self.skin] = SOFT
        cranium = height > self.base_half
        deep = depth >= bone_start
        lab[cranium & deep] = BONE
        lab[cranium & (depth >= outer_end) & (depth < diploe_end)] = MARROW
        lab[cranium & (depth >= inner_end)] = CSF
        slab = (np.abs(height) <= self.base_half) & deep
        lab[slab] = BONE
        lab[slab & (np.abs(height) < self.base_half - 1.5)] = MARROW
        self._brain(lab, x, depth - brain_start, height - self.base_half - self.csf, gyri, sulci)
        self._deep_structures(lab, x, y, z)
        self._face(lab, x, y, z)
        lab[depth < 0] = AIR
        self._nose(lab, x, y, z, depth)
        return lab

    def _brain(self, lab, x, depth, height, gyri, sulci) -> None:
        """Cortex, white matter, sulci and the interhemispheric fissure."""
        cortical_depth = np.minimum(depth, height)  # below the brain surface
        brain = cortical_depth >= 0
        lab[brain] = GM
        lab[brain & (cortical_depth > self.cortex + self.folding * (np.clip(gyri, -2, 2) + 2) / 4)] = WM
        sulcus_distance = np.abs(sulci) * (SULCUS_WAVELENGTH_MM / (2 * np.pi))  # ~ mm to the sulcus
        fissure_distance = np.abs(x - self.center[0])
        lined = ((sulcus_distance < 0.8 + self.cortex) & (cortical_depth < 12 + self.cortex)) | (
            (fissure_distance < 0.8 + self.cortex) & (cortical_depth < 30 + self.cortex)
        )
        lab[brain & lined] = GM
        open_ = ((sulcus_distance < 0.8) & (cortical_depth < 12)) | ((fissure_distance < 0.8) & (cortical_depth < 30))
        lab[brain & open_] = CSF

    def _deep_structures(self, lab, x, y, z) -> None:
        """Deep grey matter, ventricles and the brainstem in its CSF sleeve."""
        cx, cy, cz = self.center
        v = self.ventricles
        top = cz + 20
        for side in (-1, 1):
            lab[_r2(x, y, z, (cx + side * 10, cy + 6, top - 16), (7, 10, 7)) < 1] = GM  # thalamus
            lab[_r2(x, y, z, (cx + side * 22, cy - 8, top - 14), (5, 11, 8)) < 1] = GM  # putamen
            lab[_r2(x, y, z, (cx + side * 12, cy - 14, top - 4), (5, 9, 7)) < 1] = GM  # caudate head
        for side in (-1, 1):  # lateral ventricles diverge posteriorly
            vx = cx + side * (3 + 4 * v + 0.12 * (y - cy + 20))
            lab[_r2(vx, y, z, (0, cy, top - 2), (3.5 * v, 24, 6 * v)) < 1] = CSF
        lab[_r2(x, y, z, (cx, cy + 4, top - 14), (1.2 * v, 8, 7)) < 1] = CSF  # third ventricle
        radial2 = (x - cx) ** 2 + (y - cy - 14) ** 2
        below = z < cz - 5
        lab[below & (radial2 < 12**2) & (lab != SOFT) & (lab != FAT)] = CSF
        lab[below & (radial2 < 9**2) & (lab == CSF)] = WM

    def _face(self, lab, x, y, z) -> None:
        """Orbits and eyes, sinuses and the nasal cavity."""
        r, ez = self.eye_radius, self.eye_height
        for side in (-1, 1):
            ex = self.center[0] + side * self.eye_offset
            ey = self.front(ex, ez) + r + 1
            orbit = r + 4
            r2 = _r2(x, y, z, (ex, ey + 4, ez), (orbit, orbit, orbit))
            lab[(r2 < ((orbit + 2) / orbit) ** 2) & (r2 >= 1) & (y > ey)] = BONE
            lab[r2 < 1] = FAT
            lab[_r2(x, y, z, (ex, ey, ez), (r, r, r)) < 1] = EYE
        cx = self.center[0]
        maxillary_z = ez - 24
        sinuses = [
            ((cx, self.front(cx, ez + 26) + self.scalp + 8, ez + 26), (10, 4, 7)),  # frontal
            ((cx, self.center[1] - 10, ez + 4), (9, 8, 7)),  # sphenoid
            ((cx - 19, self.front(19, maxillary_z) + 24, maxillary_z), (10, 14, 12)),
            ((cx + 19, self.front(19, maxillary_z) + 24, maxillary_z), (10, 14, 12)),
        ]
        for center, semi in sinuses:
            r2 = _r2(x, y, z, center, semi)
            lab[r2 < ((min(semi) + 1.5) / min(semi)) ** 2] = BONE
            lab[r2 < 1] = SINUS
        nasal = _r2(x, y, z, (cx, self.front(cx, ez - 16) + 20, ez - 16), (6, 20, 15)) < 1
        lab[nasal] = SINUS
        lab[nasal & (np.abs(x - cx) < 1.0)] = SOFT  # septum

    def _nose(self, lab, x, y, z, depth) -> None:
        """The external nose, outside the head ellipsoid, with its nostrils."""
        cx, nz = self.center[0], self.eye_height - 18
        ny = self.front(cx, nz)
        outside = depth < 0
        lab[outside & (_r2(x, y, z, (cx, ny, nz), (9, 13, 16)) < 1)] = SOFT
        for side in (-1, 1):
            lab[outside & (_r2(x, y, z, (cx + side * 3.5, ny - 4, nz - 8), (2.5, 6, 6)) < 1)] = AIR
