"""Exact farthest-candidate search, streaming the candidates in bounded memory.

The nearest-candidate kernel (``hnm._pairs.search_update``: blocked GEMM, a
screened bounded heap per query, ties by the smaller candidate index) finds the
farthest candidates once the key it maximises is turned around:

- "ip" / "cosine": the farthest candidate has the smallest similarity, which is
  the largest similarity to the negated query (negation is exact, so the keys
  are exactly minus the similarities and ties stay ties);
- "l2": the squared distance is ``|q|^2 + |c|^2 - 2 q.c``; per query the first
  term is a constant, so the farthest candidates are those with the largest
  inner product ``[-q, 1] . [c, |c|^2 / 2]`` (one extra column per block).

Restricting to candidates of the query's own label (the hardest positive of
metric learning) is done by grouping: the queries of each label are searched
against that label's candidates only, so no work is spent on the others.

Used by :func:`hnm._exact_l2.farthest_l2_float64` (NearMiss version 2) and the
metric-learning miners.
"""
import math
from contextlib import nullcontext

import numpy as np

from . import _pairs
from ._threads import resolve_n_jobs, single_threaded_blas as _single_threaded_blas
from ._progress import progress_bar
from ._ranking import sort_heaps
from ._direct_read import candidate_spans
from ._search_inputs import (DEFAULT_CANDIDATE_BLOCK, DEFAULT_QUERY_BLOCK, call_span,
                             _NO_LABELS, _check_search, _exclusions, _labels, _scaled,
                             with_stream_parameters)
from ._validation import as_working, check_int
from .pairs import PairResult

__all__ = ["search_farthest"]


