"""hnm on Dask: the same selections over arrays split into blocks across workers.

(needs dask and distributed: ``pip install "dask[array]" distributed``, or
``pip install ".[dask]"`` in the hnm checkout)

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
import os

import numpy as np

try:
    import dask
    import dask.array as da
except ImportError as exc:  # pragma: no cover - exercised without the extra
    raise ImportError("hnm.dask needs dask: pip install 'dask[array]' distributed (or "
                      "pip install '.[dask]' in the hnm checkout)") from exc

from . import pairs as _pairs
from . import scoring as _scoring
from ._nearest import _use_bf16, nearest
from ._negatives import MINE_OPTIONS, mine
from ._ranking import check_k_band, merge_knn_results
from ._search_inputs import (DEFAULT_CANDIDATE_BLOCK, _kernel_csr, _labels, _per_query,
                             _union_csr)
from ._threads import resolve_n_jobs
from .selection import TopK
from .selection import topk as _topk
from ._validation import as_csr, check_int, check_option, check_real_array

__all__ = ["from_npy", "topk", "difficulty", "search_hard_pairs", "mine_hard_negatives"]


def _read_rows(path, start, stop):
    return np.array(np.load(path, mmap_mode="r")[start:stop])


def from_npy(path, rows_per_block):
    """A dask array over a ``.npy`` file whose blocks each worker reads itself.

    ``da.from_array(np.load(path, mmap_mode="r"))`` pickles the memory map's data
    into the graph when workers are processes; here every task opens the file and
    copies only its rows, so no worker holds more than its blocks (the file must
    be reachable under the same path on every worker, e.g. shared storage).

    Parameters
    ----------
    path : str or path-like
    rows_per_block : int

    Returns
    -------
    dask.array.Array

    Examples
    --------
    >>> import os, tempfile
    >>> import numpy as np
    >>> import hnm.dask
    >>> path = os.path.join(tempfile.mkdtemp(), "scores.npy")
    >>> np.save(path, np.arange(10.0))
    >>> hnm.dask.from_npy(path, 4).chunks
    ((4, 4, 2),)
    """
    path = os.fspath(path)
    header = np.load(path, mmap_mode="r")
    rows_per_block = check_int(rows_per_block, "rows_per_block", min_value=1)
    n = header.shape[0]
    blocks = [da.from_delayed(dask.delayed(_read_rows)(path, s, min(s + rows_per_block, n)),
                              shape=(min(s + rows_per_block, n) - s,) + header.shape[1:],
                              dtype=header.dtype)
              for s in range(0, n, rows_per_block)]
    return da.concatenate(blocks, axis=0)


def _block_flat(block, offsets, shape, stop, largest, nan_policy, n_jobs):
    k = min(stop, block.size)
    values, local = _topk(block, k, largest=largest, nan_policy=nan_policy, n_jobs=n_jobs)
    valid = local >= 0
    coords = np.unravel_index(np.where(valid, local, 0), block.shape)
    glob = np.ravel_multi_index(tuple(c + o for c, o in zip(coords, offsets)), shape)
    return values, np.where(valid, glob, -1).astype(np.intp)


def _block_rows(block, col_offset, stop, largest, nan_policy, n_jobs):
    k = min(stop, block.shape[1])
    values, local = _topk(block, k, axis=-1, largest=largest, nan_policy=nan_policy,
                          n_jobs=n_jobs)
    return values, np.where(local >= 0, local + col_offset, -1).astype(np.intp)


def _combine(parts, stop, largest):
    # a short part is padded as hnm.topk pads: in the values' own float dtype
    # (float32 stays float32), so a padded result has hnm.topk's dtype too
    return merge_knn_results(parts, stop, largest)


def _tree(parts, stop, largest, split_every):
    while len(parts) > 1:
        parts = [dask.delayed(_combine)(parts[i:i + split_every], stop, largest)
                 for i in range(0, len(parts), split_every)]
    return parts[0]


def topk(scores, k=None, *, largest=True, axis=None, band=None, nan_policy="raise",
         at_most=False, n_jobs=None, split_every=8):
    """:func:`hnm.topk` over a dask array, block by block, merged exactly.

    Parameters
    ----------
    scores : dask.array.Array or array-like
        Any shape with ``axis=None`` (flat C-order indices); 2-D with
        ``axis=-1``/1 (top-k of every row; the rows may be split into column
        blocks).
    k, largest, band, nan_policy, at_most
        As for :func:`hnm.topk`.
    axis : {None, -1, 1}, default=None
    n_jobs : int, optional
        Threads of each block's kernel call (as for :func:`hnm.topk`).
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
    start, stop = check_k_band(k, band, n, at_most=at_most)
    n_jobs = resolve_n_jobs(n_jobs)

    blocks = x.to_delayed()
    offsets = [np.cumsum((0,) + c[:-1]) for c in x.chunks]
    if axis is None:
        parts = []
        for index in np.ndindex(blocks.shape):
            origin = tuple(int(offsets[d][i]) for d, i in enumerate(index))
            parts.append(dask.delayed(_block_flat)(blocks[index], origin, x.shape, stop,
                                                   largest, nan_policy, n_jobs))
        values, indices = dask.compute(_tree(parts, stop, largest, split_every))[0]
        values, indices = values[start:], indices[start:]
    else:
        row_results = []
        for i in range(blocks.shape[0]):
            parts = [dask.delayed(_block_rows)(blocks[i, j], int(offsets[1][j]), stop, largest,
                                               nan_policy, n_jobs)
                     for j in range(blocks.shape[1])]
            row_results.append(_tree(parts, stop, largest, split_every))
        computed = dask.compute(*row_results)
        values = np.concatenate([v for v, _ in computed], axis=0)[:, start:]
        indices = np.concatenate([i for _, i in computed], axis=0)[:, start:]
    if values.dtype != x.dtype and not (indices < 0).any():
        values = values.astype(x.dtype)
    return TopK(values, indices)


