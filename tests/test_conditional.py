"""The conditional VAE: the label concatenated to the encoder's and decoder's inputs.

Gradients against finite differences in float64 (every parameter, every objective),
the concatenation's own backward, what the label changes, and the errors a user
meets when labels are missing, extra or out of range.
"""

import numpy as np
import pytest

from vae_numpy import functional as F
from vae_numpy.checkpoint import load_checkpoint, save_checkpoint
from vae_numpy.errors import ConfigError, InputError
from vae_numpy.evaluate import active_units, iw_estimate, kl_per_dimension, negative_elbo
from vae_numpy.fused import supports
from vae_numpy.gradcheck import numerical_gradient, numerical_gradient_array, rel_error
from vae_numpy.model import VAE, Autoencoder, ModelConfig
from vae_numpy.objectives import ELBO, IWAE, FreeBits
from vae_numpy.train import fit

TOL = 1e-6
C = 4
SMALL = dict(input_dim=12, hidden_dims=(7, 5), latent_dim=3, num_classes=C)


def _data(rng, n=6):
    return rng.random((n, SMALL["input_dim"])), rng.integers(0, C, n)


def test_one_hot_and_concat_backward(rng):
    y = np.array([2, 0, 3])
    np.testing.assert_array_equal(F.one_hot(y, 4, np.float64),
                                  np.eye(4)[[2, 0, 3]])
    a, c = rng.normal(size=(3, 5)), rng.normal(size=(3, 2))
    out, cache = F.concat_forward(a, c)
    assert out.shape == (3, 7)
    dout = rng.normal(size=out.shape)
    da, dc = F.concat_backward(dout, cache)
    assert rel_error(da, numerical_gradient_array(lambda: F.concat_forward(a, c)[0], a,
                                                  dout)) < TOL
    assert rel_error(dc, numerical_gradient_array(lambda: F.concat_forward(a, c)[0], c,
                                                  dout)) < TOL


def test_the_label_adds_rows_to_the_first_layers_only():
    plain = ModelConfig(**{**SMALL, "num_classes": 0}).param_shapes()
    cond = ModelConfig(**SMALL).param_shapes()
    assert plain.keys() == cond.keys()
    assert cond["enc.W1"] == (12 + C, 7) and cond["dec.W1"] == (3 + C, 5)
    assert {k for k in cond if cond[k] != plain[k]} == {"enc.W1", "dec.W1"}
    flat = ModelConfig(**{**SMALL, "hidden_dims": ()}).param_shapes()
    assert flat["enc.W_mu"] == (12 + C, 3) and flat["dec.W_out"] == (3 + C, 12)


@pytest.mark.parametrize("objective", [ELBO(), FreeBits(0.05), IWAE(3)],
                         ids=["elbo", "free_bits", "iwae"])
@pytest.mark.parametrize("hidden", [(7, 5), ()])
@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian"])
def test_conditional_vae_gradients(objective, hidden, likelihood, rng):
    cfg = ModelConfig(kind="vae", likelihood=likelihood, **{**SMALL, "hidden_dims": hidden})
    model = VAE(cfg, rng=0, dtype=np.float64)
    x, y = _data(rng)
    eps = objective.noise(model, len(x), rng)
    _, _, grads = objective.loss_and_grads(model, x, eps, y=y)
    grads = {k: v.copy() for k, v in grads.items()}
    for name, p in model.params.items():
        num = numerical_gradient(lambda: objective.loss_and_grads(model, x, eps, y=y)[0], p)
        err = rel_error(grads[name], num)
        assert err < TOL, f"{name}: relative error {err:.2e}"


def test_conditional_autoencoder_gradients(rng):
    model = Autoencoder(ModelConfig(kind="ae", **SMALL), rng=0, dtype=np.float64)
    x, y = _data(rng)
    _, _, grads = model.loss_and_grads(x, y=y)
    grads = {k: v.copy() for k, v in grads.items()}
    for name, p in model.params.items():
        num = numerical_gradient(lambda: model.forward(x, y=y)[0], p)
        assert rel_error(grads[name], num) < TOL, name


