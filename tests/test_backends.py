"""The backends: NumPy with numba (default), NumPy without (the reference), CuPy (optional).

The CuPy tests need CuPy and a GPU; without them they are skipped, with the reason.
The benchmark's pieces are checked here for correctness only: nothing is timed.
"""

import json
import math
import os

import numpy as np
import pytest

from vae_numpy import bench
from vae_numpy import kernels as K
from vae_numpy.backend import BACKENDS, cupy_available, get_backend
from vae_numpy.errors import ConfigError
from vae_numpy.evaluate import negative_elbo
from vae_numpy.model import VAE, Autoencoder, ModelConfig
from vae_numpy.train import fit, make_optimizer

HAVE_CUPY, NO_CUPY_REASON = cupy_available()
needs_cupy = pytest.mark.skipif(not HAVE_CUPY, reason=NO_CUPY_REASON or "CuPy unavailable")
needs_numba = pytest.mark.skipif(not K.have_numba(), reason="numba is not installed")

SMALL = {"hidden_dims": (48,), "latent_dim": 6}


def data(n=640, d=784, seed=0):
    """MNIST-like pixels: mostly zeros, some ones, grey in between."""
    rng = np.random.default_rng(seed)
    x = rng.random((n, d)).astype(np.float32)
    x[rng.random((n, d)) < 0.75] = 0
    x[rng.random((n, d)) < 0.05] = 1
    return x


# -- choosing a backend -----------------------------------------------------------------
def test_backends_by_name_and_environment(monkeypatch):
    assert get_backend("numpy").use_numba
    assert not get_backend("numpy-ref").use_numba
    monkeypatch.setenv("VAE_NUMPY_BACKEND", "numpy-ref")
    assert get_backend().name == "numpy-ref"
    assert VAE(rng=0, **SMALL).backend.name == "numpy-ref"
    monkeypatch.delenv("VAE_NUMPY_BACKEND")
    assert get_backend().name == "numpy"
    with pytest.raises(ConfigError, match="unknown backend 'gpu'"):
        get_backend("gpu")
    assert set(BACKENDS) == {"numpy", "numpy-ref", "cupy"}


@pytest.mark.skipif(HAVE_CUPY, reason="CuPy is usable here")
def test_cupy_backend_says_why_it_is_unavailable():
    with pytest.raises(ConfigError, match="backend 'cupy' is not usable here"):
        get_backend("cupy")
    assert NO_CUPY_REASON


def test_reference_path_never_calls_a_kernel(monkeypatch):
    def boom(*args, **kwargs):
        raise AssertionError("the numpy-ref backend called a numba kernel")

    for name in ("bias_act", "relu_backward", "bernoulli_nll_grad", "reparameterize_kl",
                 "reparameterize_kl_backward", "adam_update"):
        monkeypatch.setattr(K, name, boom)
    monkeypatch.setenv("VAE_NUMPY_BACKEND", "numpy-ref")   # Adam reads it too
    model = VAE(rng=0, backend="numpy-ref", **SMALL)
    fit(model, data(256), epochs=1, progress=False)


# -- numba path against reference path ----------------------------------------------------
@needs_numba
@pytest.mark.parametrize("cls", [VAE, Autoencoder])
def test_numba_and_reference_paths_train_to_the_same_elbo(cls):
    """One epoch from the same seed: the two paths round differently (FMA, polynomial exp),
    and training amplifies rounding a little; the test ELBOs agree to 1e-5 relative."""
    x, x_test = data(1280), data(500, seed=1)
    results = {}
    for backend in ("numpy", "numpy-ref"):
        model = cls(rng=0, backend=backend, **SMALL)
        opt = make_optimizer(model)
        history = fit(model, x, epochs=1, optimizer=opt, rng=0, progress=False)
        results[backend] = (negative_elbo(model, x_test)["loss"], history["train_loss"][0])
    (a, ta), (b, tb) = results["numpy"], results["numpy-ref"]
    assert math.isfinite(a)
    assert abs(a - b) / abs(b) < 1e-5
    assert abs(ta - tb) / abs(tb) < 1e-5


@needs_numba
def test_same_seed_gives_bit_identical_training():
    x = data(640)
    flats = []
    for _ in range(2):
        model = VAE(rng=0, **SMALL)
        fit(model, x, epochs=2, rng=7, progress=False)
        flats.append(model.flat.copy())
    np.testing.assert_array_equal(flats[0], flats[1])


