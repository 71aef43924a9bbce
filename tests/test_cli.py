"""The command line: a real run on small data, and a one-line error for each bad input."""

import gzip
import hashlib
import json

import numpy as np
import pytest

from vae_numpy import data
from vae_numpy.checkpoint import load_checkpoint, save_checkpoint
from vae_numpy.cli import main
from vae_numpy.model import VAE, ModelConfig


@pytest.fixture
def npy(tmp_path):
    x = np.random.default_rng(0).random((300, 64), dtype=np.float32)
    path = tmp_path / "x.npy"
    np.save(path, x)
    return path


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_train_evaluate_sample(npy, tmp_path, capsys):
    out_dir = tmp_path / "run"
    code, out, err = run(capsys, "train", "--dataset", npy, "--hidden", 32, "--latent-dim", 2,
                         "--epochs", 2, "--batch-size", 32, "--out", out_dir, "--no-progress")
    assert code == 0, err
    assert out.count("test negative ELBO") == 2
    for name in ("checkpoint.npz", "loss.png", "reconstructions.png", "samples.png",
                 "history.json"):
        assert (out_dir / name).stat().st_size > 100
    code, out, err = run(capsys, "evaluate", out_dir / "checkpoint.npz", "--data", npy,
                         "--iw-samples", 10, "--no-progress")
    assert code == 0, err
    assert "test negative ELBO" in out and "k=10" in out
    assert "test targets: all 300 rows of" in out and "over 300 examples" in out
    # grey targets: the bound is labelled as a bound on binarized digits, not as an NLL
    assert "importance-weighted bound, k=10:" in out and "upper bound" in out
    assert "test NLL estimate" not in out and "standard error" in out
    code, out, err = run(capsys, "sample", out_dir / "checkpoint.npz", "-n", 9, "--out",
                         tmp_path / "s.png")
    assert code == 0, err
    assert (tmp_path / "s.png").read_bytes()[:4] == b"\x89PNG"
    # resuming to a later epoch continues the history
    code, out, err = run(capsys, "train", "--dataset", npy, "--hidden", 32, "--latent-dim", 2,
                         "--epochs", 3, "--batch-size", 32, "--out", out_dir, "--no-progress",
                         "--resume", out_dir / "checkpoint.npz")
    assert code == 0, err
    assert "epoch   3" in out and "epoch   1" not in out


def _one_line_error(code, err, pattern):
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ")
    assert pattern in lines[0], lines[0]


def test_nan_data(tmp_path, capsys):
    x = np.full((50, 16), 0.5, np.float32)
    x[3, 4] = np.nan
    np.save(tmp_path / "nan.npy", x)
    code, _, err = run(capsys, "train", "--dataset", tmp_path / "nan.npy", "--out", tmp_path / "o")
    _one_line_error(code, err, "NaN")


def test_data_outside_unit_interval(tmp_path, capsys):
    np.save(tmp_path / "big.npy", np.full((50, 16), 255.0, np.float32))
    code, _, err = run(capsys, "train", "--dataset", tmp_path / "big.npy", "--out", tmp_path / "o")
    _one_line_error(code, err, "Scale pixels by 1/255")


