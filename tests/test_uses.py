"""The tools of chapter 15 against answers found another way.

The ROC-AUC against a count over all pairs, ties counted half; the PSNR against an
error of known size; rotation by 90 degrees against ``np.rot90``; the median filter
against a median taken pixel by pixel; the compressor's length against zlib itself.
"""

import itertools
import zlib

import numpy as np
import pytest

from vae_numpy.errors import InputError
from vae_numpy.uses import (
    add_noise,
    black_out,
    median_filter,
    one_stroke_images,
    psnr,
    roc_auc,
    rotate,
    zlib_bits,
)


def brute_force_auc(s_in, s_out):
    """The fraction of (normal, anomaly) pairs the score orders right; ties count half."""
    pairs = list(itertools.product(s_in, s_out))
    return sum(1.0 if o > i else 0.5 if o == i else 0.0 for i, o in pairs) / len(pairs)


# -- ROC-AUC ---------------------------------------------------------------------------
@pytest.mark.parametrize("n_in,n_out,levels", [(7, 5, 3), (40, 31, 6), (50, 50, 1000)])
def test_roc_auc_is_the_pair_count_with_ties_counted_half(n_in, n_out, levels, rng):
    # few levels: many ties, within and across the two groups
    s_in = rng.integers(0, levels, n_in).astype(float)
    s_out = rng.integers(0, levels, n_out).astype(float) + 0.5 * (levels > 3)
    assert roc_auc(s_in, s_out) == pytest.approx(brute_force_auc(s_in, s_out), abs=1e-12)


def test_roc_auc_ends_and_middle():
    assert roc_auc([0, 1, 2], [3, 4]) == 1.0          # every anomaly above every normal
    assert roc_auc([3, 4], [0, 1, 2]) == 0.0          # every anomaly below
    assert roc_auc([1, 1, 1], [1, 1]) == 0.5          # all tied: chance
    assert roc_auc([1, 2], [2, 3]) == pytest.approx(7 / 8)   # one tie among four pairs


def test_roc_auc_of_the_swapped_groups_is_one_minus_it(rng):
    a, b = rng.normal(size=30), rng.normal(0.5, 1.0, size=20)
    assert roc_auc(a, b) + roc_auc(b, a) == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize("bad,what", [([], "non-empty"), ([[1.0, 2.0]], "1-D"),
                                      ([1.0, np.nan], "non-finite"),
                                      (["a", "b"], "numbers")])
def test_roc_auc_rejects_bad_scores_with_one_line(bad, what):
    with pytest.raises(InputError, match=what):
        roc_auc(bad, [1.0, 2.0])
    with pytest.raises(InputError, match="scores_out"):
        roc_auc([1.0, 2.0], bad)


# -- PSNR ------------------------------------------------------------------------------
def test_psnr_of_a_known_error():
    x = np.full((2, 16), 0.5)
    x_hat = x + np.array([[0.1], [0.01]])              # MSE 1e-2 and 1e-4
    np.testing.assert_allclose(psnr(x, x_hat), [20.0, 40.0], rtol=1e-12)
    # a range of 255 shifts every PSNR by 20 log10(255)
    np.testing.assert_allclose(psnr(x, x_hat, data_range=255.0),
                               np.array([20.0, 40.0]) + 20 * np.log10(255), rtol=1e-12)


def test_psnr_of_an_exact_reconstruction_is_infinite():
    x = np.linspace(0, 1, 20).reshape(2, 10)
    assert np.all(np.isinf(psnr(x, x.copy())))


def test_psnr_rejects_mismatched_shapes_and_pixels_out_of_range():
    with pytest.raises(InputError, match="shape"):
        psnr(np.zeros((2, 4)), np.zeros((2, 5)))
    with pytest.raises(InputError, match=r"\[0, 1\]"):
        psnr(np.full((1, 4), 255.0), np.zeros((1, 4)))


# -- corruptions -----------------------------------------------------------------------
def test_rotate_by_90_degrees_is_rot90_anticlockwise(rng):
    x = rng.random((3, 28 * 28)).astype(np.float32)
    expected = np.rot90(x.reshape(3, 28, 28), k=1, axes=(1, 2)).reshape(3, -1)
    np.testing.assert_allclose(rotate(x, 90), expected, atol=1e-5)
    assert rotate(x, 90).dtype == np.float32
    np.testing.assert_allclose(rotate(x, 0), x, atol=1e-6)


def test_rotate_keeps_pixels_in_range(rng):
    x = rng.random((2, 28 * 28)).astype(np.float32)
    r = rotate(x, 33)
    assert r.shape == x.shape and r.min() >= 0 and r.max() <= 1


