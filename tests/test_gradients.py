"""Every backward function, and whole model steps, against central differences in float64."""

import numpy as np
import pytest

from vae_numpy import functional as F
from vae_numpy import losses
from vae_numpy.gradcheck import numerical_gradient, numerical_gradient_array, rel_error
from vae_numpy.model import VAE, Autoencoder, ModelConfig
from vae_numpy.objectives import IWAE, FreeBits, free_bits_kl, free_bits_kl_backward

TOL = 1e-6


def check_backward(forward, backward, inputs, dout, rng):
    """Compare each gradient ``backward`` returns with finite differences of ``forward``."""
    analytic = backward(dout)
    for x, dx in zip(inputs, analytic):
        if dx is None:
            continue
        num = numerical_gradient_array(lambda: forward(*inputs), x, dout)
        assert rel_error(dx, num) < TOL


def test_linear_backward(rng):
    x, W, b = rng.normal(size=(5, 4)), rng.normal(size=(4, 3)), rng.normal(size=3)
    out, cache = F.linear_forward(x, W, b)
    dout = rng.normal(size=out.shape)
    check_backward(lambda x, W, b: F.linear_forward(x, W, b)[0],
                   lambda d: F.linear_backward(d, cache), [x, W, b], dout, rng)


def test_linear_backward_can_skip_input_grad(rng):
    x, W, b = rng.normal(size=(5, 4)), rng.normal(size=(4, 3)), rng.normal(size=3)
    _, cache = F.linear_forward(x, W, b)
    dx, dW, db = F.linear_backward(np.ones((5, 3)), cache, input_grad=False)
    assert dx is None
    np.testing.assert_allclose(dW, x.T @ np.ones((5, 3)))


@pytest.mark.parametrize("name", ["relu", "sigmoid"])
def test_activation_backward(name, rng):
    fwd, bwd = getattr(F, f"{name}_forward"), getattr(F, f"{name}_backward")
    # keep away from the ReLU's kink, where a finite difference straddles it
    a = rng.normal(size=(6, 7))
    a[np.abs(a) < 1e-3] = 0.5
    out, cache = fwd(a)
    dout = rng.normal(size=out.shape)
    check_backward(lambda a: fwd(a)[0], lambda d: (bwd(d, cache),), [a], dout, rng)


def test_reparameterize_backward(rng):
    mu, log_var, eps = rng.normal(size=(4, 3)), rng.normal(size=(4, 3)), rng.normal(size=(4, 3))
    z, cache = F.reparameterize_forward(mu, log_var, eps)
    dz = rng.normal(size=z.shape)
    check_backward(lambda mu, lv: F.reparameterize_forward(mu, lv, eps)[0],
                   lambda d: F.reparameterize_backward(d, cache), [mu, log_var], dz, rng)


def test_bernoulli_nll_backward(rng):
    logits, x = rng.normal(size=(4, 6)) * 3, rng.random((4, 6))
    dnll = rng.normal(size=4)
    check_backward(lambda l: losses.bernoulli_nll(l, x),
                   lambda d: (losses.bernoulli_nll_backward(d, logits, x),), [logits], dnll, rng)


def _cb_logits(where, rng, shape):
    """Logits for the continuous Bernoulli's checks: near lambda = 1/2, across |l| = 2 (where
    the library changes formula), and large."""
    if where == "near_one_half":                     # |l| < 0.01: the series' home
        return rng.uniform(-1e-2, 1e-2, size=shape)
    if where == "at_the_switch":                     # both sides of |l| = 2
        return rng.choice([-1, 1], size=shape) * (2.0 + rng.uniform(-1e-3, 1e-3, size=shape))
    return rng.choice([-1, 1], size=shape) * rng.uniform(15.0, 30.0, size=shape)


CB_WHERE = ["near_one_half", "at_the_switch", "large"]


@pytest.mark.parametrize("where", CB_WHERE)
def test_continuous_bernoulli_nll_backward(where, rng):
    logits, x = _cb_logits(where, rng, (4, 6)), rng.random((4, 6))
    dnll = rng.normal(size=4)
    check_backward(lambda l: losses.continuous_bernoulli_nll(l, x),
                   lambda d: (losses.continuous_bernoulli_nll_backward(d, logits, x),), [logits],
                   dnll, rng)


@pytest.mark.parametrize("where", CB_WHERE)
def test_log_continuous_bernoulli_norm_backward(where, rng):
    """log C on its own: near l = 0 its slope (~l/6) is swamped in the NLL by sigmoid(l) - x."""
    logits = _cb_logits(where, rng, (5, 7))
    dout = rng.normal(size=logits.shape)
    check_backward(losses.log_continuous_bernoulli_norm,
                   lambda d: (losses.log_continuous_bernoulli_norm_backward(d, logits),),
                   [logits], dout, rng)