@needs_numba
def test_the_benchmark_trains_exactly_as_fit_does():
    x = data(700)
    config = ModelConfig(**SMALL)
    path = bench._NumpyPath("numpy", config, x, 128, seed=3)
    phases = dict.fromkeys(bench.PHASES, 0.0)
    path.epoch(phases)
    model = VAE(config, 3)
    fit(model, x, epochs=1, rng=3, progress=False)
    np.testing.assert_array_equal(path.model.flat, model.flat)
    assert all(v >= 0 for v in phases.values()) and phases["forward"] > 0

    ref = bench._NumpyPath("numpy-ref", config, x, 128, seed=3)
    phases = dict.fromkeys(bench.PHASES, 0.0)
    ref.epoch(phases)
    model = VAE(config, 3, backend="numpy-ref")
    fit(model, x, epochs=1, rng=3, progress=False)
    np.testing.assert_array_equal(ref.model.flat, model.flat)
    assert phases["loss"] > 0            # the loss functions were timed, and put back:
    from vae_numpy import losses
    assert losses.bernoulli_nll.__name__ == "bernoulli_nll"


# -- the benchmark's bookkeeping ------------------------------------------------------------
def test_flop_count_of_the_default_model():
    """3.28 MFLOP per example: forward 1.30, weight gradients 1.30, input gradients 0.68."""
    f = bench.flops_per_example(ModelConfig())
    assert f["forward"] == 2 * (784 * 400 + 400 * 40 + 20 * 400 + 400 * 784)
    assert f["weight_grad"] == f["forward"]
    assert f["input_grad"] == f["forward"] - 2 * 784 * 400   # no gradient for the data
    assert round(f["total"] / 1e6, 2) == 3.28
    assert round(f["total"] * 60000 / 1e9, 1) == 196.8


def test_gemm_shapes_cover_a_step():
    shapes = bench.gemm_shapes(ModelConfig(hidden_dims=(64, 32), latent_dim=5), 16)
    assert len(shapes) == 6 + 6 + 5   # 6 layers: forward, weight grads, input grads but x
    fwd = [g for g in shapes if g.phase == "forward"]
    assert [(g.m, g.k, g.n) for g in fwd] == [(16, 784, 64), (16, 64, 32), (16, 32, 10),
                                              (16, 5, 32), (16, 32, 64), (16, 64, 784)]


def test_the_gemm_floor_times_each_product_in_its_own_phase():
    config = ModelConfig(**SMALL)
    path = bench._GemmPath(config, 300, 128, seed=0)
    step = path.steps[0]
    want = {phase: sorted((g.m, g.k, g.n) for g in bench.gemm_shapes(config, 128)
                          if g.phase == phase) for phase in ("forward", "backward")}
    for phase in ("forward", "backward"):
        assert sorted(out.shape[:1] + a.shape[1:] + out.shape[1:]
                      for a, _, out, _ in step[phase]) == want[phase]
        assert {op[3] for op in step[phase]} == {phase}
    phases = dict.fromkeys(bench.PHASES, 0.0)
    path.epoch(phases)
    assert phases["forward"] > 0 and phases["backward"] > 0


@needs_numba
def test_benchmark_runs_and_writes_its_report(tmp_path):
    x, x_test = data(384), data(200, seed=1)
    result = bench.run_benchmark(epochs=2, x=x, x_test=x_test, use_torch=False,
                                 extras=False, pause=0.0, log=lambda line: None)
    for name in ("numba", "reference", "gemm"):
        p = result["paths"][name]
        assert len(p["epochs_s"]) == 2 and p["median_s"] > 0
        assert sum(p["phases_share"].values()) <= 1.0 + 1e-9
    assert "skipped" in result["paths"]["torch"]
    assert set(result["ratios"]) >= {"numba/gemm", "numba/reference"}
    assert result["test_elbo"]["abs_diff"] < 1e-3 * result["test_elbo"]["reference"]
    md, js = bench.write_outputs(result, tmp_path, name="r")
    text = md.read_text()
    assert "NumPy + numba (default)" in text and "PyTorch is not installed" in text or \
        "PyTorch skipped" in text
    assert json.loads(js.read_text())["examples"] == 384