@pytest.mark.parametrize("args,pattern", [
    (["--latent-dim", 0], "latent_dim must be a positive integer"),
    (["--lr", -0.1], "learning rate must be a finite number > 0"),
    (["--epochs", -1], "--epochs must be >= 1; got -1"),
    (["--epochs", 0], "--epochs must be >= 1; got 0"),
    (["--limit", -5], "--limit must be >= 0"),
    (["--binarize", "fixed"], "binarize='fixed' was renamed: thresholding at 0.5 is now"),
    (["--binarize", "grey"], "binarize must be one of none, dynamic, static, threshold"),
    (["--binarize-seed", 3], "--binarize-seed seeds the static draw"),
    (["--binarize", "static", "--binarize-seed", -1], "--binarize-seed must be >= 0"),
    (["--objective", "iwae", "--model", "ae"], "--objective iwae needs a VAE"),
    (["--objective", "iwae", "--iw-k", 0], "--iw-k must be >= 1"),
    (["--objective", "iwae", "--beta", 0.5], "the IWAE objective has no KL weight"),
    (["--iw-k", 5], "--iw-k is the k of --objective iwae"),
    (["--gaussian-std", 0.1], "--gaussian-std is only used with --likelihood gaussian"),
    (["--gaussian-std-floor", 0.1], "--gaussian-std-floor is only used with --likelihood"),
    (["--likelihood", "gaussian", "--gaussian-std", 0], "--gaussian-std must be a finite"),
    (["--likelihood", "gaussian", "--gaussian-std", "inf"], "--gaussian-std must be a finite"),
    (["--likelihood", "gaussian", "--gaussian-std-floor", -1], "--gaussian-std-floor must be"),
    (["--likelihood", "gaussian", "--gaussian-std", 0.1, "--gaussian-std-floor", 0.01],
     "with a fixed --gaussian-std there is none to bound"),
    # beta, KL warm-up, free bits
    (["--beta", -1], "--beta must be a finite number >= 0; got -1.0"),
    (["--beta", "nan"], "--beta must be a finite number >= 0; got nan"),
    (["--free-bits", -0.5], "--free-bits must be a finite number >= 0; got -0.5"),
    (["--free-bits", "inf"], "--free-bits must be a finite number >= 0; got inf"),
    (["--kl-warmup", -1], "--kl-warmup must be >= 0; got -1"),
    (["--kl-warmup", 11], "--kl-warmup 11 is longer than the run (--epochs 10): beta would end "
                          "at 0.909, short of 1; give --kl-warmup 10 or less"),
    (["--kl-warmup", 4, "--epochs", 3, "--beta", 2], "beta would end at 1.5, short of 2"),
    (["--kl-warmup", 3, "--beta", 0], "with --beta 0 there is nothing to ramp"),
    (["--kl-warmup", 3, "--model", "ae"], "--kl-warmup needs a VAE (--model vae): an "
                                          "autoencoder has no KL term to anneal"),
    (["--free-bits", 0.5, "--model", "ae"], "--free-bits needs a VAE (--model vae): an "
                                            "autoencoder has no KL term to floor"),
    (["--free-bits", 0.5, "--objective", "iwae"], "--free-bits acts on the ELBO's KL term; the "
                                                  "IWAE objective has none"),
    (["--kl-warmup", 2, "--objective", "iwae"], "--kl-warmup acts on the ELBO's KL term"),
    # the continuous Bernoulli
    (["--likelihood", "continuous-bernoulli", "--gaussian-std", 0.1],
     "--gaussian-std is only used with --likelihood gaussian; got --likelihood "
     "continuous-bernoulli"),
    (["--likelihood", "continuous-bernoulli", "--gaussian-std-floor", 0.1],
     "--gaussian-std-floor is only used with --likelihood gaussian"),
    (["--likelihood", "continuous-bernoulli", "--binarize", "dynamic"],
     "--likelihood continuous-bernoulli is a density of grey levels in [0, 1]; binary targets "
     "(--binarize dynamic) are what --likelihood bernoulli models"),
    (["--likelihood", "continuous-bernoulli", "--binarize", "threshold"],
     "binary targets (--binarize threshold)"),
])
def test_bad_settings(args, pattern, npy, tmp_path, capsys):
    code, _, err = run(capsys, "train", "--dataset", npy, "--out", tmp_path / "o", *args)
    _one_line_error(code, err, pattern)
    assert not (tmp_path / "o").exists()  # nothing written


def test_wrong_input_width(npy, tmp_path, capsys):
    save_checkpoint(tmp_path / "c.npz", VAE(ModelConfig(input_dim=100, hidden_dims=(8,),
                                                        latent_dim=2), rng=0))
    code, _, err = run(capsys, "evaluate", tmp_path / "c.npz", "--data", npy)
    _one_line_error(code, err, "reads 100 inputs")


def test_checkpoint_of_another_architecture(npy, tmp_path, capsys):
    save_checkpoint(tmp_path / "c.npz", VAE(ModelConfig(input_dim=64, hidden_dims=(8,),
                                                        latent_dim=2), rng=0))
    code, _, err = run(capsys, "train", "--dataset", npy, "--hidden", 16, "--latent-dim", 2,
                       "--epochs", 2, "--out", tmp_path / "o", "--resume", tmp_path / "c.npz")
    _one_line_error(code, err, "another architecture")


