"""The benchmark's JAX and PyTorch rows: the same model, skipped cleanly, the flush contained.

Correctness only, as in test_backends: nothing here is timed. JAX and PyTorch are optional
benchmark dependencies; the tests that need them skip without them, and one test blocks
their imports to see the rows skipped with a note.
"""

import importlib.util
import sys

import numpy as np
import pytest
from test_backends import SMALL, data, needs_numba  # the same small model and MNIST-like pixels

from vae_numpy import bench
from vae_numpy.cli import build_parser
from vae_numpy.model import VAE, ModelConfig

HAVE_JAX = importlib.util.find_spec("jax") is not None
HAVE_TORCH = importlib.util.find_spec("torch") is not None
needs_jax = pytest.mark.skipif(not HAVE_JAX, reason="JAX is not installed (pip install jax)")
needs_torch = pytest.mark.skipif(not HAVE_TORCH,
                                 reason="PyTorch is not installed (pip install torch)")


# -- JAX: the same model --------------------------------------------------------------------
@needs_jax
@pytest.mark.parametrize("beta", [1.0, 0.5])
def test_jax_loss_and_gradients_are_the_numpy_models(beta):
    """On the same parameters, batch and noise: the loss and every gradient, to float32."""
    import jax

    model = VAE(rng=0, backend="numpy-ref", beta=beta, **SMALL)
    x = data(64)
    eps = model.noise(64, np.random.default_rng(1))
    loss, _, cache = model.forward(x, eps)
    grads = model.backward(cache)
    params = bench.jax_params(model)
    for name, a in bench.numpy_params(params, model.config.latent_dim).items():
        np.testing.assert_array_equal(a, model.params[name])     # the pytree holds the model
    jloss, jgrads = jax.value_and_grad(bench.jax_loss)(params, x, eps, beta)
    assert float(jloss) == pytest.approx(float(loss), rel=2e-6)
    jgrads = bench.numpy_params(jgrads, model.config.latent_dim)
    assert set(jgrads) == set(grads)
    for name, g in grads.items():
        np.testing.assert_allclose(jgrads[name], g, rtol=2e-3, atol=2e-6 * np.abs(g).max(),
                                   err_msg=name)


@needs_jax
@needs_numba
def test_the_jax_path_trains_as_the_numpy_paths_do():
    """Same initial weights, batches, noise and Adam: one epoch lands where numba's does."""
    config = ModelConfig(**SMALL)
    x = data(700)
    jax_path = bench._JaxPath(config, x, 128, seed=3)
    np_path = bench._NumpyPath("numpy", config, x, 128, seed=3)
    start = jax_path.trained_model().flat.copy()
    np.testing.assert_array_equal(start, np_path.model.flat)     # the same initial weights
    jax_path.epoch(dict.fromkeys(bench.PHASES, 0.0))
    np_path.epoch(dict.fromkeys(bench.PHASES, 0.0))
    assert jax_path.t == 6                                         # 700 / 128: six steps
    trained = jax_path.trained_model().flat
    assert np.abs(trained - start).max() > 1e-3                    # it did train
    np.testing.assert_allclose(trained, np_path.model.flat, atol=1e-4)


# -- a tiny run with every new row -----------------------------------------------------------
@needs_jax
@needs_torch
@needs_numba
def test_a_tiny_run_has_the_jax_and_pytorch_rows(tmp_path):
    x, x_test = data(256), data(100, seed=1)
    paths = ("numba", "reference", "jax", *bench.TORCH_ROWS)
    result = bench.run_benchmark(epochs=2, x=x, x_test=x_test, extras=False, pause=0.0,
                                 paths=paths, log=lambda line: None)
    for name in paths:
        p = result["paths"][name]
        assert len(p["epochs_s"]) == 2 and p["median_s"] > 0, name
        sub = p["adam_subnormals"]                 # Adam's moments, after every epoch
        assert len(sub["m"]) == len(sub["v"]) == 2 and sub["size"] == 652824, name
    for name, row in bench.TORCH_ROWS.items():
        assert result["paths"][name]["fused"] == row["fused"]
    # the flush stays in its own row: all of that row's threads flush, no other row's
    # (measured in each row's process after its last epoch), and not this process after
    shares = {name: result["paths"][name]["flushed_share"] for name in bench.TORCH_ROWS}
    assert shares == {"torch": 0.0, "torch-fused": 0.0, "torch-fused-flush": 1.0}
    assert result["flush_after_run"] is False and not bench.denormals_flushed()
    assert set(result["ratios"]) >= {"numba/torch", "numba/torch-fused-flush", "numba/jax"}
    assert [g["ratio"] for g in result["goals"]] == list(bench.GOALS)
    # the same training: JAX lands where numba does, PyTorch (its own noise) near it
    te = result["test_elbo"]
    assert te["jax"] == pytest.approx(te["numba"], rel=1e-4)
    for name in bench.TORCH_ROWS:
        assert te[name] == pytest.approx(te["numba"], rel=0.05), name
    md, _ = bench.write_outputs(result, tmp_path)
    text = md.read_text()
    for label in ("JAX, jit of the whole step", "PyTorch CPU, default",
                  "PyTorch CPU, fused Adam |", "PyTorch CPU, fused Adam + flush denormals",
                  "numba / PyTorch default", "numba / JAX jit", "Subnormal numbers"):
        assert label in text, label


