"""KL warm-up and free bits as training objectives: schedule, history, checkpoints, resuming,
the fused path, and a clear error for each setting that cannot train.

Their gradients are checked against central differences in tests/test_gradients.py.
"""

import numpy as np
import pytest

from vae_numpy import fused
from vae_numpy.checkpoint import load_checkpoint
from vae_numpy.errors import ConfigError
from vae_numpy.model import VAE, Autoencoder, ModelConfig
from vae_numpy.objectives import ELBO, IWAE, FreeBits, kl_warmup_beta, same_settings
from vae_numpy.train import History, fit, train_cached

CFG = ModelConfig(input_dim=64, hidden_dims=(16,), latent_dim=3)


@pytest.fixture(scope="module")
def x():
    return np.random.default_rng(0).random((96, 64), dtype=np.float32)


def test_the_warm_up_is_linear_per_epoch_and_ends_at_the_models_beta():
    assert [kl_warmup_beta(e, 4) for e in range(1, 7)] == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]
    assert [kl_warmup_beta(e, 2, beta=3.0) for e in (1, 2, 3)] == [1.5, 3.0, 3.0]
    assert kl_warmup_beta(1, 0, beta=0.5) == 0.5                      # no warm-up
    vae = VAE(CFG, rng=0)
    assert [ELBO(kl_warmup=3).beta(vae, e) for e in (1, 2, 3, 4)] == pytest.approx(
        [1 / 3, 2 / 3, 1.0, 1.0])
    assert ELBO().beta(Autoencoder(ModelConfig(kind="ae", **_small())), 1) is None


def _small():
    return dict(input_dim=64, hidden_dims=(16,), latent_dim=3)


def test_a_warm_up_run_records_beta_and_minimises_the_weighted_objective(x):
    model = VAE(CFG, rng=0)
    history = fit(model, x, epochs=5, batch_size=32, progress=False, x_test=x[:32],
                  objective=ELBO(kl_warmup=4))
    assert history["beta"] == [0.25, 0.5, 0.75, 1.0, 1.0]
    # every step of an epoch used its beta: the epoch's loss is rec + beta * kl
    np.testing.assert_allclose(history["train_loss"], np.array(history["train_rec"])
                               + np.array(history["beta"]) * np.array(history["train_kl"]),
                               rtol=1e-5)
    # the test numbers are the negative ELBO (beta = 1), whatever the schedule
    np.testing.assert_allclose(history["test_loss"], np.array(history["test_rec"])
                               + np.array(history["test_kl"]), rtol=1e-5)


def test_the_beta_of_a_plain_run_is_the_models_and_the_iwae_bound_has_none(x):
    h = fit(VAE(ModelConfig(beta=0.5, **_small()), rng=0), x, epochs=2, progress=False)
    assert h["beta"] == [0.5, 0.5]
    h = fit(VAE(CFG, rng=0), x, epochs=1, progress=False, objective=IWAE(2))
    assert np.isnan(h["beta"]).all()
    h = fit(Autoencoder(ModelConfig(kind="ae", **_small()), rng=0), x, epochs=1,
            progress=False)
    assert np.isnan(h["beta"]).all()


def test_a_resumed_warm_up_continues_the_schedule_bit_for_bit(x, tmp_path):
    """An interrupted run resumed in the middle of its warm-up: beta comes from the epoch
    number, not from the epochs since the resume."""
    one_go = VAE(CFG, rng=0)
    h1 = fit(one_go, x, epochs=4, batch_size=32, rng=3, progress=False,
             objective=ELBO(kl_warmup=4))

    def interrupt_after_epoch_2(epoch, model, history):
        if epoch == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        fit(VAE(CFG, rng=0), x, epochs=4, batch_size=32, rng=3, progress=False,
            objective=ELBO(kl_warmup=4), checkpoint=tmp_path / "c.npz",
            callbacks=[interrupt_after_epoch_2])
    resumed = VAE(CFG, rng=9)
    h2 = fit(resumed, x, epochs=4, batch_size=32, rng=3, progress=False,
             objective=ELBO(kl_warmup=4), resume=tmp_path / "c.npz")
    assert h2["beta"] == h1["beta"] == [0.25, 0.5, 0.75, 1.0]
    assert np.array_equal(resumed.flat, one_go.flat)