def _as_dask_2d(a, name):
    a = a if isinstance(a, da.Array) else da.asarray(a)
    if a.ndim != 2:
        raise ValueError(f"{name} must be 2-D, got a {a.ndim}-D array.")
    if a.dtype.kind not in "biuf":
        raise TypeError(f"{name} must have a real dtype, got dtype {a.dtype}.")
    return a.rechunk({1: -1})  # blocks of whole rows


def _score_block(y, S, measure, labels, n_jobs):
    return _scoring.difficulty(y.reshape(-1), S, measure=measure, labels=labels,
                              n_jobs=n_jobs)


def difficulty(y_true, y_score, *, measure="margin", labels=None, n_jobs=None):
    """:func:`hnm.difficulty` over a dask array, lazily, one block of rows at a time.

    Parameters
    ----------
    y_true : dask or numpy array of shape (n,), or None for ``measure="entropy"``
    y_score : dask or numpy array of shape (n, n_classes) or (n,)
        Rechunked to blocks of whole rows.
    measure, labels
        As for :func:`hnm.difficulty`. Without ``labels`` the distinct labels
        are computed first (one pass over ``y_true``).
    n_jobs : int, optional
        Threads of each block's kernel call (as for :func:`hnm.difficulty`).

    Returns
    -------
    dask.array.Array of shape (n,)
        Identical, row for row, to ``hnm.difficulty`` on the whole arrays.

    Examples
    --------
    >>> import dask.array as da
    >>> import numpy as np
    >>> import hnm.dask
    >>> P = da.from_array(np.array([[0.9, 0.1], [0.4, 0.6], [0.2, 0.8]]), chunks=2)
    >>> hnm.dask.difficulty(np.array([0, 0, 1]), P).compute()
    array([-0.8,  0.2, -0.6])
    """
    check_option(measure, "measure", _scoring.MEASURES)
    n_jobs = resolve_n_jobs(n_jobs)
    S = y_score if isinstance(y_score, da.Array) else da.asarray(y_score)
    if S.ndim not in (1, 2):
        raise ValueError(f"y_score must be 1-D or 2-D, got a {S.ndim}-D array.")
    if S.dtype.kind not in "biuf":
        raise TypeError(f"y_score must have a real dtype, got dtype {S.dtype}.")
    if S.ndim == 2:
        S = S.rechunk({1: -1})
    out_dtype = np.float32 if S.dtype == np.float32 else np.float64
    if y_true is None:
        if measure != "entropy":
            raise ValueError(f"y_true is required for measure={measure!r}.")
        y = da.zeros(S.shape[0], chunks=(S.chunks[0],), dtype=np.int64)
        labels = np.arange(S.shape[1] if S.ndim == 2 else 2)
    else:
        y = y_true if isinstance(y_true, da.Array) else da.asarray(y_true)
        if y.shape != (S.shape[0],):
            raise ValueError(f"y_true must have shape ({S.shape[0]},) to match y_score, "
                             f"got {y.shape}.")
        y = y.rechunk((S.chunks[0],))
        if labels is None:
            labels = np.unique(np.asarray(da.unique(y)))
    labels = np.asarray(labels)
    if S.ndim == 2:
        # labels as a column, so that its blocks line up with the rows of S
        return da.map_blocks(_score_block, y[:, None], S, measure=measure, labels=labels,
                             n_jobs=n_jobs, dtype=out_dtype, drop_axis=1, chunks=(S.chunks[0],))
    return da.map_blocks(_score_block, y, S, measure=measure, labels=labels,
                         n_jobs=n_jobs, dtype=out_dtype)


