"""The continuous Bernoulli (losses.py) against an independent reference and its own density.

The reference evaluates the paper's formulas in lambda (Loaiza-Ganem and Cunningham,
2019) with 400 significant digits (Python's decimal module), so it shares no code and
no identity with the library's logit forms, and cannot cancel near lambda = 1/2.
"""

import math
import warnings
from decimal import Decimal, localcontext

import numpy as np
import pytest

from vae_numpy import losses

# logits where the library changes method (|l| = 2), near lambda = 1/2, and far from it
LOGITS = [1e-30, 1e-12, 3e-9, 1e-6, 1e-3, 0.07, 0.5, 1.0, 1.5, 1.99, 1.999999, 2.0,
          2.000001, 2.01, 3.0, 7.5, 18.0, 30.0, 37.0, 50.0, 300.0, 700.0]


def reference(logit: float) -> tuple[float, float, float]:
    """``log C``, ``d log C / dl`` and the mean, from the formulas in lambda, 400 digits.

    400 digits hold ``1 - lambda = e^-700`` beside 1, and ``lambda - 1/2`` at l = 1e-30.
    """
    with localcontext() as ctx:
        ctx.prec = 400
        l = Decimal(logit)                                    # the float's exact value
        lam = 1 / (1 + (-l).exp())
        y = 1 - 2 * lam
        artanh = ((1 + y) / (1 - y)).ln() / 2
        log_c = (2 * artanh / y).ln()
        mean = lam / (2 * lam - 1) + 1 / (2 * artanh)
        dlog_c = 1 / l - 2 / (l.exp() - (-l).exp())           # 1/l - 1/sinh(l)
        return float(log_c), float(dlog_c), float(mean)


@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_log_norm_its_derivative_and_the_mean_match_400_digit_arithmetic(sign):
    l = sign * np.array(LOGITS)
    ref = np.array([reference(v) for v in l])
    log_c = losses.log_continuous_bernoulli_norm(l)
    dlog_c = losses.log_continuous_bernoulli_norm_backward(np.ones_like(l), l)
    mean = losses.continuous_bernoulli_mean(l)
    np.testing.assert_allclose(log_c, ref[:, 0], rtol=4e-16, atol=0)
    # relative, entry by entry: near l = 0 the derivative is ~l/6, where 1/l - 1/sinh(l)
    # computed as written keeps no correct digit
    np.testing.assert_allclose(dlog_c, ref[:, 1], rtol=2e-15, atol=0)
    np.testing.assert_allclose(mean, ref[:, 2], rtol=2e-15, atol=0)


def test_the_naive_formula_cancels_where_the_library_does_not():
    """The check above has teeth: the paper's formula in float64 goes wrong at both ends."""
    def naive(l):
        lam = 1 / (1 + np.exp(-l))
        return np.log(2 * np.arctanh(1 - 2 * lam) / (1 - 2 * lam))

    with np.errstate(all="ignore"):
        assert not np.isfinite(naive(np.array([0.0, 800.0]))).any()      # 0/0 and lambda = 1
        assert abs(naive(30.0) - reference(30.0)[0]) > 1e-7                # lambda rounds
    assert abs(losses.log_continuous_bernoulli_norm(np.array(30.0)) - reference(30.0)[0]) < 1e-15


def test_agrees_with_the_papers_formula_away_from_one_half():
    """Where the formula in lambda is well conditioned (0.01 <= |l| <= 10), to ~1e-12."""
    l = np.concatenate([-np.geomspace(0.01, 10, 300), np.geomspace(0.01, 10, 300)])
    lam = 1 / (1 + np.exp(-l))
    artanh = np.arctanh(1 - 2 * lam)
    naive_log_c = np.log(2 * artanh / (1 - 2 * lam))
    naive_mean = lam / (2 * lam - 1) + 1 / (2 * artanh)
    np.testing.assert_allclose(losses.log_continuous_bernoulli_norm(l), naive_log_c,
                               rtol=1e-12, atol=0)
    np.testing.assert_allclose(losses.continuous_bernoulli_mean(l), naive_mean,
                               rtol=1e-12, atol=0)


