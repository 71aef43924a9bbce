"""A SIMULATION of CuPy's host/device semantics, for the test suite. Not a GPU test.

Nothing here touches a GPU: every "device" array is a NumPy array wrapped in
:class:`ndarray`, and every operation is NumPy's, so results are NumPy's to the bit.
What it reproduces is CuPy's *rules* about the boundary between host (NumPy) and
device (CuPy) memory, so that code which would fail on a GPU fails here too:

Refused, as CuPy refuses them (checked against ``cupy/_core/core.pyx``,
``_routines_indexing.pyx`` and ``_kernel.pyx``):

* implicit conversion to NumPy: ``np.asarray(a)``, ``np.array(a)`` and anything that
  calls ``a.__array__`` raise ``TypeError("Implicit conversion to a NumPy array is not
  allowed. ...")``; so does a NumPy function with no CuPy counterpart of the same name
  (``__array_function__`` returns NotImplemented and NumPy raises TypeError);
* a host array inside a device operation: ``device + host``, ``host * device``,
  ``device @ host``, ``cupy.exp(host)``, ``cupy.where(host, ...)``, a NumPy ufunc given
  both kinds, ``device += host``, ``out=`` a host array: ``TypeError("Unsupported type
  <class 'numpy.ndarray'>")`` (a CuPy kernel's argument check);
* writing a host array into a device array by basic indexing, ``d[...] = host`` or
  ``d[:] = host`` (CuPy's ``fill`` path): ``ValueError("non-scalar numpy.ndarray cannot
  be used for fill")``;
* ``bool`` of an array with more than one element (ValueError), iterating a 0-d array
  and ``len`` of one (TypeError).

Allowed, as CuPy allows them (each one copies or synchronizes on a real GPU):

* ``float()``, ``int()``, ``complex()``, ``bool()`` of a one-element array, ``.item()``,
  ``.tolist()``, ``.get()``, ``cupy.asnumpy``, ``repr``/``str``/``format``;
* ``cupy.asarray``/``cupy.array`` of a NumPy array, list or scalar (host to device);
* Python and NumPy *scalars* (``np.float32(2)``) in any operation, a 0-d NumPy array in
  a comparison, and ``d[...] = host_0d``;
* NumPy or list *indices*: ``d[np.array([0, 3])]`` and advanced-index assignment of a
  host array (CuPy copies them to the device);
* a NumPy ufunc or function called on device arrays only (``np.exp(d)``,
  ``np.sum(d)``): dispatched to the module function of the same name, as CuPy's
  ``__array_ufunc__``/``__array_function__`` do, returning a device array.

Reductions return 0-d device arrays, never NumPy scalars, as CuPy's do. Only the
functions the library calls are provided (``FUNCTIONS`` below); calling any other
raises AttributeError, so a new ``xp.`` call in the library shows up here first.

``cuda.runtime.getDeviceCount()`` reports one device, so
:func:`vae_numpy.backend.cupy_available` accepts this module. The fixture
``fake_cupy`` (``tests/conftest.py``) installs it as ``sys.modules["cupy"]`` for the
tests that ask for it.
"""

from __future__ import annotations

import sys
import types

import numpy

SIMULATION = True  # what this module is: never a GPU
IMPLICIT = ("Implicit conversion to a NumPy array is not allowed. "
            "Please use `.get()` to construct a NumPy array explicitly.")

def _unsupported(x):
    return TypeError(f"Unsupported type {type(x)}")


def _dev(x):
    """An operand of a device operation: a device array's data, or a scalar as is."""
    if isinstance(x, ndarray):
        return x._a
    if isinstance(x, numpy.ndarray):
        raise _unsupported(x)          # a host array inside a device kernel
    if isinstance(x, (list, tuple)):   # e.g. concatenate([a, b]): each must be on device
        return type(x)(_dev(v) for v in x)
    return x                           # scalars, and what is not data: axes, dtypes, None


def _wrap(r):
    """A NumPy result as a device result: arrays and NumPy scalars become ndarray."""
    if isinstance(r, numpy.ndarray):
        return ndarray._of(r)
    if isinstance(r, numpy.generic):
        return ndarray._of(numpy.asarray(r))
    if isinstance(r, tuple):
        return tuple(_wrap(v) for v in r)
    return r


