"""Every numba kernel against its pure-array reference, and the fused step against the model.

float32 tolerances: the kernels and the references round differently (an FMA
instead of a multiply and an add, a polynomial ``exp`` instead of the C
library's), so they agree to a few units in the last place, not bit for bit.
"""

import os
import tracemalloc

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vae_numpy import kernels as K
from vae_numpy.fused import FusedStep, fused_step_for, supports
from vae_numpy.model import VAE, Autoencoder

pytestmark = pytest.mark.skipif(not K.have_numba(), reason="numba is not installed")

RTOL = 2e-6       # elementwise float32 results (a few ulp)
F32 = np.float32

shapes = st.tuples(st.integers(1, 70), st.integers(1, 90))
seeds = st.integers(0, 2**32 - 1)
SETTINGS = settings(max_examples=int(os.environ.get("PROPERTY_EXAMPLES", "200")), deadline=None)


def randn(rng, *shape, scale=1.0):
    return (rng.standard_normal(shape) * scale).astype(F32)


def pixels(rng, n, d):
    """Like MNIST: most pixels 0, some 1, the rest grey."""
    x = rng.random((n, d)).astype(F32)
    x[rng.random((n, d)) < 0.7] = 0
    x[rng.random((n, d)) < 0.05] = 1
    return x


def assert_close(a, b, rtol=RTOL, atol=0.0):
    np.testing.assert_allclose(a, b, rtol=rtol, atol=atol)


# -- the vectorizable exp, expm1 and log1p ---------------------------------------------
def test_exp_neg_is_accurate_over_its_whole_range():
    t = -np.concatenate([np.linspace(0, 87, 200001), np.logspace(-30, 1.9, 10001)]).astype(F32)
    exact = np.exp(t.astype(np.float64))
    got = K.exp_neg(t)
    assert got.dtype == F32
    assert np.max(np.abs(got - exact) / exact) < 2.5e-7       # 2 ulp of float32
    assert K.exp_neg(np.array([0.0], F32))[0] == 1.0
    # below -87 the kernel returns exp(-87) ~ 1.6e-38 (never a subnormal)
    tail = K.exp_neg(np.array([-88.0, -200.0, -np.inf], F32))
    assert np.all(tail > 0) and np.all(tail < 1.7e-38)


def test_expm1_keeps_relative_precision_near_zero():
    t = np.concatenate([np.linspace(-87, 88, 200001), np.linspace(-1, 1, 200001),
                        [1e-30, -1e-30, 1e-8, 0.4999, 0.5, -0.5]]).astype(F32)
    exact = np.expm1(t.astype(np.float64))
    got = K.expm1(t)
    nonzero = exact != 0
    assert np.max(np.abs(got[nonzero] - exact[nonzero]) / np.abs(exact[nonzero])) < 3e-7
    assert K.expm1(np.array([0.0], F32))[0] == 0.0


def test_log1p_01_is_accurate_on_the_unit_interval():
    e = np.concatenate([np.linspace(0, 1, 100001), np.logspace(-38, 0, 10001)]).astype(F32)
    exact = np.log1p(e.astype(np.float64))
    got = K.log1p_01(e)
    nonzero = exact > 0
    assert np.max(np.abs(got[nonzero] - exact[nonzero]) / exact[nonzero]) < 3e-7
    assert K.log1p_01(np.array([0.0], F32))[0] == 0.0


# -- bias + activation and its backward -------------------------------------------------
@SETTINGS
@given(shapes, seeds, st.booleans())
def test_bias_act_matches_reference(shape, seed, relu):
    rng = np.random.default_rng(seed)
    a, b = randn(rng, *shape), randn(rng, shape[1])
    expected = K.bias_act_reference(a.copy(), b, relu)
    got = K.bias_act(a.copy(), b, relu)
    np.testing.assert_array_equal(got, expected)   # one add and a max: exact


def test_relu_keeps_nan_as_the_reference_does():
    a = np.array([[np.nan, -1.0, 2.0]], F32)
    b = np.zeros(3, F32)
    got = K.bias_act(a.copy(), b, True)
    np.testing.assert_array_equal(got, K.bias_act_reference(a.copy(), b, True))
    assert np.isnan(got[0, 0])