def test_corrupt_checkpoint(tmp_path, capsys):
    (tmp_path / "c.npz").write_bytes(b"PK\x03\x04 truncated")
    code, _, err = run(capsys, "sample", tmp_path / "c.npz", "--out", tmp_path / "s.png")
    _one_line_error(code, err, "not a readable checkpoint")
    assert not (tmp_path / "s.png").exists()


@pytest.fixture
def data_folder(tmp_path, monkeypatch):
    """An empty VAE_NUMPY_DATA folder and an empty cache, with downloads turned off."""
    folder = tmp_path / "data" / "mnist"
    folder.mkdir(parents=True)
    monkeypatch.setenv("VAE_NUMPY_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("VAE_NUMPY_OFFLINE", "1")
    monkeypatch.setattr(data, "_user_cache_dir", lambda: tmp_path / "cache")
    return folder


def test_no_data_and_no_network(data_folder, tmp_path, capsys):
    code, _, err = run(capsys, "train", "--out", tmp_path / "o")
    _one_line_error(code, err, "VAE_NUMPY_DATA")


def test_checksum_mismatch(data_folder, tmp_path, capsys):
    with gzip.open(data_folder / "train-images-idx3-ubyte.gz", "wb") as f:
        f.write(b"\x00\x00\x08\x03" + b"\x00" * 12)
    code, _, err = run(capsys, "train", "--out", tmp_path / "o")
    _one_line_error(code, err, "fails its SHA-256 check")


def test_corrupt_gz_with_matching_checksum(data_folder, tmp_path, monkeypatch, capsys):
    bad = data_folder / "train-images-idx3-ubyte.gz"
    bad.write_bytes(b"\x1f\x8b\x08\x00 this is not deflate data")
    monkeypatch.setitem(data.MNIST_SHA256, "train-images-idx3-ubyte.gz", data._sha256_of(bad))
    code, _, err = run(capsys, "train", "--out", tmp_path / "o")
    _one_line_error(code, err, str(bad))


def test_help_lists_commands(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for command in ("train", "evaluate", "sample"):
        assert command in out


# -- data protocols ---------------------------------------------------------------------
IDX_NAMES = {"train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
             "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")}


@pytest.fixture
def fake_mnist(tmp_path, monkeypatch):
    """A tiny MNIST (64 training and 20 test images of random pixels) in VAE_NUMPY_DATA."""
    rng = np.random.default_rng(0)
    root = tmp_path / "mnist-root"
    table = {}
    for split, n in (("train", 64), ("test", 20)):
        images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, size=n, dtype=np.uint8)
        for arr, name in zip((images, labels), IDX_NAMES[split], strict=True):
            header = bytes([0, 0, 8, arr.ndim]) + b"".join(
                int(d).to_bytes(4, "big") for d in arr.shape)
            path = root / "mnist" / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(gzip.compress(header + arr.tobytes(), mtime=0))
            table[name] = hashlib.sha256(path.read_bytes()).hexdigest()
    monkeypatch.setenv("VAE_NUMPY_DATA", str(root))
    monkeypatch.setenv("VAE_NUMPY_OFFLINE", "1")
    monkeypatch.setattr(data, "MNIST_SHA256", table)
    monkeypatch.setattr(data, "_IDX_CACHE", {})
    monkeypatch.setattr(data, "_user_cache_dir", lambda: tmp_path / "cache")
    return root


@pytest.fixture
def seen(monkeypatch):
    """What the CLI hands to fit (training targets) and negative_elbo (evaluation targets)."""
    from vae_numpy import evaluate, train

    got = {}
    real_fit, real_elbo = train.fit, evaluate.negative_elbo

    def fit(model, x, **kwargs):
        got["train"], got["fit_binarize"] = np.array(x), kwargs.get("binarize")
        got["objective"] = kwargs.get("objective")
        return real_fit(model, x, **kwargs)

    def negative_elbo(model, x, **kwargs):
        got["test"] = np.array(x)
        return real_elbo(model, x, **kwargs)

    monkeypatch.setattr(train, "fit", fit)
    monkeypatch.setattr(evaluate, "negative_elbo", negative_elbo)
    return got


SMALL = ("--hidden", 16, "--latent-dim", 2, "--epochs", 1, "--batch-size", 32, "--no-progress")


