"""Shared pytest fixtures: small phantom data that every test module can reuse.

The fixtures are session-scoped (generated once per test run) and must be
treated as read-only: copy an array before changing it. No Qt import here.
"""

from __future__ import annotations

import pytest

SMALL_SHAPE = (16, 64, 64)


@pytest.fixture(scope="session")
def small_subject():
    """One phantom head of shape (16, 64, 64), seed 0 (a ``PhantomSubject``)."""
    from napari_medtrans.phantom import generate_subject

    return generate_subject(0, shape=SMALL_SHAPE)


@pytest.fixture(scope="session")
def small_cohort():
    """Four aligned phantom pairs of shape (16, 64, 64), seed 0 (``list[PhantomPair]``)."""
    from napari_medtrans.phantom import generate_cohort

    return generate_cohort(4, "paired", seed=0, shape=SMALL_SHAPE)