@SETTINGS
@given(shapes, seeds, st.booleans())
def test_relu_backward_matches_reference(shape, seed, two_inputs):
    rng = np.random.default_rng(seed)
    h = np.maximum(randn(rng, *shape), 0)
    dh, dh2 = randn(rng, *shape), randn(rng, *shape)
    db1, db2 = np.empty(shape[1], F32), np.empty(shape[1], F32)
    extra = dh2 if two_inputs else None
    expected = K.relu_backward_reference(dh.copy(), h, db1, None if extra is None else
                                         extra.copy())
    got = K.relu_backward(dh.copy(), h, db2, extra)
    assert_close(got, expected)
    assert_close(db2, db1, rtol=1e-5, atol=1e-6)


# -- the Bernoulli log-likelihood with its gradient ---------------------------------------
@SETTINGS
@given(shapes, seeds, st.sampled_from([0.1, 1.0, 5.0, 30.0]))
def test_bernoulli_nll_grad_matches_reference(shape, seed, scale):
    rng = np.random.default_rng(seed)
    n, d = shape
    logits, b, x = randn(rng, n, d, scale=scale), randn(rng, d), pixels(rng, n, d)
    w = 1.0 / n
    db_ref, db = np.empty(d, F32), np.empty(d, F32)
    ref = logits.copy()
    total_ref = K.bernoulli_nll_grad_reference(ref, b, x, w, db_ref)
    got = logits.copy()
    total = K.bernoulli_nll_grad(got, b, x, w, db)
    assert total == pytest.approx(total_ref, rel=2e-6, abs=1e-4)
    # the gradient sigmoid(l) - x, scaled: compare on the scale of its largest entries
    assert_close(got, ref, rtol=2e-6, atol=2e-7 * w)
    assert_close(db, db_ref, rtol=1e-5, atol=1e-6)


def test_bernoulli_nll_grad_is_finite_and_exact_for_extreme_logits():
    logits = np.array([[-200.0, -90.0, -30.0, 0.0, 30.0, 90.0, 200.0]], F32)
    x = np.array([[0.0, 1.0, 0.5, 1.0, 0.0, 1.0, 0.25]], F32)
    b = np.zeros(7, F32)
    db = np.empty(7, F32)
    got = logits.copy()
    total = K.bernoulli_nll_grad(got, b, x, 1.0, db)
    # softplus(l) - x l, from float64 exactly
    ll = logits.astype(np.float64)
    exact = np.sum(np.logaddexp(0, ll) - x * ll)
    assert total == pytest.approx(exact, rel=1e-6)
    sig = 1 / (1 + np.exp(-ll))
    assert_close(got, (sig - x)[0:1], rtol=1e-6, atol=1e-30)


# -- reparameterization and KL ----------------------------------------------------------
@SETTINGS
@given(shapes, seeds, st.booleans())
def test_reparameterize_kl_matches_reference(shape, seed, strided):
    rng = np.random.default_rng(seed)
    n, k = shape
    both = randn(rng, n, 2 * k, scale=2.0)
    if strided:   # the fused step passes mu and log_var as halves of one (N, 2K) array
        mu0, lv0 = both[:, :k], both[:, k:]
    else:
        mu0, lv0 = np.ascontiguousarray(both[:, :k]), np.ascontiguousarray(both[:, k:])
    b_mu, b_lv, eps = randn(rng, k), randn(rng, k), randn(rng, n, k)
    outs = {}
    for name, fn in (("ref", K.reparameterize_kl_reference), ("numba", K.reparameterize_kl)):
        mu, lv = mu0.copy(), lv0.copy()
        z, hm = np.empty((n, k), F32), np.empty((n, k), F32)
        kl = fn(mu, lv, b_mu, b_lv, eps, z, hm)
        outs[name] = (kl, mu, lv, z, hm)
    (kl_r, mu_r, lv_r, z_r, hm_r), (kl_n, mu_n, lv_n, z_n, hm_n) = outs["ref"], outs["numba"]
    assert kl_n == pytest.approx(kl_r, rel=1e-5, abs=1e-5)
    np.testing.assert_array_equal(mu_n, mu_r)
    np.testing.assert_array_equal(lv_n, lv_r)
    assert_close(hm_n, hm_r, rtol=3e-7, atol=1e-30)
    assert_close(z_n, z_r, rtol=1e-6, atol=1e-6)

    dz = randn(rng, n, k)
    grads = {}
    for name, fn in (("ref", K.reparameterize_kl_backward_reference),
                     ("numba", K.reparameterize_kl_backward)):
        dmu, dlv = np.empty((n, k), F32), np.empty((n, k), F32)
        dbm, dbl = np.empty(k, F32), np.empty(k, F32)
        fn(dz, eps, mu_r, hm_r, 0.7 / n, dmu, dlv, dbm, dbl)
        grads[name] = (dmu, dlv, dbm, dbl)
    # each gradient is a sum of a term through z and a term through the KL, which can
    # cancel: compare on the scale of the two terms (a few ulp of the larger)
    std, w = hm_r.astype(np.float64) + 1, 0.7 / n
    scales = (np.abs(dz) + w * np.abs(mu_r),
              0.5 * np.abs(dz * eps * std) + 0.5 * w * np.abs(hm_r * (hm_r + 2.0)))
    for a, b, scale in zip(grads["numba"][:2], grads["ref"][:2], scales):
        assert np.all(np.abs(a.astype(np.float64) - b) <= 2e-6 * scale + 1e-12)
    # the bias gradients are column sums: compare on the scale of the terms summed
    for a, b, d in zip(grads["numba"][2:], grads["ref"][2:], grads["ref"][:2]):
        assert_close(a, b, rtol=0, atol=1e-6 * (1 + np.abs(d).sum(axis=0).max()))