def test_the_label_reaches_the_encoder_and_the_decoder(rng):
    model = VAE(ModelConfig(**SMALL), rng=0, dtype=np.float64)
    x, _ = _data(rng, 2)
    z = rng.normal(size=(2, 3))
    a, b = model.decode(z, np.array([0, 0])), model.decode(z, np.array([1, 0]))
    assert not np.allclose(a[0], b[0]) and np.array_equal(a[1], b[1])
    mu0, _ = model.encode(x, np.array([0, 0]))
    mu1, _ = model.encode(x, np.array([2, 0]))
    assert not np.allclose(mu0[0], mu1[0]) and np.array_equal(mu0[1], mu1[1])
    # label j is row K + j of the first decoder layer: with no hidden layer, the logits
    # are z @ W_out[:K] + W_out[K + j] + b_out
    flat = VAE(ModelConfig(**{**SMALL, "hidden_dims": ()}), rng=0, dtype=np.float64)
    W, b = flat.params["dec.W_out"], flat.params["dec.b_out"]
    y = np.array([3, 1])
    np.testing.assert_allclose(flat.decode(z, y), z @ W[:3] + W[3 + y] + b)


def test_sample_draws_the_digits_asked_for(rng):
    model = VAE(ModelConfig(**SMALL), rng=0)
    one = model.sample(5, np.random.default_rng(0), y=2)
    many = model.sample(5, np.random.default_rng(0), y=np.full(5, 2))
    np.testing.assert_array_equal(one, many)
    other = model.sample(5, np.random.default_rng(0), y=3)
    assert not np.allclose(one, other)


@pytest.mark.parametrize("y,match", [
    (None, "conditional on a label 0..3: pass the labels y"),
    (np.array([0, 1, 2]), r"shape \(6,\)"),
    (np.full(6, 0.5), "integer labels"),
    (np.array([0, 1, 2, 3, 4, 0]), r"lie in 0..3; got min 0, max 4"),
    (np.array([0, -1, 2, 3, 1, 0]), "got min -1"),
])
def test_bad_labels_get_one_clear_line(y, match, rng):
    model = VAE(ModelConfig(**SMALL), rng=0, dtype=np.float64)
    x, _ = _data(rng)
    with pytest.raises(InputError, match=match):
        model.forward(x, model.noise(6, rng), y=y)
    with pytest.raises(InputError, match=match):
        fit(model, x, y=y, epochs=1, progress=False)


def test_an_unconditional_model_refuses_labels(rng):
    model = VAE(ModelConfig(**{**SMALL, "num_classes": 0}), rng=0, dtype=np.float64)
    x, y = _data(rng)
    with pytest.raises(InputError, match="not conditional"):
        model.forward(x, model.noise(6, rng), y=y)
    for bad in (-1, 1.5, True, "10"):
        with pytest.raises(ConfigError, match="num_classes"):
            ModelConfig(**{**SMALL, "num_classes": bad})


def test_fit_trains_on_labelled_minibatches_and_evaluates_with_labels(rng):
    model = VAE(ModelConfig(**SMALL), rng=0)
    x, y = _data(rng, 64)
    x = x.astype(np.float32)
    before = negative_elbo(model, x, y=y)["loss"]
    hist = fit(model, x, y=y, x_test=x, y_test=y, epochs=3, batch_size=16, lr=1e-2,
               progress=False)
    assert hist["test_loss"][-1] < before
    assert hist["test_loss"][-1] == negative_elbo(model, x, y=y)["loss"]
    # the fused step has no label input: the model says so and takes the readable path
    assert not supports(model)[0] and "conditional" in supports(model)[1]
    assert iw_estimate(model, x, 5, y=y).k == 5
    assert kl_per_dimension(model, x, y=y).shape == (3,)
    assert 0 <= active_units(model, x, y=y) <= 3
    with pytest.raises(InputError, match="pass the labels"):
        negative_elbo(model, x)
    with pytest.raises(InputError, match="pass the labels"):
        fit(model, x, y=y, x_test=x, epochs=4, progress=False)   # labels of x_test missing


def test_a_conditional_checkpoint_round_trips(tmp_path, rng):
    model = VAE(ModelConfig(**SMALL), rng=3)
    path = save_checkpoint(tmp_path / "c.npz", model)
    back = load_checkpoint(path).model
    assert back.config.num_classes == C
    x, y = _data(rng)
    x = x.astype(np.float32)
    np.testing.assert_array_equal(back.reconstruct(x, y), model.reconstruct(x, y))
    # a checkpoint written before the option existed has no num_classes: unconditional
    old = ModelConfig.from_json('{"kind": "vae", "input_dim": 12, "hidden_dims": [7], '
                                '"latent_dim": 3}')
    assert old.num_classes == 0
