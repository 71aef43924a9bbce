"""The command line: a real run on small data, and a one-line error for each bad input."""

import gzip

import numpy as np
import pytest

from vae_numpy import data
from vae_numpy.checkpoint import save_checkpoint
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
    assert out.count("test -ELBO") == 2
    for name in ("checkpoint.npz", "loss.png", "reconstructions.png", "samples.png",
                 "history.json"):
        assert (out_dir / name).stat().st_size > 100
    code, out, err = run(capsys, "evaluate", out_dir / "checkpoint.npz", "--dataset", npy,
                         "--iw-samples", 10)
    assert code == 0, err
    assert "test negative ELBO" in out and "k=10" in out
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
    (["--epochs", -1], "epochs must be an integer >= 0"),
])
def test_bad_settings(args, pattern, npy, tmp_path, capsys):
    code, _, err = run(capsys, "train", "--dataset", npy, "--out", tmp_path / "o", *args)
    _one_line_error(code, err, pattern)


def test_wrong_input_width(npy, tmp_path, capsys):
    save_checkpoint(tmp_path / "c.npz", VAE(ModelConfig(input_dim=100, hidden_dims=(8,),
                                                        latent_dim=2), rng=0))
    code, _, err = run(capsys, "evaluate", tmp_path / "c.npz", "--dataset", npy)
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