@pytest.mark.parametrize("objective,stored", [
    (ELBO(), {"name": "elbo", "k": 1, "kl_warmup": 0}),
    (ELBO(kl_warmup=2), {"name": "elbo", "k": 1, "kl_warmup": 2}),
    (FreeBits(0.25, kl_warmup=1), {"name": "free_bits", "k": 1, "kl_warmup": 1,
                                   "free_bits": 0.25}),
    (IWAE(3), {"name": "iwae", "k": 3}),
])
def test_the_checkpoint_records_the_objectives_settings(objective, stored, x, tmp_path):
    fit(VAE(CFG, rng=0), x, epochs=2, progress=False, objective=objective,
        checkpoint=tmp_path / "c.npz")
    ckpt = load_checkpoint(tmp_path / "c.npz")
    assert ckpt.objective == stored
    assert len(ckpt.history["beta"]) == 2


@pytest.mark.parametrize("first,then", [
    (ELBO(kl_warmup=2), ELBO(kl_warmup=3)),
    (ELBO(kl_warmup=2), ELBO()),
    (FreeBits(0.5), FreeBits(0.25)),
    (FreeBits(0.5), ELBO()),
    (ELBO(), IWAE(1)),
])
def test_resuming_with_another_setting_is_refused(first, then, x, tmp_path):
    model = VAE(CFG, rng=0)
    fit(model, x, epochs=2, progress=False, objective=first, checkpoint=tmp_path / "c.npz")
    with pytest.raises(ConfigError, match="give the same objective to continue it"):
        fit(VAE(CFG, rng=0), x, epochs=3, progress=False, objective=then,
            resume=tmp_path / "c.npz")


def test_an_older_checkpoints_objective_record_means_no_warm_up_and_no_floor():
    old = {"name": "elbo", "k": 1}
    assert same_settings(old, ELBO().settings())
    assert not same_settings(old, ELBO(kl_warmup=2).settings())
    assert not same_settings({"name": "free_bits", "k": 1, "free_bits": 0.5},
                             FreeBits(0.5, kl_warmup=1).settings())
    h = History.from_dict({"epoch": [1, 2], "train_loss": [3.0, 2.0]})  # no "beta" yet
    assert len(h["beta"]) == 2 and np.isnan(h["beta"]).all()
    h.append(epoch=3, beta=1.0)
    assert h["epoch"] == [1, 2, 3] and h["beta"][-1] == 1.0


@pytest.mark.parametrize("make,model,epochs,pattern", [
    (lambda: ELBO(kl_warmup=5), "vae", 4, "a KL warm-up of 5 epochs is longer than the run "
                                          r"\(4 epochs\): it would end at beta = 0.8"),
    (lambda: ELBO(kl_warmup=2), "ae", 4, "KL warm-up needs a VAE"),
    (lambda: ELBO(kl_warmup=2), "beta0", 4, "with beta = 0 there is nothing to ramp"),
    (lambda: FreeBits(0.5), "ae", 4, "the free_bits objective needs a VAE"),
    (lambda: FreeBits(-0.5), "vae", 4, r"free_bits \(lambda, nats per latent unit\) must be "
                                       "a finite number >= 0; got -0.5"),
    (lambda: FreeBits(float("nan")), "vae", 4, "must be a finite number >= 0; got nan"),
    (lambda: FreeBits(True), "vae", 4, "got True"),
    (lambda: ELBO(kl_warmup=-1), "vae", 4, "kl_warmup must be a whole number of epochs"),
    (lambda: ELBO(kl_warmup=2.5), "vae", 4, "kl_warmup must be a whole number of epochs"),
    (lambda: FreeBits(0.5, kl_warmup=9), "vae", 4, "longer than the run"),
])
def test_bad_settings_fail_before_training(make, model, epochs, pattern, x):
    models = {"vae": lambda: VAE(CFG, rng=0), "beta0": lambda: VAE(
        ModelConfig(beta=0.0, **_small()), rng=0),
        "ae": lambda: Autoencoder(ModelConfig(kind="ae", **_small()), rng=0)}
    m = models[model]()
    before = m.flat.copy()
    with pytest.raises(ConfigError, match=pattern):
        fit(m, x, epochs=epochs, progress=False, objective=make())
    assert np.array_equal(m.flat, before)                      # not one step taken


def test_a_warm_up_as_long_as_the_run_is_allowed_and_ends_at_beta(x):
    h = fit(VAE(CFG, rng=0), x, epochs=2, progress=False, objective=ELBO(kl_warmup=2))
    assert h["beta"] == [0.5, 1.0]


def test_a_kl_weight_is_refused_where_it_means_nothing(x):
    ae = Autoencoder(ModelConfig(kind="ae", **_small()), rng=0)
    with pytest.raises(ConfigError, match="an autoencoder has no KL term to weigh"):
        ae.loss_and_grads(x, None, beta=0.5)
    vae = VAE(CFG, rng=0)
    with pytest.raises(ConfigError, match="beta must be a finite number >= 0; got -1"):
        vae.loss_and_grads(x, vae.noise(len(x), np.random.default_rng(0)), beta=-1.0)


