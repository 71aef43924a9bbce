"""The model's numbers: float32 end to end, the KL against Monte Carlo, the IW bound, errors."""

import numpy as np
import pytest

from vae_numpy import losses
from vae_numpy.errors import ConfigError, InputError
from vae_numpy.evaluate import (
    active_units,
    iw_log_likelihood,
    kl_per_dimension,
    log_importance_weights,
    nearest_neighbours,
    negative_elbo,
)
from vae_numpy.model import VAE, Autoencoder, ModelConfig
from vae_numpy.optim import SGD, Adam


def _arrays(obj):
    """Every ndarray inside nested tuples, lists and dicts."""
    if isinstance(obj, np.ndarray):
        yield obj
    elif isinstance(obj, (tuple, list)):
        for o in obj:
            yield from _arrays(o)
    elif isinstance(obj, dict):
        for o in obj.values():
            yield from _arrays(o)


@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian", "continuous_bernoulli"])
def test_training_step_is_float32_throughout(likelihood, rng):
    model = VAE(ModelConfig(likelihood=likelihood), rng=0)
    x = rng.random((16, 784), dtype=np.float32)
    eps = model.noise(16, rng)
    loss, _, cache = model.forward(x, eps)
    grads = model.backward(cache)
    opt = Adam(model.params, fused=False)
    opt.step(grads)
    seen = list(_arrays(cache)) + list(_arrays(grads)) + list(_arrays(model.params))
    seen += list(_arrays(opt.state)) + [np.asarray(loss)]
    assert len(seen) > 20
    assert {a.dtype for a in seen} == {np.dtype(np.float32)}


def test_autoencoder_step_is_float32(rng):
    model = Autoencoder(latent_dim=2, rng=0)
    x = rng.random((8, 784), dtype=np.float32)
    loss, _, cache = model.forward(x)
    grads = model.backward(cache)
    assert {a.dtype for a in [*_arrays(cache), *_arrays(grads), np.asarray(loss)]} == {
        np.dtype(np.float32)}


def test_closed_form_kl_matches_monte_carlo(rng):
    mu = np.array([[0.5, -1.0, 2.0]])
    log_var = np.array([[0.3, -2.0, 1.0]])
    n = 200_000
    z = mu + np.exp(0.5 * log_var) * rng.standard_normal((n, 3))
    zeros = np.zeros(())
    samples = losses.gaussian_log_density(z, mu, log_var) - losses.gaussian_log_density(
        z, zeros, zeros)
    estimate, stderr = samples.mean(), samples.std() / np.sqrt(n)
    exact = losses.kl_divergence(mu, log_var)[0]
    assert abs(estimate - exact) < 4 * stderr
    assert stderr < 0.02  # the check has teeth: a KL off by 0.1 nats would fail


def test_kl_is_zero_only_at_the_prior():
    assert losses.kl_divergence(np.zeros((1, 4)), np.zeros((1, 4)))[0] == 0.0
    assert losses.kl_divergence(np.full((1, 4), 0.1), np.zeros((1, 4)))[0] > 0.0


def test_bernoulli_nll_is_stable_for_huge_logits():
    logits = np.array([[1e4, -1e4, 0.0]], dtype=np.float32)
    x = np.array([[1.0, 0.0, 1.0]], dtype=np.float32)
    nll = losses.bernoulli_nll(logits, x)
    assert np.isfinite(nll).all()
    np.testing.assert_allclose(nll, [np.log(2.0)], rtol=1e-6)