@with_stream_parameters
def search_farthest(queries, candidates, k, *, metric="cosine", exclude=None,
                    exclude_self=False, query_labels=None, candidate_labels=None,
                    same_label=False, n_jobs=None, block_size=None, progress=False):
    """For every query, the ``k`` farthest candidates, exactly, in bounded memory.

    The mirror image of :func:`hnm.search_hard_pairs`, with the same kernel:
    candidates are streamed in blocks (an ``np.memmap`` of any size works), each
    block is scored with one GEMM per block of queries, and a bounded heap per
    query keeps the ``k`` farthest; ties go to the smaller candidate index, so
    the ids do not depend on block sizes or threads.

    Parameters
    ----------
    queries : array-like of shape (n_queries, dim)
    candidates : array-like of shape (n_candidates, dim)
        Real dtypes; computed in float64 if either is float64 or an integer
        type, else in float32.
    k : int
        Candidates per query, ``1 <= k <= n_candidates``.
    metric : {"cosine", "ip", "l2"}, default="cosine"
        Farthest is the smallest inner product or cosine similarity (a zero
        vector has similarity 0 with everything), or the largest squared
        Euclidean distance.
    exclude : list of array-like or (indptr, indices), optional
        Per query, candidate ids never to return.
    exclude_self : bool, default=False
        Query ``i`` never returns candidate ``i`` (queries are the candidates).
    query_labels, candidate_labels : array-like, optional
        If both are given, only candidates whose label differs from the query's
        are returned, or, with ``same_label=True``, only those whose label is
        the query's (the hardest positive of batch-hard mining).
    same_label : bool, default=False
        See ``query_labels``.
    {stream_parameters}

    Returns
    -------
    PairResult
        ``(scores, indices)``, each of shape (n_queries, k), farthest first:
        similarities ascending ("ip", "cosine") or squared distances descending
        ("l2"), ties by the smaller index. A query with fewer than ``k`` eligible
        candidates is padded with index -1 and the score that ranks last
        (+inf for "ip"/"cosine", -inf for "l2").

    See Also
    --------
    hnm.search_hard_pairs : The nearest candidates.
    hnm.NearMiss : NearMiss-2 ranks by the distances to the farthest minority samples.

    Examples
    --------
    >>> import numpy as np
    >>> from hnm._farthest import search_farthest
    >>> X = np.array([[0.0, 0.0], [1.0, 0.0], [3.0, 0.0], [0.0, 2.0]])
    >>> search_farthest(X, X, 1, metric="l2").indices.ravel()
    array([2, 3, 3, 2])
    >>> labels = np.array([0, 0, 1, 0])
    >>> search_farthest(X, X, 1, metric="l2", exclude_self=True, query_labels=labels,
    ...                 candidate_labels=labels, same_label=True).indices.ravel()
    array([ 3,  3, -1,  1])
    """
    metric, Q, C = _check_search(metric, queries, candidates)
    n_q, n_c = Q.shape[0], C.shape[0]
    k = check_int(k, "k", min_value=1)
    if k > n_c:
        raise ValueError(f"k={k} is larger than the number of candidates ({n_c}).")
    for name, flag in (("exclude_self", exclude_self), ("same_label", same_label)):
        if not isinstance(flag, (bool, np.bool_)):
            raise TypeError(f"{name} must be a bool, got {flag!r}.")
    if exclude_self and n_q > n_c:
        raise ValueError("exclude_self needs queries to be (a prefix of) the candidates.")
    if same_label and (query_labels is None or candidate_labels is None):
        raise ValueError("same_label=True needs query_labels and candidate_labels.")
    n_threads = resolve_n_jobs(n_jobs)
    c_block = check_int(block_size, "block_size", min_value=1, allow_none=True)
    c_block = c_block or DEFAULT_CANDIDATE_BLOCK

    dtype = np.dtype(np.float64) if any(
        a.dtype.kind != "f" or a.dtype.itemsize > 4 for a in (Q, C)) else np.dtype(np.float32)
    code = _pairs.METRICS["ip" if metric == "l2" else metric]
    Qt, q_scale, q_half = _turned_queries(as_working(Q, dtype, "queries"), metric)
    ex_ptr, ex_idx = _exclusions(exclude, n_q, n_c)
    q_lab, c_lab = _labels(query_labels, candidate_labels, n_q, n_c)
    groups = _groups(q_lab, c_lab, same_label, ex_ptr, ex_idx, bool(exclude_self), n_q, n_c)

    # the heaps, one row per query in group order (each group's rows contiguous)
    order = np.concatenate([g.rows for g in groups]) if groups else np.zeros(0, np.intp)
    Qt, q_scale = Qt[order], q_scale[order]
    keys = np.empty((n_q, k), dtype=dtype)
    idx = np.empty((n_q, k), dtype=np.intp)
    sizes = np.zeros(n_q, dtype=np.intp)
    no_cap = np.full(n_q, np.inf, dtype=dtype)
    q_block_max = max(1, min(DEFAULT_QUERY_BLOCK, math.ceil(n_q / n_threads)))
    work = np.empty((n_threads, q_block_max * c_block), dtype=dtype)
    span = call_span(c_block, n_q, Qt.shape[1])
    n_nan = 0
    blas_limit = _single_threaded_blas() if n_threads > 1 else nullcontext()
    with blas_limit, progress_bar(progress, n_c, "search_farthest", "candidates") as bar:
        for c0, block in candidate_spans(C, span):
            block, c_scale = _turned_block(as_working(block, dtype, "candidates"),
                                           metric)
            for g, part, part_scale, offset, labels in _tasks(groups, block, c_scale, c0,
                                                              c_lab, same_label):
                a, b = g.start, g.start + g.rows.size
                q_block = max(1, min(DEFAULT_QUERY_BLOCK, math.ceil((b - a) / n_threads)))
                threads = max(1, min(n_threads, math.ceil((b - a) / q_block)))
                n_nan += _pairs.search_update(
                    Qt[a:b], q_scale[a:b], part, part_scale, offset, code, no_cap[a:b],
                    g.ex_ptr, g.ex_idx, g.exclude_self, g.q_labels, labels, keys[a:b],
                    idx[a:b], sizes[a:b], q_block, c_block, work, threads)
            bar.update(block.shape[0])
    if n_nan:
        raise ValueError("candidates or queries produce NaN scores (NaN or infinity in "
                         "the embeddings, or values too large for the dtype).")
    for g in groups:  # heap positions -> candidate ids
        if g.ids is not None and g.ids.size:
            rows = slice(g.start, g.start + g.rows.size)
            valid = np.arange(k) < sizes[rows, None]
            idx[rows] = np.where(valid, g.ids[np.where(valid, idx[rows], 0)], 0)
    keys, idx = sort_heaps(keys, idx, sizes)  # farthest first, ties by smaller index, padded
    if metric == "l2":
        with np.errstate(invalid="ignore"):
            scores = np.maximum(2 * (q_half[order][:, None] + keys), 0).astype(dtype)
        scores[~np.isfinite(keys)] = -np.inf
    else:
        scores = 0 - keys  # minus the keys, without turning a zero into -0.0
    back = np.empty_like(order)
    back[order] = np.arange(order.size)
    return PairResult(scores[back], idx[back])