def _index(key):
    """An index into a device array: device arrays, NumPy arrays and lists all allowed."""
    if isinstance(key, tuple):
        return tuple(_index(k) for k in key)
    if isinstance(key, ndarray):
        return key._a
    return key


def _has_array_index(key) -> bool:
    keys = key if isinstance(key, tuple) else (key,)
    return any(isinstance(k, (ndarray, numpy.ndarray, list)) for k in keys)


class ndarray:
    """A "device" array: a NumPy array that refuses to become one implicitly."""

    __slots__ = ("_a",)
    __array_priority__ = 100

    def __init__(self, shape, dtype=float, order="C"):
        self._a = numpy.empty(shape, dtype=dtype, order=order)

    @classmethod
    def _of(cls, a: numpy.ndarray) -> ndarray:
        out = cls.__new__(cls)
        out._a = a
        return out

    # -- the boundary ------------------------------------------------------------------
    def __array__(self, dtype=None, copy=None):
        raise TypeError(IMPLICIT)

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        if method != "__call__":
            return NotImplemented
        func = FUNCTIONS.get(ufunc.__name__)
        if func is None:
            return NotImplemented
        if "out" in kwargs:
            (out,) = kwargs["out"]
            kwargs["out"] = out
        if ufunc.__name__ in _COMPARISONS:   # CuPy's workaround: a 0-d host array is a scalar
            inputs = tuple(x.item() if isinstance(x, numpy.ndarray) and x.ndim == 0 else x
                           for x in inputs)
        return func(*inputs, **kwargs)

    def __array_function__(self, func, types_, args, kwargs):
        ours = FUNCTIONS.get(func.__name__)
        if ours is None or not all(issubclass(t, (ndarray, numpy.ndarray)) for t in types_):
            return NotImplemented
        return ours(*args, **kwargs)

    def get(self, stream=None, order="C", out=None) -> numpy.ndarray:
        """A copy on the host, as NumPy."""
        if out is not None:
            out[...] = self._a
            return out
        return numpy.array(self._a, order=order, copy=True)

    def set(self, arr, stream=None) -> None:
        if not isinstance(arr, numpy.ndarray):
            raise TypeError("Only numpy.ndarray can be set to cupy.ndarray")
        if arr.dtype != self.dtype:
            raise TypeError(f"{arr.dtype} array cannot be set to {self.dtype} array")
        if arr.shape != self.shape:
            raise ValueError(f"Shape mismatch. Old shape: {self.shape}, new shape: {arr.shape}")
        self._a[...] = arr

    def item(self):
        if self._a.size != 1:
            raise ValueError("can only convert an array of size 1 to a Python scalar")
        return self._a.item()

    def tolist(self):
        return self._a.tolist()

    def __float__(self):
        return float(self.get())

    def __int__(self):
        return int(self.get())

    def __complex__(self):
        return complex(self.get())

    def __bool__(self):
        if self._a.size == 1:
            return bool(self.get())
        if self._a.size == 0:
            return False
        raise ValueError("The truth value of an array with more than one element is "
                         "ambiguous. Use a.any() or a.all()")

    def __repr__(self):
        return repr(self.get())

    def __str__(self):
        return str(self.get())

    def __format__(self, spec):
        return format(self.get(), spec)

    # -- attributes ----------------------------------------------------------------------
    shape = property(lambda self: self._a.shape)
    dtype = property(lambda self: self._a.dtype)
    ndim = property(lambda self: self._a.ndim)
    size = property(lambda self: self._a.size)
    itemsize = property(lambda self: self._a.itemsize)
    nbytes = property(lambda self: self._a.nbytes)
    strides = property(lambda self: self._a.strides)
    flags = property(lambda self: self._a.flags)
    T = property(lambda self: ndarray._of(self._a.T))
    device = property(lambda self: cuda.Device(0))

    @property
    def base(self):
        return None if self._a.base is None else ndarray._of(self._a.base)

    # -- containers ----------------------------------------------------------------------
    def __len__(self):
        if self._a.ndim == 0:
            raise TypeError("len() of unsized object")
        return len(self._a)

    def __iter__(self):
        if self._a.ndim == 0:
            raise TypeError("iteration over a 0-d array")
        return (self[i] for i in range(self._a.shape[0]))

    def __getitem__(self, key):
        return _wrap(self._a[_index(key)])

    def __setitem__(self, key, value):
        if isinstance(value, numpy.ndarray):
            if not _has_array_index(key) and value.shape != ():
                # basic indexing with a host value goes through CuPy's fill
                raise ValueError("non-scalar numpy.ndarray cannot be used for fill")
            self._a[_index(key)] = value       # advanced indexing copies it to the device
            return
        self._a[_index(key)] = _dev(value)

    # -- methods ---------------------------------------------------------------------------
    def astype(self, dtype, order="K", casting=None, subok=None, copy=True):
        return ndarray._of(self._a.astype(dtype, order=order, copy=copy))

    def copy(self, order="C"):
        return ndarray._of(self._a.copy(order=order))

    def reshape(self, *shape, order="C"):
        return ndarray._of(self._a.reshape(*shape, order=order))

    def ravel(self, order="C"):
        return ndarray._of(self._a.ravel(order=order))

    def transpose(self, *axes):
        return ndarray._of(self._a.transpose(*axes))

    def squeeze(self, axis=None):
        return ndarray._of(self._a.squeeze(axis))

    def view(self, dtype=None):
        return ndarray._of(self._a.view() if dtype is None else self._a.view(dtype))

    def fill(self, value):
        if isinstance(value, numpy.ndarray):
            if value.shape != ():
                raise ValueError("non-scalar numpy.ndarray cannot be used for fill")
            value = value.item()
        self._a.fill(_dev(value))

    def dot(self, b, out=None):
        return FUNCTIONS["matmul"](self, b, out=out)

    __hash__ = None  # reductions and operators: added below the class

    def __neg__(self):
        return ndarray._of(-self._a)

    def __pos__(self):
        return self

    def __abs__(self):
        return ndarray._of(abs(self._a))

    def __invert__(self):
        return ndarray._of(~self._a)