def test_iw_bound_at_k1_is_the_one_sample_elbo_and_grows_with_k(rng):
    model = VAE(ModelConfig(input_dim=20, hidden_dims=(16,), latent_dim=2), rng=0,
                dtype=np.float64)
    x = rng.random((50, 20))
    # k = 1: the log weight is log p(x|z) + log p(z) - log q(z|x) for one z = mu + std * eps
    log_w = log_importance_weights(model, x, 1, np.random.default_rng(3))[0]
    eps = np.random.default_rng(3).standard_normal((1, 50, 2))[0]
    mu, log_var = model.encode(x)
    z = mu + np.exp(0.5 * log_var) * eps
    zero = np.zeros(())
    direct = (-model.reconstruction_nll(model.decode(z), x)
              + losses.gaussian_log_density(z, zero, zero)
              - losses.gaussian_log_density(z, mu, log_var))
    np.testing.assert_allclose(log_w, direct, rtol=1e-10)
    # the analytic-KL ELBO and the k = 1 bound agree in expectation
    elbo = -negative_elbo(model, np.repeat(x, 40, axis=0), rng=0)["loss"]
    iw1 = iw_log_likelihood(model, np.repeat(x, 40, axis=0), 1, rng=1)
    assert abs(elbo - iw1) < 0.5
    assert iw_log_likelihood(model, x, 200) > iw1


def test_kl_per_dimension_and_active_units(rng):
    """Each unit's KL against the closed form written out here (not against
    kl_divergence, which is kl_per_dim summed), in float64, over several batches."""
    model = VAE(ModelConfig(input_dim=20, hidden_dims=(16,), latent_dim=4), rng=0)
    x = rng.random((200, 20), dtype=np.float32)
    # silence unit 3: its mean no longer depends on x
    model.params["enc.W_mu"][:, 3] = 0.0
    per_dim = kl_per_dimension(model, x, batch_size=64)    # 64, 64, 64 and 8 rows
    assert per_dim.shape == (4,)
    mu, log_var = (a.astype(np.float64) for a in model.encode(x))
    # KL(N(mu, s^2) || N(0, 1)) = (mu^2 + s^2 - 1 - log s^2) / 2 per unit, averaged over x
    written_out = (0.5 * (mu ** 2 + np.exp(log_var) - 1.0 - log_var)).mean(axis=0)
    np.testing.assert_allclose(per_dim, written_out, rtol=1e-5, atol=1e-7)
    assert active_units(model, x, threshold=1e-6) == 3


