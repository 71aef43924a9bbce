"""Tests of vae_numpy.data on small IDX files made here; no network, no real MNIST needed.

Every test runs with an empty private cache, VAE_NUMPY_DATA unset and the download
function replaced by one that fails the test, so nothing can reach the network. The
one test that reads real MNIST runs only when VAE_NUMPY_DATA pointed at it when pytest
started.
"""

import gzip
import hashlib
import os
from pathlib import Path

import numpy as np
import pytest
import requests
from hypothesis import given, settings
from hypothesis import strategies as st

from vae_numpy import data
from vae_numpy.errors import DataError, InputError

_REAL_DATA = os.environ.get("VAE_NUMPY_DATA", "")
_REAL_DOWNLOAD = data._download

IMAGES, LABELS = "train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"
T_IMAGES, T_LABELS = "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"


# --------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------


def idx_bytes(arr: np.ndarray, type_code: int = 0x08) -> bytes:
    """The uncompressed IDX encoding of a uint8 array."""
    header = bytes([0, 0, type_code, arr.ndim]) + b"".join(
        int(d).to_bytes(4, "big") for d in arr.shape
    )
    return header + np.ascontiguousarray(arr, dtype=np.uint8).tobytes()


def write_gz(path: Path, raw: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(raw, mtime=0))
    return path


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def make_split(rng, n):
    images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
    images[0, 0, :4] = [0, 127, 128, 255]  # both ends and both sides of the 0.5 threshold
    labels = rng.integers(0, 10, size=n, dtype=np.uint8)
    return images, labels


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    """No user folder, an empty private cache, no network, an empty parse cache."""
    monkeypatch.delenv("VAE_NUMPY_DATA", raising=False)
    monkeypatch.delenv("VAE_NUMPY_OFFLINE", raising=False)
    cache = tmp_path / "cache"
    monkeypatch.setattr(data, "_user_cache_dir", lambda: cache)
    monkeypatch.setattr(data, "_IDX_CACHE", {})

    def no_network(url, sha256, dest):
        pytest.fail(f"a test tried to download {url}")

    monkeypatch.setattr(data, "_download", no_network)
    return cache


@pytest.fixture
def fake_mnist(tmp_path, monkeypatch):
    """A VAE_NUMPY_DATA folder with tiny versions of the four files (7 train, 3 test)."""
    rng = np.random.default_rng(0)
    root = tmp_path / "userdata"
    arrays = {}
    arrays["train"] = make_split(rng, 7)
    arrays["test"] = make_split(rng, 3)
    table = {}
    for split, names in (("train", (IMAGES, LABELS)), ("test", (T_IMAGES, T_LABELS))):
        for arr, name in zip(arrays[split], names, strict=True):
            path = write_gz(root / "mnist" / name, idx_bytes(arr))
            table[name] = sha256(path)
    monkeypatch.setenv("VAE_NUMPY_DATA", str(root))
    monkeypatch.setattr(data, "MNIST_SHA256", table)
    return root, arrays


# --------------------------------------------------------------------------------------
# read_idx
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(5, 4, 3), (6,), (2, 3, 4, 5), (0, 28, 28)])
def test_read_idx_round_trip(tmp_path, shape):
    arr = np.random.default_rng(1).integers(0, 256, size=shape, dtype=np.uint8)
    path = write_gz(tmp_path / "a-idx.gz", idx_bytes(arr))
    out = data.read_idx(path)
    assert out.dtype == np.uint8
    assert out.shape == shape
    np.testing.assert_array_equal(out, arr)


def test_read_idx_truncated_gzip_stream(tmp_path):
    path = write_gz(tmp_path / "t.gz", idx_bytes(np.arange(200, dtype=np.uint8)))
    path.write_bytes(path.read_bytes()[:-20])
    with pytest.raises(DataError, match="truncated") as info:
        data.read_idx(path)
    assert str(path) in str(info.value)
    assert "fetch it again" in str(info.value)


def test_read_idx_truncated_payload_names_expected_and_got(tmp_path):
    raw = idx_bytes(np.zeros((4, 5), np.uint8))
    path = write_gz(tmp_path / "short.gz", raw[:-3])
    with pytest.raises(DataError, match="truncated") as info:
        data.read_idx(path)
    msg = str(info.value)
    assert str(path) in msg
    assert "20 payload bytes" in msg and "holds 17" in msg


