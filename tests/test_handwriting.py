"""Tests of vae_numpy.handwriting: the synthetic set with known factors."""

import numpy as np
import pytest

from vae_numpy import handwriting
from vae_numpy.errors import InputError
from vae_numpy.handwriting import make_handwriting, render_glyph


def shear(image: np.ndarray) -> float:
    """Ink-weighted regression slope of column on row (negative: leans right)."""
    rows, cols = np.indices(image.shape)
    w = image / image.sum()
    r, c = rows - (w * rows).sum(), cols - (w * cols).sum()
    return float((w * r * c).sum() / (w * r * r).sum())


def test_handwriting_reproducible_with_seed():
    ds1, f1 = make_handwriting(200, np.random.default_rng(5))
    ds2, f2 = make_handwriting(200, np.random.default_rng(5))
    ds3, _ = make_handwriting(200, np.random.default_rng(6))
    np.testing.assert_array_equal(ds1.x, ds2.x)
    for name in handwriting.HANDWRITING_FACTORS:
        np.testing.assert_array_equal(f1[name], f2[name])
    assert not np.array_equal(ds1.x, ds3.x)


def test_handwriting_shapes_ranges_and_frame():
    n = 2000
    ds, factors = make_handwriting(n, np.random.default_rng(0))
    assert ds.name == "handwriting" and ds.y is None and ds.image_shape == (28, 28)
    assert ds.x.shape == (n, 784) and ds.x.dtype == np.float32
    assert ds.x.min() >= 0 and ds.x.max() <= 1
    assert set(factors) == set(handwriting.HANDWRITING_FACTORS)
    for name, (lo, hi) in handwriting.HANDWRITING_RANGES.items():
        v = factors[name]
        assert v.dtype == np.float32 and v.shape == (n,)
        assert v.min() >= lo and v.max() <= hi
        assert v.min() < lo + 0.05 * (hi - lo) and v.max() > hi - 0.05 * (hi - lo)
    images = ds.x.reshape(n, 28, 28)
    border = np.concatenate(
        [images[:, 0], images[:, -1], images[:, :, 0], images[:, :, -1]], axis=1
    )
    assert border.max() < 0.05  # the letter stays inside the frame
    assert (images.reshape(n, -1).max(axis=1) == 1).all()  # every image has solid ink


def test_render_glyph_is_float32_in_unit_range():
    image = render_glyph(
        np.float64(0.3), np.float64(2.0), np.float64(0.5), rng=np.random.default_rng(0)
    )
    assert image.dtype == np.float32 and image.shape == (28, 28)
    assert image.min() == 0 and image.max() == 1
    assert render_glyph(0.0, 2.0, 1.0, size=56).shape == (56, 56)


def test_handwriting_other_size():
    ds, _ = make_handwriting(3, np.random.default_rng(0), size=40)
    assert ds.x.shape == (3, 1600) and ds.image_shape == (40, 40)


def test_wider_stroke_means_more_ink():
    widths = [1.0, 1.5, 2.0, 2.5, 3.0]
    ink = [render_glyph(0.2, w, 0.4, rng=np.random.default_rng(9)).sum() for w in widths]
    assert all(b > a * 1.1 for a, b in zip(ink, ink[1:], strict=False))


def test_slant_shears_the_letter():
    slants = np.linspace(-0.5, 0.5, 5)
    s = [shear(render_glyph(a, 2.0, 1.0)) for a in slants]
    assert s[0] > 0.2 and s[-1] < -0.2  # leans left vs leans right: the sign flips
    assert all(b < a for a, b in zip(s, s[1:], strict=False))


def test_neatness_controls_the_jitter():
    template = render_glyph(0.0, 2.0, 1.0)
    np.testing.assert_array_equal(template, render_glyph(0.0, 2.0, 1.0))  # no randomness
    deviation = [
        np.abs(render_glyph(0.0, 2.0, q, rng=np.random.default_rng(4)) - template).sum()
        for q in (1.0, 0.6, 0.3, 0.0)
    ]
    assert deviation[0] == 0
    assert all(b > a for a, b in zip(deviation, deviation[1:], strict=False))


def test_render_glyph_bad_arguments():
    with pytest.raises(InputError, match="needs rng"):
        render_glyph(0.0, 2.0, 0.5)
    with pytest.raises(InputError, match="neatness must lie in"):
        render_glyph(0.0, 2.0, 1.5)
    with pytest.raises(InputError, match="stroke_width"):
        render_glyph(0.0, -1.0, 1.0)
    with pytest.raises(InputError, match="finite"):
        render_glyph(float("nan"), 2.0, 1.0)
    with pytest.raises(InputError, match="Generator"):
        make_handwriting(5, 0)


def test_the_package_exports_the_generator_from_its_own_module():
    import vae_numpy
    from vae_numpy import data

    assert vae_numpy.make_handwriting is make_handwriting
    # one home per concern: data.py no longer holds (or re-exports) the synthetic set
    assert not hasattr(data, "make_handwriting") and not hasattr(data, "render_glyph")


@pytest.mark.parametrize("name", ["handwriting.py", "data.py", "objectives.py", "losses.py"])
def test_the_trained_model_cache_key_covers_the_code_that_shapes_a_model(name, monkeypatch):
    """train_cached retrains when any file that makes its data or its model changes."""
    from pathlib import Path

    from vae_numpy import train

    before = train._source_digest()
    real = Path.read_bytes
    monkeypatch.setattr(Path, "read_bytes",
                        lambda self: real(self) + (b"# edited" if self.name == name else b""))
    assert train._source_digest() != before