def _local_exclusions(indptr, ids, offset, size):
    """The exclusions that fall in candidates [offset, offset + size), as local ids."""
    rows = np.repeat(np.arange(indptr.size - 1), np.diff(indptr))
    inside = (ids >= offset) & (ids < offset + size)
    counts = np.bincount(rows[inside], minlength=indptr.size - 1)
    return np.concatenate([[0], np.cumsum(counts)]), ids[inside] - offset


def _search_block(Q, block, offset, stop, metric, exclusions, cap, q_codes, c_codes,
                  n_threads):
    block = np.asarray(block)
    local = _kernel_csr(*_local_exclusions(*exclusions, offset, block.shape[0]))
    codes = (q_codes, None if c_codes is None else c_codes[offset:offset + block.shape[0]])
    dtype = np.result_type(np.float32, Q.dtype, block.dtype)
    # bfloat16 or not is decided per block, by its own candidates, as for one machine
    k = min(stop, block.shape[0])
    scores, ids = nearest(Q, block, k, metric, cap, local, codes,
                          n_threads=n_threads, block_size=DEFAULT_CANDIDATE_BLOCK,
                          bf16=_use_bf16("auto", dtype, block.shape[0], k))
    return scores, np.where(ids >= 0, ids + offset, -1)


def _search(Q, C, stop, metric, cap, exclusions, codes, split_every, n_threads):
    """The ``stop`` nearest candidates of checked queries ``Q`` (numpy) in the
    dask array ``C``, every block searched where it lies, merged in a tree:
    (scores, ids) padded with -1 and the score that ranks last."""
    if stop == 0:
        return (np.empty((Q.shape[0], 0), dtype=np.result_type(Q.dtype, C.dtype, np.float32)),
                np.empty((Q.shape[0], 0), dtype=np.intp))
    Qd = dask.delayed(Q)
    offsets = np.cumsum((0,) + C.chunks[0][:-1])
    parts = [dask.delayed(_search_block)(Qd, block, int(off), stop, metric, exclusions, cap,
                                         *codes, n_threads)
             for block, off in zip(C.to_delayed().ravel(), offsets)]
    scores, indices = dask.compute(_tree(parts, stop, metric != "l2", split_every))[0]
    scores = np.where(indices < 0, np.inf if metric == "l2" else -np.inf, scores)
    return scores.astype(np.result_type(Q.dtype, C.dtype, np.float32)), indices


def _check_queries(queries, C):
    Q = queries.compute() if isinstance(queries, da.Array) else queries
    Q = check_real_array(Q, "queries", min_ndim=2, max_ndim=2)
    if Q.shape[1] != C.shape[1]:
        raise ValueError(f"queries have dimension {Q.shape[1]} but candidates have "
                         f"{C.shape[1]}.")
    return Q


