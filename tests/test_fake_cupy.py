"""Backend "cupy" through a SIMULATION of CuPy's semantics; not a GPU test.

tests/fake_cupy.py stands in for CuPy: its arrays hold NumPy data but refuse, as CuPy's
do, to become NumPy arrays implicitly or to meet a NumPy array inside an operation. So
the whole library runs here as it would on a GPU, with every host/device crossing
explicit, and it computes with NumPy's own arithmetic: each result must equal the
``numpy-ref`` path's from the same seeds. What the simulation cannot show (CuPy's own
kernels, cuBLAS's rounding, speed) is left to the real-CuPy tests in
tests/test_backends.py and to ``python3 dev.py gpu``.
"""

import math

import numpy as np
import pytest
from test_backends import SMALL, data  # the same small model and MNIST-like pixels

from vae_numpy.backend import array_module, cupy_available, get_backend
from vae_numpy.checkpoint import load_checkpoint, save_checkpoint
from vae_numpy.evaluate import (
    active_units,
    iw_estimate,
    kl_per_dimension,
    negative_elbo,
)
from vae_numpy.model import VAE, Autoencoder, ModelConfig, make_model
from vae_numpy.objectives import IWAE, FreeBits
from vae_numpy.train import fit, make_optimizer

F32 = {"rtol": 2e-6, "atol": 1e-7}        # float32 tolerance (the paths agree to the bit here)


def host(model, a):
    return model.backend.asnumpy(a)


def assert_same_params(gpu, ref):
    for name, p in ref.params.items():
        np.testing.assert_allclose(host(gpu, gpu.params[name]), p, **F32, err_msg=name)


# -- the stand-in is as strict as CuPy ----------------------------------------------------
def test_the_stand_in_refuses_what_cupy_refuses(fake_cupy):
    cp = fake_cupy
    d = cp.asarray(np.arange(6, dtype=np.float32).reshape(2, 3))
    h = np.ones((2, 3), np.float32)
    with pytest.raises(TypeError, match="Implicit conversion to a NumPy array"):
        np.asarray(d)
    with pytest.raises(TypeError, match="Implicit conversion"):
        np.array(d, dtype=np.float64)
    for mixed in (lambda: d + h, lambda: h * d, lambda: d @ h.T, lambda: h.T @ d,
                  lambda: cp.exp(h), lambda: cp.where(h > 0, d, 0.0), lambda: np.add(h, d),
                  lambda: cp.maximum(d, h)):
        with pytest.raises(TypeError, match="Unsupported type"):
            mixed()
    with pytest.raises(TypeError, match="Unsupported type"):
        d += h
    with pytest.raises(TypeError, match="Unsupported type"):
        h += d
    with pytest.raises(ValueError, match="non-scalar numpy.ndarray cannot be used for fill"):
        d[...] = h
    with pytest.raises(TypeError, match="no implementation found"):
        np.median(d)                          # a NumPy function CuPy has no twin of here
    with pytest.raises(ValueError, match="ambiguous"):
        bool(d > 0)
    with pytest.raises(TypeError, match="iteration over a 0-d array"):
        iter(d.sum())
    with pytest.raises(AttributeError, match="stand-in has no"):
        cp.fft                                # noqa: B018 - only what the library uses