def test_reparameterize_kl_agrees_with_the_losses_module():
    from vae_numpy import functional as F
    from vae_numpy import losses

    rng = np.random.default_rng(3)
    mu, lv, eps = randn(rng, 9, 4), randn(rng, 9, 4), randn(rng, 9, 4)
    zero = np.zeros(4, F32)
    z, hm = np.empty_like(mu), np.empty_like(mu)
    kl = K.reparameterize_kl(mu.copy(), lv.copy(), zero, zero, eps, z, hm)
    assert kl == pytest.approx(float(losses.kl_divergence(mu, lv).sum()), rel=1e-6)
    assert_close(z, F.reparameterize_forward(mu, lv, eps)[0], rtol=1e-6)


# -- Adam ------------------------------------------------------------------------------
@pytest.mark.parametrize("threads", [1, 2, 3])
def test_adam_update_matches_reference(threads):
    rng = np.random.default_rng(0)
    n = 300_007   # big enough to be split, odd so the slices are uneven
    p0, m0 = randn(rng, n), randn(rng, n, scale=1e-3)
    v0 = np.abs(randn(rng, n, scale=1e-6))
    p, m, v = p0.copy(), m0.copy(), v0.copy()
    pr, mr, vr = p0.copy(), m0.copy(), v0.copy()
    for t in range(1, 4):
        g = randn(rng, n, scale=1e-2)
        K.adam_update(p, g, m, v, 1e-3, 0.9, 0.999, 1e-8, t, threads=threads)
        K.adam_update_reference(pr, g, mr, vr, 1e-3, 0.9, 0.999, 1e-8, t)
    # m = b1 m + (1 - b1) g cancels where m and g differ in sign: compare on the scale
    # of the terms (about 1e-3, whose float32 ulp is 1.2e-10), not relative to m
    assert_close(m, mr, rtol=1e-6, atol=2e-9)
    assert_close(v, vr, rtol=1e-6, atol=1e-12)
    # the parameters (of order 1) within 2 ulp
    assert_close(p, pr, rtol=0, atol=2.5e-7 * np.abs(pr).max())


def test_adam_update_is_the_same_on_any_number_of_threads():
    rng = np.random.default_rng(1)
    n = 400_000
    p0, g = randn(rng, n), randn(rng, n)
    results = []
    for threads in (1, 2, 4):
        p, m, v = p0.copy(), np.zeros(n, F32), np.zeros(n, F32)
        K.adam_update(p, g, m, v, 1e-3, 0.9, 0.999, 1e-8, 1, threads=threads)
        results.append(p)
    np.testing.assert_array_equal(results[0], results[1])
    np.testing.assert_array_equal(results[0], results[2])