# -- the fused path ---------------------------------------------------------------------
def test_the_fused_step_takes_a_warm_ups_beta(x):
    """Same arithmetic as a model whose config has that beta, bit for bit; and the
    reference path's loss to float32 rounding."""
    model = VAE(CFG, rng=0)
    fixed = VAE(ModelConfig(beta=0.3, **_small()), rng=0)
    ref = VAE(CFG, rng=0, backend="numpy-ref")
    assert fused.fused_step_for(model) is not None
    eps = model.noise(len(x), np.random.default_rng(1))
    loss, terms, g = model.loss_and_grads(x, eps, beta=0.3)
    g = {k: v.copy() for k, v in g.items()}
    loss_f, terms_f, g_f = fixed.loss_and_grads(x, eps)
    assert float(loss) == float(loss_f) and terms == terms_f
    assert all(np.array_equal(g[k], g_f[k]) for k in g)
    loss_r, terms_r, _ = ref.loss_and_grads(x, eps, beta=0.3)
    assert float(loss) == pytest.approx(float(loss_r), rel=1e-5)
    assert terms["loss"] == pytest.approx(terms["rec"] + 0.3 * terms["kl"], rel=1e-6)


def test_free_bits_never_run_the_fused_step(x, monkeypatch):
    """Free bits take the reference path even where a fused step exists, and give that
    path's numbers exactly (the numba and numpy-ref backends then run the same code)."""
    model = VAE(CFG, rng=0)
    ref = VAE(CFG, rng=0, backend="numpy-ref")
    assert fused.fused_step_for(model) is not None

    def refuse(*args, **kwargs):
        raise AssertionError("the fused step ran under free bits")

    monkeypatch.setattr(fused.FusedStep, "__call__", refuse)
    eps = model.noise(len(x), np.random.default_rng(1))
    objective = FreeBits(0.1)
    loss, terms, g = objective.loss_and_grads(model, x, eps)
    g = {k: v.copy() for k, v in g.items()}
    loss_r, terms_r, g_r = objective.loss_and_grads(ref, x, eps)
    assert float(loss) == float(loss_r) and terms == terms_r
    assert all(np.array_equal(g[k], g_r[k]) for k in g)
    assert loss.dtype == np.float32 and all(v.dtype == np.float32 for v in g.values())
    fit(model, x, epochs=1, progress=False, objective=objective)   # a whole epoch, too


def test_free_bits_keep_a_collapsing_unit_in_use(x):
    """What they are for: with a floor, the batch-mean KL of units stays near lambda
    instead of falling toward 0 (Kingma et al., 2016)."""
    plain, floored = VAE(CFG, rng=0), VAE(CFG, rng=0)
    fit(plain, x, epochs=30, batch_size=32, lr=3e-3, progress=False)
    fit(floored, x, epochs=30, batch_size=32, lr=3e-3, progress=False,
        objective=FreeBits(1.0))
    from vae_numpy.evaluate import kl_per_dimension

    kl_plain, kl_floored = kl_per_dimension(plain, x), kl_per_dimension(floored, x)
    assert kl_floored.min() > 0.5 and kl_floored.min() > 5 * kl_plain.min()


# -- the model cache --------------------------------------------------------------------
def test_train_cached_keys_on_the_objective(tmp_path, monkeypatch):
    from vae_numpy import train

    monkeypatch.setenv("VAE_NUMPY_CACHE", str(tmp_path))
    cfg = ModelConfig(input_dim=784, hidden_dims=(8,), latent_dim=2)
    kw = dict(dataset="handwriting", epochs=2, limit=200, progress=False)
    _, h_plain = train_cached(cfg, **kw)
    _, h_warm = train_cached(cfg, objective=ELBO(kl_warmup=2), **kw)
    _, h_floor = train_cached(cfg, objective=FreeBits(0.5), **kw)
    assert h_plain["beta"] == [1.0, 1.0] and h_warm["beta"] == [0.5, 1.0]
    assert h_floor["train_loss"] != h_plain["train_loss"]
    assert len(list((tmp_path / "models").glob("*.npz"))) == 3
    calls = []
    monkeypatch.setattr(train, "fit", lambda *a, **k: calls.append(1))
    _, again = train_cached(cfg, objective=ELBO(kl_warmup=2), **kw)   # loaded, not trained
    assert calls == [] and again["beta"] == [0.5, 1.0]
    ckpt = load_checkpoint(next(p for p in (tmp_path / "models").glob("*.npz")
                                if load_checkpoint(p).objective.get("name") == "free_bits"))
    assert ckpt.objective["free_bits"] == 0.5