@pytest.mark.parametrize("argv,protocol,seed,words", [
    ([], "none", None, "MNIST test split, grey levels (no binarization)"),
    (["--binarize", "dynamic"], "dynamic", None,
     f"MNIST test split, dynamic binarization (one draw, seed {data.DYNAMIC_TEST_SEED})"),
    (["--binarize", "static"], "static", data.STATIC_SEED,
     f"MNIST test split, static binarization (one draw, seed {data.STATIC_SEED})"),
    (["--binarize", "static", "--binarize-seed", 7], "static", 7,
     "MNIST test split, static binarization (one draw, seed 7)"),
    (["--binarize", "threshold"], "threshold", None, "MNIST test split, thresholded at 0.5"),
])
def test_each_protocol_trains_and_evaluates_on_its_own_targets(argv, protocol, seed, words,
                                                               fake_mnist, seen, tmp_path,
                                                               capsys):
    code, out, err = run(capsys, "train", *SMALL, "--out", tmp_path / "o", *argv)
    assert code == 0, err
    stored = load_checkpoint(tmp_path / "o" / "checkpoint.npz").data
    assert stored["dataset"] == "mnist" and stored["binarize"] == protocol
    if seed is not None:
        assert stored["seed"] == seed
    train_x = data.load_mnist("train", binarize=protocol, seed=seed).x
    np.testing.assert_array_equal(seen["train"], train_x)  # dynamic: grey, drawn in fit
    assert seen["fit_binarize"] == ("dynamic" if protocol == "dynamic" else None)

    code, out, err = run(capsys, "evaluate", tmp_path / "o" / "checkpoint.npz",
                         "--iw-samples", 5, "--no-progress")
    assert code == 0, err
    assert f"test targets: {words}\n" in out
    np.testing.assert_array_equal(seen["test"],
                                  data.load_mnist("test", binarize=protocol, seed=seed).x)
    if protocol == "none":
        assert "importance-weighted bound, k=5:" in out and "upper bound" in out
    else:
        assert "test NLL estimate (importance-weighted bound, k=5):" in out
    assert "active units:" in out and "standard error" in out


def test_a_checkpoint_without_data_info_is_evaluated_on_grey_mnist(fake_mnist, seen, tmp_path,
                                                                   capsys):
    save_checkpoint(tmp_path / "c.npz", VAE(ModelConfig(hidden_dims=(8,), latent_dim=2), rng=0))
    code, out, err = run(capsys, "evaluate", tmp_path / "c.npz", "--iw-samples", 3,
                         "--no-progress")
    assert code == 0, err
    assert "test targets: MNIST test split, grey levels (no binarization)" in out
    np.testing.assert_array_equal(seen["test"], data.load_mnist("test").x)
    # --binarize chooses other targets
    code, out, err = run(capsys, "evaluate", tmp_path / "c.npz", "--iw-samples", 3,
                         "--no-progress", "--binarize", "threshold")
    assert code == 0, err
    assert "thresholded at 0.5" in out and "test NLL estimate" in out


def test_dynamic_binarization_of_a_npy_dataset(npy, seen, tmp_path, capsys):
    code, out, err = run(capsys, "train", "--dataset", npy, *SMALL, "--out", tmp_path / "o",
                         "--binarize", "dynamic")
    assert code == 0, err
    x = np.load(npy)
    np.testing.assert_array_equal(seen["train"], x[30:])             # grey, drawn per batch
    assert seen["fit_binarize"] == "dynamic"
    stored = load_checkpoint(tmp_path / "o" / "checkpoint.npz").data
    assert stored["binarize"] == "dynamic" and stored["test_seed"] == data.DYNAMIC_TEST_SEED
    # a .npy-trained checkpoint is evaluated on the rows the user names
    code, _, err = run(capsys, "evaluate", tmp_path / "o" / "checkpoint.npz")
    _one_line_error(code, err, "pass the rows to evaluate with --data FILE.npy")


def test_binarizing_values_outside_the_unit_interval_fails(tmp_path, capsys):
    x = np.random.default_rng(0).random((50, 16), dtype=np.float32) * 3
    np.save(tmp_path / "big.npy", x)
    code, _, err = run(capsys, "train", "--dataset", tmp_path / "big.npy", "--likelihood",
                       "gaussian", "--binarize", "threshold", "--out", tmp_path / "o")
    _one_line_error(code, err, "must hold values in [0, 1] for --binarize threshold")
    assert not (tmp_path / "o").exists()