def test_adam_update_flushes_moments_before_they_turn_subnormal():
    p = np.ones(8, F32)
    m = np.full(8, 1e-31, F32)
    v = np.full(8, 1e-31, F32)
    g = np.zeros(8, F32)
    K.adam_update(p, g, m, v, 1e-3, 0.9, 0.999, 1e-8, 5)
    assert np.all(m == 0) and np.all(v == 0)
    np.testing.assert_array_equal(p, np.ones(8, F32))


# -- the numba matmuls and the sparse first layer ----------------------------------------
@SETTINGS
@given(st.integers(1, 40), st.integers(1, 300), st.integers(1, 50), seeds,
       st.sampled_from(["nn", "tn", "nt"]))
def test_matmul_numba_matches_blas(m, k, n, seed, layout):
    rng = np.random.default_rng(seed)
    a = randn(rng, k, m).T if layout == "tn" else randn(rng, m, k)
    b = randn(rng, n, k).T if layout == "nt" else randn(rng, k, n)
    out = np.empty((m, n), F32)
    K.matmul_numba(a, b, out)
    expected = a.astype(np.float64) @ b.astype(np.float64)
    # a sum of k products: error grows like sqrt(k) ulp of the terms' scale
    assert_close(out, expected, rtol=0, atol=1e-5 * np.sqrt(k) * max(1.0, np.abs(expected).max()))


@SETTINGS
@given(st.integers(1, 40), st.integers(1, 30), st.integers(1, 60), seeds, st.booleans())
def test_matmul_bias_act_matches_reference(m, k, n, seed, relu):
    rng = np.random.default_rng(seed)
    a, w, b = randn(rng, m, k), randn(rng, k, n), randn(rng, n)
    out, ref = np.empty((m, n), F32), np.empty((m, n), F32)
    K.matmul_bias_act(a, w, b, out, relu)
    K.matmul_bias_act_reference(a, w, b, ref, relu)
    assert_close(out, ref, rtol=1e-5, atol=1e-5)


@SETTINGS
@given(st.integers(1, 30), st.integers(1, 100), st.integers(1, 40), seeds)
def test_sparse_first_layer_matches_dense(n, d, h, seed):
    rng = np.random.default_rng(seed)
    x = pixels(rng, n, d)
    w, b, da = randn(rng, d, h), randn(rng, h), randn(rng, n, h)
    indptr, indices, values = K.csr_from_dense(x)
    ref = K.csr_from_dense_reference(x)
    np.testing.assert_array_equal(indptr, ref[0])
    np.testing.assert_array_equal(indices, ref[1])
    np.testing.assert_array_equal(values, ref[2])
    out, dense = np.empty((n, h), F32), np.empty((n, h), F32)
    K.spmm_bias_act((indptr, indices, values), w, b, out, True)
    K.matmul_bias_act_reference(x, w, b, dense, True)
    assert_close(out, dense, rtol=1e-5, atol=1e-5)
    dw = np.empty((d, h), F32)
    K.spmm_tn((indptr, indices, values), da, dw)
    assert_close(dw, x.T @ da, rtol=1e-5, atol=1e-5)


@SETTINGS
@given(st.integers(1, 40), st.integers(1, 120), st.integers(1, 30), seeds, st.integers(1, 3))
def test_active_columns_compact_the_first_layer_exactly(n, d, h, seed, parts):
    rng = np.random.default_rng(seed)
    x = pixels(rng, n, d)
    x[:, rng.random(d) < 0.3] = 0                 # some pixels unused by the whole batch
    w, da = randn(rng, d, h), randn(rng, n, h)
    ac = K.ActiveColumns(n, d, h, parts)
    xc, wc = ac.compact(x, w)
    cols = K.active_columns_reference(x)
    assert ac.p == len(cols)
    np.testing.assert_array_equal(xc, x[:, cols])
    np.testing.assert_array_equal(wc, w[cols])
    assert_close(xc @ wc, x @ w, rtol=1e-5, atol=1e-5)
    dwc = ac.grad_view(h)
    np.matmul(xc.T, da, out=dwc)
    dw = np.full((d, h), np.nan, F32)
    ac.scatter(dwc, dw)
    assert_close(dw, x.T @ da, rtol=1e-5, atol=1e-5)    # unused rows exactly 0
    unused = np.setdiff1d(np.arange(d), cols)
    assert np.all(dw[unused] == 0)