def _turned_queries(Qw, metric):
    """Queries whose nearest candidates under the kernel's metric are the farthest:
    (turned queries, their kernel scales, half squared norms for "l2" else None)."""
    if metric == "l2":
        _, half = _scaled(Qw, "l2", _pairs.METRICS["l2"], "queries")
        Qt = np.empty((Qw.shape[0], Qw.shape[1] + 1), dtype=Qw.dtype)
        np.negative(Qw, out=Qt[:, :-1])
        Qt[:, -1] = 1
        return Qt, np.zeros(Qw.shape[0], dtype=Qw.dtype), half
    Qw, scale = _scaled(Qw, metric, _pairs.METRICS[metric], "queries")
    return -Qw, scale, None


def _turned_block(block, metric):
    """A candidate block in the kernel's form for ``metric``, with its scales."""
    if metric == "l2":
        _, half = _scaled(block, "l2", _pairs.METRICS["l2"], "candidates")
        out = np.empty((block.shape[0], block.shape[1] + 1), dtype=block.dtype)
        out[:, :-1] = block
        out[:, -1] = half
        return out, np.zeros(block.shape[0], dtype=block.dtype)
    return _scaled(block, metric, _pairs.METRICS[metric], "candidates")


def _tasks(groups, block, c_scale, c0, c_lab, same_label):
    """(group, candidates, their scales, id of the first, candidate labels) for
    each kernel call on one block: the whole block for the single group, or each
    label's rows of the block (gathered, in candidate order) for its group."""
    if not same_label:
        labels = c_lab[c0:c0 + block.shape[0]] if c_lab is not None else _NO_LABELS
        yield groups[0], block, c_scale, c0, labels
        return
    by_label = {g.label: g for g in groups}
    block_labels = c_lab[c0:c0 + block.shape[0]]
    srt = np.argsort(block_labels, kind="stable")
    present, first, counts = np.unique(block_labels[srt], return_index=True,
                                       return_counts=True)
    for label, f, n in zip(present, first, counts):
        g = by_label.get(label)
        if g is None:
            continue
        members = srt[f:f + n]
        offset = g.seen
        g.seen += n
        yield g, block[members], c_scale[members], offset, _NO_LABELS


class _Group:
    """Queries searched together: all of them, or (same_label) those of one label
    against that label's candidates, whose heap ids are then positions among the
    label's candidates (in candidate order, so ties still go to the smaller id)."""

    def __init__(self, rows, start, ex_ptr, ex_idx, exclude_self, q_labels, label=None,
                 ids=None):
        self.rows, self.start = rows, start
        self.ex_ptr, self.ex_idx, self.exclude_self = ex_ptr, ex_idx, exclude_self
        self.q_labels, self.label, self.ids = q_labels, label, ids
        self.seen = 0  # candidates of the label in the blocks searched so far


def _groups(q_lab, c_lab, same_label, ex_ptr, ex_idx, exclude_self, n_q, n_c):
    if not same_label:
        return [_Group(np.arange(n_q), 0, ex_ptr, ex_idx, exclude_self, q_lab)]
    groups, start = [], 0
    for label in np.unique(q_lab):
        rows = np.flatnonzero(q_lab == label)
        ids = np.flatnonzero(c_lab == label)
        # this label's exclusions, as positions among its candidates
        counts = np.diff(ex_ptr)[rows]
        flat = np.repeat(ex_ptr[rows] - np.concatenate([[0], np.cumsum(counts)[:-1]]),
                         counts) + np.arange(counts.sum())
        owner = np.repeat(np.arange(rows.size), counts)
        excluded = ex_idx[flat]
        keep = c_lab[excluded] == label
        owner, pos = owner[keep], np.searchsorted(ids, excluded[keep])
        if exclude_self:
            mine = (rows < n_c) & (c_lab[np.minimum(rows, n_c - 1)] == label)
            owner = np.concatenate([owner, np.flatnonzero(mine)])
            pos = np.concatenate([pos, np.searchsorted(ids, rows[mine])])
        srt = np.lexsort((pos, owner))
        ptr = np.concatenate([[0], np.cumsum(np.bincount(owner, minlength=rows.size))])
        g_idx = np.concatenate([pos[srt], [0]]).astype(np.intp)
        groups.append(_Group(rows, start, ptr.astype(np.intp), g_idx, False,
                             np.full(rows.size, -1, dtype=np.intp), label, ids))
        start += rows.size
    return groups