def test_the_stand_in_allows_what_cupy_allows(fake_cupy):
    cp = fake_cupy
    d = cp.asarray(np.arange(6, dtype=np.float32).reshape(2, 3))
    total = d.sum()
    assert isinstance(total, cp.ndarray) and total.shape == ()   # reductions stay on device
    assert float(total) == 15.0 and int(total) == 15 and total.item() == 15.0
    assert bool(d[1, 2] > 4) and d.tolist() == [[0, 1, 2], [3, 4, 5]]
    assert isinstance(d.get(), np.ndarray) and isinstance(cp.asnumpy(d), np.ndarray)
    assert isinstance(cp.asnumpy(np.ones(2)), np.ndarray)
    assert isinstance(np.exp(d), cp.ndarray) and isinstance(np.sum(d), cp.ndarray)
    r = np.float32(2) * d * 2.0 + 1 - d / 3        # scalars of either kind mix freely
    assert isinstance(r, cp.ndarray) and r.dtype == np.float32
    assert isinstance(d[np.array([1])], cp.ndarray)   # host indices are copied over
    d[np.array([0])] = np.full((1, 3), 7, np.float32)
    d[...] = np.asarray(2.0)                        # a 0-d host value fills
    assert (d == np.asarray(2.0)).all()
    assert cupy_available() == (True, "")
    backend = get_backend("cupy")
    assert backend.xp is cp and not backend.use_numba
    assert array_module(d) is cp and array_module(np.ones(1)) is np
    assert f"{total:.1f}" == "15.0" and "15." in repr(total)


# -- one step, then training, against the reference path ------------------------------------
@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian", "continuous_bernoulli"])
def test_a_step_equals_the_reference(fake_cupy, likelihood):
    extra = {"likelihood": likelihood}
    ref = VAE(rng=0, backend="numpy-ref", **SMALL, **extra)
    gpu = VAE(rng=0, backend="cupy", **SMALL, **extra)
    assert isinstance(gpu.flat, fake_cupy.ndarray)
    x = data(32)
    eps = ref.noise(32, np.random.default_rng(0))
    l1, t1, g1 = ref.loss_and_grads(x, eps)
    l2, t2, g2 = gpu.loss_and_grads(fake_cupy.asarray(x), fake_cupy.asarray(eps))
    assert isinstance(l2, fake_cupy.ndarray)
    assert t2 == pytest.approx(t1, rel=1e-6)
    for name in g1:
        np.testing.assert_allclose(host(gpu, g2[name]), g1[name], **F32, err_msg=name)


def test_host_data_into_a_device_model_is_refused(fake_cupy):
    """What the stand-in is for: a NumPy batch handed to the GPU model fails, as on a GPU."""
    gpu = VAE(rng=0, backend="cupy", **SMALL)
    x = data(8)
    with pytest.raises(TypeError, match="Unsupported type"):
        gpu.loss_and_grads(x, gpu.noise(8, np.random.default_rng(0)))


@pytest.mark.parametrize("cls", [VAE, Autoencoder])
def test_an_epoch_of_fit_equals_the_reference(fake_cupy, cls):
    x, x_test = data(640), data(200, seed=1)
    runs = {}
    for backend in ("numpy-ref", "cupy"):
        model = cls(rng=0, backend=backend, **SMALL)
        history = fit(model, x, epochs=2, rng=3, x_test=x_test, progress=False,
                      optimizer=make_optimizer(model))
        runs[backend] = (model, history)
    (ref, h1), (gpu, h2) = runs["numpy-ref"], runs["cupy"]
    assert isinstance(gpu.flat, fake_cupy.ndarray)
    for key in ("train_loss", "train_rec", "train_kl", "test_loss", "test_rec", "test_kl"):
        np.testing.assert_allclose(h2[key], h1[key], rtol=1e-6, err_msg=key)
    assert_same_params(gpu, ref)


@pytest.mark.parametrize("objective", [IWAE(3), FreeBits(0.5)], ids=["iwae", "free_bits"])
def test_other_objectives_and_sgd_equal_the_reference(fake_cupy, objective):
    x = data(384)
    runs = {}
    for backend in ("numpy-ref", "cupy"):
        model = VAE(rng=0, backend=backend, **SMALL)
        opt = make_optimizer(model, "sgd", lr=0.01, momentum=0.9)
        runs[backend] = model, fit(model, x, epochs=1, rng=5, optimizer=opt, progress=False,
                                   objective=objective, binarize="dynamic")
    (ref, h1), (gpu, h2) = runs["numpy-ref"], runs["cupy"]
    np.testing.assert_allclose(h2["train_loss"], h1["train_loss"], rtol=1e-6)
    assert_same_params(gpu, ref)


