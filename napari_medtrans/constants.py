"""One home for the constants and choice lists shared by the core, the trainer and the GUI.

Free of torch, Qt and napari: every room may import it. A value that means
something different gets a different name (the CT *metric* range and the CT
*rendering* clip differ on purpose, see below).
"""

from __future__ import annotations

AIR_HU = -1024.0
"""Hounsfield value of air: the lower end of every CT range, and what an
untranslated CT slice shows."""

CT_METRIC_RANGE = (AIR_HU, 3000.0)
"""HU range CT is clipped to before metrics and the intensity window
(the SynthRAD convention; PSNR/SSIM data range)."""

CT_STORAGE_RANGE = (AIR_HU, 3071.0)
"""HU range a 12-bit CT scanner stores (-1024 + 4095): the phantom renders CT
clipped to it, like real scans, so bone above 3000 HU exists in the data."""

MODALITIES = ("T1", "T2", "MR", "CT")
"""Image domains offered as translation source/target (MR = unspecified MR contrast)."""

REGIMES = ("paired", "unpaired", "misaligned")
"""Data regimes: aligned pairs, unrelated scans, or pairs with a residual misalignment."""

PAIRED_REGIMES = ("paired", "misaligned")
"""Regimes whose target shows the same anatomy as the source (what pair-based methods need)."""

PRECISIONS = ("fp32", "bf16", "fp16")
"""Floating-point precisions of inference and training steps."""

TRAIN_PRECISIONS = ("auto", *PRECISIONS)
"""The trainer's ``--precision`` choices: ``auto`` = fp16 AMP on CUDA, fp32 elsewhere."""

DEVICES = ("auto", "cpu", "cuda", "mps")
"""Device kinds (``cuda:1`` etc. name a device of kind ``cuda``)."""

VOLUME_SUFFIXES = (".nii.gz", ".nii", ".mha", ".mhd", ".nrrd", ".nhdr")
"""File endings of single-file volumes (NIfTI, MetaImage, NRRD), longest match first."""

DICOM_SUFFIXES = (".dcm", ".ima")
"""File endings of DICOM slices (a folder of them is one series)."""

READ_SUFFIXES = VOLUME_SUFFIXES + DICOM_SUFFIXES
"""Everything :func:`napari_medtrans.io.read_volume` opens as a file."""

WRITE_SUFFIXES = (".nii.gz", ".nii", ".mha", ".nrrd")
"""File endings :func:`napari_medtrans.io.write_volume` writes."""