@pytest.mark.parametrize("logit", [-30.0, -6.0, -1.3, -1e-4, 0.0, 2e-9, 0.4, 2.0, 9.0, 30.0])
def test_the_density_integrates_to_one_and_has_the_stated_mean(logit):
    """Gauss-Legendre quadrature on [0, 1] of p(x) = C lambda^x (1 - lambda)^(1 - x)."""
    nodes, weights = np.polynomial.legendre.leggauss(200)
    x = (nodes + 1) / 2                                        # [-1, 1] -> [0, 1]
    w = weights / 2
    l = np.full((x.size, 1), logit)
    density = np.exp(-losses.continuous_bernoulli_nll(l, x[:, None]))
    assert abs(w @ density - 1.0) < 1e-12
    assert abs(w @ (x * density) - losses.continuous_bernoulli_mean(np.array(logit))) < 1e-12


def test_the_mean_is_not_lambda():
    """lambda = sigmoid(l) is the Bernoulli's mean; the continuous Bernoulli's is nearer 1/2."""
    l = np.array([-4.0, -1.0, 1.0, 4.0])
    mean = losses.continuous_bernoulli_mean(l)
    lam = 1 / (1 + np.exp(-l))
    assert np.all(np.abs(mean - 0.5) < np.abs(lam - 0.5))
    np.testing.assert_allclose(mean[3], 0.769, atol=5e-4)  # the docstring's example
    assert losses.continuous_bernoulli_mean(np.array(0.0)) == 0.5


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_finite_everywhere_with_no_warning(dtype):
    big = np.finfo(dtype).max
    l = np.array([0.0, -0.0, 1e-30, -1e-30, 1.0, 2.0, -2.0, 88.0, -88.0, 1e4, -1e4, 1e30,
                  -1e30, big, -big], dtype=dtype)
    x = np.linspace(0, 1, l.size, dtype=dtype)[None, :]
    row = np.where(np.abs(l) > 1e30, 0, l)[None, :]          # a sum of +-max would overflow
    with warnings.catch_warnings():
        warnings.simplefilter("error")                        # overflow, 0/0, ... all fail
        out = [losses.log_continuous_bernoulli_norm(l),
               losses.log_continuous_bernoulli_norm_backward(np.ones_like(l), l),
               losses.continuous_bernoulli_mean(l),
               losses.continuous_bernoulli_nll(row, x),
               losses.continuous_bernoulli_nll_backward(np.ones(1, dtype), row, x)]
    for value in out:
        assert value.dtype == dtype and np.isfinite(value).all()
    assert out[0][0] == np.float32(math.log(2)) if dtype == np.float32 else math.log(2)
    assert out[1][0] == 0 and out[2][0] == 0.5
    tiny = np.array(1e-300)                 # below what the reference resolves
    assert losses.log_continuous_bernoulli_norm_backward(1.0, tiny) == tiny / 6


def test_float32_agrees_with_float64():
    l = np.concatenate([np.linspace(-40, 40, 801), np.geomspace(1e-8, 1.0, 50)])
    for f in (losses.log_continuous_bernoulli_norm, losses.continuous_bernoulli_mean,
              lambda v: losses.log_continuous_bernoulli_norm_backward(np.ones_like(v), v)):
        np.testing.assert_allclose(f(l.astype(np.float32)), f(l), rtol=2e-6, atol=1e-7)


@pytest.mark.parametrize("logit", [-40.0, -3.0, -0.2, 0.0, 1e-6, 0.7, 5.0, 40.0])
def test_samples_follow_the_distribution(logit):
    """Inverse-CDF draws: their mean and their CDF (Kolmogorov-Smirnov) match the density."""
    n = 40000
    l = np.full(n, logit)
    x = losses.continuous_bernoulli_sample(l, np.random.default_rng(3))
    assert x.dtype == np.float64 and x.min() >= 0 and x.max() <= 1
    mean = losses.continuous_bernoulli_mean(np.array(logit))
    se = x.std() / math.sqrt(n)
    assert abs(x.mean() - mean) < 5 * se
    # the CDF by quadrature of the density on [0, s], at the sorted samples
    grid = np.linspace(0, 1, 2001)
    pdf = np.exp(-losses.continuous_bernoulli_nll(np.full((grid.size, 1), logit), grid[:, None]))
    cdf = np.concatenate([[0], np.cumsum((pdf[1:] + pdf[:-1]) / 2 * np.diff(grid))])
    ks = np.max(np.abs(np.interp(np.sort(x), grid, cdf) - np.arange(1, n + 1) / n))
    assert ks < 1.63 / math.sqrt(n)                           # the 1% critical value


def test_samples_keep_float32():
    x = losses.continuous_bernoulli_sample(np.zeros((3, 4), np.float32),
                                           np.random.default_rng(0))
    assert x.dtype == np.float32 and x.shape == (3, 4)
