"""numba-fused kernels for the work around the GEMMs, each beside its reference.

Every kernel here has a pure-array twin (``*_reference``) that does the same
arithmetic with plain NumPy; the tests assert the two agree to float32 rounding.
The kernels fuse the elementwise passes that plain NumPy makes one array at a
time (add a bias, clip at zero, take a sigmoid, sum a column ...) into one pass
that reads and writes each array once.

The GEMMs stay in BLAS, except where a numba loop measured faster (see
:func:`matmul_bias_act` and ``python -m vae_numpy bench``): this module also holds
the numba matmuls that the benchmark compares against BLAS at every GEMM shape of
the model, so the comparison is made with code anyone can read.

Rules the kernels follow, and why:

* ``error_model="numpy"``: numba's default inserts a division-by-zero check into
  every ``/``, which stops LLVM from vectorizing a loop (Adam ran 4x slower).
* ``fastmath={"contract"}`` only: lets LLVM fuse ``a * b + c`` into one FMA
  instruction (one rounding instead of two, so never less accurate). No
  reassociation: every sum is added in a fixed order, so a run is bit-identical
  to the next on the same machine.
* No ``prange``: a parallel numba kernel leaves OpenMP threads spinning, which
  slows the next BLAS call (see ``TOOLCHAIN.md``). BLAS uses the cores.
* float32 constants (``_F32(0.5)``) inside the kernels: a bare Python float is a
  float64 in numba and would promote the whole expression.
* ``exp`` and ``log1p`` of the Bernoulli loss are written out as polynomials
  (:func:`_exp_neg`, :func:`_log1p_01`) so LLVM can vectorize them; numba calls the
  scalar C library functions otherwise, about 10 times slower here.

numba is used when it imports; the model uses these kernels when its backend is
``numpy`` (see :mod:`vae_numpy.backend`), and the reference path (``numpy-ref``)
never calls them.
"""

from __future__ import annotations

import math
import os

import numpy as np

try:
    import numba
    from numba import types as _nbtypes
    from numba.extending import intrinsic as _intrinsic

    _HAVE_NUMBA = True
except ImportError:  # numba is a dependency, but keep the reference path usable without it
    numba = None
    _HAVE_NUMBA = False

_F32 = np.float32


def numba_enabled() -> bool:
    """Whether the numba kernels are used by default in this process."""
    return _HAVE_NUMBA and os.environ.get("VAE_NUMPY_BACKEND", "numpy") == "numpy"


def have_numba() -> bool:
    """Whether numba imports (the kernels can run at all)."""
    return _HAVE_NUMBA


_FLAGS = dict(cache=True, nogil=True, error_model="numpy", fastmath={"contract"})


def _njit(fn):
    return numba.njit(**_FLAGS)(fn) if _HAVE_NUMBA else fn


def _inline(fn):
    if not _HAVE_NUMBA:
        return fn
    return numba.njit(inline="always", error_model="numpy", fastmath={"contract"})(fn)


def _is_f32(*arrays) -> bool:
    return all(isinstance(a, np.ndarray) and a.dtype == np.float32 for a in arrays)


def _use_numba(*arrays) -> bool:
    return _HAVE_NUMBA and _is_f32(*arrays)


# -- vectorizable exp and log1p ----------------------------------------------------
if _HAVE_NUMBA:

    @_intrinsic
    def _bits_to_float32(typingctx, i):
        """Reinterpret the low 32 bits of an integer as a float32 (no conversion)."""
        if not isinstance(i, _nbtypes.Integer):
            return None

        def codegen(context, builder, signature, args):
            v = args[0]
            if i.bitwidth != 32:
                v = builder.trunc(v, context.get_value_type(_nbtypes.int32))
            return builder.bitcast(v, context.get_value_type(_nbtypes.float32))

        return _nbtypes.float32(i), codegen
else:  # pragma: no cover - only without numba, where these helpers are never compiled

    def _bits_to_float32(i):
        return np.array([i], dtype=np.int32).view(np.float32)[0]


_LOG2E = _F32(1.4426950408889634)
_LN2_HI = _F32(0.693359375)          # ln 2 split in two so n * ln2 is exact for |n| < 128
_LN2_LO = _F32(-2.12194440e-4)
_E2, _E3, _E4, _E5, _E6, _E7, _E8, _E9 = (_F32(1.0 / math.factorial(k)) for k in range(2, 10))
_L3, _L5, _L7, _L9, _L11, _L13, _L15 = (_F32(1.0 / k) for k in (3, 5, 7, 9, 11, 13, 15))
_EXP_MIN = _F32(-87.0)               # exp(-87) = 1.6e-38 is still a normal float32
_EXP_MAX = _F32(88.0)                # 2**127 is the largest power of two a float32 holds