@needs_torch
def test_denormals_flushed_reads_this_threads_setting():
    import torch

    assert not bench.denormals_flushed()
    try:
        assert torch.set_flush_denormal(True)
        assert bench.denormals_flushed()
    finally:
        torch.set_flush_denormal(False)
    assert not bench.denormals_flushed()


def test_subnormal_count():
    tiny = np.finfo(np.float32).tiny
    a = np.array([0.0, tiny, tiny / 2, -tiny / 8, 1e-45, 1.0, -3.0], np.float32)
    assert bench.subnormal_count(a) == 3


@needs_torch
@needs_numba
def test_pytorch_moments_turn_subnormal_unless_flushed(tmp_path):
    """A weight whose gradient is 0 for ~800 steps after one kick: its Adam moment m goes
    subnormal, and stays (0.9 * m rounds back to m there), unless the row flushes.
    The numba path's Adam flushes moments below 1e-30 itself."""
    config = ModelConfig(**SMALL)
    x = data(1000)
    x[:, :100] = 0
    x[np.arange(100) * 10, np.arange(100)] = 1.0   # pixels 0-99: each inked in one image
    np.save(tmp_path / "x.npy", x)
    counts = {}
    for name in ("torch", "torch-fused-flush"):
        worker = bench._TorchWorker(name, config, tmp_path, 1, 0, 1, **bench.TORCH_ROWS[name])
        try:
            for _ in range(2):
                worker.epoch(dict.fromkeys(bench.PHASES, 0.0))
            counts[name] = worker.adam_subnormals()["m"]
        finally:
            worker.close()
    path = bench._NumpyPath("numpy", config, x, 1, seed=0)
    for _ in range(2):
        path.epoch(dict.fromkeys(bench.PHASES, 0.0))
    counts["numba"] = path.adam_subnormals()["m"]
    assert counts["torch"] > 0 and counts["torch-fused-flush"] == 0 and counts["numba"] == 0


# -- without JAX and PyTorch -----------------------------------------------------------------
@needs_numba
def test_rows_are_skipped_with_a_note_without_jax_and_torch(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "jax", None)      # import jax now raises ImportError
    monkeypatch.setitem(sys.modules, "torch", None)
    lines = []
    result = bench.run_benchmark(epochs=1, x=data(200), extras=False, pause=0.0,
                                 paths=("numba", "jax", *bench.TORCH_ROWS), log=lines.append)
    jax_note = "JAX is not installed (pip install jax): its row is skipped"
    torch_note = "PyTorch is not installed (pip install torch): its rows are skipped"
    assert result["paths"]["jax"] == {"skipped": jax_note}
    for name in bench.TORCH_ROWS:
        assert result["paths"][name] == {"skipped": torch_note}
    assert jax_note in lines[0] and torch_note in lines[0]
    assert result["ratios"] == {} and result["goals"] == []
    assert result["machine"]["jax"] is None and result["machine"]["torch"] is None
    text = bench.to_markdown(result)
    assert jax_note in text and torch_note in text and "NumPy + numba (default)" in text


def test_bench_cli_takes_the_new_switches():
    args = build_parser().parse_args(["bench", "--no-jax", "--paths", "jax,torch-fused-flush"])
    assert args.no_jax and args.paths == "jax,torch-fused-flush"
    assert {"jax", "torch-fused-flush"} <= set(bench.PATHS)


@needs_numba
def test_the_report_gives_each_ratio_once(tmp_path):
    result = bench.run_benchmark(epochs=1, x=data(200), extras=False, pause=0.0,
                                 paths=("numba", "reference"), log=lambda line: None)
    value = result["ratios"]["numba/reference"]
    assert "| numba/reference |" in bench.to_markdown(result)
    # a ratio with a goal is shown in the goals table, and not again below it
    result["goals"] = [{"ratio": "numba/reference", "what": "numba / reference",
                        "value": value, "goal": 0.5, "met": value <= 0.5}]
    text = bench.to_markdown(result)
    assert text.count(f"{value:.2f} |") == 1 and "| numba / reference |" in text
    assert "| numba/reference |" not in text
