import sys

import numpy as np
import pytest


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


@pytest.fixture
def fake_cupy(monkeypatch):
    """The SIMULATION of CuPy's semantics (tests/fake_cupy.py), installed as ``cupy``.

    Not a GPU test: its arrays are NumPy arrays that refuse implicit conversion to
    NumPy and mixing with NumPy arrays, as CuPy's do. For the test's duration
    ``import cupy`` gets it (a real CuPy, where installed, is put back afterwards), so
    ``backend="cupy"`` runs the library through it.
    """
    import fake_cupy as module

    monkeypatch.setitem(sys.modules, "cupy", module)
    return module
