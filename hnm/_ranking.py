"""The ranking rule, in one place: which window of ranks is asked for, in which
order results are listed, and how partial results are merged.

- **How many**: ``k`` larger than what is available raises, unless the
  caller asked for ``at_most=True`` (:func:`check_k`, the one home of the rule).
- **Window**: ``k`` (the top ``k``) or ``band=(start, stop)`` (ranks
  ``start .. stop-1``; ``stop=None`` means "to the end", or a caller's default).
- **Noise guard**: the hardest ``floor(noise_fraction * n)`` are skipped as
  likely label noise, so the window starts after them.
- **Order**: larger key first, then smaller index; a missing entry (index -1)
  ranks after every real one. Keys are "larger is better": a caller ranking
  the smallest values negates them.
- **Merge**: partial top-k results over disjoint parts of the same items (per
  thread heaps, per dask block) are merged by that order into one, as faiss's
  ``merge_knn_results`` merges the shards of an index.

Used by :mod:`hnm.selection`, :mod:`hnm.pairs`, :mod:`hnm._farthest`,
:mod:`hnm._exact_l2`, :mod:`hnm.retrieval` and :mod:`hnm.dask`.
"""
import numpy as np

from ._validation import check_fraction, check_int

# index of a missing entry while sorting: after every real index
_MISSING = np.iinfo(np.intp).max


def check_k(k, available, *, at_most=False, what="scores"):
    """The one "how many" rule: ``k`` as an int in ``[1, available]``.

    ``k`` larger than ``available`` (the number of ``what`` there are) raises
    ``ValueError``, unless ``at_most`` is true: then ``min(k, available)`` is
    returned (possibly 0). A ``k`` that is not an integer raises ``TypeError``,
    ``k < 1`` ``ValueError``.
    """
    if not isinstance(at_most, (bool, np.bool_)):
        raise TypeError(f"at_most must be a bool, got {at_most!r}.")
    k = check_int(k, "k", min_value=1)
    if k > available:
        if at_most:
            return max(int(available), 0)
        raise ValueError(f"k={k} is larger than the number of {what} ({available}); "
                         "pass at_most=True to take all of them.")
    return k


def check_k_band(k, band, n, what="scores", *, at_most=False):
    """Return the rank window ``(start, stop)`` asked for by ``k`` (see
    :func:`check_k`) or ``band`` (see :func:`check_band`); ``what`` names the
    ``n`` things ranked in the messages."""
    if (k is None) == (band is None):
        raise ValueError("Pass exactly one of k and band.")
    if k is not None:
        return 0, check_k(k, n, at_most=at_most, what=what)
    return check_band(band, n, what, at_most=at_most)


def check_band(band, n=None, what="scores", *, default_length=None, at_most=False):
    """Return ``(start, stop)`` for ``band``. ``stop=None`` means ``n``, or
    ``start + default_length`` if that is given; with ``n``, a ``stop`` beyond
    it raises (``what`` names the ``n`` things ranked), unless ``at_most``:
    then the window is cut at ``n`` (and may be empty, ``start == stop``)."""
    try:
        start, stop = band
    except (TypeError, ValueError):
        raise TypeError(f"band must be a (start, stop) pair, got {band!r}.") from None
    start = check_int(start, "band start", min_value=0)
    if not isinstance(at_most, (bool, np.bool_)):
        raise TypeError(f"at_most must be a bool, got {at_most!r}.")
    explicit = stop is not None or default_length is not None
    if stop is not None:
        stop = check_int(stop, "band stop", min_value=1)
    elif default_length is not None:
        stop = start + default_length
    else:
        stop = n
    # (stop stays None without n: "to the end"); a band "to the end" that starts
    # past the end is empty with at_most, an explicit start >= stop never valid
    if stop is not None and start >= stop and (explicit or not at_most):
        raise ValueError(f"band must have start < stop, got ({start}, {stop}).")
    if n is not None and stop > n:
        if not at_most:
            raise ValueError(f"band stop={stop} is larger than the number of {what} ({n}); "
                             "pass at_most=True to cut the band there.")
        stop = n
    if stop is not None:
        start = min(start, stop)
    return start, stop


def n_noise(noise_fraction, n):
    """How many of the ``n`` hardest examples the noise guard drops first (the
    start of the window it leaves): ``floor(noise_fraction * n)``."""
    q = check_fraction(noise_fraction, "noise_fraction", low_open=False, high_open=True)
    return int(q * n)


def best_first(keys, indices, axis=-1):
    """The order that lists larger keys first, ties by the smaller index."""
    return np.lexsort((indices, -keys), axis=axis)


def sort_heaps(keys, indices, sizes):
    """Rows of bounded heaps (the first ``sizes[i]`` entries of row ``i`` are
    filled) as sorted rows, best first; the unfilled places are padded with key
    -inf and index -1 at the end of their rows. New arrays."""
    filled = np.arange(keys.shape[1]) < sizes[:, None]
    keys = np.where(filled, keys, -np.inf)
    indices = np.where(filled, indices, _MISSING)
    order = best_first(keys, indices, axis=1)
    keys = np.take_along_axis(keys, order, axis=1)
    indices = np.take_along_axis(indices, order, axis=1)
    indices[indices == _MISSING] = -1
    return keys, indices


def pad_to(values, indices, k, fill_dtype=None):
    """Pad a partial result to ``k`` entries along the last axis with value NaN
    and index -1. The values become floating (at least float32, or the wider of
    their dtype and ``fill_dtype``)."""
    missing = k - indices.shape[-1]
    if missing <= 0:
        return values, indices
    shape = indices.shape[:-1] + (missing,)
    dtype = np.result_type(values.dtype, np.float32)
    fill = np.full(shape, np.nan, dtype=dtype if fill_dtype is None else fill_dtype)
    values = np.concatenate([values.astype(dtype), fill], axis=-1)
    return values, np.concatenate([indices, np.full(shape, -1, dtype=np.intp)], axis=-1)


def merge_knn_results(parts, k, largest=True, fill_dtype=None):
    """Merge partial results ``(values, indices)`` over disjoint items into the
    best ``k`` along the last axis: by value (descending if ``largest``), then
    smaller index; entries with index -1 are missing and rank last. A result
    with fewer than ``k`` real entries is padded with value NaN and index -1
    (see :func:`pad_to` for the dtype)."""
    parts = [pad_to(v, i, k, fill_dtype) for v, i in parts]
    values = np.concatenate([v for v, _ in parts], axis=-1)
    indices = np.concatenate([i for _, i in parts], axis=-1)
    keys = values.astype(np.float64)
    if not largest:
        keys = -keys
    missing = indices < 0
    keys[missing] = -np.inf
    order = best_first(keys, np.where(missing, _MISSING, indices))[..., :k]
    values = np.take_along_axis(values, order, axis=-1)
    indices = np.take_along_axis(indices, order, axis=-1)
    short = indices < 0
    if short.any():
        values = values.astype(np.result_type(values.dtype, np.float32))
        values[short] = np.nan
    return values, indices