@pytest.mark.parametrize("kwargs,match", [
    (dict(latent_dim=0), "latent_dim must be a positive integer"),
    (dict(hidden_dims=(400, -1)), "hidden_dims"),
    (dict(likelihood="poisson"), "likelihood"),
    (dict(beta=-1.0), "beta"),
    (dict(kind="gan"), "kind"),
])
def test_bad_config_is_rejected(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        ModelConfig(**kwargs)


@pytest.mark.parametrize("make,match", [
    (lambda: np.full((4, 784), np.nan, np.float32), "NaN"),
    (lambda: np.full((4, 784), 1.5, np.float32), r"values in \[0, 1\].*max 1.5"),
    (lambda: np.full((4, 784), -0.3, np.float32), "min -0.3"),
    (lambda: np.zeros((4, 700), np.float32), r"shape \(N, 784\)"),
    (lambda: np.zeros((4, 28, 28), np.float32), "Flatten"),
    (lambda: np.zeros((4, 784), np.uint8), "Scale pixels by 1/255"),
    (lambda: np.zeros((4, 784), np.float64), "astype"),
])
def test_bad_input_is_rejected_with_a_clear_message(make, match, rng):
    model = VAE(rng=0)
    with pytest.raises(InputError, match=match):
        model.forward(make(), model.noise(4, rng))


def test_a_continuous_bernoulli_decoder_reads_grey_levels_in_the_unit_interval(rng):
    model = VAE(ModelConfig(likelihood="continuous_bernoulli"), rng=0)
    with pytest.raises(InputError, match=r"in \[0, 1\] for a continuous Bernoulli decoder"):
        model.forward(np.full((4, 784), 1.5, np.float32), model.noise(4, rng))
    with pytest.raises(ConfigError, match="only used with likelihood='gaussian'"):
        ModelConfig(likelihood="continuous_bernoulli", gaussian_std=0.1)


def test_a_continuous_bernoulli_decoders_mean_image_is_its_mean_not_lambda(rng):
    model = VAE(ModelConfig(likelihood="continuous_bernoulli", hidden_dims=(16,), latent_dim=2),
                rng=0)
    model.params["dec.b_out"][...] = np.linspace(-6, 6, 784, dtype=np.float32)
    z = model.noise(5, rng)
    logits = model.decode(z)
    mean = model.mean_image(logits)
    assert mean.dtype == np.float32
    np.testing.assert_array_equal(mean, losses.continuous_bernoulli_mean(logits))
    lam = 1 / (1 + np.exp(-logits))
    assert np.abs(mean - lam).max() > 0.1                  # far from sigmoid for |l| ~ 6
    np.testing.assert_array_equal(model.sample(5, np.random.default_rng(1)),
                                  model.mean_image(model.decode(model.noise(
                                      5, np.random.default_rng(1)))))


def test_gaussian_decoder_accepts_values_outside_unit_interval(rng):
    model = VAE(ModelConfig(likelihood="gaussian", gaussian_std=1.0), rng=0)
    x = rng.standard_normal((4, 784), dtype=np.float32) * 3
    loss, _, _ = model.forward(x, model.noise(4, rng))
    assert np.isfinite(loss)


@pytest.mark.parametrize("make", [lambda p: Adam(p, lr=-1e-3), lambda p: SGD(p, lr=0.0),
                                  lambda p: Adam(p, lr=float("nan")),
                                  lambda p: SGD(p, lr=0.1, momentum=1.5)])
def test_bad_optimizer_settings_are_rejected(make):
    with pytest.raises(ConfigError):
        make(VAE(latent_dim=2, rng=0).params)


@pytest.mark.parametrize("opt_cls", [SGD, Adam])
def test_optimizers_reduce_the_loss(opt_cls, rng):
    model = VAE(ModelConfig(input_dim=30, hidden_dims=(20,), latent_dim=3), rng=0)
    x = (rng.random((64, 30)) < 0.3).astype(np.float32)
    eps = model.noise(64, rng)
    opt = opt_cls(model.params, lr=0.05 if opt_cls is SGD else 1e-2)
    first = model.forward(x, eps)[1]["loss"]
    for _ in range(50):
        opt.step(model.loss_and_grads(x, eps)[2])
    assert model.forward(x, eps)[1]["loss"] < first - 1.0


def test_fused_adam_matches_plain_adam(rng):
    a = VAE(ModelConfig(input_dim=30, hidden_dims=(20,), latent_dim=3), rng=0)
    b = VAE(ModelConfig(input_dim=30, hidden_dims=(20,), latent_dim=3), rng=0)
    fused, plain = Adam(a.params, lr=1e-2, fused=True), Adam(b.params, lr=1e-2, fused=False)
    x = rng.random((32, 30), dtype=np.float32)
    for _ in range(20):
        eps = a.noise(32, rng)
        fused.step(a.loss_and_grads(x, eps)[2])
        plain.step(b.loss_and_grads(x, eps)[2])
    np.testing.assert_allclose(a.flat, b.flat, rtol=1e-4, atol=1e-6)
    assert fused.state_dict().keys() == plain.state_dict().keys()


def test_nearest_neighbours_matches_brute_force(rng):
    a = rng.standard_normal((37, 5)).astype(np.float32)
    b = rng.standard_normal((53, 5)).astype(np.float32)
    full = np.sqrt(((a[:, None, :].astype(np.float64) - b[None]) ** 2).sum(axis=2))
    idx, dist = nearest_neighbours(a, b, chunk=8)          # several chunks, a ragged last
    np.testing.assert_array_equal(idx, full.argmin(axis=1))
    np.testing.assert_allclose(dist, full.min(axis=1), rtol=1e-9, atol=1e-9)
    same, zero = nearest_neighbours(b, b)
    np.testing.assert_array_equal(same, np.arange(len(b)))
    assert np.all(zero < 1e-6)