@pytest.mark.parametrize("shared", [True, False])
def test_gaussian_nll_backward(shared, rng):
    mean, x = rng.normal(size=(4, 6)), rng.random((4, 6))
    log_var_x = rng.normal(size=6) if not shared else np.array(0.3)
    dnll = rng.normal(size=4)
    dmean, dlv = losses.gaussian_nll_backward(dnll, mean, x, log_var_x)
    num_mean = numerical_gradient_array(lambda: losses.gaussian_nll(mean, x, log_var_x), mean, dnll)
    num_lv = numerical_gradient_array(lambda: losses.gaussian_nll(mean, x, log_var_x), log_var_x,
                                      dnll)
    assert rel_error(dmean, num_mean) < TOL
    assert np.shape(dlv) == np.shape(log_var_x)
    assert rel_error(dlv, num_lv) < TOL


def test_kl_backward(rng):
    mu, log_var = rng.normal(size=(5, 3)), rng.normal(size=(5, 3))
    dkl = rng.normal(size=5)
    check_backward(lambda mu, lv: losses.kl_divergence(mu, lv),
                   lambda d: losses.kl_divergence_backward(d, mu, log_var), [mu, log_var], dkl,
                   rng)


def _check_model(model, x, eps):
    """Every parameter's gradient from model.backward against finite differences."""
    _, _, grads = model.loss_and_grads(x, eps)
    grads = {k: v.copy() for k, v in grads.items()}
    for name, p in model.params.items():
        num = numerical_gradient(lambda: model.forward(x, eps)[0], p)
        err = rel_error(grads[name], num)
        assert err < TOL, f"{name}: relative error {err:.2e}"


SMALL = dict(input_dim=12, hidden_dims=(7, 5), latent_dim=3)


@pytest.mark.parametrize("likelihood,std", [("bernoulli", None), ("gaussian", None),
                                            ("gaussian", 0.5), ("continuous_bernoulli", None)])
def test_vae_step_gradients(likelihood, std, rng):
    cfg = ModelConfig(kind="vae", likelihood=likelihood, gaussian_std=std, beta=0.7, **SMALL)
    model = VAE(cfg, rng=0, dtype=np.float64)
    x = rng.random((6, 12))
    eps = rng.standard_normal((6, 3))
    _check_model(model, x, eps)


def test_vae_default_architecture_gradients(rng):
    """The real 784-400-20 model: check a random subset of entries of every parameter."""
    model = VAE(rng=0, dtype=np.float64)
    x = rng.random((3, 784))
    eps = rng.standard_normal((3, 20))
    _, _, grads = model.loss_and_grads(x, eps)
    for name, p in model.params.items():
        flat, gflat = p.reshape(-1), grads[name].reshape(-1)
        idx = rng.choice(flat.size, size=min(8, flat.size), replace=False)
        num = np.empty(idx.size)
        for j, i in enumerate(idx):
            old = flat[i]
            flat[i] = old + 1e-5
            fp = float(model.forward(x, eps)[0])
            flat[i] = old - 1e-5
            fm = float(model.forward(x, eps)[0])
            flat[i] = old
            num[j] = (fp - fm) / 2e-5
        assert rel_error(gflat[idx], num) < TOL, name


@pytest.mark.parametrize("likelihood", ["bernoulli", "continuous_bernoulli"])
def test_autoencoder_step_gradients(likelihood, rng):
    model = Autoencoder(ModelConfig(kind="ae", likelihood=likelihood, **SMALL), rng=0,
                        dtype=np.float64)
    x = rng.random((6, 12))
    _check_model(model, x, None)


def test_log_sigma_mixup_is_caught(rng):
    """Treating log_var as log-sigma in the sampler (numpy-ml's bug) breaks the gradient check."""
    mu, log_var, eps = rng.normal(size=(4, 3)), rng.normal(size=(4, 3)), rng.normal(size=(4, 3))
    dz = rng.normal(size=(4, 3))

    def wrong_forward(lv):  # std = exp(log_var) instead of exp(log_var / 2)
        return mu + np.exp(lv) * eps

    _, cache = F.reparameterize_forward(mu, log_var, eps)
    _, dlog_var = F.reparameterize_backward(dz, cache)
    num = numerical_gradient_array(lambda: wrong_forward(log_var), log_var, dz)
    assert rel_error(dlog_var, num) > 0.1


# -- the IWAE objective's hand-written gradient -----------------------------------------
IWAE_SMALL = dict(input_dim=8, hidden_dims=(6,), latent_dim=2)


def _iwae_model(likelihood, activation, rng):
    cfg = ModelConfig(likelihood=likelihood, activation=activation, **IWAE_SMALL)
    model = VAE(cfg, rng=0, dtype=np.float64, backend="numpy-ref")
    if "dec.log_var_x" in model.params:          # a learned variance away from 0 and the floor
        model.params["dec.log_var_x"][...] = rng.normal(scale=0.5, size=IWAE_SMALL["input_dim"])
    return model