def search_hard_pairs(queries, candidates, k=None, *, at_most=False, metric="cosine",
                      exclude=None, exclude_self=False, band=None, max_score=None,
                      query_labels=None, candidate_labels=None, n_jobs=None, split_every=8):
    """:func:`hnm.search_hard_pairs` with the candidates sharded across dask workers.

    Every block of candidate rows is searched where it lies with the blocked
    kernel, under global candidate ids (exclusions and labels honoured); the
    per-block results are merged in a tree by (score, smaller global id).

    Parameters
    ----------
    queries : array-like of shape (n_queries, dim)
        Sent to every task (computed first if a dask array).
    candidates : dask.array.Array or array-like of shape (n_candidates, dim)
    k, at_most, metric, exclude, exclude_self, band, max_score, query_labels, candidate_labels
        As for :func:`hnm.search_hard_pairs`.
    n_jobs : int, optional
        Threads of each block's search (default: all OpenMP threads).
    split_every : int, default=8
        Partial results per merge task.

    Returns
    -------
    PairResult
        numpy arrays; the same ids as ``hnm.search_hard_pairs`` on the whole
        candidate matrix, except between scores equal within rounding (a GEMM
        over differently sized blocks may round the last bit differently).

    See Also
    --------
    hnm.search_hard_pairs : the same search on one machine.

    Examples
    --------
    >>> import dask.array as da
    >>> import numpy as np
    >>> import hnm.dask
    >>> corpus = np.array([[1.0, 0.0], [0.0, 1.0], [0.7, 0.7]])
    >>> query = np.array([[1.0, 0.1]])
    >>> sharded = hnm.dask.search_hard_pairs(query, da.from_array(corpus, chunks=2), 2)
    >>> sharded.indices
    array([[0, 2]])
    >>> bool(np.array_equal(sharded.indices, hnm.search_hard_pairs(query, corpus, 2).indices))
    True
    """
    metric = check_option(metric, "metric", ("cosine", "ip", "l2"))
    C = _as_dask_2d(candidates, "candidates")
    Q = _check_queries(queries, C)
    split_every = check_int(split_every, "split_every", min_value=2)
    n_threads = resolve_n_jobs(n_jobs)
    n_q, n_c = Q.shape[0], C.shape[0]
    start, stop = check_k_band(k, band, n_c, "candidates", at_most=at_most)
    if not isinstance(exclude_self, (bool, np.bool_)):
        raise TypeError(f"exclude_self must be a bool, got {exclude_self!r}.")
    if exclude is None:
        indptr, ids = np.zeros(n_q + 1, dtype=np.intp), np.zeros(0, dtype=np.intp)
    else:
        indptr, ids = as_csr(exclude, n_q, n_c, "exclude")
    if exclude_self:
        if n_q > n_c:
            raise ValueError("exclude_self needs queries to be (a prefix of) the candidates.")
        indptr, ids = _union_csr(indptr, ids, np.arange(n_q + 1), np.arange(n_q))
    codes = (None, None)
    if query_labels is not None or candidate_labels is not None:
        codes = _labels(query_labels, candidate_labels, n_q, n_c)
    cap = _per_query(max_score, n_q)
    if metric == "l2" and max_score is not None:
        cap = -cap  # keys are minus distances: "closer than d" is "key above -d"
    scores, indices = _search(Q, C, stop, metric, cap, (indptr, ids), codes, split_every,
                              n_threads)
    return _pairs.PairResult(scores[:, start:], indices[:, start:])


def mine_hard_negatives(queries, positives, candidates, *, k=3, at_most=False, band=(0, None),
                        absolute_margin=None, relative_margin=None, duplicate_threshold=0.95,
                        lower_margin=None, max_score=None, min_score=None, sampling="top",
                        simans=(100.0, -0.1), easy_ratio=0.0, exclude=None, output="triplets",
                        metric="cosine", random_state=None, query_offset=0, n_jobs=None,
                        split_every=8):
    """:func:`hnm.mine_hard_negatives` with the corpus as a dask array.

    The search runs as in :func:`search_hard_pairs` above; only the rows of the
    positives and of random easy negatives are gathered to the client. Same
    parameters and result as the single-machine function (``n_jobs``: threads
    of each block's search).

    See Also
    --------
    hnm.mine_hard_negatives : the same mining on one machine.
    search_hard_pairs : the sharded search it runs.

    Examples
    --------
    Three queries against a corpus split into blocks of 64 rows:

    >>> import numpy as np
    >>> import dask.array as da
    >>> import hnm.dask
    >>> corpus = np.random.default_rng(0).standard_normal((200, 8))
    >>> blocks = da.from_array(corpus, chunks=64)
    >>> mined = hnm.dask.mine_hard_negatives(corpus[:3], np.arange(3), blocks)
    >>> len(mined), mined.summary["n_short_queries"]
    (9, 0)
    """
    metric = check_option(metric, "metric", ("cosine", "ip", "l2"))
    C = _as_dask_2d(candidates, "candidates")
    Q = _check_queries(queries, C)
    split_every = check_int(split_every, "split_every", min_value=2)
    n_threads = resolve_n_jobs(n_jobs)

    def search(rows, stop, cap, exclusions):
        return _search(Q[rows], C, stop, metric, cap, exclusions, (None, None), split_every,
                       n_threads)

    given = locals()  # the pipeline's options, as given (metric checked)
    return mine(Q, positives, C, search, **{name: given[name] for name in MINE_OPTIONS})