def _reduction(name):
    def method(self, *args, **kwargs):
        return _wrap(getattr(self._a, name)(*(_dev(a) for a in args),
                                            **{k: _dev(v) if k == "out" else v
                                               for k, v in kwargs.items()}))
    method.__name__ = name
    return method


def _operator(name, *, inplace=False, comparison=False):
    op = getattr(numpy.ndarray, name)

    def method(self, other):
        if comparison and isinstance(other, numpy.ndarray) and other.ndim == 0:
            other = other.item()   # CuPy takes a 0-d host array in a comparison as a scalar
        out = op(self._a, _dev(other))
        return self if inplace else _wrap(out)
    method.__name__ = name
    return method


for _name in ("sum", "mean", "var", "std", "max", "min", "prod", "all", "any", "argmax",
              "argmin", "cumsum", "clip"):
    setattr(ndarray, _name, _reduction(_name))
# Operators: each operand must be on the device, or a scalar.
for _name in ("add", "sub", "mul", "truediv", "floordiv", "mod", "pow", "matmul",
              "and", "or", "xor", "lshift", "rshift"):
    setattr(ndarray, f"__{_name}__", _operator(f"__{_name}__"))
    setattr(ndarray, f"__r{_name}__", _operator(f"__r{_name}__"))
    setattr(ndarray, f"__i{_name}__", _operator(f"__i{_name}__", inplace=True))
for _name in ("lt", "le", "eq", "ne", "gt", "ge"):
    setattr(ndarray, f"__{_name}__", _operator(f"__{_name}__", comparison=True))
del _name
ndarray.__module__ = "cupy"      # as type(cupy_array).__module__: vae_numpy.backend reads it
ndarray.__qualname__ = "ndarray"

_COMPARISONS = ("greater", "greater_equal", "less", "less_equal", "equal", "not_equal")


# -- module functions ---------------------------------------------------------------------
def _device_function(np_func):
    """``np_func`` on device arrays only: a host array among the arguments is refused."""
    def func(*args, **kwargs):
        return _wrap(np_func(*(_dev(a) for a in args),
                             **{k: _dev(v) if k == "out" else v for k, v in kwargs.items()}))
    func.__name__ = np_func.__name__
    func.__doc__ = f"cupy.{np_func.__name__}, simulated with numpy.{np_func.__name__}."
    return func


def asarray(a, dtype=None, order=None):
    """Host to device (a copy on a real GPU); a device array is returned as it is."""
    if isinstance(a, ndarray):
        return a if dtype is None else a.astype(dtype, copy=False)
    return ndarray._of(numpy.array(a, dtype=dtype, order=order or "K", copy=True))