# -- evaluate --data ---------------------------------------------------------------------
@pytest.fixture
def ckpt64(tmp_path):
    path = tmp_path / "c.npz"
    save_checkpoint(path, VAE(ModelConfig(input_dim=64, hidden_dims=(8,), latent_dim=2), rng=0))
    return path


def test_evaluate_data_uses_every_row_as_given(ckpt64, seen, tmp_path, capsys):
    x = (np.random.default_rng(1).random((37, 64)) < 0.3).astype(np.float32)
    np.save(tmp_path / "b.npy", x)
    code, out, err = run(capsys, "evaluate", ckpt64, "--data", tmp_path / "b.npy",
                         "--iw-samples", 4, "--no-progress")
    assert code == 0, err
    np.testing.assert_array_equal(seen["test"], x)                # all rows, not binarized again
    assert f"test targets: all 37 rows of {tmp_path / 'b.npy'}, as given (binary)" in out
    assert "over 37 examples" in out
    assert "test NLL estimate (importance-weighted bound, k=4):" in out


def _save_bytes(path, content):
    path.write_bytes(content)
    return path


@pytest.mark.parametrize("make,pattern", [
    (lambda d: np.save(d / "a.npy", np.zeros((5, 8, 8), np.float32)) or d / "a.npy",
     "expected an array of shape (N, D) with N >= 1; got shape (5, 8, 8). Flatten"),
    (lambda d: np.save(d / "a.npy", np.zeros(64, np.float32)) or d / "a.npy",
     "expected an array of shape (N, D)"),
    (lambda d: np.save(d / "a.npy", np.zeros((5, 100), np.float32)) or d / "a.npy",
     "reads 64 inputs per example; --data"),
    (lambda d: np.save(d / "a.npy", np.full((5, 64), 255.0, np.float32)) or d / "a.npy",
     "got min 255, max 255. Scale pixels by 1/255"),
    (lambda d: np.save(d / "a.npy", np.full((5, 64), -0.5)) or d / "a.npy", "got min -0.5"),
    (lambda d: np.save(d / "a.npy", np.array([[0.5] * 63 + [np.nan]] * 5)) or d / "a.npy",
     "holds 5 NaN or infinite values (the first at row 0, column 63)"),
    (lambda d: np.save(d / "a.npy", np.array([["a"] * 64] * 5)) or d / "a.npy", "dtype <U1"),
    (lambda d: _save_bytes(d / "a.txt", b"0.5 0.5"), "expected a .npy file"),
    (lambda d: _save_bytes(d / "a.npy", b"\x93NUMPY garbage"), "not a readable .npy array"),
    (lambda d: d / "missing.npy", "no such file"),
    (lambda d: np.savez(d / "a.npy.npz", x=np.zeros(3)) or _save_bytes(
        d / "a.npy", (d / "a.npy.npz").read_bytes()), "is an .npz archive"),
])
def test_evaluate_bad_data_files(make, pattern, ckpt64, seen, tmp_path, capsys):
    path = make(tmp_path)
    code, out, err = run(capsys, "evaluate", ckpt64, "--data", path)
    _one_line_error(code, err, pattern)
    assert "test" not in seen and out == ""                       # nothing computed


@pytest.mark.parametrize("argv,pattern", [
    (["--iw-samples", 0], "--iw-samples must be >= 1; got 0"),
    (["--iw-samples", -3], "--iw-samples must be >= 1; got -3"),
    (["--limit", -1], "--limit must be >= 0"),
    (["--dataset", "x.npy"], "pass --data x.npy (all rows, no split)"),
    (["--dataset", "cifar"], "--dataset must be one of mnist, handwriting; got 'cifar'"),
    (["--binarize", "fixed"], "binarize='fixed' was renamed"),
    (["--data", "x.npy", "--dataset", "mnist"], "not both"),
    (["--data", "x.npy", "--binarize", "static"], "--binarize is not used with --data"),
])
def test_evaluate_checks_every_argument_before_computing(argv, pattern, ckpt64, npy, seen,
                                                         monkeypatch, capsys):
    monkeypatch.chdir(npy.parent)  # x.npy exists, so only the arguments are wrong
    code, out, err = run(capsys, "evaluate", ckpt64, *argv)
    _one_line_error(code, err, pattern)
    assert "test" not in seen and out == ""


