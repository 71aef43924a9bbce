"""Training, checkpoints, resuming and the NaN guard, on small synthetic data."""

import json

import numpy as np
import pytest

from vae_numpy import checkpoint as ckpt_mod
from vae_numpy.checkpoint import load_checkpoint, load_into, save_checkpoint
from vae_numpy.errors import CheckpointError, ConfigError, NonFiniteError
from vae_numpy.evaluate import negative_elbo
from vae_numpy.handwriting import make_handwriting
from vae_numpy.model import VAE, ModelConfig
from vae_numpy.train import fit, make_optimizer

CFG = ModelConfig(input_dim=784, hidden_dims=(64,), latent_dim=4)


@pytest.fixture(scope="module")
def data():
    ds, _ = make_handwriting(1200, np.random.default_rng(0))
    return ds.x[:1000], ds.x[1000:]


def test_training_improves_the_test_elbo(data):
    x, x_test = data
    model = VAE(CFG, rng=0)
    before = negative_elbo(model, x_test)["loss"]
    history = fit(model, x, epochs=3, batch_size=50, lr=3e-3, x_test=x_test, progress=False)
    assert len(history) == 3
    assert history["test_loss"][-1] < before - 50
    assert history["test_loss"][2] < history["test_loss"][0]
    assert all(np.isfinite(history["train_kl"]))


def test_checkpoint_reproduces_the_test_elbo(data, tmp_path):
    x, x_test = data
    model = VAE(CFG, rng=0)
    fit(model, x, epochs=1, batch_size=50, x_test=x_test, progress=False,
        checkpoint=tmp_path / "c.npz")
    loaded = load_checkpoint(tmp_path / "c.npz").model
    assert negative_elbo(loaded, x_test) == negative_elbo(model, x_test)
    with np.load(tmp_path / "c.npz", allow_pickle=False) as npz:
        names = set(npz.files)
        assert json.loads(str(npz["config"]))["latent_dim"] == 4
    assert {f"param/{k}" for k in model.params} <= names
    assert "optim/m/enc.W1" in names and "optim/t" in names


def test_resuming_gives_bit_identical_parameters(data, tmp_path):
    x, _ = data
    one_go = VAE(CFG, rng=0)
    fit(one_go, x, epochs=3, batch_size=64, rng=5, progress=False)
    two_runs = VAE(CFG, rng=0)
    fit(two_runs, x, epochs=1, batch_size=64, rng=5, progress=False,
        checkpoint=tmp_path / "c.npz")
    resumed = VAE(CFG, rng=99)  # different init: everything must come from the checkpoint
    history = fit(resumed, x, epochs=3, batch_size=64, rng=123, progress=False,
                  optimizer=make_optimizer(resumed, "adam", 1e-3), resume=tmp_path / "c.npz")
    assert history["epoch"] == [1, 2, 3]
    assert np.array_equal(resumed.flat, one_go.flat)


def test_a_huge_learning_rate_stops_with_a_clear_error_and_keeps_the_checkpoint(data, tmp_path):
    x, _ = data
    model = VAE(CFG, rng=0)
    path = tmp_path / "c.npz"
    fit(model, x, epochs=1, batch_size=50, progress=False, checkpoint=path)
    before = path.read_bytes()
    with pytest.raises(NonFiniteError, match=r"epoch \d+, step \d+.*learning rate.*intact"):
        fit(model, x, epochs=5, batch_size=50, lr=1e6, progress=False, checkpoint=path,
            resume=path, optimizer=make_optimizer(model, "sgd", 1e6))
    assert path.read_bytes() == before
    assert np.isfinite(load_checkpoint(path).model.flat).all()


def test_an_interrupted_save_leaves_the_old_checkpoint_and_no_temporary(tmp_path, monkeypatch):
    model = VAE(CFG, rng=0)
    path = tmp_path / "c.npz"
    save_checkpoint(path, model)
    before = path.read_bytes()

    def explode(f, **arrays):
        f.write(b"half a file")
        raise KeyboardInterrupt

    monkeypatch.setattr(ckpt_mod.np, "savez", explode)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(path, VAE(CFG, rng=1))
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["c.npz"]


def test_loading_another_architecture_fails_clearly(tmp_path):
    save_checkpoint(tmp_path / "c.npz", VAE(CFG, rng=0))
    other = VAE(ModelConfig(hidden_dims=(64,), latent_dim=8), rng=0)
    with pytest.raises(CheckpointError, match="another architecture"):
        load_into(other, tmp_path / "c.npz")
    with pytest.raises(CheckpointError, match="do not match"):
        other.load_params(VAE(CFG, rng=0).params)


