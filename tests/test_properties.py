"""Property tests: the losses and layers against float64 references on random and extreme inputs.

Extremes: logits of +-1e4, log-variances of +-80, all-zero and all-one images, batch size 1.
Each property runs ``PROPERTY_EXAMPLES`` examples (200 by default, as CI runs them).
"""

import os

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from vae_numpy import functional as F
from vae_numpy import losses

EXAMPLES = int(os.environ.get("PROPERTY_EXAMPLES", "200"))
SETTINGS = settings(max_examples=EXAMPLES, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])

# float32 has ~7 significant digits; sums over up to 50 terms lose a little more
RTOL = 1e-5
ATOL = 1e-5



def assert_close(actual, reference, rtol, atol):
    """|actual - reference| <= rtol * |reference| + atol, where atol may be an array."""
    err = np.abs(actual.astype(np.float64) - reference)
    bound = rtol * np.abs(reference) + atol
    assert (err <= bound).all(), f"max excess {np.max(err - bound):.3g}"


shapes = st.tuples(st.integers(1, 6), st.integers(1, 50))


def f32(shape, lo, hi, extremes=()):
    """float32 arrays within [lo, hi], with the given extreme values mixed in often."""
    values = st.floats(lo, hi, width=32, allow_nan=False, allow_infinity=False)
    if extremes:
        values = st.one_of(values, st.sampled_from([np.float32(e) for e in extremes]))
    return hnp.arrays(np.float32, shape, elements=values)


@st.composite
def logits_and_images(draw):
    shape = draw(shapes)
    logits = draw(f32(shape, -50, 50, extremes=(-1e4, 1e4, 0.0)))
    kind = draw(st.sampled_from(["grey", "zeros", "ones", "binary"]))
    if kind == "grey":
        x = draw(f32(shape, 0, 1))
    elif kind == "binary":
        x = draw(hnp.arrays(np.float32, shape, elements=st.sampled_from([0.0, 1.0])))
    else:
        x = np.full(shape, 1.0 if kind == "ones" else 0.0, np.float32)
    return logits, x


@SETTINGS
@given(logits_and_images())
def test_bernoulli_nll_matches_float64_reference(args):
    logits, x = args
    nll = losses.bernoulli_nll(logits, x)
    l64, x64 = logits.astype(np.float64), x.astype(np.float64)
    ref = (np.logaddexp(0.0, l64) - x64 * l64).sum(axis=1)
    assert nll.dtype == np.float32
    assert np.isfinite(nll).all()
    # the sum's rounding grows with the logits' size
    assert_close(nll, ref, RTOL, ATOL * (1 + np.abs(l64).sum(axis=1)))


@SETTINGS
@given(logits_and_images())
def test_bernoulli_gradient_matches_float64_reference(args):
    logits, x = args
    dnll = np.full(logits.shape[0], 1.0 / logits.shape[0], np.float32)
    d = losses.bernoulli_nll_backward(dnll, logits, x)
    l64 = logits.astype(np.float64)
    ref = (0.5 * (1.0 + np.tanh(0.5 * l64)) - x) / logits.shape[0]
    assert d.dtype == np.float32 and np.isfinite(d).all()
    np.testing.assert_allclose(d, ref, rtol=RTOL, atol=1e-6)


@st.composite
def gaussians(draw):
    shape = draw(shapes)
    mu = draw(f32(shape, -100, 100, extremes=(0.0,)))
    log_var = draw(f32(shape, -80, 80, extremes=(-80.0, 80.0, 0.0, 1e-6, -1e-6)))
    eps = draw(f32(shape, -6, 6))
    return mu, log_var, eps


@SETTINGS
@given(gaussians())
def test_kl_is_finite_and_matches_float64_reference(args):
    mu, log_var, _ = args
    kl = losses.kl_divergence(mu, log_var)
    m, lv = mu.astype(np.float64), log_var.astype(np.float64)
    ref = 0.5 * (m * m + np.expm1(lv) - lv).sum(axis=1)
    assert kl.dtype == np.float32 and np.isfinite(kl).all()
    assert (kl >= 0).all()
    np.testing.assert_allclose(kl, ref, rtol=RTOL, atol=1e-6)
    dmu, dlog_var = losses.kl_divergence_backward(np.ones(len(mu), np.float32), mu, log_var)
    assert np.isfinite(dmu).all() and np.isfinite(dlog_var).all()
    np.testing.assert_allclose(dlog_var, 0.5 * np.expm1(lv), rtol=RTOL, atol=1e-7)