# -- evaluation and sampling -------------------------------------------------------------------
def trained_pair():
    x = data(512)
    models = {}
    for backend in ("numpy-ref", "cupy"):
        model = VAE(rng=0, backend=backend, **SMALL)
        fit(model, x, epochs=1, rng=0, progress=False)
        models[backend] = model
    return models["numpy-ref"], models["cupy"]


def test_evaluation_equals_the_reference(fake_cupy):
    ref, gpu = trained_pair()
    x_test = data(300, seed=1)
    for name in ("loss", "rec", "kl"):
        assert negative_elbo(gpu, x_test)[name] == pytest.approx(
            negative_elbo(ref, x_test)[name], rel=1e-6)
    a, b = iw_estimate(ref, x_test, k=7, max_rows=500), iw_estimate(gpu, x_test, k=7,
                                                                     max_rows=500)
    assert math.isfinite(b.log_likelihood) and b.k == 7 and b.n == 300
    np.testing.assert_allclose(b.per_example, a.per_example, rtol=1e-6)
    assert b.stderr == pytest.approx(a.stderr, rel=1e-5)
    np.testing.assert_allclose(kl_per_dimension(gpu, x_test, batch_size=128),
                               kl_per_dimension(ref, x_test, batch_size=128), rtol=1e-5)
    assert active_units(gpu, x_test, batch_size=128) == active_units(ref, x_test, batch_size=128)


def test_sampling_reconstruction_and_codes_equal_the_reference(fake_cupy):
    ref, gpu = trained_pair()
    s1, s2 = ref.sample(16, np.random.default_rng(9)), gpu.sample(16, np.random.default_rng(9))
    assert isinstance(s2, fake_cupy.ndarray)
    np.testing.assert_allclose(host(gpu, s2), s1, **F32)
    x = data(20, seed=2)
    np.testing.assert_allclose(host(gpu, gpu.reconstruct(fake_cupy.asarray(x))),
                               ref.reconstruct(x), **F32)
    for a, b in zip(ref.encode(x), gpu.encode(fake_cupy.asarray(x))):
        np.testing.assert_allclose(host(gpu, b), a, **F32)
    g64 = gpu.astype(np.float64)                   # the gradient-check copy stays on device
    assert isinstance(g64.flat, fake_cupy.ndarray) and g64.dtype == np.float64


# -- checkpoints --------------------------------------------------------------------------------
def test_checkpoint_save_load_and_resume_equal_the_reference(fake_cupy, tmp_path):
    """Save on the device, load onto it and onto the host; resuming gives one run's result."""
    x, x_test = data(384), data(100, seed=1)
    ckpt = tmp_path / "gpu.npz"
    gpu = VAE(rng=0, backend="cupy", **SMALL)
    fit(gpu, x, epochs=1, rng=0, x_test=x_test, progress=False, checkpoint=ckpt)
    for backend in ("cupy", "numpy-ref"):
        loaded = load_checkpoint(ckpt, backend=backend)
        assert loaded.model.backend.name == backend and loaded.epoch == 1
        for name, p in loaded.model.params.items():
            np.testing.assert_array_equal(loaded.model.backend.asnumpy(p), host(gpu,
                                                                               gpu.params[name]))
    # resume on the device (Adam's moments go back onto it) and compare with one host run
    fit(gpu, x, epochs=3, rng=0, progress=False, resume=ckpt, checkpoint=ckpt)
    ref = VAE(rng=0, backend="numpy-ref", **SMALL)
    fit(ref, x, epochs=3, rng=0, progress=False)
    assert_same_params(gpu, ref)
    # and a host checkpoint continues on the device
    host_ckpt = save_checkpoint(tmp_path / "host.npz", ref)
    moved = load_checkpoint(host_ckpt, backend="cupy").model
    assert isinstance(moved.flat, fake_cupy.ndarray)
    assert negative_elbo(moved, x_test)["loss"] == pytest.approx(
        negative_elbo(ref, x_test)["loss"], rel=1e-6)


