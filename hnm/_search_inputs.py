"""The inputs of the blocked search kernel (``hnm._pairs.search_update``),
checked and put in the kernel's form once, for every search that runs it:
:func:`hnm.search_hard_pairs`, :func:`hnm._farthest.search_farthest`, hnm.dask
and the miners of :mod:`hnm.retrieval`.
"""
import numbers

import numpy as np

from . import _pairs
from ._validation import as_csr, check_option, check_real, check_real_array

# Query rows per GEMM and candidates per GEMM: a 256 x 2048 float32 tile is 2 MiB
# per thread, large enough for BLAS to run near peak, small enough for cache.
DEFAULT_QUERY_BLOCK = 256
DEFAULT_CANDIDATE_BLOCK = 2048
# Candidates per kernel call (a multiple of the block): bounds the memory of
# converted blocks and lets progress bars and Ctrl-C in between calls.
_CALL_BLOCKS = 32
# Multiply-adds per kernel call, at most (about 0.1-0.2 s here): with many queries
# a call takes fewer blocks, so that Ctrl-C and progress bars still get a turn.
_CALL_WORK = 2**34


def call_span(c_block, n_queries, dim):
    """Candidates per kernel call: whole blocks, at most _CALL_BLOCKS of them and
    about _CALL_WORK multiply-adds (results do not depend on it: the GEMM blocks
    are the same)."""
    blocks = _CALL_WORK // max(1, n_queries * dim * c_block)
    return c_block * max(1, min(_CALL_BLOCKS, blocks))

_NO_LABELS = np.zeros(0, dtype=np.intp)


def _check_search(metric, queries, candidates):
    """The metric and the two embedding matrices of a search, checked:
    (metric, queries, candidates)."""
    metric = check_option(metric, "metric", ("cosine", "ip", "l2"))
    Q = check_real_array(queries, "queries", min_ndim=2, max_ndim=2)
    C = check_real_array(candidates, "candidates", min_ndim=2, max_ndim=2)
    if Q.shape[1] != C.shape[1]:
        raise ValueError(f"queries have dimension {Q.shape[1]} but candidates have "
                         f"{C.shape[1]}.")
    if Q.shape[1] == 0:
        raise ValueError("queries and candidates need at least one dimension.")
    return metric, Q, C


def _scaled(X, metric, metric_code, name):
    """X and its per-row scales for the kernel, checked: NaN/inf raise; rows whose
    norms are out of the dtype's safe range are scaled to unit norm for cosine
    (which does not change a cosine) and raise for ip and l2 (scores overflow)."""
    scale = np.empty(X.shape[0], dtype=X.dtype)
    status = _pairs.candidate_scales(X, metric_code, scale)
    if status == 0:
        raise ValueError(f"{name} contain NaN or infinity.")
    if status == 2:
        if metric != "cosine":
            raise ValueError(
                f"{name} have norms so large that {metric} scores overflow {X.dtype}; "
                "scale the embeddings down" + (" or pass float64" if X.dtype == np.float32
                                               else "") + ".")
        X = _unit_rows(X)
        _pairs.candidate_scales(X, metric_code, scale)
    return X, scale


def _unit_rows(X, chunk_rows=4096):
    """Rows of X scaled to unit norm without overflow or underflow: divided by their
    largest magnitude first, in float64 (zero rows stay zero). A new array."""
    out = np.empty(X.shape, dtype=X.dtype)
    for s in range(0, X.shape[0], chunk_rows):
        x = np.array(X[s:s + chunk_rows], dtype=np.float64)
        m = np.abs(x).max(axis=1, keepdims=True) if x.shape[1] else np.ones((x.shape[0], 1))
        m[m == 0] = 1
        x /= m
        norm = np.sqrt(np.einsum("ij,ij->i", x, x))[:, None]
        norm[norm == 0] = 1
        out[s:s + chunk_rows] = x / norm
    return out