@_inline
def _exp_neg(t):
    """``exp(t)`` for float32 ``t <= 0``, within 2 ulp; 0 < result <= 1.

    ``t = n ln2 + r`` with ``|r| <= ln2 / 2``; ``exp(r)`` by its Taylor polynomial
    (degree 7, error below 1e-8), ``2**n`` built directly in the exponent bits.
    Below -87 it returns exp(-87) ~ 1.6e-38 instead of a smaller number: the
    callers add it to 1 or to numbers of order 1, where it makes no difference.
    """
    return _exp_clamped(max(t, _EXP_MIN))


@_inline
def _exp_clamped(t):
    """``exp(t)`` for float32 ``t`` in [-87, 88], within 2 ulp (no range check)."""
    n = np.floor(t * _LOG2E + _F32(0.5))
    r = (t - n * _LN2_HI) - n * _LN2_LO
    p = _F32(1.0) + r * (_F32(1.0) + r * (_E2 + r * (_E3 + r * (_E4 + r * (_E5 + r * (
        _E6 + r * _E7))))))
    return p * _bits_to_float32((np.int64(n) + 127) << 23)


@_inline
def _expm1(t):
    """``exp(t) - 1`` for float32 ``t``, relative error below 3e-7, vectorizable.

    For ``|t| < 1/2`` its Taylor series to ``t**9`` (no cancellation near 0),
    else ``exp(t) - 1``. ``t`` is clamped to [-87, 88]: ``exp(88) = 1.7e38``
    where the reference overflows to infinity above 88.7 (a diverged run either way).
    """
    c = min(max(t, _EXP_MIN), _EXP_MAX)
    big = _exp_clamped(c) - _F32(1.0)
    small = t * (_F32(1.0) + t * (_E2 + t * (_E3 + t * (_E4 + t * (_E5 + t * (_E6 + t * (
        _E7 + t * (_E8 + t * _E9))))))))
    return small if abs(t) < _F32(0.5) else big


@_inline
def _log1p_01(e):
    """``log(1 + e)`` for float32 ``e`` in [0, 1], relative error below 3e-7.

    ``log(1 + e) = 2 atanh(s)`` with ``s = e / (2 + e)`` in [0, 1/3]; the odd
    series of atanh to ``s**15`` is then accurate to float32, and keeps full
    relative precision for tiny ``e`` (where it is ``e``).
    """
    s = e / (_F32(2.0) + e)
    u = s * s
    return _F32(2.0) * s * (_F32(1.0) + u * (_L3 + u * (_L5 + u * (_L7 + u * (_L9 + u * (
        _L11 + u * (_L13 + u * _L15)))))))


@_njit
def _exp_neg_array(t, out):
    for i in range(t.size):
        out[i] = _exp_neg(t[i])


@_njit
def _log1p_01_array(e, out):
    for i in range(e.size):
        out[i] = _log1p_01(e[i])


@_njit
def _expm1_array(t, out):
    for i in range(t.size):
        out[i] = _expm1(t[i])


def expm1(t):
    """:func:`_expm1` over a 1-D float32 array (for tests); the reference is ``np.expm1``."""
    out = np.empty_like(t)
    _expm1_array(np.ascontiguousarray(t, dtype=np.float32), out)
    return out


def exp_neg(t):
    """:func:`_exp_neg` over a 1-D float32 array (for tests); the reference is ``np.exp``."""
    out = np.empty_like(t)
    _exp_neg_array(np.ascontiguousarray(t, dtype=np.float32), out)
    return out


def log1p_01(e):
    """:func:`_log1p_01` over a 1-D float32 array (for tests); the reference is ``np.log1p``."""
    out = np.empty_like(e)
    _log1p_01_array(np.ascontiguousarray(e, dtype=np.float32), out)
    return out


# -- bias + activation, and its backward ---------------------------------------------
def bias_act_reference(a, b, relu: bool = True):
    """``a = a + b``, then ``max(a, 0)`` if ``relu``; in place. Returns ``a``.

    Parameters
    ----------
    a : (N, H) array, the GEMM's output ``x @ W``
    b : (H,) array
    """
    a += b
    if relu:
        np.maximum(a, 0, out=a)
    return a


@_njit
def _bias_act(a, b, relu):
    N, H = a.shape
    zero = _F32(0.0)
    for i in range(N):
        row = a[i]
        if relu:
            for j in range(H):
                v = row[j] + b[j]
                row[j] = zero if v < zero else v   # NaN stays NaN, as np.maximum does
        else:
            for j in range(H):
                row[j] = row[j] + b[j]


def bias_act(a, b, relu: bool = True):
    """Fused :func:`bias_act_reference`: one pass over ``a`` instead of two."""
    if _use_numba(a, b) and a.flags.c_contiguous:
        _bias_act(a, b, relu)
        return a
    return bias_act_reference(a, b, relu)