def test_make_model_on_the_device_for_every_kind(fake_cupy):
    for kind in ("vae", "ae"):
        model = make_model(ModelConfig(kind=kind, **SMALL), 0, backend="cupy")
        assert isinstance(model.flat, fake_cupy.ndarray)
        assert all(isinstance(p, fake_cupy.ndarray) for p in model.params.values())


# -- the command line ------------------------------------------------------------------------
def test_the_command_line_on_the_device_prints_what_the_reference_prints(fake_cupy, tmp_path,
                                                                         capsys):
    import re

    from vae_numpy.cli import main

    npy = tmp_path / "x.npy"
    np.save(npy, np.random.default_rng(0).random((200, 64), dtype=np.float32))
    printed = {}
    for backend in ("numpy-ref", "cupy"):
        run = tmp_path / backend
        steps = [["train", "--dataset", npy, "--hidden", 16, "--latent-dim", 2, "--epochs", 1,
                  "--batch-size", 32, "--out", run, "--no-progress"],
                 ["train", "--dataset", npy, "--hidden", 16, "--latent-dim", 2, "--epochs", 2,
                  "--batch-size", 32, "--out", run, "--no-progress", "--resume",
                  run / "checkpoint.npz"],
                 ["evaluate", run / "checkpoint.npz", "--data", npy, "--iw-samples", 5,
                  "--no-progress"],
                 ["sample", run / "checkpoint.npz", "-n", 4, "--out", run / "s.png"]]
        lines = []
        for argv in steps:
            code = main(["--backend", backend, *map(str, argv)])
            out, err = capsys.readouterr()
            assert code == 0, err
            lines.append(re.sub(r"\d+\.\d+s\b", "?s", out.replace(str(run), "RUN")))
        printed[backend] = lines
        assert (run / "s.png").read_bytes()[:4] == b"\x89PNG"
    assert printed["cupy"] == printed["numpy-ref"]


def test_load_params_takes_device_arrays_onto_either_backend(fake_cupy):
    """load_params copies another model's parameters in, wherever either one lives."""
    gpu = VAE(rng=0, backend="cupy", **SMALL)
    ref = VAE(rng=1, backend="numpy-ref", **SMALL)
    other_gpu = VAE(rng=2, backend="cupy", **SMALL)
    ref.load_params(gpu.params)                      # device -> host
    assert_same_params(gpu, ref)
    gpu.load_params(other_gpu.params)                # device -> device
    np.testing.assert_array_equal(host(gpu, gpu.flat), host(other_gpu, other_gpu.flat))
    gpu.load_params({k: np.asarray(v) + 1 for k, v in ref.params.items()})   # host -> device
    np.testing.assert_array_equal(host(gpu, gpu.flat), ref.flat + 1)


def test_figures_and_page_assets_of_a_device_model_equal_the_reference(fake_cupy):
    """What takes a model (not host arrays) in plots and web moves its images to the host."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from vae_numpy import plots, web

    models = [VAE(rng=0, backend=b, hidden_dims=(16,), latent_dim=2) for b in ("numpy-ref",
                                                                                "cupy")]
    z = np.array([[0.5, -1.0], [2.0, 0.0]])
    a, b = (web.decoded_images(m, z) for m in models)
    np.testing.assert_array_equal(a, b)
    assert web.decoder_asset(models[0]) == web.decoder_asset(models[1])
    for m in models:
        plots.plot_manifold(m, n=4)
        plots.plot_latent_explorer(m, 0.5, -0.5)
    plt.close("all")


def test_continuous_bernoulli_draws_equal_the_reference(fake_cupy):
    from vae_numpy.losses import continuous_bernoulli_sample

    logits = np.linspace(-30, 30, 60, dtype=np.float32).reshape(3, 20)
    a = continuous_bernoulli_sample(logits, np.random.default_rng(4))
    b = continuous_bernoulli_sample(fake_cupy.asarray(logits), np.random.default_rng(4))
    assert isinstance(b, fake_cupy.ndarray)
    np.testing.assert_array_equal(fake_cupy.asnumpy(b), a)
