"""Selecting the hardest examples from difficulty scores.

``topk`` is the streaming selection every other strategy builds on: it reads each
score once, keeps bounded heaps, and breaks ties by the smaller index so that a
result never depends on chunk sizes or thread counts.
"""
from collections import namedtuple
import math

import numpy as np

from . import _topk
from ._openmp_helpers import openmp_max_threads
from ._validation import (
    as_working,
    check_chunk_size,
    check_int,
    check_option,
    check_real_array,
    is_native,
    working_dtype,
)

__all__ = ["TopK", "topk"]

TopK = namedtuple("TopK", ["values", "indices"])
TopK.__doc__ = """Result of :func:`topk`: ``values`` and their ``indices``, hardest first."""

# Values per chunk: the unit in which threads share the work and in which inputs
# that need a conversion (other dtypes, non-contiguous layouts) are copied.
# 2**20 float64 values are 8 MiB, small next to RAM and large next to the heaps.
DEFAULT_CHUNK_SIZE = 2**20


def topk(scores, k=None, *, largest=True, axis=None, band=None, chunk_size=None,
         nan_policy="raise"):
    """Select the ``k`` largest (or smallest) scores, streaming, ties by smaller index.

    Every score is read exactly once and the extra memory is O(k + chunk_size)
    (per thread), never O(n), so ``scores`` can be an ``np.memmap`` much larger
    than RAM.

    Parameters
    ----------
    scores : array-like
        Difficulty scores. With ``axis=None`` any shape, read in C order
        (returned indices are then flat indices, as for ``np.ravel``). With
        ``axis=-1`` (or 1) a 2-D array whose rows are searched separately, in
        parallel; ``axis=0`` searches the columns. float32 and float64 are read
        without copying; float16 is converted to float32 and bool and integer
        dtypes to float64, one chunk at a time (integers beyond +/-2**53, which
        float64 would round, raise ``ValueError``). Complex, object and string
        dtypes raise ``TypeError``.
    k : int, optional
        How many scores to select, ``1 <= k <= n`` where ``n`` is the number of
        scores searched (per row with an axis). Exactly one of ``k`` and
        ``band`` must be given.
    largest : bool, default=True
        Select the largest scores (hardest first for "higher is harder" scores);
        False selects the smallest, smallest first.
    axis : {None, -1, 0, 1}, default=None
        None flattens; an integer selects along that axis of a 1-D or 2-D input.
    band : tuple of (int, int or None), optional
        ``(start, stop)``: return ranks ``start .. stop-1`` (0-based, hardest is
        rank 0) instead of the top ``k``, e.g. ``band=(100, 500)`` for the "ranks
        101-500" negatives of Meta's embedding-based retrieval. ``stop=None``
        means ``n``. Memory is O(stop).
    chunk_size : int, optional
        Number of values per unit of work (default 2**20). It changes speed and
        memory only, never the result.
    nan_policy : {"raise", "omit"}, default="raise"
        NaN scores are found in the same pass. "raise" raises ``ValueError``;
        "omit" never selects them. If fewer than ``stop`` non-NaN scores remain,
        the missing places are padded with value NaN and index -1.

    Returns
    -------
    TopK
        Named tuple ``(values, indices)``: with ``axis=None`` arrays of shape
        (k,); with an axis, of shape (n_rows, k). ``values`` has the dtype of
        ``scores`` (float64 for bool/integer scores only when padding needs NaN),
        ``indices`` is ``np.intp``. Ordered hardest first: by value (descending
        if ``largest`` else ascending), then by smaller index.

    Examples
    --------
    >>> import numpy as np
    >>> import hnm
    >>> losses = np.array([0.1, 2.0, 0.5, 2.0, 0.05])
    >>> hnm.topk(losses, 2)
    TopK(values=array([2., 2.]), indices=array([1, 3]))
    >>> hnm.topk(losses, band=(1, 3)).indices
    array([3, 2])
    >>> hnm.topk([[3, 1, 2], [0, 5, 4]], 1, axis=-1, largest=False).indices
    array([[1],
           [0]])
    """
    x = check_real_array(scores, "scores")
    if not isinstance(largest, (bool, np.bool_)):
        raise TypeError(f"largest must be a bool, got {largest!r}.")
    nan_policy = check_option(nan_policy, "nan_policy", ("raise", "omit"))
    chunk_size = check_chunk_size(chunk_size, DEFAULT_CHUNK_SIZE)
    if axis is not None:
        if isinstance(axis, (bool, np.bool_)) or not isinstance(axis, (int, np.integer)):
            raise TypeError(f"axis must be None or an integer, got {axis!r}.")
        if x.ndim > 2:
            raise ValueError(
                f"axis must be None for a {x.ndim}-D scores array; "
                "an integer axis needs a 1-D or 2-D array."
            )
        if not -x.ndim <= axis < x.ndim:
            raise ValueError(f"axis {axis} is out of bounds for a {x.ndim}-D scores array.")
        axis = int(axis) % x.ndim
        if x.ndim == 1:
            axis = None
        elif axis == 0:
            x = x.T
    n = x.size if axis is None else x.shape[1]
    start, stop = _check_k_band(k, band, n)

    wdt = working_dtype(x.dtype)
    sign = wdt.type(1 if largest else -1)
    if axis is None:
        keys, idx, n_nan = _topk_flat(x, stop, sign, wdt, chunk_size, nan_policy)
    else:
        keys, idx, n_nan = _topk_rows(x, stop, sign, wdt, chunk_size, nan_policy)
    if n_nan and nan_policy == "raise":
        raise ValueError(
            "scores contains NaN; pass nan_policy='omit' to never select NaN scores."
        )
    keys, idx = keys[..., start:], idx[..., start:]
    if not largest:
        np.negative(keys, out=keys)
    padded = idx < 0
    if x.dtype != wdt and not (x.dtype.kind in "biu" and padded.any()):
        keys = keys.astype(x.dtype)  # exact: the conversion was exact
    return TopK(keys, idx)


