"""Training stability sweep: the default model at 20 seeds, a few hundred steps each.

Every seed must keep every loss, parameter and gradient finite, and lower the
negative ELBO on held-out data. Uses MNIST when it is available offline
(``VAE_NUMPY_DATA``), otherwise the synthetic handwriting set.
"""

import math

import numpy as np
import pytest

from vae_numpy.data import load_mnist
from vae_numpy.errors import DataError
from vae_numpy.evaluate import negative_elbo
from vae_numpy.handwriting import make_handwriting
from vae_numpy.model import VAE
from vae_numpy.train import make_optimizer

SEEDS = range(20)
STEPS = 200
BATCH = 128


@pytest.fixture(scope="module")
def data():
    try:
        x = load_mnist("train", limit=STEPS * BATCH).x
        x_test = load_mnist("test", limit=1000).x
    except DataError:
        ds, _ = make_handwriting(STEPS * BATCH + 1000, np.random.default_rng(0))
        x, x_test = ds.x[1000:], ds.x[:1000]
    return x, x_test


@pytest.mark.parametrize("seed", SEEDS)
def test_training_stays_finite_and_improves(seed, data):
    x, x_test = data
    rng = np.random.default_rng(seed)
    model = VAE(rng=rng)
    opt = make_optimizer(model, "adam", 1e-3)
    before = negative_elbo(model, x_test)["loss"]
    perm = rng.permutation(len(x))
    losses = []
    for step in range(STEPS):
        xb = x[perm[step * BATCH:(step + 1) * BATCH]]
        _, terms, grads = model.loss_and_grads(xb, model.noise(len(xb), rng), check=False)
        assert math.isfinite(terms["loss"]), f"seed {seed}, step {step}"
        if step % 50 == 0:
            assert np.isfinite(model.grad_flat).all(), f"seed {seed}, step {step}"
        opt.step(grads)
        losses.append(terms["loss"])
    assert np.isfinite(model.flat).all()
    after = negative_elbo(model, x_test)["loss"]
    assert after < before - 100, (before, after)
    assert np.mean(losses[-50:]) < np.mean(losses[:50]) - 50