def test_evaluate_given_data_instead_of_a_checkpoint(npy, capsys):
    code, _, err = run(capsys, "evaluate", npy)
    _one_line_error(code, err, "is a .npy array of shape (300, 64), not a checkpoint")
    assert f"--data {npy}" in err


def test_evaluate_a_checkpoint_with_nan_parameters(tmp_path, npy, capsys):
    model = VAE(ModelConfig(input_dim=64, hidden_dims=(8,), latent_dim=2), rng=0)
    model.params["enc.W_mu"][0, 0] = np.nan
    save_checkpoint(tmp_path / "c.npz", model)
    code, out, err = run(capsys, "evaluate", tmp_path / "c.npz", "--data", npy)
    _one_line_error(code, err, "param/enc.W_mu (1 of 16) hold NaN or infinite values")
    assert "active units" not in out


@pytest.mark.parametrize("beta,label", [(1.0, "negative ELBO"),
                                        (0.5, "beta-weighted objective (beta = 0.5)")])
def test_the_loss_is_named_for_what_it_is(beta, label, npy, tmp_path, capsys):
    code, out, err = run(capsys, "train", "--dataset", npy, *SMALL, "--epochs", 2, "--beta",
                         beta, "--out", tmp_path / "o")
    assert code == 0, err
    assert out.count(f"test {label} ") == 2
    code, out, err = run(capsys, "evaluate", tmp_path / "o" / "checkpoint.npz", "--data", npy,
                         "--iw-samples", 2, "--no-progress")
    assert code == 0, err
    assert f"test {label}: " in out
    assert ("negative ELBO" in out) == (beta == 1.0)


# -- train: output folder, epochs, resuming ------------------------------------------------
def test_out_is_an_existing_file(npy, tmp_path, capsys):
    target = tmp_path / "notes.txt"
    target.write_text("keep me")
    code, _, err = run(capsys, "train", "--dataset", npy, "--out", target)
    _one_line_error(code, err, f"--out {target} is a file")
    code, _, err = run(capsys, "train", "--dataset", npy, "--out", target / "run")
    _one_line_error(code, err, f"{target} is a file, so no folder can be made there")
    assert target.read_text() == "keep me"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt", "x.npy"]


def test_resume_with_nothing_left_to_train(npy, tmp_path, capsys):
    out_dir = tmp_path / "o"
    code, _, err = run(capsys, "train", "--dataset", npy, *SMALL, "--epochs", 2, "--out", out_dir)
    assert code == 0, err
    ckpt = out_dir / "checkpoint.npz"
    before = {p.name: p.read_bytes() for p in out_dir.iterdir()}
    for epochs in (2, 1):
        code, _, err = run(capsys, "train", "--dataset", npy, *SMALL, "--epochs", epochs,
                           "--out", out_dir, "--resume", ckpt)
        _one_line_error(code, err, f"has trained 2 epochs already, so --epochs {epochs} leaves "
                                   "nothing to train")
    # and a resume must keep the data protocol and objective it was trained with
    for argv, pattern in ((["--binarize", "threshold"], "give --binarize none to continue it"),
                          (["--objective", "iwae"], "trained with --objective elbo")):
        code, _, err = run(capsys, "train", "--dataset", npy, *SMALL, "--epochs", 3,
                           "--out", out_dir, "--resume", ckpt, *argv)
        _one_line_error(code, err, pattern)
    assert {p.name: p.read_bytes() for p in out_dir.iterdir()} == before