# -- the fused training step against the readable model ----------------------------------
CONFIGS = [
    (VAE, {}),
    (VAE, {"hidden_dims": (64, 32), "latent_dim": 5, "beta": 0.5}),
    (VAE, {"hidden_dims": (16, 24, 8), "latent_dim": 3, "input_dim": 50}),
    (Autoencoder, {"hidden_dims": (40,), "latent_dim": 3}),
]


@pytest.mark.parametrize("cls,overrides", CONFIGS)
def test_fused_step_matches_forward_and_backward(cls, overrides):
    fused = cls(rng=0, **overrides)
    ref = cls(rng=0, backend="numpy-ref", **overrides)
    assert isinstance(fused_step_for(fused), FusedStep)
    assert fused_step_for(ref) is None
    rng = np.random.default_rng(1)
    for n in (37, 5, 37):        # two batch sizes, and back (buffers are per size)
        x = pixels(rng, n, fused.config.input_dim)
        eps = fused.noise(n, rng)
        loss, terms, grads = fused.loss_and_grads(x, eps)
        loss_r, cache = ref.forward(x, eps)[0::2]
        terms_r = ref.forward(x, eps)[1]
        grads_r = ref.backward(cache)
        assert isinstance(loss, np.float32)
        assert float(loss) == pytest.approx(float(loss_r), rel=1e-6)
        for key in ("loss", "rec", "kl"):
            assert terms[key] == pytest.approx(terms_r[key], rel=1e-5, abs=1e-6)
        assert grads is fused.grads
        for name, g in grads.items():
            scale = np.abs(grads_r[name]).max() + 1e-12
            assert np.abs(g - grads_r[name]).max() / scale < 2e-5, name


@pytest.mark.parametrize("first_layer", ["range", "dense", "compact"])
def test_first_layer_variants_give_the_same_step(first_layer):
    """Skipping blank pixel columns (a block, or every blank one) changes no number
    beyond rounding, and the gradient rows of skipped pixels are exactly 0."""
    model = VAE(rng=0, hidden_dims=(32,), latent_dim=4)
    ref = VAE(rng=0, hidden_dims=(32,), latent_dim=4, backend="numpy-ref")
    step = FusedStep(model, first_layer=first_layer)
    rng = np.random.default_rng(5)
    x = np.zeros((20, 784), F32)
    x[:, 90:700] = pixels(rng, 20, 610)       # blank margins, as in MNIST
    x[:, 300] = 0                              # and a blank column inside the block
    eps = model.noise(20, rng)
    model.grad_flat[:] = np.nan
    loss, _, grads = step(x, eps)
    loss_r, _, grads_r = ref.loss_and_grads(x, eps)
    assert float(loss) == pytest.approx(float(loss_r), rel=1e-6)
    for name in grads:
        scale = np.abs(grads_r[name]).max() + 1e-12
        assert np.abs(grads[name] - grads_r[name]).max() / scale < 2e-5, name
    assert np.all(grads["enc.W1"][:90] == 0) and np.all(grads["enc.W1"][700:] == 0)
    assert K.used_range(x) == K.used_range_reference(x) == (90, 700)
    assert K.used_range(np.zeros((3, 5), F32)) == K.used_range_reference(
        np.zeros((3, 5), F32)) == (0, 0)
    with pytest.raises(ValueError, match="first_layer"):
        FusedStep(model, first_layer="sparse")


def test_fused_step_writes_every_gradient_into_grad_flat():
    model = VAE(hidden_dims=(32,), latent_dim=4, rng=0)
    rng = np.random.default_rng(0)
    model.grad_flat[:] = np.nan                 # anything not overwritten would stay NaN
    x = pixels(rng, 10, 784)
    model.loss_and_grads(x, model.noise(10, rng))
    assert np.isfinite(model.grad_flat).all()


def test_fused_step_reads_non_contiguous_batches():
    model = VAE(hidden_dims=(32,), latent_dim=4, rng=0)
    ref = VAE(hidden_dims=(32,), latent_dim=4, rng=0, backend="numpy-ref")
    rng = np.random.default_rng(2)
    big = pixels(rng, 20, 784)
    x = big[::2]                                 # a strided view
    eps = model.noise(10, rng)
    loss, _, _ = model.loss_and_grads(x, eps)
    assert float(loss) == pytest.approx(float(ref.loss_and_grads(x, eps)[0]), rel=1e-6)


