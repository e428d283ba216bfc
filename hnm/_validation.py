"""One home for argument checks shared by the numpy API and the estimators.

Every check names the offending argument in its message, raises ``TypeError`` for
a value of the wrong kind and ``ValueError`` for a value of the right kind that is
out of range, and never copies or modifies an array it is given.
"""
import numbers

import numpy as np

__all__ = [
    "check_real_array",
    "check_int",
    "check_chunk_size",
    "check_option",
    "working_dtype",
    "as_working",
    "is_native",
    "check_fraction",
    "check_positive_real",
    "check_finite_1d",
    "check_indices",
    "as_csr",
    "describe_labels",
    "check_label_present",
]

# float64 represents every integer up to 2**53 exactly; larger int64/uint64
# magnitudes would be rounded, changing the order of distinct values.
_EXACT_INT_LIMIT = 2**53


def _nullable_frame(frame, arr):
    """A DataFrame of pandas' nullable numeric columns (Int64, Float64, boolean) as
    numbers (``np.asarray`` gives objects); pd.NA becomes NaN, which the callers'
    NaN checks then name. Any other frame: ``arr`` unchanged."""
    try:
        dtypes = [np.dtype(getattr(d, "numpy_dtype", d)) for d in frame.dtypes]
    except TypeError:  # a column numpy has no dtype for (categorical, ...)
        return arr
    if not dtypes or any(d.kind not in "biuf" for d in dtypes):
        return arr
    dtype = np.result_type(*dtypes)
    if bool(frame.isna().to_numpy().any()):
        return frame.to_numpy(dtype=np.result_type(dtype, np.float64), na_value=np.nan)
    return frame.to_numpy(dtype=dtype)


def check_real_array(a, name, *, min_ndim=1, max_ndim=None):
    """Return ``a`` as an ndarray of a real dtype, without copying it.

    Lists and other array-likes are converted; ndarrays and memmaps are returned
    as views. Complex, object, string, datetime dtypes and scipy sparse matrices
    (which numpy would wrap in a 0-d object array) raise ``TypeError``.
    """
    if _is_sparse(a):
        raise TypeError(
            f"{name} is a scipy sparse {type(a).__name__}, which is not supported here: "
            f"pass a dense array ({name}.toarray()) if it fits in memory."
        )
    try:
        arr = np.asarray(a)
    except (ValueError, TypeError) as exc:  # ragged lists and the like
        raise TypeError(f"{name} must be a numeric array-like; {exc}") from None
    if arr.dtype.kind == "O" and hasattr(a, "dtypes") and hasattr(a, "to_numpy"):
        arr = _nullable_frame(a, arr)
    if arr.dtype.kind not in "biuf":
        raise TypeError(
            f"{name} must have a real (bool, integer or floating) dtype, "
            f"got dtype {arr.dtype}."
        )
    if arr.dtype.kind == "f" and arr.dtype.itemsize > 8:
        raise TypeError(f"{name} has dtype {arr.dtype}, which would be rounded: convert "
                        "it to float64 first.")
    if arr.ndim < min_ndim:
        raise ValueError(f"{name} must be at least {min_ndim}-D, got a {arr.ndim}-D array.")
    if max_ndim is not None and arr.ndim > max_ndim:
        raise ValueError(f"{name} must be at most {max_ndim}-D, got a {arr.ndim}-D array.")
    return arr


def _is_sparse(a):
    """True for scipy sparse matrices and arrays, without importing scipy."""
    module = type(a).__module__ or ""
    return module.startswith("scipy.sparse") and hasattr(a, "toarray")


def check_int(value, name, *, min_value=None, max_value=None, allow_none=False):
    """Validate an integer argument (bools are refused) and return it as ``int``."""
    if value is None and allow_none:
        return None
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {value!r}.")
    value = int(value)
    if min_value is not None and value < min_value:
        raise ValueError(f"{name} must be >= {min_value}, got {value}.")
    if max_value is not None and value > max_value:
        raise ValueError(f"{name} must be <= {max_value}, got {value}.")
    return value