def array(obj, dtype=None, copy=True, order="K", ndmin=0):
    if isinstance(obj, ndarray):
        return ndarray._of(numpy.array(obj._a, dtype=dtype, copy=copy, order=order, ndmin=ndmin))
    return ndarray._of(numpy.array(obj, dtype=dtype, copy=True, order=order, ndmin=ndmin))


def asnumpy(a, stream=None, order="C", out=None):
    """Device to host; a host value is passed to ``numpy.asarray``, as CuPy does."""
    if isinstance(a, ndarray):
        return a.get(stream=stream, order=order, out=out)
    return numpy.asarray(a, order=order)


def get_array_module(*args):
    return sys.modules[__name__] if any(isinstance(a, ndarray) for a in args) else numpy


def _creation(np_func):
    def func(*args, **kwargs):
        return ndarray._of(np_func(*args, **kwargs))
    func.__name__ = np_func.__name__
    return func


def _like(np_func):
    def func(a, *args, **kwargs):
        return ndarray._of(np_func(_dev(a), *args, **kwargs))
    func.__name__ = np_func.__name__
    return func


def ndim(a):
    return _dev(a).ndim if isinstance(a, (ndarray, numpy.ndarray)) else numpy.ndim(a)


def shape(a):
    return _dev(a).shape if isinstance(a, (ndarray, numpy.ndarray)) else numpy.shape(a)


_UFUNCS = ("add", "subtract", "multiply", "divide", "true_divide", "floor_divide", "power",
           "negative", "absolute", "abs", "sign", "exp", "expm1", "log", "log1p", "sqrt",
           "square", "tanh", "maximum", "minimum", "isfinite", "isnan", "isinf",
           "logical_and", "logical_or", "logical_not", "matmul", *_COMPARISONS)
_ROUTINES = ("where", "clip", "broadcast_to", "sum", "mean", "var", "std", "concatenate",
             "stack", "dot", "reshape", "transpose", "ascontiguousarray", "all", "any",
             "amax", "amin", "max", "min", "logaddexp", "allclose", "array_equal")
FUNCTIONS: dict = {name: _device_function(getattr(numpy, name)) for name in _UFUNCS + _ROUTINES}
FUNCTIONS.update({f.__name__: _creation(f) for f in (numpy.zeros, numpy.ones, numpy.empty,
                                                     numpy.full, numpy.arange)})
FUNCTIONS.update({f.__name__: _like(f) for f in (numpy.zeros_like, numpy.ones_like,
                                                 numpy.empty_like, numpy.full_like)})
FUNCTIONS.update(asarray=asarray, array=array, asnumpy=asnumpy, ndim=ndim, shape=shape,
                 get_array_module=get_array_module)


def __getattr__(name):
    """``cupy.exp`` and the rest: the module's functions are the entries of FUNCTIONS."""
    try:
        return FUNCTIONS[name]
    except KeyError:
        raise AttributeError(f"the CuPy stand-in has no {name!r}: add it to FUNCTIONS in "
                             f"tests/fake_cupy.py if the library needs it") from None

# dtypes are NumPy's, as in CuPy
float16, float32, float64 = numpy.float16, numpy.float32, numpy.float64
int8, int16, int32, int64 = numpy.int8, numpy.int16, numpy.int32, numpy.int64
uint8, bool_, dtype, newaxis = numpy.uint8, numpy.bool_, numpy.dtype, numpy.newaxis
pi, inf, nan, e = numpy.pi, numpy.inf, numpy.nan, numpy.e


# -- the device queries vae_numpy.backend.cupy_available uses --------------------------------
class _Device:
    def __init__(self, device: int = 0):
        self.id = int(device)

    def synchronize(self) -> None:
        """Nothing runs asynchronously here."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


cuda = types.SimpleNamespace(
    runtime=types.SimpleNamespace(getDeviceCount=lambda: 1, getDevice=lambda: 0,
                                  runtimeGetVersion=lambda: 0),
    Device=_Device,
    is_available=lambda: True,
)
__version__ = "0.0.0+simulation"


def install(modules: dict) -> types.ModuleType:
    """Put this module into ``modules`` (``sys.modules``) as ``cupy``; return it."""
    modules["cupy"] = sys.modules[__name__]
    return modules["cupy"]