@SETTINGS
@given(gaussians())
def test_reparameterization_is_finite_and_matches_float64_reference(args):
    mu, log_var, eps = args
    z, cache = F.reparameterize_forward(mu, log_var, eps)
    std64 = np.exp(0.5 * log_var.astype(np.float64))
    ref = mu + std64 * eps
    assert z.dtype == np.float32 and np.isfinite(z).all()
    assert_close(z, ref, RTOL, ATOL * (1 + np.abs(mu)))
    dz = np.ones_like(z)
    dmu, dlog_var = F.reparameterize_backward(dz, cache)
    assert np.isfinite(dmu).all() and np.isfinite(dlog_var).all()
    np.testing.assert_allclose(dlog_var, 0.5 * eps * std64, rtol=RTOL, atol=1e-7)


@SETTINGS
@given(f32(shapes, -1e4, 1e4, extremes=(-1e4, 1e4, 0.0)))
def test_sigmoid_and_softplus_never_overflow(a):
    p, _ = F.sigmoid_forward(a)
    sp = losses.softplus(a)
    a64 = a.astype(np.float64)
    assert np.isfinite(p).all() and ((p >= 0) & (p <= 1)).all()
    assert np.isfinite(sp).all()
    np.testing.assert_allclose(p, 0.5 * (1 + np.tanh(0.5 * a64)), rtol=RTOL, atol=1e-7)
    np.testing.assert_allclose(sp, np.logaddexp(0, a64), rtol=RTOL, atol=1e-6)


def test_kl_keeps_its_digits_near_the_prior():
    """expm1 matters: at log_var = 1e-4 the plain formula has cancellation error in float32."""
    log_var = np.full((1, 1), 1e-4, np.float32)
    kl = losses.kl_divergence(np.zeros_like(log_var), log_var)[0]
    exact = 0.5 * (np.expm1(np.float64(log_var[0, 0])) - np.float64(log_var[0, 0]))  # ~ lv^2/4
    assert abs(kl - exact) / exact < 1e-3
    plain = 0.5 * (np.exp(log_var) - np.float32(1) - log_var)[0, 0]
    assert abs(plain - exact) / exact > 1e-2  # the reason for expm1


# -- the numba kernels against their pure-array references, on the same extremes -------
# (vae_numpy.kernels; tests/test_kernels.py checks them on ordinary random values)
kernels = pytest.importorskip("vae_numpy.kernels")
needs_numba = pytest.mark.skipif(not kernels.have_numba(), reason="numba is not installed")


@needs_numba
@SETTINGS
@given(logits_and_images(), st.floats(-1e4, 1e4, width=32))
def test_bernoulli_kernel_matches_reference_on_extremes(args, bias):
    logits, x = args
    n, d = logits.shape
    b = np.full(d, bias, np.float32)
    got, ref = logits.copy(), logits.copy()
    db, db_ref = np.empty(d, np.float32), np.empty(d, np.float32)
    total = kernels.bernoulli_nll_grad(got, b, x, 1.0 / n, db)
    total_ref = kernels.bernoulli_nll_grad_reference(ref, b, x, 1.0 / n, db_ref)
    assert np.isfinite(total) and np.isfinite(got).all() and np.isfinite(db).all()
    l64 = logits.astype(np.float64) + np.float64(np.float32(bias))
    assert total == pytest.approx(total_ref, rel=RTOL, abs=ATOL * (1 + np.abs(l64).sum()))
    # the gradient sigmoid(l) - x lies in [-1, 1]: compare on that scale
    np.testing.assert_allclose(got, ref, rtol=RTOL, atol=1e-6 / n)
    np.testing.assert_allclose(db, db_ref, rtol=RTOL, atol=1e-6)