@pytest.mark.parametrize("k", [1, 4])
@pytest.mark.parametrize("activation", ["relu", "tanh"])
@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian", "continuous_bernoulli"])
def test_iwae_gradients(k, activation, likelihood, rng):
    model = _iwae_model(likelihood, activation, rng)
    x = rng.random((5, IWAE_SMALL["input_dim"]))
    objective = IWAE(k)
    eps = objective.noise(model, 5, rng)
    _, _, grads = objective.loss_and_grads(model, x, eps)
    grads = {name: g.copy() for name, g in grads.items()}
    for name, p in model.params.items():
        num = numerical_gradient(lambda: objective.loss_and_grads(model, x, eps)[0], p)
        err = rel_error(grads[name], num)
        assert err < TOL, f"{name}: relative error {err:.2e}"


@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian"])
def test_iwae_k1_gradient_is_the_elbos_in_expectation(likelihood, rng):
    """At k = 1 the weight is 1 and IWAE is a one-sample ELBO whose KL is estimated by the
    same sample. The decoder sees the same z, so its gradient equals the closed-form
    ELBO's draw by draw; the encoder's differs draw by draw by the gradient of
    (log q(z|x) - log p(z)) - KL, which has mean 0 over eps.

    4000 draws per example (40 blocks of the batch repeated 100 times): the mean of
    the difference of the block gradients must be within 5 standard errors of 0.
    """
    model = _iwae_model(likelihood, "tanh", rng)
    # q(z|x) away from the prior, so the KL's gradient (the part that differs) is sizeable
    model.params["enc.b_mu"][...] = 0.5
    model.params["enc.b_log_var"][...] = -1.0
    objective = IWAE(1)
    x = rng.random((3, IWAE_SMALL["input_dim"]))
    # one draw: the decoder's gradients agree exactly, the encoder's do not
    eps = objective.noise(model, 3, rng)
    iwae = {n: g.copy() for n, g in objective.loss_and_grads(model, x, eps)[2].items()}
    elbo = {n: g.copy() for n, g in model.loss_and_grads(x, eps[0])[2].items()}
    for name in iwae:
        if name.startswith("dec."):
            assert rel_error(iwae[name], elbo[name]) < 1e-12, name
    assert rel_error(iwae["enc.W_log_var"], elbo["enc.W_log_var"]) > 1e-3

    blocks, reps = 40, 100
    xr = np.repeat(x, reps, axis=0)
    diffs = {name: [] for name in iwae if name.startswith("enc.")}
    elbo_mean = {name: 0.0 for name in diffs}
    for _ in range(blocks):
        eps = objective.noise(model, xr.shape[0], rng)
        g_iwae = objective.loss_and_grads(model, xr, eps)[2]
        g_iwae = {name: g_iwae[name].copy() for name in diffs}
        g_elbo = model.loss_and_grads(xr, eps[0])[2]
        for name in diffs:
            diffs[name].append(g_iwae[name] - g_elbo[name])
            elbo_mean[name] = elbo_mean[name] + g_elbo[name] / blocks
    for name, d in diffs.items():
        d = np.array(d)
        mean, se = d.mean(axis=0), d.std(axis=0, ddof=1) / np.sqrt(blocks)
        assert np.all(np.abs(mean) <= 5 * se + 1e-12), (
            f"{name}: {np.max(np.abs(mean) / (se + 1e-300)):.1f} standard errors")
        # the check has teeth: the noise is small against the gradient itself
        assert se.max() < 0.05 * np.abs(elbo_mean[name]).max(), name


# -- a KL weight per step (warm-up) and free bits ----------------------------------------
@pytest.mark.parametrize("beta", [0.0, 0.3, 2.5])
def test_a_kl_weight_given_per_step_has_the_gradient_of_its_loss(beta, rng):
    """What a warm-up passes: forward(beta=b) is the config-beta-b model's loss, exactly,
    and backward differentiates that loss."""
    model = VAE(ModelConfig(**SMALL), rng=0, dtype=np.float64)
    fixed = VAE(ModelConfig(beta=beta, **SMALL), rng=0, dtype=np.float64)
    x, eps = rng.random((6, 12)), rng.standard_normal((6, 3))
    assert model.forward(x, eps, beta=beta)[0] == fixed.forward(x, eps)[0]
    _, _, grads = model.loss_and_grads(x, eps, beta=beta)
    grads = {k: v.copy() for k, v in grads.items()}
    for name, p in model.params.items():
        num = numerical_gradient(lambda: model.forward(x, eps, beta=beta)[0], p)
        assert rel_error(grads[name], num) < TOL, name