@needs_numba
def test_gemm_table_compares_every_shape():
    rows = bench.gemm_table(ModelConfig(**SMALL), batch=16, reps=1)
    assert len(rows) == len(bench.gemm_shapes(ModelConfig(**SMALL), 16)) + 3
    for r in rows:
        assert r["blas_s"] > 0 and r["numba_s"] > 0
        assert r["rel_err"] < 1e-4, r["name"]
        assert r["library"].split()[0] in ("BLAS", "numba")


def test_machine_info_names_what_matters():
    info = bench.machine_info()
    for key in ("date", "cpu", "cores", "numpy", "numba", "blas", "OPENBLAS_CORETYPE"):
        assert key in info


# -- CuPy (skipped without a GPU) ------------------------------------------------------------
@needs_cupy
def test_cupy_step_matches_numpy_reference():
    import cupy

    ref = VAE(rng=0, backend="numpy-ref", dtype=np.float64, **SMALL)
    gpu = VAE(rng=0, backend="cupy", dtype=np.float64, **SMALL)
    assert isinstance(gpu.flat, cupy.ndarray)
    x = data(16)
    eps = ref.noise(16, np.random.default_rng(0))
    l1, _, g1 = ref.loss_and_grads(x, eps)
    l2, _, g2 = gpu.loss_and_grads(cupy.asarray(x).astype(cupy.float64), cupy.asarray(eps))
    assert float(l2) == pytest.approx(float(l1), rel=1e-10)
    for name in g1:
        np.testing.assert_allclose(cupy.asnumpy(g2[name]), g1[name], rtol=1e-8, atol=1e-12)


@needs_cupy
def test_cupy_trains_evaluates_and_checkpoints(tmp_path):
    from vae_numpy.checkpoint import load_checkpoint
    from vae_numpy.evaluate import iw_log_likelihood

    x, x_test = data(512), data(100, seed=1)
    model = VAE(rng=0, backend="cupy", **SMALL)
    ckpt = tmp_path / "c.npz"
    h = fit(model, x, epochs=2, rng=0, x_test=x_test, progress=False, checkpoint=ckpt)
    assert h["test_loss"][1] < h["test_loss"][0]
    ref = VAE(rng=0, backend="numpy-ref", **SMALL)
    fit(ref, x, epochs=2, rng=0, progress=False)
    assert negative_elbo(model, x_test)["loss"] == pytest.approx(
        negative_elbo(ref, x_test)["loss"], rel=1e-3)
    assert math.isfinite(iw_log_likelihood(model, x_test, k=5))
    loaded = load_checkpoint(ckpt, backend="cupy")
    assert loaded.model.backend.name == "cupy"
    # resuming restores Adam's moments onto the GPU
    fit(model, x, epochs=3, rng=0, progress=False, resume=ckpt)


@needs_numba
def test_benchmark_variants_are_what_they_say(monkeypatch):
    """numba-compact gathers columns, numba-threads runs Adam on 2 threads; same training."""
    monkeypatch.delenv("VAE_NUMPY_THREADS", raising=False)
    x = data(700)
    config = ModelConfig(**SMALL)
    seen = []
    adam = K.adam_update

    def spy(*args, **kwargs):
        seen.append(K.kernel_threads())
        return adam(*args, **kwargs)

    monkeypatch.setattr(K, "adam_update", spy)
    flats = {}
    for name in ("numba", *bench.VARIANTS):
        variant = bench.VARIANTS.get(name)
        path = bench._NumpyPath("numpy", config, x, 128, seed=3, variant=variant)
        seen.clear()
        path.epoch(dict.fromkeys(bench.PHASES, 0.0))
        assert seen and set(seen) == {2 if name == "numba-threads" else 1}, name
        want = "compact" if name == "numba-compact" else "range"
        assert path.fused.first_layer == want and path.model.__dict__["_fused_step"] is path.fused
        flats[name] = path.model.flat.copy()
    assert "VAE_NUMPY_THREADS" not in os.environ          # put back after the epoch
    for name in bench.VARIANTS:                            # the same training, to rounding
        np.testing.assert_allclose(flats[name], flats["numba"], atol=1e-4)


def test_benchmark_refuses_an_unknown_path():
    with pytest.raises(ValueError, match="unknown benchmark path.*numba-compact"):
        bench.run_benchmark(paths=("numba", "fast"), x=data(10), log=lambda line: None)