@needs_numba
@SETTINGS
@given(gaussians(), st.floats(0.0, 2.0, width=32))
def test_reparameterize_kl_kernel_matches_reference_on_extremes(args, beta):
    mu, log_var, eps = args
    n, k = mu.shape
    zero = np.zeros(k, np.float32)
    outs = []
    for fn in (kernels.reparameterize_kl, kernels.reparameterize_kl_reference):
        m, lv = mu.copy(), log_var.copy()
        z, hm = np.empty_like(mu), np.empty_like(mu)
        kl = fn(m, lv, zero, zero, eps, z, hm)
        outs.append((kl, z, hm))
    (kl, z, hm), (kl_ref, z_ref, hm_ref) = outs
    assert np.isfinite(kl) and np.isfinite(z).all() and np.isfinite(hm).all()
    # at log_var = 80 the KL is about 1e17 per unit: relative precision of a float32 sum
    assert kl == pytest.approx(kl_ref, rel=1e-5, abs=1e-5)
    np.testing.assert_allclose(hm, hm_ref, rtol=RTOL, atol=1e-7)
    assert_close(z, z_ref.astype(np.float64), RTOL, ATOL * (1 + np.abs(mu)))
    dz = eps[::-1].copy()   # any upstream gradient of the right shape
    grads = []
    for fn in (kernels.reparameterize_kl_backward, kernels.reparameterize_kl_backward_reference):
        dmu, dlv = np.empty_like(mu), np.empty_like(mu)
        dbm, dbl = np.empty(k, np.float32), np.empty(k, np.float32)
        fn(dz, eps, mu, hm_ref, beta / n, dmu, dlv, dbm, dbl)
        grads.append((dmu, dlv, dbm, dbl))
    for a, b in zip(*grads):
        assert np.isfinite(a).all()
        np.testing.assert_allclose(a, b, rtol=RTOL, atol=1e-6 * (1 + np.abs(b).max()))


@needs_numba
@SETTINGS
@given(f32(shapes, -1e4, 1e4, extremes=(-1e4, 1e4, 0.0)),
       f32(shapes, -1e4, 1e4, extremes=(-1e4, 1e4, 0.0)), st.booleans())
def test_bias_act_and_relu_backward_kernels_match_reference_on_extremes(a, dh, relu):
    shape = (a.shape[0], min(a.shape[1], dh.shape[1]))
    a = np.ascontiguousarray(a[:shape[0], :shape[1]])
    dh = np.ascontiguousarray(np.resize(dh, shape))
    b = a[0][::-1].copy()
    h = kernels.bias_act(a.copy(), b, relu)
    np.testing.assert_array_equal(h, kernels.bias_act_reference(a.copy(), b, relu))
    h = np.maximum(h, 0)
    db, db_ref = np.empty(shape[1], np.float32), np.empty(shape[1], np.float32)
    got = kernels.relu_backward(dh.copy(), h, db)
    ref = kernels.relu_backward_reference(dh.copy(), h, db_ref)
    np.testing.assert_array_equal(got, ref)            # a mask: exact
    assert_close(db, db_ref.astype(np.float64), RTOL, ATOL * np.abs(ref).sum(axis=0))


@needs_numba
@SETTINGS
@given(f32(st.integers(1, 300).map(lambda n: (n,)), -1e4, 1e4, extremes=(-1e4, 1e4, 0.0)),
       st.integers(1, 10_000), st.sampled_from([1e-4, 1e-3, 1e-1]))
def test_adam_kernel_matches_reference_on_extremes(g, t, lr):
    p0 = np.linspace(-1, 1, g.size, dtype=np.float32)
    m0, v0 = g * np.float32(0.1), g * g * np.float32(1e-3)
    p, m, v = p0.copy(), m0.copy(), v0.copy()
    pr, mr, vr = p0.copy(), m0.copy(), v0.copy()
    kernels.adam_update(p, g, m, v, lr, 0.9, 0.999, 1e-8, t)
    kernels.adam_update_reference(pr, g, mr, vr, lr, 0.9, 0.999, 1e-8, t)
    assert np.isfinite(p).all() and np.isfinite(m).all() and np.isfinite(v).all()
    np.testing.assert_allclose(m, mr, rtol=RTOL, atol=1e-30)
    np.testing.assert_allclose(v, vr, rtol=RTOL, atol=1e-30)
    # the step lr * m_hat / (sqrt(v_hat) + eps) is of order lr: its rounding, plus 2 ulp of p
    np.testing.assert_allclose(p, pr, rtol=0, atol=1e-5 * lr + 2.5e-7)