def test_read_idx_truncated_header(tmp_path):
    path = write_gz(tmp_path / "hdr.gz", bytes([0, 0, 8, 3, 0, 0]))
    with pytest.raises(DataError, match="header"):
        data.read_idx(path)


def test_read_idx_trailing_garbage(tmp_path):
    raw = idx_bytes(np.zeros(10, np.uint8)) + b"junk"
    path = write_gz(tmp_path / "long.gz", raw)
    with pytest.raises(DataError, match="4 bytes of trailing garbage") as info:
        data.read_idx(path)
    assert str(path) in str(info.value)


def test_read_idx_crc_corruption(tmp_path):
    path = write_gz(tmp_path / "crc.gz", idx_bytes(np.arange(100, dtype=np.uint8)))
    gz = bytearray(path.read_bytes())
    gz[-8] ^= 0xFF  # first byte of the CRC-32 trailer
    path.write_bytes(bytes(gz))
    with pytest.raises(DataError, match="corrupt") as info:
        data.read_idx(path)
    assert str(path) in str(info.value)


def test_read_idx_corrupt_deflate_stream(tmp_path):
    path = write_gz(tmp_path / "bad.gz", idx_bytes(np.zeros(1000, np.uint8)))
    gz = bytearray(path.read_bytes())
    gz[10] = 0x07  # first deflate block header: BFINAL=1, BTYPE=11 (reserved, invalid)
    path.write_bytes(bytes(gz))
    with pytest.raises(DataError, match="corrupt") as info:
        data.read_idx(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("content", [b"", b"\x00\x00\x08\x01\x00\x00\x00\x01\x07"])
def test_read_idx_not_gzip(tmp_path, content):
    path = tmp_path / "plain-idx1-ubyte.gz"
    path.write_bytes(content)
    with pytest.raises(DataError, match="not a gzip file") as info:
        data.read_idx(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("magic", [b"\x00\x00\x09\x01", b"\x12\x34\x08\x01", b"\x00\x00\x08\x00"])
def test_read_idx_bad_magic(tmp_path, magic):
    path = write_gz(tmp_path / "magic.gz", magic + (1).to_bytes(4, "big") + b"\x05")
    with pytest.raises(DataError, match="magic number 0x" + magic.hex()):
        data.read_idx(path)


def test_read_idx_missing_file(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        data.read_idx(tmp_path / "nope.gz")


# --------------------------------------------------------------------------------------
# finding files
# --------------------------------------------------------------------------------------


def test_data_dirs_order(tmp_path, monkeypatch, isolated):
    assert data.data_dirs() == [isolated / "mnist"]
    monkeypatch.setenv("VAE_NUMPY_DATA", str(tmp_path / "mine"))
    assert data.data_dirs() == [tmp_path / "mine" / "mnist", isolated / "mnist"]


def test_fetch_unknown_name_lists_choices():
    with pytest.raises(InputError, match="train-images-idx3-ubyte.gz"):
        data.fetch_mnist_file("mnist.npz")
    with pytest.raises(InputError, match="bare file name"):
        data.fetch_mnist_file("../train-images-idx3-ubyte.gz")


def test_fetch_from_env_folder_with_explicit_checksum(tmp_path, monkeypatch):
    path = write_gz(tmp_path / "root" / "mnist" / "tiny.gz", idx_bytes(np.ones(3, np.uint8)))
    monkeypatch.setenv("VAE_NUMPY_DATA", str(tmp_path / "root"))
    assert data.fetch_mnist_file("tiny.gz", sha256=sha256(path)) == path


def test_reading_a_data_folder_needs_no_pooch(tmp_path):
    """pooch only downloads: a machine without it (a lent, offline GPU machine) reads
    $VAE_NUMPY_DATA all the same."""
    import subprocess
    import sys

    path = write_gz(tmp_path / "root" / "mnist" / "tiny.gz", idx_bytes(np.ones(3, np.uint8)))
    code = ("import sys; sys.modules['pooch'] = None\n"
            "from vae_numpy import data\n"
            f"print(data.fetch_mnist_file('tiny.gz', sha256={sha256(path)!r}))")
    env = {**os.environ, "VAE_NUMPY_DATA": str(tmp_path / "root")}
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                       cwd=Path(__file__).resolve().parent.parent)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == str(path)


def test_env_checksum_mismatch_names_path_and_fix(fake_mnist, monkeypatch):
    root, _ = fake_mnist
    path = root / "mnist" / IMAGES
    before = path.read_bytes()
    wrong = "0" * 64
    monkeypatch.setitem(data.MNIST_SHA256, IMAGES, wrong)
    with pytest.raises(DataError) as info:
        data.fetch_mnist_file(IMAGES)
    msg = str(info.value)
    assert str(path) in msg
    assert wrong in msg and hashlib.sha256(before).hexdigest() in msg
    assert "VAE_NUMPY_DATA" in msg and "replace it" in msg
    assert path.read_bytes() == before  # a user's folder is never modified


def test_valid_cached_file_is_used_without_download(isolated):
    path = write_gz(isolated / "mnist" / LABELS, idx_bytes(np.arange(5, dtype=np.uint8)))
    assert data.fetch_mnist_file(LABELS, sha256=sha256(path)) == path


def test_corrupt_cached_file_is_deleted_and_refetched(isolated, tmp_path, monkeypatch):
    good = write_gz(tmp_path / "good.gz", idx_bytes(np.arange(9, dtype=np.uint8)))
    good_sha = sha256(good)
    cached = isolated / "mnist" / LABELS
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"half a download")
    calls = []

    def fake_download(url, sha, dest):
        assert not dest.exists(), "the corrupt file must be gone before the download"
        assert sha == good_sha and url.endswith(LABELS)
        calls.append(url)
        dest.write_bytes(good.read_bytes())
        return dest

    monkeypatch.setattr(data, "_download", fake_download)
    path = data.fetch_mnist_file(LABELS, sha256=good_sha, offline=False)
    assert path == cached
    assert calls == [data.MNIST_MIRRORS[0] + LABELS]
    assert sha256(path) == good_sha
    np.testing.assert_array_equal(data.read_idx(path), np.arange(9))


def test_download_tries_each_mirror_in_turn(isolated, tmp_path, monkeypatch):
    good = write_gz(tmp_path / "good.gz", idx_bytes(np.arange(4, dtype=np.uint8)))
    calls = []

    def flaky(url, sha, dest):
        calls.append(url)
        if len(calls) == 1:
            raise requests.exceptions.ConnectionError("first mirror down")
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(good.read_bytes())
        return dest

    monkeypatch.setattr(data, "_download", flaky)
    path = data.fetch_mnist_file(LABELS, sha256=sha256(good), offline=False)
    assert calls == [m + LABELS for m in data.MNIST_MIRRORS[:2]]
    assert path.read_bytes() == good.read_bytes()


@pytest.mark.parametrize("how", ["env", "argument"])
def test_offline_without_data_says_set_vae_numpy_data(isolated, monkeypatch, how):
    if how == "env":
        monkeypatch.setenv("VAE_NUMPY_OFFLINE", "1")
        kwargs = {}
    else:
        kwargs = {"offline": True}
    with pytest.raises(DataError) as info:
        data.fetch_mnist_file(IMAGES, **kwargs)
    msg = str(info.value)
    assert IMAGES in msg
    assert str(isolated / "mnist" / IMAGES) in msg  # the places looked
    assert f"set VAE_NUMPY_DATA to a folder that holds mnist/{IMAGES}" in msg
    assert "VAE_NUMPY_DATA=../shared/data" in msg


def test_offline_load_mnist_raises_data_error(monkeypatch):
    monkeypatch.setenv("VAE_NUMPY_OFFLINE", "1")
    with pytest.raises(DataError, match="VAE_NUMPY_DATA"):
        data.load_mnist("test")


def test_missing_env_folder_is_explained(isolated, tmp_path, monkeypatch):
    monkeypatch.setenv("VAE_NUMPY_DATA", "no/such/folder")
    monkeypatch.setenv("VAE_NUMPY_OFFLINE", "1")
    with pytest.raises(DataError, match="not a folder") as info:
        data.fetch_mnist_file(LABELS)
    assert "absolute path" in str(info.value)


def test_failed_download_raises_and_leaves_no_file(isolated, monkeypatch):
    def no_network(url, sha, dest):
        raise requests.exceptions.ConnectionError(f"no route to host for {url}")

    monkeypatch.setattr(data, "_download", no_network)
    with pytest.raises(DataError) as info:
        data.fetch_mnist_file(IMAGES, offline=False)
    msg = str(info.value)
    for mirror in data.MNIST_MIRRORS:
        assert mirror + IMAGES in msg
    assert "VAE_NUMPY_DATA" in msg
    assert not (isolated / "mnist" / IMAGES).exists()


class _Downloader:
    """Stands in for pooch.HTTPDownloader: writes bytes, then maybe fails mid-way."""

    def __init__(self, payload: bytes, fail: bool):
        self.payload, self.fail = payload, fail

    def __call__(self, url, output_file, pooch):
        Path(output_file).write_bytes(self.payload[: len(self.payload) // 2])
        if self.fail:
            raise requests.exceptions.ConnectionError("connection reset mid-download")
        Path(output_file).write_bytes(self.payload)


@pytest.mark.parametrize("case", ["interrupted", "wrong bytes", "success"])
def test_pooch_download_is_atomic(isolated, tmp_path, monkeypatch, case):
    # The real _download (pooch.retrieve) with a fake transport: a failed or corrupt
    # download must leave nothing in the cache folder, a good one exactly the file.
    good = gzip.compress(idx_bytes(np.arange(50, dtype=np.uint8)), mtime=0)
    good_sha = hashlib.sha256(good).hexdigest()
    payload = b"x" * len(good) if case == "wrong bytes" else good
    monkeypatch.setattr(data, "_download", _REAL_DOWNLOAD)
    monkeypatch.setattr(
        data, "_make_downloader", lambda: _Downloader(payload, case == "interrupted")
    )
    folder = isolated / "mnist"
    if case == "success":
        path = data.fetch_mnist_file(LABELS, sha256=good_sha, offline=False)
        assert path == folder / LABELS and path.read_bytes() == good
        assert sorted(p.name for p in folder.iterdir()) == [LABELS]
    else:
        with pytest.raises(DataError, match="VAE_NUMPY_DATA"):
            data.fetch_mnist_file(LABELS, sha256=good_sha, offline=False)
        assert list(folder.iterdir()) == []


# --------------------------------------------------------------------------------------
# load_mnist
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("split", ["train", "test"])
def test_load_mnist_from_fake_folder(fake_mnist, split):
    _, arrays = fake_mnist
    images, labels = arrays[split]
    ds = data.load_mnist(split)
    assert ds.name == f"mnist-{split}" and ds.image_shape == (28, 28)
    assert len(ds) == len(labels)
    assert ds.x.dtype == np.float32 and ds.x.shape == (len(labels), 784)
    assert ds.x.min() >= 0 and ds.x.max() <= 1
    assert ds.x[0, 0] == 0 and ds.x[0, 3] == 1  # pixels 0 and 255
    expected = (images.reshape(len(images), -1) / 255.0).astype(np.float32)
    np.testing.assert_array_equal(ds.x, expected)
    assert ds.y.dtype == np.int64
    np.testing.assert_array_equal(ds.y, labels)


def test_load_mnist_limit(fake_mnist):
    _, arrays = fake_mnist
    ds = data.load_mnist("train", limit=4)
    assert ds.x.shape == (4, 784)
    np.testing.assert_array_equal(ds.y, arrays["train"][1][:4])
    assert len(data.load_mnist("train", limit=1000)) == 7


def test_load_mnist_parses_each_file_once(fake_mnist, monkeypatch):
    calls = []
    real = data.read_idx

    def counting(path):
        calls.append(Path(path).name)
        return real(path)

    monkeypatch.setattr(data, "read_idx", counting)
    first = data.load_mnist("train")
    second = data.load_mnist("train", limit=3)
    assert sorted(calls) == sorted([IMAGES, LABELS])
    np.testing.assert_array_equal(first.x[:3], second.x)
    second.x[:] = 0.5  # the caller's array is its own; the cache is not affected
    np.testing.assert_array_equal(data.load_mnist("train").x, first.x)


def test_threshold_binarization(fake_mnist):
    grey = data.load_mnist("train")
    ds = data.load_mnist("train", binarize="threshold")
    assert ds.x.dtype == np.float32
    assert set(np.unique(ds.x)) <= {0.0, 1.0}
    np.testing.assert_array_equal(ds.x, (grey.x >= 0.5).astype(np.float32))
    assert ds.x[0, 1] == 0 and ds.x[0, 2] == 1  # 127 -> 0, 128 -> 1


def test_the_old_name_fixed_fails_naming_the_protocols(fake_mnist):
    with pytest.raises(InputError) as info:
        data.load_mnist("train", binarize="fixed")
    msg = str(info.value)
    assert "\n" not in msg and "renamed" in msg
    assert all(name in msg for name in ("none", "dynamic", "static", "threshold"))


def test_dynamic_keeps_training_grey_and_binarizes_the_test_set_once(fake_mnist):
    grey_train, grey_test = data.load_mnist("train"), data.load_mnist("test")
    # the training loop draws a fresh binarization per minibatch, so no draw here
    np.testing.assert_array_equal(data.load_mnist("train", binarize="dynamic").x, grey_train.x)
    test = data.load_mnist("test", binarize="dynamic")
    assert test.x.dtype == np.float32 and set(np.unique(test.x)) <= {0.0, 1.0}
    # one draw with the documented seed, the same at every call
    expected = data.dynamic_binarize(grey_test.x,
                                     np.random.default_rng(data.DYNAMIC_TEST_SEED))
    np.testing.assert_array_equal(test.x, expected)
    np.testing.assert_array_equal(data.load_mnist("test", binarize="dynamic").x, test.x)
    # a prefix (limit) is the prefix of the full draw
    np.testing.assert_array_equal(data.load_mnist("test", binarize="dynamic", limit=2).x,
                                  test.x[:2])


def test_static_is_one_seeded_draw_per_split(fake_mnist):
    grey = data.load_mnist("train")
    a = data.load_mnist("train", binarize="static")
    b = data.load_mnist("train", binarize="static")
    c = data.load_mnist("train", binarize="static", seed=1)
    assert set(np.unique(a.x)) <= {0.0, 1.0}
    np.testing.assert_array_equal(a.x, b.x)
    assert not np.array_equal(a.x, c.x)
    assert a.x[0, 0] == 0 and a.x[0, 3] == 1  # probability 0 and 1 are certain
    # the two splits are not binarized with the same uniforms
    big = np.full((1, 4000), 0.5, dtype=np.float32)
    assert not np.array_equal(data.binarize_split(big, "static", "train"),
                              data.binarize_split(big, "static", "test"))
    np.testing.assert_array_equal(grey.x[a.x == 1] > 0, True)


def test_dynamic_binarize_matches_probabilities():
    p = np.full((200, 500), 0.3, dtype=np.float32)
    b = data.dynamic_binarize(p, np.random.default_rng(0))
    assert b.dtype == np.float32 and b.shape == p.shape
    assert set(np.unique(b)) == {0.0, 1.0}
    assert abs(b.mean() - 0.3) < 0.005  # 100,000 draws: standard error 0.0015
    with pytest.raises(InputError, match="got min -0.5"):
        data.dynamic_binarize(np.array([-0.5, 0.5]), np.random.default_rng(0))
    with pytest.raises(InputError, match="Generator"):
        data.dynamic_binarize(p, 0)


def test_load_mnist_bad_arguments(fake_mnist):
    with pytest.raises(InputError, match=r"\['train', 'test'\].*'val'"):
        data.load_mnist("val")
    with pytest.raises(InputError, match="none, dynamic, static, threshold; got 'otsu'"):
        data.load_mnist("train", binarize="otsu")
    with pytest.raises(InputError, match="limit must be at least 1"):
        data.load_mnist("train", limit=0)


def test_load_mnist_mismatched_files(fake_mnist, monkeypatch):
    root, _ = fake_mnist
    path = write_gz(root / "mnist" / LABELS, idx_bytes(np.zeros(5, np.uint8)))
    monkeypatch.setitem(data.MNIST_SHA256, LABELS, sha256(path))
    with pytest.raises(DataError, match="do not fit together"):
        data.load_mnist("train")


# --------------------------------------------------------------------------------------
# Dataset, splits, minibatches
# --------------------------------------------------------------------------------------


def small_dataset(n=10):
    x = np.arange(n * 4, dtype=np.float32).reshape(n, 4) / (n * 4)
    return data.Dataset(x, np.arange(n, dtype=np.int64), "toy", (2, 2))


def test_dataset_subset_and_len():
    ds = small_dataset()
    sub = ds.subset([3, 1])
    assert len(sub) == 2 and sub.name == "toy" and sub.image_shape == (2, 2)
    np.testing.assert_array_equal(sub.y, [3, 1])
    np.testing.assert_array_equal(sub.x, ds.x[[3, 1]])
    assert len(ds.subset(slice(2, 5))) == 3
    unlabelled = data.Dataset(ds.x, None, "u", (2, 2)).subset(np.arange(10) < 4)
    assert unlabelled.y is None and len(unlabelled) == 4


def test_dataset_rejects_inconsistent_arrays():
    x = np.zeros((3, 4), np.float32)
    with pytest.raises(InputError, match="image_shape"):
        data.Dataset(x, None, "bad")  # 4 columns vs 28 x 28
    with pytest.raises(InputError, match=r"shape \(3,\)"):
        data.Dataset(x, np.zeros(2, np.int64), "bad", (2, 2))


def test_train_val_split():
    ds = small_dataset(20)
    train, val = data.train_val_split(ds, 5, np.random.default_rng(0))
    assert len(train) == 15 and len(val) == 5
    assert sorted(np.concatenate([train.y, val.y])) == list(range(20))
    assert train.name == "toy/train" and val.name == "toy/val"
    _, val2 = data.train_val_split(ds, 5, np.random.default_rng(0))
    np.testing.assert_array_equal(val.y, val2.y)
    _, val3 = data.train_val_split(ds, 5, np.random.default_rng(1))
    assert not np.array_equal(val.y, val3.y)
    with pytest.raises(InputError, match="smaller than"):
        data.train_val_split(ds, 20, np.random.default_rng(0))


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(0, 300),
    batch_size=st.integers(1, 64),
    seed=st.integers(0, 2**32 - 1),
    drop_last=st.booleans(),
)
def test_minibatches_cover_every_index_once(n, batch_size, seed, drop_last):
    batches = list(
        data.minibatches(n, batch_size, np.random.default_rng(seed), drop_last=drop_last)
    )
    seen = np.concatenate(batches) if batches else np.array([], np.int64)
    assert all(b.dtype == np.int64 for b in batches)
    assert all(len(b) == batch_size for b in batches[:-1])
    if drop_last:
        assert len(seen) == n - n % batch_size
        assert all(len(b) == batch_size for b in batches)
    else:
        assert len(seen) == n
        np.testing.assert_array_equal(np.sort(seen), np.arange(n))
    assert len(np.unique(seen)) == len(seen)


def test_minibatches_reproducible_and_ordered():
    a = [b.tolist() for b in data.minibatches(50, 8, np.random.default_rng(7))]
    b = [b.tolist() for b in data.minibatches(50, 8, np.random.default_rng(7))]
    c = [b.tolist() for b in data.minibatches(50, 8, np.random.default_rng(8))]
    assert a == b and a != c
    assert sum(a, []) != list(range(50))  # shuffled
    ordered = list(data.minibatches(10, 4, None))
    assert [o.tolist() for o in ordered] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]


def test_minibatches_bad_arguments_fail_at_the_call():
    with pytest.raises(InputError, match="batch_size must be at least 1; got 0"):
        data.minibatches(10, 0, None)  # no next(): the error must not wait for iteration
    with pytest.raises(InputError, match="Generator"):
        data.minibatches(10, 2, 42)


# --------------------------------------------------------------------------------------
# real MNIST (only when VAE_NUMPY_DATA points at it)
# --------------------------------------------------------------------------------------


@pytest.mark.skipif(
    not (Path(_REAL_DATA) / "mnist" / IMAGES).is_file() if _REAL_DATA else True,
    reason="VAE_NUMPY_DATA does not point at a folder with the real MNIST files",
)
def test_real_mnist(monkeypatch):
    monkeypatch.setenv("VAE_NUMPY_DATA", _REAL_DATA)
    monkeypatch.setenv("VAE_NUMPY_OFFLINE", "1")
    for split, n in (("train", 60000), ("test", 10000)):
        ds = data.load_mnist(split)
        assert ds.x.shape == (n, 784) and ds.x.dtype == np.float32
        assert ds.y.shape == (n,) and ds.y.min() == 0 and ds.y.max() == 9
        assert ds.x.min() == 0 and ds.x.max() == 1
        assert np.bincount(ds.y).min() > n // 20  # every digit is there