def relu_backward_reference(dh, h, db, dh2=None):
    """ReLU backward and the bias gradient, in place: ``dh = (dh + dh2) * (h > 0)``.

    Parameters
    ----------
    dh : (N, H) array, dLoss/dh; overwritten by dLoss/da (``a`` the pre-activation)
    h : (N, H) array, the ReLU's output (``h > 0`` is the mask)
    db : (H,) array, receives ``da.sum(axis=0)``, the gradient of the layer's bias
    dh2 : (N, H) array, optional
        A second gradient of ``h`` to add first (``h`` feeding two heads).
    """
    if dh2 is not None:
        dh += dh2
    dh *= h > 0
    np.sum(dh, axis=0, out=db)
    return dh


@_njit
def _relu_backward(dh, h, db):
    N, H = dh.shape
    zero = _F32(0.0)
    one = _F32(1.0)
    for j in range(H):
        db[j] = zero
    for i in range(N):
        d = dh[i]
        hr = h[i]
        for j in range(H):
            v = d[j] * (one if hr[j] > zero else zero)
            d[j] = v
            db[j] += v


def relu_backward(dh, h, db, dh2=None):
    """Fused :func:`relu_backward_reference`: mask and bias gradient in one pass.

    With ``dh2`` the two gradients are first added by NumPy (a second pass).
    """
    arrays = (dh, h, db) if dh2 is None else (dh, h, db, dh2)
    if _use_numba(*arrays) and all(a.flags.c_contiguous for a in arrays):
        if dh2 is not None:
            dh += dh2
        _relu_backward(dh, h, db)
        return dh
    return relu_backward_reference(dh, h, db, dh2)


# -- the Bernoulli log-likelihood from logits, with its gradient -----------------------
def bernoulli_nll_grad_reference(x_logits, b, x, scale, db):
    """Add the output bias, take the Bernoulli NLL, and leave its gradient, in place.

    On entry ``x_logits`` holds ``h @ W_out`` (no bias yet); on return it holds
    ``scale * (sigmoid(x_logits + b) - x)``, the gradient of
    ``scale * sum(nll)`` with respect to the logits, and ``db`` its column sums.

    Parameters
    ----------
    x_logits : (N, D) array, overwritten
    b : (D,) array, the output bias
    x : (N, D) array in [0, 1]
    scale : float, the weight of each example's NLL in the loss (1/N for a mean)
    db : (D,) array, receives the bias gradient

    Returns
    -------
    float
        ``sum over examples and pixels of softplus(l) - x * l``, in nats.
    """
    from . import losses

    x_logits += b
    total = float(losses.bernoulli_nll(x_logits, x).sum(dtype=np.float64))
    p = 0.5 * (1.0 + np.tanh(0.5 * x_logits))
    np.subtract(p, x, out=x_logits)
    x_logits *= x_logits.dtype.type(scale)
    np.sum(x_logits, axis=0, out=db)
    return total


@_njit
def _bernoulli_nll_grad(l, b, x, scale, db, acc):
    N, D = l.shape
    zero = _F32(0.0)
    one = _F32(1.0)
    s = _F32(scale)
    for j in range(D):
        db[j] = zero
        acc[j] = zero
    for i in range(N):
        li = l[i]
        xi = x[i]
        for j in range(D):
            a = li[j] + b[j]
            e = _exp_neg(-abs(a))                    # exp(-|a|), in (0, 1]
            nll = max(a, zero) + _log1p_01(e) - xi[j] * a  # softplus(a) - x a
            acc[j] += nll
            r = one / (one + e)
            p = r if a >= zero else e * r            # sigmoid(a), without overflow
            g = (p - xi[j]) * s
            li[j] = g
            db[j] += g
    total = 0.0
    for j in range(D):
        total += acc[j]
    return total


def bernoulli_nll_grad(x_logits, b, x, scale, db, acc=None):
    """Fused :func:`bernoulli_nll_grad_reference`: one pass, one exp and one log per pixel.

    ``acc`` is an optional (D,) float32 scratch buffer (allocated when None): each
    pixel's NLL summed over the batch, added up in float64 at the end. (A float64
    buffer would be more precise still, and made the kernel twice as slow.)
    """
    if _use_numba(x_logits, b, x, db) and x_logits.flags.c_contiguous and x.flags.c_contiguous:
        if acc is None:
            acc = np.empty(x_logits.shape[1], dtype=np.float32)
        return float(_bernoulli_nll_grad(x_logits, b, x, float(scale), db, acc))
    return bernoulli_nll_grad_reference(x_logits, b, x, scale, db)


