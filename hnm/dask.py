"""hnm on Dask: the same selections over arrays split into blocks across workers.

(extra: ``pip install 'hnm[dask]'``)

Every block runs the single-machine kernel; partial results are merged in a tree
(``split_every`` at a time) by the same total order the kernels use (value, then
smaller *global* index), so the result is identical to the single-machine
function for any chunking. Nothing but the blocks and the small partial results
ever moves between workers: a dask array backed by memmaps, zarr or a stack of
``.npy`` files is read block by block where it lies.

The functions compute eagerly and return numpy results, using whichever
scheduler is active: the local threaded one, or a ``distributed.Client``
connected to a cluster, e.g. ``Client("tcp://scheduler:8786")``, or one started
by dask-jobqueue (``SLURMCluster``) or dask-kubernetes (``KubeCluster``).
"""
import numpy as np

try:
    import dask
    import dask.array as da
except ImportError as exc:  # pragma: no cover - exercised without the extra
    raise ImportError("hnm.dask needs dask: pip install 'hnm[dask]'") from exc

from .selection import TopK, _check_k_band
from .selection import topk as _topk
from ._validation import check_int, check_option

__all__ = ["topk"]


def _merge(values, indices, stop, largest):
    """Best ``stop`` of concatenated candidates along the last axis, padded (NaN, -1)."""
    keys = values.astype(np.float64)
    if not largest:
        keys = -keys
    pad = indices < 0
    keys[pad] = -np.inf
    order_idx = np.where(pad, np.iinfo(np.intp).max, indices)
    order = np.lexsort((order_idx, -keys), axis=-1)[..., :stop]
    values = np.take_along_axis(values, order, axis=-1)
    indices = np.take_along_axis(indices, order, axis=-1)
    short = indices < 0
    if short.any():
        values = values.astype(np.result_type(values.dtype, np.float32))
        values[short] = np.nan
    return values, indices


def _pad_to(values, indices, stop):
    """Pad a partial result to ``stop`` columns with (NaN, -1) so parts concatenate."""
    missing = stop - indices.shape[-1]
    if missing <= 0:
        return values, indices
    shape = indices.shape[:-1] + (missing,)
    values = np.concatenate(
        [values.astype(np.result_type(values.dtype, np.float32)), np.full(shape, np.nan)],
        axis=-1)
    return values, np.concatenate([indices, np.full(shape, -1, dtype=np.intp)], axis=-1)


def _block_flat(block, offsets, shape, stop, largest, nan_policy):
    k = min(stop, block.size)
    values, local = _topk(block, k, largest=largest, nan_policy=nan_policy)
    valid = local >= 0
    coords = np.unravel_index(np.where(valid, local, 0), block.shape)
    glob = np.ravel_multi_index(tuple(c + o for c, o in zip(coords, offsets)), shape)
    return values, np.where(valid, glob, -1).astype(np.intp)


def _block_rows(block, col_offset, stop, largest, nan_policy):
    k = min(stop, block.shape[1])
    values, local = _topk(block, k, axis=-1, largest=largest, nan_policy=nan_policy)
    return values, np.where(local >= 0, local + col_offset, -1).astype(np.intp)


def _combine(parts, stop, largest):
    parts = [_pad_to(v, i, stop) for v, i in parts]
    values = np.concatenate([v for v, _ in parts], axis=-1)
    indices = np.concatenate([i for _, i in parts], axis=-1)
    return _merge(values, indices, stop, largest)


def _tree(parts, stop, largest, split_every):
    while len(parts) > 1:
        parts = [dask.delayed(_combine)(parts[i:i + split_every], stop, largest)
                 for i in range(0, len(parts), split_every)]
    return parts[0]


def topk(scores, k=None, *, largest=True, axis=None, band=None, nan_policy="raise",
         split_every=8):
    """:func:`hnm.topk` over a dask array, block by block, merged exactly.

    Parameters
    ----------
    scores : dask.array.Array or array-like
        Any shape with ``axis=None`` (flat C-order indices); 2-D with
        ``axis=-1``/1 (top-k of every row; the rows may be split into column
        blocks).
    k, largest, band, nan_policy
        As for :func:`hnm.topk`.
    axis : {None, -1, 1}, default=None
    split_every : int, default=8
        How many partial results one merge task combines.

    Returns
    -------
    TopK
        numpy arrays, identical to ``hnm.topk`` on the whole array.

    Examples
    --------
    >>> import dask.array as da
    >>> import numpy as np
    >>> import hnm.dask
    >>> x = da.from_array(np.array([0.1, 2.0, 0.5, 2.0, 0.05, 3.0]), chunks=2)
    >>> hnm.dask.topk(x, 3)
    TopK(values=array([3., 2., 2.]), indices=array([5, 1, 3]))
    """
    x = scores if isinstance(scores, da.Array) else da.asarray(scores)
    if x.dtype.kind not in "biuf":
        raise TypeError(f"scores must have a real dtype, got dtype {x.dtype}.")
    if x.ndim < 1:
        raise ValueError("scores must be at least 1-D.")
    if not isinstance(largest, (bool, np.bool_)):
        raise TypeError(f"largest must be a bool, got {largest!r}.")
    check_option(nan_policy, "nan_policy", ("raise", "omit"))
    split_every = check_int(split_every, "split_every", min_value=2)
    if axis is not None:
        if x.ndim != 2 or axis not in (-1, 1):
            raise ValueError("hnm.dask.topk supports axis=None, or axis=-1/1 on a 2-D array.")
    n = x.size if axis is None else x.shape[1]
    start, stop = _check_k_band(k, band, n)

    blocks = x.to_delayed()
    offsets = [np.cumsum((0,) + c[:-1]) for c in x.chunks]
    if axis is None:
        parts = []
        for index in np.ndindex(blocks.shape):
            origin = tuple(int(offsets[d][i]) for d, i in enumerate(index))
            parts.append(dask.delayed(_block_flat)(blocks[index], origin, x.shape, stop,
                                                   largest, nan_policy))
        values, indices = dask.compute(_tree(parts, stop, largest, split_every))[0]
        values, indices = values[start:], indices[start:]
    else:
        row_results = []
        for i in range(blocks.shape[0]):
            parts = [dask.delayed(_block_rows)(blocks[i, j], int(offsets[1][j]), stop, largest,
                                               nan_policy) for j in range(blocks.shape[1])]
            row_results.append(_tree(parts, stop, largest, split_every))
        computed = dask.compute(*row_results)
        values = np.concatenate([v for v, _ in computed], axis=0)[:, start:]
        indices = np.concatenate([i for _, i in computed], axis=0)[:, start:]
    if values.dtype != x.dtype and not (indices < 0).any():
        values = values.astype(x.dtype)
    return TopK(values, indices)