def _floor_between(kl_mean, margin=1e-2):
    """A floor lambda with units on both sides of it, each at least ``margin`` away: the
    middle of the widest gap between the sorted batch means (central differences with
    h = 1e-5 then never cross the kink)."""
    m = np.sort(kl_mean)
    gaps = np.diff(m)
    i = int(np.argmax(gaps))
    assert gaps[i] > 2 * margin, f"units too close together to place a floor: {m}"
    return float((m[i] + m[i + 1]) / 2)


def test_free_bits_kl_backward(rng):
    """The floor is on each unit's batch mean (Kingma et al., 2016), not on each example:
    the examples of units 0 and 1 lie on both sides of lambda = 0.5, their means do not."""
    lam = 0.5
    kl = np.array([[0.0, 0.0, 3.0, 0.05],
                   [0.1, 0.05, 2.5, 0.02],
                   [0.2, 0.1, 3.2, 0.07],
                   [1.5, 0.9, 2.9, 0.01],
                   [1.6, 0.15, 3.1, 0.03],
                   [1.7, 0.2, 2.7, 0.06]]) + rng.uniform(0, 1e-3, size=(6, 4))
    term, kl_mean = free_bits_kl(kl, lam)
    assert list(kl_mean > lam) == [True, False, True, False]
    assert term == pytest.approx(kl_mean[0] + kl_mean[2] + 2 * lam, rel=1e-15)
    dterm = np.array(rng.normal())
    dkl = free_bits_kl_backward(dterm, kl_mean, lam, 6)
    # every example of a unit above the floor, even one whose own KL is below it
    np.testing.assert_array_equal(dkl, np.broadcast_to(dterm / 6 * np.array([1, 0, 1, 0]),
                                                       (6, 4)))
    check_backward(lambda kl: free_bits_kl(kl, lam)[0],
                   lambda d: (free_bits_kl_backward(d, kl_mean, lam, 6),), [kl], dterm, rng)


def _free_bits_model(likelihood, rng):
    cfg = ModelConfig(likelihood=likelihood, beta=0.7, input_dim=12, hidden_dims=(7,),
                      latent_dim=4)
    model = VAE(cfg, rng=0, dtype=np.float64, backend="numpy-ref")
    # two units far from the prior (a large KL), two near it (a small one)
    model.params["enc.b_mu"][...] = [1.5, -1.2, 0.0, 0.05]
    model.params["enc.b_log_var"][...] = [-1.5, -1.0, 0.0, 0.02]
    x, eps = rng.random((8, 12)), rng.standard_normal((8, 4))
    return model, x, eps


@pytest.mark.parametrize("beta", [None, 0.3])
@pytest.mark.parametrize("likelihood", ["bernoulli", "continuous_bernoulli"])
def test_free_bits_gradients(likelihood, beta, rng):
    """Units above the floor and below it (none at the kink), with the model's beta or a
    warm-up's."""
    model, x, eps = _free_bits_model(likelihood, rng)
    kl_mean = losses.kl_per_dim(*model.encode(x)).mean(axis=0)
    objective = FreeBits(_floor_between(kl_mean))
    _, terms, grads = objective.loss_and_grads(model, x, eps, beta=beta)
    assert 0 < terms["units_at_floor"] < 4
    grads = {k: v.copy() for k, v in grads.items()}
    for name, p in model.params.items():
        num = numerical_gradient(lambda: objective.loss_and_grads(model, x, eps, beta=beta)[0],
                                 p)
        err = rel_error(grads[name], num)
        assert err < TOL, f"{name}: relative error {err:.2e}"


def test_free_bits_at_zero_is_the_elbo_and_above_every_unit_frees_the_kl(rng):
    model, x, eps = _free_bits_model("bernoulli", rng)
    elbo_loss, _, g = model.loss_and_grads(x, eps)
    elbo = {k: v.copy() for k, v in g.items()}
    loss, terms, g = FreeBits(0.0).loss_and_grads(model, x, eps)
    assert terms["units_at_floor"] == 0
    assert float(loss) == pytest.approx(float(elbo_loss), rel=1e-14)
    for name in elbo:
        assert rel_error(g[name], elbo[name]) < 1e-12, name
    # a floor above every unit: the KL is a constant, so the gradient is beta = 0's
    rec_only = {k: v.copy() for k, v in model.loss_and_grads(x, eps, beta=0.0)[2].items()}
    loss, terms, g = FreeBits(50.0).loss_and_grads(model, x, eps)
    assert terms["units_at_floor"] == 4
    assert float(loss) == pytest.approx(terms["rec"] + 0.7 * 4 * 50.0, rel=1e-14)
    for name in rec_only:
        assert rel_error(g[name], rec_only[name]) < 1e-12, name