# -- reparameterization and the KL, with their gradients ------------------------------
def reparameterize_kl_reference(mu, log_var, b_mu, b_log_var, eps, z, hm):
    """Add the heads' biases, draw ``z``, take the KL to N(0, I); in place.

    On entry ``mu`` and ``log_var`` hold ``h @ W_mu`` and ``h @ W_log_var``; on
    return they include their biases, ``z = mu + exp(log_var / 2) * eps`` and
    ``hm = expm1(log_var / 2) = std - 1`` (what the backward pass needs: both
    ``std`` and ``expm1(log_var) = hm * (hm + 2)`` without cancellation).

    Parameters
    ----------
    mu, log_var, eps, z, hm : (N, K) arrays
    b_mu, b_log_var : (K,) arrays

    Returns
    -------
    float
        ``sum over examples of KL(q(z|x) || N(0, I))``, in nats.
    """
    mu += b_mu
    log_var += b_log_var
    np.expm1(0.5 * log_var, out=hm)
    np.multiply(hm + 1.0, eps, out=z)
    z += mu
    kl = 0.5 * (mu * mu + hm * (hm + 2.0) - log_var)
    return float(kl.sum(dtype=np.float64))


@_njit
def _reparameterize_kl(mu, lv, b_mu, b_lv, eps, z, hm, acc):
    N, K = mu.shape
    half = _F32(0.5)
    one = _F32(1.0)
    two = _F32(2.0)
    for k in range(K):
        acc[k] = _F32(0.0)
    for i in range(N):
        for k in range(K):
            m = mu[i, k] + b_mu[k]
            v = lv[i, k] + b_lv[k]
            mu[i, k] = m
            lv[i, k] = v
            h = _expm1(half * v)                   # std - 1
            hm[i, k] = h
            z[i, k] = m + (h + one) * eps[i, k]
            acc[k] += half * (m * m + h * (h + two) - v)
    total = 0.0
    for k in range(K):
        total += acc[k]
    return total


def reparameterize_kl(mu, log_var, b_mu, b_log_var, eps, z, hm, acc=None):
    """Fused :func:`reparameterize_kl_reference` (one pass; ``acc`` a (K,) float32 scratch)."""
    if _use_numba(mu, log_var, b_mu, b_log_var, eps, z, hm):
        if acc is None:
            acc = np.empty(mu.shape[1], dtype=np.float32)
        return float(_reparameterize_kl(mu, log_var, b_mu, b_log_var, eps, z, hm, acc))
    return reparameterize_kl_reference(mu, log_var, b_mu, b_log_var, eps, z, hm)


def reparameterize_kl_backward_reference(dz, eps, mu, hm, kl_scale, dmu, dlog_var, db_mu,
                                         db_log_var):
    """Gradients of ``loss = ... + kl_scale * sum(KL)`` through ``z`` and the KL.

    ``mu`` and ``log_var`` reach the loss twice, through ``z`` and through the KL:

    ``dmu = dz + kl_scale * mu``;
    ``dlog_var = dz * eps * std / 2 + kl_scale * expm1(log_var) / 2``.

    Parameters
    ----------
    dz, eps, mu, hm : (N, K) arrays (``hm = std - 1`` from the forward pass)
    kl_scale : float, ``beta / N`` for the batch mean of ``beta * KL``
    dmu, dlog_var : (N, K) arrays, written
    db_mu, db_log_var : (K,) arrays, receive the column sums (the heads' bias gradients)
    """
    s = mu.dtype.type(kl_scale)
    np.multiply(mu, s, out=dmu)
    dmu += dz
    std = hm + 1.0
    np.multiply(dz * eps, 0.5 * std, out=dlog_var)
    dlog_var += (0.5 * s) * (hm * (hm + 2.0))
    np.sum(dmu, axis=0, out=db_mu)
    np.sum(dlog_var, axis=0, out=db_log_var)


@_njit
def _reparameterize_kl_backward(dz, eps, mu, hm, kl_scale, dmu, dlv, db_mu, db_lv):
    N, K = dz.shape
    half = _F32(0.5)
    one = _F32(1.0)
    two = _F32(2.0)
    s = _F32(kl_scale)
    for k in range(K):
        db_mu[k] = _F32(0.0)
        db_lv[k] = _F32(0.0)
    for i in range(N):
        for k in range(K):
            h = hm[i, k]
            gm = dz[i, k] + s * mu[i, k]
            gv = dz[i, k] * eps[i, k] * (half * (h + one)) + (half * s) * (h * (h + two))
            dmu[i, k] = gm
            dlv[i, k] = gv
            db_mu[k] += gm
            db_lv[k] += gv


def reparameterize_kl_backward(dz, eps, mu, hm, kl_scale, dmu, dlog_var, db_mu, db_log_var):
    """Fused :func:`reparameterize_kl_backward_reference`."""
    if _use_numba(dz, eps, mu, hm, dmu, dlog_var, db_mu, db_log_var):
        _reparameterize_kl_backward(dz, eps, mu, hm, float(kl_scale), dmu, dlog_var, db_mu,
                                    db_log_var)
    else:
        reparameterize_kl_backward_reference(dz, eps, mu, hm, kl_scale, dmu, dlog_var, db_mu,
                                             db_log_var)