def _per_query(value, n_q, name="max_score"):
    """A number or one finite number per query, as a float64 array of shape
    (n_q,); None: +inf (no bound). A NaN or an infinity raises ValueError, a value
    of another type TypeError, as everywhere (``check_real``)."""
    if value is None:
        return np.full(n_q, np.inf)
    if isinstance(value, (numbers.Real, np.bool_)):
        return np.full(n_q, check_real(value, name))
    arr = np.asarray(value)
    if arr.dtype.kind not in "iuf":
        raise TypeError(f"{name} must be a number or an array of numbers, "
                        f"got dtype {arr.dtype}.")
    if arr.shape != (n_q,):
        raise ValueError(f"{name} must be a number or an array of shape ({n_q},).")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} must hold finite numbers (NaN or infinity found).")
    return arr.astype(np.float64)


def _exclusions(exclude, n_q, n_c):
    """CSR (indptr, ids sorted per row); a dummy id keeps the kernel's pointer valid."""
    if exclude is None:
        return np.zeros(n_q + 1, dtype=np.intp), np.zeros(1, dtype=np.intp)
    return _kernel_csr(*as_csr(exclude, n_q, n_c, "exclude"))


def _kernel_csr(indptr, ids):
    """A checked CSR id list in the kernel's form: ids sorted per row (the kernel
    binary-searches each row), then a dummy id that keeps its pointer valid."""
    row = np.repeat(np.arange(indptr.size - 1), np.diff(indptr))
    ids = ids[np.lexsort((ids, row))]
    return (np.ascontiguousarray(indptr, dtype=np.intp),
            np.concatenate([ids, [0]]).astype(np.intp))


def _labels(query_labels, candidate_labels, n_q, n_c):
    if query_labels is None and candidate_labels is None:
        return np.full(n_q, -1, dtype=np.intp), None
    if query_labels is None or candidate_labels is None:
        raise ValueError("Pass both query_labels and candidate_labels, or neither.")
    ql = np.asarray(query_labels)
    cl = np.asarray(candidate_labels)
    if ql.shape != (n_q,) or cl.shape != (n_c,):
        raise ValueError(f"query_labels must have shape ({n_q},) and candidate_labels "
                         f"({n_c},); got {ql.shape} and {cl.shape}.")
    try:
        uniq, codes = np.unique(np.concatenate([ql, cl]), return_inverse=True)
    except TypeError as exc:  # mixed types, None among strings, ...
        raise TypeError("query_labels and candidate_labels must hold labels of one "
                        f"comparable type; {exc}") from None
    codes = codes.astype(np.intp)
    return codes[:n_q], codes[n_q:]


def _union_csr(p1, i1, p2, i2):
    """The union of two CSR id lists over the same rows, ids sorted per row."""
    n = p1.size - 1
    rows = np.concatenate([np.repeat(np.arange(n), np.diff(p1)),
                           np.repeat(np.arange(n), np.diff(p2))])
    ids = np.concatenate([i1, i2])
    order = np.lexsort((ids, rows))
    rows, ids = rows[order], ids[order]
    keep = np.ones(ids.size, dtype=bool)
    keep[1:] = (rows[1:] != rows[:-1]) | (ids[1:] != ids[:-1])
    rows, ids = rows[keep], ids[keep]
    return np.concatenate([[0], np.cumsum(np.bincount(rows, minlength=n))]), ids


# The parameters every streamed search takes, documented once
STREAM_PARAMETERS = """n_jobs : int, optional
        Threads (default: all OpenMP threads).
    block_size : int, optional
        Candidates per GEMM (default 2048; a bfloat16 screen takes at most 256
        at a time).
    progress : bool, default=False
        Show a progress bar over the candidates."""


def with_stream_parameters(func):
    """Put STREAM_PARAMETERS where ``func``'s docstring says ``{stream_parameters}``."""
    func.__doc__ = func.__doc__.replace("{stream_parameters}", STREAM_PARAMETERS)
    return func