# -- train: model options ----------------------------------------------------------------
def test_gaussian_activation_and_iwae_options_reach_the_checkpoint(npy, seen, tmp_path, capsys):
    code, out, err = run(capsys, "train", "--dataset", npy, *SMALL, "--likelihood", "gaussian",
                         "--gaussian-std-floor", 0.02, "--activation", "tanh", "--objective",
                         "iwae", "--iw-k", 3, "--out", tmp_path / "o")
    assert code == 0, err
    assert "negative IWAE bound (k = 3)" in out
    ckpt = load_checkpoint(tmp_path / "o" / "checkpoint.npz")
    cfg = ckpt.model.config
    assert (cfg.likelihood, cfg.gaussian_std, cfg.gaussian_std_floor, cfg.activation) == (
        "gaussian", None, 0.02, "tanh")
    assert ckpt.objective == {"name": "iwae", "k": 3}
    assert seen["objective"].name == "iwae" and seen["objective"].k == 3
    code, out, err = run(capsys, "train", "--dataset", npy, *SMALL, "--likelihood", "gaussian",
                         "--gaussian-std", 0.3, "--out", tmp_path / "p")
    assert code == 0, err
    cfg = load_checkpoint(tmp_path / "p" / "checkpoint.npz").model.config
    assert cfg.gaussian_std == 0.3 and "dec.log_var_x" not in VAE(cfg).params


def test_continuous_bernoulli_warm_up_and_free_bits_reach_the_checkpoint(npy, seen, tmp_path,
                                                                         capsys):
    out_dir = tmp_path / "o"
    code, out, err = run(capsys, "train", "--dataset", npy, *SMALL, "--epochs", 2,
                         "--likelihood", "continuous-bernoulli", "--kl-warmup", 2,
                         "--free-bits", 0.1, "--out", out_dir)
    assert code == 0, err
    assert ("objective: free-bits objective (lambda = 0.1 nats per latent unit), with a KL "
            "warm-up over 2 epochs (beta from 0.5 to 1)") in out
    assert "kl " in out and ", beta 0.5)" in out and ", beta 1)" in out
    assert out.count("test negative ELBO ") == 2          # scored by the ELBO, beta = 1
    ckpt = load_checkpoint(out_dir / "checkpoint.npz")
    assert ckpt.model.config.likelihood == "continuous_bernoulli"
    assert ckpt.objective == {"name": "free_bits", "k": 1, "kl_warmup": 2, "free_bits": 0.1}
    assert seen["objective"].settings() == ckpt.objective
    assert json.loads((out_dir / "history.json").read_text())["beta"] == [0.5, 1.0]
    code, out, err = run(capsys, "evaluate", out_dir / "checkpoint.npz", "--data", npy,
                         "--iw-samples", 2, "--no-progress")
    assert code == 0, err
    assert "test negative ELBO: " in out and "a density of continuous pixel values" in out
    # a checkpoint resumes only with the same settings, and nothing is written otherwise
    before = {p.name: p.read_bytes() for p in out_dir.iterdir()}
    for argv, pattern in (
            ([], "was trained with --free-bits 0.1 --kl-warmup 2; this run asks for --objective "
                 "elbo: give the same to continue it"),
            (["--free-bits", 0.1], "this run asks for --free-bits 0.1: give the same"),
            (["--free-bits", 0.2, "--kl-warmup", 2], "this run asks for --free-bits 0.2 "
                                                     "--kl-warmup 2")):
        code, _, err = run(capsys, "train", "--dataset", npy, *SMALL, "--epochs", 3,
                           "--likelihood", "continuous-bernoulli", "--out", out_dir,
                           "--resume", out_dir / "checkpoint.npz", *argv)
        _one_line_error(code, err, pattern)
    assert {p.name: p.read_bytes() for p in out_dir.iterdir()} == before
    code, out, err = run(capsys, "train", "--dataset", npy, *SMALL, "--epochs", 3,
                         "--likelihood", "continuous-bernoulli", "--kl-warmup", 2,
                         "--free-bits", 0.1, "--out", out_dir,
                         "--resume", out_dir / "checkpoint.npz")
    assert code == 0, err
    assert "epoch   3" in out and ", beta 1)" in out
    assert json.loads((out_dir / "history.json").read_text())["beta"] == [0.5, 1.0, 1.0]


def test_a_run_that_diverges_at_once_leaves_nothing_behind(npy, tmp_path, capsys):
    code, _, err = run(capsys, "train", "--dataset", npy, *SMALL, "--optimizer", "sgd", "--lr",
                       1e6, "--out", tmp_path / "o")
    _one_line_error(code, err, "no checkpoint was written: it diverged in epoch 1")
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("paths,pattern", [
    ("numba,fast", "--paths: unknown path(s) fast; choose from numba, reference"),
    (",", "--paths: unknown path(s) (none given)"),
])
def test_bench_refuses_unknown_paths_before_timing(paths, pattern, tmp_path, capsys):
    code, out, err = run(capsys, "bench", "--paths", paths, "--out", tmp_path / "b")
    _one_line_error(code, err, pattern)
    assert out == "" and not (tmp_path / "b").exists()


