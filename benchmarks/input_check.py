"""How well the input check separates in-distribution volumes from wrong inputs.

    python benchmarks/input_check.py [--in-dist 40] [--per-kind 10]

For each shipped translator (its ``input_signature`` comes from its training
phantoms), held-out phantom T1 volumes (seeds never used in training) are the
in-distribution set; the out-of-distribution set holds, made from other
held-out subjects: the CT, the T2, a PD-like image (T1 and T2 each divided by
its 99th percentile and summed: CSF, grey and white matter at similar
levels), the T1 with Gaussian noise of σ = 20 % of its range (GN20), the
intensity-inverted T1 (max − T1), the label map, and the T1 with the slice
axis swapped (array axes (y, z, x), spacing permuted with them: coronal
planes presented as slices). Inputs carry no modality tag, so the header rule
plays no part: the score is the image and geometry check alone (``full``),
and the image features alone (``image``, a bare array). Reported: AUROC of
the score per kind and overall, the detection rate at the verdict's
threshold, and the false-alarm rate on the in-distribution volumes. Real
files no one here made (nibabel's test data, nilearn's MNI152 template,
pydicom's test DICOMs) are checked with their headers, as a user would.
Writes ``benchmarks/results/input_check.{md,json}``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._machine import load_note, write_result
from napari_medtrans.checkpoint import read_metadata
from napari_medtrans.input_check import check_input
from napari_medtrans.io import Volume, read_volume
from napari_medtrans.phantom import PhantomSubject, generate_subject
from napari_medtrans.shipped import shipped_dir

RESULTS = Path(__file__).resolve().parent / "results"
IN_DIST_SEED = 20000
OOD_SEED = 30000


def _volume(subject: PhantomSubject, array: np.ndarray) -> Volume:
    return Volume(array, subject.spacing, subject.origin, subject.direction)


def _pd_like(s: PhantomSubject) -> np.ndarray:
    return s.t1 / np.percentile(s.t1, 99) + s.t2 / np.percentile(s.t2, 99)


def _gn20(s: PhantomSubject) -> np.ndarray:
    rng = np.random.default_rng(s.seed)
    return s.t1 + rng.normal(0, 0.2 * float(s.t1.max() - s.t1.min()), s.t1.shape).astype(np.float32)


def _wrong_axis(s: PhantomSubject) -> Volume:
    x, y, z = s.spacing
    return Volume(s.t1.transpose(1, 0, 2), (x, z, y), s.origin, s.direction)


OOD_KINDS: dict[str, Callable[[PhantomSubject], Volume]] = {
    "CT": lambda s: _volume(s, s.ct),
    "T2": lambda s: _volume(s, s.t2),
    "PD-like": lambda s: _volume(s, _pd_like(s)),
    "GN20": lambda s: _volume(s, _gn20(s)),
    "inverted": lambda s: _volume(s, s.t1.max() - s.t1),
    "label map": lambda s: _volume(s, s.labels.astype(np.float32)),
    "wrong axis": _wrong_axis,
}


def auroc(negatives: list[float], positives: list[float]) -> float:
    """P(score of a positive > score of a negative), ties counting one half (Mann–Whitney)."""
    neg, pos = np.asarray(negatives)[:, None], np.asarray(positives)[None, :]
    return float((pos > neg).mean() + 0.5 * (pos == neg).mean())


def real_files(tmp: Path) -> dict[str, Path]:
    """Real volumes shipped with nibabel, nilearn and pydicom (those installed)."""
    found: dict[str, Path] = {}
    try:
        from nibabel.testing import data_path

        found["nibabel anatomical.nii (T1)"] = Path(data_path) / "anatomical.nii"
        found["nibabel functional.nii (EPI, first volume)"] = Path(data_path) / "functional.nii"
    except ImportError:
        pass
    try:
        import nibabel
        from nilearn.datasets import load_mni152_template

        path = tmp / "mni152_t1.nii.gz"
        nibabel.save(load_mni152_template(), str(path))
        found["nilearn MNI152 T1 template"] = path
    except ImportError:
        pass
    try:
        from pydicom.data import get_testdata_file

        for name in ("CT_small.dcm", "MR_small.dcm"):
            folder = tmp / name.split(".")[0]
            folder.mkdir()
            shutil.copy(get_testdata_file(name), folder / name)
            found[f"pydicom {name}"] = folder
    except ImportError:
        pass
    return found


def run(n_in: int, n_per_kind: int) -> dict:
    models = sorted((shipped_dir() / "models").glob("*.safetensors"))
    metadata = {p.stem: read_metadata(p) for p in models}
    in_dist = [generate_subject(IN_DIST_SEED + i) for i in range(n_in)]
    ood_subjects = [generate_subject(OOD_SEED + i) for i in range(n_per_kind)]
    report: dict = {"models": {}, "in_dist": n_in, "per_kind": n_per_kind}
    for name, md in metadata.items():
        ids = [check_input(_volume(s, s.t1), md) for s in in_dist]
        ids_image = [check_input(s.t1, md).score for s in in_dist]
        entry = {
            "false_alarm_rate": float(np.mean([v.ood for v in ids])),
            "in_dist_score_max": float(max(v.score for v in ids)),
            "kinds": {},
        }
        all_full, all_image = [], []
        for kind, make in OOD_KINDS.items():
            volumes = [make(s) for s in ood_subjects]
            verdicts = [check_input(v, md) for v in volumes]
            image = [check_input(v.array, md).score for v in volumes]
            full = [v.score for v in verdicts]
            all_full += full
            all_image += image
            entry["kinds"][kind] = {
                "auroc_full": auroc([v.score for v in ids], full),
                "auroc_image": auroc(ids_image, image),
                "detected": float(np.mean([v.ood for v in verdicts])),
                "score_median": float(np.median(full)),
            }
        entry["auroc_full"] = auroc([v.score for v in ids], all_full)
        entry["auroc_image"] = auroc(ids_image, all_image)
        report["models"][name] = entry
        print(
            f"{name}: AUROC {entry['auroc_full']:.3f} (image only {entry['auroc_image']:.3f}), "
            f"false alarms {entry['false_alarm_rate']:.1%}",
            flush=True,
        )
    with tempfile.TemporaryDirectory() as tmp:
        report["real"] = {}
        for label, path in real_files(Path(tmp)).items():
            volume = read_volume(path)
            report["real"][label] = {
                "shape": list(volume.array.shape),
                "spacing": [round(v, 3) for v in volume.spacing],
                "modality": volume.modality,
                **{name: check_input(volume, md).to_dict() for name, md in metadata.items()},
            }
    return report


def write_markdown(report: dict, command: str, note: str, seconds: float) -> str:
    kinds = list(OOD_KINDS)
    lines = [
        "# Input check: in-distribution phantom T1 vs wrong inputs",
        "",
        f"`{command}` ({seconds:.0f} s). {note}",
        "",
        (
            f"In-distribution: {report['in_dist']} held-out phantom T1 volumes (seeds {IN_DIST_SEED}–"
            f"{IN_DIST_SEED + report['in_dist'] - 1}, never used in training). Out of distribution: "
            f"{report['per_kind']} volumes per kind from other held-out subjects (seeds {OOD_SEED}–"
            f"{OOD_SEED + report['per_kind'] - 1}); how each is made is in the script's docstring. No input carries "
            "a modality tag here, so these numbers are for the image and geometry check alone; a header that "
            "says CT or T2 is refused by rule on top of this."
        ),
        "",
        (
            "AUROC of the score (full check: image features + geometry; image: features of a bare array), "
            "false-alarm rate (in-distribution volumes flagged) and, per kind, the fraction flagged at the "
            "verdict's threshold:"
        ),
        "",
        "| translator | AUROC full | AUROC image | false alarms | max in-dist score | "
        + " | ".join(f"{k} AUROC / flagged" for k in kinds)
        + " |",
        "|---|---|---|---|---|" + "---|" * len(kinds),
    ]
    for name, e in report["models"].items():
        lines.append(
            f"| {name} | {e['auroc_full']:.3f} | {e['auroc_image']:.3f} | {e['false_alarm_rate']:.1%} | "
            f"{e['in_dist_score_max']:.2f} | "
            + " | ".join(f"{e['kinds'][k]['auroc_full']:.3f} / {e['kinds'][k]['detected']:.0%}" for k in kinds)
            + " |"
        )
    lines += [
        "",
        (
            f"No false alarm in {report['in_dist']} in-distribution volumes bounds the false-alarm rate "
            f"below {3 / report['in_dist']:.1%} (95 %, rule of three) where the table shows 0 %; the largest "
            "in-distribution score is the margin left below the threshold (1.0)."
        ),
    ]
    lines += ["", "## Real files (headers as read)", ""]
    for label, r in report["real"].items():
        lines.append(
            f"- **{label}**: shape {tuple(r['shape'])}, spacing {tuple(r['spacing'])} mm, "
            f"header modality {r['modality'] or 'none'}"
        )
        for name in report["models"]:
            v = r[name]
            verdict = "OUT of distribution" if v["ood"] else "in distribution"
            more = f"; and {len(v['reasons']) - 4} more" if len(v["reasons"]) > 4 else ""
            reasons = "; ".join(v["reasons"][:4]) + more if v["reasons"] else "no reasons"
            lines.append(f"  - {name}: {verdict}, score {v['score']:.2f} — {reasons}")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--in-dist", type=int, default=40, help="held-out in-distribution volumes")
    parser.add_argument("--per-kind", type=int, default=10, help="volumes per out-of-distribution kind")
    args = parser.parse_args(argv)
    command = "python benchmarks/input_check.py " + " ".join(argv if argv is not None else sys.argv[1:])
    load_start = os.getloadavg()[0]
    start = time.time()
    report = run(args.in_dist, args.per_kind)
    seconds = time.time() - start
    note = load_note(load_start, os.getloadavg()[0])
    write_result(RESULTS / "input_check.json", json.dumps(report, indent=2) + "\n")
    write_result(RESULTS / "input_check.md", write_markdown(report, command.strip(), note, seconds))
    print((RESULTS / "input_check.md").read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
