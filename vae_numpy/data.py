"""Data: MNIST from its canonical IDX files, binarization protocols and minibatches.

MNIST (Yann LeCun, Corinna Cortes and Christopher J.C. Burges; CC BY-SA 3.0) comes as
four gzip-compressed IDX files. :func:`fetch_mnist_file` finds one, in this order:

1. the folder ``$VAE_NUMPY_DATA/mnist`` (for offline use; the library only reads it),
2. the user cache ``pooch.os_cache("vae_numpy") / "mnist"``,
3. a download into the cache from one of :data:`MNIST_MIRRORS`.

Every file is checked against its SHA-256 in :data:`MNIST_SHA256` before it is used.
Set ``VAE_NUMPY_OFFLINE=1`` to forbid downloads.

The synthetic "handwriting" set, whose images come with their true factors, is in
:mod:`vae_numpy.handwriting`; it returns the same :class:`Dataset`.

Randomness always comes from a ``numpy.random.Generator`` passed in by the caller.
"""

from __future__ import annotations

import gzip
import hashlib
import math
import os
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import DataError, InputError

__all__ = [
    "MNIST_MIRRORS",
    "MNIST_SHA256",
    "Dataset",
    "data_dirs",
    "DYNAMIC_TEST_SEED",
    "PROTOCOLS",
    "STATIC_SEED",
    "check_protocol",
    "dynamic_binarize",
    "fetch_mnist_file",
    "load_mnist",
    "minibatches",
    "read_idx",
    "train_val_split",
]

# ---------------------------------------------------------------------------------------
# Finding and verifying the MNIST files
# ---------------------------------------------------------------------------------------

#: SHA-256 of the four canonical MNIST ``.gz`` files (``../shared/data/mnist/README.md``).
MNIST_SHA256: dict[str, str] = {
    "train-images-idx3-ubyte.gz": (
        "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609"
    ),
    "train-labels-idx1-ubyte.gz": (
        "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c"
    ),
    "t10k-images-idx3-ubyte.gz": (
        "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6"
    ),
    "t10k-labels-idx1-ubyte.gz": (
        "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6"
    ),
}

#: Public mirrors of the canonical files, tried in order; each URL is ``mirror + name``.
MNIST_MIRRORS: tuple[str, ...] = (
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
)

_SPLIT_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
#: How pixels become targets, named as the literature names them (see :func:`load_mnist`).
PROTOCOLS = ("none", "dynamic", "static", "threshold")
#: The seed of the one draw that binarizes the *test* set under ``dynamic``
#: (Burda et al.'s code also binarizes its test set once, with a fixed seed), so every
#: model trained with dynamic binarization is scored on the same binary digits.
DYNAMIC_TEST_SEED = 20160301
#: The default seed of ``static`` binarization: one draw of each split, kept fixed.
STATIC_SEED = 20080101
_SPLIT_SEED_OFFSET = {"train": 0, "test": 1}  # a split's draw differs from the other's
_OFFLINE_HINT = (
    "set VAE_NUMPY_DATA to a folder that holds mnist/{name} "
    "(for example VAE_NUMPY_DATA=../shared/data)"
)
_CHUNK_BYTES = 1 << 20

# Parsed IDX arrays keyed by (resolved path, SHA-256), so a notebook that loads MNIST in
# several cells parses each 47 MB file once. The arrays are read-only, so sharing them
# is safe.
_IDX_CACHE: dict[tuple[str, str], np.ndarray] = {}


def _user_cache_dir() -> Path:
    """The per-user cache folder of this library (tests replace this function).

    pooch is imported only where it is needed, so that reading MNIST from a folder works
    on a machine without it (a lent GPU machine has no network to install it from); there
    the folder is the same as pooch's on Linux, ``$XDG_CACHE_HOME/vae_numpy``.
    """
    try:
        import pooch
    except ImportError:
        base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
        return Path(base) / "vae_numpy"
    return Path(pooch.os_cache("vae_numpy"))


def _env_data_dir() -> Path | None:
    """``$VAE_NUMPY_DATA/mnist`` as an absolute path, or None when the variable is unset."""
    root = os.environ.get("VAE_NUMPY_DATA", "").strip()
    if not root:
        return None
    return Path(root).expanduser().absolute() / "mnist"