# -- Adam -----------------------------------------------------------------------------
def adam_update_reference(p, g, m, v, lr, b1, b2, eps, t):
    """Adam's update of ``p`` in place (and of the moments ``m``, ``v``), plain NumPy."""
    m *= b1
    m += (1.0 - b1) * g
    v *= b2
    v += (1.0 - b2) * (g * g)
    step = lr / (1.0 - b1**t)
    denom_scale = 1.0 / math.sqrt(1.0 - b2**t)
    p -= step * m / (np.sqrt(v) * denom_scale + eps)


@_njit
def _adam_update_numba(p, g, m, v, lr, b1, b2, eps, t):
    step = lr / (1.0 - b1**t)
    denom_scale = 1.0 / math.sqrt(1.0 - b2**t)
    # float32 constants keep the loop in single precision, as the reference is
    one_b1 = _F32(1.0 - b1)
    one_b2 = _F32(1.0 - b2)
    f_b1 = _F32(b1)
    f_b2 = _F32(b2)
    f_step = _F32(step)
    f_scale = _F32(denom_scale)
    f_eps = _F32(eps)
    tiny = _F32(1e-30)
    zero = _F32(0.0)
    for i in range(p.size):
        gi = g[i]
        mi = f_b1 * m[i] + one_b1 * gi
        vi = f_b2 * v[i] + one_b2 * (gi * gi)
        # Weights whose gradient is exactly 0 for many steps (those into and out of a
        # ReLU unit that no input activates, and those of a rarely inked pixel between
        # its images) see their moments decay geometrically into subnormal floats,
        # which many x86 processors compute on far more slowly, and in float32
        # 0.9 * m stops shrinking there (the speed chapter). A pixel that is never inked keeps
        # m = v = 0 exactly. Flushing
        # values below 1e-30 to 0, before they turn subnormal, changes the update by
        # less than 1e-22.
        mi = mi if abs(mi) >= tiny else zero
        vi = vi if vi >= tiny else zero
        m[i] = mi
        v[i] = vi
        p[i] -= f_step * mi / (np.sqrt(vi) * f_scale + f_eps)


def kernel_threads() -> int:
    """Threads the large elementwise kernels split over: ``VAE_NUMPY_THREADS``, else 1.

    One thread by default: measured on two cores, splitting Adam and the loss over
    both made a training step no faster (``bench --paths numba,numba-threads``;
    book/bench/variants.md), because the second core is where OpenBLAS's worker
    thread waits for the next GEMM (and, on a busy machine, where another program
    runs). The split never changes a result: each thread updates its own
    slice of the arrays.
    """
    value = os.environ.get("VAE_NUMPY_THREADS", "")
    return int(value) if value.isdigit() and int(value) > 0 else 1


_POOL = None


def _pool(workers: int):
    """A persistent thread pool for the kernels (numba releases the GIL: ``nogil=True``)."""
    global _POOL
    if _POOL is None or _POOL._max_workers < workers:
        from concurrent.futures import ThreadPoolExecutor

        _POOL = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="vae-numpy-kernel")
    return _POOL


_SPLIT_MIN = 1 << 17   # below ~130k elements one thread is faster than waking another


def run_split(fn, arg_lists) -> list:
    """``[fn(*args) for args in arg_lists]``, the last in this thread, the others in the pool.

    Each call must touch its own slice of the output arrays (numba releases the GIL,
    so the calls run at the same time). Results come back in order.
    """
    if len(arg_lists) == 1:
        return [fn(*arg_lists[0])]
    pool = _pool(len(arg_lists) - 1)
    futures = [pool.submit(fn, *args) for args in arg_lists[:-1]]
    last = fn(*arg_lists[-1])
    return [f.result() for f in futures] + [last]


