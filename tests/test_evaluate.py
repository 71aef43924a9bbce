"""Evaluation against answers found another way: log p(x) by quadrature, planted unit variances.

The importance-weighted bound is checked three ways: as ``logsumexp(log w) - log k``
of the log weights (written out here with SciPy), on weights that are all equal
(where the bound is that weight, for any k), and against the exact log-likelihood
of a model with one latent unit, which a quadrature over z computes to 1e-13.
"""

import itertools
import math

import numpy as np
import pytest
from scipy.special import logsumexp

from vae_numpy import evaluate
from vae_numpy.evaluate import (
    active_units,
    iw_estimate,
    iw_log_likelihood,
    log_importance_weights,
)
from vae_numpy.model import VAE, ModelConfig

LOG_2PI = math.log(2.0 * math.pi)


def small_vae(**overrides):
    cfg = dict(input_dim=10, hidden_dims=(8,), latent_dim=3)
    cfg.update(overrides)
    return VAE(ModelConfig(**cfg), rng=0, dtype=np.float64, backend="numpy-ref")


# -- the bound's arithmetic: log (1/k) sum_i w_i ----------------------------------------
@pytest.mark.parametrize("k", [1, 7, 50])
def test_iw_bound_is_logsumexp_of_the_log_weights_minus_log_k(k, rng):
    model = small_vae()
    x = (rng.random((40, 10)) < 0.4).astype(np.float64)
    got = iw_log_likelihood(model, x, k, rng=11, per_example=True)
    # all 40 examples and k samples fit in one draw (max_rows = 20000), so the same
    # seed gives the same eps as one call for the (k, N) log weights
    log_w = log_importance_weights(model, x, k, np.random.default_rng(11))
    expected = logsumexp(log_w, axis=0) - np.log(k)
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)
    assert iw_log_likelihood(model, x, k, rng=11) == pytest.approx(expected.mean(), rel=1e-12)


def test_iw_bound_in_chunks_is_the_same_log_mean_exp(rng):
    """max_rows = 3 and k = 7: one example at a time, the samples in chunks of 3, 3, 1,
    combined by the running log-sum-exp; the eps stream is that of one (7, 1, K) draw
    per example, in order."""
    model = small_vae()
    x = (rng.random((5, 10)) < 0.4).astype(np.float64)
    got = iw_log_likelihood(model, x, 7, rng=5, max_rows=3, per_example=True)
    stream = np.random.default_rng(5)
    expected = [logsumexp(log_importance_weights(model, x[i:i + 1], 7, stream)[:, 0]) - np.log(7)
                for i in range(5)]
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("k,max_rows", [(1, 20000), (10, 20000), (1000, 20000), (10, 4),
                                        (1000, 300)])
def test_iw_bound_of_equal_weights_is_that_weight(k, max_rows, monkeypatch):
    """k equal weights w: log (1/k) sum w = log w, for any k and any chunking, even at
    log w = -1000 where exp underflows (the running sum is taken relative to its max)."""
    def constant_weights(model, xb, k, rng, y=None):
        value = -1000.0 - 10.0 * xb[:, 0]             # differs by example, not by sample
        return np.broadcast_to(value, (k, xb.shape[0])).copy()

    monkeypatch.setattr(evaluate, "log_importance_weights", constant_weights)
    model = small_vae()
    x = np.linspace(0, 1, 30)[:, None] * np.ones((30, 10))
    est = iw_estimate(model, x, k, max_rows=max_rows)
    np.testing.assert_allclose(est.per_example, -1000.0 - 10.0 * x[:, 0], rtol=0, atol=1e-9)
    assert est.k == k and est.n == 30


# -- against the exact log p(x) of a model with one latent unit --------------------------
def _exact_log_px(model, x, points):
    """log p(x) = log int p(x|z) N(z; 0, 1) dz by the trapezoid rule on z in [-12, 12].

    The tails beyond |z| = 12 hold prior mass below e^-72. The decoder is tanh, so the
    integrand is smooth and the trapezoid rule converges fast (checked by the caller).
    """
    z = np.linspace(-12.0, 12.0, points)
    logits = model.decode(z[:, None])                                   # (G, D)
    # log p(x|z) of a Bernoulli decoder, written out: sum_d x_d l_d - log(1 + e^l_d)
    log_px_z = (x[:, None, :] * logits[None] - np.logaddexp(0.0, logits)[None]).sum(axis=-1)
    log_pz = -0.5 * (LOG_2PI + z * z)
    weights = np.full(points, z[1] - z[0])
    weights[[0, -1]] *= 0.5
    return logsumexp(log_px_z + log_pz + np.log(weights), axis=1)


def _one_latent_model():
    """6 pixels, 1 latent unit. The decoder's weights are scaled up so that p(x|z)
    depends strongly on z: the posterior is then far narrower than the prior and q
    (an untrained encoder) a poor proposal, so the bound has a gap worth measuring."""
    model = VAE(ModelConfig(input_dim=6, hidden_dims=(5,), latent_dim=1, activation="tanh"),
                rng=0, dtype=np.float64, backend="numpy-ref")
    model.params["dec.W1"][...] *= 6.0
    model.params["dec.W_out"][...] *= 4.0
    return model