def test_train_refuses_to_overwrite_a_run_unless_told(npy, tmp_path, capsys):
    out_dir = tmp_path / "run"
    small = ["train", "--dataset", npy, "--hidden", 8, "--latent-dim", 2, "--epochs", 1,
             "--batch-size", 100, "--out", out_dir, "--no-progress"]
    assert run(capsys, *small)[0] == 0
    ckpt = out_dir / "checkpoint.npz"
    before = {p.name: p.read_bytes() for p in out_dir.iterdir()}
    code, out, err = run(capsys, *small)
    _one_line_error(code, err, f"--out {out_dir} already holds a run ({ckpt}); pass "
                               f"--resume {ckpt} to continue it, --overwrite to replace it")
    assert {p.name: p.read_bytes() for p in out_dir.iterdir()} == before   # nothing lost
    other = tmp_path / "other.npz"
    other.write_bytes(ckpt.read_bytes())
    code, _, err = run(capsys, *small[:-1], "--epochs", 2, "--resume", other, "--no-progress")
    _one_line_error(code, err, "already holds a run")              # resuming another run
    assert run(capsys, *small, "--overwrite")[0] == 0


def test_the_loss_figure_names_what_training_minimised(npy, tmp_path, capsys, monkeypatch):
    from vae_numpy import plots

    seen = {}
    real = plots.plot_history

    def spy(history, **kwargs):
        seen.update(kwargs)
        return real(history, **kwargs)

    monkeypatch.setattr(plots, "plot_history", spy)
    common = ["train", "--dataset", npy, "--hidden", 8, "--latent-dim", 2, "--epochs", 2,
              "--batch-size", 100, "--no-progress"]
    assert run(capsys, *common, "--out", tmp_path / "a")[0] == 0
    assert seen["objective"] is None                      # plain ELBO: "loss (-ELBO)"
    assert run(capsys, *common, "--kl-warmup", 2, "--out", tmp_path / "b")[0] == 0
    assert "warm-up" in seen["objective"]


def test_conditional_train_evaluate_and_sample_a_chosen_digit(tmp_path, capsys):
    out_dir = tmp_path / "cvae"
    code, out, err = run(capsys, "train", "--conditional", "--hidden", 16, "--latent-dim", 2,
                         "--epochs", 1, "--limit", 300, "--out", out_dir, "--no-progress")
    assert code == 0, err
    assert out.startswith("training a conditional VAE 784-16-2 on mnist (300 train")
    ckpt = out_dir / "checkpoint.npz"
    assert load_checkpoint(ckpt).model.config.num_classes == 10
    code, out, err = run(capsys, "evaluate", ckpt, "--limit", 50, "--iw-samples", 3,
                         "--no-progress")
    assert code == 0, err
    assert "-log p(x|y)" in out and "over 50 examples" in out
    code, out, err = run(capsys, "sample", ckpt, "-n", 4, "--digit", 7, "--out",
                         tmp_path / "seven.png")
    assert code == 0, err
    assert "wrote" in out
    assert (tmp_path / "seven.png").read_bytes()[:4] == b"\x89PNG"
    for argv, pattern in (
            (("sample", ckpt, "--digit", 10, "--out", tmp_path / "x.png"), "0..9; got 10"),
            (("evaluate", ckpt, "--dataset", "handwriting"), "conditional model: it reads"),
            (("train", "--conditional", "--dataset", "handwriting", "--out", tmp_path / "h"),
             "--dataset handwriting has none")):
        code, _, err = run(capsys, *argv)
        _one_line_error(code, err, pattern)
    assert not (tmp_path / "h").exists() and not (tmp_path / "x.png").exists()


def test_digit_needs_a_conditional_model(npy, tmp_path, capsys):
    ckpt = save_checkpoint(tmp_path / "plain.npz", VAE(ModelConfig(input_dim=64), rng=0))
    code, _, err = run(capsys, "sample", ckpt, "--digit", 3, "--out", tmp_path / "s.png")
    _one_line_error(code, err, "--digit needs a conditional model")
