"""napari-medtrans: medical image-to-image translation for napari and PyTorch.

Importing this package never imports Qt or napari; the napari faces live in
``napari_medtrans._napari`` modules and ``napari_medtrans._widgets``.
"""

__version__ = "0.1.0"
