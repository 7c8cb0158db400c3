"""napari faces of napari-medtrans: reader, writer and sample-data contributions.

The only package (with ``napari_medtrans._widgets``) that imports napari or Qt.
"""
