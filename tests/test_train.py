"""Training, checkpoints, resuming and the NaN guard, on small synthetic data."""

import json

import numpy as np
import pytest

from vae_numpy import checkpoint as ckpt_mod
from vae_numpy.checkpoint import load_checkpoint, load_into, save_checkpoint
from vae_numpy.data import make_handwriting
from vae_numpy.errors import CheckpointError, NonFiniteError
from vae_numpy.evaluate import negative_elbo
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