def check_chunk_size(chunk_size, default):
    """Validate ``chunk_size`` (a positive int or None for ``default``)."""
    if chunk_size is None:
        return default
    return check_int(chunk_size, "chunk_size", min_value=1)


def check_option(value, name, options):
    """Validate that ``value`` is one of ``options`` (a tuple of strings)."""
    if not isinstance(value, str) or value not in options:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, options))}; got {value!r}.")
    return value


def working_dtype(dtype):
    """The floating dtype the kernels compute in for an input of ``dtype``.

    float32 and float64 in native byte order are read as they are. Other real
    dtypes are converted chunk by chunk: float16 and byte-swapped float32 to
    float32 (exact), bool, integers and byte-swapped float64 to float64 (exact
    for integers of magnitude up to 2**53; larger ones raise ``ValueError`` when
    seen). Extended-precision floats raise ``TypeError`` rather than be rounded.
    """
    dtype = np.dtype(dtype)
    if dtype.kind == "f":
        if dtype.itemsize <= 4:
            return np.dtype(np.float32)
        if dtype.itemsize == 8:
            return np.dtype(np.float64)
        raise TypeError(f"dtype {dtype} is not supported: convert it to float64 first.")
    if dtype.kind in "biu":
        return np.dtype(np.float64)
    raise TypeError(f"dtype {dtype} is not supported.")


def is_native(arr):
    """True if the kernels can read ``arr`` as it is (float32/64, native order)."""
    return arr.dtype in (np.float32, np.float64) and arr.dtype.isnative


def as_working(block, dtype, name):
    """Copy ``block`` (a bounded piece of a larger array) to C-contiguous ``dtype``."""
    if block.dtype.kind in "iu" and block.dtype.itemsize == 8 and block.size:
        if block.max() > _EXACT_INT_LIMIT or (
            block.dtype.kind == "i" and block.min() < -_EXACT_INT_LIMIT
        ):
            raise ValueError(
                f"{name} holds integers beyond +/-2**53, which float64 cannot "
                "represent exactly; convert them to float64 yourself if rounding is fine."
            )
    return np.ascontiguousarray(block, dtype=dtype)


def check_fraction(value, name, *, low=0.0, high=1.0, low_open=True, high_open=False):
    """Validate a real number in an interval, (0, 1] by default."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {value!r}.")
    value = float(value)
    below = value <= low if low_open else value < low
    above = value >= high if high_open else value > high
    if not np.isfinite(value) or below or above:
        interval = f"{'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
        raise ValueError(f"{name} must be in {interval}, got {value!r}.")
    return value


def check_real(value, name):
    """Validate a finite real number and return it as ``float``."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {value!r}.")
    if not np.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}.")
    return float(value)