@pytest.mark.parametrize("content", [b"", b"not a zip at all", None])
def test_a_broken_checkpoint_fails_clearly(content, tmp_path):
    path = tmp_path / "c.npz"
    if content is None:  # a real checkpoint cut in half
        save_checkpoint(path, VAE(CFG, rng=0))
        content = path.read_bytes()[: path.stat().st_size // 2]
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        load_checkpoint(path)


def test_a_missing_checkpoint_fails_clearly(tmp_path):
    with pytest.raises(CheckpointError, match="no checkpoint at"):
        load_checkpoint(tmp_path / "nope.npz")


def test_same_seed_same_result(data):
    x, _ = data
    a, b = VAE(CFG, rng=0), VAE(CFG, rng=0)
    fit(a, x, epochs=1, batch_size=64, rng=7, progress=False)
    fit(b, x, epochs=1, batch_size=64, rng=7, progress=False)
    assert np.array_equal(a.flat, b.flat)


def test_train_cached_trains_once_then_loads(tmp_path, monkeypatch):
    from vae_numpy import train

    monkeypatch.setenv("VAE_NUMPY_CACHE", str(tmp_path))
    calls = []
    real_fit = train.fit
    monkeypatch.setattr(train, "fit", lambda *a, **k: calls.append(1) or real_fit(*a, **k))
    a, ha = train.train_cached(CFG, dataset="handwriting", epochs=1, limit=500, progress=False)
    b, hb = train.train_cached(CFG, dataset="handwriting", epochs=1, limit=500, progress=False)
    assert calls == [1]
    assert np.array_equal(a.flat, b.flat)
    assert ha["test_loss"] == hb["test_loss"]
    c, _ = train.train_cached(CFG, dataset="handwriting", epochs=1, limit=400, progress=False)
    assert calls == [1, 1] and not np.array_equal(a.flat, c.flat)
    assert len(list((tmp_path / "models").glob("*.npz"))) == 2


def test_train_cached_dynamic_binarization_trains_on_draws_and_keys_on_it(tmp_path,
                                                                          monkeypatch):
    from vae_numpy import train
    from vae_numpy.checkpoint import load_checkpoint
    from vae_numpy.data import DYNAMIC_TEST_SEED

    monkeypatch.setenv("VAE_NUMPY_CACHE", str(tmp_path))
    seen = []
    real_fit = train.fit

    def spy(model, x, **kw):
        seen.append((kw["binarize"], np.unique(kw["x_test"]).size))
        return real_fit(model, x, **kw)

    monkeypatch.setattr(train, "fit", spy)
    kw = dict(dataset="handwriting", epochs=1, limit=300, progress=False)
    _, grey = train.train_cached(CFG, **kw)
    _, dyn = train.train_cached(CFG, binarize="dynamic", **kw)
    # fit drew the training pixels; the test digits it scored are zeros and ones
    assert seen[0][0] is None and seen[0][1] > 2
    assert seen[1] == ("dynamic", 2)
    assert grey["test_loss"] != dyn["test_loss"]
    files = sorted((tmp_path / "models").glob("*.npz"))
    assert len(files) == 2
    data = [load_checkpoint(f).data for f in files]
    assert {"binarize": "dynamic", "test_seed": DYNAMIC_TEST_SEED}.items() <= \
        next(d for d in data if d).items()
    _, again = train.train_cached(CFG, binarize="dynamic", **kw)    # loaded, not trained
    assert len(seen) == 2 and again["test_loss"] == dyn["test_loss"]
    with pytest.raises(ConfigError, match="binarize"):
        train.train_cached(CFG, binarize="static", **kw)


def test_train_cached_digits_holds_classes_out_of_training_and_of_the_key(tmp_path,
                                                                         monkeypatch):
    from vae_numpy import train
    from vae_numpy.data import load_mnist

    monkeypatch.setenv("VAE_NUMPY_CACHE", str(tmp_path))
    seen = []
    monkeypatch.setattr(train, "fit", lambda model, x, **kw: seen.append((x, kw["x_test"]))
                        or train.History())
    cfg = ModelConfig(kind="vae", input_dim=784, hidden_dims=(8,), latent_dim=2)
    train.train_cached(cfg, epochs=0, digits=[0, 1, 2, 3, 4, 5, 6, 7, 8], progress=False)
    train.train_cached(cfg, epochs=0, digits=(8, 7, 6, 5, 4, 3, 2, 1, 0, 0), progress=False)
    assert len(seen) == 1                   # the same classes, in any order: the same model
    tr, te = load_mnist("train"), load_mnist("test")
    x, x_test = seen[0]
    assert np.array_equal(x, tr.x[tr.y != 9]) and np.array_equal(x_test, te.x[te.y != 9])
    train.train_cached(cfg, epochs=0, progress=False)
    assert len(seen) == 2 and len(seen[1][0]) == len(tr.x)   # every class: another key
    for bad in ([], [10], "seven"):
        with pytest.raises(ConfigError, match="digits"):
            train.train_cached(cfg, epochs=0, digits=bad, progress=False)
    with pytest.raises(ConfigError, match="no"):
        train.train_cached(cfg, dataset="handwriting", epochs=0, digits=[1], progress=False)


def test_an_interrupted_figure_write_leaves_the_old_png(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from vae_numpy.plots import image_grid, save_figure

    path = tmp_path / "grid.png"
    ax = image_grid(np.zeros((4, 784), np.float32))
    save_figure(ax.figure, path)
    before = path.read_bytes()

    class Boom(Exception):
        pass

    def explode(*args, **kwargs):
        raise Boom

    ax.figure.savefig = explode
    with pytest.raises(Boom):
        save_figure(ax.figure, path)
    plt.close("all")
    assert path.read_bytes() == before and before[:4] == b"\x89PNG"
    assert [p.name for p in tmp_path.iterdir()] == ["grid.png"]


def test_divergence_in_the_first_epoch_says_no_checkpoint_was_written(data, tmp_path):
    x, _ = data
    model = VAE(CFG, rng=0)
    path = tmp_path / "c.npz"
    with pytest.raises(NonFiniteError) as exc:
        fit(model, x, epochs=3, batch_size=50, progress=False, checkpoint=path,
            optimizer=make_optimizer(model, "sgd", 1e6))
    message = str(exc.value)
    assert "diverged at epoch 1" in message
    assert "no checkpoint was written" in message and "intact" not in message
    assert not path.exists()


def test_divergence_names_the_checkpoint_that_was_written(data, tmp_path):
    x, _ = data
    model = VAE(CFG, rng=0)
    path = tmp_path / "c.npz"
    optimizer = make_optimizer(model, "sgd", 1e-3)

    def explode_after_epoch_1(epoch, model, history):
        optimizer.lr = 1e6

    with pytest.raises(NonFiniteError, match=rf"epoch 2, .*the last good checkpoint, "
                                             rf"{path} \(epoch 1\), is intact"):
        fit(model, x, epochs=3, batch_size=50, progress=False, checkpoint=path,
            optimizer=optimizer, callbacks=[explode_after_epoch_1])
    assert load_checkpoint(path).epoch == 1
    # resumed from one file and saving to another: the new one was never written
    other = tmp_path / "d.npz"
    resumed = VAE(CFG, rng=0)
    with pytest.raises(NonFiniteError) as exc:
        fit(resumed, x, epochs=3, batch_size=50, progress=False, checkpoint=other, resume=path,
            optimizer=make_optimizer(resumed, "sgd", 1e6))
    assert f"no checkpoint was written to {other} (the one it resumed from, {path}, epoch 1, " \
           "is unchanged)" in str(exc.value)
    assert not other.exists()


def test_unit_statistics_need_a_vae(data):
    from vae_numpy.errors import ConfigError
    from vae_numpy.evaluate import active_units, kl_per_dimension
    from vae_numpy.model import Autoencoder

    ae = Autoencoder(ModelConfig(kind="ae", input_dim=784, hidden_dims=(8,), latent_dim=2))
    x = data[1]
    with pytest.raises(ConfigError, match="active units needs a VAE"):
        active_units(ae, x)
    with pytest.raises(ConfigError, match="the KL per dimension needs a VAE"):
        kl_per_dimension(ae, x)


def test_a_checkpoint_with_nan_parameters_fails_clearly(tmp_path):
    model = VAE(CFG, rng=0)
    model.params["enc.W1"][0, 0] = np.nan
    model.params["dec.b_out"][:] = np.inf
    save_checkpoint(tmp_path / "c.npz", model)
    with pytest.raises(CheckpointError, match=r"param/enc\.W1 \(1 of 50176\), param/dec\.b_out "
                                              r"\(784 of 784\) hold NaN or infinite values"):
        load_checkpoint(tmp_path / "c.npz")


def test_a_npy_array_is_not_a_checkpoint(tmp_path):
    np.save(tmp_path / "x.npy", np.zeros((3, 4), np.float32))
    with pytest.raises(CheckpointError, match=r"is a \.npy array of shape \(3, 4\), not a "
                                              "checkpoint"):
        load_checkpoint(tmp_path / "x.npy")


def test_numerical_gradient_works_through_non_contiguous_views(rng):
    from vae_numpy.errors import InputError
    from vae_numpy.gradcheck import numerical_gradient

    W = rng.standard_normal((4, 6))
    W0 = W.copy()

    def f():
        return float(np.sin(W).sum() + (W ** 2).sum())

    def grad():
        return np.cos(W) + 2 * W

    # a transpose and a strided slice are views: perturbing them perturbs W, which f reads
    np.testing.assert_allclose(numerical_gradient(f, W.T), grad().T, rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(numerical_gradient(f, W[:, ::2]), grad()[:, ::2], rtol=1e-7,
                               atol=1e-9)
    assert np.array_equal(W, W0)  # every entry restored
    frozen = W.copy()
    frozen.flags.writeable = False
    for bad, pattern in ((frozen, "read-only"), (np.arange(4), "floating-point"),
                         ([1.0, 2.0], "got list")):
        with pytest.raises(InputError, match=pattern):
            numerical_gradient(lambda: 0.0, bad)


def test_adam_follows_the_models_backend_not_the_environment(monkeypatch):
    from vae_numpy.optim import Adam

    cfg = ModelConfig(input_dim=30, hidden_dims=(8,), latent_dim=2)
    monkeypatch.setenv("VAE_NUMPY_BACKEND", "numpy")      # the environment enables numba
    assert Adam(VAE(cfg, rng=0, backend="numpy-ref").params)._flat is None
    fast = VAE(cfg, rng=0, backend="numpy")
    assert Adam(fast.params)._flat is fast.flat
    monkeypatch.setenv("VAE_NUMPY_BACKEND", "numpy-ref")  # ... and now it does not
    assert Adam(fast.params)._flat is fast.flat
    assert Adam(dict(fast.params))._flat is None            # a plain dict: the environment
    assert Adam(fast.params, fused=False)._flat is None


# -- the Gaussian decoder's std floor -----------------------------------------------------
class _RecordingELBO:
    """The ELBO objective, keeping every step's loss."""

    name, k = "elbo", 1

    def __init__(self):
        self.losses = []

    def noise(self, model, n, rng):
        return model.noise(n, rng)

    def loss_and_grads(self, model, x, eps, *, check=False):
        out = model.loss_and_grads(x, eps, check=check)
        self.losses.append(out[1]["loss"])
        return out


def _train_gaussian(floor):
    """400 Adam steps of a learned-variance Gaussian VAE; 12 of 16 pixels are always 0."""
    x = np.random.default_rng(0).random((256, 16)).astype(np.float32)
    x[:, :12] = 0.0
    model = VAE(ModelConfig(input_dim=16, hidden_dims=(16,), latent_dim=2,
                            likelihood="gaussian", gaussian_std_floor=floor), rng=0)
    objective = _RecordingELBO()
    fit(model, x, epochs=50, batch_size=32, lr=3e-2, progress=False, objective=objective)
    return model, x, objective.losses


def test_the_std_floor_bounds_a_learned_gaussian_likelihood():
    import math

    floor = 0.05
    # each pixel's NLL is 0.5 log 2pi + log sigma + (x - mu)^2 / 2 sigma^2 >= 0.5 log 2pi +
    # log floor when sigma >= floor, and the KL is >= 0
    bound = 16 * (0.5 * math.log(2 * math.pi) + math.log(floor))
    model, x, losses = _train_gaussian(floor)
    assert len(losses) == 400
    assert min(losses) >= bound
    assert negative_elbo(model, x)["rec"] >= bound
    # the always-0 pixels have reached the floor: it is what holds them up
    np.testing.assert_allclose(model.log_var_x()[:12], 2 * math.log(floor), rtol=1e-6)
    _, _, unbounded = _train_gaussian(0.0)
    assert min(unbounded) < bound - 10


def test_gradients_of_the_floored_gaussian_likelihood(rng):
    import math

    from vae_numpy.gradcheck import numerical_gradient, rel_error

    floor = 0.1
    cfg = ModelConfig(input_dim=10, hidden_dims=(6,), latent_dim=2, likelihood="gaussian",
                      gaussian_std_floor=floor)
    model = VAE(cfg, rng=0, dtype=np.float64)
    lv = model.params["dec.log_var_x"]
    lv[::2] = 2 * math.log(floor) - 2.0                  # below the floor: held at it
    lv[1::2] = rng.uniform(-2.0, 0.0, size=5)           # above it: free
    x = rng.random((8, 10))
    eps = rng.standard_normal((8, 2))
    _, _, grads = model.loss_and_grads(x, eps)
    grads = {k: v.copy() for k, v in grads.items()}
    assert np.all(grads["dec.log_var_x"][::2] == 0) and np.all(grads["dec.log_var_x"][1::2] != 0)
    for name, p in model.params.items():
        num = numerical_gradient(lambda: float(model.forward(x, eps)[0]), p)
        assert rel_error(grads[name], num) < 1e-6, name