def data_dirs() -> list[Path]:
    """The folders searched for MNIST files, in the order they are searched.

    Returns
    -------
    list of Path
        ``$VAE_NUMPY_DATA/mnist`` when the environment variable is set (a relative value
        is taken relative to the current working directory), then the user cache
        ``pooch.os_cache("vae_numpy") / "mnist"``, where downloads go.
    """
    dirs = []
    env_dir = _env_data_dir()
    if env_dir is not None:
        dirs.append(env_dir)
    dirs.append(_user_cache_dir() / "mnist")
    return dirs


def _sha256_of(path: Path) -> str:
    """SHA-256 of a file as hex, read in 1 MiB chunks so memory stays flat."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK_BYTES), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _offline_from_env() -> bool:
    return os.environ.get("VAE_NUMPY_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}


def _make_downloader():
    """The pooch downloader used for MNIST (tests replace this to simulate failures)."""
    import pooch

    return pooch.HTTPDownloader(progressbar=False, timeout=60)


def _download(url: str, sha256: str, dest: Path) -> Path:
    """Download ``url`` to ``dest`` and check its SHA-256.

    ``pooch.retrieve`` streams into a temporary file in ``dest``'s folder, checks the
    hash, and only then moves the file to ``dest``; a failed or corrupt download
    removes the temporary file (``pooch.core.stream_download`` and
    ``pooch.utils.temporary_file``), so no partial file is ever left at ``dest``.
    Tests replace this function so they never touch the network.
    """
    import pooch

    path = pooch.retrieve(
        url,
        known_hash=f"sha256:{sha256}",
        fname=dest.name,
        path=dest.parent,
        downloader=_make_downloader(),
    )
    return Path(path)


def _check_name(name: str, sha256: str | None) -> str:
    if not isinstance(name, str) or not name or Path(name).name != name:
        raise InputError(
            f"name must be a bare file name such as 'train-images-idx3-ubyte.gz'; got {name!r}."
        )
    if sha256 is None:
        table = MNIST_SHA256  # looked up at call time so tests can substitute the table
        if name not in table:
            raise InputError(
                f"unknown MNIST file {name!r}; choose one of {sorted(table)} "
                "or pass its sha256= explicitly."
            )
        sha256 = table[name]
    sha256 = str(sha256).lower()
    if len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256):
        raise InputError(f"sha256 must be 64 hex digits; got {sha256!r}.")
    return sha256


def fetch_mnist_file(name: str, *, sha256: str | None = None, offline: bool | None = None) -> Path:
    """Return the path of a verified MNIST file, downloading it into the cache if needed.

    Parameters
    ----------
    name : str
        A canonical file name, e.g. ``"train-images-idx3-ubyte.gz"``.
    sha256 : str, optional
        Expected SHA-256 (hex). Defaults to ``MNIST_SHA256[name]``.
    offline : bool, optional
        Forbid downloads. Defaults to True when the environment variable
        ``VAE_NUMPY_OFFLINE`` is ``1`` (or ``true``/``yes``/``on``).

    Returns
    -------
    Path
        The file, either in ``$VAE_NUMPY_DATA/mnist`` or in the cache.

    Raises
    ------
    DataError
        When a file in ``$VAE_NUMPY_DATA`` fails its checksum (it is never modified),
        or when the file is found nowhere and cannot be downloaded.
    InputError
        When ``name`` is not a known file name and no ``sha256`` is given.

    Notes
    -----
    A cached file that fails its checksum is deleted and fetched again. A failed
    download leaves no partial file behind (pooch writes to a temporary file and
    renames it only once the hash matches).
    """
    expected = _check_name(name, sha256)
    if offline is None:
        offline = _offline_from_env()

    env_dir = _env_data_dir()
    cache_dir = _user_cache_dir() / "mnist"
    looked = []
    removed = None

    if env_dir is not None:
        path = env_dir / name
        looked.append(str(path))
        if path.is_file():
            actual = _sha256_of(path)
            if actual != expected:
                raise DataError(
                    f"{path} fails its SHA-256 check: expected {expected}, got {actual}. "
                    "The file is damaged or is not the canonical MNIST file. vae_numpy never "
                    "changes files under VAE_NUMPY_DATA: replace it with the canonical file "
                    "(checksums in vae_numpy.data.MNIST_SHA256), or unset VAE_NUMPY_DATA to "
                    f"download it into the cache {cache_dir}."
                )
            return path

    path = cache_dir / name
    looked.append(str(path))
    if path.is_file():
        if _sha256_of(path) == expected:
            return path
        # Ours to repair: a cached file only ever comes from a download.
        path.unlink()
        removed = path

    note = f" (a corrupt cached copy at {removed} was deleted)" if removed else ""
    hint = _OFFLINE_HINT.format(name=name)
    env_note = ""
    if env_dir is not None and not env_dir.is_dir():
        env_note = (
            f" VAE_NUMPY_DATA={os.environ.get('VAE_NUMPY_DATA')!r} points at {env_dir}, "
            f"which is not a folder"
            + (
                f" (relative to the current directory {Path.cwd()}; an absolute path "
                "avoids this)."
                if not Path(os.environ.get("VAE_NUMPY_DATA", "")).expanduser().is_absolute()
                else "."
            )
        )
    if offline:
        raise DataError(
            f"MNIST file {name!r} is not available offline{note}. Looked in: "
            f"{', '.join(looked)}. Downloads are turned off (VAE_NUMPY_OFFLINE or "
            f"offline=True). To fix it, {hint}.{env_note}"
        )

    failures = []
    for mirror in MNIST_MIRRORS:
        url = mirror + name
        try:
            return _download(url, expected, path)
        # requests' exceptions are OSErrors; pooch raises ValueError on a hash mismatch.
        except (OSError, ValueError) as exc:
            failures.append(f"{url}: {type(exc).__name__}: {exc}")
    raise DataError(
        f"MNIST file {name!r} could not be found or downloaded{note}. Looked in: "
        f"{', '.join(looked)}. Download attempts: {'; '.join(failures) or 'no mirrors'}. "
        f"Without network access, {hint}.{env_note}"
    )


# ---------------------------------------------------------------------------------------
# Reading IDX files
# ---------------------------------------------------------------------------------------

_GZIP_MAGIC = b"\x1f\x8b"
_IDX_UBYTE = 0x08


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read a gzip-compressed IDX file of unsigned bytes.

    The IDX header is a big-endian magic number ``0x000008NN`` (``0x08`` = unsigned
    byte, ``NN`` = number of dimensions), followed by ``NN`` big-endian uint32 sizes,
    then the payload in row-major order.

    Parameters
    ----------
    path : str or os.PathLike
        A ``.gz`` IDX file, e.g. ``train-images-idx3-ubyte.gz``.

    Returns
    -------
    ndarray of uint8, shape given by the header
        ``(N, 28, 28)`` for MNIST images, ``(N,)`` for labels. The array is a
        read-only view of the decompressed bytes; ``.copy()`` it to write to it.

    Raises
    ------
    DataError
        When the file is missing, not gzip, a corrupt or truncated gzip stream, has a
        bad magic number, or holds fewer or more payload bytes than its header says.
    """
    path = Path(path)
    fix = "Delete it and fetch it again (vae_numpy.data.fetch_mnist_file)."
    try:
        with open(path, "rb") as f:
            head = f.read(2)
        if head != _GZIP_MAGIC:
            raise DataError(
                f"{path} is not a gzip file: it starts with {head!r}, not {_GZIP_MAGIC!r}. "
                "The reader expects the canonical compressed .gz IDX files; if you "
                "decompressed it, compress it again with gzip or fetch the original."
            )
        with gzip.open(path, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        raise DataError(f"{path} does not exist. Check the path or fetch the file.") from None
    except EOFError as exc:
        raise DataError(
            f"{path} is truncated: the gzip stream ends early ({exc}); the download was "
            f"probably interrupted. {fix}"
        ) from exc
    except (gzip.BadGzipFile, zlib.error) as exc:
        raise DataError(f"{path} is a corrupt gzip file ({exc}). {fix}") from exc
    except IsADirectoryError:
        raise DataError(f"{path} is a folder, not an IDX .gz file.") from None

    if len(raw) < 4:
        raise DataError(
            f"{path} holds {len(raw)} bytes after decompression, too few for an IDX "
            f"header (4 bytes of magic number). {fix}"
        )
    magic = int.from_bytes(raw[:4], "big")
    ndim = raw[3]
    if raw[0] != 0 or raw[1] != 0 or raw[2] != _IDX_UBYTE or ndim == 0:
        raise DataError(
            f"{path} has magic number 0x{magic:08x}; an IDX file of unsigned bytes has "
            "0x000008NN with NN >= 1 dimensions (0x00000803 for MNIST images, 0x00000801 "
            "for labels). It is not an MNIST IDX file of bytes."
        )
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(
            f"{path} is truncated inside its header: {ndim} dimensions need {header} "
            f"header bytes, got {len(raw)}. {fix}"
        )
    shape = tuple(int(v) for v in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    expected = math.prod(shape)
    got = len(raw) - header
    if got < expected:
        raise DataError(
            f"{path} is truncated: its header promises shape {shape}, i.e. {expected} "
            f"payload bytes, but it holds {got}. {fix}"
        )
    if got > expected:
        raise DataError(
            f"{path} has {got - expected} bytes of trailing garbage after the {expected} "
            f"payload bytes its header (shape {shape}) describes. {fix}"
        )
    return np.frombuffer(raw, dtype=np.uint8, count=expected, offset=header).reshape(shape)


def _read_idx_cached(path: Path, sha256: str) -> np.ndarray:
    key = (str(Path(path).resolve()), sha256)
    arr = _IDX_CACHE.get(key)
    if arr is None:
        arr = read_idx(path)
        _IDX_CACHE[key] = arr
    return arr


# ---------------------------------------------------------------------------------------
# Datasets
# ---------------------------------------------------------------------------------------


def _check_rng(rng, what: str) -> np.random.Generator:
    if not isinstance(rng, np.random.Generator):
        raise InputError(
            f"{what} needs rng to be a numpy.random.Generator; got {type(rng).__name__}. "
            "Pass rng=np.random.default_rng(seed)."
        )
    return rng


def _check_int(value, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise InputError(f"{name} must be an integer; got {value!r}.")
    if value < minimum:
        raise InputError(f"{name} must be at least {minimum}; got {value}.")
    return int(value)


# eq=False: the generated __eq__/__hash__ would compare arrays elementwise and fail.
@dataclass(frozen=True, eq=False)
class Dataset:
    """Images as flat rows, with optional labels.

    Attributes
    ----------
    x : ndarray, shape (N, D)
        Pixels, float32 in [0, 1] for the loaders of this module; ``D`` equals
        ``prod(image_shape)``.
    y : ndarray of int64, shape (N,), or None
        Class labels, or None for an unlabelled set.
    name : str
        A short name used in figures and logs, e.g. ``"mnist-train"``.
    image_shape : tuple of int
        ``(rows, cols)`` to reshape a row of ``x`` into an image.
    """

    x: np.ndarray
    y: np.ndarray | None
    name: str
    image_shape: tuple[int, int] = (28, 28)

    def __post_init__(self):
        if not isinstance(self.x, np.ndarray) or self.x.ndim != 2:
            raise InputError(
                f"Dataset.x must be a 2-D array (N, D); got {getattr(self.x, 'shape', self.x)!r}."
            )
        if self.x.shape[1] != math.prod(self.image_shape):
            raise InputError(
                f"Dataset.x has {self.x.shape[1]} columns but image_shape {self.image_shape} "
                f"has {math.prod(self.image_shape)} pixels; they must match."
            )
        if self.y is not None and (
            not isinstance(self.y, np.ndarray) or self.y.shape != (self.x.shape[0],)
        ):
            raise InputError(
                f"Dataset.y must be None or an array of shape ({self.x.shape[0]},) to match x; "
                f"got {getattr(self.y, 'shape', self.y)!r}."
            )

    def __len__(self) -> int:
        return self.x.shape[0]

    def subset(self, idx) -> Dataset:
        """The examples selected by ``idx``.

        Parameters
        ----------
        idx : slice, or array-like of int (M,), or array-like of bool (N,)
            Which examples to keep, in the given order.

        Returns
        -------
        Dataset
            With ``x`` of shape (M, D) and ``y`` of shape (M,) or None; same name and
            image shape.
        """
        if not isinstance(idx, slice):
            idx = np.asarray(idx)
            if idx.ndim != 1:
                raise InputError(
                    f"subset needs a slice or a 1-D index array; got shape {idx.shape}."
                )
        y = None if self.y is None else self.y[idx]
        return Dataset(self.x[idx], y, self.name, self.image_shape)


def dynamic_binarize(x, rng: np.random.Generator) -> np.ndarray:
    """One Bernoulli draw per pixel: 1 with probability ``x``, else 0.

    Drawing afresh each epoch ("dynamic binarization") is the usual way to train a
    Bernoulli decoder on MNIST without overfitting to one fixed binarization.

    Parameters
    ----------
    x : array-like, shape (...)
        Probabilities in [0, 1].
    rng : numpy.random.Generator
        Source of the uniform draws.

    Returns
    -------
    ndarray of float32, shape (...)
        Zeros and ones.
    """
    rng = _check_rng(rng, "dynamic_binarize")
    x = np.asarray(x)
    if x.size:
        lo, hi = x.min(), x.max()
        if not (lo >= 0 and hi <= 1):  # also catches NaN
            raise InputError(
                f"dynamic_binarize needs probabilities in [0, 1]; got min {lo}, max {hi}. "
                "Scale pixels by 1/255 first."
            )
    # u < x with u ~ U[0, 1) is 1 with probability x exactly (0 at x=0, 1 at x=1).
    return (rng.random(x.shape, dtype=np.float32) < x).astype(np.float32)


def check_protocol(binarize) -> str:
    """The protocol's name (``None`` means ``"none"``), or a one-line error naming them all."""
    if binarize is None:
        return "none"
    if binarize == "fixed":
        raise InputError(
            "binarize='fixed' was renamed: thresholding at 0.5 is now 'threshold' (papers "
            "use 'fixed' for one seeded draw, here 'static'); the protocols are "
            f"{', '.join(PROTOCOLS)}.")
    if binarize not in PROTOCOLS:
        raise InputError(f"binarize must be one of {', '.join(PROTOCOLS)}; got {binarize!r}.")
    return binarize


def binarize_split(x, protocol: str, split: str, seed: int | None = None) -> np.ndarray:
    """The targets of one split under ``protocol`` (see :func:`load_mnist`).

    ``x`` holds grey levels in [0, 1]. ``seed`` is the seed of a ``static`` draw
    (default :data:`STATIC_SEED`); a ``dynamic`` test set always uses
    :data:`DYNAMIC_TEST_SEED`, and a ``dynamic`` training set stays grey.
    """
    protocol = check_protocol(protocol)
    if protocol == "threshold":
        return (x >= np.float32(0.5)).astype(np.float32)
    if protocol == "static":
        seed = STATIC_SEED if seed is None else seed
        return dynamic_binarize(x, np.random.default_rng([seed, _SPLIT_SEED_OFFSET[split]]))
    if protocol == "dynamic" and split == "test":
        return dynamic_binarize(x, np.random.default_rng(DYNAMIC_TEST_SEED))
    return x


def load_mnist(
    split: str = "train",
    *,
    binarize: str | None = None,
    seed: int | None = None,
    limit: int | None = None,
) -> Dataset:
    """Load an MNIST split as float32 pixels in [0, 1] with int64 labels.

    Parameters
    ----------
    split : {"train", "test"}
        60,000 training or 10,000 test images.
    binarize : {None, "none", "dynamic", "static", "threshold"}
        How pixels become targets (:data:`PROTOCOLS`, named as papers name them):

        * ``None`` or ``"none"``: grey levels ``pixel / 255``, soft Bernoulli targets;
        * ``"dynamic"``: a fresh Bernoulli draw of every pixel for every minibatch.
          The draw happens in the training loop (``fit(..., binarize="dynamic")``),
          so the training split comes back as grey levels, the probabilities of
          those draws; the test split comes back binarized once, with the fixed
          seed :data:`DYNAMIC_TEST_SEED`, so every model is scored on the same digits;
        * ``"static"``: one seeded Bernoulli draw of the whole split, kept fixed
          (papers' "fixed" or "static" binarization); ``seed`` picks the draw
          (default :data:`STATIC_SEED`; the two splits get different draws);
        * ``"threshold"``: ``pixel / 255 >= 0.5``.

        The old name ``"fixed"`` raises an error that names these.
    seed : int, optional
        The seed of a ``static`` draw.
    limit : int, optional
        Keep only the first ``limit`` examples (all of them if ``limit`` is larger).

    Returns
    -------
    Dataset
        ``x`` of shape (N, 784) float32, ``y`` of shape (N,) int64, ``name``
        ``"mnist-train"`` or ``"mnist-test"``, ``image_shape`` (28, 28).

    Raises
    ------
    InputError
        For an unknown ``split`` or ``binarize`` (``"fixed"`` included), or a bad ``limit``.
    DataError
        When a file cannot be found, downloaded, verified or parsed (see
        :func:`fetch_mnist_file` and :func:`read_idx`).

    Notes
    -----
    The parsed files are kept in memory (as uint8, 55 MB for both splits), so loading
    again is fast.
    """
    if split not in _SPLIT_FILES:
        raise InputError(f"split must be one of {list(_SPLIT_FILES)}; got {split!r}.")
    protocol = check_protocol(binarize)
    if limit is not None:
        limit = _check_int(limit, "limit", 1)

    images_name, labels_name = _SPLIT_FILES[split]
    arrays = []
    for name in (images_name, labels_name):
        path = fetch_mnist_file(name)
        arrays.append((path, _read_idx_cached(path, MNIST_SHA256[name])))
    (images_path, images), (labels_path, labels) = arrays
    if images.ndim != 3 or labels.ndim != 1 or images.shape[0] != labels.shape[0]:
        raise DataError(
            f"{images_path} (shape {images.shape}) and {labels_path} (shape {labels.shape}) "
            "do not fit together: expected images (N, rows, cols) and labels (N,)."
        )
    if labels.size and labels.max() > 9:
        raise DataError(f"{labels_path} holds label {labels.max()}; MNIST labels are 0..9.")

    n = images.shape[0] if limit is None else min(limit, images.shape[0])
    image_shape = (int(images.shape[1]), int(images.shape[2]))
    # One float32 pass, no float64 intermediate; exact division (255 / 255 == 1.0).
    x = np.empty((n, image_shape[0] * image_shape[1]), dtype=np.float32)
    np.divide(images[:n].reshape(n, -1), np.float32(255), out=x, dtype=np.float32)
    x = binarize_split(x, protocol, split, seed)
    y = labels[:n].astype(np.int64)
    return Dataset(x, y, f"mnist-{split}", image_shape)


def train_val_split(ds: Dataset, n_val: int, rng: np.random.Generator) -> tuple[Dataset, Dataset]:
    """Split a dataset at random into a training part and a validation part.

    Parameters
    ----------
    ds : Dataset
        N examples.
    n_val : int
        Size of the validation part, 1 <= n_val < N.
    rng : numpy.random.Generator
        Chooses which examples go to validation.

    Returns
    -------
    train, val : Dataset
        N - n_val and n_val examples, each kept in its original order, named
        ``"<name>/train"`` and ``"<name>/val"``.
    """
    rng = _check_rng(rng, "train_val_split")
    n = len(ds)
    n_val = _check_int(n_val, "n_val", 1)
    if n_val >= n:
        raise InputError(f"n_val must be smaller than the dataset's {n} examples; got {n_val}.")
    perm = rng.permutation(n)
    val_idx = np.sort(perm[:n_val])
    train_idx = np.sort(perm[n_val:])
    train, val = ds.subset(train_idx), ds.subset(val_idx)
    return (
        Dataset(train.x, train.y, f"{ds.name}/train", ds.image_shape),
        Dataset(val.x, val.y, f"{ds.name}/val", ds.image_shape),
    )


def minibatches(
    n: int,
    batch_size: int,
    rng: np.random.Generator | None,
    *,
    drop_last: bool = False,
) -> Iterator[np.ndarray]:
    """Index arrays that cover ``range(n)`` once, in batches.

    Parameters
    ----------
    n : int
        Number of examples.
    batch_size : int
        Examples per batch, at least 1.
    rng : numpy.random.Generator or None
        Shuffles the order when given; None keeps 0, 1, ..., n-1.
    drop_last : bool
        Skip a final batch smaller than ``batch_size``.

    Yields
    ------
    ndarray of int64, shape (B,)
        ``B = batch_size``, except possibly for the last batch.

    Raises
    ------
    InputError
        At the call (not at the first ``next``) for a bad ``n``, ``batch_size`` or ``rng``.
    """
    n = _check_int(n, "n", 0)
    batch_size = _check_int(batch_size, "batch_size", 1)
    if rng is None:
        order = np.arange(n, dtype=np.int64)
    else:
        order = _check_rng(rng, "minibatches").permutation(n).astype(np.int64, copy=False)
    stop = n - n % batch_size if drop_last else n
    return (order[i : i + batch_size] for i in range(0, stop, batch_size))