def split_bounds(n: int, parts: int, align: int = 1) -> list[int]:
    """``parts + 1`` boundaries that cut ``range(n)`` into near-equal slices."""
    bounds = [n * i // parts for i in range(parts + 1)]
    return [b - b % align if 0 < b < n else b for b in bounds]


def adam_update(p, g, m, v, lr, b1, b2, eps, t, *, threads: int | None = None):
    """Adam's update over flat float32 buffers in one pass (numba), else the reference.

    Large buffers are split into ``threads`` slices (default :func:`kernel_threads`),
    the last one updated by the calling thread, the others by a thread pool; each
    element is computed exactly as with one thread.
    """
    if not (_use_numba(p, g, m, v) and p.ndim == 1):
        adam_update_reference(p, g, m, v, lr, b1, b2, eps, t)
        return
    args = (float(lr), float(b1), float(b2), float(eps), int(t))
    n = p.size
    k = kernel_threads() if threads is None else max(1, int(threads))
    k = min(k, max(1, n // _SPLIT_MIN))
    # slices start on 16-element boundaries so each thread's vector loop is aligned alike
    bounds = split_bounds(n, k, align=16)
    run_split(_adam_update_numba, [(p[lo:hi], g[lo:hi], m[lo:hi], v[lo:hi], *args)
                                   for lo, hi in zip(bounds[:-1], bounds[1:])])


# -- matmuls written in numba, measured against BLAS ----------------------------------
# Plain loops that LLVM vectorizes along the output row. Each keeps the innermost
# loop contiguous and unit-stride and reuses what it loads four times (four rows of
# the left operand, or four rows of the right one) to cut memory traffic; none of
# them reassociates a sum, so each output is added in a fixed order.
def matmul_reference(a, b, out):
    """``out = a @ b`` through the array module (BLAS for NumPy)."""
    return np.matmul(a, b, out=out)


@_inline
def _add4(o, a0, w0, a1, w1, a2, w2, a3, w3):
    """``o += a0 w0 + a1 w1 + a2 w2 + a3 w3`` along a row, in a fixed order."""
    for j in range(o.shape[0]):
        o[j] += (a0 * w0[j] + a1 * w1[j]) + (a2 * w2[j] + a3 * w3[j])


@_inline
def _add1(o, a0, w0):
    """``o += a0 w0`` along a row."""
    for j in range(o.shape[0]):
        o[j] += a0 * w0[j]


@_inline
def _relu_row(o):
    zero = _F32(0.0)
    for j in range(o.shape[0]):
        v = o[j]
        o[j] = zero if v < zero else v   # NaN stays NaN, as np.maximum does


@_njit
def _matmul_nn(a, w, b, out, act):
    """``out = act(a @ w + b)``: a (N, K), w (K, H), b (H,) or empty; act 0 none, 1 ReLU."""
    N, K = a.shape
    H = w.shape[1]
    has_bias = b.size == H
    zero = _F32(0.0)
    KB = 128                                   # a block of w's rows stays in L1/L2
    for i in range(N):
        o = out[i]
        if has_bias:
            for j in range(H):
                o[j] = b[j]
        else:
            for j in range(H):
                o[j] = zero
    for k0 in range(0, K, KB):
        k1 = min(k0 + KB, K)
        for i in range(N):
            o = out[i]
            ai = a[i]
            k = k0
            while k + 4 <= k1:
                a0 = ai[k]
                a1 = ai[k + 1]
                a2 = ai[k + 2]
                a3 = ai[k + 3]
                _add4(o, a0, w[k], a1, w[k + 1], a2, w[k + 2], a3, w[k + 3])
                k += 4
            while k < k1:
                _add1(o, ai[k], w[k])
                k += 1
    if act == 1:
        for i in range(N):
            _relu_row(out[i])


@_njit
def _matmul_tn(a, d, out):
    """``out = a.T @ d``: a (N, K), d (N, H), out (K, H) (a weight gradient)."""
    N, K = a.shape
    H = d.shape[1]
    zero = _F32(0.0)
    for k in range(K):
        o = out[k]
        for j in range(H):
            o[j] = zero
    i = 0
    while i + 4 <= N:
        d0 = d[i]
        d1 = d[i + 1]
        d2 = d[i + 2]
        d3 = d[i + 3]
        for k in range(K):
            a0 = a[i, k]
            a1 = a[i + 1, k]
            a2 = a[i + 2, k]
            a3 = a[i + 3, k]
            _add4(out[k], a0, d0, a1, d1, a2, d2, a3, d3)
        i += 4
    while i < N:
        d0 = d[i]
        for k in range(K):
            _add1(out[k], a[i, k], d0)
        i += 1


@_njit
def _transpose(w, wt):
    R, C = w.shape
    for r0 in range(0, R, 32):
        for c0 in range(0, C, 32):
            for r in range(r0, min(r0 + 32, R)):
                for c in range(c0, min(c0 + 32, C)):
                    wt[c, r] = w[r, c]


_EMPTY = np.zeros(0, dtype=np.float32)


def matmul_numba(a, b, out, *, bias=None, relu: bool = False, scratch=None):
    """``out = a @ b`` (+ ``bias``, then ReLU if asked) with the numba loops above.

    ``a`` and ``b`` may be C-contiguous or transposed views of C-contiguous
    arrays (``x.T``); a transposed right operand is copied once into ``scratch``
    (its shape, allocated when None), as a blocked GEMM would pack it.
    """
    if not (_use_numba(a, b, out) and out.flags.c_contiguous):
        raise ValueError("matmul_numba needs float32 NumPy arrays and a C-contiguous out")
    if a.flags.c_contiguous and b.flags.c_contiguous:
        _matmul_nn(a, b, _EMPTY if bias is None else bias, out, 1 if relu else 0)
        return out
    if a.flags.f_contiguous and b.flags.c_contiguous and bias is None and not relu:
        _matmul_tn(a.T, b, out)
        return out
    if a.flags.c_contiguous and b.flags.f_contiguous:
        if scratch is None:
            scratch = np.empty(b.shape, dtype=np.float32)
        _transpose(b.T, scratch)
        _matmul_nn(a, scratch, _EMPTY if bias is None else bias, out, 1 if relu else 0)
        return out
    raise ValueError("matmul_numba: unsupported operand layouts "
                     f"(a C={a.flags.c_contiguous}, b C={b.flags.c_contiguous})")


def matmul_bias_act_reference(a, w, b, out, relu: bool = True):
    """``out = act(a @ w + b)``: the GEMM in BLAS, then :func:`bias_act_reference`."""
    np.matmul(a, w, out=out)
    return bias_act_reference(out, b, relu)


def matmul_bias_act(a, w, b, out, relu: bool = True):
    """``out = act(a @ w + b)`` in numba: the bias written first, the sums added row by
    row (each row rewritten once per four terms), the activation applied last.

    Meant for a small inner dimension (the decoder's first layer reads K = 20 latent
    units), where BLAS's call overhead is large against the arithmetic. The
    benchmark's GEMM table compares it with BLAS plus NumPy's passes; against BLAS
    plus the one-pass :func:`bias_act` it is not faster (the speed chapter).
    """
    if (_use_numba(a, w, b, out) and a.flags.c_contiguous and w.flags.c_contiguous
            and out.flags.c_contiguous):
        _matmul_nn(a, w, b, out, 1 if relu else 0)
        return out
    return matmul_bias_act_reference(a, w, b, out, relu)


# -- the first layer's input is mostly zeros: skip the pixels no image in the batch uses --
def active_columns_reference(x):
    """Indices of the columns of ``x`` that hold a non-zero in some row, ascending (int64)."""
    return np.flatnonzero((x != 0).any(axis=0))


@_njit
def _active_columns(x, flags, cols):
    N, D = x.shape
    zero = _F32(0.0)
    for j in range(D):
        flags[j] = 0
    for i in range(N):
        row = x[i]
        for j in range(D):
            flags[j] |= row[j] != zero
    p = 0
    for j in range(D):
        if flags[j]:
            cols[p] = j
            p += 1
    return p


@_njit
def _gather_columns(x, cols, p, out):
    """``out[:, :p] = x[:, cols[:p]]`` with ``out`` a C-contiguous (N, p) array."""
    for i in range(x.shape[0]):
        row = x[i]
        o = out[i]
        for k in range(p):
            o[k] = row[cols[k]]


@_njit
def _gather_rows(w, cols, lo, hi, out):
    """``out[lo:hi] = w[cols[lo:hi]]``."""
    for k in range(lo, hi):
        src = w[cols[k]]
        dst = out[k]
        for j in range(w.shape[1]):
            dst[j] = src[j]


@_njit
def _scatter_rows(src, cols, p, r0, r1, out):
    """For rows ``r0 <= r < r1`` of ``out``: ``out[cols[k]] = src[k]``, other rows 0."""
    zero = _F32(0.0)
    k = np.searchsorted(cols[:p], r0)
    for r in range(r0, r1):
        o = out[r]
        if k < p and cols[k] == r:
            s = src[k]
            for j in range(out.shape[1]):
                o[j] = s[j]
            k += 1
        else:
            for j in range(out.shape[1]):
                o[j] = zero


def used_range_reference(x):
    """``(lo, hi)``: the smallest column range holding every non-zero of ``x`` ((0, 0) if none)."""
    cols = np.flatnonzero((x != 0).any(axis=0))
    return (int(cols[0]), int(cols[-1]) + 1) if cols.size else (0, 0)


@_njit
def used_range(x):
    """numba :func:`used_range_reference`: scans columns from both ends, stops early."""
    N, D = x.shape
    zero = _F32(0.0)
    lo = 0
    while lo < D:
        found = False
        for i in range(N):
            if x[i, lo] != zero:
                found = True
                break
        if found:
            break
        lo += 1
    if lo == D:
        return 0, 0
    hi = D
    while hi > lo:
        found = False
        for i in range(N):
            if x[i, hi - 1] != zero:
                found = True
                break
        if found:
            break
        hi -= 1
    return lo, hi


class ActiveColumns:
    """Compact the first layer to the pixels that are non-zero somewhere in the batch.

    On MNIST a pixel near the border is 0 in every image of a batch of 128 a third of
    the time, and a row of ``W1`` that meets only zeros adds nothing to ``x @ W1``
    and gets a zero gradient. So the two GEMMs of the first layer can run on
    ``x[:, cols]`` and ``W1[cols]`` (``p`` of ``D`` columns) with exactly the same
    result, up to the order in which BLAS adds the remaining products.

    Buffers for batches of up to ``n`` rows are allocated once.
    """

    def __init__(self, n: int, d: int, h: int, parts: int = 1):
        self.flags = np.empty(d, np.bool_)
        self.cols = np.empty(d, np.int64)
        self._x = np.empty(n * d, np.float32)
        self._w = np.empty(d * h, np.float32)
        self.p = d
        self.parts = max(1, parts)     # the row copies of W1 and dW1 split over threads

    def compact(self, x, w1):
        """``(x[:, cols], W1[cols])`` as C-contiguous views of the buffers."""
        n, d = x.shape
        h = w1.shape[1]
        p = self.p = int(_active_columns(x, self.flags, self.cols))
        xc = self._x[:n * p].reshape(n, p)
        wc = self._w[:p * h].reshape(p, h)
        _gather_columns(x, self.cols, p, xc)
        bounds = split_bounds(p, self.parts)
        run_split(_gather_rows, [(w1, self.cols, lo, hi, wc)
                                 for lo, hi in zip(bounds[:-1], bounds[1:])])
        return xc, wc

    def grad_view(self, h: int):
        """Where the compact weight gradient ``xc.T @ da`` goes: the (p, H) head of a buffer."""
        return self._w[:self.p * h].reshape(self.p, h)

    def scatter(self, dwc, dw1) -> None:
        """``dW1[cols] = dwc``; every other row of ``dW1`` to 0."""
        bounds = split_bounds(dw1.shape[0], self.parts)
        run_split(_scatter_rows, [(dwc, self.cols, self.p, lo, hi, dw1)
                                  for lo, hi in zip(bounds[:-1], bounds[1:])])


# -- sparse-aware GEMMs in numba (measured against BLAS by the benchmark) ------------
def csr_from_dense_reference(x):
    """Compressed sparse rows of ``x``: ``(indptr, indices, values)``, int64/int32/float32."""
    rows, cols = np.nonzero(x)
    indptr = np.zeros(x.shape[0] + 1, dtype=np.int64)
    np.cumsum(np.bincount(rows, minlength=x.shape[0]), out=indptr[1:])
    return indptr, cols.astype(np.int32), x[rows, cols].astype(np.float32)


@_njit
def _csr_from_dense(x, indptr, indices, values):
    k = 0
    for i in range(x.shape[0]):
        indptr[i] = k
        row = x[i]
        for j in range(x.shape[1]):
            v = row[j]
            if v != 0:
                indices[k] = j
                values[k] = v
                k += 1
    indptr[x.shape[0]] = k
    return k


def csr_from_dense(x, indptr=None, indices=None, values=None):
    """numba :func:`csr_from_dense_reference`, into preallocated buffers when given."""
    n = x.size
    if indptr is None:
        indptr = np.empty(x.shape[0] + 1, dtype=np.int64)
        indices = np.empty(n, dtype=np.int32)
        values = np.empty(n, dtype=np.float32)
    nnz = _csr_from_dense(x, indptr, indices, values)
    return indptr, indices[:nnz], values[:nnz]


@_njit
def _spmm_bias_act(indptr, indices, values, w, b, out, act):
    N = indptr.size - 1
    H = w.shape[1]
    for i in range(N):
        o = out[i]
        for j in range(H):
            o[j] = b[j]
        k = indptr[i]
        e = indptr[i + 1]
        while k + 4 <= e:
            _add4(o, values[k], w[indices[k]], values[k + 1], w[indices[k + 1]],
                  values[k + 2], w[indices[k + 2]], values[k + 3], w[indices[k + 3]])
            k += 4
        while k < e:
            _add1(o, values[k], w[indices[k]])
            k += 1
        if act == 1:
            _relu_row(o)


def spmm_bias_act(csr, w, b, out, relu: bool = True):
    """``out = act(x @ w + b)`` for ``x`` given as CSR: only the non-zero pixels are read.

    The reference is :func:`matmul_bias_act_reference` on the dense ``x``.
    """
    indptr, indices, values = csr
    _spmm_bias_act(indptr, indices, values, w, b, out, 1 if relu else 0)
    return out


@_njit
def _spmm_tn(indptr, indices, values, d, out):
    N = indptr.size - 1
    H = d.shape[1]
    zero = _F32(0.0)
    for r in range(out.shape[0]):
        o = out[r]
        for j in range(H):
            o[j] = zero
    for i in range(N):
        di = d[i]
        for k in range(indptr[i], indptr[i + 1]):
            _add1(out[indices[k]], values[k], di)


def spmm_tn(csr, d, out):
    """``out = x.T @ d`` for ``x`` given as CSR (the first layer's weight gradient)."""
    indptr, indices, values = csr
    _spmm_tn(indptr, indices, values, d, out)
    return out
