"""napari dock widgets of napari-medtrans (the only package here, with _napari, that imports Qt)."""