def test_fused_step_checks_its_inputs_like_the_model():
    from vae_numpy.errors import InputError

    model = VAE(hidden_dims=(8,), latent_dim=2, rng=0)
    x = np.zeros((4, 784), F32)
    with pytest.raises(InputError, match="eps must have shape"):
        model.loss_and_grads(x, np.zeros((3, 2), F32))
    with pytest.raises(InputError, match=r"values in \[0, 1\]"):
        model.loss_and_grads(x + 2, np.zeros((4, 2), F32))


def test_fused_step_allocates_no_arrays_in_its_hot_loop():
    model = VAE(rng=0)
    step = fused_step_for(model)
    rng = np.random.default_rng(0)
    x = pixels(rng, 128, 784)
    eps = model.noise(128, rng)
    from vae_numpy.train import make_optimizer

    opt = make_optimizer(model)
    for _ in range(2):                            # buffers made, kernels compiled
        step(x, eps, check=False)
        opt.step(model.grads)
    tracemalloc.start()
    try:
        start, _ = tracemalloc.get_traced_memory()
        for _ in range(3):
            step(x, eps, check=False)
            opt.step(model.grads)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # a few Python floats and the terms dict; the reference path makes ~3.7 MB here
    assert peak - start < 16 * 1024


def test_supports_says_why_not():
    assert supports(VAE(rng=0))[0]
    ok, why = supports(VAE(rng=0, likelihood="gaussian", gaussian_std=0.1))
    assert not ok and "Bernoulli" in why
    ok, why = supports(VAE(rng=0, likelihood="continuous_bernoulli"))
    assert not ok and "continuous Bernoulli normalizer" in why
    ok, why = supports(VAE(rng=0, dtype=np.float64))
    assert not ok and "float32" in why
    ok, why = supports(VAE(rng=0, backend="numpy-ref"))
    assert not ok and "numpy-ref" in why
    with pytest.raises(ValueError, match="cannot run this model"):
        FusedStep(VAE(rng=0, dtype=np.float64))


def test_a_continuous_bernoulli_model_takes_the_reference_path_on_the_numba_backend():
    """No fused step, so the numba backend runs exactly the numpy-ref backend's arithmetic."""
    fast = VAE(rng=0, input_dim=40, hidden_dims=(16,), latent_dim=2,
               likelihood="continuous_bernoulli")
    ref = VAE(fast.config, rng=0, backend="numpy-ref")
    assert fast.backend.use_numba and fused_step_for(fast) is None
    rng = np.random.default_rng(0)
    x, eps = pixels(rng, 6, 40), fast.noise(6, rng)
    loss_fast, _, g_fast = fast.loss_and_grads(x, eps)
    loss_ref, _, g_ref = ref.loss_and_grads(x, eps)
    assert float(loss_fast) == float(loss_ref)
    assert all(np.array_equal(g_fast[k], g_ref[k]) for k in g_ref)


def test_unsupported_models_still_train_through_the_reference_path():
    """A Gaussian decoder has no fused step: on the numba backend it takes the readable
    path. Its float32 loss and gradients are checked against float64: the loss of a
    float64 copy, and central differences of that loss (not against the numpy-ref
    backend, which runs the very same code)."""
    from vae_numpy.gradcheck import numerical_gradient, rel_error

    model = VAE(rng=0, input_dim=40, hidden_dims=(16,), latent_dim=2, likelihood="gaussian")
    assert model.backend.use_numba and fused_step_for(model) is None
    model.params["dec.log_var_x"][...] = np.linspace(-1.0, 1.0, 40)   # a learned variance
    rng = np.random.default_rng(0)
    x = pixels(rng, 6, 40)
    eps = model.noise(6, rng)
    loss, _, grads = model.loss_and_grads(x, eps)
    grads = {k: g.copy() for k, g in grads.items()}
    m64 = model.astype(np.float64)
    x64, eps64 = x.astype(np.float64), eps.astype(np.float64)
    assert float(loss) == pytest.approx(float(m64.forward(x64, eps64)[0]), rel=1e-6)
    for name, p in m64.params.items():
        num = numerical_gradient(lambda: m64.forward(x64, eps64, check=False)[0], p)
        assert grads[name].dtype == F32
        # float32 gradients against float64 differences: a few float32 ulp, relative
        assert rel_error(grads[name], num) < 1e-5, name