def test_add_noise_is_seeded_clipped_and_has_the_asked_spread():
    x = np.full((200, 784), 0.5, dtype=np.float32)
    a = add_noise(x, 0.1, np.random.default_rng(3))
    np.testing.assert_array_equal(a, add_noise(x, 0.1, np.random.default_rng(3)))
    assert a.dtype == np.float32 and a.min() >= 0 and a.max() <= 1
    assert (a - x).std() == pytest.approx(0.1, rel=0.01)   # 0.5 +- 5 sigma: no clipping
    np.testing.assert_array_equal(add_noise(x, 0.0, np.random.default_rng(3)), x)
    big = add_noise(x, 10.0, np.random.default_rng(3))
    assert big.min() == 0 and big.max() == 1
    with pytest.raises(InputError, match="sigma"):
        add_noise(x, -0.1, np.random.default_rng(3))
    with pytest.raises(InputError, match="Generator"):
        add_noise(x, 0.1, 3)


def test_black_out_sets_the_square_and_nothing_else(rng):
    x = rng.random((4, 784)).astype(np.float32)
    y = black_out(x, top=7, left=5, size=10)
    img, orig = y.reshape(4, 28, 28), x.reshape(4, 28, 28)
    assert np.all(img[:, 7:17, 5:15] == 0)
    mask = np.ones((28, 28), bool)
    mask[7:17, 5:15] = False
    np.testing.assert_array_equal(img[:, mask], orig[:, mask])
    assert not np.all(x.reshape(4, 28, 28)[:, 7:17, 5:15] == 0)   # the input is untouched
    assert np.all(black_out(x, top=0, left=0, size=3, value=1.0).reshape(4, 28, 28)
                  [:, :3, :3] == 1)
    with pytest.raises(InputError, match="inside"):
        black_out(x, top=20, left=0, size=10)


def test_median_filter_is_the_median_of_each_neighbourhood(rng):
    x = rng.random((2, 784)).astype(np.float32)
    got = median_filter(x).reshape(2, 28, 28)
    img = x.reshape(2, 28, 28)
    for r, c in [(1, 1), (5, 20), (26, 26), (14, 3)]:          # interior pixels
        np.testing.assert_allclose(got[:, r, c],
                                   np.median(img[:, r - 1:r + 2, c - 1:c + 2], axis=(1, 2)))
    # a lone salt pixel on a blank image is removed; a constant image is kept
    salt = np.zeros((1, 784), np.float32)
    salt[0, 300] = 1
    assert median_filter(salt).max() == 0
    np.testing.assert_array_equal(median_filter(np.full((1, 784), 0.25, np.float32)),
                                  np.full((1, 784), 0.25, np.float32))
    with pytest.raises(InputError, match="size"):
        median_filter(x, size=0)


def test_one_stroke_images_are_seeded_straight_strokes():
    a = one_stroke_images(20, np.random.default_rng(5))
    np.testing.assert_array_equal(a, one_stroke_images(20, np.random.default_rng(5)))
    assert a.shape == (20, 784) and a.dtype == np.float32 and 0 <= a.min() and a.max() <= 1
    for img in a.reshape(20, 28, 28):
        ys, xs = np.nonzero(img == 1)
        assert 8 <= len(ys) < 80                   # a stroke, neither a dot nor a blob
        # the fully inked pixels lie on a line: almost no spread across it
        spread = np.linalg.eigvalsh(np.cov(np.stack([ys, xs]).astype(float)))
        assert spread[0] < 0.1 * spread[1]


def test_zlib_bits_is_zlibs_length_and_grows_with_complexity(rng):
    blank = np.zeros((1, 784), np.float32)
    noise = rng.random((1, 784)).astype(np.float32)
    assert zlib_bits(noise)[0] == 8 * len(zlib.compress(
        np.rint(noise[0].astype(np.float64) * 255).astype(np.uint8).tobytes(), 9))
    assert zlib_bits(blank)[0] < 200 < 784 * 8 <= zlib_bits(noise)[0]
    binary = (noise > 0.5).astype(np.float32)
    assert zlib_bits(binary, binary=True)[0] == 8 * len(zlib.compress(
        np.packbits(binary.astype(np.uint8), axis=1)[0].tobytes(), 9))
    assert zlib_bits(blank, binary=True)[0] < 784 <= zlib_bits(binary, binary=True)[0]
    with pytest.raises(InputError, match="exactly 0 or 1"):
        zlib_bits(noise, binary=True)
