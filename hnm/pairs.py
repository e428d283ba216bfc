"""Exact nearest-candidate search for hard pairs, streaming the candidates."""
from collections import namedtuple
import numpy as np

from ._nearest import _use_bf16, nearest
from ._threads import resolve_n_jobs
from ._validation import check_int
from ._ranking import check_k_band
from ._search_inputs import (DEFAULT_CANDIDATE_BLOCK, _check_search, _exclusions, _labels,
                             _per_query, with_stream_parameters)

__all__ = ["PairResult", "search_hard_pairs"]

PairResult = namedtuple("PairResult", ["scores", "indices"])
PairResult.__doc__ = """Result of :func:`search_hard_pairs`: ``scores`` and candidate
``indices`` of shape (n_queries, k), best first.

A named tuple, so it unpacks as ``scores, indices = search_hard_pairs(...)``.

See Also
--------
search_hard_pairs : what returns it.
hnm.dask.search_hard_pairs : returns it too, for a corpus sharded across workers.

Examples
--------
>>> import numpy as np
>>> import hnm
>>> result = hnm.search_hard_pairs(np.eye(2), np.eye(2), 1)
>>> result.indices.ravel(), result.scores.ravel()
(array([0, 1]), array([1., 1.]))
"""


@with_stream_parameters
def search_hard_pairs(queries, candidates, k=None, *, at_most=False, metric="cosine",
                      exclude=None, exclude_self=False, band=None, max_score=None,
                      query_labels=None, candidate_labels=None, n_jobs=None, block_size=None,
                      progress=False, screen="auto", checkpoint=None):
    """For every query, the ``k`` closest candidates, exactly, in bounded memory.

    Candidates are streamed in blocks: each block is scored against blocks of
    queries with one BLAS GEMM, and a bounded heap per query keeps the best
    ``k`` (ties by the smaller candidate index), screening out almost every
    score with one comparison. Memory depends on the block sizes and ``k``, not
    on the number of candidates, so ``candidates`` can be an ``np.memmap`` of
    any size. The selected ids are the same for every block size and thread
    count, except where two scores are equal within floating-point rounding; the
    scores themselves can differ in the last bits, as BLAS sums a dot product in
    an order that depends on the shape of the blocks.

    Parameters
    ----------
    queries : array-like of shape (n_queries, dim)
    candidates : array-like of shape (n_candidates, dim)
        float32 and float64 C-contiguous arrays are read in place; other real
        dtypes and layouts are converted one block at a time. If the two dtypes
        differ, both are computed in the wider one.
    k : int, optional
        Candidates per query, ``1 <= k <= n_candidates``; or give ``band``.
    at_most : bool, default=False
        With ``k`` larger than the number of candidates: take them all instead
        of raising ``ValueError``.
    metric : {"cosine", "ip", "l2"}, default="cosine"
        "ip": inner product, larger is closer. "cosine": cosine similarity,
        computed from norms without normalising or copying the candidates (a
        zero vector has similarity 0 with everything). "l2": squared Euclidean
        distance via norms and the GEMM, clamped at 0, smaller is closer.
    exclude : list of array-like or (indptr, indices), optional
        Per query, candidate ids never to return (e.g. its known positives).
    exclude_self : bool, default=False
        Query ``i`` never returns candidate ``i`` (queries are the candidates).
    band : (int, int or None), optional
        Ranks ``start .. stop-1`` instead of the top ``k``, as :func:`hnm.topk`.
    max_score : float or array-like of shape (n_queries,), optional
        Skip candidates closer than this (per query if an array): similarity
        above it for "ip"/"cosine", squared distance *below* it for "l2". The
        false-negative guard of hard negative mining. Finite numbers (NaN or
        infinity raise ``ValueError``).
    query_labels, candidate_labels : array-like, optional
        If both are given, only candidates whose label differs from the
        query's are returned.
    {stream_parameters}
    screen : {"auto", "bf16", "exact"}, default="auto"
        How scores are screened before the heaps. "bf16": float32 dot products
        are first approximated in bfloat16 by an AVX-512 BF16 micro-kernel (twice
        the fp32 rate), every approximation within a proven bound of the heap's
        root is rescored exactly (summed in double), and the rest are dropped;
        the result is as exact as the "exact" path. "exact": fp32/fp64 GEMMs.
        "auto" (the default) uses "bf16" for float32 inputs with at least
        65,536 candidates (8,192 when at most 10 are kept per query) where the
        CPU has AVX-512 BF16, unless the environment variable
        ``HNM_SCREEN=exact`` is set; else "exact" (with fewer candidates the
        heaps stay loose and too many scores need a rescore). The choice
        depends on the candidates and ``k`` only, so splitting the queries
        (checkpoints, Dask) never changes a result. float64 inputs always take
        the exact path.
    checkpoint : str or os.PathLike, optional
        A directory where each finished block of queries is saved: the same call
        again computes only the blocks still missing (after Ctrl-C, a kill or a
        crash), with a result identical to an uninterrupted call's; a call with
        other inputs or parameters raises ``ValueError`` naming what changed.
        ``progress`` then counts queries, the blocks finished earlier as done.

    Returns
    -------
    PairResult
        ``(scores, indices)``, each of shape (n_queries, k), closest first.
        A query with fewer than ``k`` eligible candidates is padded with index
        -1 and score -inf ("ip", "cosine") or +inf ("l2").

    Notes
    -----
    A read-only ``np.memmap`` of candidates larger than the memory available
    for the page cache (``MemAvailable``), or mostly not in it, is read with
    O_DIRECT by a reader thread ahead of the GEMMs, into three reused buffers of
    about 32 MiB (the disk's own rate instead of the page cache's read path, and
    the page cache is left alone); the spans are the same bytes, so the result
    is identical. The environment variable ``HNM_DIRECT_IO=0`` turns it off,
    ``HNM_DIRECT_IO=1`` uses it for every file memmap; where O_DIRECT is refused
    (tmpfs, some overlays) or the memmap is writable or copy-on-write, the
    mapping is read, silently.

    Examples
    --------
    >>> import numpy as np
    >>> import hnm
    >>> corpus = np.array([[1.0, 0.0], [0.0, 1.0], [0.7, 0.7], [-1.0, 0.0]])
    >>> result = hnm.search_hard_pairs(np.array([[1.0, 0.1]]), corpus, 2)
    >>> result.indices
    array([[0, 2]])
    >>> hnm.search_hard_pairs(corpus, corpus, 1, metric="l2", exclude_self=True).indices.ravel()
    array([2, 2, 0, 1])
    """
    if checkpoint is not None:
        from ._checkpoint import run_checkpointed

        return run_checkpointed(search_hard_pairs, checkpoint, locals())
    metric, Q, C = _check_search(metric, queries, candidates)
    n_q, n_c = Q.shape[0], C.shape[0]
    start, stop = check_k_band(k, band, n_c, "candidates", at_most=at_most)
    if not isinstance(exclude_self, (bool, np.bool_)):
        raise TypeError(f"exclude_self must be a bool, got {exclude_self!r}.")
    if exclude_self and n_q > n_c:
        raise ValueError("exclude_self needs queries to be (a prefix of) the candidates.")
    n_threads = resolve_n_jobs(n_jobs)
    c_block = check_int(block_size, "block_size", min_value=1, allow_none=True)
    dtype = np.result_type(np.float32, *(a.dtype for a in (Q, C) if a.dtype.kind == "f"))
    bf16 = _use_bf16(screen, dtype, n_c, stop)
    cap = _per_query(max_score, n_q)
    if metric == "l2" and max_score is not None:
        cap = -cap  # keys are minus distances: "closer than d" is "key above -d"
    exclusions = _exclusions(exclude, n_q, n_c)
    labels = _labels(query_labels, candidate_labels, n_q, n_c)
    scores, idx = nearest(Q, C, stop, metric, cap, exclusions, labels,
                          exclude_self=exclude_self, n_threads=n_threads,
                          block_size=c_block or DEFAULT_CANDIDATE_BLOCK, bf16=bf16,
                          progress=progress)
    return PairResult(scores[:, start:], idx[:, start:])