def test_exact_log_likelihood_by_quadrature_is_a_distribution():
    model = _one_latent_model()
    x = np.array(list(itertools.product([0.0, 1.0], repeat=6)))        # all 64 images
    coarse, fine = _exact_log_px(model, x, 2001), _exact_log_px(model, x, 8001)
    np.testing.assert_allclose(coarse, fine, rtol=0, atol=1e-10)        # converged
    assert abs(np.exp(fine).sum() - 1.0) < 1e-10                        # sums to 1 over x


def test_iw_estimate_approaches_the_exact_log_likelihood_from_below():
    """E[L_k] <= log p(x), and the gap shrinks as k grows: for every one of the 64 binary
    images, each repeated R times (the per-example estimates, each with its own eps).

    The gap is about Var(w / p(x)) / (2k) for large k (the delta method); measured here
    it is about 1.0 nats at k = 1, 0.08 at k = 10 and 0.007 at k = 100, so about 7e-4
    is expected at k = 1000, whose standard error is 5e-4: a gap below 3e-3 at k = 1000
    is the bound converging to the exact value (a bound off by log(2) = 0.69, or with
    a wrong density of q, is off by far more).
    """
    model = _one_latent_model()
    images = np.array(list(itertools.product([0.0, 1.0], repeat=6)))
    exact = _exact_log_px(model, images, 4001)
    gaps, ses = {}, {}
    for k, reps in ((1, 200), (10, 200), (100, 1000), (1000, 100)):
        x = np.repeat(images, reps, axis=0)
        est = iw_log_likelihood(model, x, k, rng=k, per_example=True).reshape(64, reps)
        gap = exact[:, None] - est                                      # (64, reps)
        gaps[k], ses[k] = gap.mean(), gap.std(ddof=1) / math.sqrt(gap.size)
        if k == 1000:
            per_image = gap.mean(axis=1)
            assert np.abs(per_image).max() < 0.03, per_image
    summary = {k: f"{gaps[k]:.5f} +- {ses[k]:.5f}" for k in gaps}
    # below the exact value, by many standard errors, at k = 1 and 10
    assert gaps[1] > 10 * ses[1] and gaps[10] > 5 * ses[10], summary
    # the gap decreases with k, each step by more than 4 standard errors of the difference
    for a, b in ((1, 10), (10, 100), (100, 1000)):
        assert gaps[a] - gaps[b] > 4 * math.hypot(ses[a], ses[b]), summary
    # and at k = 1000 it is small, and not negative beyond noise
    assert -4 * ses[1000] < gaps[1000] < 3e-3, summary


# -- active units: Var_x(E_q[z_u]) > 0.01 -------------------------------------------------
# Planted variances of each unit's mean code over the data: zero, below 0.01 (with a
# standard deviation above 0.01, so that reading the std for the variance counts them),
# just either side of 0.01, and well above it.
PLANTED_VARIANCE = np.array([0.0, 1e-4, 4e-4, 0.005, 0.0098, 0.0102, 0.02, 0.5])


def _model_with_planted_mean_variances(batch_half=50):
    """mu_u(x) = a_u x_0 + b_u: x_0 is 0 or 1, each half the time (variance 1/4), so
    Var_x(mu_u) = a_u^2 / 4. The offsets b_u do not change a variance."""
    K = len(PLANTED_VARIANCE)
    model = VAE(ModelConfig(input_dim=3, hidden_dims=(2,), latent_dim=K), rng=0,
                dtype=np.float64, backend="numpy-ref")
    for name in ("enc.W1", "enc.b1", "enc.W_mu"):
        model.params[name][...] = 0.0
    model.params["enc.W1"][0, 0] = 1.0                 # h_0 = relu(x_0) = x_0
    model.params["enc.W_mu"][0] = 2.0 * np.sqrt(PLANTED_VARIANCE)
    model.params["enc.b_mu"][...] = np.linspace(-3.0, 3.0, K)
    x = np.zeros((2 * batch_half, 3))
    x[::2, 0] = 1.0
    x[:, 1:] = np.random.default_rng(0).random((2 * batch_half, 2))   # ignored by mu
    return model, x


def test_active_units_counts_the_variance_not_the_standard_deviation():
    model, x = _model_with_planted_mean_variances()
    mu = model.encode(x)[0]
    np.testing.assert_allclose(mu.var(axis=0), PLANTED_VARIANCE, rtol=1e-12, atol=1e-15)
    # Var > 0.01: the units planted at 0.0102, 0.02 and 0.5. (Std > 0.01 would count 7.)
    assert active_units(model, x) == 3
    assert active_units(model, x, batch_size=7) == 3      # batches of 7, a ragged last
    assert active_units(model, x, threshold=0.03) == 1
    assert active_units(model, x, threshold=0.003) == 5