def check_positive_real(value, name, *, allow_zero=False):
    """Validate a finite real number > 0 (or >= 0 with ``allow_zero``)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {value!r}.")
    value = float(value)
    if not np.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        raise ValueError(f"{name} must be a finite number {'>=' if allow_zero else '>'} 0, "
                         f"got {value!r}.")
    return value


def check_finite_1d(a, name):
    """Return ``a`` as a 1-D real ndarray with finite values (no copy when possible)."""
    arr = check_real_array(a, name, max_ndim=1)
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        raise ValueError(f"{name} contains NaN or infinity.")
    return arr


def check_indices(indices, n, name):
    """Return ``indices`` as a 1-D integer ndarray of positions in ``[0, n)``.

    A list or array of another kind (floats, 2-D) raises ``TypeError``, a
    position outside the range ``ValueError``; an empty one is returned as intp.
    """
    arr = np.asarray(indices)
    if arr.size == 0 and arr.ndim == 1:
        return arr.astype(np.intp)
    if arr.ndim != 1 or arr.dtype.kind not in "iu":
        raise TypeError(f"{name} must be a 1-D array of integers, got "
                        f"{arr.ndim}-D dtype {arr.dtype}.")
    if arr.min() < 0 or arr.max() >= n:
        raise ValueError(f"{name} must lie in [0, {n}).")
    return arr


def describe_labels(labels, limit=10):
    """``'a', 'b'`` for a message: the distinct labels present, the first ``limit``."""
    labels = list(labels)
    shown = ", ".join(repr(v.item() if isinstance(v, np.generic) else v)
                      for v in labels[:limit])
    return shown + (f", ... ({len(labels)} labels)" if len(labels) > limit else "")


def check_label_present(label, present, name, y_name="y_true"):
    """Raise ``ValueError`` naming ``name`` when ``label`` cannot be a label of
    ``y_name``, whose sorted distinct labels are ``present``: absent although two
    labels are present (the classic default ``pos_label=1`` with labels
    ``'no'``/``'yes'``, which would silently count every example as the other
    class), or of another kind (a number among strings). An absent label of the
    right kind next to a single present one is a subset of one class: allowed."""
    present = np.asarray(present)
    if present.size == 0 or label in present.tolist():
        return
    is_text = isinstance(label, (str, bytes, np.str_, np.bytes_))
    other_kind = is_text != (present.dtype.kind in "USO" and isinstance(
        present.tolist()[0], (str, bytes)))
    if present.size >= 2 or other_kind:
        raise ValueError(f"{name}={label!r} is not a label of {y_name} (labels present: "
                         f"{describe_labels(present)}); pass {name} as one of them.")


def as_csr(ids, n_rows, n_cols, name):
    """Per-row id sets given as a 1-D int array (one id per row), a list of
    arrays or an ``(indptr, indices)`` pair; returned as CSR ``(indptr, indices)``
    with ids checked to lie in ``[0, n_cols)``."""
    if isinstance(ids, tuple) and len(ids) == 2 and not np.isscalar(ids[0]):
        indptr = np.asarray(ids[0])
        indices = np.asarray(ids[1])
        if indptr.ndim != 1 or indptr.size != n_rows + 1 or indices.ndim != 1:
            raise ValueError(f"{name} as (indptr, indices) needs indptr of length {n_rows + 1}.")
        if indptr[0] != 0 or np.any(np.diff(indptr) < 0) or indptr[-1] != indices.size:
            raise ValueError(f"{name} indptr must start at 0, not decrease and end at "
                             "len(indices).")
    else:
        if isinstance(ids, np.ndarray) and ids.ndim == 1 and ids.dtype.kind in "iu":
            indptr = np.arange(n_rows + 1)
            indices = ids
            if ids.size != n_rows:
                raise ValueError(f"{name} must have one id per query ({n_rows}), got {ids.size}.")
        else:
            try:
                rows = list(ids)
            except TypeError:
                raise TypeError(f"{name} must be a 1-D int array, a list of id arrays or an "
                                f"(indptr, indices) pair, got {type(ids).__name__}.") from None
            if len(rows) != n_rows:
                raise ValueError(f"{name} must have one entry per query ({n_rows}), "
                                 f"got {len(rows)}.")
            rows = [np.atleast_1d(np.asarray(r)) for r in rows]
            rows = [r.astype(np.intp) if r.size == 0 else r.ravel() for r in rows]
            lengths = np.array([r.size for r in rows], dtype=np.intp)
            indptr = np.concatenate([[0], np.cumsum(lengths)])
            indices = np.concatenate(rows) if rows else np.empty(0, dtype=np.intp)
            if indices.size == 0:
                indices = indices.astype(np.intp)
    if indices.size and indices.dtype.kind not in "iu":
        raise TypeError(f"{name} must hold integer candidate ids.")
    indices = indices.astype(np.intp, copy=False)
    if indices.size and (indices.min() < 0 or indices.max() >= n_cols):
        raise ValueError(f"{name} ids must lie in [0, {n_cols}).")
    return indptr.astype(np.intp, copy=False), indices