def _check_k_band(k, band, n):
    """Return the rank window ``(start, stop)`` asked for by ``k`` or ``band``."""
    if (k is None) == (band is None):
        raise ValueError("Pass exactly one of k and band.")
    if k is not None:
        k = check_int(k, "k", min_value=1)
        if k > n:
            raise ValueError(f"k={k} is larger than the number of scores ({n}).")
        return 0, k
    try:
        start, stop = band
    except (TypeError, ValueError):
        raise TypeError(f"band must be a (start, stop) pair, got {band!r}.") from None
    start = check_int(start, "band start", min_value=0)
    stop = n if stop is None else check_int(stop, "band stop", min_value=1)
    if stop > n:
        raise ValueError(f"band stop={stop} is larger than the number of scores ({n}).")
    if start >= stop:
        raise ValueError(f"band must have start < stop, got ({start}, {stop}).")
    return start, stop


def _n_threads(n_units):
    return max(1, min(openmp_max_threads(), n_units))


def _topk_flat(x, k, sign, wdt, chunk_size, nan_policy):
    n_threads = _n_threads(math.ceil(x.size / chunk_size))
    keys = np.empty((n_threads, k), dtype=wdt)
    idx = np.empty((n_threads, k), dtype=np.intp)
    sizes = np.zeros(n_threads, dtype=np.intp)
    n_nan = 0
    if is_native(x) and x.flags.c_contiguous:
        # read in place (a memmap streams through the page cache)
        n_nan = _topk.topk_flat_update(x.reshape(-1), 0, sign, chunk_size, keys, idx, sizes)
    else:
        # copy a bounded block of leading-axis slices at a time
        row_size = x.size // x.shape[0] if x.shape[0] else 1
        rows = max(1, chunk_size // max(row_size, 1))
        sub = max(1, math.ceil(rows * row_size / n_threads))
        for r0 in range(0, x.shape[0], rows):
            block = as_working(x[r0:r0 + rows], wdt, "scores").reshape(-1)
            n_nan += _topk.topk_flat_update(block, r0 * row_size, sign, sub, keys, idx, sizes)
            if n_nan and nan_policy == "raise":
                break
    # merge the per-thread heaps: best key first, then smaller index
    keys = np.concatenate([keys[t, :sizes[t]] for t in range(n_threads)])
    idx = np.concatenate([idx[t, :sizes[t]] for t in range(n_threads)])
    order = np.lexsort((idx, -keys))[:k]
    keys, idx = keys[order], idx[order]
    if keys.size < k:
        keys, idx = _pad(keys, idx, k)
    return keys, idx, n_nan


def _topk_rows(x, k, sign, wdt, chunk_size, nan_policy):
    n_rows, n_cols = x.shape
    keys = np.empty((n_rows, k), dtype=wdt)
    idx = np.empty((n_rows, k), dtype=np.intp)
    counts = np.empty(n_rows, dtype=np.intp)
    n_nan = 0
    if is_native(x) and x.flags.c_contiguous:
        n_nan = _topk.topk_rows(x, sign, keys, idx, counts, _n_threads(n_rows))
    else:
        rows = max(1, chunk_size // max(n_cols, 1))
        for r0 in range(0, n_rows, rows):
            block = as_working(x[r0:r0 + rows], wdt, "scores")
            n_nan += _topk.topk_rows(block, sign, keys[r0:r0 + rows], idx[r0:r0 + rows],
                                     counts[r0:r0 + rows], _n_threads(block.shape[0]))
            if n_nan and nan_policy == "raise":
                break
    if n_nan and nan_policy == "omit":
        short = np.arange(k) >= counts[:, None]
        if short.any():
            keys = keys.astype(np.result_type(keys.dtype, np.float32), copy=False)
            keys[short] = np.nan
            idx[short] = -1
    return keys, idx, n_nan


def _pad(keys, idx, k):
    """Pad a short flat result to length k with value NaN and index -1."""
    pad = k - keys.size
    keys = np.concatenate([keys, np.full(pad, np.nan, dtype=np.result_type(keys, np.float32))])
    return keys, np.concatenate([idx, np.full(pad, -1, dtype=np.intp)])
